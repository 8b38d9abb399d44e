//! Command-line and environment configuration: one clap struct, every option also an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Strato: train and serve text classifiers on sentence embeddings, in one binary.
#[derive(Parser, Debug)]
#[command(name = "strato", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Data directory: metadata database, datasets, model artifacts, downloaded embedding models.
    #[arg(long, env = "STRATO_DATA_DIR", default_value = "./strato-data", global = true)]
    pub data_dir: PathBuf,
    /// Sentence-transformers model directory. Default: <data-dir>/models/all-MiniLM-L6-v2, fetched on first use.
    #[arg(long, env = "STRATO_EMBEDDING_MODEL", global = true)]
    pub embedding_model: Option<PathBuf>,
    /// Largest accepted dataset, in bytes.
    #[arg(long, env = "STRATO_MAX_DATASET_BYTES", default_value_t = 50 * 1024 * 1024, global = true)]
    pub max_dataset_bytes: usize,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `strato_service=debug`.
    #[arg(long, env = "STRATO_LOG", global = true)]
    pub log: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API and the training workers.
    Serve(ServeArgs),
    /// Train a model version from a dataset file, in this process.
    Train(TrainArgs),
    /// Predict labels for texts with a model's active version.
    Predict(PredictArgs),
    /// List, show or delete models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Manage the embedding model.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "STRATO_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Concurrent training workers in this process.
    #[arg(long, env = "STRATO_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Require `Authorization: Bearer <token>` on every request.
    #[arg(long, env = "STRATO_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Allow binding a non-loopback address without credentials.
    #[arg(long, env = "STRATO_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Seconds a job's lease lasts without a heartbeat; a crashed worker's job is retried after this.
    #[arg(long, env = "STRATO_JOB_LEASE_SECS", default_value_t = 30)]
    pub job_lease_secs: u64,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Model id.
    #[arg(long)]
    pub model: String,
    /// Dataset file: .csv (text,label[,split]), .jsonl, or .json (array or spaCy textcat).
    #[arg(long)]
    pub data: PathBuf,
    /// Training parameter, repeatable: C=10, class_weight=balanced, max_iter=500, val_fraction=0.1, seed=42.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Train a new version of an existing model.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model id.
    #[arg(long)]
    pub model: String,
    /// Labels to show per text.
    #[arg(long, default_value_t = 3)]
    pub n_top: usize,
    /// Texts to classify.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// List models.
    List,
    /// Show a model and its versions.
    Show { id: String },
    /// Delete a model, its versions and artifacts.
    Delete { id: String },
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Download and verify the default embedding model into the data directory.
    Pull,
}

/// Logs go to stderr; `serve` logs at info by default, other commands only warnings.
pub fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = cli.global.log.clone().or_else(|| std::env::var("RUST_LOG").ok()).unwrap_or_else(|| default.into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}
