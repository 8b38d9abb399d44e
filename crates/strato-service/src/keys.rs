//! API keys (created, listed, revoked by admins; only a hash stored) and service-wide usage quotas.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};
use strato_store::Store;
use strato_types::{ApiKeyRecord, ErrorCode, Grant, StratoError, UsagePlan};

use crate::resources::ResourceKinds;
use crate::secrets::SecretBox;
use crate::{storage, Result, StratoOptions};

/// Secrets start with this, so they are easy to spot in leaked text (and by secret scanners).
const SECRET_PREFIX: &str = "strato_";
/// How long a process trusts its cached view of a key: a revocation made by another process takes effect within
/// this time (at once in the process that revoked it).
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// A key to create.
#[derive(Debug, Clone, Default)]
pub struct NewApiKey {
    /// What the key is for.
    pub name: String,
    /// `admin`, `editor` or `user` (default).
    pub role: Option<String>,
    /// Models it may use (`*`: all).
    pub models: Vec<String>,
    /// Mentors it may use (`*`: all).
    pub mentors: Vec<String>,
    /// Grants over any registered resource kind.
    pub grants: Vec<Grant>,
    /// Its limits; unset fields take the server's defaults.
    pub plan: UsagePlan,
}

/// Recently seen keys by secret hash (misses too, so made-up keys cannot hammer the database).
type KeyCache = parking_lot::Mutex<lru::LruCache<String, (Option<ApiKeyRecord>, Instant)>>;

/// API keys and service-wide quotas.
#[derive(Clone)]
pub struct Keys {
    store: Store,
    cache: Arc<KeyCache>,
    resources: Arc<ResourceKinds>,
    /// Made on first use, so a deployment without access keys never creates a secrets key file.
    secrets: Arc<std::sync::OnceLock<SecretBox>>,
    opts: Arc<StratoOptions>,
}

/// A SigV4 access key's id: `AKIA` and 16 characters of base 32, as AWS's look (clients only check the length).
fn new_access_key_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bytes: [u8; 16] = rand::random();
    let tail: String = bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
    format!("AKIA{tail}")
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn bad(message: impl Into<String>) -> StratoError {
    StratoError::new(ErrorCode::InvalidRequest, message)
}

impl Keys {
    pub(crate) fn new(store: Store, resources: Arc<ResourceKinds>, opts: &StratoOptions) -> Self {
        let cache = lru::LruCache::new(NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN));
        Self {
            store,
            cache: Arc::new(parking_lot::Mutex::new(cache)),
            resources,
            secrets: Default::default(),
            opts: Arc::new(opts.clone()),
        }
    }

    fn secrets(&self) -> Result<&SecretBox> {
        if let Some(b) = self.secrets.get() {
            return Ok(b);
        }
        let key = crate::server_key(&self.opts, self.opts.secrets_key.as_ref(), "secrets.key")?;
        Ok(self.secrets.get_or_init(|| SecretBox::new(&key)))
    }

    /// Creates a key; the secret is returned here and never again.
    pub async fn create(&self, req: NewApiKey) -> Result<(ApiKeyRecord, String)> {
        self.create_key(req, false).await
    }

    /// Creates a SigV4 access key (for AWS clients: CLI, SDKs): returns the key with its access key id, and the
    /// secret access key, shown here and never again. The secret is kept sealed under the server's secrets key.
    pub async fn create_access_key(&self, req: NewApiKey) -> Result<(ApiKeyRecord, String)> {
        self.create_key(req, true).await
    }

    async fn create_key(&self, req: NewApiKey, sigv4: bool) -> Result<(ApiKeyRecord, String)> {
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
        for (i, g) in req.grants.iter().enumerate() {
            self.resources.check_grant(g).map_err(|e| bad(format!("\"grants[{i}]\": {}", e.message)))?;
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let mut secret = format!("{SECRET_PREFIX}{}", hex::encode(bytes));
        let secret_hash = hash(&secret);
        let (mut access_key_id, mut sealed_secret) = (None, None);
        if sigv4 {
            // AWS's shape: 40 characters of base 64. The `x-api-key` hash is of a secret nobody is given, so an
            // access key authenticates by signature only.
            let aws: [u8; 30] = rand::random();
            let aws_secret = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, aws);
            let id = new_access_key_id();
            sealed_secret = Some(self.secrets()?.seal(&id, &aws_secret));
            access_key_id = Some(id);
            secret = aws_secret;
        }
        let key = ApiKeyRecord {
            id: format!("ak_{}", uuid::Uuid::now_v7().simple()),
            name,
            secret_hash,
            role,
            models: req.models,
            mentors: req.mentors,
            grants: req.grants,
            plan: req.plan,
            created_at: chrono::Utc::now(),
            revoked_at: None,
            access_key_id,
            sealed_secret,
        };
        self.store.keys().insert(&key).await.map_err(storage("storing the API key failed"))?;
        tracing::info!(key_id = %key.id, access_key_id = ?key.access_key_id, name = %key.name, role = %key.role, "API key created");
        Ok((key, secret))
    }

    /// Every key (revoked ones too), newest first; secrets are not recoverable.
    pub async fn list(&self) -> Result<Vec<ApiKeyRecord>> {
        self.store.keys().list().await.map_err(storage("listing API keys failed"))
    }

    /// Revokes a key: it stops working at once in this process, within seconds in the others.
    pub async fn revoke(&self, id: &str) -> Result<ApiKeyRecord> {
        let key = self
            .store
            .keys()
            .revoke(id, chrono::Utc::now())
            .await
            .map_err(storage("revoking the API key failed"))?
            .ok_or_else(|| StratoError::new(ErrorCode::ApiKeyNotFound, format!("no API key {id:?}")))?;
        self.cache.lock().pop(&key.secret_hash);
        if let Some(id) = &key.access_key_id {
            self.cache.lock().pop(&format!("sigv4:{id}"));
        }
        tracing::info!(key_id = %key.id, "API key revoked");
        Ok(key)
    }

    /// The live (not revoked) key with this secret, if any.
    pub async fn for_secret(&self, secret: &str) -> Result<Option<ApiKeyRecord>> {
        // Lookup is by hash, so how long it takes says nothing about how much of a real secret matched.
        let h = hash(secret);
        if let Some((key, at)) = self.cache.lock().get(&h).cloned() {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(key.filter(|k| k.revoked_at.is_none()));
            }
        }
        let key = self.store.keys().by_hash(&h).await.map_err(storage("reading API keys failed"))?;
        self.cache.lock().put(h, (key.clone(), Instant::now()));
        Ok(key.filter(|k| k.revoked_at.is_none()))
    }

    /// The live SigV4 access key with this id and its secret (to verify a signature with), if any.
    pub async fn for_access_key(&self, access_key_id: &str) -> Result<Option<(ApiKeyRecord, String)>> {
        let slot = format!("sigv4:{access_key_id}");
        let cached = self.cache.lock().get(&slot).cloned();
        let key = match cached {
            Some((key, at)) if at.elapsed() < KEY_CACHE_TTL => key,
            _ => {
                let key = self
                    .store
                    .keys()
                    .by_access_key_id(access_key_id)
                    .await
                    .map_err(storage("reading access keys failed"))?;
                self.cache.lock().put(slot, (key.clone(), Instant::now()));
                key
            }
        };
        let Some(key) = key.filter(|k| k.revoked_at.is_none()) else { return Ok(None) };
        let Some(sealed) = &key.sealed_secret else { return Ok(None) };
        let secret = self.secrets()?.open(access_key_id, sealed)?;
        Ok(Some((key, secret)))
    }

    /// Counts one request against `subject`'s quota of `limit` per `window`, service-wide (the store is shared by
    /// every API process). `Ok(Some(used))` when allowed, `Ok(None)` when the quota is used up; the second value is
    /// when the current window ends.
    pub async fn take_quota(&self, subject: &str, window: Duration, limit: u64) -> Result<(Option<u64>, Duration)> {
        let now = chrono::Utc::now().timestamp_millis();
        let len = window.as_millis().max(1) as i64;
        let start = now - now.rem_euclid(len);
        let used = self.store.usage().take(subject, start, limit).await.map_err(storage("counting usage failed"))?;
        // Windows older than the previous one are never read again.
        if used == Some(1) {
            let _ = self.store.usage().delete_before(start - len).await;
        }
        Ok((used, Duration::from_millis((start + len - now).max(0) as u64)))
    }
}
