//! `kaito` (also installed as `kubectl-kaito`, so `kubectl kaito ...` works): browse the model catalog,
//! plan GPU sizing and validate KAITO manifests offline.
//!
//! Exit codes: 0 success; 1 a manifest breaks an admission rule, or a plan does not fit; 2 bad input
//! (unknown model or SKU, unreadable or unparseable file, bad arguments).
#![forbid(unsafe_code)]

mod cli;
mod error;
mod models;
mod output;
mod plan;
mod validate;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ModelsCommand};
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) if matches!(error.downcast_ref::<CliError>(), Some(CliError::BrokenPipe)) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            match error.downcast_ref::<CliError>() {
                Some(cli_error) => ExitCode::from(cli_error.exit_code()),
                None => ExitCode::from(2),
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Models { command: ModelsCommand::List { runtime, output } } => {
            models::list(&mut stdout, runtime, output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Models { command: ModelsCommand::Show { name, output } } => {
            models::show(&mut stdout, &name, output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => {
            let fits = plan::run(&mut stdout, &args)?;
            Ok(if fits { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Validate(args) => {
            let mut stderr = std::io::stderr().lock();
            Ok(ExitCode::from(validate::run(&mut stdout, &mut stderr, &args)?))
        }
    }
}
