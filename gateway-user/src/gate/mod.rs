//! The session gate: the [`RequestPolicy`] that puts each intercepted request under its
//! session — session state, policy, rate limits, credential injection, PII scanning and
//! response scrubbing.
//!
//! A connection without a session (a sandbox enrolled without one) is served as before:
//! no credentials, no session policy. A connection whose session cannot be used (unknown,
//! revoked, expired, or the store is down and the session is not cached) is refused: fail
//! closed.

mod compiled;
mod filters;
mod proxy;

use std::sync::Arc;

use http::StatusCode;
use http::header::{ACCEPT_ENCODING, CONTENT_TYPE, HeaderValue};
use http::request::Parts;

use crate::audit::{Side, Sided, Who};
use crate::credentials::{Bound, Injector, Secret, Transport};
use crate::intercept::{HookFuture, Plan, Refusal, RequestInfo, RequestPolicy, notes};
use crate::live::LiveStore;
use crate::pii::StreamScanner;
use crate::policy::{self, CompiledPolicy, RateLimiter, RateOutcome, Verdict};
use crate::session::{AuthError, MasterKey, Session, SessionCache, Unusable};

pub use compiled::{CompiledSessions, ScrubberError};

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
    /// The live configuration, for its sessions: those declared in the file are
    /// authenticated, without policy or credentials. A session removed from the file by a
    /// reload is then looked up in the store, like any other, at its next request.
    pub live: LiveStore,
}

impl RequestPolicy for SessionGate {
    fn check<'a>(
        &'a self,
        req: RequestInfo,
        parts: &'a mut Parts,
    ) -> HookFuture<'a, Result<Plan, Refusal>> {
        Box::pin(self.decide(req, parts))
    }

    fn connection<'a>(
        &'a self,
        who: &'a Who,
        node: &'a Arc<CompiledPolicy>,
    ) -> HookFuture<'a, Result<Arc<CompiledPolicy>, Unusable>> {
        Box::pin(self.connection_policy(who, node))
    }

    fn session_proxy<'a>(
        &'a self,
        who: &'a Who,
    ) -> HookFuture<'a, Result<crate::upstream::egress::Level, crate::upstream::egress::EgressError>>
    {
        Box::pin(self.session_level(who))
    }
}

impl SessionGate {
    /// The policy a connection of `who` is routed by: the node's rules (`node`) with the
    /// session's policy layered over them; `node` alone without a session (or for a session
    /// from the configuration file). An error says why the session cannot be used, and
    /// which side is to blame (a store outage is the gateway's, not a rule's).
    pub async fn connection_policy(
        &self,
        who: &Who,
        node: &Arc<CompiledPolicy>,
    ) -> Result<Arc<CompiledPolicy>, Unusable> {
        let Some(session) = self.session_of(Some(who)).await? else {
            return Ok(node.clone());
        };
        self.compiled
            .layered(&session, node)
            .map_err(|error| Unusable::Policy {
                session: session.id.clone(),
                error,
            })
    }

    /// The stored session `who` belongs to: `None` without one, or for a session declared in
    /// the configuration file (no policy, no credentials).
    ///
    /// # Security
    /// Looked up again for every request, so a revocation takes effect on open connections.
    async fn session_of(&self, who: Option<&Who>) -> Result<Option<Arc<Session>>, AuthError> {
        let Some(id) = who.and_then(|w| w.session.as_deref()) else {
            return Ok(None);
        };
        if self.live.load().sessions.contains_id(id) {
            return Ok(None);
        }
        self.sessions.by_id(id).await.map(Some)
    }

    async fn decide(&self, req: RequestInfo, parts: &mut Parts) -> Result<Plan, Refusal> {
        let plan = Plan::default();
        let Some(session) = self
            .session_of(req.who.as_ref())
            .await
            .map_err(session_refusal)?
        else {
            return Ok(plan);
        };
        let id = session.id.clone();
        let compiled = self
            .compiled
            .layered(&session, &req.node)
            .map_err(|error| {
                let why = Unusable::Policy {
                    session: id.clone(),
                    error,
                };
                Refusal::new(StatusCode::FORBIDDEN, why.side(), why.to_string())
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
                        Side::Gateway,
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
                        side: Side::Policy,
                        reason: format!("refused by the policy of session {id}: {text}"),
                        retry_after: Some(retry_after),
                    });
                }
                notes(&plan.notes).would_refuse.get_or_insert(text);
            }
        }
        let mut plan = plan;
        self.credentials(&session, &req, parts, &mut plan, &compiled)?;
        Ok(plan)
    }

    /// Swaps placeholders in the head, sets up the body swapper and response scrubbing.
    ///
    /// # Security
    /// A value is opened for injection only when the request travels over TLS verified for
    /// its host (`https`: SNI = Host, upstream certificate verified for it) and the
    /// credential is bound to that host. Plain HTTP goes to an address the sandbox chose, so
    /// every placeholder in it is refused. Every other credential is known by name and hosts
    /// only, so its placeholder is refused, never replaced. Responses are scrubbed of every
    /// value of the session, toward every host and over either scheme.
    fn credentials(
        &self,
        session: &Arc<Session>,
        req: &RequestInfo,
        parts: &mut Parts,
        plan: &mut Plan,
        compiled: &CompiledPolicy,
    ) -> Result<(), Refusal> {
        let host = &req.host;
        let transport = if req.scheme == "https" {
            Transport::VerifiedTls
        } else {
            Transport::PlainHttp
        };
        let mut bounds = Vec::with_capacity(session.credentials.len());
        for stored in &session.credentials {
            let bound_here = transport == Transport::VerifiedTls
                && stored.spec.hosts.iter().any(|h| host == h.as_str());
            let value = if bound_here {
                session
                    .open_credential(&stored.spec.name, &self.master)
                    .map_err(|e| filters::unusable(&e.to_string()))?
                    .ok_or_else(|| filters::unusable("a credential disappeared"))?
            } else {
                Secret::new(Vec::new())
            };
            bounds.push(Bound {
                spec: stored.spec.clone(),
                value,
            });
        }
        let injector = Injector::new(bounds, transport);
        let mut names = injector
            .headers(host, &mut parts.headers)
            .map_err(|e| filters::misdirected(&e))?;
        if let Some((uri, more)) = injector
            .query(host, &parts.uri)
            .map_err(|e| filters::misdirected(&e))?
        {
            parts.uri = uri;
            names.extend(more);
        }
        {
            let mut notes = notes(&plan.notes);
            for name in &names {
                notes.injected(name);
            }
        }
        // Bodies are filtered only when there is something to do: a session without
        // credentials has no placeholder a body could misdirect, and with PII off nothing is
        // scanned, so its bodies stream untouched (no whole-body buffering).
        let pii = StreamScanner::new(compiled.pii_mode());
        if pii.is_some() || !session.credentials.is_empty() {
            let content_type = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let inject = (!session.credentials.is_empty())
                .then(|| injector.body(host, content_type.as_deref()));
            plan.body = Some(Box::new(filters::RequestBody {
                pii,
                inject,
                notes: plan.notes.clone(),
            }));
        }
        let scrubber = self
            .compiled
            .scrubber(session, &self.master)
            .map_err(|e| filters::unusable(&e.to_string()))?;
        if let Some(scrubber) = scrubber {
            plan.response = Some(Box::new(filters::ScrubResponse::new(scrubber)));
            // Echoes are scrubbed in what the gateway can read: ask for plain bodies (the
            // engine decodes, or refuses, what comes compressed anyway).
            parts
                .headers
                .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        Ok(())
    }
}

/// A session that cannot be used: 403 naming why, by the session's state (a rule); 503 when
/// the store is down and the session is not cached (the gateway's failure, still refused).
fn session_refusal(error: AuthError) -> Refusal {
    let status = match error {
        AuthError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::FORBIDDEN,
    };
    Refusal::new(status, error.side(), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_outage_refuses_each_request_on_the_gateways_side() {
        let outage = session_refusal(AuthError::StoreUnavailable("timed out".into()));
        assert_eq!(outage.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(outage.side, Side::Gateway);
        let revoked = session_refusal(AuthError::Revoked("s1".into()));
        assert_eq!(revoked.status, StatusCode::FORBIDDEN);
        assert_eq!(revoked.side, Side::Policy);
    }
}
