//! What each subcommand does, one command group per file; this file dispatches and holds what they share.

mod dlq;
mod functions;
mod jobs;
mod keys;
mod media;
mod model;
mod models;
mod openapi;
mod serve;
mod train;
mod worker;
mod workflows;

use std::time::Duration;

use anyhow::Result;
use strato_service::{Strato, StratoOptions};

use crate::config::{Cli, Command, Global, ModelCommand};

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(&cli.global, *args).await,
        Command::Worker(args) => worker::worker(&cli.global, args).await,
        Command::Jobs { command } => jobs::jobs(&cli.global, command).await,
        Command::Dlq { command } => dlq::dlq(&cli.global, command).await,
        Command::ApiKeys { command } => keys::api_keys(&cli.global, command, false).await,
        Command::AccessKeys { command } => keys::api_keys(&cli.global, command, true).await,
        Command::Functions { command } => functions::functions(&cli.global, command).await,
        Command::Workflows { command } => workflows::workflows(&cli.global, command).await,
        Command::Executions { command } => workflows::executions(&cli.global, command).await,
        Command::Media { command } => media::media(&cli.global, command).await,
        Command::Train(args) => train::train(&cli.global, args).await,
        Command::Predict(args) => models::predict(&cli.global, args).await,
        Command::Models { command } => models::models(&cli.global, command).await,
        Command::Model { command: ModelCommand::Pull { whisper } } => model::pull(&cli.global, whisper).await,
        Command::Openapi => openapi::openapi(),
    }
}

fn options(g: &Global) -> StratoOptions {
    let mut o = StratoOptions::new(&g.data_dir);
    o.embedding_model = g.embedding_model.clone();
    o.max_dataset_bytes = g.max_dataset_bytes;
    o.embedding_cache_size = g.embedding_cache_size;
    o.embedding_precision = match g.embedding_precision.as_str() {
        "int8" => strato_ml::Precision::Int8,
        "bf16" => strato_ml::Precision::Bf16,
        _ => strato_ml::Precision::F32,
    };
    o.batching = strato_service::BatchOptions {
        max_batch_texts: g.batch_max_texts.max(1),
        max_batch_tokens: g.batch_max_tokens.max(1),
        max_queued_texts: g.batch_max_queued.max(1),
        max_wait: Duration::from_micros(g.batch_wait_us),
    };
    o.database_url = g.database_url.clone();
    o.storage = g.storage.clone();
    o.max_file_bytes = g.max_file_bytes;
    o.public_url = g.public_url.clone();
    o
}

async fn open(g: &Global) -> Result<Strato> {
    open_with(g, options(g)).await
}

/// Opens the service with `o` (the global options, adjusted by the command), the signing key decoded.
async fn open_with(g: &Global, o: StratoOptions) -> Result<Strato> {
    Ok(open_parts(g, o).await?.strato)
}

/// How functions run in this process, from the global options.
fn functions_options(g: &Global) -> Result<strato_functions::FunctionsOptions> {
    let mut f = strato_functions::FunctionsOptions::new(g.data_dir.join("functions"));
    f.python = g.functions_python.clone();
    f.max_instances = g.functions_max_instances;
    f.idle_timeout = g.functions_idle_timeout;
    f.rie_function = g.functions_rie_function.clone();
    f.run_as = match &g.functions_user {
        Some(u) => Some(strato_functions::RunAs::parse(u).map_err(|e| anyhow::anyhow!("--functions-user: {e}"))?),
        None => {
            let root = std::fs::read_to_string("/proc/self/status")
                .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")));
            if root {
                tracing::warn!(
                    "running as root without --functions-user: function instances run as root too and can read \
                     everything Strato can; set --functions-user nobody (or another unprivileged user)"
                );
            }
            None
        }
    };
    Ok(f)
}

/// The service and the capabilities built on it.
pub(crate) struct Parts {
    pub strato: Strato,
    pub functions: strato_functions::Functions,
    pub workflows: strato_workflows::Workflows,
    pub media: strato_media::MediaService,
}

/// How media steps run in this process, from the global options.
fn media_options(g: &Global, public_url: Option<String>) -> strato_media::MediaOptions {
    let tools = strato_media::Tools {
        ffmpeg: g.ffmpeg.clone(),
        ffprobe: g.ffprobe.clone(),
        timeout: g.media_timeout,
        threads: g.media_threads,
    };
    let dir = g.whisper_model.clone().unwrap_or_else(|| g.data_dir.join("models").join("whisper-tiny.en"));
    strato_media::MediaOptions {
        tools,
        public_url,
        transcriber: Some(strato_media::whisper::loader(dir, Some(g.whisper_language.clone()).filter(|l| l != "auto"))),
        transfer_hosts: g.media_transfer_hosts.clone(),
    }
}

/// [`open_with`], with the capabilities built on the core returned beside it.
async fn open_parts(g: &Global, mut o: StratoOptions) -> Result<Parts> {
    o.signing_key = g.signing_key.as_deref().map(|k| server_key("--signing-key", k)).transpose()?;
    o.secrets_key = g.secrets_key.as_deref().map(|k| server_key("--secrets-key", k)).transpose()?;
    let functions = strato_functions::FunctionsSlot::default();
    let workflows = strato_workflows::WorkflowsSlot::default();
    let media = strato_media::MediaSlot::default();
    let media_opts = media_options(g, o.public_url.clone());
    let strato = Strato::builder(o)
        .register(functions.registrar(functions_options(g)?))
        .register(workflows.registrar(functions.clone()))
        .register(media.registrar(media_opts, workflows.clone()))
        .open()
        .await
        .map_err(err)?;
    let functions = functions.get().ok_or_else(|| anyhow::anyhow!("the functions capability was not registered"))?;
    let workflows = workflows.get().ok_or_else(|| anyhow::anyhow!("the workflows capability was not registered"))?;
    workflows.allow_http(g.workflows_http_allow.clone());
    workflows.use_service(strato.clone());
    let media = media.get().ok_or_else(|| anyhow::anyhow!("the media capability was not registered"))?;
    media.install_machine().await.map_err(|e| anyhow::anyhow!("installing the upload processor: {e}"))?;
    Ok(Parts { strato, functions, workflows, media })
}

/// A hex server key of at least 32 bytes.
fn server_key(flag: &str, hex_text: &str) -> Result<Vec<u8>> {
    let key = hex::decode(hex_text.trim()).map_err(|_| anyhow::anyhow!("{flag} must be hex"))?;
    if key.len() < 32 {
        anyhow::bail!("{flag} must be at least 32 bytes (64 hex digits)");
    }
    Ok(key)
}

/// A service error as a command's error.
fn err(e: strato_types::StratoError) -> anyhow::Error {
    anyhow::anyhow!(e.message)
}

fn print_jobs(jobs: &[strato_types::JobRecord]) {
    if jobs.is_empty() {
        println!("no jobs");
    }
    for j in jobs {
        println!(
            "{}  {:<12} {:<11} {}/{} attempts  {:<24} {}",
            j.id,
            j.kind.as_str(),
            j.status.as_str(),
            j.attempts,
            j.max_attempts,
            j.key.as_deref().unwrap_or("-"),
            j.error.as_deref().unwrap_or("")
        );
    }
}

fn print_job(job: &strato_types::JobRecord, attempts: &[strato_types::JobAttempt]) {
    let mut v = serde_json::to_value(job).unwrap_or_default();
    v["attempt_log"] = serde_json::to_value(attempts).unwrap_or_default();
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}
