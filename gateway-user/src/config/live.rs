//! The split of a [`Config`] into what a running daemon applies on reload and what needs a
//! restart, by type: [`Config::split_live`] moves the live fields out into a [`LiveConfig`],
//! so the rest of the configuration is, by construction, what only a restart changes. A
//! field added to [`Config`] later stays in the rest (restart-only) until it is moved here:
//! fail closed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use super::{Config, PolicyConfig};
use crate::session::SessionConfig;

/// The fields a running daemon applies on reload: the node's routing rules, the sessions
/// declared in the file, the DNS static table and the internal ranges sandboxes may reach.
///
/// Serialised (for [`super::diff`]) with each field named by its dotted path in the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveConfig {
    /// `policy.passthrough`.
    #[serde(rename = "policy.passthrough")]
    pub passthrough: Vec<String>,
    /// `policy.tcp_allow`.
    #[serde(rename = "policy.tcp_allow")]
    pub tcp_allow: Vec<String>,
    /// `sessions`.
    pub sessions: Vec<SessionConfig>,
    /// `dns.hosts`.
    #[serde(rename = "dns.hosts")]
    pub dns_hosts: BTreeMap<String, Vec<IpAddr>>,
    /// `upstream.allow_internal`.
    #[serde(rename = "upstream.allow_internal")]
    pub allow_internal: Vec<String>,
}

impl LiveConfig {
    /// The node's routing rules (`[policy]`) of this live part.
    pub fn policy(&self) -> PolicyConfig {
        PolicyConfig {
            passthrough: self.passthrough.clone(),
            tcp_allow: self.tcp_allow.clone(),
        }
    }
}

impl Config {
    /// Splits the configuration into what needs a restart (`self` with every live field at
    /// its default) and what a running daemon applies on reload.
    pub fn split_live(&self) -> (Config, LiveConfig) {
        let mut rest = self.clone();
        let live = LiveConfig {
            passthrough: std::mem::take(&mut rest.policy.passthrough),
            tcp_allow: std::mem::take(&mut rest.policy.tcp_allow),
            sessions: std::mem::take(&mut rest.sessions),
            dns_hosts: std::mem::take(&mut rest.dns.hosts),
            allow_internal: std::mem::take(&mut rest.upstream.allow_internal),
        };
        (rest, live)
    }

    /// The live part alone (see [`Config::split_live`]).
    pub fn live(&self) -> LiveConfig {
        self.split_live().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_part_moves_out_and_the_rest_keeps_every_other_field() {
        let text = "state_dir = \"/srv/s\"\n[policy]\npassthrough = [\"p.test\"]\n\
                    tcp_allow = [\"g.test:22\"]\n[dns]\nmax_names_per_minute = 7\n\
                    [dns.hosts]\n\"a.test\" = [\"198.51.100.1\"]\n\
                    [upstream]\nallow_internal = [\"10.0.0.0/8\"]\nconnect_timeout_ms = 9\n\
                    [[sessions]]\nid = \"s1\"\ntoken_sha256 = \"aa\"\n";
        let config = Config::parse(text).unwrap();
        let (rest, live) = config.split_live();
        assert_eq!(live.passthrough, ["p.test"]);
        assert_eq!(live.tcp_allow, ["g.test:22"]);
        assert_eq!(live.sessions.len(), 1);
        assert_eq!(live.dns_hosts.len(), 1);
        assert_eq!(live.allow_internal, ["10.0.0.0/8"]);
        assert_eq!(live.policy(), config.policy);
        let defaults = Config::default().split_live().0;
        assert_eq!(rest.policy, defaults.policy);
        assert_eq!((rest.sessions.len(), rest.dns.hosts.len()), (0, 0));
        assert!(rest.upstream.allow_internal.is_empty());
        assert_eq!(rest.state_dir, config.state_dir);
        assert_eq!(rest.dns.max_names_per_minute, 7);
        assert_eq!(rest.upstream.connect_timeout_ms, 9);
    }
}
