//! API keys (created, listed, revoked by admins; only a hash stored) and service-wide usage quotas.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use strato_types::{ApiKeyRecord, ErrorCode, StratoError, UsagePlan};

use crate::{storage, Result, Strato};

/// Secrets start with this, so they are easy to spot in leaked text (and by secret scanners).
const SECRET_PREFIX: &str = "strato_";
/// How long a process trusts its cached view of a key: a revocation made by another process takes effect within
/// this time (at once in the process that revoked it).
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// A key to create.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// What the key is for.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// `admin`, `editor` or `user` (default).
    #[serde(default)]
    #[schema(pattern = "^(admin|editor|user)$")]
    pub role: Option<String>,
    /// Models it may use (`*`: all).
    #[serde(default)]
    pub models: Vec<String>,
    /// Mentors it may use (`*`: all).
    #[serde(default)]
    pub mentors: Vec<String>,
    /// Its limits; unset fields take the server's defaults.
    #[serde(default)]
    pub plan: UsagePlan,
}

/// Recently seen keys by secret hash (misses too, so made-up keys cannot hammer the database).
pub(crate) struct KeyCache(parking_lot::Mutex<lru::LruCache<String, (Option<ApiKeyRecord>, Instant)>>);

impl KeyCache {
    pub(crate) fn new() -> Self {
        Self(parking_lot::Mutex::new(lru::LruCache::new(NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN))))
    }
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn bad(message: impl Into<String>) -> StratoError {
    StratoError::new(ErrorCode::InvalidRequest, message)
}

impl Strato {
    /// Creates a key; the secret is returned here and never again.
    pub async fn create_api_key(&self, req: NewApiKey) -> Result<(ApiKeyRecord, String)> {
        let name = req.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(bad("\"name\" must be 1-200 characters"));
        }
        let role = req.role.unwrap_or_else(|| "user".into()).to_ascii_lowercase();
        if !matches!(role.as_str(), "admin" | "editor" | "user") {
            return Err(bad(format!("\"role\" must be admin, editor or user, not {role:?}")));
        }
        let p = &req.plan;
        if p.rate_per_sec.is_some_and(|r| !(r > 0.0 && r <= UsagePlan::MAX_RATE))
            || p.burst.is_some_and(|b| !(1..=UsagePlan::MAX_BURST).contains(&b))
            || p.daily_quota.is_some_and(|q| q > UsagePlan::MAX_QUOTA)
        {
            return Err(bad(format!(
                "\"plan.rate_per_sec\" must be in (0, {}], \"plan.burst\" in [1, {}] and \"plan.daily_quota\" at most {}",
                UsagePlan::MAX_RATE,
                UsagePlan::MAX_BURST,
                UsagePlan::MAX_QUOTA
            )));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = format!("{SECRET_PREFIX}{}", hex::encode(bytes));
        let key = ApiKeyRecord {
            id: format!("ak_{}", uuid::Uuid::now_v7().simple()),
            name,
            secret_hash: hash(&secret),
            role,
            models: req.models,
            mentors: req.mentors,
            plan: req.plan,
            created_at: chrono::Utc::now(),
            revoked_at: None,
        };
        self.inner.store.insert_api_key(&key).await.map_err(storage("storing the API key failed"))?;
        tracing::info!(key_id = %key.id, name = %key.name, role = %key.role, "API key created");
        Ok((key, secret))
    }

    /// Every key (revoked ones too), newest first; secrets are not recoverable.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.inner.store.list_api_keys().await.map_err(storage("listing API keys failed"))
    }

    /// Revokes a key: it stops working at once in this process, within seconds in the others.
    pub async fn revoke_api_key(&self, id: &str) -> Result<ApiKeyRecord> {
        let key = self
            .inner
            .store
            .revoke_api_key(id, chrono::Utc::now())
            .await
            .map_err(storage("revoking the API key failed"))?
            .ok_or_else(|| StratoError::new(ErrorCode::ApiKeyNotFound, format!("no API key {id:?}")))?;
        self.inner.keys.0.lock().pop(&key.secret_hash);
        tracing::info!(key_id = %key.id, "API key revoked");
        Ok(key)
    }

    /// The live (not revoked) key with this secret, if any.
    pub async fn api_key_for_secret(&self, secret: &str) -> Result<Option<ApiKeyRecord>> {
        // Lookup is by hash, so how long it takes says nothing about how much of a real secret matched.
        let h = hash(secret);
        if let Some((key, at)) = self.inner.keys.0.lock().get(&h).cloned() {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(key.filter(|k| k.revoked_at.is_none()));
            }
        }
        let key = self.inner.store.api_key_by_hash(&h).await.map_err(storage("reading API keys failed"))?;
        self.inner.keys.0.lock().put(h, (key.clone(), Instant::now()));
        Ok(key.filter(|k| k.revoked_at.is_none()))
    }

    /// Counts one request against `subject`'s quota of `limit` per `window`, service-wide (the store is shared by
    /// every API process). `Ok(Some(used))` when allowed, `Ok(None)` when the quota is used up; the second value is
    /// when the current window ends.
    pub async fn take_quota(&self, subject: &str, window: Duration, limit: u64) -> Result<(Option<u64>, Duration)> {
        let now = chrono::Utc::now().timestamp_millis();
        let len = window.as_millis().max(1) as i64;
        let start = now - now.rem_euclid(len);
        let used =
            self.inner.store.take_usage(subject, start, limit).await.map_err(storage("counting usage failed"))?;
        // Windows older than the previous one are never read again.
        if used == Some(1) {
            let _ = self.inner.store.delete_usage_before(start - len).await;
        }
        Ok((used, Duration::from_millis((start + len - now).max(0) as u64)))
    }
}
