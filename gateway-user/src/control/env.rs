//! What a sandbox needs in its environment: every variable a runtime reads to find its
//! roots (pointing at the merged bundle, or at the CA alone where the variable adds to the
//! defaults), placeholder variables for its session's credentials, and (proxy mode) the proxy
//! variables; printed as shell, JSON, dotenv, a `docker run --env-file` or a Kubernetes
//! `env:` list.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::session::Session;
use crate::tls::trust::{PROXY_MODE_VARS, TRUST_VARS, TrustFiles};

/// Where the proxy URL's token goes: `$SLUICE_SESSION_TOKEN`, expanded where the sandbox
/// starts (the token is shown once, at creation, and never stored in clear).
const TOKEN_REF: &str = "${SLUICE_SESSION_TOKEN}";

/// `GET /v1/env` and `GET /v1/sessions/{id}/env` answer.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct SandboxEnv {
    /// `(name, value)` pairs in print order. Proxy URLs hold `${SLUICE_SESSION_TOKEN}`.
    pub vars: Vec<(String, String)>,
}

/// How `sluice env` prints the variables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvFormat {
    /// `export NAME="value"` lines, for `eval "$(sluice env)"`.
    #[default]
    Sh,
    /// One JSON object.
    Json,
    /// `NAME="value"` lines (`.env` files; `${VAR}` expanded by most loaders).
    Dotenv,
    /// `NAME=value` lines for `docker run --env-file` (taken literally).
    Docker,
    /// A Kubernetes `env:` list (`$(VAR)` refers to another variable of the container).
    K8s,
}

/// A variable that refers to `$SLUICE_SESSION_TOKEN` (or spans lines) asked for as a docker
/// env file, which docker reads literally.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0}: a docker env file is read literally and cannot refer to $SLUICE_SESSION_TOKEN; use \
     --format sh or dotenv, or pass {0} with `docker run -e` after expanding it"
)]
pub struct DockerLiteral(pub String);

impl SandboxEnv {
    /// The variables for a sandbox of `session` (none: a node-level sandbox), with the
    /// trust files `files`; `proxy` is the explicit proxy's address in proxy mode.
    ///
    /// # Security
    /// No secret: placeholders only, and the proxy URL refers to `$SLUICE_SESSION_TOKEN`
    /// instead of containing the token.
    pub fn build(
        session: Option<&Session>,
        files: &TrustFiles,
        proxy: Option<SocketAddr>,
    ) -> SandboxEnv {
        let mut vars: Vec<(String, String)> = TRUST_VARS
            .iter()
            .map(|(name, points)| ((*name).to_owned(), files.value(*points)))
            .collect();
        if let Some(session) = session {
            vars.push(("SLUICE_SESSION".into(), session.id.clone()));
            for cred in &session.credentials {
                vars.push((env_name(&cred.spec.name), cred.spec.placeholder()));
            }
        }
        if let Some(addr) = proxy {
            let url = format!("http://sluice:{TOKEN_REF}@{addr}");
            for name in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
                vars.push((name.into(), url.clone()));
            }
            for name in ["NO_PROXY", "no_proxy"] {
                vars.push((name.into(), "localhost,127.0.0.1,::1".into()));
            }
            for (name, value) in PROXY_MODE_VARS {
                vars.push(((*name).into(), (*value).into()));
            }
        }
        SandboxEnv { vars }
    }

    /// The variables printed as `format`.
    ///
    /// # Errors
    /// A docker env file cannot refer to `$SLUICE_SESSION_TOKEN` (docker reads it
    /// literally): proxy-mode variables are refused there with what to do instead.
    pub fn render(&self, format: EnvFormat) -> Result<String, DockerLiteral> {
        let mut out = String::new();
        match format {
            EnvFormat::Sh => {
                for (k, v) in &self.vars {
                    out.push_str(&format!("export {k}=\"{}\"\n", shell_quoted(v)));
                }
            }
            EnvFormat::Dotenv => {
                for (k, v) in &self.vars {
                    out.push_str(&format!("{k}=\"{}\"\n", shell_quoted(v)));
                }
            }
            EnvFormat::Json => {
                let map: serde_json::Map<String, serde_json::Value> = self
                    .vars
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                out = serde_json::to_string_pretty(&map).unwrap_or_default();
                out.push('\n');
            }
            EnvFormat::Docker => {
                for (k, v) in &self.vars {
                    if v.contains(TOKEN_REF) || v.contains('\n') {
                        return Err(DockerLiteral(k.clone()));
                    }
                    out.push_str(&format!("{k}={v}\n"));
                }
            }
            EnvFormat::K8s => {
                out.push_str("env:\n");
                if self.vars.iter().any(|(_, v)| v.contains(TOKEN_REF)) {
                    out.push_str(
                        "  # SLUICE_SESSION_TOKEN must be defined before these (a secretKeyRef)\n",
                    );
                }
                for (k, v) in &self.vars {
                    let v = v.replace(TOKEN_REF, "$(SLUICE_SESSION_TOKEN)");
                    let quoted = serde_json::Value::String(v).to_string();
                    out.push_str(&format!("  - name: {k}\n    value: {quoted}\n"));
                }
            }
        }
        Ok(out)
    }
}

/// `value` for the inside of a double-quoted shell word: `\`, `"`, `` ` `` and `$`
/// escaped, but for the token reference, which the shell expands where the sandbox starts.
fn shell_quoted(value: &str) -> String {
    value
        .split(TOKEN_REF)
        .map(|part| {
            part.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('`', "\\`")
                .replace('$', "\\$")
        })
        .collect::<Vec<_>>()
        .join(TOKEN_REF)
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
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn env_names_are_shell_safe() {
        assert_eq!(env_name("OPENAI_API_KEY"), "OPENAI_API_KEY");
        assert_eq!(env_name("openai.key-2"), "OPENAI_KEY_2");
        assert_eq!(env_name("1st"), "_1ST");
    }

    fn files() -> TrustFiles {
        TrustFiles {
            bundle: PathBuf::from("/var/lib/sluice/ca-bundle.pem"),
            ca: PathBuf::from("/var/lib/sluice/ca.pem"),
            dir: PathBuf::from("/var/lib/sluice/certs"),
            hashed: PathBuf::from("/var/lib/sluice/certs/0a1b2c3d.0"),
            wgetrc: PathBuf::from("/var/lib/sluice/wgetrc"),
            java: PathBuf::from("/var/lib/sluice/certs/java/cacerts"),
        }
    }

    fn value<'a>(env: &'a SandboxEnv, name: &str) -> Option<&'a str> {
        env.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn node_level_variables_point_at_the_bundle_or_the_ca_where_they_add() {
        let env = SandboxEnv::build(None, &files(), None);
        for name in [
            "SSL_CERT_FILE",
            "PIP_CERT",
            "NPM_CONFIG_CAFILE",
            "AWS_CA_BUNDLE",
        ] {
            assert_eq!(
                value(&env, name),
                Some("/var/lib/sluice/ca-bundle.pem"),
                "{name}"
            );
        }
        assert_eq!(
            value(&env, "NODE_EXTRA_CA_CERTS"),
            Some("/var/lib/sluice/ca.pem")
        );
        assert_eq!(value(&env, "SSL_CERT_DIR"), Some("/var/lib/sluice/certs"));
        assert_eq!(value(&env, "SLUICE_SESSION"), None, "no session");
        assert_eq!(value(&env, "HTTPS_PROXY"), None);
    }

    #[test]
    fn every_format_carries_every_variable_and_the_token_only_by_reference() {
        let proxy = Some("127.0.0.1:3128".parse().unwrap());
        let env = SandboxEnv::build(None, &files(), proxy);
        assert_eq!(value(&env, "NODE_USE_ENV_PROXY"), Some("1"));
        let sh = env.render(EnvFormat::Sh).unwrap();
        assert!(
            sh.contains(
                "export HTTPS_PROXY=\"http://sluice:${SLUICE_SESSION_TOKEN}@127.0.0.1:3128\""
            ),
            "{sh}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&env.render(EnvFormat::Json).unwrap()).unwrap();
        assert_eq!(json["SSL_CERT_DIR"], "/var/lib/sluice/certs");
        let k8s = env.render(EnvFormat::K8s).unwrap();
        assert!(
            k8s.contains("value: \"http://sluice:$(SLUICE_SESSION_TOKEN)@127.0.0.1:3128\""),
            "{k8s}"
        );
        let err = env.render(EnvFormat::Docker).unwrap_err().to_string();
        assert!(
            err.contains("HTTPS_PROXY") && err.contains("--format sh"),
            "{err}"
        );
        let plain = SandboxEnv::build(None, &files(), None);
        let docker = plain.render(EnvFormat::Docker).unwrap();
        assert!(
            docker.contains("SSL_CERT_FILE=/var/lib/sluice/ca-bundle.pem\n"),
            "{docker}"
        );
        for format in [
            EnvFormat::Sh,
            EnvFormat::Dotenv,
            EnvFormat::Json,
            EnvFormat::K8s,
        ] {
            let text = plain.render(format).unwrap();
            for (name, _) in TRUST_VARS {
                assert!(text.contains(name), "{format:?} lacks {name}");
            }
        }
    }

    #[test]
    fn shell_values_cannot_run_anything() {
        let quoted = shell_quoted("/a/$(id)`x`\"\\/${SLUICE_SESSION_TOKEN}");
        assert_eq!(quoted, "/a/\\$(id)\\`x\\`\\\"\\\\/${SLUICE_SESSION_TOKEN}");
    }
}
