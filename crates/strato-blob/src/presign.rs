//! Presigned URLs: one object, one method, until a time, for a client that holds no credentials of its own.
//!
//! On S3 they are S3's own (SigV4 query signatures, made by `object_store`'s signer with the bucket's credentials):
//! the client talks to the bucket directly. Local storage has no server of its own, so Strato signs and serves
//! them: `{public_url}/v1/presigned/{key}?method=PUT&expires=<unix seconds>&signature=<hex>`, where the signature
//! is HMAC-SHA256 with a server key over the method, the key and the expiry, checked in constant time.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use sha2::Sha256;

use crate::{BlobError, BlobStore};

/// Longest validity a presigned URL may have (S3's own limit for SigV4).
pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a presigned URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresignMethod {
    /// Download the object.
    Get,
    /// Upload (create or replace) the object.
    Put,
}

impl PresignMethod {
    /// The HTTP method.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
        }
    }

    /// Parses `GET` or `PUT` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Some(Self::Get),
            "PUT" => Some(Self::Put),
            _ => None,
        }
    }
}

/// A presigned request.
#[derive(Debug, Clone)]
pub struct PresignedUrl {
    /// Where to send it.
    pub url: String,
    /// With which method.
    pub method: PresignMethod,
    /// Until when (Unix seconds).
    pub expires_at: u64,
}

/// Why a Strato-signed URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresignError {
    /// Past its expiry.
    #[error("the presigned URL expired")]
    Expired,
    /// The signature does not match the method, key and expiry (tampered with, or signed by another key).
    #[error("the presigned URL's signature does not match")]
    BadSignature,
}

/// Signs and checks Strato-served presigned URLs for local storage.
#[derive(Clone)]
pub struct LocalSigner {
    key: Arc<[u8]>,
    /// The server's address as clients reach it, without a trailing `/`.
    public_url: Arc<str>,
}

impl fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSigner").field("key", &"<redacted>").field("public_url", &self.public_url).finish()
    }
}

impl LocalSigner {
    /// A signer with a secret `key` (at least 32 bytes) for URLs under `public_url`.
    pub fn new(key: &[u8], public_url: &str) -> Result<Self, BlobError> {
        if key.len() < 32 {
            return Err(BlobError::NoPresigning("the signing key must be at least 32 bytes".into()));
        }
        Ok(Self { key: key.into(), public_url: public_url.trim_end_matches('/').into() })
    }

    fn mac(&self, method: PresignMethod, key: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{}\n{key}\n{expires}", method.as_str()).as_bytes());
        mac
    }

    fn sign(&self, method: PresignMethod, key: &str, expires_at: u64) -> PresignedUrl {
        let signature = hex::encode(self.mac(method, key, expires_at).finalize().into_bytes());
        let path: String = key.split('/').map(urlencoding).collect::<Vec<_>>().join("/");
        let url = format!(
            "{}/v1/presigned/{path}?method={}&expires={expires_at}&signature={signature}",
            self.public_url,
            method.as_str()
        );
        PresignedUrl { url, method, expires_at }
    }

    /// Checks a Strato-signed URL's method, key, expiry and signature (the comparison in constant time).
    pub fn verify(&self, method: PresignMethod, key: &str, expires: u64, signature: &str) -> Result<(), PresignError> {
        let given = hex::decode(signature).map_err(|_| PresignError::BadSignature)?;
        // The signature first: an expiry moved by hand is a tampered URL, not an expired one.
        self.mac(method, key, expires).verify_slice(&given).map_err(|_| PresignError::BadSignature)?;
        if now_secs() > expires {
            return Err(PresignError::Expired);
        }
        Ok(())
    }
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay as they are).
fn urlencoding(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// How a store makes presigned URLs.
#[derive(Clone, Debug)]
pub(crate) enum Presigner {
    /// None (a store wrapped by [`BlobStore::new`]).
    None,
    /// Local storage: Strato's signer, once one is set.
    Local(Option<LocalSigner>),
    /// S3's own signer, with the key prefix the store adds.
    S3 { s3: Arc<object_store::aws::AmazonS3>, prefix: Option<ObjectPath> },
}

impl BlobStore {
    /// Sets the signer of local storage's presigned URLs (served by Strato at its public URL). S3 stores sign with
    /// their own credentials and ignore it.
    pub fn with_local_signer(mut self, signer: LocalSigner) -> Self {
        if let Presigner::Local(_) = self.presigner {
            self.presigner = Presigner::Local(Some(signer));
        }
        self
    }

    /// A URL that lets its holder do `method` on `key` for `expires_in` (at most a week), with no other credential.
    pub async fn presign(
        &self,
        method: PresignMethod,
        key: &str,
        expires_in: Duration,
    ) -> Result<PresignedUrl, BlobError> {
        let expires_in = expires_in.clamp(Duration::from_secs(1), MAX_EXPIRY);
        let expires_at = now_secs() + expires_in.as_secs();
        match &self.presigner {
            Presigner::S3 { s3, prefix } => {
                let path = match prefix {
                    Some(p) => ObjectPath::from_iter(p.parts().chain(ObjectPath::from(key).parts())),
                    None => ObjectPath::from(key),
                };
                let m = match method {
                    PresignMethod::Get => reqwest::Method::GET,
                    PresignMethod::Put => reqwest::Method::PUT,
                };
                let url = s3.signed_url(m, &path, expires_in).await?;
                Ok(PresignedUrl { url: url.to_string(), method, expires_at })
            }
            Presigner::Local(Some(signer)) => Ok(signer.sign(method, key, expires_at)),
            Presigner::Local(None) => Err(BlobError::NoPresigning(
                "presigned URLs on local storage are served by Strato: it needs its public URL and a signing key"
                    .into(),
            )),
            Presigner::None => Err(BlobError::NoPresigning("this storage cannot make presigned URLs".into())),
        }
    }

    /// Checks a Strato-signed URL (local storage); `None` when this store does not serve its own presigned URLs.
    pub fn verify_presigned(
        &self,
        method: PresignMethod,
        key: &str,
        expires: u64,
        signature: &str,
    ) -> Option<Result<(), PresignError>> {
        match &self.presigner {
            Presigner::Local(Some(signer)) => Some(signer.verify(method, key, expires, signature)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_the_method_the_key_and_the_expiry() {
        let s = LocalSigner::new(&[7u8; 32], "http://127.0.0.1:8080/").unwrap();
        let far = now_secs() + 600;
        let u = s.sign(PresignMethod::Put, "up/a b.mp4", far);
        assert!(u.url.starts_with("http://127.0.0.1:8080/v1/presigned/up/a%20b.mp4?method=PUT&expires="), "{}", u.url);
        let sig = u.url.rsplit("signature=").next().unwrap();
        assert_eq!(s.verify(PresignMethod::Put, "up/a b.mp4", far, sig), Ok(()));
        assert_eq!(s.verify(PresignMethod::Get, "up/a b.mp4", far, sig), Err(PresignError::BadSignature));
        assert_eq!(s.verify(PresignMethod::Put, "up/other.mp4", far, sig), Err(PresignError::BadSignature));
        assert_eq!(s.verify(PresignMethod::Put, "up/a b.mp4", far + 1, sig), Err(PresignError::BadSignature));
        assert_eq!(s.verify(PresignMethod::Put, "up/a b.mp4", far, "zz"), Err(PresignError::BadSignature));
        let other = LocalSigner::new(&[8u8; 32], "http://x").unwrap();
        assert_eq!(other.verify(PresignMethod::Put, "up/a b.mp4", far, sig), Err(PresignError::BadSignature));
        let past = now_secs() - 1;
        let old = s.sign(PresignMethod::Get, "k", past);
        let sig = old.url.rsplit("signature=").next().unwrap();
        assert_eq!(s.verify(PresignMethod::Get, "k", past, sig), Err(PresignError::Expired));
        assert!(LocalSigner::new(&[1u8; 16], "http://x").is_err(), "short keys are refused");
    }
}
