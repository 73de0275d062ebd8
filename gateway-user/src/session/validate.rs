//! Validation of a [`NewSession`]: every error names the field it is about
//! (`credentials[0].hosts: at least one host`).
//!
//! The policy is not checked here: policy evaluation owns its own validation.

use std::collections::HashMap;
use std::time::Duration;

use super::model::NewSession;

/// Shortest session lifetime.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest session lifetime.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most credentials one session may carry.
pub const MAX_CREDENTIALS: usize = 64;
/// Largest credential value, in bytes.
pub const MAX_SECRET_LEN: usize = 16 * 1024;
/// Most labels one session may carry.
pub const MAX_LABELS: usize = 32;
/// Longest label value, in characters.
pub const MAX_LABEL_VALUE: usize = 256;

/// A field of a [`NewSession`] that is not acceptable, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// The field's path, e.g. `credentials[1].hosts[0]`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl NewSession {
    /// Checks every field; the first problem found is returned.
    ///
    /// # Security
    /// Error messages never quote a credential value or a proxy password.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.ttl < MIN_TTL || self.ttl > MAX_TTL {
            return fail(
                "ttl",
                format!(
                    "must be between 1 second and 30 days (got {}s)",
                    self.ttl.as_secs()
                ),
            );
        }
        if self.credentials.len() > MAX_CREDENTIALS {
            return fail("credentials", format!("at most {MAX_CREDENTIALS}"));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, (spec, secret)) in self.credentials.iter().enumerate() {
            let at = |field: &str| format!("credentials[{i}].{field}");
            if !is_credential_name(&spec.name) {
                return fail(
                    &at("name"),
                    "must be 1-64 characters of A-Z a-z 0-9 _ . -".into(),
                );
            }
            if let Some(first) = seen.insert(&spec.name, i) {
                return fail(
                    &at("name"),
                    format!("duplicate name {:?} (also credentials[{first}])", spec.name),
                );
            }
            if spec.hosts.is_empty() {
                return fail(&at("hosts"), "at least one host".into());
            }
            for (j, host) in spec.hosts.iter().enumerate() {
                if let Some(problem) = credential_host_problem(host) {
                    return fail(&at(&format!("hosts[{j}]")), problem.into());
                }
            }
            for (j, header) in spec.headers.iter().enumerate() {
                if !is_header_name(header) {
                    return fail(
                        &at(&format!("headers[{j}]")),
                        "must be a lowercase header name".into(),
                    );
                }
            }
            let value = secret.expose();
            if value.is_empty() {
                return fail(&at("value"), "must not be empty".into());
            }
            if value.len() > MAX_SECRET_LEN {
                return fail(&at("value"), format!("at most {MAX_SECRET_LEN} bytes"));
            }
            if value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
                return fail(&at("value"), "must not contain CR, LF or NUL".into());
            }
        }
        if let Some(choice) = self.upstream_proxy.as_deref()
            && let Err(e) = crate::upstream::egress::ProxyChoice::parse(choice)
        {
            return fail("upstream_proxy", e.to_string());
        }
        if self.labels.len() > MAX_LABELS {
            return fail("labels", format!("at most {MAX_LABELS}"));
        }
        for (key, value) in &self.labels {
            if !is_label_key(key) {
                return fail(
                    "labels",
                    format!("key {key:?} must be 1-63 characters of A-Z a-z 0-9 _ . - /"),
                );
            }
            if value.chars().count() > MAX_LABEL_VALUE || value.chars().any(char::is_control) {
                return fail(
                    &format!("labels.{key}"),
                    format!("at most {MAX_LABEL_VALUE} characters, no control characters"),
                );
            }
        }
        Ok(())
    }
}

/// Whether `name` is a valid credential name: `[A-Za-z0-9_.-]{1,64}`.
pub fn is_credential_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn fail(field: &str, problem: String) -> Result<(), ValidationError> {
    Err(ValidationError {
        field: field.to_owned(),
        problem,
    })
}

/// Credentials go to exact host names: lowercase DNS names (or IPv4 literals), no port, no
/// wildcard, no trailing dot.
fn credential_host_problem(host: &str) -> Option<&'static str> {
    if host.is_empty() {
        return Some("empty host");
    }
    if host.contains('*') {
        return Some("wildcards are not allowed (credentials go to exact hosts)");
    }
    if host.contains(':') {
        return Some("no port or IPv6 literal (exact host name only)");
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some("must be lowercase");
    }
    let labels_ok = host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    // The injector compares a request's `Host` with these texts: each must be its own
    // normal form.
    let normal = crate::host::Host::parse(host).is_ok_and(|h| h.as_str() == host);
    (!labels_ok || !normal)
        .then_some("not a host name (letters, digits, `-`, dot-separated labels)")
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

fn is_label_key(key: &str) -> bool {
    (1..=63).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::credentials::{CredentialSpec, Secret};
    use crate::policy::PolicySpec;

    fn credential(name: &str, hosts: &[&str]) -> (CredentialSpec, Secret) {
        (
            CredentialSpec {
                name: name.into(),
                hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
                headers: Vec::new(),
                query: false,
                body: false,
            },
            Secret::new(b"value".to_vec()),
        )
    }

    fn valid() -> NewSession {
        NewSession {
            ttl: Duration::from_secs(3600),
            credentials: vec![credential("github", &["api.github.com"])],
            policy: PolicySpec::default(),
            upstream_proxy: Some("http://user:pw@proxy.internal:3128".into()),
            labels: BTreeMap::from([("owner".into(), "ci".into())]),
        }
    }

    #[test]
    fn valid_request_passes() {
        assert_eq!(valid().validate(), Ok(()));
        let mut minimal = valid();
        minimal.credentials.clear();
        minimal.upstream_proxy = None;
        minimal.labels.clear();
        assert_eq!(minimal.validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_field() {
        type Edit = fn(&mut NewSession);
        let cases: &[(Edit, &str)] = &[
            (
                |s| s.ttl = Duration::ZERO,
                "ttl: must be between 1 second and 30 days (got 0s)",
            ),
            (
                |s| s.ttl = MAX_TTL + Duration::from_secs(1),
                "ttl: must be between",
            ),
            (
                |s| s.credentials[0].0.hosts.clear(),
                "credentials[0].hosts: at least one host",
            ),
            (
                |s| s.credentials[0].0.name = "bad name".into(),
                "credentials[0].name: must be 1-64",
            ),
            (
                |s| s.credentials[0].0.name = String::new(),
                "credentials[0].name: must be 1-64",
            ),
            (
                |s| s.credentials[0].0.name = "a".repeat(65),
                "credentials[0].name: must be 1-64",
            ),
            (
                |s| s.credentials.push(credential("github", &["x.com"])),
                "credentials[1].name: duplicate name \"github\" (also credentials[0])",
            ),
            (
                |s| s.credentials.push(credential("b", &["x.com", "*.x.com"])),
                "credentials[1].hosts[1]: wildcards",
            ),
            (
                |s| s.credentials[0].0.hosts[0] = "api.github.com:443".into(),
                "credentials[0].hosts[0]: no port",
            ),
            (
                |s| s.credentials[0].0.hosts[0] = "API.github.com".into(),
                "credentials[0].hosts[0]: must be lowercase",
            ),
            (
                |s| s.credentials[0].0.hosts[0] = "api.github.com.".into(),
                "credentials[0].hosts[0]: not a host name",
            ),
            (
                |s| s.credentials[0].0.hosts[0] = "a b".into(),
                "credentials[0].hosts[0]: not a host name",
            ),
            (
                |s| s.credentials[0].0.hosts[0] = String::new(),
                "credentials[0].hosts[0]: empty host",
            ),
            (
                |s| s.credentials[0].0.headers = vec!["Authorization".into()],
                "credentials[0].headers[0]: must be a lowercase",
            ),
            (
                |s| s.credentials[0].1 = Secret::new(Vec::new()),
                "credentials[0].value: must not be empty",
            ),
            (
                |s| s.credentials[0].1 = Secret::new(b"a\r\nX: y".to_vec()),
                "credentials[0].value: must not contain CR",
            ),
            (
                |s| s.credentials[0].1 = Secret::new(vec![b'a'; MAX_SECRET_LEN + 1]),
                "credentials[0].value: at most",
            ),
            (
                |s| s.upstream_proxy = Some("socks5://proxy:1080".into()),
                "upstream_proxy: upstream proxy socks5://proxy:1080: must be an http",
            ),
            (
                |s| s.upstream_proxy = Some("proxy:3128".into()),
                "upstream_proxy: upstream proxy id",
            ),
            (
                |s| s.upstream_proxy = Some("http://proxy:3128/path".into()),
                "upstream_proxy: upstream proxy http://proxy:3128/path: must be an http",
            ),
            (
                |s| s.upstream_proxy = Some("not a url".into()),
                "upstream_proxy: upstream proxy id",
            ),
            (
                |s| {
                    s.labels.insert("bad key".into(), "v".into());
                },
                "labels: key \"bad key\"",
            ),
            (
                |s| {
                    s.labels.insert("k".into(), "x".repeat(257));
                },
                "labels.k: at most 256",
            ),
        ];
        for (edit, want) in cases {
            let mut request = valid();
            edit(&mut request);
            let err = request.validate().expect_err(want);
            assert!(
                err.to_string().starts_with(want),
                "want {want:?}, got {err}"
            );
        }
    }

    #[test]
    fn errors_never_quote_secrets() {
        let mut request = valid();
        request.credentials[0].1 = Secret::new(b"sekrit\nvalue".to_vec());
        let err = request.validate().expect_err("CR/LF refused");
        assert!(!err.to_string().contains("sekrit"));
        let mut request = valid();
        request.upstream_proxy = Some("ftp://user:hunter2@proxy".into());
        let err = request.validate().expect_err("scheme refused");
        assert!(!err.to_string().contains("hunter2"));
        assert!(!format!("{request:?}").contains("hunter2"));
    }
}
