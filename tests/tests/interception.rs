//! TLS interception and passthrough end to end: sandboxed clients (curl, Python, Node) reach
//! HTTPS test hosts through kernel capture and the real daemon.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tests::sluice::{Options, Sluice};
use tests::upstream::{self, RunningUpstream};
use tests::{NetLab, TestCa, addrs};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interception");

struct World {
    _lab: NetLab,
    sluice: Sluice,
    ca_file: tempfile::TempPath,
    api: RunningUpstream,
    pinned: RunningUpstream,
}

/// `api.test` (h2 + h1, echo) at 203.0.113.10 is intercepted; `pinned.test` at 198.51.100.10
/// is on the passthrough list.
fn world() -> World {
    let lab = NetLab::new("tls").unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let api = upstream::https(&ca)
        .hostname("api.test")
        .echo()
        .start(&lab, SocketAddr::new(addrs::FAR_HOST.into(), 443))
        .unwrap();
    let pinned = upstream::https(&ca)
        .hostname("pinned.test")
        .route("/", "pinned")
        .start(&lab, SocketAddr::new(addrs::HOST_A.into(), 443))
        .unwrap();
    let extra_toml = format!(
        "[upstream]\nextra_roots = [{:?}]\n[policy]\npassthrough = [\"pinned.test\"]\n",
        ca_file.to_path_buf()
    );
    let sluice = Sluice::start(
        &lab,
        &Options {
            extra_toml,
            // The daemon binds a passthrough connection to the name's own addresses.
            dns_hosts: vec![("pinned.test".into(), "198.51.100.10".into())],
            ..Options::default()
        },
    )
    .unwrap();
    World {
        _lab: lab,
        sluice,
        ca_file,
        api,
        pinned,
    }
}

impl World {
    /// The CA a sandbox must trust, as `sluice ca export` prints it.
    fn sluice_ca(&self) -> PathBuf {
        let out = self
            .sluice
            .command()
            .args(["ca", "export"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        self.sluice
            .public_file("exported-ca.pem", &out.stdout)
            .unwrap()
    }

    fn curl(&self, args: &[&str]) -> std::process::Output {
        let mut argv = vec!["curl", "-sS", "--max-time", "10"];
        argv.extend_from_slice(args);
        self.sluice.exec(&[], &argv).output().unwrap()
    }
}

fn json(out: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().next().unwrap_or_default())
        .unwrap_or_else(|_| panic!("not JSON: {out:?}"))
}

#[test]
fn curl_is_intercepted_over_h1_and_h2_with_the_request_intact() {
    let w = world();
    let ca = w.sluice_ca();
    let ca = ca.to_str().unwrap();
    // The client side speaks what the client offers, and so does the upstream side (the
    // upstream offers both): an HTTP/1.1 client is not multiplexed onto an h2 connection.
    let cases = [
        ("--http1.1", "1.1", "HTTP/1.1"),
        ("--http2", "2", "HTTP/2.0"),
    ];
    for (flag, client_version, upstream_version) in cases {
        let out = w.curl(&[
            flag,
            "--cacert",
            ca,
            "--resolve",
            "api.test:443:203.0.113.10",
            "-H",
            "X-Agent-Test: yes",
            "--data-binary",
            "hello body",
            "-w",
            "\n%{http_version}",
            "https://api.test/v1/echo?q=1",
        ]);
        assert!(out.status.success(), "{flag}: {out:?}");
        let echo = json(&out);
        assert_eq!(echo["method"], "POST", "{echo}");
        assert_eq!(echo["path"], "/v1/echo");
        assert_eq!(echo["query"], "q=1");
        assert_eq!(echo["version"], upstream_version, "upstream side: {echo}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.lines().last(),
            Some(client_version),
            "client side: {stdout}"
        );
        assert_eq!(
            echo["sni"], "api.test",
            "upstream SNI is the requested host: {echo}"
        );
        assert_eq!(echo["body_len"], 10);
        assert_eq!(
            echo["body_sha256"],
            tests::upstream::sha256_hex(b"hello body")
        );
        let headers = echo["headers"].as_array().unwrap();
        assert!(
            headers
                .iter()
                .any(|h| h[0] == "x-agent-test" && h[1] == "yes"),
            "{echo}"
        );
    }
    // Trusting only the upstream's own CA fails: the client saw a Sluice leaf. (`--capath`
    // an empty directory: the sandbox's /etc/ssl/certs holds the Sluice CA.)
    let own = w.curl(&[
        "--capath",
        "/tmp",
        "--cacert",
        w.ca_file.to_str().unwrap(),
        "--resolve",
        "api.test:443:203.0.113.10",
        "https://api.test/",
    ]);
    assert_eq!(own.status.code(), Some(60), "{own:?}");
    let record = w
        .sluice
        .wait_audit(|r| {
            r["kind"] == "request"
                && r["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("https://api.test/v1/echo"))
        })
        .unwrap_or_else(|| panic!("no request record: {:?}", w.sluice.audit()));
    assert_eq!(record["status"], 200, "{record}");
    assert_eq!(record["method"], "POST");
    assert!(record["pid"].as_u64().is_some(), "{record}");
    // The process is named by its executable, read when it connected.
    assert!(
        record["executable"]
            .as_str()
            .is_some_and(|exe| exe.ends_with("/curl")),
        "{record}"
    );
    // Both complete exchanges (h1 and h2 clients) are recorded without an error reason.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let echoes = loop {
        let echoes: Vec<Value> = w
            .sluice
            .audit()
            .into_iter()
            .filter(|r| r["kind"] == "request" && r["url"] == "https://api.test/v1/echo?q=1")
            .collect();
        if echoes.len() == 2 || std::time::Instant::now() > deadline {
            break echoes;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(echoes.len(), 2, "{echoes:?}");
    assert!(
        echoes.iter().all(|r| r.get("reason").is_none()),
        "{echoes:?}"
    );
    // Three connections to api.test, one leaf: the later handshakes hit the cache.
    assert_eq!(w.sluice.metric("sluice_tls_leaves_minted_total"), Some(1));
    assert_eq!(
        w.sluice.metric("sluice_tls_leaf_cache_misses_total"),
        Some(1)
    );
    let hits = w.sluice.metric("sluice_tls_leaf_cache_hits_total");
    assert!(hits.is_some_and(|n| n >= 2), "{hits:?}");
    assert_eq!(
        w.sluice.metric("sluice_tls_leaf_cache_evictions_total"),
        Some(0)
    );
    assert_eq!(
        w.sluice.metric("sluice_tls_leaf_cache_capacity"),
        Some(10_000)
    );
    let mint_us = w.sluice.metric("sluice_tls_leaf_mint_microseconds_total");
    assert!(mint_us.is_some_and(|us| us > 0), "{mint_us:?}");
    // The daemon's live heap: a running daemon holds at least its configuration, CA and
    // cache, and far less than a gigabyte.
    // `sluice run` re-executed itself (same pid) with a larger per-thread allocator cache.
    let pid = w.sluice.pid().expect("the daemon runs");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|var| var == b"GLIBC_TUNABLES=glibc.malloc.tcache_count=64"),
        "{}",
        String::from_utf8_lossy(&environ)
    );
    let heap = w.sluice.metric("sluice_heap_in_use_bytes");
    assert!(
        heap.is_some_and(|b| (64 * 1024..1 << 30).contains(&b)),
        "{heap:?}"
    );
    // Connections are served by one worker per core, each counted; none is open now.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for worker in 0..cores {
        let serving = w
            .sluice
            .metric(&format!("sluice_worker_connections{{worker=\"{worker}\"}}"));
        assert!(serving.is_some(), "worker {worker} of {cores}: {serving:?}");
    }
}

#[test]
fn passthrough_hosts_show_the_real_certificate() {
    let w = world();
    let out = w.curl(&[
        "--cacert",
        w.ca_file.to_str().unwrap(),
        "--resolve",
        "pinned.test:443:198.51.100.10",
        "https://pinned.test/",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pinned", "{out:?}");
    let with_sluice_ca = w.curl(&[
        "--cacert",
        w.sluice_ca().to_str().unwrap(),
        "--resolve",
        "pinned.test:443:198.51.100.10",
        "https://pinned.test/",
    ]);
    assert_eq!(
        with_sluice_ca.status.code(),
        Some(60),
        "not intercepted: {with_sluice_ca:?}"
    );
    let record = w
        .sluice
        .wait_audit(|r| {
            r["kind"] == "connection" && r["mode"] == "passthrough" && r["decision"] == "allow"
        })
        .unwrap_or_else(|| panic!("{:?}", w.sluice.audit()));
    assert_eq!(record["host"], "pinned.test");
    assert!(!w.pinned.requests().is_empty());
}

#[test]
fn python_and_node_clients_are_intercepted() {
    let w = world();
    let ca = w.sluice_ca();
    let ca = ca.to_str().unwrap();
    let py = w
        .sluice
        .exec(
            &[],
            &[
                "python3",
                &w.sluice
                    .share(Path::new(&format!("{DIR}/clients.py")))
                    .unwrap(),
                "203.0.113.10",
                "api.test",
                "/py",
                ca,
            ],
        )
        .output()
        .unwrap();
    let py = json(&py);
    assert_eq!(py["status"], "HTTP/1.1 200 OK", "{py}");
    assert!(
        py["issuer"].as_str().unwrap().starts_with("Sluice CA"),
        "{py}"
    );
    let node = w
        .sluice
        .exec(
            &[],
            &[
                "node",
                &w.sluice
                    .share(Path::new(&format!("{DIR}/client.js")))
                    .unwrap(),
                "203.0.113.10",
                "api.test",
                "/node",
                ca,
            ],
        )
        .output()
        .unwrap();
    let node = json(&node);
    assert_eq!(node["status"], 200, "{node}");
    assert!(
        node["issuer"].as_str().unwrap().starts_with("Sluice CA"),
        "{node}"
    );
    let paths: Vec<String> = w.api.requests().iter().map(|r| r.uri.to_string()).collect();
    assert!(
        paths.iter().any(|p| p.ends_with("/py")) && paths.iter().any(|p| p.ends_with("/node")),
        "{paths:?}"
    );
}

#[test]
fn node_fetch_sse_and_websocket_stream_through_capture() {
    let lab = NetLab::new("stream").unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let api = upstream::https(&ca)
        .hostname("api.test")
        .echo()
        .sse("/events", 10, Duration::from_millis(200))
        .websocket_echo("/ws")
        .start(&lab, SocketAddr::new(addrs::FAR_HOST.into(), 443))
        .unwrap();
    let sluice = Sluice::start(
        &lab,
        &Options {
            extra_toml: format!("[upstream]\nextra_roots = [{:?}]\n", ca_file.to_path_buf()),
            dns_hosts: vec![("api.test".into(), "203.0.113.10".into())],
            ..Options::default()
        },
    )
    .unwrap();
    // Node finds api.test through the daemon's DNS (on the sandbox's own DNS socket) and
    // trusts Sluice's CA; nothing else.
    let out = sluice
        .exec(
            &["--netns"],
            &[
                "node",
                "--experimental-websocket",
                &sluice
                    .share(Path::new(&format!("{DIR}/stream.js")))
                    .unwrap(),
                "https://api.test",
                "/events",
                "/ws",
            ],
        )
        .env("NODE_EXTRA_CA_CERTS", sluice.state_dir().join("ca.pem"))
        .output()
        .unwrap();
    let got = json(&out);
    assert_eq!(got["fetch"]["status"], 200, "{got}");
    let echo: Value = serde_json::from_str(got["fetch"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["method"], "POST", "{echo}");
    assert_eq!(echo["path"], "/node-fetch", "{echo}");
    assert_eq!(echo["body_len"], 9, "{echo}");
    assert_eq!(
        echo["body_sha256"],
        tests::upstream::sha256_hex(b"from node")
    );
    assert_eq!(
        api.requests().len(),
        3,
        "fetch, SSE and the upgrade reached the host"
    );

    // Events are sent 200 ms apart; each arrives on its own, well within that.
    let sse = &got["sse"];
    assert_eq!(sse["contentType"], "text/event-stream", "{got}");
    let delays: Vec<i64> = sse["delays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d[1].as_i64().unwrap())
        .collect();
    eprintln!("SSE per-event delay through the daemon (us): {delays:?}");
    assert_eq!(delays.len(), 10, "{got}");
    assert!(
        delays.iter().all(|d| *d < 100_000),
        "events held back: {delays:?}"
    );

    let ws = &got["websocket"];
    assert_eq!(ws["code"], 1000, "{got}");
    assert_eq!(
        ws["echoes"],
        serde_json::json!(["hello 0", "hello 1", "hello 2", "binary:100000"]),
        "{got}"
    );
    let upgrade = sluice
        .wait_audit(|r| r["kind"] == "request" && r["status"] == 101)
        .unwrap();
    assert_eq!(upgrade["protocol"], "http/1.1>websocket", "{upgrade}");
    assert!(upgrade["bytes_up"].as_u64().unwrap() > 100_000, "{upgrade}");
    assert!(
        upgrade["bytes_down"].as_u64().unwrap() > 100_000,
        "{upgrade}"
    );
}

#[test]
fn tls_without_sni_is_refused_and_audited() {
    let w = world();
    let out = w.curl(&[
        "--cacert",
        w.sluice_ca().to_str().unwrap(),
        "https://203.0.113.10/",
    ]);
    assert!(!out.status.success(), "{out:?}");
    let record = w
        .sluice
        .wait_audit(|r| {
            r["kind"] == "connection"
                && r["destination"] == "203.0.113.10:443"
                && r["decision"] == "deny"
        })
        .unwrap_or_else(|| panic!("{:?}", w.sluice.audit()));
    assert!(
        record["reason"].as_str().unwrap().contains("SNI"),
        "{record}"
    );
    assert!(w.api.requests().is_empty(), "nothing reached the host");
}

#[test]
fn bad_first_bytes_are_refused_and_audited_and_the_daemon_stays_up() {
    let mut w = world();
    let out = w
        .sluice
        .exec(
            &[],
            &[
                "python3",
                &w.sluice
                    .share(Path::new(&format!("{DIR}/bad_input.py")))
                    .unwrap(),
                "203.0.113.10",
            ],
        )
        .output()
        .unwrap();
    let got = json(&out);
    for case in ["garbage", "truncated", "oversize", "silent"] {
        assert_eq!(got[case]["closed"], true, "{case}: {got}");
        assert!(
            got[case]["bytes"].as_u64().unwrap_or(0) == 0,
            "nothing answered {case}: {got}"
        );
    }
    let refusals: Vec<String> = w
        .sluice
        .audit()
        .iter()
        .filter(|r| {
            r["kind"] == "connection"
                && r["destination"] == "203.0.113.10:443"
                && r["decision"] == "deny"
        })
        .map(|r| r["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        refusals.len(),
        4,
        "one refusal record per bad connection: {refusals:?}"
    );
    for want in [
        "malformed",
        "closed before",
        "detection limit",
        "sent nothing",
    ] {
        assert!(
            refusals.iter().any(|r| r.contains(want)),
            "{want}: {refusals:?}"
        );
    }
    assert!(w.api.requests().is_empty(), "nothing reached the host");
    assert!(w.sluice.is_running());
    let ok = w.curl(&[
        "--cacert",
        w.sluice_ca().to_str().unwrap(),
        "--resolve",
        "api.test:443:203.0.113.10",
        "https://api.test/still-up",
    ]);
    assert!(ok.status.success(), "the daemon still serves: {ok:?}");
}

#[test]
fn upstream_failures_and_host_mismatch_get_readable_errors() {
    let w = world();
    let ca = w.sluice_ca();
    let ca = ca.to_str().unwrap();
    // SNI api.test, Host other.test: 421.
    let mismatch = w.curl(&[
        "--cacert",
        ca,
        "--resolve",
        "api.test:443:203.0.113.10",
        "-H",
        "Host: other.test",
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        "https://api.test/",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&mismatch.stdout),
        "421",
        "{mismatch:?}"
    );
    // The upstream at 198.51.100.10 has a certificate for pinned.test only: asking for
    // wrong.test there (not on the passthrough list) is a 502 naming the certificate.
    let wrong = w.curl(&[
        "--cacert",
        ca,
        "--resolve",
        "wrong.test:443:198.51.100.10",
        "https://wrong.test/",
    ]);
    let body = String::from_utf8_lossy(&wrong.stdout);
    assert!(body.contains("certificate"), "{wrong:?}");
    // Nothing listens on 198.51.100.11:443: 502.
    let refused = w.curl(&[
        "--cacert",
        ca,
        "--resolve",
        "down.test:443:198.51.100.11",
        "-w",
        "\n%{http_code}",
        "https://down.test/",
    ]);
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(
        text.ends_with("502") && text.contains("upstream"),
        "{refused:?}"
    );
}

#[test]
fn a_large_download_and_upload_keep_the_daemon_memory_flat() {
    const SIZE: u64 = 1 << 30;
    let lab = NetLab::new("big").unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let _big = upstream::https(&ca)
        .hostname("big.test")
        .bytes("/big", SIZE)
        .sink("/up")
        .start(&lab, SocketAddr::new(addrs::FAR_HOST.into(), 443))
        .unwrap();
    let extra_toml = format!("[upstream]\nextra_roots = [{:?}]\n", ca_file.to_path_buf());
    let sluice = Sluice::start(
        &lab,
        &Options {
            extra_toml,
            ..Options::default()
        },
    )
    .unwrap();
    let sluice_ca = sluice.state_dir().join("ca.pem");
    let curl = |args: &[&str]| {
        let mut argv = vec![
            "curl",
            "-sS",
            "--max-time",
            "300",
            "--cacert",
            sluice_ca.to_str().unwrap(),
            "--resolve",
            "big.test:443:203.0.113.10",
        ];
        argv.extend_from_slice(args);
        sluice.exec(&[], &argv).output().unwrap()
    };
    // Warm up (CA, leaf, pools), then measure the peak RSS around the big transfers.
    assert!(
        curl(&["-o", "/dev/null", "https://big.test/up", "-d", "x"])
            .status
            .success()
    );
    let before = sluice.memory_kib("VmHWM").unwrap();
    let down = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        "https://big.test/big",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&down.stdout),
        SIZE.to_string(),
        "{down:?}"
    );
    let up = sluice
        .exec(&[], &["sh", "-c", &format!(
            "head -c {SIZE} /dev/zero | curl -sS --max-time 300 --cacert {} --resolve big.test:443:203.0.113.10 -T - https://big.test/up",
            sluice_ca.display()
        )])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&up.stdout).unwrap_or_else(|_| panic!("{up:?}"));
    assert_eq!(report["body_len"], SIZE, "{report}");
    let after = sluice.memory_kib("VmHWM").unwrap();
    eprintln!("daemon peak RSS: {before} KiB before, {after} KiB after 1 GiB down + 1 GiB up");
    assert!(
        after - before < 32 * 1024,
        "peak RSS grew {} KiB moving 2 GiB: bodies are buffered",
        after - before
    );
}

/// A daemon whose environment points `SSL_CERT_FILE` at a bundle holding only a private CA
/// (as a node behind a TLS-inspecting corporate proxy has), with `api.test` at 203.0.113.10
/// serving a certificate of that CA; no `extra_roots`.
fn trust_store_world(roots: &str) -> (NetLab, Sluice, RunningUpstream, tempfile::TempPath) {
    let lab = NetLab::new("trust").unwrap();
    let corp = TestCa::new().unwrap();
    let bundle = corp.pem_file().unwrap();
    let api = upstream::https(&corp)
        .hostname("api.test")
        .echo()
        .start(&lab, SocketAddr::new(addrs::FAR_HOST.into(), 443))
        .unwrap();
    let sluice = Sluice::start(
        &lab,
        &Options {
            extra_toml: roots.to_owned(),
            daemon_env: vec![("SSL_CERT_FILE".into(), bundle.display().to_string())],
            ..Options::default()
        },
    )
    .unwrap();
    (lab, sluice, api, bundle)
}

/// `curl https://api.test/` in a sandbox trusting the Sluice CA: (body, status).
fn fetch_api(sluice: &Sluice) -> (String, String) {
    let out = sluice.command().args(["ca", "export"]).output().unwrap();
    let ca = sluice.public_file("trust-ca.pem", &out.stdout).unwrap();
    let argv = [
        "curl",
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        "api.test:443:203.0.113.10",
        "-w",
        "\n%{http_code}",
        "https://api.test/v1/echo",
    ];
    let out = sluice.exec(&[], &argv).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or_default();
    (body.to_owned(), status.to_owned())
}

#[test]
fn upstream_certificates_may_chain_to_the_nodes_trust_store_unless_roots_leave_it_out() {
    let (_lab, sluice, api, _bundle) = trust_store_world("");
    let (body, status) = fetch_api(&sluice);
    assert_eq!(
        status, "200",
        "the node's store is trusted by default: {body}"
    );
    assert!(body.contains("/v1/echo"), "{body}");
    assert_eq!(api.requests().len(), 1);
    let log = sluice.log(1);
    assert!(log.contains("upstream: trusted roots"), "{log}");
    drop(sluice);

    let (_lab, sluice, api, _bundle) = trust_store_world("[upstream]\nroots = \"webpki\"\n");
    let (body, status) = fetch_api(&sluice);
    assert_eq!(status, "502", "{body}");
    assert!(
        body.contains("certificate") && body.contains("api.test"),
        "the 502 names the verification failure: {body}"
    );
    assert!(
        api.requests().is_empty(),
        "no request was sent to an unverified upstream"
    );
}
