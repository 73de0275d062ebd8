//! Which names a sandbox may resolve: a pure function of its session's policy and the node's
//! rules, so DNS answers only names some rule could let the sandbox connect to.
//!
//! A name resolves when (in this order):
//! 1. the sandbox has no session policy (no session, a configuration-file session): every name;
//! 2. the session's deny list names it: never (NXDOMAIN);
//! 3. the session has no allow list, or its allow list names it (passthrough entries are
//!    subject to the allow list on connections, so they add nothing here);
//! 4. a `tcp_allow` host entry of the session or of the node names it (opaque TCP to that host
//!    is allowed whatever the allow list says);
//! 5. the session is in `audit` enforcement: the refusal is only recorded.

use crate::policy::{self, CompiledPolicy, Verdict};
use crate::route::{HostPattern, RoutePolicy, TcpTarget};

/// Whether `name` (lowercase, no trailing dot) may resolve for a sandbox whose session policy
/// is `session` on a node with `node` rules; the error names the rule that refuses it.
///
/// # Security
/// Deny wins over every other entry; a name no rule names is refused.
pub fn name_allowed(
    name: &str,
    node: &RoutePolicy,
    session: Option<&CompiledPolicy>,
) -> Result<(), String> {
    let Some(policy) = session else {
        return Ok(());
    };
    let deny = policy::evaluate_deny(policy, name);
    if let Verdict::Refuse(refusal) = deny.verdict
        && deny.enforced
    {
        return Err(format!("session policy: {}", refusal.rule));
    }
    let decision = policy::evaluate_name(policy, name);
    let Verdict::Refuse(refusal) = decision.verdict else {
        return Ok(());
    };
    let node_tcp = node.tcp_allow.iter().any(
        |(target, _)| matches!(target, TcpTarget::Host(HostPattern::Exact(host)) if host == name),
    );
    if node_tcp || policy.tcp_allow_names(name) || !decision.enforced {
        return Ok(());
    }
    Err(format!(
        "session policy: {}; no tcp_allow entry names it",
        refusal.rule
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySpec;

    fn compile(edit: impl FnOnce(&mut PolicySpec)) -> CompiledPolicy {
        let mut spec = PolicySpec::default();
        edit(&mut spec);
        CompiledPolicy::compile(&spec).unwrap()
    }

    #[test]
    fn name_allowed_table() {
        let node = crate::config::PolicyConfig {
            passthrough: vec!["pinned.test".into()],
            tcp_allow: vec!["git.test:22".into(), "203.0.113.0/24:5432".into()],
        }
        .route_policy()
        .unwrap();
        let open = compile(|_| {});
        let narrow = compile(|p| {
            p.allow = Some(vec!["api.test".into(), "*.cdn.test".into()]);
            p.deny = vec!["bad.cdn.test".into()];
            p.tcp_allow = vec!["db.test:5432".into()];
            p.passthrough = vec!["bank.test".into()];
        });
        let denying = compile(|p| p.deny = vec!["*.evil.test".into()]);
        let audit_only = compile(|p| {
            p.allow = Some(vec!["api.test".into()]);
            p.enforcement = crate::policy::Enforcement::Audit;
        });
        let cases: Vec<(&str, Option<&CompiledPolicy>, Result<(), &str>)> = vec![
            ("anything.test", None, Ok(())),
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
            match (name_allowed(name, &node, session), want) {
                (Ok(()), Ok(())) => {}
                (Err(got), Err(want)) => assert!(got.contains(want), "{name}: {got}"),
                (got, want) => unreachable!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }
}
