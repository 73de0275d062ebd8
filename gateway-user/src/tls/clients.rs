//! How TLS clients find their roots, and what to tell the operator when one refused Sluice's
//! certificate.
//!
//! A client that aborts the handshake on Sluice's leaf either does not trust the CA (it
//! reads roots the sandbox's overlay does not replace, and needs a variable) or pins its
//! server's certificate (and needs passthrough for that host). The executable says which is
//! likely: runtimes with their own roots ([`Roots::Own`]) need their variable; clients of
//! the system store, which `sluice exec` overlays, most likely pin. [`advise`] says so, with
//! the other remedy beside it.

use std::collections::BTreeMap;

use super::trust::{TRUST_VARS, TrustFiles};

/// Where a client finds its roots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roots {
    /// The system trust store (OpenSSL's bundle and hashed directory), which the overlay
    /// replaces: a refusal under the overlay means the client pins.
    System,
    /// Roots of its own (bundled, or a store of its own): it needs a variable.
    Own,
}

/// One kind of client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// What to call it.
    pub name: &'static str,
    /// Executable names (the file name; a trailing version such as `python3.11` matches
    /// `python3`).
    pub executables: &'static [&'static str],
    /// Where it finds its roots.
    pub roots: Roots,
    /// The variables (of [`TRUST_VARS`]) that make it trust the CA, in order of preference.
    pub variables: &'static [&'static str],
}

/// The clients Sluice knows. An executable not named here is treated as a system-store
/// client (the overlay serves it; `SSL_CERT_FILE` is the generic variable).
pub const CLIENTS: &[Client] = &[
    Client {
        name: "Node.js",
        executables: &["node", "nodejs", "bun"],
        roots: Roots::Own,
        variables: &["NODE_EXTRA_CA_CERTS", "NPM_CONFIG_CAFILE", "YARN_CAFILE"],
    },
    Client {
        name: "Deno",
        executables: &["deno"],
        roots: Roots::Own,
        variables: &["DENO_CERT"],
    },
    Client {
        name: "uv",
        executables: &["uv", "uvx"],
        roots: Roots::Own,
        variables: &["UV_SYSTEM_CERTS", "SSL_CERT_FILE"],
    },
    Client {
        name: "Java",
        executables: &["java"],
        roots: Roots::Own,
        variables: &["JAVA_TOOL_OPTIONS"],
    },
    Client {
        name: "Python",
        executables: &["python", "python3", "pip", "pip3"],
        roots: Roots::System,
        variables: &["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT"],
    },
    Client {
        name: "curl",
        executables: &["curl"],
        roots: Roots::System,
        variables: &["CURL_CA_BUNDLE"],
    },
    Client {
        name: "wget",
        executables: &["wget"],
        roots: Roots::System,
        variables: &["WGETRC"],
    },
    Client {
        name: "git",
        executables: &["git", "git-remote-https", "git-remote-http"],
        roots: Roots::System,
        variables: &["GIT_SSL_CAINFO"],
    },
    Client {
        name: "Cargo",
        executables: &["cargo"],
        roots: Roots::System,
        variables: &["CARGO_HTTP_CAINFO"],
    },
    Client {
        name: "AWS CLI",
        executables: &["aws"],
        roots: Roots::System,
        variables: &["AWS_CA_BUNDLE"],
    },
];

/// Variables for a client Sluice does not know.
const GENERIC: &[&str] = &["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// The known client `executable` (a path) belongs to.
pub fn client_of(executable: &str) -> Option<&'static Client> {
    let file = executable.rsplit('/').next().unwrap_or(executable);
    // `python3.11` → `python3`; `node22` stays as it is.
    let base = file
        .split_once('.')
        .filter(|(_, version)| version.bytes().all(|b| b.is_ascii_digit()))
        .map_or(file, |(base, _)| base);
    CLIENTS
        .iter()
        .find(|c| c.executables.contains(&base) || c.executables.contains(&file))
}

/// Whether a refusal by `executable` most likely means the client pins its server's
/// certificate (so passthrough is the remedy) rather than not trusting the CA.
pub fn likely_pinned(executable: Option<&str>) -> bool {
    executable
        .and_then(client_of)
        .is_none_or(|c| c.roots == Roots::System)
}

/// What to do about one executable's refusals.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrustAdvice {
    /// The executable (as the sandbox names it), when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    /// The known client it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The hosts it refused Sluice's certificate for (`host` or `host:port`), sorted.
    pub hosts: Vec<String>,
    /// The likely remedy: `variables` or `passthrough`.
    pub fix: Fix,
    /// The variables that make it trust the CA, with their values on this node.
    pub variables: BTreeMap<String, String>,
    /// The advice in a sentence or two.
    pub message: String,
}

/// The likely remedy for a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fix {
    /// Give the client the variables (it does not read the overlaid system store).
    Variables,
    /// Pass its hosts through (it pins their certificates); the suggested policy has them.
    Passthrough,
}

/// One piece of advice per executable, from `(executable, host)` refusals; `files` gives
/// the variables' values.
pub fn advise<'a>(
    refusals: impl IntoIterator<Item = (Option<&'a str>, String)>,
    files: &TrustFiles,
) -> Vec<TrustAdvice> {
    let mut by_executable: BTreeMap<Option<&str>, Vec<String>> = BTreeMap::new();
    for (executable, host) in refusals {
        let hosts = by_executable.entry(executable).or_default();
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    by_executable
        .into_iter()
        .map(|(executable, mut hosts)| {
            hosts.sort();
            one(executable, hosts, files)
        })
        .collect()
}

fn one(executable: Option<&str>, hosts: Vec<String>, files: &TrustFiles) -> TrustAdvice {
    let client = executable.and_then(client_of);
    let names = client.map_or(GENERIC, |c| c.variables);
    let variables: BTreeMap<String, String> = names
        .iter()
        .filter_map(|name| {
            let (_, points) = TRUST_VARS.iter().find(|(n, _)| n == name)?;
            Some(((*name).to_owned(), files.value(*points)))
        })
        .collect();
    let who = match (client, executable) {
        (Some(c), Some(e)) => format!("{} ({e})", c.name),
        (None, Some(e)) => e.to_owned(),
        (_, None) => "a client whose executable could not be read".to_owned(),
    };
    let listed = hosts.join(", ");
    let assignments = variables
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
    let pinned = likely_pinned(executable);
    let message = if pinned {
        format!(
            "{who} refused Sluice's certificate for {listed}. It reads the system trust store, \
             which `sluice exec` overlays with the CA, so it most likely pins the server's \
             certificate: the suggested policy passes {listed} through (review it first: \
             passthrough is not inspected). If its sandbox has no overlay (--no-trust-overlay, \
             a container), give it {assignments} instead (`sluice env` prints every variable)."
        )
    } else {
        format!(
            "{who} refused Sluice's certificate for {listed}. It reads roots of its own, not \
             the system trust store: give it {assignments} (`sluice env` prints every \
             variable). If it has them and still refuses, it pins the server's certificate: \
             add {listed} to the policy's passthrough."
        )
    };
    TrustAdvice {
        executable: executable.map(str::to_owned),
        client: client.map(|c| c.name.to_owned()),
        hosts,
        fix: if pinned {
            Fix::Passthrough
        } else {
            Fix::Variables
        },
        variables,
        message,
    }
}

#[cfg(test)]
#[path = "clients_tests.rs"]
mod tests;
