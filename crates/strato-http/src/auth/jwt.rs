//! Bearer JWT verification: HS256 with a shared secret, RS256/ES256 (and their 384/512 siblings) with keys from a
//! JWKS URL or file, refreshed when a token names a key id we have not seen.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Where asymmetric verification keys come from.
#[derive(Clone, Debug)]
pub enum JwksSource {
    /// Fetched over HTTP(S), e.g. Cognito's `https://cognito-idp.<region>.amazonaws.com/<pool>/.well-known/jwks.json`.
    Url(String),
    /// Read from a file (re-read on an unknown `kid`, so rotating the file rotates the keys).
    File(PathBuf),
}

/// How tokens are checked.
#[derive(Clone)]
pub struct JwtOptions {
    /// HS256 shared secret (MentorPal-style tokens).
    pub hs256_secret: Option<String>,
    /// RS256/ES256 keys.
    pub jwks: Option<JwksSource>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (one of), when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Least time between two JWKS refreshes, so tokens with made-up key ids cannot hammer the key server.
    pub jwks_min_refresh: Duration,
}

impl Default for JwtOptions {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            jwks: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            jwks_min_refresh: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for JwtOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtOptions")
            .field("hs256_secret", &self.hs256_secret.as_ref().map(|_| "<redacted>"))
            .field("jwks", &self.jwks)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// Why a token was refused; the message is safe to return to the caller.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Malformed, badly signed, expired, wrong issuer/audience, unsupported algorithm.
    #[error("{0}")]
    Invalid(String),
    /// The key set could not be loaded: not the caller's fault.
    #[error("cannot load the JWKS: {0}")]
    Jwks(String),
}

struct KeyCache {
    keys: HashMap<String, (DecodingKey, Option<KeyAlgorithm>)>,
    loaded_at: Option<Instant>,
}

/// Checks bearer tokens; cheap to share.
pub struct JwtVerifier {
    opts: JwtOptions,
    hs: Option<DecodingKey>,
    cache: tokio::sync::RwLock<KeyCache>,
    http: reqwest::Client,
}

impl JwtVerifier {
    /// A verifier; nothing is fetched until the first token that needs a key.
    pub fn new(opts: JwtOptions) -> Self {
        let hs = opts.hs256_secret.as_ref().map(|s| DecodingKey::from_secret(s.as_bytes()));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self { opts, hs, cache: tokio::sync::RwLock::new(KeyCache { keys: HashMap::new(), loaded_at: None }), http }
    }

    /// The token's claims when its signature, algorithm, times, issuer and audience all check out.
    pub async fn verify(&self, token: &str) -> Result<Map<String, Value>, JwtError> {
        // `alg: none` and unknown algorithms fail here: jsonwebtoken has no variant for them.
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtError::Invalid(format!("malformed token: {e}")))?;
        let alg = header.alg;
        let key = match alg {
            Algorithm::HS256 => {
                self.hs.clone().ok_or_else(|| JwtError::Invalid("HS256 tokens are not accepted here".into()))?
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                let kid = header.kid.ok_or_else(|| JwtError::Invalid("the token has no `kid` header".into()))?;
                self.key_for(&kid, alg).await?
            }
            other => return Err(JwtError::Invalid(format!("{other:?} tokens are not accepted"))),
        };
        let mut v = Validation::new(alg);
        v.leeway = self.opts.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp"]);
        match &self.opts.issuer {
            Some(iss) => v.set_issuer(&[iss]),
            None => v.iss = None,
        }
        match &self.opts.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            JwtError::Invalid(match e.kind() {
                K::ExpiredSignature => "the token has expired".to_string(),
                K::ImmatureSignature => "the token is not valid yet (nbf)".to_string(),
                K::InvalidSignature => "the token's signature does not verify".to_string(),
                K::InvalidIssuer => "the token's issuer (iss) is not accepted".to_string(),
                K::InvalidAudience => "the token's audience (aud) is not accepted".to_string(),
                K::InvalidAlgorithm => "the token's algorithm does not match its key".to_string(),
                K::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
                _ => format!("invalid token: {e}"),
            })
        })?;
        Ok(data.claims)
    }

    /// The key `kid` names, loading the key set when it is unknown (at most once per `jwks_min_refresh`).
    async fn key_for(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, JwtError> {
        let source = self
            .opts
            .jwks
            .as_ref()
            .ok_or_else(|| JwtError::Invalid(format!("{alg:?} tokens are not accepted here")))?;
        if let Some(k) = self.cached(kid, alg).await? {
            return Ok(k);
        }
        {
            let mut cache = self.cache.write().await;
            let fresh = cache.loaded_at.is_some_and(|t| t.elapsed() < self.opts.jwks_min_refresh);
            if !fresh {
                let set = self.load(source).await?;
                cache.keys = decoding_keys(&set);
                cache.loaded_at = Some(Instant::now());
                tracing::info!(keys = cache.keys.len(), "loaded the JWKS");
            }
        }
        self.cached(kid, alg).await?.ok_or_else(|| JwtError::Invalid(format!("unknown signing key `{kid}`")))
    }

    async fn cached(&self, kid: &str, alg: Algorithm) -> Result<Option<DecodingKey>, JwtError> {
        let cache = self.cache.read().await;
        let Some((key, key_alg)) = cache.keys.get(kid) else { return Ok(None) };
        // A key published for one algorithm is never used with another (e.g. an RS256 key for PS256).
        if let Some(ka) = key_alg {
            if format!("{ka:?}") != format!("{alg:?}") {
                return Err(JwtError::Invalid(format!("key `{kid}` is for {ka:?}, not {alg:?}")));
            }
        }
        Ok(Some(key.clone()))
    }

    async fn load(&self, source: &JwksSource) -> Result<JwkSet, JwtError> {
        let body = match source {
            JwksSource::File(p) => {
                tokio::fs::read(p).await.map_err(|e| JwtError::Jwks(format!("{}: {e}", p.display())))?
            }
            JwksSource::Url(u) => {
                let res = self.http.get(u).send().await.map_err(|e| JwtError::Jwks(e.without_url().to_string()))?;
                if !res.status().is_success() {
                    return Err(JwtError::Jwks(format!("the JWKS URL answered {}", res.status())));
                }
                res.bytes().await.map_err(|e| JwtError::Jwks(e.without_url().to_string()))?.to_vec()
            }
        };
        serde_json::from_slice(&body).map_err(|e| JwtError::Jwks(format!("not a JWKS document: {e}")))
    }
}

/// The asymmetric keys of a set that have a `kid`; symmetric (`oct`) keys in a JWKS are ignored, so a published
/// set can never turn into an HMAC secret (the HS/RS confusion attack).
fn decoding_keys(set: &JwkSet) -> HashMap<String, (DecodingKey, Option<KeyAlgorithm>)> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    set.keys
        .iter()
        .filter(|k| !matches!(k.algorithm, P::OctetKey(_)))
        .filter_map(|k| {
            let kid = k.common.key_id.clone()?;
            let key = DecodingKey::from_jwk(k).ok()?;
            Some((kid, (key, k.common.key_algorithm)))
        })
        .collect()
}
