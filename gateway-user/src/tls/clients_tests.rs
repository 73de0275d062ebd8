use std::path::PathBuf;

use super::*;

fn files() -> TrustFiles {
    let state = PathBuf::from("/var/lib/sluice");
    TrustFiles {
        bundle: state.join("ca-bundle.pem"),
        ca: state.join("ca.pem"),
        dir: state.join("certs"),
        hashed: state.join("certs/0123abcd.0"),
        wgetrc: state.join("wgetrc"),
        java: state.join("certs/java/cacerts"),
    }
}

#[test]
fn executables_are_known_by_file_name_and_version() {
    let name = |e: &str| client_of(e).map(|c| c.name);
    assert_eq!(name("/usr/bin/python3.11"), Some("Python"));
    assert_eq!(name("/usr/bin/node"), Some("Node.js"));
    assert_eq!(name("/root/.local/bin/uv"), Some("uv"));
    assert_eq!(
        name("/usr/lib/jvm/java-17-openjdk-amd64/bin/java"),
        Some("Java")
    );
    assert_eq!(name("/usr/lib/git-core/git-remote-https"), Some("git"));
    assert_eq!(name("/opt/agent/bin/my-agent"), None);
    // A suffix that is not a version is part of the name.
    assert_eq!(name("/usr/bin/node.js-wrapper"), None);
}

#[test]
fn every_variable_a_client_needs_is_one_sluice_env_prints() {
    for client in CLIENTS {
        for name in client.variables {
            assert!(
                TRUST_VARS.iter().any(|(n, _)| n == name),
                "{}: {name} is not printed",
                client.name
            );
        }
    }
}

#[test]
fn a_runtime_with_its_own_roots_is_told_its_variable_and_passthrough_only_if_it_pins() {
    let advice = advise(
        [
            (Some("/usr/bin/node"), "api.test".to_owned()),
            (Some("/usr/bin/node"), "b.test".to_owned()),
            (Some("/usr/bin/node"), "api.test".to_owned()),
        ],
        &files(),
    );
    assert_eq!(advice.len(), 1);
    let node = &advice[0];
    assert_eq!(node.fix, Fix::Variables);
    assert_eq!(node.hosts, ["api.test", "b.test"]);
    assert_eq!(
        node.variables
            .get("NODE_EXTRA_CA_CERTS")
            .map(String::as_str),
        Some("/var/lib/sluice/ca.pem"),
        "Node's variable adds the CA alone"
    );
    assert_eq!(
        node.variables.get("NPM_CONFIG_CAFILE").map(String::as_str),
        Some("/var/lib/sluice/ca-bundle.pem")
    );
    assert!(
        node.message
            .contains("NODE_EXTRA_CA_CERTS=/var/lib/sluice/ca.pem")
            && node.message.contains("passthrough"),
        "{}",
        node.message
    );
    assert!(!likely_pinned(Some("/usr/bin/node")));
}

#[test]
fn a_system_store_client_or_an_unknown_one_most_likely_pins() {
    let advice = advise(
        [
            (Some("/usr/bin/python3.11"), "api.test".to_owned()),
            (None, "c.test:8443".to_owned()),
            (Some("/opt/agent"), "d.test".to_owned()),
        ],
        &files(),
    );
    assert_eq!(advice.len(), 3);
    assert!(
        advice.iter().all(|a| a.fix == Fix::Passthrough),
        "{advice:#?}"
    );
    let unknown = advice.iter().find(|a| a.executable.is_none()).unwrap();
    assert_eq!(unknown.hosts, ["c.test:8443"]);
    let agent = advice
        .iter()
        .find(|a| a.executable.as_deref() == Some("/opt/agent"))
        .unwrap();
    assert!(agent.variables.contains_key("SSL_CERT_FILE"), "{agent:?}");
    let python = advice
        .iter()
        .find(|a| a.client.as_deref() == Some("Python"))
        .unwrap();
    assert!(
        python.message.contains("pins") && python.message.contains("REQUESTS_CA_BUNDLE="),
        "{}",
        python.message
    );
    assert!(likely_pinned(None) && likely_pinned(Some("/usr/bin/curl")));
}
