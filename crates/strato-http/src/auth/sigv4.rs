//! AWS Signature Version 4 verification, for AWS clients (the CLI, boto3, the SDKs) calling with access keys.
//!
//! The server recomputes the signature the client made over the canonical request (method, path, query, the
//! headers it signed, the payload's SHA-256) with the secret it holds, compares in constant time, and refuses
//! timestamps more than five minutes off, as AWS does. Written here rather than taken from a crate: the verifying
//! crates canonicalise the path once (S3's rule), where every other service — Lambda among them — signs the
//! already-encoded path encoded again, and none checks the clock.

use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The one algorithm AWS clients sign with.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's timestamp may be from the server's clock (AWS: five minutes).
pub const MAX_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Why a signed request is refused; each maps to the AWS error a client expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The `Authorization` header or the date is malformed (AWS: `IncompleteSignatureException`).
    #[error("{0}")]
    Incomplete(String),
    /// The timestamp is too far from now (AWS: `InvalidSignatureException`, "Signature expired").
    #[error("{0}")]
    Expired(String),
    /// The signature does not match (AWS: `InvalidSignatureException`).
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
         Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key id.
    pub access_key_id: String,
    /// The scope's date (`YYYYMMDD`).
    pub date: String,
    /// The scope's region.
    pub region: String,
    /// The scope's service (`lambda`, `s3`, …).
    pub service: String,
    /// Lower-case names of the signed headers, as listed.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

/// Whether an `Authorization` header value is a SigV4 signature.
pub fn is_sigv4(header: &str) -> bool {
    header.trim_start().starts_with(ALGORITHM)
}

/// Parses the `Authorization` header.
pub fn parse_authorization(header: &str) -> Result<Authorization, SigV4Error> {
    let bad = |what: &str| SigV4Error::Incomplete(format!("Authorization header {what}"));
    let rest = header.trim().strip_prefix(ALGORITHM).ok_or_else(|| bad("must start with AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v.trim()),
            Some(("SignedHeaders", v)) => signed = Some(v.trim()),
            Some(("Signature", v)) => signature = Some(v.trim()),
            _ => return Err(bad(&format!("has an element that is not Key=Value: {:?}", part.trim()))),
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(bad("needs Credential, SignedHeaders and Signature"));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(bad("Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request"));
    };
    if key.is_empty() || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("Credential has an empty key id or a date that is not YYYYMMDD"));
    }
    let signed_headers: Vec<String> = signed.split(';').map(|h| h.trim().to_ascii_lowercase()).collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(bad("SignedHeaders must include host"));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("Signature must be 64 hex digits"));
    }
    Ok(Authorization {
        access_key_id: (*key).to_string(),
        date: (*date).to_string(),
        region: (*region).to_string(),
        service: (*service).to_string(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

/// The parts of a request a signature covers.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path as sent (percent-encoded as on the wire).
    pub path: &'a str,
    /// The query string as sent, without `?`.
    pub query: &'a str,
    /// Every header, names in any case, repeated names as repeated entries in arrival order.
    pub headers: Vec<(&'a str, &'a str)>,
    /// Hex SHA-256 of the body.
    pub payload_sha256: String,
}

impl SignedRequest<'_> {
    /// Values of a header, in order.
    fn values(&self, name: &str) -> impl Iterator<Item = &str> + '_ {
        let name = name.to_string();
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(&name)).map(|(_, v)| *v)
    }

    /// The request's timestamp: `X-Amz-Date`, else `Date` in the same basic format.
    pub fn amz_date(&self) -> Option<&str> {
        self.values("x-amz-date").next().or_else(|| self.values("date").next())
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, upper-case hex (SigV4's `UriEncode`).
fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// The canonical path: S3 signs the path as sent; every other service signs it encoded once more (what AWS's
/// signers do to the already-encoded path).
fn canonical_uri(path: &str, service: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    if service == "s3" {
        path.to_string()
    } else {
        uri_encode(path, true)
    }
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&decode(k), false), uri_encode(&decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// A header value as signed: trimmed, runs of spaces made one.
fn canonical_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The canonical request (exposed for tests and for explaining a mismatch in debug logs).
pub fn canonical_request(auth: &Authorization, req: &SignedRequest<'_>) -> String {
    let headers: String = auth
        .signed_headers
        .iter()
        .map(|h| {
            let values: Vec<String> = req.values(h).map(canonical_value).collect();
            format!("{h}:{}\n", values.join(","))
        })
        .collect();
    format!(
        "{}\n{}\n{}\n{headers}\n{}\n{}",
        req.method,
        canonical_uri(req.path, &auth.service),
        canonical_query(req.query),
        auth.signed_headers.join(";"),
        req.payload_sha256
    )
}

/// The signature `secret` makes over the request at `amz_date`.
pub fn signature(auth: &Authorization, req: &SignedRequest<'_>, amz_date: &str, secret: &str) -> String {
    let creq = canonical_request(auth, req);
    let scope = format!("{}/{}/{}/aws4_request", auth.date, auth.region, auth.service);
    let to_sign = format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(creq.as_bytes())));
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    for part in [auth.region.as_bytes(), auth.service.as_bytes(), b"aws4_request"] {
        key = hmac(&key, part);
    }
    hex::encode(hmac(&key, to_sign.as_bytes()))
}

/// Checks the request's timestamp against `now` and its signature against `secret`.
pub fn verify(
    auth: &Authorization,
    req: &SignedRequest<'_>,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<(), SigV4Error> {
    let amz_date = req
        .amz_date()
        .ok_or_else(|| SigV4Error::Incomplete("the request needs an X-Amz-Date header (YYYYMMDDTHHMMSSZ)".into()))?;
    let at = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| SigV4Error::Incomplete(format!("X-Amz-Date {amz_date:?} is not YYYYMMDDTHHMMSSZ")))?
        .and_utc();
    if !amz_date.starts_with(&auth.date) {
        return Err(SigV4Error::Incomplete(format!(
            "the Credential's date {} is not the date of X-Amz-Date {amz_date}",
            auth.date
        )));
    }
    let fmt = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    if at < now - MAX_SKEW {
        return Err(SigV4Error::Expired(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            fmt(now - MAX_SKEW),
            fmt(now)
        )));
    }
    if at > now + MAX_SKEW {
        return Err(SigV4Error::Expired(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
            fmt(now + MAX_SKEW),
            fmt(now)
        )));
    }
    let expected = signature(auth, req, amz_date, secret);
    if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(())
    } else {
        Err(SigV4Error::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// A `.req` file of AWS's suite: request line, `Name:value` headers, a blank line, the body.
    fn parse_req(text: &str) -> (String, String, Vec<(String, String)>, String) {
        let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
        let mut lines = head.lines();
        let line = lines.next().unwrap();
        let method = line.split(' ').next().unwrap().to_string();
        let target = line[method.len() + 1..line.len() - " HTTP/1.1".len()].to_string();
        let headers = lines.map(|l| l.split_once(':').map(|(n, v)| (n.to_string(), v.to_string())).unwrap()).collect();
        (method, target, headers, body.to_string())
    }

    #[test]
    fn aws_test_suite_signatures_verify() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws-sig-v4-test-suite");
        let now = DateTime::parse_from_rfc3339("2015-08-30T12:36:00Z").unwrap().with_timezone(&Utc);
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "req") {
                continue;
            }
            let (method, target, headers, body) = parse_req(&std::fs::read_to_string(&path).unwrap());
            let authz = std::fs::read_to_string(path.with_extension("authz")).unwrap();
            let auth = parse_authorization(&authz).unwrap();
            assert_eq!((auth.access_key_id.as_str(), auth.service.as_str()), ("AKIDEXAMPLE", "service"));
            let (path_part, query) = target.split_once('?').unwrap_or((&target, ""));
            let req = SignedRequest {
                method: &method,
                path: path_part,
                query,
                headers: headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect(),
                payload_sha256: hex::encode(Sha256::digest(body.as_bytes())),
            };
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            assert_eq!(verify(&auth, &req, SECRET, now), Ok(()), "{name}:\n{}", canonical_request(&auth, &req));
            assert_eq!(verify(&auth, &req, "wrong", now), Err(SigV4Error::Mismatch), "{name}");
            let tampered = SignedRequest { payload_sha256: hex::encode(Sha256::digest(b"x")), ..req.clone() };
            assert_eq!(verify(&auth, &tampered, SECRET, now), Err(SigV4Error::Mismatch), "{name}");
            let late = now + chrono::Duration::minutes(6);
            let Err(SigV4Error::Expired(m)) = verify(&auth, &req, SECRET, late) else { panic!("{name}: not expired") };
            assert_eq!(
                m,
                "Signature expired: 20150830T123600Z is now earlier than 20150830T123700Z (20150830T124200Z - 5 min.)"
            );
            assert!(verify(&auth, &req, SECRET, now + chrono::Duration::minutes(4)).is_ok());
            assert!(matches!(
                verify(&auth, &req, SECRET, now - chrono::Duration::minutes(6)),
                Err(SigV4Error::Expired(_))
            ));
            checked += 1;
        }
        assert_eq!(checked, 17, "every vector copied into the fixtures was checked");
    }

    #[test]
    fn paths_are_encoded_again_except_for_s3() {
        // botocore sends `fn%3A1` for the name `fn:1` and signs `fn%253A1` for Lambda, `fn%3A1` for S3.
        assert_eq!(
            canonical_uri("/2015-03-31/functions/fn%3A1/invocations", "lambda"),
            "/2015-03-31/functions/fn%253A1/invocations"
        );
        assert_eq!(canonical_uri("/bucket/a%20b", "s3"), "/bucket/a%20b");
        assert_eq!(canonical_uri("", "lambda"), "/");
        assert_eq!(canonical_query("b=2&a=&a=1&c"), "a=&a=1&b=2&c=");
        assert_eq!(canonical_query("Marker=x%2Fy&MaxItems=1"), "Marker=x%2Fy&MaxItems=1");
    }

    #[test]
    fn malformed_headers_are_refused_with_the_reason() {
        let ok =
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, \
                  Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        assert!(parse_authorization(ok).is_ok());
        for bad in [
            "AWS4-HMAC-SHA1 Credential=a",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/lambda, SignedHeaders=host, Signature=00",
            &ok.replace("host;", ""),
            &ok.replace("5fa0", "zzzz"),
            &ok.replace("Signature=", "Sig="),
            &ok.replace("20150830", "2015083"),
        ] {
            assert!(matches!(parse_authorization(bad), Err(SigV4Error::Incomplete(_))), "{bad}");
        }
    }

    /// Random text from an alphabet that exercises the parser's separators and escapes.
    fn random_text(rng: &mut impl Rng, max: usize) -> String {
        const ALPHABET: &[char] =
            &['a', 'Z', '0', '=', ',', '/', ';', ' ', '%', '&', '~', '.', '-', '_', 'é', '\u{1F600}', '+'];
        let n = rng.random_range(0..=max);
        (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())]).collect()
    }

    #[test]
    fn any_header_value_parses_or_is_refused_without_panic() {
        let mut rng = rand::rng();
        for _ in 0..5_000 {
            let s = random_text(&mut rng, 120);
            let _ = parse_authorization(&s);
            let _ = parse_authorization(&format!("AWS4-HMAC-SHA256 {s}"));
            let _ = parse_authorization(&format!("AWS4-HMAC-SHA256 Credential={s}, SignedHeaders=host, Signature={s}"));
        }
    }

    #[test]
    fn canonical_query_is_order_independent_and_idempotent_on_its_output() {
        let mut rng = rand::rng();
        for _ in 0..2_000 {
            let mut pairs: Vec<String> = (0..rng.random_range(0..6))
                .map(|_| format!("{}={}", random_text(&mut rng, 8), random_text(&mut rng, 8)))
                .collect();
            let pairs: Vec<String> = pairs.drain(..).map(|p| p.replace('&', "")).collect();
            let forward = canonical_query(&pairs.join("&"));
            let backward = canonical_query(&pairs.iter().rev().cloned().collect::<Vec<_>>().join("&"));
            assert_eq!(forward, backward);
            assert_eq!(canonical_query(&forward), forward, "canonical text is a fixed point");
        }
    }
}
