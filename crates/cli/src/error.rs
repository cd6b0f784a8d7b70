//! Errors of the `kaito` command and their exit codes.

use std::path::PathBuf;

use kaito_core::{CatalogError, PlanError};

/// Something the user asked for cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A model name that the catalog does not know.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The model cannot be planned on the requested GPUs.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// An instance type that no cloud catalog has.
    #[error("unknown instance type \"{name}\": {hint}")]
    UnknownInstanceType {
        /// The name as given.
        name: String,
        /// What to do.
        hint: String,
    },
    /// A file that cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file that is not YAML, or a KAITO document that does not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The reader of our output went away (e.g. `| head`): stop quietly.
    #[error("output closed")]
    BrokenPipe,
    /// Output could not be written or encoded.
    #[error("cannot write output: {0}")]
    Output(String),
}

impl CliError {
    /// The process exit code: 1 when the model does not fit, 2 for bad input.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Plan(_) => 1,
            CliError::BrokenPipe => 0,
            _ => 2,
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Output(error.to_string())
        }
    }
}
