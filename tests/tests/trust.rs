//! Sandboxes born trusting: real clients in `sluice exec` sandboxes reach an intercepted
//! HTTPS test host with no CA setup at all (the sandbox's trust store is overlaid), and with
//! only what `sluice env` prints when the overlay is off; the node's own trust store is left
//! as it was.
//!
//! A client trusted Sluice's leaf exactly when the test host saw its request: interception
//! terminates TLS at Sluice, so a client that refuses the certificate never sends one.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::path::Path;

use sha2::Digest;
use tests::api_lab::ApiLab;

/// Each client of the matrix: a name (the path it requests) and its command line; `java` and
/// `go` are the shared paths of `Fetch.java` and `fetch.go`.
fn clients(java: &str, go: &str) -> Vec<(&'static str, Vec<String>)> {
    let url = |name: &str| format!("https://api.test/{name}");
    let node_https = "require('https').get(process.argv[1], r => { r.resume(); \
                      r.on('end', () => process.exit(0)); }).on('error', e => { \
                      console.error(e.message); process.exit(1); })";
    let node_fetch = "fetch(process.argv[1]).then(r => r.text()).then(() => process.exit(0), \
                      e => { console.error(e.cause || e); process.exit(1); })";
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        (
            "curl",
            strings(&["curl", "-sS", "-o", "/dev/null", &url("curl")]),
        ),
        (
            "wget",
            strings(&["wget", "-q", "-O", "/dev/null", &url("wget")]),
        ),
        (
            "urllib",
            strings(&[
                "/usr/bin/python3",
                "-c",
                "import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()",
                &url("urllib"),
            ]),
        ),
        (
            "requests",
            strings(&[
                "/usr/bin/python3",
                "-c",
                "import sys, requests; requests.get(sys.argv[1], timeout=10)",
                &url("requests"),
            ]),
        ),
        (
            "httpx",
            strings(&[
                "/usr/bin/python3",
                "-c",
                "import sys, httpx; httpx.get(sys.argv[1], timeout=10)",
                &url("httpx"),
            ]),
        ),
        (
            "pip",
            strings(&[
                "/usr/bin/python3",
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--retries",
                "0",
                "--timeout",
                "10",
                "-d",
                "/tmp/pip",
                "--index-url",
                &url("pip/simple/"),
                "sluice-probe",
            ]),
        ),
        (
            "uv",
            strings(&[
                "env",
                "HOME=/tmp",
                "UV_HTTP_RETRIES=0",
                "uv",
                "pip",
                "install",
                "--no-cache",
                "--python",
                "/usr/bin/python3",
                "--target",
                "/tmp/uv",
                "--index-url",
                &url("uv/simple/"),
                "sluice-probe",
            ]),
        ),
        (
            "node-https",
            strings(&["node", "-e", node_https, &url("node-https")]),
        ),
        (
            "node-fetch",
            strings(&["node", "-e", node_fetch, &url("node-fetch")]),
        ),
        (
            "npm",
            strings(&[
                "npm",
                "view",
                "--fetch-retries=0",
                "--fetch-timeout=10000",
                "--registry",
                &url("npm/"),
                "sluice-probe",
            ]),
        ),
        ("git", strings(&["git", "ls-remote", &url("git/repo")])),
        ("java", strings(&["java", java, &url("java")])),
        (
            "go",
            strings(&[
                "env",
                "HOME=/tmp",
                "GOCACHE=/tmp/go-cache",
                "go",
                "run",
                go,
                &url("go"),
            ]),
        ),
        (
            "ruby",
            strings(&[
                "ruby",
                "-rnet/http",
                "-e",
                "puts Net::HTTP.get_response(URI(ARGV[0])).code",
                &url("ruby"),
            ]),
        ),
    ]
}

/// The api.test stage, with the matrix's helpers.
struct World(ApiLab);

impl std::ops::Deref for World {
    type Target = ApiLab;

    fn deref(&self) -> &ApiLab {
        &self.0
    }
}

fn world(name: &str) -> World {
    World(ApiLab::start(name).unwrap())
}

impl World {
    /// Runs `argv` in a new sandbox (`flags` for `sluice exec`) with nothing of the test's
    /// environment but `PATH`; (succeeded, output).
    fn run(&self, flags: &[&str], argv: &[String]) -> (bool, String) {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = self
            .sluice
            .exec(flags, &argv)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// The program `name` of `tests/trust/`, where sandboxes can read it.
    fn program(&self, name: &str) -> String {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/trust")
            .join(name);
        self.sluice.share(&source).unwrap()
    }

    /// Whether the test host saw a request under `/name`.
    fn reached(&self, name: &str) -> bool {
        let prefix = format!("/{name}");
        self.api
            .requests()
            .iter()
            .any(|r| r.uri.path().starts_with(&prefix))
    }
}

/// A digest of the node's trust store: the bundle's bytes and the hashed directory's names.
fn node_trust_store() -> String {
    let mut hash = sha2::Sha256::new();
    for file in tests_bundles() {
        if let Ok(bytes) = std::fs::read(file) {
            hash.update(file.as_bytes());
            hash.update(&bytes);
        }
    }
    let mut names: Vec<String> = std::fs::read_dir("/etc/ssl/certs")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    hash.update(names.join("\n").as_bytes());
    format!("{:x}", hash.finalize())
}

fn tests_bundles() -> [&'static str; 3] {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/ssl/cert.pem",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
}

#[test]
fn every_client_trusts_interception_with_no_variables_and_the_node_is_untouched() {
    let w = world("trust1");
    let before = node_trust_store();

    // The control: with the overlay off and no variables, curl refuses the leaf.
    let (ok, said) = w.run(
        &["--no-trust-overlay"],
        &[
            "curl".into(),
            "-sS".into(),
            "https://api.test/control".into(),
        ],
    );
    assert!(!ok && !w.reached("control"), "{said}");

    let mut failed = Vec::new();
    for (name, argv) in clients(&w.program("Fetch.java"), &w.program("fetch.go")) {
        let (_, said) = w.run(&[], &argv);
        if !w.reached(name) {
            failed.push(format!("{name}: {said}"));
        }
        eprintln!("overlay | {name} | reached={}", w.reached(name));
    }
    assert!(failed.is_empty(), "with the overlay: {failed:#?}");
    assert_eq!(node_trust_store(), before, "the node's trust store changed");
    assert!(
        Path::new("/etc/ssl/certs").is_dir(),
        "the test needs a Debian-style trust store"
    );
}

#[test]
fn every_client_trusts_interception_with_only_what_sluice_env_prints() {
    let w = world("trust2");
    let out = w.sluice.command().arg("env").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let env = String::from_utf8(out.stdout).unwrap();
    eprintln!("sluice env:\n{env}");
    for name in [
        "SSL_CERT_FILE",
        "PIP_CERT",
        "NPM_CONFIG_CAFILE",
        "NODE_EXTRA_CA_CERTS",
        "UV_SYSTEM_CERTS",
    ] {
        assert!(env.contains(&format!("export {name}=")), "{env}");
    }
    let script = w.sluice.public_file("env.sh", env.as_bytes()).unwrap();
    let script = script.to_string_lossy().into_owned();
    let mut failed = Vec::new();
    for (name, argv) in clients(&w.program("Fetch.java"), &w.program("fetch.go")) {
        let mut wrapped = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!(". {script} && exec \"$@\""),
            "sh".to_owned(),
        ];
        wrapped.extend(argv);
        let (_, said) = w.run(&["--no-trust-overlay"], &wrapped);
        if !w.reached(name) {
            failed.push(format!("{name}: {said}"));
        }
        eprintln!("sluice env | {name} | reached={}", w.reached(name));
    }
    assert!(failed.is_empty(), "with sluice env only: {failed:#?}");
}

#[test]
fn the_bundle_is_served_and_printed_in_every_format() {
    let w = world("trust3");
    let bundle = w
        .sluice
        .node_command("curl")
        .args(["-sS", "http://127.0.0.1:3000/v1/ca/bundle"])
        .output()
        .unwrap();
    let bundle = String::from_utf8(bundle.stdout).unwrap();
    let ca = std::fs::read_to_string(w.sluice.state_dir().join("ca.pem")).unwrap();
    assert!(bundle.ends_with(&ca), "the CA closes the bundle");
    assert!(
        bundle.matches("BEGIN CERTIFICATE").count() > 1,
        "with the node's roots"
    );

    let env = |args: &[&str]| {
        let out = w.sluice.command().arg("env").args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, json) = env(&["--format", "json"]);
    assert!(ok, "{json}");
    let vars: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(vars["SSL_CERT_DIR"].as_str().unwrap().ends_with("/certs"));
    let (ok, docker) = env(&["--format", "docker"]);
    assert!(ok && docker.contains("\nPIP_CERT=/"), "{docker}");
    let (ok, k8s) = env(&["--format", "k8s"]);
    assert!(
        ok && k8s.starts_with("env:\n  - name: SSL_CERT_FILE\n"),
        "{k8s}"
    );
    let (ok, said) = env(&["--proxy"]);
    assert!(!ok && said.contains("needs a session"), "{said}");
    let (session, _) = w.sluice.create_session(&[], &[]).unwrap();
    let (ok, sh) = env(&["--session", &session, "--proxy"]);
    assert!(ok, "{sh}");
    assert!(sh.contains("export NODE_USE_ENV_PROXY=\"1\""), "{sh}");
    assert!(
        sh.contains("export HTTPS_PROXY=\"http://sluice:${SLUICE_SESSION_TOKEN}@127.0.0.1:3128\""),
        "{sh}"
    );
    let (ok, said) = env(&["--session", &session, "--proxy", "--format", "docker"]);
    assert!(!ok && said.contains("SLUICE_SESSION_TOKEN"), "{said}");
}

/// A client that trusts only its server's own CA (it pins), in a session's sandbox.
const PINNED_CLIENT: &str = r#"
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1])
try:
    urllib.request.urlopen(sys.argv[2], context=ctx, timeout=10).read()
    print("trusted")
except Exception as e:
    print("refused:", e)
"#;

#[test]
fn a_pinned_client_is_counted_recorded_and_proposed_for_passthrough() {
    let w = world("trust4");
    let (session, _) = w.sluice.create_session(&[], &[]).unwrap();
    let upstream_ca = std::fs::read(&w.ca_file).unwrap();
    let upstream_ca = w
        .sluice
        .public_file("upstream-ca.pem", &upstream_ca)
        .unwrap();
    let argv = [
        "/usr/bin/python3".to_owned(),
        "-c".to_owned(),
        PINNED_CLIENT.to_owned(),
        upstream_ca.to_string_lossy().into_owned(),
        "https://api.test/pinned".to_owned(),
    ];
    let (_, said) = w.run(&["--session", &session], &argv);
    assert!(said.starts_with("refused:"), "{said}");
    assert!(!w.reached("pinned"), "nothing was sent");
    // Node without the overlay or a variable: it reads its own roots, so it refuses too,
    // and its remedy is its variable, not passthrough.
    let node = "require('https').get(process.argv[1], r => r.resume()).on('error', e => { \
                console.error(e.message); process.exit(1); })";
    let (ok, said) = w.run(
        &["--session", &session, "--no-trust-overlay"],
        &[
            "node".into(),
            "-e".into(),
            node.into(),
            "https://api.test/untrusting".into(),
        ],
    );
    assert!(!ok && !w.reached("untrusting"), "{said}");

    let record = w
        .sluice
        .wait_audit(|r| {
            r["kind"] == "connection"
                && r["trust_refused"].is_string()
                && r["executable"]
                    .as_str()
                    .is_some_and(|e| e.contains("python"))
        })
        .unwrap();
    eprintln!("audit: {record}");
    assert_eq!(record["trust_refused"], "unknown_ca", "{record}");
    assert_eq!(record["host"], "api.test");
    assert!(
        record["executable"]
            .as_str()
            .is_some_and(|e| e.starts_with("/usr/bin/python3")),
        "{record}"
    );
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("refused Sluice's certificate")
    );

    let metrics = w.sluice.metrics().unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("sluice_tls_trust_failures_total{") && l.contains("python3"))
        .unwrap_or_else(|| panic!("{metrics}"));
    eprintln!("metrics: {line}");
    assert!(
        line.contains(&format!("session=\"{session}\""))
            && line.contains("executable=\"/usr/bin/python3")
            && line.contains("host=\"api.test\"")
            && line.ends_with(" 1"),
        "{line}"
    );

    let out = w
        .sluice
        .command()
        .args(["policy", "suggest", "--session", &session])
        .output()
        .unwrap();
    let suggested: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
    assert_eq!(
        suggested["passthrough"],
        serde_json::json!(["api.test"]),
        "{suggested}"
    );
    let advice = String::from_utf8_lossy(&out.stderr);
    eprintln!("advice:\n{advice}");
    let line = |client: &str| {
        advice
            .lines()
            .find(|l| l.contains(client))
            .unwrap_or_else(|| panic!("no advice for {client}: {advice}"))
    };
    assert!(line("/usr/bin/python3").contains("pins"), "{advice}");
    let ca = w.sluice.state_dir().join("ca.pem");
    assert!(
        line("Node.js").contains(&format!("NODE_EXTRA_CA_CERTS={}", ca.display())),
        "{advice}"
    );
}
