//! What a new configuration changes, and which of the changes need a restart.
//!
//! Pure: splits both configurations into their live part and the rest
//! ([`Config::split_live`]), then compares each through its TOML form, so a field added to
//! [`Config`] later is covered without touching this file. Every change in the rest needs a
//! restart (a field not moved into [`super::LiveConfig`] is restart-only: fail closed); the
//! changes of the live part are described entry by entry.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use toml::Value;

use super::Config;

/// One changed field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Dotted path of the field (`policy.passthrough`, `listen.control`).
    pub field: String,
    /// What changed (`added api.test; removed old.test`), for live fields only.
    ///
    /// # Security
    /// Empty for restart-only fields: their values are never shown (a Redis URL may hold a
    /// password). Sessions are named by id, never by token digest.
    pub detail: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(&self.field)
        } else {
            write!(f, "{}: {}", self.field, self.detail)
        }
    }
}

/// How a new configuration differs from the running one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Changes a running daemon applies.
    pub live: Vec<Change>,
    /// Changes that need a restart; a reload with any of them is refused whole.
    pub restart: Vec<Change>,
}

impl ConfigDiff {
    /// Whether the two configurations are the same.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.restart.is_empty()
    }

    /// The restart-only fields that changed, comma-separated (`listen.control, state_dir`).
    pub fn restart_fields(&self) -> String {
        let names: Vec<&str> = self.restart.iter().map(|c| c.field.as_str()).collect();
        names.join(", ")
    }
}

/// A configuration that could not be rendered as TOML to be compared.
#[derive(Debug, thiserror::Error)]
#[error("config: render the {which} configuration: {source}")]
pub struct RenderError {
    /// `running` or `new`.
    pub which: &'static str,
    /// The serialiser's error.
    pub source: toml::ser::Error,
}

/// Compares the running configuration `old` with `new`.
///
/// # Errors
/// A configuration that cannot be rendered as TOML (not expected of a parsed one); the caller
/// must then refuse the reload.
pub fn diff(old: &Config, new: &Config) -> Result<ConfigDiff, RenderError> {
    let (old_rest, old_live) = old.split_live();
    let (new_rest, new_live) = new.split_live();
    let mut out = ConfigDiff::default();
    let rest = (render(&old_rest, "running")?, render(&new_rest, "new")?);
    restart_leaves("", Some(&rest.0), Some(&rest.1), &mut out.restart);
    let table =
        |live, which| toml::Table::try_from(live).map_err(|source| RenderError { which, source });
    let (old_live, new_live) = (table(old_live, "running")?, table(new_live, "new")?);
    let fields: BTreeSet<&String> = old_live.keys().chain(new_live.keys()).collect();
    for field in fields {
        let (old, new) = (old_live.get(field), new_live.get(field));
        if old != new {
            out.live.push(Change {
                field: field.clone(),
                detail: describe(old, new),
            });
        }
    }
    Ok(out)
}

fn render<T: Serialize>(config: &T, which: &'static str) -> Result<Value, RenderError> {
    Value::try_from(config).map_err(|source| RenderError { which, source })
}

/// Recurses into tables down to the leaves that differ, each a restart-only change (named,
/// never shown: a value may hold a password).
fn restart_leaves(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    if old == new {
        return;
    }
    if let (Some(Value::Table(a)), Some(Value::Table(b))) = (old, new) {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            let field = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            restart_leaves(&field, a.get(key), b.get(key), out);
        }
        return;
    }
    out.push(Change {
        field: path.to_owned(),
        detail: String::new(),
    });
}

/// `added …; removed …; changed …` between two values of a live field.
fn describe(old: Option<&Value>, new: Option<&Value>) -> String {
    let (old, new) = (entries(old), entries(new));
    let mut parts = Vec::new();
    let mut list = |verb: &str, keys: Vec<&str>| {
        if !keys.is_empty() {
            parts.push(format!("{verb} {}", keys.join(", ")));
        }
    };
    list(
        "added",
        new.keys()
            .filter(|k| !old.contains_key(*k))
            .map(String::as_str)
            .collect(),
    );
    list(
        "removed",
        old.keys()
            .filter(|k| !new.contains_key(*k))
            .map(String::as_str)
            .collect(),
    );
    list(
        "changed",
        new.iter()
            .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
            .map(|(k, _)| k.as_str())
            .collect(),
    );
    if parts.is_empty() {
        "reordered".to_owned()
    } else {
        parts.join("; ")
    }
}

/// The items of a value by a readable key: list items by their text (or `id` for tables),
/// table entries by their key, a scalar by itself.
fn entries(value: Option<&Value>) -> BTreeMap<String, &Value> {
    match value {
        None => BTreeMap::new(),
        Some(Value::Array(items)) => items.iter().map(|v| (key(v), v)).collect(),
        Some(Value::Table(table)) => table.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Some(scalar) => BTreeMap::from([(key(scalar), scalar)]),
    }
}

fn key(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Table(t) => match t.get("id") {
            Some(Value::String(id)) => id.clone(),
            _ => "(entry)".to_owned(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    fn change(field: &str, detail: &str) -> Change {
        Change {
            field: field.to_owned(),
            detail: detail.to_owned(),
        }
    }

    /// Old file, new file, the live changes expected (field, detail).
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    const S1: &str = "[[sessions]]\nid = \"s1\"\ntoken_sha256 = \"aa\"\n";

    #[test]
    fn live_changes_are_described() {
        let cases: &[Case] = &[
            ("", "", &[]),
            (
                "",
                "[policy]\npassthrough = [\"api.test\", \"*.pinned.test\"]\n",
                &[("policy.passthrough", "added *.pinned.test, api.test")],
            ),
            (
                "[policy]\ntcp_allow = [\"203.0.113.0/24:22\"]\n",
                "[policy]\ntcp_allow = [\"git.test:9418\"]\n",
                &[(
                    "policy.tcp_allow",
                    "added git.test:9418; removed 203.0.113.0/24:22",
                )],
            ),
            (
                "[policy]\npassthrough = [\"a.test\", \"b.test\"]\n",
                "[policy]\npassthrough = [\"b.test\", \"a.test\"]\n",
                &[("policy.passthrough", "reordered")],
            ),
            (
                S1,
                "[[sessions]]\nid = \"s1\"\ntoken_sha256 = \"bb\"\n\
                 [[sessions]]\nid = \"s2\"\ntoken_sha256 = \"cc\"\n",
                &[("sessions", "added s2; changed s1")],
            ),
            (S1, "", &[("sessions", "removed s1")]),
            (
                "[dns.hosts]\n\"a.test\" = [\"198.51.100.1\"]\n\"b.test\" = [\"198.51.100.2\"]\n",
                "[dns.hosts]\n\"b.test\" = [\"198.51.100.3\"]\n\"c.test\" = [\"2001:db8::1\"]\n",
                &[("dns.hosts", "added c.test; removed a.test; changed b.test")],
            ),
            (
                "",
                "[upstream]\nallow_internal = [\"10.9.0.0/16\"]\n",
                &[("upstream.allow_internal", "added 10.9.0.0/16")],
            ),
            (
                "",
                "[policy]\ntcp_allow = [\"git.test:22\"]\n[dns.hosts]\n\"git.test\" = [\"198.51.100.9\"]\n",
                &[
                    ("dns.hosts", "added git.test"),
                    ("policy.tcp_allow", "added git.test:22"),
                ],
            ),
        ];
        for (old, new, want) in cases {
            let got = diff(&config(old), &config(new)).unwrap();
            let want: Vec<Change> = want.iter().map(|(f, d)| change(f, d)).collect();
            assert_eq!(got.live, want, "{old:?} -> {new:?}");
            assert!(got.restart.is_empty(), "{old:?} -> {new:?}: {got:?}");
            assert_eq!(got.is_empty(), want.is_empty());
        }
    }

    #[test]
    fn restart_only_changes_are_named_without_values() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "",
                "[listen]\ncontrol = \"127.0.0.1:3001\"\n",
                "listen.control",
            ),
            (
                "",
                "[listen]\ntransparent_port = 15002\n",
                "listen.transparent_port",
            ),
            (
                "",
                "[capture]\nparent_cgroup = \"other\"\n",
                "capture.parent_cgroup",
            ),
            (
                "",
                "[capture]\npin_dir = \"/sys/fs/bpf/x\"\n",
                "capture.pin_dir",
            ),
            ("", "state_dir = \"/srv/sluice\"\n", "state_dir"),
            ("", "[audit]\npath = \"/tmp/a.jsonl\"\n", "audit.path"),
            ("[audit]\npath = \"/tmp/a.jsonl\"\n", "", "audit.path"),
            (
                "",
                "[upstream]\nextra_roots = [\"/ca.pem\"]\n",
                "upstream.extra_roots",
            ),
            (
                "",
                "[upstream]\nconnect_timeout_ms = 1\n",
                "upstream.connect_timeout_ms",
            ),
            (
                "",
                "[store]\nredis_url = \"redis://:hunter2@r:6379\"\n",
                "store.redis_url",
            ),
        ];
        for (old, new, field) in cases {
            let got = diff(&config(old), &config(new)).unwrap();
            assert_eq!(got.restart, vec![change(field, "")], "{new:?}");
            assert!(got.live.is_empty(), "{new:?}");
            assert!(!got.restart[0].to_string().contains("hunter2"));
        }
    }

    #[test]
    fn mixed_changes_split_and_name_every_restart_field() {
        let new = "state_dir = \"/srv/sluice\"\n[listen]\ncontrol = \"127.0.0.1:3001\"\n\
                   [policy]\npassthrough = [\"api.test\"]\n";
        let got = diff(&Config::default(), &config(new)).unwrap();
        assert_eq!(
            got.live,
            vec![change("policy.passthrough", "added api.test")]
        );
        assert_eq!(got.restart_fields(), "listen.control, state_dir");
    }

    #[test]
    fn session_tokens_never_appear() {
        let got = diff(
            &config(S1),
            &config("[[sessions]]\nid = \"s1\"\ntoken_sha256 = \"bb\"\n"),
        )
        .unwrap();
        let shown = got.live[0].to_string();
        assert_eq!(shown, "sessions: changed s1");
    }

    #[test]
    fn every_live_field_is_named_by_its_path_in_the_file() {
        let rendered = Value::try_from(Config::default()).unwrap();
        let Value::Table(live) = Value::try_from(Config::default().live()).unwrap() else {
            panic!("not a table");
        };
        assert_eq!(live.len(), 5);
        for field in live.keys() {
            let mut value = Some(&rendered);
            for part in field.split('.') {
                value = value.and_then(|v| v.get(part));
            }
            assert!(value.is_some(), "{field} is not a configuration field");
        }
    }
}
