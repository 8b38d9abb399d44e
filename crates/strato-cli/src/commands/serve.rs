//! `strato serve`: the HTTP API and the job workers in one process.

use anyhow::{bail, Context, Result};

use super::worker::{shutdown_signal, worker_options};
use super::{err, open_parts, options, Parts};
use crate::config::{Global, ServeArgs};

pub(super) async fn serve(g: &Global, args: ServeArgs) -> Result<()> {
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
    // Presigned URLs of local storage point back at this server unless told otherwise.
    let mut o = options(g);
    o.public_url = Some(g.public_url.clone().unwrap_or_else(|| format!("http://{}", args.addr)));
    let Parts { strato, functions, workflows, media } = open_parts(g, o).await?;
    functions.start_maintenance();
    http.auth.policy.check(strato.resource_kinds()).map_err(|e| anyhow::anyhow!("the access policy: {e}"))?;
    let worker_opts = worker_options(&args.jobs, &strato)?;
    workflows.keep_history_for(worker_opts.job_ttl);

    // 2. Load (on first run: fetch) the embedding model before taking traffic, so the first request is fast.
    strato.embeddings().embedder().await.map_err(err).context("loading the embedding model")?;

    // 3. Workers, then the listener.
    let queues = worker_opts.queues.to_string();
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
        %queues,
        "listening on http://{addr} (data dir {}; {})",
        g.data_dir.display(),
        strato.describe_backends()
    );
    let capabilities = vec![
        strato_functions::routes(functions.clone()),
        strato_workflows::routes(workflows),
        strato_media::http::routes(media),
    ];
    let app = strato_http::router_with(strato.clone(), http, capabilities);
    // The peer address keys anonymous callers' rate limits.
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down; interrupted jobs are re-run after restart");
    pool.shutdown().await;
    functions.flush_logs().await;
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
            public_routes: g
                .public_routes
                .iter()
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty() && r != "none")
                .collect(),
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
