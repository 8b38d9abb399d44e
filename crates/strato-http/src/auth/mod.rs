//! Who is calling (authentication) and what they may do (authorization).
//!
//! 1. The `authenticate` route layer turns credentials into a [`Principal`]: the admin token, a bearer JWT, an API
//!    key, or nothing (anonymous, let through only on public routes). With no credentials configured at all, every
//!    caller is an admin: the CLI only allows that on a loopback address. Rate limits and quotas are a layer of
//!    their own after it (`crate::limits::enforce`).
//! 2. Everything a caller may do is a list of [`Grant`]s — actions over resources by kind and id pattern — made
//!    from its role, its API key's lists and grants, its token's owned mentors and its groups' policy grants, each
//!    capped by its role. Handlers ask one question, [`Principal::may`] (`Action`, `ResourceRef`), whatever the
//!    resource kind: a capability adding a kind adds no authorization code. The check comes before any lookup, so a
//!    denied caller learns nothing about whether the resource exists.

pub mod jwt;
pub mod policy;
pub mod sigv4;

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use strato_types::{Action, Actions, ErrorCode, Grant, JobRecord, ResourceKind, ResourceRef};
use subtle::ConstantTimeEq;

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

impl Role {
    /// The most a grant may allow a caller of this role.
    pub fn cap(self) -> Actions {
        match self {
            Self::User => Actions::USE,
            Self::Editor => Actions::EDIT,
            Self::Admin => Actions::ALL,
        }
    }
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
    /// A SigV4 signature made with an access key (AWS clients).
    AccessKey,
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
    /// Everything they may do.
    pub grants: Vec<Grant>,
    /// Mentors they own (MentorPal's `mentorIds`), also among `grants`.
    pub owned_mentors: Vec<String>,
    /// Their groups, whose policy grants are among `grants`.
    pub groups: Vec<String>,
    /// Anonymous use is allowed on this route: anyone may read and use what it serves.
    pub public_route: bool,
    /// The API key's own limits (unset fields take the server's defaults).
    pub plan: strato_types::UsagePlan,
}

impl Principal {
    fn admin(subject: &str, credential: Credential) -> Self {
        Self {
            subject: subject.into(),
            credential,
            role: Role::Admin,
            grants: vec![Grant::everything()],
            owned_mentors: Vec::new(),
            groups: Vec::new(),
            public_route: false,
            plan: Default::default(),
        }
    }

    fn anonymous() -> Self {
        Self { role: Role::User, grants: Vec::new(), ..Self::admin("anonymous", Credential::Anonymous) }
    }

    fn from_api_key(key: strato_types::ApiKeyRecord) -> Self {
        let credential = if key.access_key_id.is_some() { Credential::AccessKey } else { Credential::ApiKey };
        let role = match key.role.as_str() {
            "admin" => Role::Admin,
            "editor" => Role::Editor,
            _ => Role::User,
        };
        let mut grants: Vec<Grant> = if role == Role::Admin { vec![Grant::everything()] } else { Vec::new() };
        grants.extend(listed(ResourceKind::MODEL, &key.models));
        grants.extend(listed(ResourceKind::MENTOR, &key.mentors));
        grants.extend(key.grants);
        Self {
            subject: key.id,
            credential,
            role,
            grants: cap(grants, role),
            owned_mentors: Vec::new(),
            groups: Vec::new(),
            public_route: false,
            plan: key.plan,
        }
    }

    /// Whether the caller may do `action` to `resource`.
    pub fn can(&self, action: Action, resource: &ResourceRef) -> bool {
        (self.public_route && matches!(action, Action::Read | Action::Use))
            || self.grants.iter().any(|g| g.allows(resource, action))
    }

    /// [`Principal::can`], or the refusal to answer with: 401 for anonymous callers, 403 otherwise.
    pub fn may(&self, action: Action, resource: &ResourceRef) -> Result<(), ApiError> {
        if self.can(action, resource) {
            return Ok(());
        }
        let verb = match action {
            Action::Read => "read",
            Action::Use => "use",
            Action::Edit => "change",
            Action::Admin => "administer",
        };
        Err(self.deny(&format!("{verb} {} {:?}", resource.kind, resource.id)))
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

    /// May see a job: admins, and whoever may change the resource it works on.
    pub fn may_see_job(&self, job: &JobRecord) -> Result<(), ApiError> {
        let ok = self.role == Role::Admin || job.resource.as_ref().is_some_and(|r| self.can(Action::Edit, r));
        // Same answer as an unknown job, so job ids cannot be probed.
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::JobNotFound, format!("no job {:?}", job.id)))
        }
    }
}

/// A list of ids (`*`: all) as grants of every action a role allows.
fn listed(kind: ResourceKind, ids: &[String]) -> impl Iterator<Item = Grant> + '_ {
    ids.iter().map(move |id| Grant::new(kind.as_str(), id.as_str(), Actions::ALL))
}

/// Cuts every grant down to what the role allows, dropping those left empty.
fn cap(grants: Vec<Grant>, role: Role) -> Vec<Grant> {
    grants.into_iter().map(|g| g.capped(role.cap())).filter(|g| !g.actions.is_empty()).collect()
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
/// `USER`, with `SUPER_` variants) and ours (`admin`, `editor`, `user`); groups with those names count as roles. A
/// content manager may change every resource; an owner may change its own mentors whatever its role; groups' grants
/// from the policy are capped by the role.
fn principal_from_claims(claims: &Map<String, Value>, map: &ClaimsMapping, policy: &Policy) -> Principal {
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
    let owned_mentors = strings(claims, &map.owned_mentors);
    let mut grants = cap(policy.grants_for(&groups), role);
    if edit_any {
        grants.push(Grant::new("*", "*", role.cap()));
    }
    grants.extend(owned_mentors.iter().map(|m| Grant::new(ResourceKind::MENTOR.as_str(), m.as_str(), Actions::EDIT)));
    Principal {
        subject,
        credential: Credential::Jwt,
        role,
        grants,
        owned_mentors,
        groups,
        public_route: false,
        plan: Default::default(),
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

    let signed =
        req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).is_some_and(sigv4::is_sigv4);
    let mut principal = if signed {
        match verify_signed(&state, req).await {
            Ok((p, r)) => {
                req = r;
                p
            }
            Err(resp) => return *resp,
        }
    } else if !auth.opts.enabled() {
        Principal::admin("local", Credential::Open)
    } else if let Some(secret) = api_key {
        match state.strato.keys().for_secret(&secret).await {
            Ok(Some(key)) => Principal::from_api_key(key),
            Ok(None) => return unauthorized("unknown or revoked API key"),
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else if let Some(token) = bearer {
        match resolve_bearer(auth, &token).await {
            Ok(p) => p,
            Err(resp) => return resp,
        }
    } else if public {
        Principal::anonymous()
    } else {
        return unauthorized("this route needs credentials: send Authorization: Bearer <token>");
    };
    principal.public_route = public;
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Largest body of a SigV4-signed request: the signature covers the body's hash, so it is read whole first (a
/// function's code archive, base64 in JSON, is the largest such body).
const MAX_SIGNED_BODY: usize = 80 << 20;

/// Checks a SigV4-signed request: the access key, the clock, the signature over the canonical request and the
/// body. Refusals are in AWS's shape, since the caller is an AWS client. With no credentials configured at all, a
/// signature by an unknown key is let through as the open server lets everyone (so `aws configure` with any key
/// works on a loopback server), while a known key's signature is still checked.
async fn verify_signed(state: &AppState, req: Request) -> Result<(Principal, Request), Box<Response>> {
    use axum::http::StatusCode;
    let refuse = |status: StatusCode, kind: &str, message: &str| Box::new(crate::aws_error(status, kind, message));
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let parsed = sigv4::parse_authorization(&header)
        .map_err(|e| refuse(StatusCode::FORBIDDEN, "IncompleteSignatureException", &e.to_string()))?;
    // The key first: an unknown key never gets its body read.
    let key = match state.strato.keys().for_access_key(&parsed.access_key_id).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e.message, "cannot read an access key");
            return Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "cannot check the signature now",
            ));
        }
    };
    let Some((key, secret)) = key else {
        if !state.auth.opts.enabled() {
            return Ok((Principal::admin("local", Credential::Open), req));
        }
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    };
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_SIGNED_BODY).await.map_err(|_| {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            &format!("a signed request's body may be at most {MAX_SIGNED_BODY} bytes"),
        )
    })?;
    let headers: Vec<(&str, &str)> =
        parts.headers.iter().filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v))).collect();
    let signed = sigv4::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers,
        payload_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
    };
    match sigv4::verify(&parsed, &signed, &secret, chrono::Utc::now()) {
        Ok(()) => {}
        Err(e @ sigv4::SigV4Error::Incomplete(_)) => {
            return Err(refuse(StatusCode::FORBIDDEN, "IncompleteSignatureException", &e.to_string()))
        }
        Err(e) => {
            tracing::info!(access_key_id = %parsed.access_key_id, reason = %e, "refused a SigV4 signature");
            return Err(refuse(StatusCode::FORBIDDEN, "InvalidSignatureException", &e.to_string()));
        }
    }
    Ok((Principal::from_api_key(key), Request::from_parts(parts, axum::body::Body::from(bytes))))
}

async fn resolve_bearer(auth: &Auth, token: &str) -> Result<Principal, Response> {
    // Constant-time: the comparison must not reveal how much of the token matched.
    if let Some(admin) = auth.opts.admin_token.as_deref() {
        if bool::from(token.as_bytes().ct_eq(admin.as_bytes())) {
            return Ok(Principal::admin("admin", Credential::AdminToken));
        }
    }
    let Some(verifier) = &auth.verifier else {
        return Err(unauthorized("wrong bearer token"));
    };
    match verifier.verify(token).await {
        Ok(claims) => Ok(principal_from_claims(&claims, &auth.opts.claims, &auth.policy)),
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

    fn model(id: &str) -> ResourceRef {
        ResourceRef::new(ResourceKind::MODEL, id)
    }

    fn mentor(id: &str) -> ResourceRef {
        ResourceRef::new(ResourceKind::MENTOR, id)
    }

    #[test]
    fn mentorpal_roles_and_owned_mentors() {
        let map = ClaimsMapping::default();
        let p = Policy::default();
        let user = principal_from_claims(
            &claims(serde_json::json!({"id": "u1", "role": "USER", "mentorIds": ["a"]})),
            &map,
            &p,
        );
        assert_eq!((user.subject.as_str(), user.role), ("u1", Role::User));
        assert!(user.may(Action::Edit, &mentor("a")).is_ok());
        assert!(user.may(Action::Edit, &mentor("b")).is_err());
        assert!(user.may(Action::Use, &mentor("b")).is_err());
        let cm =
            principal_from_claims(&claims(serde_json::json!({"id": "c", "role": "SUPER_CONTENT_MANAGER"})), &map, &p);
        assert!(cm.may(Action::Edit, &mentor("b")).is_ok() && cm.require_admin("x").is_err());
        let admin = principal_from_claims(&claims(serde_json::json!({"sub": "z", "role": "ADMIN"})), &map, &p);
        assert!(admin.require_admin("x").is_ok());
    }

    #[test]
    fn cognito_groups_grant_models_through_the_policy() {
        let policy = Policy::parse(r#"{"planners": ["paris"]}"#, false).unwrap();
        let p = principal_from_claims(
            &claims(serde_json::json!({"sub": "s", "cognito:groups": ["planners"]})),
            &ClaimsMapping::default(),
            &policy,
        );
        assert!(p.may(Action::Use, &model("paris")).is_ok());
        assert!(p.may(Action::Use, &model("lyon")).is_err());
        // Use, not change: a user role.
        assert!(p.may(Action::Edit, &model("paris")).is_err());
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
