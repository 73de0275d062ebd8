//! The session gate: the [`RequestPolicy`] that puts each intercepted request under its
//! session — session state, policy, rate limits, credential injection, PII scanning and
//! response scrubbing.
//!
//! A connection without a session (a sandbox enrolled without one) is served as before:
//! no credentials, no session policy. A connection whose session cannot be used (unknown,
//! revoked, expired, or the store is down and the session is not cached) is refused: fail
//! closed.

mod compiled;

use std::sync::Arc;

use http::StatusCode;
use http::request::Parts;

use crate::intercept::{HookFuture, Plan, Refusal, RequestInfo, RequestPolicy, notes};
use crate::policy::{self, RateLimiter, RateOutcome, Verdict};
use crate::session::{AuthError, MasterKey, SessionCache};

pub use compiled::CompiledSessions;

/// Everything the gate consults.
#[derive(Debug)]
pub struct SessionGate {
    /// Sessions by id (node-local cache in front of the store).
    pub sessions: Arc<SessionCache>,
    /// Compiled policies, per session.
    pub compiled: Arc<CompiledSessions>,
    /// Request-rate budgets (shared through Redis when configured).
    pub limiter: Arc<dyn RateLimiter>,
    /// Opens sealed credential values.
    pub master: Arc<MasterKey>,
}

impl RequestPolicy for SessionGate {
    fn check<'a>(
        &'a self,
        req: RequestInfo,
        parts: &'a mut Parts,
    ) -> HookFuture<'a, Result<Plan, Refusal>> {
        Box::pin(self.decide(req, parts))
    }
}

impl SessionGate {
    async fn decide(&self, req: RequestInfo, parts: &mut Parts) -> Result<Plan, Refusal> {
        let plan = Plan::default();
        let Some(id) = req.who.as_ref().and_then(|w| w.session.clone()) else {
            return Ok(plan);
        };
        let session = self.sessions.by_id(&id).await.map_err(session_refusal)?;
        let compiled = self.compiled.get(&session).map_err(|e| {
            Refusal::forbidden(format!("session {id}: its policy does not compile: {e}"))
        })?;
        let path = parts.uri.path();
        let info = policy::RequestInfo {
            host: &req.host,
            port: req.port,
            method: parts.method.as_str(),
            path,
        };
        let decision = policy::evaluate(&compiled, &info);
        if let Verdict::Refuse(refusal) = &decision.verdict {
            let text = format!("{}: {}", refusal.rule, refusal.reason);
            if decision.enforced {
                return Err(Refusal::forbidden(format!(
                    "refused by the policy of session {id}: {text}"
                )));
            }
            notes(&plan.notes).would_refuse = Some(text);
        }
        if let Some(rule) = policy::rate_limit_for(&compiled, &req.host) {
            let outcome = self
                .limiter
                .acquire(&id, &rule.key, rule.per_minute)
                .await
                .map_err(|e| {
                    Refusal::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("gateway: rate limit check failed: {e}"),
                    )
                })?;
            if let RateOutcome::Limited { retry_after, .. } = outcome {
                let text = format!(
                    "rate limit: {} allows {} requests per minute",
                    rule.key, rule.per_minute
                );
                if decision.enforced {
                    return Err(Refusal {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        reason: format!("refused by the policy of session {id}: {text}"),
                        retry_after: Some(retry_after),
                    });
                }
                notes(&plan.notes).would_refuse.get_or_insert(text);
            }
        }
        Ok(plan)
    }
}

/// A session that cannot be used: 403 naming why (the store being down included).
fn session_refusal(error: AuthError) -> Refusal {
    match error {
        AuthError::StoreUnavailable(_) => Refusal::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
        _ => Refusal::forbidden(error.to_string()),
    }
}
