//! Live configuration reload (`SIGHUP`, `POST /v1/reload`, `sluice reload`).
//!
//! The daemon re-reads the file it was started with, compares it with the running
//! configuration ([`crate::config::diff`]) and, when only live fields changed, swaps the new
//! rules in: the node's routing rules and internal ranges, the sessions of the file and the
//! DNS static table. New connections see them; open connections keep what they started with.
//!
//! Fail closed, never half-applied: a file that cannot be read, parsed or validated, or that
//! changes a field only a restart can change, is refused whole and the running configuration
//! keeps serving. Everything that can fail is built before the first swap.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::Node;
use crate::api::ReloadReport;
use crate::audit::{Decision, Kind, Record};
use crate::config::diff::{RenderError, diff};
use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use crate::live::{Live, LiveError};

/// Why a reload was refused; the running configuration stays in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read, parsed or validated.
    #[error("reload refused: {0}; the running configuration stays")]
    Invalid(#[from] ConfigError),
    /// The file's live part cannot be built (a policy entry, a range, a session).
    #[error("reload refused: {file}: {error}; the running configuration stays")]
    Live {
        /// The file read.
        file: String,
        /// What is wrong with it.
        error: LiveError,
    },
    /// The running or the new configuration cannot be compared.
    #[error("reload refused: {0}; the running configuration stays")]
    Render(#[from] RenderError),
    /// Fields changed that only a restart can change.
    #[error(
        "reload refused: {0} cannot change while sluice runs: restart to change it \
         (nothing was applied; the running configuration stays)"
    )]
    NeedsRestart(String),
}

/// What asked for the reload (it goes into the log line and the audit record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// `SIGHUP` to the daemon.
    Signal,
    /// `POST /v1/reload` (`sluice reload`).
    Api,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Api => "control API",
        })
    }
}

/// Reload counts since start, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReloadCounts {
    /// Reloads applied (including those that changed nothing).
    pub ok: u64,
    /// Reloads refused.
    pub refused: u64,
}

/// Where the configuration comes from and what is running now; one reload at a time.
#[derive(Debug)]
pub struct Reloader {
    path: Option<PathBuf>,
    running: Mutex<Config>,
    ok: AtomicU64,
    refused: AtomicU64,
}

impl Reloader {
    /// Reloads of `path` (`None`: the default file if it exists, else the built-in defaults,
    /// as `sluice run` without `--config`), starting from the `running` configuration.
    pub fn new(path: Option<PathBuf>, running: Config) -> Reloader {
        Reloader {
            path,
            running: Mutex::new(running),
            ok: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Reload counts since start.
    pub fn counts(&self) -> ReloadCounts {
        ReloadCounts {
            ok: self.ok.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// The file reloads read, as people see it.
    fn source(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None if std::path::Path::new(DEFAULT_CONFIG_PATH).exists() => {
                DEFAULT_CONFIG_PATH.to_owned()
            }
            None => "built-in defaults".to_owned(),
        }
    }
}

/// A reload that may be applied: everything built, nothing swapped yet.
#[derive(Debug)]
struct Prepared {
    config: Config,
    live: Live,
    changed: Vec<String>,
}

/// Decides a reload of `loaded` (the file as read) over the `running` configuration: pure.
fn prepare(
    running: &Config,
    loaded: Result<Config, ConfigError>,
    source: &str,
) -> Result<Prepared, ReloadError> {
    let config = loaded?;
    let changes = diff(running, &config)?;
    if !changes.restart.is_empty() {
        return Err(ReloadError::NeedsRestart(changes.restart_fields()));
    }
    let live = Live::build(&config.live()).map_err(|error| ReloadError::Live {
        file: source.to_owned(),
        error,
    })?;
    let changed = changes.live.iter().map(ToString::to_string).collect();
    Ok(Prepared {
        config,
        live,
        changed,
    })
}

impl Node {
    /// Re-reads the configuration file and applies the live fields, or refuses the whole
    /// file. Writes one audit record and one log line either way.
    ///
    /// # Errors
    /// [`ReloadError`]: nothing was applied.
    pub fn reload(&self, trigger: Trigger) -> Result<ReloadReport, ReloadError> {
        let reloader = &self.reloader;
        let mut running = reloader
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let source = reloader.source();
        let loaded = Config::load(reloader.path.as_deref());
        let result = prepare(&running, loaded, &source).map(|prepared| {
            self.apply(prepared.live);
            *running = prepared.config;
            ReloadReport {
                source: source.clone(),
                changed: prepared.changed,
            }
        });
        drop(running);
        self.account(trigger, &source, &result);
        result
    }

    /// Reload counts since start.
    pub fn reloads(&self) -> ReloadCounts {
        self.reloader.counts()
    }

    /// Swaps the live parts in: rules, internal ranges and sessions in one atomic store (a
    /// connection takes either the old set or the new when it is accepted), then the DNS
    /// static table.
    ///
    /// # Security
    /// The table is read when a name is looked up, not when a connection is accepted, so
    /// the two cannot be swapped as one; the order decides what a connection accepted
    /// between the two stores combines. Rules first: it gets the new rules with the old
    /// table, never the old rules with the new table. A rule the reload removes is thus
    /// enforced before any name is re-pointed, and a name the old rules allowed never
    /// reaches the address the new table gives it; a name only the new rules allow, and
    /// whose address is only in the new table, fails to resolve for that instant and is
    /// refused (fail closed). (A connection accepted just before the store may still do
    /// its lookups, in the first moments after detection, against the new table: only
    /// lookups in the connection's own snapshot, `Live::hosts`, would close that.)
    pub(super) fn apply(&self, live: Live) {
        let hosts = live.hosts.clone();
        self.proxy.live.store(Arc::new(live));
        self.resolver.set_hosts(hosts);
    }

    /// The counter, the log line and the audit record of one reload.
    fn account(&self, trigger: Trigger, source: &str, result: &Result<ReloadReport, ReloadError>) {
        let mut record = Record::new(Kind::Config);
        match result {
            Ok(report) => {
                self.reloader.ok.fetch_add(1, Ordering::Relaxed);
                let changed = if report.changed.is_empty() {
                    "nothing changed".to_owned()
                } else {
                    report.changed.join("; ")
                };
                tracing::info!(%trigger, source, %changed, "config: reloaded");
                record.decision = Decision::Allow;
                record.reason = Some(format!("reload ({trigger}) of {source}: {changed}"));
            }
            Err(e) => {
                self.reloader.refused.fetch_add(1, Ordering::Relaxed);
                let error = one_line(&e.to_string());
                tracing::warn!(%trigger, source, %error, "config: reload refused");
                record.decision = Decision::Deny;
                record.reason = Some(format!("{error} ({trigger})"));
            }
        }
        self.audit.write(record);
    }
}

/// A parser's multi-line message (source line, caret) as one line for the log and the audit.
fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .collect();
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The file `text` as `Config::load` would return it.
    fn loaded(text: &str) -> Result<Config, ConfigError> {
        Config::from_text(text, Path::new("/etc/sluice/sluice.toml"))
    }

    /// The new file, then the changes applied or the pieces of the refusal.
    type Case<'a> = (&'a str, Result<&'a [&'a str], &'a [&'a str]>);

    #[test]
    fn parse_errors_log_as_one_line() {
        let e = Config::parse("a = 1\n[policy\n").unwrap_err();
        let line = one_line(&format!("reload refused: config: parse /f: {e}"));
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("reload refused: config: parse /f: TOML parse error at line 2")
                && line.contains("; 2 | [policy; invalid table header"),
            "{line}"
        );
    }

    #[test]
    fn reloads_apply_live_changes_or_refuse_whole() {
        let running = Config::parse("[policy]\npassthrough = [\"old.test\"]\n").unwrap();
        let source = "/etc/sluice/sluice.toml";
        let cases: &[Case] = &[
            ("[policy]\npassthrough = [\"old.test\"]\n", Ok(&[])),
            (
                "[policy]\npassthrough = [\"api.test\"]\n[dns.hosts]\n\"a.test\" = [\"198.51.100.1\"]\n",
                Ok(&[
                    "dns.hosts: added a.test",
                    "policy.passthrough: added api.test; removed old.test",
                ]),
            ),
            (
                "[policy\n",
                Err(&[
                    "reload refused: config: parse /etc/sluice/sluice.toml",
                    "stays",
                ]),
            ),
            (
                "[policy]\ntcp_allow = [\"nope\"]\n",
                Err(&[
                    "config: /etc/sluice/sluice.toml: policy.tcp_allow",
                    "\"nope\"",
                ]),
            ),
            (
                "[listen]\ncontrol = \"127.0.0.1:1\"\n[capture]\npin_dir = \"/x\"\n\
                 [policy]\npassthrough = [\"api.test\"]\n",
                Err(&[
                    "capture.pin_dir, listen.control cannot change",
                    "restart to change it",
                ]),
            ),
        ];
        for (text, want) in cases {
            let got = prepare(&running, loaded(text), source);
            match (got, want) {
                (Ok(prepared), Ok(changed)) => {
                    assert_eq!(prepared.changed, *changed, "{text}");
                    assert_eq!(prepared.config, loaded(text).unwrap());
                }
                (Err(e), Err(wants)) => {
                    let message = e.to_string();
                    for want in *wants {
                        assert!(message.contains(want), "{text}: {want:?} in {message}");
                    }
                }
                (got, _) => panic!("{text}: unexpected {got:?}"),
            }
        }
    }
}
