//! Per-session policy: what a session may reach, how fast, and how its bodies are checked.
//!
//! - [`spec`]: the policy as written (serde data shared with the store and the API);
//! - [`compiled`]: [`CompiledPolicy::compile`] validates a spec once and indexes its host
//!   patterns, so a decision costs a few hash probes however many rules there are;
//! - [`eval`]: the decisions as pure functions: [`evaluate`] (HTTP requests),
//!   [`evaluate_tcp`] (non-HTTP TCP), [`rate_limit_for`] (which budget a request draws on);
//! - [`ratelimit`]: the budgets themselves, node-local or shared through Redis;
//! - [`suggest`](mod@suggest): the policy that would have allowed what an audit-mode session did.

pub mod compiled;
pub mod eval;
pub mod ratelimit;
pub mod spec;
pub mod suggest;

pub use compiled::{CompiledPolicy, HostMatch, Invalid, PolicyError};
pub use eval::{
    Decision, RateRule, Refusal, RequestInfo, Verdict, evaluate, evaluate_deny, evaluate_host,
    evaluate_name, evaluate_tcp, rate_limit_for,
};
pub use ratelimit::{LocalLimiter, RateError, RateFuture, RateLimiter, RateOutcome, RedisLimiter};
pub use spec::{Enforcement, HostRule, PiiMode, PolicySpec, RateLimit};
pub use suggest::{Observed, suggest};
