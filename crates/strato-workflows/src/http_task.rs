//! `arn:aws:states:::http:invoke`: a Task state calls an HTTP API, as AWS's HTTP task does — `ApiEndpoint`,
//! `Method`, `Headers`, `QueryParameters`, `RequestBody` (JSON, or form-encoded with `Transform`) in; `StatusCode`,
//! `StatusText`, `Headers` and `ResponseBody` (JSON when it parses) out; a non-2xx answer is the error
//! `States.Http.StatusCode.<code>`. Only hosts on the allow-list (`--workflows-http-allow`) may be called: a
//! workflow cannot reach the server's own network by default.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::error::StatesError;

/// The resource.
pub const HTTP_INVOKE: &str = "arn:aws:states:::http:invoke";

/// Largest response body kept (AWS's payload limit).
const MAX_BODY: usize = 256 * 1024;

/// HTTP tasks' settings: the hosts they may call and the client that calls them.
#[derive(Debug, Clone, Default)]
pub struct HttpTasks {
    allow: Vec<String>,
    client: reqwest::Client,
}

impl HttpTasks {
    /// HTTP tasks that may call these hosts (`host` or `host:port`; `*` alone allows any host).
    pub fn new(allow: Vec<String>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            allow: allow.into_iter().map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect(),
            client,
        }
    }

    fn allowed(&self, url: &reqwest::Url) -> bool {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let with_port = url.port_or_known_default().map(|p| format!("{host}:{p}"));
        self.allow.iter().any(|a| a == "*" || *a == host || Some(a) == with_port.as_ref())
    }

    /// Calls the API a task's parameters describe.
    pub async fn invoke(&self, params: &Value) -> Result<Value, StatesError> {
        let bad = |m: String| StatesError::runtime(format!("http:invoke: {m}"));
        let endpoint = params
            .get("ApiEndpoint")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("Parameters.ApiEndpoint (a URL) is required".into()))?;
        let mut url =
            reqwest::Url::parse(endpoint).map_err(|e| bad(format!("ApiEndpoint {endpoint:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("ApiEndpoint {endpoint:?} must be http or https")));
        }
        if !self.allowed(&url) {
            return Err(StatesError::new(
                "States.Http.Socket",
                format!(
                    "the host {:?} is not on Strato's allow-list for HTTP tasks (add it with --workflows-http-allow)",
                    url.host_str().unwrap_or_default()
                ),
            ));
        }
        let method =
            params.get("Method").and_then(Value::as_str).ok_or_else(|| bad("Parameters.Method is required".into()))?;
        let method = match method {
            "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "HEAD" => {
                reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| bad(e.to_string()))?
            }
            other => {
                return Err(bad(format!("Method {other:?} is not GET, POST, PUT, DELETE, PATCH, OPTIONS or HEAD")))
            }
        };
        if let Some(q) = params.get("QueryParameters") {
            let q = q.as_object().ok_or_else(|| bad("QueryParameters must be an object".into()))?;
            let mut pairs = url.query_pairs_mut();
            for (k, v) in q {
                pairs.append_pair(k, &scalar(v));
            }
        }
        let mut req = self.client.request(method, url);
        if let Some(h) = params.get("Headers") {
            for (k, v) in h.as_object().ok_or_else(|| bad("Headers must be an object".into()))? {
                req = req.header(k.as_str(), scalar(v));
            }
        }
        let form = params.pointer("/Transform/RequestBodyEncoding").and_then(Value::as_str) == Some("URL_ENCODED");
        match params.get("RequestBody") {
            None => {}
            Some(Value::Object(m)) if form => {
                let pairs: Vec<(String, String)> = m.iter().map(|(k, v)| (k.clone(), scalar(v))).collect();
                req = req.form(&pairs);
            }
            Some(Value::String(s)) => req = req.body(s.clone()),
            Some(v) => req = req.json(v),
        }
        let resp = req.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "failed"
            };
            StatesError::new("States.Http.Socket", format!("the HTTP call to {endpoint} {kind}"))
        })?;
        let status = resp.status();
        let mut headers = Map::new();
        for (k, v) in resp.headers() {
            headers.insert(k.as_str().to_string(), json!([v.to_str().unwrap_or_default()]));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|_| StatesError::new("States.Http.Socket", format!("reading {endpoint}'s answer failed")))?;
        if bytes.len() > MAX_BODY {
            return Err(StatesError::data_limit(format!(
                "the answer of {endpoint} is {} bytes, over 256 KiB",
                bytes.len()
            )));
        }
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
        let out = json!({"Headers": headers, "ResponseBody": body, "StatusCode": status.as_u16(),
            "StatusText": status.canonical_reason().unwrap_or_default()});
        if !status.is_success() {
            return Err(StatesError::new(format!("States.Http.StatusCode.{}", status.as_u16()), out.to_string()));
        }
        Ok(out)
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
