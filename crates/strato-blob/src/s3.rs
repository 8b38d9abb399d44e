//! Builds the S3 backend from [`S3Options`]: path-style requests for non-AWS servers, bounded retries and timeouts.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::presign::Presigner;
use crate::{BlobError, S3Options};

/// A refused or dropped connection (a server restarting, a network blip) and 5xx answers are retried with jittered
/// backoff for about 10 s, then the call fails with the last error rather than hanging a job. object_store draws
/// each pause between `init_backoff` and twice the previous one, so pauses grow slowly from 0.5 s (capped at 3 s):
/// an outage shorter than 4 s (8 × 0.5 s) is always ridden out, and the worst case from first attempt to error
/// is about 13 s plus the connect timeout.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(3),
            base: 2.0,
        },
        max_retries: 8,
        retry_timeout: Duration::from_secs(10),
    }
}

/// A host that drops packets fails the connect in 5 s. The request timeout covers the whole body: 60 s leaves a
/// 50 MB dataset room on a slow link, and bounds a server that accepts connections but never answers.
fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(60))
}

/// The bucket as an `ObjectStore`, keys under the options' prefix, and the signer of presigned URLs for it.
pub(crate) fn build(options: &S3Options) -> Result<(Arc<dyn ObjectStore>, Presigner), BlobError> {
    let prefix = options.validated_prefix()?;
    let invalid = |reason: String| BlobError::InvalidLocation(format!("cannot use {options}: {reason}"));

    // 1. Static keys mean nothing else is read from the environment, so tests are deterministic. Without them,
    //    start from object_store's own environment reader so the rest of the AWS credential chain works (web
    //    identity on EKS, ECS container credentials, then instance metadata).
    let mut builder = match (&options.access_key_id, &options.secret_access_key) {
        (Some(id), Some(secret)) => {
            let b = AmazonS3Builder::new().with_access_key_id(id).with_secret_access_key(secret);
            match &options.session_token {
                Some(token) => b.with_token(token),
                None => b,
            }
        }
        (None, None) => AmazonS3Builder::from_env(),
        (Some(_), None) => return Err(invalid("an access key id is set without its secret access key".into())),
        (None, Some(_)) => return Err(invalid("a secret access key is set without its access key id".into())),
    };

    // 2. Where to send requests. Non-AWS servers (MinIO, moto, Ceph) are addressed path-style
    //    (`{endpoint}/{bucket}/{key}`): they rarely have a DNS name per bucket. AWS gets virtual-hosted style, except
    //    for dotted bucket names, which break its TLS wildcard certificate.
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let custom_endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint).is_some();
    builder = builder
        .with_bucket_name(&options.bucket)
        .with_region(&options.region)
        .with_virtual_hosted_style_request(!custom_endpoint && !options.bucket.contains('.'))
        .with_client_options(client_options(options.allow_http))
        .with_retry(retry_config());

    // 3. Build; the prefix store keeps every key under the prefix (and the signer adds it itself). The client is
    //    a cheap clone (an `Arc` inside), shared by the store and the signer.
    let s3 = builder.build().map_err(|e| invalid(e.to_string()))?;
    let signer = Presigner::S3 { s3: Arc::new(s3.clone()), prefix: prefix.clone() };
    let store: Arc<dyn ObjectStore> = match prefix {
        Some(prefix) => Arc::new(PrefixStore::new(s3, prefix)),
        None => Arc::new(s3),
    };
    Ok((store, signer))
}
