//! `sluice session create | list | show | revoke`: clients of the control API.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use crate::api::{CreateSession, CredentialInput};
use crate::config::Config;
use crate::control::sessions::CreatedSession;
use crate::policy::{Enforcement, HostRule, PiiMode, PolicySpec, RateLimit};
use crate::session::SessionView;

/// `sluice session …`.
#[derive(Debug, clap::Subcommand)]
pub enum SessionCommand {
    /// Create a session; prints its id and token (the only time the token is shown).
    Create(Box<CreateArgs>),
    /// List sessions.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one session (never its token or credential values).
    Show {
        /// The session id.
        id: String,
    },
    /// Revoke a session on every node (takes effect within a second).
    Revoke {
        /// The session id.
        id: String,
    },
}

/// Arguments of `sluice session create`.
#[derive(Debug, Default, clap::Args)]
pub struct CreateArgs {
    /// Lifetime: `90s`, `30m`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    /// `NAME=VALUE@HOST[,HOST]`: a credential the sandbox sees as `sluice_cred:NAME`.
    /// VALUE may be `env:VAR`, `file:PATH` or `-` (stdin) so it stays out of `ps`.
    #[arg(long = "cred", value_name = "NAME=VALUE@HOSTS")]
    creds: Vec<String>,
    /// Also swap these credentials' placeholders in query strings.
    #[arg(long = "cred-query", value_name = "NAME")]
    cred_query: Vec<String>,
    /// Also swap these credentials' placeholders in JSON and form bodies.
    #[arg(long = "cred-body", value_name = "NAME")]
    cred_body: Vec<String>,
    /// Allow only these hosts (`api.example.com`, `*.example.com`); repeatable.
    #[arg(long = "allow", value_name = "HOST")]
    allow: Vec<String>,
    /// Refuse these hosts; repeatable.
    #[arg(long = "deny", value_name = "HOST")]
    deny: Vec<String>,
    /// `HOST=METHODS:PATHS`, e.g. `api.example.com=GET,POST:/v1/`; repeatable.
    #[arg(long = "rule", value_name = "HOST=METHODS:PATHS")]
    rules: Vec<String>,
    /// `HOST=N`: at most N requests per minute to HOST; repeatable.
    #[arg(long = "rate", value_name = "HOST=N")]
    rates: Vec<String>,
    /// Pass these hosts through untouched (pinned clients); repeatable.
    #[arg(long = "passthrough", value_name = "HOST")]
    passthrough: Vec<String>,
    /// `HOST_OR_CIDR:PORT` non-HTTP TCP may reach; repeatable.
    #[arg(long = "tcp-allow", value_name = "TARGET:PORT")]
    tcp_allow: Vec<String>,
    /// PII scanning of request bodies: off, detect, redact, block.
    #[arg(long, default_value = "off", value_parser = parse_pii)]
    pii: PiiMode,
    /// Record would-be refusals instead of enforcing them.
    #[arg(long)]
    audit_only: bool,
    /// The upstream (corporate) proxy the session's traffic leaves through: a proxy id of
    /// the node (`sluice proxy list`), an http:// or https:// URL (`user:password@` for
    /// basic auth; the password is sealed and shown masked), or `none` for direct whatever
    /// the node's default. A URL with a password may be given as `env:VAR`, `file:PATH` or
    /// `-` (stdin) so it stays out of `ps`. A sandbox's own --upstream-proxy overrides it.
    #[arg(long, value_name = "ID|URL|none")]
    upstream_proxy: Option<String>,
    /// Print the API's JSON answer.
    #[arg(long)]
    json: bool,
}

/// Runs a session command against the daemon.
pub async fn run(config: &Config, command: SessionCommand) -> ExitCode {
    let client = match super::client(config) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    let result = match command {
        SessionCommand::Create(args) => match build(&args) {
            Ok(request) => client
                .create_session(&request)
                .await
                .map(|created| print_created(&created, args.json))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        SessionCommand::List { json } => client
            .sessions()
            .await
            .map(|list| print_list(&list, json))
            .map_err(|e| e.to_string()),
        SessionCommand::Show { id } => client
            .session(&id)
            .await
            .map(|s| println!("{}", pretty(&s)))
            .map_err(|e| e.to_string()),
        SessionCommand::Revoke { id } => client
            .revoke_session(&id)
            .await
            .map(|s| println!("session {} revoked", s.id))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail(&e),
    }
}

/// A flag whose value cannot be used; the message names the flag and the fix, never the
/// value (it may be a secret).
#[derive(Debug, thiserror::Error)]
pub(super) enum FlagError {
    /// `env:VAR` names an unset variable.
    #[error("{flag}: environment variable {var} is not set")]
    Unset {
        /// The flag.
        flag: String,
        /// The variable.
        var: String,
    },
    /// `file:PATH` or `-` could not be read.
    #[error("{flag}: read {from}: {source}")]
    Read {
        /// The flag.
        flag: String,
        /// The file, or `stdin`.
        from: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The value is empty.
    #[error("{flag}: the value is empty")]
    Empty {
        /// The flag.
        flag: String,
    },
    /// `--cred` is not `NAME=VALUE@HOST[,HOST]`.
    #[error("--cred: {0}; expected NAME=VALUE@HOST[,HOST]")]
    Cred(&'static str),
    /// `--cred-query` / `--cred-body` names no `--cred`.
    #[error("{flag} {name}: no --cred {name}=… was given")]
    NoCred {
        /// The flag.
        flag: &'static str,
        /// The credential name.
        name: String,
    },
    /// `--rule` is not `HOST=METHODS:PATHS`.
    #[error("--rule {0:?}: expected HOST=METHODS:PATHS, e.g. api.example.com=GET,POST:/v1/")]
    Rule(String),
    /// `--rate` is not `HOST=N`.
    #[error("--rate {0:?}: expected HOST=N (requests per minute, at least 1)")]
    Rate(String),
}

/// The API request `args` describe; errors name the flag and the fix.
fn build(args: &CreateArgs) -> Result<CreateSession, FlagError> {
    let mut credentials = Vec::new();
    for text in &args.creds {
        credentials.push(parse_cred(text, &mut std::io::stdin())?);
    }
    for (flag, names, set) in [
        (
            "--cred-query",
            &args.cred_query,
            (|c: &mut CredentialInput| c.query = true) as fn(&mut CredentialInput),
        ),
        ("--cred-body", &args.cred_body, |c| c.body = true),
    ] {
        for name in names {
            let cred = credentials
                .iter_mut()
                .find(|c| &c.name == name)
                .ok_or_else(|| FlagError::NoCred {
                    flag,
                    name: name.clone(),
                })?;
            set(cred);
        }
    }
    let rules = args
        .rules
        .iter()
        .map(|r| parse_rule(r))
        .collect::<Result<_, _>>()?;
    let rate_limits = args
        .rates
        .iter()
        .map(|r| parse_rate(r))
        .collect::<Result<_, _>>()?;
    Ok(CreateSession {
        ttl_seconds: args.ttl.as_secs(),
        credentials,
        policy: PolicySpec {
            allow: (!args.allow.is_empty()).then(|| args.allow.clone()),
            deny: args.deny.clone(),
            rules,
            rate_limits,
            tcp_allow: args.tcp_allow.clone(),
            passthrough: args.passthrough.clone(),
            pii: args.pii,
            enforcement: if args.audit_only {
                Enforcement::Audit
            } else {
                Enforcement::Enforce
            },
        },
        upstream_proxy: args
            .upstream_proxy
            .as_deref()
            .map(|v| read_value("--upstream-proxy", v, &mut std::io::stdin()))
            .transpose()?,
        labels: Default::default(),
    })
}

/// `value` as given, or read from `env:VAR`, `file:PATH` or `-` (stdin) so a secret stays
/// out of `ps` and shell history; `what` names the flag in errors. Never empty.
pub(super) fn read_value(
    what: &str,
    value: &str,
    stdin: &mut dyn Read,
) -> Result<String, FlagError> {
    let read = |from: &str| {
        let flag = what.to_owned();
        let from = from.to_owned();
        move |source| FlagError::Read { flag, from, source }
    };
    let value = if let Some(var) = value.strip_prefix("env:") {
        std::env::var(var).map_err(|_| FlagError::Unset {
            flag: what.to_owned(),
            var: var.to_owned(),
        })?
    } else if let Some(path) = value.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map_err(read(path))?
            .trim_end_matches(['\r', '\n'])
            .to_owned()
    } else if value == "-" {
        let mut buf = String::new();
        stdin.read_to_string(&mut buf).map_err(read("stdin"))?;
        buf.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        value.to_owned()
    };
    if value.is_empty() {
        return Err(FlagError::Empty {
            flag: what.to_owned(),
        });
    }
    Ok(value)
}

/// `NAME=VALUE@HOST[,HOST]`, VALUE literal or `env:VAR`, `file:PATH`, `-`.
fn parse_cred(text: &str, stdin: &mut dyn Read) -> Result<CredentialInput, FlagError> {
    let (name, rest) = text.split_once('=').ok_or(FlagError::Cred("no `=`"))?;
    let (value, hosts) = rest.rsplit_once('@').ok_or(FlagError::Cred("no `@HOST`"))?;
    let hosts: Vec<String> = hosts
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if name.is_empty() || hosts.is_empty() {
        return Err(FlagError::Cred("empty name or host list"));
    }
    let value = read_value(&format!("--cred {name}"), value, stdin)?;
    Ok(CredentialInput {
        name: name.to_owned(),
        value,
        hosts,
        ..CredentialInput::default()
    })
}

/// `HOST=METHODS:PATHS` (`GET,POST:/v1/,/v2/`; either side may be empty).
fn parse_rule(text: &str) -> Result<HostRule, FlagError> {
    let bad = || FlagError::Rule(text.to_owned());
    let (host, rest) = text.split_once('=').ok_or_else(bad)?;
    let (methods, paths) = rest.split_once(':').ok_or_else(bad)?;
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    Ok(HostRule {
        host: host.to_owned(),
        methods: list(methods)
            .into_iter()
            .map(|m| m.to_ascii_uppercase())
            .collect(),
        paths: list(paths),
    })
}

/// `HOST=N`.
fn parse_rate(text: &str) -> Result<RateLimit, FlagError> {
    let bad = || FlagError::Rate(text.to_owned());
    let (host, n) = text.split_once('=').ok_or_else(bad)?;
    let per_minute: u32 = n.trim().parse().map_err(|_| bad())?;
    if per_minute == 0 || host.is_empty() {
        return Err(bad());
    }
    Ok(RateLimit {
        host: host.to_owned(),
        per_minute,
    })
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit (90s, 30m, 1h, 7d)"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(seconds))
}

fn parse_pii(text: &str) -> Result<PiiMode, String> {
    serde_json::from_value(serde_json::Value::String(text.to_ascii_lowercase()))
        .map_err(|_| format!("{text:?}: expected off, detect, redact or block"))
}

fn print_created(created: &CreatedSession, json: bool) {
    if json {
        println!("{}", pretty(created));
        return;
    }
    let s = &created.session;
    println!(
        "session {} created, expires {}",
        s.id,
        rfc3339(s.expires_at)
    );
    println!("token (shown once; give it to the sandbox's orchestrator, not the agent):");
    println!("  {}", created.token);
    for (name, placeholder) in &created.placeholders {
        let hosts = s
            .credentials
            .iter()
            .find(|c| &c.name == name)
            .map(|c| c.hosts.join(","))
            .unwrap_or_default();
        println!(
            "credential {name}: the sandbox sends {placeholder} (replaced only toward {hosts})"
        );
    }
}

fn print_list(list: &[SessionView], json: bool) {
    if json {
        println!("{}", pretty(&list));
        return;
    }
    println!("{:<32} {:<8} {:<22} credentials", "id", "state", "expires");
    for s in list {
        let names: Vec<&str> = s.credentials.iter().map(|c| c.name.as_str()).collect();
        println!(
            "{:<32} {:<8} {:<22} {}",
            s.id,
            s.state.as_str(),
            rfc3339(s.expires_at),
            names.join(",")
        );
    }
}

/// Unix seconds as RFC 3339 UTC.
pub fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_with_every_value_source() {
        let mut empty = std::io::empty();
        let c = parse_cred("OPENAI=sk-1@api.openai.test,Other.test", &mut empty).unwrap();
        assert_eq!(c.name, "OPENAI");
        assert_eq!(c.value, "sk-1");
        assert_eq!(c.hosts, ["api.openai.test", "other.test"]);
        let at = parse_cred("K=user@pass@h.test", &mut empty).unwrap();
        assert_eq!(at.value, "user@pass", "the last @ separates the hosts");
        let mut stdin = std::io::Cursor::new(b"from-stdin\n".to_vec());
        assert_eq!(
            parse_cred("K=-@h.test", &mut stdin).unwrap().value,
            "from-stdin"
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "from-file\n").unwrap();
        let spec = format!("K=file:{}@h.test", file.path().display());
        assert_eq!(parse_cred(&spec, &mut empty).unwrap().value, "from-file");
        for bad in ["K", "K=v", "=v@h", "K=v@", "K=env:SLUICE_TEST_UNSET_VAR@h"] {
            let err = parse_cred(bad, &mut empty).unwrap_err().to_string();
            assert!(err.contains("--cred"), "{bad}: {err}");
            assert!(!err.contains("v@"), "{bad}: no value echoed: {err}");
        }
    }

    #[test]
    fn rules_rates_ttls_and_modes_parse() {
        let r = parse_rule("api.test=get,POST:/v1/,/v2/").unwrap();
        assert_eq!(r.methods, ["GET", "POST"]);
        assert_eq!(r.paths, ["/v1/", "/v2/"]);
        assert!(parse_rule("api.test").is_err());
        assert_eq!(parse_rate("api.test=60").unwrap().per_minute, 60);
        assert!(parse_rate("api.test=0").is_err());
        assert_eq!(parse_ttl("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_ttl("1w").is_err());
        assert_eq!(parse_pii("Redact").unwrap(), PiiMode::Redact);
        assert!(parse_pii("loud").is_err());
    }

    #[test]
    fn flags_build_the_api_request() {
        let args = CreateArgs {
            ttl: Duration::from_secs(600),
            creds: vec!["GH=ghp_x@api.github.test".into()],
            cred_body: vec!["GH".into()],
            allow: vec!["api.github.test".into()],
            rates: vec!["api.github.test=60".into()],
            audit_only: true,
            ..CreateArgs::default()
        };
        let request = build(&args).unwrap();
        assert_eq!(request.ttl_seconds, 600);
        assert!(request.credentials[0].body && !request.credentials[0].query);
        assert_eq!(
            request.policy.allow.as_deref(),
            Some(&["api.github.test".to_owned()][..])
        );
        assert_eq!(request.policy.enforcement, Enforcement::Audit);
        let missing = CreateArgs {
            cred_query: vec!["NOPE".into()],
            ..CreateArgs::default()
        };
        assert!(
            build(&missing)
                .unwrap_err()
                .to_string()
                .contains("--cred-query NOPE")
        );
    }
}
