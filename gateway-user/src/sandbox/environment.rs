//! The environment a `sluice exec` workload starts with: an allowlist, never the operator's
//! whole environment.
//!
//! # Security
//! The shell that runs `sluice exec` may hold real secrets (the README's own walkthrough
//! exports one before creating a session with `--cred NAME=env:VAR`). Only these reach the
//! workload: locale and terminal variables, `PATH`, the trust variables `sluice env`
//! prints, `SLUICE_SESSION`, variables whose value is a credential placeholder
//! (`sluice_cred:…`), and what `--env` names explicitly.

use std::ffi::{OsStr, OsString};

/// Variables passed through by name (with the variables of
/// [`crate::tls::trust::TRUST_VARS`] that hold a path: not `JAVA_TOOL_OPTIONS`, whose value
/// often carries secrets, nor fixed values).
const PASSED: [&str; 8] = [
    "PATH",
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "LANG",
    "LANGUAGE",
    "TZ",
    "SLUICE_SESSION",
];

/// Why an `--env` entry was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--env {0:?}: {1}")]
pub struct EnvError(String, &'static str);

/// One `--env` entry: `NAME` (take it from the caller's environment) or `NAME=VALUE`.
pub fn parse_entry(text: &str) -> Result<(String, Option<String>), EnvError> {
    let (name, value) = match text.split_once('=') {
        Some((n, v)) => (n, Some(v.to_owned())),
        None => (text, None),
    };
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(EnvError(text.to_owned(), "not NAME or NAME=VALUE"));
    }
    Ok((name.to_owned(), value))
}

/// The workload's environment: what `vars` (the caller's environment) allows, then `extra`
/// (`--env` entries, a bare name taking the caller's value).
pub fn for_workload(
    vars: impl Iterator<Item = (OsString, OsString)>,
    extra: &[(String, Option<String>)],
) -> Vec<(OsString, OsString)> {
    let vars: Vec<(OsString, OsString)> = vars.collect();
    let mut kept: Vec<(OsString, OsString)> = vars
        .iter()
        .filter(|(name, value)| passes(name, value))
        .cloned()
        .collect();
    for (name, value) in extra {
        let value = match value {
            Some(v) => Some(OsString::from(v)),
            None => vars
                .iter()
                .find(|(n, _)| n == OsStr::new(name))
                .map(|(_, v)| v.clone()),
        };
        if let Some(value) = value {
            kept.retain(|(n, _)| n != OsStr::new(name));
            kept.push((OsString::from(name), value));
        }
    }
    kept
}

fn passes(name: &OsStr, value: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    PASSED.contains(&name)
        || crate::tls::trust::TRUST_VARS
            .iter()
            .any(|(n, points)| *n == name && points.is_path())
        || name.starts_with("LC_")
        || value
            .to_str()
            .is_some_and(|v| v.starts_with("sluice_cred:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
        pairs
            .iter()
            .map(|(n, v)| (OsString::from(n), OsString::from(v)))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn secrets_in_the_callers_environment_stay_out() {
        let caller = env(&[
            ("PATH", "/usr/bin"),
            ("OPENAI_KEY", "sk-real-value"),
            ("AWS_SECRET_ACCESS_KEY", "real"),
            ("SLUICE_MASTER_KEY", "k"),
            ("HTTPS_PROXY", "http://sluice:tok@127.0.0.1:3128"),
            ("OPENAI_API_KEY", "sluice_cred:OPENAI_API_KEY"),
            ("LC_ALL", "C.UTF-8"),
            ("SSL_CERT_FILE", "/var/lib/sluice/ca-bundle.pem"),
            ("JAVA_TOOL_OPTIONS", "-Dhttps.proxyPassword=real"),
        ]);
        let got = for_workload(caller, &[]);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.to_str().unwrap()).collect();
        assert_eq!(
            names,
            ["PATH", "OPENAI_API_KEY", "LC_ALL", "SSL_CERT_FILE"],
            "{got:?}"
        );
    }

    #[test]
    fn env_flags_add_and_override() {
        let caller = env(&[("PATH", "/usr/bin"), ("MODEL", "small")]);
        let extra = [
            parse_entry("MODEL").unwrap(),
            parse_entry("PATH=/opt/bin").unwrap(),
            parse_entry("MISSING").unwrap(),
        ];
        let got = for_workload(caller, &extra);
        assert_eq!(
            got,
            [
                (OsString::from("MODEL"), OsString::from("small")),
                (OsString::from("PATH"), OsString::from("/opt/bin")),
            ]
        );
        for bad in ["", "=x", "1A", "A-B=c"] {
            assert!(parse_entry(bad).is_err(), "{bad}");
        }
    }
}
