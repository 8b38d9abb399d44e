//! What each subcommand does.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use strato_ml::{parse_dataset, DatasetFormat, TrainParams};
use strato_service::{AttemptOutcome, DataSource, Strato, StratoOptions, TrainRequest, WorkerPoolOptions};

use crate::config::{
    ApiKeysCommand, Cli, Command, DlqCommand, Global, JobArgs, JobsCommand, ModelCommand, ModelsCommand, PredictArgs,
    ServeArgs, TrainArgs, WorkerArgs,
};

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(&cli.global, *args).await,
        Command::Worker(args) => worker(&cli.global, args).await,
        Command::Jobs { command } => jobs(&cli.global, command).await,
        Command::Dlq { command } => dlq(&cli.global, command).await,
        Command::ApiKeys { command } => api_keys(&cli.global, command).await,
        Command::Train(args) => train(&cli.global, args).await,
        Command::Predict(args) => predict(&cli.global, args).await,
        Command::Models { command } => models(&cli.global, command).await,
        Command::Model { command: ModelCommand::Pull } => pull(&cli.global).await,
        Command::Openapi => openapi(),
    }
}

#[allow(clippy::print_stdout, reason = "the command's output")]
fn openapi() -> Result<()> {
    println!("{}", strato_http::openapi_document().to_pretty_json().context("cannot write the OpenAPI document")?);
    Ok(())
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
    o
}

fn worker_options(a: &JobArgs) -> WorkerPoolOptions {
    WorkerPoolOptions {
        workers: a.workers,
        lease: Duration::from_secs(a.job_lease_secs.max(1)),
        heartbeat: Duration::from_secs((a.job_lease_secs / 5).max(1)),
        job_ttl: (!a.job_ttl.is_zero()).then_some(a.job_ttl),
        alerter: a
            .alert_webhook_url
            .as_ref()
            .map(|url| strato_service::Alerter::start(strato_service::AlerterOptions::new(url.clone()))),
        ..Default::default()
    }
}

async fn open(g: &Global) -> Result<Strato> {
    Strato::open(options(g)).await.map_err(|e| anyhow::anyhow!(e.message))
}

async fn serve(g: &Global, args: ServeArgs) -> Result<()> {
    // 1. Refuse an open, unauthenticated server unless explicitly asked for.
    let loopback = args.addr.ip().is_loopback();
    let mut http = http_options(&args)?;
    if !http.auth.enabled() && !loopback && !args.insecure_no_auth {
        bail!(
            "refusing to listen on {} without credentials: set --admin-token / STRATO_ADMIN_TOKEN, bind a loopback \
             address, or pass --insecure-no-auth",
            args.addr
        );
    }
    if matches!(&args.admin_token, Some(t) if t.len() < 16) {
        bail!("the admin token is too short: use at least 16 random characters");
    }
    let strato = open(g).await?;

    // 2. Load (on first run: fetch) the embedding model before taking traffic, so the first request is fast.
    strato.embedder().await.map_err(|e| anyhow::anyhow!(e.message)).context("loading the embedding model")?;

    // 3. Workers, then the listener.
    let worker_opts = worker_options(&args.jobs);
    http.alerter = worker_opts.alerter.clone();
    let pool = strato.start_workers(worker_opts);
    let listener =
        tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("cannot bind {}", args.addr))?;
    let addr = listener.local_addr()?;
    match (http.auth.enabled(), loopback) {
        (true, _) => tracing::info!(
            admin_token = http.auth.admin_token.is_some(),
            jwt = http.auth.jwt.is_some(),
            public_routes = http.auth.public_routes.len(),
            "authentication is on"
        ),
        (false, true) => {
            tracing::warn!("no credentials configured: accepting unauthenticated requests, on a loopback address only")
        }
        (false, false) => tracing::warn!("--insecure-no-auth: accepting unauthenticated requests from the network"),
    }
    tracing::info!(
        workers = args.jobs.workers,
        "listening on http://{addr} (data dir {}; {})",
        g.data_dir.display(),
        strato.describe_backends()
    );
    let app = strato_http::router(strato.clone(), http);
    // The peer address keys anonymous callers' rate limits.
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down; interrupted jobs are re-run after restart");
    pool.shutdown().await;
    strato.close().await;
    Ok(())
}

/// The gateway's settings from the command line; a policy file that does not parse stops the start.
fn http_options(args: &ServeArgs) -> Result<strato_http::HttpOptions> {
    use strato_http::auth::{AuthOptions, ClaimsMapping, JwksSource, JwtOptions, Policy};
    let g = &args.gateway;
    let jwks = match (&g.jwks_url, &g.jwks_file) {
        (Some(u), _) => Some(JwksSource::Url(u.clone())),
        (None, Some(f)) => Some(JwksSource::File(f.clone())),
        (None, None) => None,
    };
    if matches!(&g.jwt_secret, Some(s) if s.len() < 32) {
        bail!("the JWT secret is too short: use at least 32 random characters");
    }
    let jwt = (g.jwt_secret.is_some() || jwks.is_some()).then(|| JwtOptions {
        hs256_secret: g.jwt_secret.clone(),
        jwks,
        issuer: g.jwt_issuer.clone(),
        audience: g.jwt_audience.clone(),
        leeway: std::time::Duration::from_secs(g.jwt_leeway_secs),
        ..Default::default()
    });
    let policy = match &g.access_policy {
        Some(p) => Policy::load(p).map_err(|e| anyhow::anyhow!("cannot read the access policy: {e}"))?,
        None => Policy::default(),
    };
    Ok(strato_http::HttpOptions {
        auth: AuthOptions {
            admin_token: args.admin_token.clone(),
            jwt,
            claims: ClaimsMapping {
                subject: g.jwt_subject_claims.clone(),
                roles: g.jwt_role_claims.clone(),
                groups: g.jwt_group_claims.clone(),
                owned_mentors: g.jwt_mentor_claims.clone(),
            },
            policy,
            public_routes: g.public_routes.iter().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect(),
        },
        cors_origins: g.cors_origins.iter().map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect(),
        hsts_max_age: g.hsts_max_age,
        limits: strato_http::limits::LimitOptions {
            default_plan: strato_types::UsagePlan {
                rate_per_sec: g.rate_limit,
                burst: g.rate_limit_burst,
                daily_quota: g.daily_quota,
            },
            anonymous_plan: strato_types::UsagePlan {
                rate_per_sec: Some(g.anonymous_rate_limit).filter(|r| *r > 0.0),
                burst: Some(g.anonymous_rate_limit_burst),
                daily_quota: None,
            },
            quota_window: g.quota_window,
        },
        slow: strato_http::observe::SlowOptions {
            default_ms: Some(g.slow_response_ms).filter(|ms| *ms > 0),
            per_route: slow_routes(&g.slow_routes)?,
            alert_every: std::time::Duration::from_secs(60),
        },
        alerter: None,
        max_json_bytes: g.max_json_bytes,
        max_concurrent_requests: g.max_concurrent_requests,
        request_timeout: g.request_timeout.max(std::time::Duration::from_millis(100)),
    })
}

/// Parses `ROUTE=MS` pairs.
fn slow_routes(items: &[String]) -> Result<std::collections::HashMap<String, u64>> {
    items
        .iter()
        .filter(|i| !i.trim().is_empty())
        .map(|i| {
            let (route, ms) = i.rsplit_once('=').with_context(|| format!("--slow-routes: {i:?} is not ROUTE=MS"))?;
            let ms =
                ms.trim().parse().with_context(|| format!("--slow-routes: {ms:?} in {i:?} is not milliseconds"))?;
            Ok((route.trim().to_string(), ms))
        })
        .collect()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn worker(g: &Global, args: WorkerArgs) -> Result<()> {
    if args.jobs.workers == 0 {
        bail!("--workers must be at least 1 for `strato worker`");
    }
    let strato = open(g).await?;
    strato.embedder().await.map_err(|e| anyhow::anyhow!(e.message)).context("loading the embedding model")?;
    let pool = strato.start_workers(worker_options(&args.jobs));
    tracing::info!(workers = args.jobs.workers, "worker running ({})", strato.describe_backends());
    shutdown_signal().await;
    tracing::info!("shutting down; running jobs go back to the queue");
    pool.shutdown().await;
    strato.close().await;
    Ok(())
}

async fn jobs(g: &Global, cmd: JobsCommand) -> Result<()> {
    let strato = open(g).await?;
    let err = |e: strato_types::StratoError| anyhow::anyhow!(e.message);
    match cmd {
        JobsCommand::List { status, kind, limit } => {
            let status = status
                .map(|s| {
                    strato_types::JobStatus::parse(&s.to_ascii_uppercase())
                        .with_context(|| format!("unknown status {s:?}"))
                })
                .transpose()?;
            let kind = kind
                .map(|k| strato_types::JobKind::parse(&k).with_context(|| format!("unknown kind {k:?}")))
                .transpose()?;
            let filter = strato_store::JobFilter { status, kind, key: None, limit: Some(limit) };
            print_jobs(&strato.jobs(&filter).await.map_err(err)?);
        }
        JobsCommand::Show { id } => {
            let (job, attempts) = strato.job_with_attempts(&id).await.map_err(err)?;
            print_job(&job, &attempts);
        }
        JobsCommand::Cancel { id } => match strato.cancel_job(&id).await.map_err(err)? {
            (strato_service::Cancellation::Cancelled, _) => println!("cancelled {id}"),
            (strato_service::Cancellation::Requested, _) => {
                println!("cancel requested for {id}: it stops at its next check (within a heartbeat)")
            }
        },
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the command's output")]
async fn api_keys(g: &Global, cmd: ApiKeysCommand) -> Result<()> {
    let strato = open(g).await?;
    let err = |e: strato_types::StratoError| anyhow::anyhow!(e.message);
    match cmd {
        ApiKeysCommand::Create { name, role, models, mentors, rate_per_sec, burst, daily_quota } => {
            let plan = strato_types::UsagePlan { rate_per_sec, burst, daily_quota };
            let req = strato_service::NewApiKey { name, role: Some(role), models, mentors, plan };
            let (key, secret) = strato.create_api_key(req).await.map_err(err)?;
            println!("created {} ({}, role {})", key.id, key.name, key.role);
            println!("secret (shown once; send it as x-api-key): {secret}");
        }
        ApiKeysCommand::List => {
            let keys = strato.api_keys().await.map_err(err)?;
            if keys.is_empty() {
                println!("no API keys");
            }
            for k in keys {
                let state = k.revoked_at.map_or("active".to_string(), |t| format!("revoked {}", t.to_rfc3339()));
                println!(
                    "{}  {:<6} {:<24} models={} mentors={}  {state}",
                    k.id,
                    k.role,
                    k.name,
                    k.models.join(","),
                    k.mentors.join(",")
                );
            }
        }
        ApiKeysCommand::Revoke { id } => {
            strato.revoke_api_key(&id).await.map_err(err)?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

async fn dlq(g: &Global, cmd: DlqCommand) -> Result<()> {
    let strato = open(g).await?;
    let err = |e: strato_types::StratoError| anyhow::anyhow!(e.message);
    match cmd {
        DlqCommand::List { limit } => print_jobs(&strato.dead_letters(limit).await.map_err(err)?),
        DlqCommand::Show { id } => {
            let (job, attempts) = strato.dead_letter(&id).await.map_err(err)?;
            print_job(&job, &attempts);
        }
        DlqCommand::Replay { id } => {
            strato.replay_dead_letter(&id).await.map_err(err)?;
            println!("replayed {id}: queued with fresh attempts");
        }
        DlqCommand::Delete { id } => {
            strato.delete_dead_letter(&id).await.map_err(err)?;
            println!("deleted {id}");
        }
    }
    Ok(())
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

/// `key=value` pairs to training parameters; values are JSON when they parse as JSON, else strings.
fn parse_params(pairs: &[String]) -> Result<TrainParams> {
    let mut map = serde_json::Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else { bail!("--param {p:?}: expected KEY=VALUE") };
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        map.insert(k.trim().to_string(), value);
    }
    let params: TrainParams = serde_json::from_value(serde_json::Value::Object(map)).context("invalid --param")?;
    params.validate().map_err(anyhow::Error::msg)?;
    Ok(params)
}

async fn train(g: &Global, args: TrainArgs) -> Result<()> {
    let params = parse_params(&args.params)?;
    let path = args.data.display().to_string();
    let format = DatasetFormat::from_path(&path)
        .with_context(|| format!("{path}: unknown file type; use .csv, .jsonl or .json"))?;
    let bytes = std::fs::read(&args.data).with_context(|| format!("cannot read {path}"))?;
    if bytes.len() > g.max_dataset_bytes {
        bail!("{path} is {} bytes; the limit is {} (--max-dataset-bytes)", bytes.len(), g.max_dataset_bytes);
    }
    let ds = parse_dataset(&bytes, format).map_err(|e| anyhow::anyhow!("{path}: {}", e.0))?;
    eprintln!("{path}: {} examples, {} labels ({})", ds.examples.len(), ds.labels().len(), ds.format.as_str());

    let strato = open(g).await?;
    strato.embedder().await.map_err(|e| anyhow::anyhow!(e.message)).context("loading the embedding model")?;
    let bar = ProgressBar::new(100).with_style(
        ProgressStyle::with_template("{spinner} training [{bar:40}] {pos:>3}% {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let (job, outcome) = strato
        .train_now(
            TrainRequest {
                model_id: args.model.clone(),
                data: DataSource::Inline(ds.examples),
                params,
                force_update: args.force,
                meta: serde_json::json!({"file": path}),
                idempotency_key: None,
            },
            move |p| b.set_position(p as u64),
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    bar.finish_and_clear();
    match outcome {
        AttemptOutcome::Succeeded(result) => {
            print_metrics(&args.model, &result);
            Ok(())
        }
        AttemptOutcome::Failed(e) => bail!("training failed (job {}): {e}", job.id),
        AttemptOutcome::Cancelled => bail!("training job {} was cancelled", job.id),
        AttemptOutcome::LeaseLost => bail!("training job {} was taken over by another worker", job.id),
    }
}

fn print_metrics(model: &str, result: &serde_json::Value) {
    let version = result["version"].as_i64().unwrap_or(0);
    let m = &result["metrics"];
    println!("model {model} version {version} is active");
    println!("  examples trained on  {}", m["n_train"]);
    println!("  labels               {}", m["n_labels"]);
    println!("  optimiser iterations {} (converged: {})", m["iterations"], m["converged"]);
    for (name, set) in [("validation", &m["validation"]), ("test", &m["test"])] {
        if set.is_null() {
            continue;
        }
        println!(
            "  {name:<10} n={:<6} accuracy={:.4} macro-F1={:.4}",
            set["n"],
            set["accuracy"].as_f64().unwrap_or(0.0),
            set["macro_f1"].as_f64().unwrap_or(0.0)
        );
    }
    let Some(per) = m["validation"]["per_label"].as_object() else { return };
    let mut rows: Vec<(&String, &serde_json::Value)> = per.iter().collect();
    rows.sort_by(|a, b| a.1["f1"].as_f64().unwrap_or(0.0).total_cmp(&b.1["f1"].as_f64().unwrap_or(0.0)));
    let shown = if rows.len() > 20 { 10 } else { rows.len() };
    println!();
    println!(
        "  {:<32} {:>7} {:>9} {:>7} {:>7}",
        "label (validation, worst first)", "support", "precision", "recall", "f1"
    );
    for (label, v) in rows.iter().take(shown) {
        println!(
            "  {:<32} {:>7} {:>9.3} {:>7.3} {:>7.3}",
            label,
            v["support"],
            v["precision"].as_f64().unwrap_or(0.0),
            v["recall"].as_f64().unwrap_or(0.0),
            v["f1"].as_f64().unwrap_or(0.0)
        );
    }
    if shown < rows.len() {
        println!("  … {} more labels", rows.len() - shown);
    }
}

async fn predict(g: &Global, args: PredictArgs) -> Result<()> {
    let strato = open(g).await?;
    let p =
        strato.predict(&args.model, args.texts.clone(), args.n_top).await.map_err(|e| anyhow::anyhow!(e.message))?;
    for (text, preds) in args.texts.iter().zip(&p.predictions) {
        println!("{text}");
        for s in preds {
            println!("  {:<32} {:.4}", s.label, s.score);
        }
    }
    Ok(())
}

async fn models(g: &Global, cmd: ModelsCommand) -> Result<()> {
    let strato = open(g).await?;
    let err = |e: strato_types::StratoError| anyhow::anyhow!(e.message);
    match cmd {
        ModelsCommand::List => {
            let all = strato.list_models().await.map_err(err)?;
            if all.is_empty() {
                println!("no models");
            }
            for m in all {
                let v = m.active_version.map(|v| format!("v{v}")).unwrap_or_else(|| "untrained".into());
                println!("{:<32} {:<10} updated {}", m.id, v, m.updated_at.to_rfc3339());
            }
        }
        ModelsCommand::Show { id } => {
            let d = strato.model(&id).await.map_err(err)?;
            println!(
                "{} (active: {})",
                d.model.id,
                d.model.active_version.map(|v| format!("v{v}")).unwrap_or("none".into())
            );
            for v in d.versions {
                let acc = v.metrics["validation"]["accuracy"].as_f64();
                println!(
                    "  v{:<4} {} validation accuracy {} params {}",
                    v.version,
                    v.created_at.to_rfc3339(),
                    acc.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into()),
                    v.params
                );
            }
        }
        ModelsCommand::Delete { id } => {
            strato.delete_model(&id).await.map_err(err)?;
            println!("deleted {id}");
        }
    }
    Ok(())
}

async fn pull(g: &Global) -> Result<()> {
    let dir = g.embedding_model.clone().unwrap_or_else(|| strato_service::default_model_dir(&g.data_dir));
    let report = tokio::task::spawn_blocking(move || {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let b = bar.clone();
        let mut opts = strato_fetch::PullOptions::new(dir);
        opts.progress = Some(Box::new(move |ev| {
            use strato_fetch::PullEvent as E;
            match ev {
                E::Trying { source } => b.println(format!("trying {source}")),
                E::SourceFailed { source, reason } => b.println(format!("{source} unavailable: {reason}")),
                E::Downloading { source, bytes_done, bytes_total } => {
                    b.set_message(format!("downloading from {source}"));
                    if let Some(t) = bytes_total {
                        b.set_length(t);
                    }
                    b.set_position(bytes_done);
                }
                E::Verifying => b.println("verifying checksums"),
                E::Done { source } => b.println(format!("installed from {source}")),
            }
        }));
        let r = strato_fetch::pull_default_model(&opts);
        bar.finish_and_clear();
        r
    })
    .await??;
    println!("embedding model ready in {} (from {})", report.dir.display(), report.source);
    Ok(())
}
