//! The Kubernetes manifests in `deploy/kubernetes/`: there is no cluster on these machines,
//! so they are validated offline against the API schemas of a pinned Kubernetes version
//! (kubernetes-validate, installed by `cargo xtask setup`), and the DaemonSet's
//! security-relevant fields are checked here; the ConfigMap's `sluice.toml` is checked by
//! the real binary.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Where `cargo xtask setup` installs kubernetes-validate (xtask/src/setup.rs).
const VALIDATOR: &str = "/usr/local/lib/sluice-test/kubernetes-validate";
/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.31.0";

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// The resources `kustomization.yaml` lists.
fn resources() -> Vec<PathBuf> {
    let kustomization = load(&manifests().join("kustomization.yaml"));
    kustomization[0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| manifests().join(r.as_str().unwrap()))
        .collect()
}

fn python(args: &[&str]) -> Output {
    assert!(
        Path::new(VALIDATOR).join("kubernetes_validate").is_dir(),
        "kubernetes-validate is missing: run `cargo xtask setup` (as root)"
    );
    Command::new("/usr/bin/python3")
        .args(args)
        .env("PYTHONPATH", VALIDATOR)
        .output()
        .unwrap()
}

/// Every document of a YAML file, as JSON.
fn load(file: &Path) -> Vec<Value> {
    let out = python(&[
        "-c",
        "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        &file.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn validate(files: &[PathBuf]) -> Output {
    let mut args = vec![
        "-m".to_owned(),
        "kubernetes_validate".to_owned(),
        "--strict".to_owned(),
        "-k".to_owned(),
        KUBERNETES.to_owned(),
    ];
    args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python(&args)
}

#[test]
fn every_manifest_validates_against_the_kubernetes_api_schemas() {
    let mut files = resources();
    files.push(manifests().join("example-agent-pod.yaml"));
    let out = validate(&files);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{said}");
    assert!(out.status.success(), "{said}");
    assert_eq!(said.matches(" passed for resource ").count(), 8, "{said}");

    // The validator is not a rubber stamp: a misspelled field fails it.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(manifests().join("daemonset.yaml"))
        .unwrap()
        .replace("hostPID: true", "hostPid: true");
    std::fs::write(&bad, text).unwrap();
    assert!(!validate(&[bad]).status.success());
}

#[test]
fn the_daemonset_is_privileged_on_the_nodes_namespaces_with_its_mounts_probes_and_update() {
    let docs = load(&manifests().join("daemonset.yaml"));
    let ds = &docs[0];
    assert_eq!(ds["kind"], "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["hostPID"], true);
    assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
    let daemon = &spec["containers"][0];
    assert_eq!(daemon["securityContext"]["privileged"], true);
    assert_eq!(daemon["args"][0], "run");

    // The node's filesystems, by host path, where the daemon expects them.
    let volumes = spec["volumes"].as_array().unwrap();
    let host_path = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["hostPath"]["path"].as_str())
            .map(str::to_owned)
    };
    let mounts = daemon["volumeMounts"].as_array().unwrap();
    for path in [
        "/sys/fs/cgroup",
        "/sys/fs/bpf",
        "/var/lib/sluice",
        "/run/netns",
    ] {
        let mount = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("{path} is not mounted: {mounts:?}"));
        assert_eq!(
            host_path(mount["name"].as_str().unwrap()).as_deref(),
            Some(path),
            "{path} is the node's"
        );
        assert_ne!(mount["readOnly"], true, "{path} is written");
    }
    // Pins and namespace names made in the pod must reach the node (and outlive the pod).
    for path in ["/sys/fs/bpf", "/run/netns"] {
        let mount = mounts.iter().find(|m| m["mountPath"] == path).unwrap();
        assert_eq!(mount["mountPropagation"], "Bidirectional", "{path}");
    }

    // Probes on the health endpoint of the node-local control API.
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &daemon[probe]["httpGet"];
        assert_eq!(get["path"], "/v1/health", "{probe}");
        assert_eq!(get["port"], 3000, "{probe}");
        assert_eq!(get["host"], "127.0.0.1", "{probe}");
    }
    assert!(daemon["resources"]["requests"]["cpu"].is_string());
    assert!(daemon["resources"]["requests"]["memory"].is_string());

    // One node at a time, old daemon out before the new one (pins refuse in between).
    let update = &ds["spec"]["updateStrategy"];
    assert_eq!(update["type"], "RollingUpdate");
    assert_eq!(update["rollingUpdate"]["maxSurge"], 0);
    assert_eq!(update["rollingUpdate"]["maxUnavailable"], 1);

    // The master key comes from the Secret every node shares.
    let env = daemon["env"].as_array().unwrap();
    let key = env
        .iter()
        .find(|e| e["name"] == "SLUICE_MASTER_KEY")
        .unwrap();
    assert_eq!(
        key["valueFrom"]["secretKeyRef"]["name"],
        "sluice-master-key"
    );

    // The runtime wrapper is installed on the node by an init container.
    let init = &spec["initContainers"][0];
    let args: Vec<&str> = init["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&args[..2], ["runtime", "install"]);
    let kustomization = load(&manifests().join("kustomization.yaml"));
    assert_eq!(
        kustomization[0]["secretGenerator"][0]["name"],
        "sluice-master-key"
    );
}

#[test]
fn the_configmaps_sluice_toml_is_a_configuration_the_daemon_accepts() {
    let docs = load(&manifests().join("configmap.yaml"));
    let toml = docs[0]["data"]["sluice.toml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, toml).unwrap();
    let out = Command::new(tests::sluice::binary())
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("redis_url = \"redis://sluice-redis."),
        "{shown}"
    );

    // The install step the DaemonSet's init container runs, for real: the wrapper and its
    // configuration (no secrets: the state directory and the control address only).
    let bin = dir.path().join("bin");
    let out = Command::new(tests::sluice::binary())
        .arg("--config")
        .arg(&file)
        .args(["runtime", "install", "--delegate", "runc", "--dir"])
        .arg(&bin)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let settings = std::fs::read_to_string(bin.join("sluice-runtime-runc.toml")).unwrap();
    assert!(
        settings.contains("state_dir = \"/var/lib/sluice\""),
        "{settings}"
    );
    assert!(!settings.contains("redis"), "{settings}");
    let version = Command::new(bin.join("sluice-runtime-runc"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("runc version"),
        "the wrapper hands other commands to runc: {version:?}"
    );
}
