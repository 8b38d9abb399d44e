//! Who is calling (authentication) and what they may do (authorization).
//!
//! 1. The `authenticate` route layer turns credentials into a [`Principal`]: the admin token, a bearer JWT, or
//!    nothing (anonymous, let through only on public routes). With no credentials configured at all, every caller is
//!    an admin: the CLI only allows that on a loopback address.
//! 2. Handlers ask the principal before touching a resource (`may_use_model`, `may_edit_mentor`, …). The check
//!    comes before any lookup, so a denied caller learns nothing about whether the resource exists.

pub mod jwt;
pub mod policy;

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use strato_types::ErrorCode;
use subtle::ConstantTimeEq;

use crate::hygiene::PrincipalLabel;
use crate::{ApiError, AppState};
pub use jwt::{JwksSource, JwtOptions, JwtVerifier};
pub use policy::Policy;

/// Which claims carry what, so tokens from different issuers map onto the same principal.
#[derive(Clone, Debug)]
pub struct ClaimsMapping {
    /// The caller's id (MentorPal: `id`; Cognito and most issuers: `sub`). The first present wins.
    pub subject: Vec<String>,
    /// Role names, a string or an array (MentorPal: `role`).
    pub roles: Vec<String>,
    /// Group names, for the policy file (Cognito: `cognito:groups`).
    pub groups: Vec<String>,
    /// Mentors the caller owns and may edit (MentorPal: `mentorIds`).
    pub owned_mentors: Vec<String>,
}

impl Default for ClaimsMapping {
    fn default() -> Self {
        Self {
            subject: vec!["sub".into(), "id".into()],
            roles: vec!["role".into(), "roles".into()],
            groups: vec!["cognito:groups".into(), "groups".into()],
            owned_mentors: vec!["mentorIds".into()],
        }
    }
}

/// Authentication and authorization settings.
#[derive(Clone, Default)]
pub struct AuthOptions {
    /// Bootstrap credential: `Authorization: Bearer <admin token>` is an admin.
    pub admin_token: Option<String>,
    /// Bearer JWTs.
    pub jwt: Option<JwtOptions>,
    /// Claim names.
    pub claims: ClaimsMapping,
    /// Group grants.
    pub policy: Policy,
    /// Routes anonymous callers may use: `"GET /classifier/questions"` or a bare pattern for any method; a trailing
    /// `*` matches a prefix.
    pub public_routes: Vec<String>,
}

impl std::fmt::Debug for AuthOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthOptions")
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>"))
            .field("jwt", &self.jwt)
            .field("claims", &self.claims)
            .field("public_routes", &self.public_routes)
            .finish()
    }
}

impl AuthOptions {
    /// Whether any credential is configured; without one, every caller is an admin.
    pub fn enabled(&self) -> bool {
        self.admin_token.is_some() || self.jwt.is_some()
    }
}

/// The running auth state shared by requests.
pub(crate) struct Auth {
    pub opts: AuthOptions,
    pub verifier: Option<JwtVerifier>,
    pub policy: Arc<Policy>,
}

impl Auth {
    pub fn new(opts: AuthOptions) -> Self {
        let verifier = opts.jwt.clone().map(JwtVerifier::new);
        let policy = Arc::new(opts.policy.clone());
        Self { opts, verifier, policy }
    }

    fn is_public(&self, method: &str, route: &str) -> bool {
        self.opts.public_routes.iter().any(|p| {
            let (m, pattern) = match p.split_once(' ') {
                Some((m, pat)) => (Some(m), pat.trim()),
                None => (None, p.as_str()),
            };
            let method_ok = m.is_none_or(|m| m.eq_ignore_ascii_case(method));
            let path_ok = match pattern.strip_suffix('*') {
                Some(prefix) => route.starts_with(prefix),
                None => route == pattern,
            };
            method_ok && path_ok
        })
    }
}

/// A caller's standing, from most to least powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Predict and answer where granted.
    User,
    /// Also create, train and delete what it is granted.
    Editor,
    /// Everything.
    Admin,
}

/// How the caller proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// No credentials are configured: everyone is an admin (loopback only).
    Open,
    /// The admin token.
    AdminToken,
    /// A bearer JWT.
    Jwt,
    /// An API key (`x-api-key`).
    ApiKey,
    /// No credentials, on a public route.
    Anonymous,
}

/// The authenticated caller, in each request's extensions.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The caller's id (`admin`, `anonymous`, or the token's subject).
    pub subject: String,
    /// How they authenticated.
    pub credential: Credential,
    /// Their highest role.
    pub role: Role,
    /// May edit every mentor and model (MentorPal CONTENT_MANAGER, and the SUPER_ variant).
    pub edit_any: bool,
    /// Mentors they own.
    pub owned_mentors: Vec<String>,
    /// Their groups, for the policy.
    pub groups: Vec<String>,
    /// Anonymous use is allowed on this route.
    pub public_route: bool,
    /// Models granted directly (an API key's), `*` for all.
    pub granted_models: Vec<String>,
    /// Mentors granted directly (an API key's), `*` for all.
    pub granted_mentors: Vec<String>,
    /// The API key's own limits (unset fields take the server's defaults).
    pub plan: strato_types::UsagePlan,
    policy: Arc<Policy>,
}

fn listed(list: &[String], id: &str) -> bool {
    list.iter().any(|x| x == "*" || x == id)
}

impl Principal {
    fn admin(subject: &str, credential: Credential, policy: Arc<Policy>) -> Self {
        Self {
            subject: subject.into(),
            credential,
            role: Role::Admin,
            edit_any: true,
            owned_mentors: Vec::new(),
            groups: Vec::new(),
            public_route: false,
            granted_models: Vec::new(),
            granted_mentors: Vec::new(),
            plan: Default::default(),
            policy,
        }
    }

    fn from_api_key(key: strato_types::ApiKeyRecord, policy: Arc<Policy>) -> Self {
        let role = match key.role.as_str() {
            "admin" => Role::Admin,
            "editor" => Role::Editor,
            _ => Role::User,
        };
        Self {
            subject: key.id,
            credential: Credential::ApiKey,
            role,
            edit_any: role == Role::Admin,
            owned_mentors: Vec::new(),
            groups: Vec::new(),
            public_route: false,
            granted_models: key.models,
            granted_mentors: key.mentors,
            plan: key.plan,
            policy,
        }
    }

    fn model_granted(&self, id: &str) -> bool {
        listed(&self.granted_models, id) || self.policy.allows_model(&self.groups, id)
    }

    fn mentor_granted(&self, id: &str) -> bool {
        listed(&self.granted_mentors, id) || self.policy.allows_mentor(&self.groups, id)
    }

    fn deny(&self, what: &str) -> ApiError {
        if self.credential == Credential::Anonymous {
            return ApiError::new(ErrorCode::Unauthorized, format!("{what} needs credentials: send a bearer token"));
        }
        ApiError::new(ErrorCode::Forbidden, format!("{} may not {what}", self.subject))
    }

    fn check(&self, ok: bool, what: impl FnOnce() -> String) -> Result<(), ApiError> {
        if ok {
            Ok(())
        } else {
            Err(self.deny(&what()))
        }
    }

    /// Admin-only operations: jobs, the DLQ, API keys.
    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        self.check(self.role == Role::Admin, || what.to_string())
    }

    /// Editors and admins: datasets, creating resources they are granted.
    pub fn require_editor(&self, what: &str) -> Result<(), ApiError> {
        self.check(self.role >= Role::Editor, || what.to_string())
    }

    /// May read or predict with model `id`.
    pub fn can_use_model(&self, id: &str) -> bool {
        self.public_route || self.edit_any || self.model_granted(id)
    }

    /// May predict with model `id`.
    pub fn may_use_model(&self, id: &str) -> Result<(), ApiError> {
        self.check(self.can_use_model(id), || format!("use model {id:?}"))
    }

    /// May train, replace or delete model `id`.
    pub fn may_edit_model(&self, id: &str) -> Result<(), ApiError> {
        let ok = self.edit_any || (self.role >= Role::Editor && self.model_granted(id));
        self.check(ok, || format!("change model {id:?}"))
    }

    /// May read or ask mentor `id`.
    pub fn can_use_mentor(&self, id: &str) -> bool {
        self.public_route || self.edit_any || self.owned_mentors.iter().any(|m| m == id) || self.mentor_granted(id)
    }

    /// May ask mentor `id`.
    pub fn may_use_mentor(&self, id: &str) -> Result<(), ApiError> {
        self.check(self.can_use_mentor(id), || format!("use mentor {id:?}"))
    }

    /// May edit or train mentor `id`: its owner, a content manager, or an editor granted it.
    pub fn may_edit_mentor(&self, id: &str) -> Result<(), ApiError> {
        let ok = self.edit_any
            || self.owned_mentors.iter().any(|m| m == id)
            || (self.role >= Role::Editor && self.mentor_granted(id));
        self.check(ok, || format!("change mentor {id:?}"))
    }

    /// May see a job: admins, and whoever may change the model or mentor it trains.
    pub fn may_see_job(&self, job: &strato_types::JobRecord) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            return Ok(());
        }
        let ok = match job.key.as_deref().and_then(|k| k.split_once(':')) {
            Some(("model", id)) => self.may_edit_model(id).is_ok(),
            Some(("mentor", id)) => self.may_edit_mentor(id).is_ok(),
            _ => false,
        };
        // Same answer as an unknown job, so job ids cannot be probed.
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::JobNotFound, format!("no job {:?}", job.id)))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the route has no authentication layer"))
    }
}

/// Reads a claim that may be a string or an array of strings.
fn strings(claims: &Map<String, Value>, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        match claims.get(n) {
            Some(Value::String(s)) => out.push(s.clone()),
            Some(Value::Array(a)) => out.extend(a.iter().filter_map(|v| v.as_str().map(String::from))),
            _ => {}
        }
    }
    out
}

/// Builds the principal a verified token describes. Role names follow MentorPal's (`ADMIN`, `CONTENT_MANAGER`,
/// `USER`, with `SUPER_` variants) and ours (`admin`, `editor`, `user`); groups with those names count as roles.
fn principal_from_claims(claims: &Map<String, Value>, map: &ClaimsMapping, policy: Arc<Policy>) -> Principal {
    let subject = map
        .subject
        .iter()
        .find_map(|n| match claims.get(n) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(x)) => Some(x.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "unknown".into());
    let groups = strings(claims, &map.groups);
    let mut role = Role::User;
    let mut edit_any = false;
    for r in strings(claims, &map.roles).iter().chain(&groups) {
        let r = r.to_ascii_lowercase();
        let r = r.strip_prefix("super_").unwrap_or(&r);
        match r {
            "admin" => {
                role = Role::Admin;
                edit_any = true;
            }
            "content_manager" => {
                role = role.max(Role::Editor);
                edit_any = true;
            }
            "editor" => role = role.max(Role::Editor),
            _ => {}
        }
    }
    Principal {
        subject,
        credential: Credential::Jwt,
        role,
        edit_any,
        owned_mentors: strings(claims, &map.owned_mentors),
        groups,
        public_route: false,
        granted_models: Vec::new(),
        granted_mentors: Vec::new(),
        plan: Default::default(),
        policy,
    }
}

fn unauthorized(message: impl Into<String>) -> Response {
    ApiError::new(ErrorCode::Unauthorized, message).into_response()
}

/// Route layer: resolves the caller, refuses bad or missing credentials (401), and records who it was.
pub(crate) async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let auth = &state.auth;
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let public = auth.is_public(req.method().as_str(), &route);
    let api_key = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).map(String::from);
    let bearer = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .map(String::from);

    let mut principal = if !auth.opts.enabled() {
        Principal::admin("local", Credential::Open, auth.policy.clone())
    } else if let Some(secret) = api_key {
        match state.strato.api_key_for_secret(&secret).await {
            Ok(Some(key)) => Principal::from_api_key(key, auth.policy.clone()),
            Ok(None) => return unauthorized("unknown or revoked API key"),
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else if let Some(token) = bearer {
        match resolve_bearer(auth, &token).await {
            Ok(p) => p,
            Err(resp) => return resp,
        }
    } else if public {
        Principal {
            role: Role::User,
            edit_any: false,
            ..Principal::admin("anonymous", Credential::Anonymous, auth.policy.clone())
        }
    } else {
        return unauthorized("this route needs credentials: send Authorization: Bearer <token>");
    };
    principal.public_route = public;
    let label = PrincipalLabel(format!("{:?}:{}", principal.credential, principal.subject).to_ascii_lowercase());

    // Limits: per key, per token subject, per client IP for anonymous callers; the admin token is never limited.
    let limits = &state.limits;
    let subject = match principal.credential {
        Credential::Open | Credential::AdminToken => None,
        Credential::ApiKey => Some(format!("key:{}", principal.subject)),
        Credential::Jwt => Some(format!("sub:{}", principal.subject)),
        Credential::Anonymous => {
            let ip = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
            Some(format!("ip:{}", ip.unwrap_or_else(|| "unknown".into())))
        }
    };
    let mut budget = None;
    if let Some(key) = subject {
        let plan = limits.plan(&principal.plan, principal.credential == Credential::Anonymous);
        let s = crate::limits::Subject { key, plan };
        match limits.check_rate(&s) {
            Ok(b) => budget = b,
            Err(refused) => {
                let mut res = refused.into_response();
                res.extensions_mut().insert(label);
                return res;
            }
        }
        if let Some(limit) = s.plan.daily_quota {
            let taken = state.strato.take_quota(&s.key, limits.opts.quota_window, limit).await;
            match taken.map(|(used, reset)| crate::limits::quota_budget(limit, used, reset)) {
                // The tighter of the two budgets is the one to report.
                Ok(Ok(q)) => {
                    budget = Some(match budget.take() {
                        Some(r) => r.tighter(q),
                        None => q,
                    })
                }
                Ok(Err(refused)) => {
                    let mut res = refused.into_response();
                    res.extensions_mut().insert(label);
                    return res;
                }
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
    }

    req.extensions_mut().insert(principal);
    let mut res = next.run(req).await;
    if let Some(b) = budget {
        b.write(res.headers_mut());
    }
    res.extensions_mut().insert(label);
    res
}

async fn resolve_bearer(auth: &Auth, token: &str) -> Result<Principal, Response> {
    // Constant-time: the comparison must not reveal how much of the token matched.
    if let Some(admin) = auth.opts.admin_token.as_deref() {
        if bool::from(token.as_bytes().ct_eq(admin.as_bytes())) {
            return Ok(Principal::admin("admin", Credential::AdminToken, auth.policy.clone()));
        }
    }
    let Some(verifier) = &auth.verifier else {
        return Err(unauthorized("wrong bearer token"));
    };
    match verifier.verify(token).await {
        Ok(claims) => Ok(principal_from_claims(&claims, &auth.opts.claims, auth.policy.clone())),
        Err(jwt::JwtError::Invalid(m)) => Err(unauthorized(m)),
        Err(e @ jwt::JwtError::Jwks(_)) => {
            tracing::error!(error = %e, "cannot check a bearer token");
            Err(ApiError::new(
                ErrorCode::AuthUnavailable,
                "the token's signing keys cannot be loaded right now; retry later",
            )
            .into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn mentorpal_roles_and_owned_mentors() {
        let map = ClaimsMapping::default();
        let p = Arc::new(Policy::default());
        let user = principal_from_claims(
            &claims(serde_json::json!({"id": "u1", "role": "USER", "mentorIds": ["a"]})),
            &map,
            p.clone(),
        );
        assert_eq!((user.subject.as_str(), user.role), ("u1", Role::User));
        assert!(user.may_edit_mentor("a").is_ok());
        assert!(user.may_edit_mentor("b").is_err());
        assert!(user.may_use_mentor("b").is_err());
        let cm = principal_from_claims(
            &claims(serde_json::json!({"id": "c", "role": "SUPER_CONTENT_MANAGER"})),
            &map,
            p.clone(),
        );
        assert!(cm.may_edit_mentor("b").is_ok() && cm.require_admin("x").is_err());
        let admin = principal_from_claims(&claims(serde_json::json!({"sub": "z", "role": "ADMIN"})), &map, p);
        assert!(admin.require_admin("x").is_ok());
    }

    #[test]
    fn cognito_groups_grant_models_through_the_policy() {
        let policy = Arc::new(Policy::parse(r#"{"planners": ["paris"]}"#, false).unwrap());
        let p = principal_from_claims(
            &claims(serde_json::json!({"sub": "s", "cognito:groups": ["planners"]})),
            &ClaimsMapping::default(),
            policy,
        );
        assert!(p.may_use_model("paris").is_ok());
        assert!(p.may_use_model("lyon").is_err());
        // Use, not change: a user role.
        assert!(p.may_edit_model("paris").is_err());
    }

    #[test]
    fn public_route_patterns() {
        let auth = Auth::new(AuthOptions {
            public_routes: vec!["GET /classifier/questions".into(), "/open/*".into()],
            ..Default::default()
        });
        assert!(auth.is_public("GET", "/classifier/questions"));
        assert!(!auth.is_public("POST", "/classifier/questions"));
        assert!(auth.is_public("DELETE", "/open/x/{id}"));
        assert!(!auth.is_public("GET", "/v1/models"));
    }
}
