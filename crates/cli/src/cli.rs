//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kaito_api::validation::NodeProvisioner;
use kaito_core::{Cloud, Runtime};

/// Serve open LLMs on Kubernetes with KAITO: browse models, size GPUs, check manifests.
#[derive(Debug, Parser)]
#[command(name = "kaito", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The model preset catalog.
    Models {
        /// What to do with the catalog.
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// How many nodes and GPUs a model needs, and how it is split across them.
    Plan(PlanArgs),
    /// Check Workspace, RAGEngine and InferenceSet manifests against the admission rules, offline.
    Validate(ValidateArgs),
}

/// `kaito models ...`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the catalog.
    List {
        /// Only models this runtime can serve.
        #[arg(long, value_enum)]
        runtime: Option<RuntimeArg>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Everything the catalog knows about one model (legacy name or Hugging Face id).
    Show {
        /// Preset name, e.g. phi-4 or microsoft/phi-4.
        name: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

/// `kaito plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Preset name or Hugging Face id from the catalog.
    pub model: String,
    /// Plan on this instance type (any cloud's catalog).
    #[arg(long, conflicts_with = "cloud")]
    pub instance_type: Option<String>,
    /// Recommend the smallest fitting instance type of this cloud (default azure).
    #[arg(long, value_enum)]
    pub cloud: Option<CloudArg>,
    /// Context length to size the KV cache for (vllm.max-model-len); default: automatic.
    #[arg(long)]
    pub max_model_len: Option<u32>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `kaito validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Manifest file(s), each possibly with several YAML documents; `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Node provisioner the controller runs with.
    #[arg(long, value_enum, default_value_t = ProvisionerArg::AzureGpuProvisioner)]
    pub provisioner: ProvisionerArg,
    /// Cloud whose GPU SKU catalog applies.
    #[arg(long, value_enum, default_value_t = CloudArg::Azure)]
    pub cloud: CloudArg,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable table.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Runtimes, as flag values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeArg {
    /// vLLM.
    Vllm,
    /// Hugging Face transformers.
    Transformers,
}

impl From<RuntimeArg> for Runtime {
    fn from(value: RuntimeArg) -> Self {
        match value {
            RuntimeArg::Vllm => Runtime::Vllm,
            RuntimeArg::Transformers => Runtime::Transformers,
        }
    }
}

/// Clouds, as flag values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CloudArg {
    /// Microsoft Azure.
    Azure,
    /// Amazon Web Services.
    Aws,
    /// Azure Arc.
    Arc,
}

impl From<CloudArg> for Cloud {
    fn from(value: CloudArg) -> Self {
        match value {
            CloudArg::Azure => Cloud::Azure,
            CloudArg::Aws => Cloud::Aws,
            CloudArg::Arc => Cloud::Arc,
        }
    }
}

/// Node provisioners, as flag values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProvisionerArg {
    /// Azure gpu-provisioner (default).
    AzureGpuProvisioner,
    /// Karpenter.
    Karpenter,
    /// Bring your own nodes.
    Byo,
}

impl From<ProvisionerArg> for NodeProvisioner {
    fn from(value: ProvisionerArg) -> Self {
        match value {
            ProvisionerArg::AzureGpuProvisioner => NodeProvisioner::AzureGpuProvisioner,
            ProvisionerArg::Karpenter => NodeProvisioner::Karpenter,
            ProvisionerArg::Byo => NodeProvisioner::Byo,
        }
    }
}
