//! Where blobs live: a local directory or an S3 bucket, parsed from one `--storage` string.

use std::fmt;
use std::path::{Path, PathBuf};

use object_store::path::Path as ObjectPath;

use crate::BlobError;

/// Environment variable naming the S3 endpoint of a non-AWS server (MinIO, moto, Ceph…), e.g.
/// `http://127.0.0.1:9000`. Unset means AWS itself.
pub const S3_ENDPOINT_ENV: &str = "STRATO_S3_ENDPOINT";

/// Region used when neither the options nor `AWS_REGION`/`AWS_DEFAULT_REGION` name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// What `--storage` accepts, for error messages.
const ACCEPTED: &str = "a local directory, file:///absolute/path or s3://bucket[/prefix]";

/// Where blobs are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobLocation {
    /// A directory on the local filesystem (created when missing).
    Local(PathBuf),
    /// An S3 bucket, optionally under a key prefix.
    S3(S3Options),
}

/// How to reach an S3 (or S3-compatible) bucket.
///
/// `Debug` and `Display` never show the secret key or session token.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Options {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (`/`-separated, no leading or trailing `/`); `None` is the bucket root.
    pub prefix: Option<String>,
    /// Endpoint of a non-AWS server such as `http://127.0.0.1:9000`; `None` is AWS.
    pub endpoint: Option<String>,
    /// Region used for signing.
    pub region: String,
    /// Static access key id; `None` leaves credentials to the AWS environment (web identity, ECS, instance metadata).
    pub access_key_id: Option<String>,
    /// Static secret key, with `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Allow plain `http://` endpoints.
    pub allow_http: bool,
}

impl S3Options {
    /// Options for `bucket` at the bucket root, AWS endpoint, default region and no static credentials.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: None,
            endpoint: None,
            region: DEFAULT_REGION.to_string(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            allow_http: false,
        }
    }

    /// Options for `bucket`/`prefix` filled from the process environment: [`S3_ENDPOINT_ENV`] (else
    /// `AWS_ENDPOINT_URL`/`AWS_ENDPOINT`), `AWS_REGION` (else `AWS_DEFAULT_REGION`, else [`DEFAULT_REGION`]),
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`. Plain http is allowed when the endpoint is
    /// `http://`.
    pub fn from_env(bucket: &str, prefix: Option<&str>) -> Self {
        Self::from_env_with(bucket, prefix, |name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any variable lookup, so tests need not touch the process environment.
    fn from_env_with(bucket: &str, prefix: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Self {
        // Empty variables count as unset: `FOO= strato …` is a common way to clear one.
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let endpoint = var(S3_ENDPOINT_ENV).or_else(|| var("AWS_ENDPOINT_URL")).or_else(|| var("AWS_ENDPOINT"));
        let allow_http = endpoint.as_deref().is_some_and(|e| e.to_ascii_lowercase().starts_with("http://"));
        Self {
            bucket: bucket.to_string(),
            prefix: prefix.map(str::to_string),
            endpoint,
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).unwrap_or_else(|| DEFAULT_REGION.into()),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            allow_http,
        }
    }

    /// Checks the bucket name and prefix; returns the prefix as an object path.
    pub(crate) fn validated_prefix(&self) -> Result<Option<ObjectPath>, BlobError> {
        validate_bucket(&self.bucket)?;
        match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => Ok(None),
            Some(p) => ObjectPath::parse(p).map(Some).map_err(|e| {
                BlobError::InvalidLocation(format!("bad key prefix {p:?} in bucket {}: {e}", self.bucket))
            }),
        }
    }
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key id identifies the credentials without granting anything; the secret and token do, so they are
        // only said to be present.
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint.as_deref().map(without_userinfo))
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl fmt::Display for S3Options {
    /// `s3://bucket/prefix @ http://127.0.0.1:9000 (us-east-1)`, for start-up logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if let Some(p) = self.prefix.as_deref().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
            write!(f, "/{p}")?;
        }
        if let Some(e) = &self.endpoint {
            write!(f, " @ {}", without_userinfo(e))?;
        }
        write!(f, " ({})", self.region)
    }
}

impl fmt::Display for BlobLocation {
    /// The directory, or the S3 description of [`S3Options`]; never a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "{}", dir.display()),
            Self::S3(s3) => s3.fmt(f),
        }
    }
}

impl BlobLocation {
    /// Parses a `--storage` value: empty means `default_local_root`; a path or `file:///absolute/path` is a local
    /// directory; `s3://bucket[/prefix]` is S3 configured by [`S3Options::from_env`].
    pub fn parse(storage: &str, default_local_root: &Path) -> Result<Self, BlobError> {
        Self::parse_with_env(storage, default_local_root, |name| std::env::var(name).ok())
    }

    fn parse_with_env(
        storage: &str,
        default_local_root: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, BlobError> {
        let storage = storage.trim();
        if storage.is_empty() {
            return Ok(Self::Local(default_local_root.to_path_buf()));
        }
        // Anything without a scheme is a path, relative ones included (`./blobs`).
        let Some((scheme, rest)) = storage.split_once("://") else {
            return Ok(Self::Local(PathBuf::from(storage)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                let url = url::Url::parse(storage)
                    .map_err(|e| BlobError::InvalidLocation(format!("bad file URL {storage:?}: {e}")))?;
                // `to_file_path` refuses remote hosts and decodes `%20` and friends.
                let path = url.to_file_path().map_err(|()| {
                    BlobError::InvalidLocation(format!(
                        "file URL {storage:?} must name an absolute local path, as in file:///var/lib/strato/blobs"
                    ))
                })?;
                Ok(Self::Local(path))
            }
            "s3" => {
                if rest.contains(['?', '#']) {
                    return Err(BlobError::InvalidLocation(format!(
                        "S3 location {storage:?} has a query or fragment; configure the endpoint with \
                         {S3_ENDPOINT_ENV} and credentials with the AWS_* variables"
                    )));
                }
                let (bucket, prefix) = match rest.split_once('/') {
                    Some((bucket, prefix)) => (bucket, Some(prefix.trim_matches('/')).filter(|p| !p.is_empty())),
                    None => (rest, None),
                };
                let options = S3Options::from_env_with(bucket, prefix, env);
                options.validated_prefix()?;
                Ok(Self::S3(options))
            }
            other => Err(BlobError::InvalidLocation(format!(
                "unsupported storage scheme {other:?} in {storage:?}; expected {ACCEPTED}"
            ))),
        }
    }
}

/// S3 and compatible servers accept letters, digits, `.`, `-` (and `_` in old AWS buckets); anything else is a typo
/// that would otherwise surface as an opaque HTTP error on the first request.
fn validate_bucket(bucket: &str) -> Result<(), BlobError> {
    if bucket.is_empty() {
        return Err(BlobError::InvalidLocation(format!("the S3 location names no bucket; expected {ACCEPTED}")));
    }
    if !bucket.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
        return Err(BlobError::InvalidLocation(format!(
            "bad S3 bucket name {bucket:?}: use letters, digits, '.', '-' and '_'"
        )));
    }
    Ok(())
}

/// `http://user:pass@host/` → `http://***@host/`: an endpoint may carry credentials that logs must not show.
fn without_userinfo(endpoint: &str) -> String {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("", endpoint));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let sep = if scheme.is_empty() { "" } else { "://" };
            format!("{scheme}{sep}***{}", &rest[at..])
        }
        None => endpoint.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(storage: &str, env: &[(&str, &str)]) -> Result<BlobLocation, BlobError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        BlobLocation::parse_with_env(storage, Path::new("/data/blobs"), |k| env.get(k).cloned())
    }

    fn s3(storage: &str, env: &[(&str, &str)]) -> S3Options {
        match parse(storage, env).unwrap() {
            BlobLocation::S3(o) => o,
            other => panic!("{storage} parsed as {other:?}"),
        }
    }

    fn invalid(storage: &str) -> String {
        match parse(storage, &[]) {
            Err(BlobError::InvalidLocation(m)) => m,
            other => panic!("{storage} gave {other:?}"),
        }
    }

    #[test]
    fn local_paths_and_file_urls() {
        assert_eq!(parse("", &[]).unwrap(), BlobLocation::Local("/data/blobs".into()));
        assert_eq!(parse("  ", &[]).unwrap(), BlobLocation::Local("/data/blobs".into()));
        assert_eq!(parse("./blobs", &[]).unwrap(), BlobLocation::Local("./blobs".into()));
        assert_eq!(parse("/srv/blobs", &[]).unwrap(), BlobLocation::Local("/srv/blobs".into()));
        assert_eq!(parse("file:///srv/my%20blobs", &[]).unwrap(), BlobLocation::Local("/srv/my blobs".into()));
        assert_eq!(parse("FILE:///srv/b", &[]).unwrap(), BlobLocation::Local("/srv/b".into()));
        assert!(invalid("file://server/share").contains("absolute local path"));
    }

    #[test]
    fn s3_urls_take_bucket_and_prefix() {
        let o = s3("s3://models", &[]);
        assert_eq!((o.bucket.as_str(), o.prefix.as_deref()), ("models", None));
        let o = s3("s3://models/", &[]);
        assert_eq!((o.bucket.as_str(), o.prefix.as_deref()), ("models", None));
        let o = s3("s3://models/prod/eu/", &[]);
        assert_eq!((o.bucket.as_str(), o.prefix.as_deref()), ("models", Some("prod/eu")));
        let o = s3("S3://my.bucket-1/p", &[]);
        assert_eq!((o.bucket.as_str(), o.prefix.as_deref()), ("my.bucket-1", Some("p")));
    }

    #[test]
    fn s3_options_come_from_the_environment() {
        // Nothing set: AWS itself, default region, credentials left to the AWS credential chain.
        let o = s3("s3://b", &[]);
        assert_eq!(o, S3Options::new("b"));

        let o = s3(
            "s3://b/p",
            &[
                (S3_ENDPOINT_ENV, "http://127.0.0.1:9000"),
                ("AWS_ENDPOINT_URL", "https://ignored.example"),
                ("AWS_DEFAULT_REGION", "eu-west-3"),
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
                ("AWS_SESSION_TOKEN", "t0ken"),
            ],
        );
        assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(o.allow_http);
        assert_eq!(o.region, "eu-west-3");
        assert_eq!(o.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
        assert_eq!(o.secret_access_key.as_deref(), Some("s3cr3t"));
        assert_eq!(o.session_token.as_deref(), Some("t0ken"));

        // AWS_REGION wins over AWS_DEFAULT_REGION; an https endpoint does not allow http; empty means unset.
        let o = s3(
            "s3://b",
            &[
                ("AWS_ENDPOINT_URL", "https://minio.internal"),
                ("AWS_REGION", "ap-south-1"),
                ("AWS_DEFAULT_REGION", "x"),
            ],
        );
        assert_eq!(
            (o.endpoint.as_deref(), o.allow_http, o.region.as_str()),
            (Some("https://minio.internal"), false, "ap-south-1")
        );
        let o = s3("s3://b", &[("AWS_REGION", ""), (S3_ENDPOINT_ENV, " ")]);
        assert_eq!((o.endpoint, o.region.as_str()), (None, DEFAULT_REGION));
    }

    #[test]
    fn bad_locations_say_what_is_accepted() {
        let m = invalid("gs://bucket/x");
        assert!(m.contains("\"gs\"") && m.contains("s3://bucket[/prefix]") && m.contains("file:///"), "{m}");
        assert!(invalid("http://127.0.0.1:9000/bucket").contains("unsupported storage scheme"));
        assert!(invalid("s3://").contains("names no bucket"));
        assert!(invalid("s3:///prefix").contains("names no bucket"));
        assert!(invalid("s3://bad bucket/x").contains("bad S3 bucket name"));
        assert!(invalid("s3://b/a//c").contains("bad key prefix"));
        assert!(invalid("s3://b/a/../c").contains("bad key prefix"));
        assert!(invalid("s3://b/p?endpoint=x").contains(S3_ENDPOINT_ENV));
    }

    #[test]
    fn display_and_debug_hide_secrets() {
        let o = S3Options {
            prefix: Some("prod".into()),
            endpoint: Some("http://admin:hunter2@127.0.0.1:9000".into()),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI".into()),
            session_token: Some("FwoGZXIvYXdzE".into()),
            allow_http: true,
            ..S3Options::new("models")
        };
        let location = BlobLocation::S3(o.clone());
        assert_eq!(location.to_string(), "s3://models/prod @ http://***@127.0.0.1:9000 (us-east-1)");
        assert_eq!(S3Options::new("b").to_string(), "s3://b (us-east-1)");
        for text in [format!("{location:?}"), format!("{o:?}"), location.to_string()] {
            for secret in ["wJalrXUtnFEMI", "FwoGZXIvYXdzE", "hunter2"] {
                assert!(!text.contains(secret), "{secret} leaked in {text}");
            }
        }
        assert!(format!("{o:?}").contains("<redacted>"));
        assert_eq!(BlobLocation::Local("/srv/b".into()).to_string(), "/srv/b");
    }
}
