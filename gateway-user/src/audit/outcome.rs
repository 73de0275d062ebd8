//! How a connection ended, and which side is to blame: the typed form of a record's
//! decision, side and reason.

use std::fmt;

use serde::Serialize;

use super::Decision;

/// Which side of a connection failed or refused (as pingora's `ErrorSource`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The sandbox: what it sent, or how it hung up.
    Downstream,
    /// The server the connection was going to.
    Upstream,
    /// Sluice itself (a lookup, a certificate, a relay).
    Gateway,
    /// A rule: the node's, the session's, or a built-in one (internal destinations).
    Policy,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Downstream => "downstream",
            Side::Upstream => "upstream",
            Side::Gateway => "gateway",
            Side::Policy => "policy",
        })
    }
}

/// An error or refusal that knows which side it belongs to.
pub trait Sided: fmt::Display {
    /// The side to blame.
    fn side(&self) -> Side;
}

/// How a connection ended: the decision, the side to blame, and the reason (rendered from
/// the typed error, in words the agent and the operator read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Allowed, refused or failed.
    pub decision: Decision,
    /// Which side, unless allowed.
    pub side: Option<Side>,
    /// Why, unless allowed.
    pub reason: Option<String>,
}

impl Outcome {
    /// Served to its end.
    pub fn allowed() -> Outcome {
        Outcome {
            decision: Decision::Allow,
            side: None,
            reason: None,
        }
    }

    /// Refused before anything was relayed, for `why`.
    pub fn refused(why: &dyn Sided) -> Outcome {
        Outcome::of(Decision::Deny, why)
    }

    /// Failed part way, for `why`.
    pub fn failed(why: &dyn Sided) -> Outcome {
        Outcome::of(Decision::Error, why)
    }

    /// The one place a reason is rendered: `side: what happened` (a text that already
    /// names its side is kept as it is).
    fn of(decision: Decision, why: &dyn Sided) -> Outcome {
        let side = why.side();
        let text = why.to_string();
        let named = text
            .strip_prefix(side.to_string().as_str())
            .is_some_and(|rest| rest.starts_with(':'));
        Outcome {
            decision,
            side: Some(side),
            reason: Some(if named {
                text
            } else {
                format!("{side}: {text}")
            }),
        }
    }
}

/// A reason given as text, with its side (for failures that reach the connection as
/// words, e.g. the HTTP server's error on an intercepted connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Said {
    /// The side.
    pub side: Side,
    /// The words.
    pub text: String,
}

impl fmt::Display for Said {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Sided for Said {
    fn side(&self) -> Side {
        self.side
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_their_side_once() {
        let said = |side, text: &str| Said {
            side,
            text: text.to_owned(),
        };
        let cases = [
            (
                said(Side::Policy, "no rule covers it"),
                "policy: no rule covers it",
            ),
            (
                said(Side::Upstream, "upstream: refused"),
                "upstream: refused",
            ),
            (
                said(Side::Downstream, "upstream sent junk"),
                "downstream: upstream sent junk",
            ),
        ];
        for (why, want) in cases {
            let outcome = Outcome::failed(&why);
            assert_eq!(outcome.reason.as_deref(), Some(want));
            assert_eq!(outcome.side, Some(why.side));
            assert_eq!(outcome.decision, Decision::Error);
        }
        assert_eq!(
            Outcome::refused(&said(Side::Policy, "x")).decision,
            Decision::Deny
        );
        assert_eq!(Outcome::allowed().reason, None);
    }
}
