//! What a sandbox needs in its environment: the merged CA bundle, placeholder variables for
//! its session's credentials, and (proxy mode) the proxy variables.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::session::Session;

/// Variables that point TLS clients at a CA bundle (system roots + the Sluice CA).
pub const BUNDLE_VARS: [&str; 6] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "CARGO_HTTP_CAINFO",
    "DENO_CERT",
];

/// `GET /v1/sessions/{id}/env` answer.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct SandboxEnv {
    /// `(name, value)` pairs in print order.
    pub vars: Vec<(String, String)>,
}

impl SandboxEnv {
    /// The variables for `session`; `proxy` is the explicit proxy address in proxy mode.
    ///
    /// # Security
    /// No secret: placeholders only, and the proxy URL refers to `$SLUICE_SESSION_TOKEN`
    /// (the token is shown once, at creation) instead of containing it.
    pub fn build(
        session: &Session,
        bundle: &Path,
        sluice_ca: &Path,
        proxy: Option<std::net::SocketAddr>,
    ) -> SandboxEnv {
        let bundle = bundle.display().to_string();
        let mut vars: Vec<(String, String)> = BUNDLE_VARS
            .iter()
            .map(|name| ((*name).to_owned(), bundle.clone()))
            .collect();
        vars.push((
            "NODE_EXTRA_CA_CERTS".into(),
            sluice_ca.display().to_string(),
        ));
        vars.push(("SLUICE_SESSION".into(), session.id.clone()));
        for cred in &session.credentials {
            vars.push((env_name(&cred.spec.name), cred.spec.placeholder()));
        }
        if let Some(addr) = proxy {
            let url = format!("http://sluice:${{SLUICE_SESSION_TOKEN}}@{addr}");
            for name in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
                vars.push((name.into(), url.clone()));
            }
            for name in ["NO_PROXY", "no_proxy"] {
                vars.push((name.into(), "localhost,127.0.0.1,::1".into()));
            }
        }
        SandboxEnv { vars }
    }

    /// Shell lines (`export NAME="value"`), for `eval "$(sluice env …)"`.
    pub fn shell(&self) -> String {
        self.vars
            .iter()
            .map(|(k, v)| format!("export {k}=\"{}\"\n", v.replace('"', "\\\"")))
            .collect()
    }
}

/// A credential name as an environment variable name (`openai.key-2` → `OPENAI_KEY_2`).
pub fn env_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_shell_safe() {
        assert_eq!(env_name("OPENAI_API_KEY"), "OPENAI_API_KEY");
        assert_eq!(env_name("openai.key-2"), "OPENAI_KEY_2");
        assert_eq!(env_name("1st"), "_1ST");
    }
}
