//! Rate limits (requests per second with a burst, per API key, per token subject, per client IP for anonymous
//! callers) and quotas (requests per window, a UTC day by default), as a layer of their own after authentication
//! ([`enforce`]): they need to know who calls, not what the caller may do.
//!
//! Rates are enforced per process, from memory: with N API processes behind a balancer, give each 1/N of the
//! budget. Quotas are counted in the shared store, so they hold service-wide whatever the number of processes.

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use strato_types::{ErrorCode, UsagePlan};

use crate::auth::{Credential, Principal};
use crate::hygiene::PrincipalLabel;
use crate::{ApiError, AppState};

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// Default limits; a key's own plan overrides them field by field.
#[derive(Clone, Debug)]
pub struct LimitOptions {
    /// For API keys and token subjects.
    pub default_plan: UsagePlan,
    /// For anonymous callers on public routes, per client IP.
    pub anonymous_plan: UsagePlan,
    /// The quota window (a day unless changed).
    pub quota_window: Duration,
}

impl Default for LimitOptions {
    fn default() -> Self {
        Self {
            default_plan: UsagePlan::default(),
            anonymous_plan: UsagePlan::default(),
            quota_window: Duration::from_secs(86_400),
        }
    }
}

/// Who is being limited, and by which plan.
pub(crate) struct Subject {
    pub key: String,
    pub plan: UsagePlan,
}

/// What the response should say about the caller's remaining budget.
pub(crate) struct Budget {
    limit: u64,
    remaining: u64,
    reset: Duration,
}

impl Budget {
    /// The budget with fewer requests left.
    pub fn tighter(self, other: Budget) -> Budget {
        if other.remaining < self.remaining {
            other
        } else {
            self
        }
    }

    pub fn write(&self, h: &mut HeaderMap) {
        for (name, v) in [
            ("ratelimit-limit", self.limit),
            ("ratelimit-remaining", self.remaining),
            ("ratelimit-reset", self.reset.as_secs_f64().ceil() as u64),
        ] {
            h.insert(name, HeaderValue::from(v));
        }
    }
}

/// The in-memory rate limiters, one per caller seen recently.
pub(crate) struct Limits {
    pub opts: LimitOptions,
    limiters: parking_lot::Mutex<lru::LruCache<String, Arc<Limiter>>>,
}

impl Limits {
    pub fn new(opts: LimitOptions) -> Self {
        Self {
            opts,
            limiters: parking_lot::Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// Fills a plan's unset fields from the defaults.
    pub fn plan(&self, own: &UsagePlan, anonymous: bool) -> UsagePlan {
        let d = if anonymous { &self.opts.anonymous_plan } else { &self.opts.default_plan };
        UsagePlan {
            rate_per_sec: own.rate_per_sec.or(d.rate_per_sec),
            burst: own.burst.or(d.burst),
            daily_quota: own.daily_quota.or(d.daily_quota),
        }
    }

    /// Takes one request from the caller's rate; `Err` is the 429 to send.
    pub fn check_rate(&self, s: &Subject) -> Result<Option<Budget>, Refused> {
        let Some(rate) = s.plan.rate_per_sec.filter(|r| *r > 0.0) else { return Ok(None) };
        let burst = s.plan.burst.unwrap_or_else(|| rate.ceil() as u32).max(1);
        let limiter = {
            let mut map = self.limiters.lock();
            // A plan change (new key settings) gets a fresh limiter.
            let id = format!("{}|{rate}|{burst}", s.key);
            map.get_or_insert(id, || Arc::new(new_limiter(rate, burst))).clone()
        };
        match limiter.check() {
            Ok(snapshot) => Ok(Some(Budget {
                limit: u64::from(burst),
                remaining: u64::from(snapshot.remaining_burst_capacity()),
                reset: Duration::from_secs_f64(1.0 / rate),
            })),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let b = Budget { limit: u64::from(burst), remaining: 0, reset: wait };
                let message =
                    format!("rate limit of {rate}/s (burst {burst}) exceeded; retry after Retry-After seconds");
                Err(Refused { budget: b, message })
            }
        }
    }
}

fn new_limiter(rate: f64, burst: u32) -> Limiter {
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst);
    RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>()
}

/// A refused request: becomes a 429 with `Retry-After` and the `RateLimit-*` headers.
pub(crate) struct Refused {
    budget: Budget,
    message: String,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut res = ApiError::new(ErrorCode::RateLimited, self.message).into_response();
        self.budget.write(res.headers_mut());
        let secs = self.budget.reset.as_secs_f64().ceil().max(1.0) as u64;
        res.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        res
    }
}

/// Route layer, after `authenticate`: takes one request from the caller's rate and quota (per key, per token
/// subject, per client IP for anonymous callers; the admin token is never limited), answers 429 when either is
/// used up, and writes the tighter remaining budget on the response. Also labels the response with the caller, for
/// the access log.
pub(crate) async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return ApiError::new(ErrorCode::Internal, "the route has no authentication layer").into_response();
    };
    let label = PrincipalLabel(format!("{:?}:{}", principal.credential, principal.subject).to_ascii_lowercase());
    let labelled = |mut res: Response| {
        res.extensions_mut().insert(label.clone());
        res
    };
    let limits = &state.limits;
    let subject = match principal.credential {
        Credential::Open | Credential::AdminToken => None,
        Credential::ApiKey | Credential::AccessKey => Some(format!("key:{}", principal.subject)),
        Credential::Jwt => Some(format!("sub:{}", principal.subject)),
        Credential::Anonymous => {
            let ip = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
            Some(format!("ip:{}", ip.unwrap_or_else(|| "unknown".into())))
        }
    };
    let mut budget = None;
    if let Some(key) = subject {
        let plan = limits.plan(&principal.plan, principal.credential == Credential::Anonymous);
        let s = Subject { key, plan };
        match limits.check_rate(&s) {
            Ok(b) => budget = b,
            Err(refused) => return labelled(refused.into_response()),
        }
        if let Some(limit) = s.plan.daily_quota {
            let taken = state.strato.keys().take_quota(&s.key, limits.opts.quota_window, limit).await;
            match taken.map(|(used, reset)| quota_budget(limit, used, reset)) {
                // The tighter of the two budgets is the one to report.
                Ok(Ok(q)) => {
                    budget = Some(match budget.take() {
                        Some(r) => r.tighter(q),
                        None => q,
                    })
                }
                Ok(Err(refused)) => return labelled(refused.into_response()),
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
    }
    let mut res = next.run(req).await;
    if let Some(b) = budget {
        b.write(res.headers_mut());
    }
    labelled(res)
}

/// The quota's budget after one request, or the 429 when it is used up.
pub(crate) fn quota_budget(limit: u64, used: Option<u64>, reset: Duration) -> Result<Budget, Refused> {
    match used {
        Some(n) => Ok(Budget { limit, remaining: limit.saturating_sub(n), reset }),
        None => {
            let b = Budget { limit, remaining: 0, reset };
            Err(Refused {
                budget: b,
                message: format!("quota of {limit} requests used up; it resets in {} s", reset.as_secs().max(1)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_retry_time() {
        let l = Limits::new(LimitOptions::default());
        let s =
            Subject { key: "k".into(), plan: UsagePlan { rate_per_sec: Some(0.5), burst: Some(3), daily_quota: None } };
        for left in [2, 1, 0] {
            assert_eq!(l.check_rate(&s).ok().flatten().map(|b| b.remaining), Some(left));
        }
        let refused = l.check_rate(&s).err().expect("the fourth request is over the burst").into_response();
        assert_eq!(refused.status(), 429);
        let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry), "{retry}");
    }

    #[test]
    fn own_plan_fields_override_the_defaults() {
        let l = Limits::new(LimitOptions {
            default_plan: UsagePlan { rate_per_sec: Some(10.0), burst: Some(20), daily_quota: Some(1000) },
            ..Default::default()
        });
        let p = l.plan(&UsagePlan { burst: Some(5), ..Default::default() }, false);
        assert_eq!((p.rate_per_sec, p.burst, p.daily_quota), (Some(10.0), Some(5), Some(1000)));
        assert_eq!(l.plan(&UsagePlan::default(), true), UsagePlan::default());
    }
}
