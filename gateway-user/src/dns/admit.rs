//! Which names a sandbox may resolve: a pure function of its session's policy and the node's
//! rules, so DNS answers only names some rule could let the sandbox connect to.
//!
//! The policy is the connection policy of the sandbox: the node's rules, with its session's
//! policy layered over them (see [`CompiledPolicy::layered_over`]). A name resolves when (in
//! this order):
//! 1. the deny list names it: never (NXDOMAIN);
//! 2. there is no allow list (no session, a configuration-file session, or a session without
//!    one), or the allow list names it (passthrough entries are subject to the allow list on
//!    connections, so they add nothing here);
//! 3. a `tcp_allow` host entry (the session's or the node's) names it (opaque TCP to that
//!    host is allowed whatever the allow list says);
//! 4. the session is in `audit` enforcement: the refusal is only recorded.

use crate::host::Host;
use crate::policy::{self, CompiledPolicy, Verdict};

/// Why a name may not resolve: the rule that refuses it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameRefused {
    /// The deny list names it.
    #[error("session policy: {0}")]
    Denied(String),
    /// The allow list does not name it, and no `tcp_allow` entry does either.
    #[error("session policy: {0}; no tcp_allow entry names it")]
    NotAllowed(String),
}

/// Whether `name` may resolve for a sandbox whose connections
/// are decided by `policy`; the error names the rule that refuses it.
///
/// # Security
/// Deny wins over every other entry; under an allow list, a name no rule names is refused.
pub fn name_allowed(name: &Host, policy: &CompiledPolicy) -> Result<(), NameRefused> {
    let deny = policy::evaluate_deny(policy, name);
    if let Verdict::Refuse(refusal) = deny.verdict
        && deny.enforced
    {
        return Err(NameRefused::Denied(refusal.rule));
    }
    let decision = policy::evaluate_name(policy, name);
    let Verdict::Refuse(refusal) = decision.verdict else {
        return Ok(());
    };
    if policy.tcp_allow_names(name) || !decision.enforced {
        return Ok(());
    }
    Err(NameRefused::NotAllowed(refusal.rule))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySpec;

    #[test]
    fn name_allowed_table() {
        let node = crate::config::PolicyConfig {
            passthrough: vec!["pinned.test".into()],
            tcp_allow: vec!["git.test:22".into(), "203.0.113.0/24:5432".into()],
        }
        .compile()
        .unwrap();
        let compile = |edit: &dyn Fn(&mut PolicySpec)| {
            let mut spec = PolicySpec::default();
            edit(&mut spec);
            CompiledPolicy::compile(&spec)
                .unwrap()
                .layered_over(&node)
                .unwrap()
        };
        let open = compile(&|_| {});
        let narrow = compile(&|p| {
            p.allow = Some(vec!["api.test".into(), "*.cdn.test".into()]);
            p.deny = vec!["bad.cdn.test".into()];
            p.tcp_allow = vec!["db.test:5432".into()];
            p.passthrough = vec!["bank.test".into()];
        });
        let denying = compile(&|p| p.deny = vec!["*.evil.test".into()]);
        let audit_only = compile(&|p| {
            p.allow = Some(vec!["api.test".into()]);
            p.enforcement = crate::policy::Enforcement::Audit;
        });
        let cases: Vec<(&str, Option<&CompiledPolicy>, Result<(), &str>)> = vec![
            ("anything.test", None, Ok(())),
            ("pinned.test", None, Ok(())),
            ("anything.test", Some(&open), Ok(())),
            ("x.evil.test", Some(&denying), Err("deny[0] *.evil.test")),
            ("good.test", Some(&denying), Ok(())),
            ("api.test", Some(&narrow), Ok(())),
            ("a.cdn.test", Some(&narrow), Ok(())),
            ("bad.cdn.test", Some(&narrow), Err("deny[0] bad.cdn.test")),
            ("db.test", Some(&narrow), Ok(())),
            ("git.test", Some(&narrow), Ok(())),
            (
                "other.test",
                Some(&narrow),
                Err("allow (no entry for other.test)"),
            ),
            (
                "bank.test",
                Some(&narrow),
                Err("allow (no entry for bank.test)"),
            ),
            (
                "pinned.test",
                Some(&narrow),
                Err("allow (no entry for pinned.test)"),
            ),
            ("other.test", Some(&audit_only), Ok(())),
        ];
        for (name, session, want) in cases {
            match (
                name_allowed(&Host::parse(name).unwrap(), session.unwrap_or(&node)),
                want,
            ) {
                (Ok(()), Ok(())) => {}
                (Err(got), Err(want)) => {
                    assert!(got.to_string().contains(want), "{name}: {got}");
                }
                (got, want) => unreachable!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }
}
