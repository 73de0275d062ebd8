//! Explicit proxy mode end to end: curl with `-x` (as `HTTPS_PROXY` would) against the real
//! daemon, authenticated by a session token.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::net::SocketAddr;

use tests::sluice::{Options, Sluice};
use tests::upstream::{self, RunningUpstream};
use tests::{NetLab, TestCa, addrs};

const TOKEN: &str = "sluice_stk_explicitproxytesttokenexplicitproxytest0";
/// `pinned.test/big` serves this line repeated (4 MiB): a passthrough tunnel moves it whole.
const PINNED_BODY: &str = "sluice passthrough test body, 64 bytes long, repeated 65536x...\n";
const PINNED_REPEAT: usize = 65_536;

struct World {
    lab: NetLab,
    sluice: Sluice,
    api: RunningUpstream,
    _web: RunningUpstream,
    pinned: RunningUpstream,
    ca_file: tempfile::TempPath,
}

fn world() -> World {
    let lab = NetLab::new("xp").unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let api = upstream::https(&ca)
        .hostname("api.test")
        .echo()
        .start(&lab, SocketAddr::new(addrs::FAR_HOST.into(), 443))
        .unwrap();
    let web = upstream::http()
        .route("/hello", "hi")
        .start(&lab, SocketAddr::new(addrs::HOST_A.into(), 80))
        .unwrap();
    let pinned = upstream::https(&ca)
        .hostname("pinned.test")
        .route("/big", PINNED_BODY.repeat(PINNED_REPEAT))
        .start(&lab, SocketAddr::new(addrs::HOST_B.into(), 443))
        .unwrap();
    let extra_toml = format!(
        "[upstream]\nextra_roots = [{:?}]\n[policy]\npassthrough = [\"pinned.test\"]\n[[sessions]]\nid = \"agent-1\"\ntoken_sha256 = \"{}\"\n",
        ca_file.to_path_buf(),
        tests::upstream::sha256_hex(TOKEN.as_bytes()),
    );
    let options = Options {
        extra_toml,
        dns_hosts: vec![
            ("api.test".into(), "203.0.113.10".into()),
            ("web.test".into(), "198.51.100.10".into()),
            ("internal.test".into(), "127.0.0.1".into()),
            ("pinned.test".into(), "198.51.100.11".into()),
        ],
        ..Options::default()
    };
    let sluice = Sluice::start(&lab, &options).unwrap();
    World {
        lab,
        sluice,
        api,
        _web: web,
        pinned,
        ca_file,
    }
}

impl World {
    fn curl(&self, proxy_user: &str, args: &[&str]) -> std::process::Output {
        let ca = self.sluice.state_dir().join("ca.pem");
        let mut cmd = self.lab.exec_in_node("curl");
        cmd.args(["-sS", "--max-time", "10", "--cacert"])
            .arg(ca)
            .args(["-x", &format!("http://{proxy_user}@127.0.0.1:3128")])
            .args(args);
        cmd.output().unwrap()
    }
}

#[test]
fn connect_and_absolute_form_requests_go_through_the_pipeline() {
    let w = world();
    let user = format!("sluice:{TOKEN}");
    let out = w.curl(&user, &["https://api.test/via-proxy?x=1"]);
    assert!(out.status.success(), "{out:?}");
    let echo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(echo["path"], "/via-proxy");
    assert_eq!(echo["sni"], "api.test");
    assert_eq!(w.api.requests().len(), 1);
    let record = w
        .sluice
        .wait_audit(|r| r["kind"] == "request" && r["session"] == "agent-1" && r["status"] == 200)
        .unwrap_or_else(|| panic!("{:?}", w.sluice.audit()));
    assert!(
        record["url"]
            .as_str()
            .unwrap()
            .starts_with("https://api.test/via-proxy"),
        "{record}"
    );

    let plain = w.curl(&user, &["http://web.test/hello"]);
    assert_eq!(plain.stdout, b"hi", "{plain:?}");
    assert!(
        w.sluice
            .wait_audit(|r| r["kind"] == "request" && r["url"] == "http://web.test/hello")
            .is_some()
    );
}

#[test]
fn missing_or_wrong_tokens_get_407_and_internal_targets_403() {
    let w = world();
    for user in ["sluice:sluice_stk_wrong", "nobody:x"] {
        let out = w.curl(
            user,
            &[
                "-w",
                "%{http_code}",
                "-o",
                "/dev/null",
                "http://web.test/hello",
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "407",
            "{user}: {out:?}"
        );
    }
    let connect = w.curl("sluice:nope", &["https://api.test/"]);
    assert!(
        String::from_utf8_lossy(&connect.stderr).contains("407"),
        "{connect:?}"
    );
    assert!(w.api.requests().is_empty());
    assert!(
        w.sluice
            .wait_audit(|r| r["decision"] == "deny"
                && r["side"] == "policy"
                && r["reason"] == "policy: proxy: session: unknown token")
            .is_some()
    );

    let user = format!("sluice:{TOKEN}");
    let internal = w.curl(
        &user,
        &[
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            "http://internal.test:3000/v1/health",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&internal.stdout),
        "403",
        "{internal:?}"
    );
    // A request the proxy cannot give a destination (origin-form, as to a server) is answered
    // 400 and still recorded, under its session and with a connection id of its own.
    let origin_form = w.curl(
        &user,
        &[
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            "--request-target",
            "/hello",
            "http://web.test/hello",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&origin_form.stdout),
        "400",
        "{origin_form:?}"
    );
    let record = w.sluice.wait_audit(|r| {
        r["reason"]
            .as_str()
            .is_some_and(|t| t.contains("expected CONNECT host:port"))
    });
    let record = record.expect("the 400 has an audit record");
    assert_eq!(
        (&record["decision"], &record["side"], &record["session"]),
        (&"error".into(), &"downstream".into(), &"agent-1".into()),
        "{record}"
    );
    assert!(record["conn"].is_string(), "{record}");
    let log = w.sluice.audit();
    assert!(
        log.iter().all(|r| !r.to_string().contains(TOKEN)),
        "the token never reaches the audit log"
    );
}

#[test]
fn a_connect_tunnel_to_a_passthrough_host_carries_the_real_tls_byte_for_byte() {
    let w = world();
    let user = format!("sluice:{TOKEN}");
    // Trusting only the upstream's own CA works: the client talks to pinned.test itself.
    let ca = w.ca_file.to_str().unwrap();
    let mut cmd = w.lab.exec_in_node("curl");
    cmd.args(["-sS", "--max-time", "20", "--cacert", ca])
        .args(["-x", &format!("http://{user}@127.0.0.1:3128")])
        .arg("https://pinned.test/big");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), PINNED_BODY.len() * PINNED_REPEAT);
    assert!(
        out.stdout == PINNED_BODY.repeat(PINNED_REPEAT).as_bytes(),
        "the body changed on the way"
    );
    assert_eq!(w.pinned.requests().len(), 1);
    let record = w
        .sluice
        .wait_audit(|r| {
            r["kind"] == "connection" && r["host"] == "pinned.test" && r["decision"] == "allow"
        })
        .unwrap_or_else(|| panic!("{:?}", w.sluice.audit()));
    assert_eq!(record["mode"], "passthrough", "{record}");
    assert_eq!(record["session"], "agent-1", "{record}");
    let down = record["bytes_down"].as_u64().unwrap();
    assert!(
        down > (PINNED_BODY.len() * PINNED_REPEAT) as u64,
        "the record counts the tunnel's bytes: {record}"
    );
}
