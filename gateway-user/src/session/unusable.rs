//! Why a connection's session cannot be used, with the side to blame: a refusal by a rule
//! (unknown, revoked, expired) or a failure of the gateway (the store is down, the stored
//! policy does not compile). Either way the connection is refused: fail closed.

use crate::audit::{Side, Sided};
use crate::policy::PolicyError;

use super::AuthError;

/// Why the session of a connection cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// The session is unknown, revoked or expired, or the store cannot say.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The session's stored policy does not compile over the node's rules.
    #[error("session {session}: its policy does not compile: {error}")]
    Policy {
        /// The session's id.
        session: String,
        /// What does not compile.
        error: PolicyError,
    },
}

impl Sided for AuthError {
    /// A store that does not answer is the gateway's failure; the rest are the session's
    /// state, which a rule (revocation, expiry) decided.
    fn side(&self) -> Side {
        match self {
            AuthError::StoreUnavailable(_) => Side::Gateway,
            AuthError::UnknownToken
            | AuthError::UnknownSession(_)
            | AuthError::Revoked(_)
            | AuthError::Expired(_) => Side::Policy,
        }
    }
}

impl Sided for Unusable {
    /// A stored policy that passed validation but does not compile here is the gateway's
    /// failure, not a rule's decision.
    fn side(&self) -> Side {
        match self {
            Unusable::Auth(error) => error.side(),
            Unusable::Policy { .. } => Side::Gateway,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Decision, Outcome};

    #[test]
    fn a_store_outage_is_the_gateways_and_still_refuses() {
        let cases = [
            (
                Unusable::Auth(AuthError::StoreUnavailable("connection refused".into())),
                Side::Gateway,
            ),
            (
                Unusable::Auth(AuthError::Revoked("s1".into())),
                Side::Policy,
            ),
            (
                Unusable::Auth(AuthError::Expired("s1".into())),
                Side::Policy,
            ),
            (
                Unusable::Auth(AuthError::UnknownSession("s1".into())),
                Side::Policy,
            ),
        ];
        for (why, side) in cases {
            let outcome = Outcome::refused(&why);
            assert_eq!(outcome.decision, Decision::Deny, "{why}");
            assert_eq!(outcome.side, Some(side), "{why}");
            let reason = outcome.reason.unwrap_or_default();
            assert!(reason.starts_with(&format!("{side}: ")), "{reason}");
        }
    }
}
