//! API keys and usage plans.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Limits attached to a credential. Empty means the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsagePlan {
    /// Sustained requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0.0, maximum = 1_000_000.0)]
    pub rate_per_sec: Option<f64>,
    /// Requests allowed at once above the sustained rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub burst: Option<u32>,
    /// Requests per quota window (a UTC day by default), counted service-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_u64)]
    pub daily_quota: Option<u64>,
}

impl UsagePlan {
    /// Highest `rate_per_sec` a plan may set.
    pub const MAX_RATE: f64 = 1_000_000.0;
    /// Highest `burst`.
    pub const MAX_BURST: u32 = 1_000_000;
    /// Highest `daily_quota`.
    pub const MAX_QUOTA: u64 = 1_000_000_000_000;
}

/// An API key as stored: the secret itself is never kept, only its SHA-256.
///
/// # Warning
/// Persisted (`api_keys` table): changing fields needs a migration.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    /// Public id (`ak_…`), used to list and revoke.
    pub id: String,
    /// What the key is for.
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
    /// `admin`, `editor` or `user`.
    pub role: String,
    /// Models the key may use (`*`: all).
    pub models: Vec<String>,
    /// Mentors the key may use (`*`: all).
    pub mentors: Vec<String>,
    /// Grants over any resource kind, beside the `models` and `mentors` lists (which are grants too).
    pub grants: Vec<crate::Grant>,
    /// Its limits.
    pub plan: UsagePlan,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<Timestamp>,
    /// A SigV4 access key's id (`AKIA…`, as AWS clients send it); `None` for an `x-api-key` key.
    pub access_key_id: Option<String>,
    /// A SigV4 access key's secret, sealed under the server's secrets key (never shown after creation).
    pub sealed_secret: Option<String>,
}
