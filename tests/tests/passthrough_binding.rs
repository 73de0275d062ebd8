//! A passthrough name is not a tunnel: the daemon relays a passed-through connection only to
//! the rule's port of an address its own resolver returns for the SNI, and a `tcp_allow` host
//! entry matches opaque TCP only toward that host's addresses.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::net::SocketAddr;
use std::process::Output;

use serde_json::Value;
use tests::sluice::{Options, Sluice};
use tests::upstream::{self, RunningUpstream};
use tests::{NetLab, TestCa, addrs};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/capture/sandbox.py");

struct World {
    _lab: NetLab,
    sluice: Sluice,
    ca_file: tempfile::TempPath,
    /// pinned.test's real address, 198.51.100.10:443.
    pinned: RunningUpstream,
    /// Another host presenting a pinned.test certificate, 198.51.100.11:443.
    decoy: RunningUpstream,
    /// pinned.test's address, port 8443 (not in the rule).
    pinned_8443: RunningUpstream,
    /// alt.test, 198.51.100.12:8443 (`alt.test:8443` in the rule).
    alt: RunningUpstream,
}

fn world() -> World {
    let lab = NetLab::new("ptb").unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let start = |host: &str, body: &'static str, ip: std::net::Ipv4Addr, port: u16| {
        upstream::https(&ca)
            .hostname(host)
            .route("/", body)
            .start(&lab, SocketAddr::new(ip.into(), port))
            .unwrap()
    };
    let pinned = start("pinned.test", "pinned", addrs::HOST_A, 443);
    let decoy = start("pinned.test", "decoy", addrs::HOST_B, 443);
    let pinned_8443 = start("pinned.test", "pinned-8443", addrs::HOST_A, 8443);
    let alt = start("alt.test", "alt", addrs::HOST_C, 8443);
    let sluice = Sluice::start(
        &lab,
        &Options {
            extra_toml: "[policy]\npassthrough = [\"pinned.test\", \"alt.test:8443\"]\n\
                         tcp_allow = [\"db.test:7\"]\n"
                .into(),
            dns_hosts: vec![
                ("pinned.test".into(), "198.51.100.10".into()),
                ("alt.test".into(), "198.51.100.12".into()),
                ("db.test".into(), "198.51.100.11".into()),
            ],
            ..Options::default()
        },
    )
    .unwrap();
    World {
        _lab: lab,
        sluice,
        ca_file,
        pinned,
        decoy,
        pinned_8443,
        alt,
    }
}

impl World {
    /// curl in a sandbox (own network namespace) trusting only the upstreams' CA.
    fn curl(&self, args: &[&str]) -> Output {
        let mut argv = vec![
            "curl",
            "-sS",
            "--max-time",
            "10",
            // Only the upstream's CA: not the Sluice CA the sandbox's /etc/ssl/certs holds.
            "--capath",
            "/tmp",
            "--cacert",
            self.ca_file.to_str().unwrap(),
        ];
        argv.extend_from_slice(args);
        self.sluice.exec(&["--netns"], &argv).output().unwrap()
    }

    fn refusal(&self, destination: &str) -> Value {
        self.sluice
            .wait_audit(|r| {
                r["kind"] == "connection"
                    && r["destination"] == destination
                    && r["decision"] == "deny"
            })
            .unwrap_or_else(|| panic!("no refusal for {destination}: {:?}", self.sluice.audit()))
    }
}

#[test]
fn passthrough_reaches_only_the_names_own_addresses_and_ports() {
    let w = world();
    let ok = w.curl(&["https://pinned.test/"]);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "pinned", "{ok:?}");

    // SNI pinned.test, aimed at another host: refused before a byte leaves.
    let out = w.curl(&[
        "--resolve",
        "pinned.test:443:198.51.100.11",
        "https://pinned.test/",
    ]);
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(w.decoy.connections(), 0, "nothing reached the decoy");
    let record = w.refusal("198.51.100.11:443");
    assert_eq!(record["host"], "pinned.test", "{record}");
    assert!(
        record["reason"].as_str().unwrap().contains(
            "passthrough: 198.51.100.11 is not an address of pinned.test (it resolves to 198.51.100.10)"
        ),
        "{record}"
    );

    // The right address but a port the rule does not name.
    let out = w.curl(&["https://pinned.test:8443/"]);
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(w.pinned_8443.connections(), 0, "nothing reached port 8443");
    let record = w.refusal("198.51.100.10:8443");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("port 8443 is not allowed for pinned.test"),
        "{record}"
    );

    // `alt.test:8443` in the rule allows exactly that port.
    let ok = w.curl(&["https://alt.test:8443/"]);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "alt", "{ok:?}");
    assert!(w.alt.connections() > 0);
    assert!(w.pinned.connections() > 0);
}

#[test]
fn a_tcp_allow_host_entry_matches_its_own_addresses_only() {
    let w = world();
    let db = upstream::tcp_echo()
        .start(&w._lab, SocketAddr::new(addrs::HOST_B.into(), 7))
        .unwrap();
    let elsewhere = upstream::tcp_echo()
        .start(&w._lab, SocketAddr::new(addrs::HOST_C.into(), 7))
        .unwrap();
    let script = w.sluice.share(std::path::Path::new(SCRIPT)).unwrap();
    let run = |ip: &str| {
        let out = w
            .sluice
            .exec(&["--netns"], &["python3", &script, "many", ip, "7", "1"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default().to_owned();
        serde_json::from_str::<Value>(&line).unwrap_or_else(|_| panic!("no JSON: {out:?}"))
    };
    // db.test resolves to 198.51.100.11: opaque TCP there is relayed.
    assert_eq!(run("198.51.100.11")["ok"], 1);
    assert_eq!(db.connections().len(), 1);
    // The same port elsewhere is not db.test: refused, nothing arrives.
    assert_eq!(run("198.51.100.12")["ok"], 0);
    assert!(elsewhere.connections().is_empty());
    let record = w.refusal("198.51.100.12:7");
    assert!(
        record["reason"].as_str().unwrap().contains("tcp_allow"),
        "{record}"
    );
}
