//! Live configuration reload end to end: the real daemon re-reads its file on SIGHUP and on
//! `sluice reload`; new connections follow the new rules, connections already open finish
//! untouched, and a file that cannot be applied whole is refused while the running
//! configuration keeps serving.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use tests::sluice::{Options, Sluice};
use tests::upstream::{self, RunningUpstream, SseEvent};
use tests::{NetLab, TestCa, addrs};

/// Proxy token of the session the starting file declares.
const TOKEN: &str = "sluice_stk_reloadtestfirsttokenreloadtestfirsttoken0";
/// Proxy token of a session a reload adds.
const TOKEN2: &str = "sluice_stk_reloadtestsecondtokenreloadtestsecondtok0";
/// Events of the long-lived stream, one every 100 ms (20 s): it stays open across the reloads.
const EVENTS: usize = 200;

struct World {
    lab: NetLab,
    sluice: Sluice,
    /// The test CA the upstream's certificate chains to.
    ca_file: tempfile::TempPath,
    api: RunningUpstream,
    _web: RunningUpstream,
    /// The file as the daemon started with it.
    base: String,
}

/// `api.test` (HTTPS, echo, `/stream`) at 203.0.113.10 is intercepted at start; `web.test` is
/// plain HTTP at 198.51.100.10; session `agent-1` may use the explicit proxy.
fn world() -> World {
    let lab = NetLab::new("rl").unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let api = upstream::https(&ca)
        .hostname("api.test")
        .echo()
        .sse("/stream", EVENTS, Duration::from_millis(100))
        .start(&lab, SocketAddr::new(addrs::FAR_HOST.into(), 443))
        .unwrap();
    let web = upstream::http()
        .route("/hello", "hi")
        .start(&lab, SocketAddr::new(addrs::HOST_A.into(), 80))
        .unwrap();
    let extra_toml = format!(
        "[upstream]\nextra_roots = [{:?}]\n[[sessions]]\nid = \"agent-1\"\ntoken_sha256 = \"{}\"\n",
        ca_file.to_path_buf(),
        upstream::sha256_hex(TOKEN.as_bytes()),
    );
    let options = Options {
        extra_toml,
        dns_hosts: vec![
            ("api.test".into(), "203.0.113.10".into()),
            ("web.test".into(), "198.51.100.10".into()),
        ],
        ..Options::default()
    };
    let sluice = Sluice::start(&lab, &options).unwrap();
    let base = std::fs::read_to_string(sluice.config_path()).unwrap();
    World {
        lab,
        sluice,
        ca_file,
        api,
        _web: web,
        base,
    }
}

impl World {
    /// Rewrites the daemon's file as the starting file plus `extra`.
    fn write_config(&self, extra: &str) {
        std::fs::write(self.sluice.config_path(), format!("{}{extra}", self.base)).unwrap();
    }

    fn config_path(&self) -> String {
        self.sluice.config_path().display().to_string()
    }

    /// `sluice reload`.
    fn reload(&self) -> Output {
        self.sluice.command().arg("reload").output().unwrap()
    }

    /// The Sluice CA (what an intercepted client must trust).
    fn sluice_ca(&self) -> PathBuf {
        self.sluice.state_dir().join("ca.pem")
    }

    /// curl through the explicit proxy as `token`'s session, trusting `ca`.
    fn proxy_curl(&self, token: &str, ca: &std::path::Path, args: &[&str]) -> Command {
        let mut cmd = self.lab.exec_in_node("curl");
        cmd.args(["-sS", "--max-time", "30", "--cacert"])
            .arg(ca)
            .args(["-x", &format!("http://sluice:{token}@127.0.0.1:3128")])
            .args(args);
        cmd
    }

    /// curl in a new sandbox (kernel capture), trusting `ca`, to `https://api.test<path>`.
    fn sandbox_curl(&self, ca: &std::path::Path, extra: &[&str], path: &str) -> Command {
        let url = format!("https://api.test{path}");
        let ca = ca.to_str().unwrap();
        // `--capath` an empty directory: the sandbox's /etc/ssl/certs holds the Sluice CA.
        let mut argv = vec![
            "curl",
            "-sS",
            "--max-time",
            "30",
            "--capath",
            "/tmp",
            "--cacert",
            ca,
        ];
        argv.extend_from_slice(&["--resolve", "api.test:443:203.0.113.10"]);
        argv.extend_from_slice(extra);
        argv.push(&url);
        self.sluice.exec(&[], &argv)
    }

    /// Starts the long-lived stream and returns once the upstream serves it.
    fn open_stream(&self, mut cmd: Command) -> Child {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the stream to reach the upstream", || {
            self.api
                .requests()
                .iter()
                .any(|r| r.uri.path() == "/stream")
        });
        child
    }

    /// The config audit records so far.
    fn config_records(&self) -> Vec<Value> {
        self.sluice
            .audit()
            .into_iter()
            .filter(|r| r["kind"] == "config")
            .collect()
    }
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the stream to end and checks that every event arrived.
fn finish_stream(mut child: Child) {
    assert!(
        child.try_wait().unwrap().is_none(),
        "the stream must still be open after the reloads (make EVENTS larger)"
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "stream: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let events = text.lines().filter_map(SseEvent::parse).count();
    assert_eq!(events, EVENTS, "every event of the open stream arrived");
}

fn run(mut cmd: Command) -> Output {
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn sighup_applies_new_rules_to_new_connections_and_open_ones_finish() {
    let w = world();
    let (ours, theirs) = (w.sluice_ca(), w.ca_file.to_path_buf());
    let stream = w.open_stream(w.sandbox_curl(&ours, &["-N"], "/stream"));
    let before = w.sandbox_curl(&theirs, &[], "/").output().unwrap();
    assert_eq!(before.status.code(), Some(60), "intercepted: {before:?}");
    let refused = w.proxy_curl(TOKEN2, &ours, &["http://web.test/hello"]);
    let refused = text(&run(refused).stdout);
    assert!(refused.contains("unknown token"), "{refused}");

    w.write_config(&format!(
        "[policy]\npassthrough = [\"api.test\"]\n[[sessions]]\nid = \"agent-2\"\ntoken_sha256 = \"{}\"\n",
        upstream::sha256_hex(TOKEN2.as_bytes())
    ));
    w.sluice.signal(Signal::SIGHUP).unwrap();
    wait_for("the reload", || {
        w.sluice.log(1).contains("config: reloaded")
    });

    // New connections: api.test is passed through (the upstream's own certificate), from a
    // sandbox (capture) as through the proxy; the new session authenticates.
    let after = w.sandbox_curl(&theirs, &[], "/after").output().unwrap();
    assert!(after.status.success(), "passthrough: {after:?}");
    let echo: Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(echo["path"], "/after");
    let ours_now = w.sandbox_curl(&ours, &[], "/").output().unwrap();
    assert_eq!(ours_now.status.code(), Some(60), "no Sluice leaf any more");
    let proxied = w.proxy_curl(TOKEN, &theirs, &["https://api.test/proxied"]);
    assert!(run(proxied).status.success());
    let hello = w.proxy_curl(TOKEN2, &ours, &["http://web.test/hello"]);
    assert_eq!(text(&run(hello).stdout), "hi");

    // The open connection was intercepted when it started and still is, to its end.
    finish_stream(stream);
    let record = w
        .sluice
        .wait_audit(|r| r["kind"] == "request" && r["url"] == "https://api.test/stream")
        .unwrap_or_else(|| panic!("{:?}", w.sluice.audit()));
    assert_eq!(record["status"], 200, "{record}");
    assert!(
        w.sluice
            .wait_audit(|r| r["kind"] == "connection"
                && r["mode"] == "passthrough"
                && r["host"] == "api.test"
                && r["decision"] == "allow")
            .is_some()
    );
    let records = w.config_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["decision"], "allow");
    let reason = records[0]["reason"].as_str().unwrap();
    for want in [
        "SIGHUP",
        "policy.passthrough: added api.test",
        "sessions: added agent-2",
    ] {
        assert!(reason.contains(want), "{want}: {reason}");
    }
    assert!(!reason.contains(&upstream::sha256_hex(TOKEN2.as_bytes())));
}

#[test]
fn sluice_reload_refuses_what_it_cannot_apply_whole_and_reports_what_changed() {
    let mut w = world();
    let (ours, theirs) = (w.sluice_ca(), w.ca_file.to_path_buf());
    let stream = w.open_stream(w.proxy_curl(TOKEN, &ours, &["-N", "https://api.test/stream"]));
    let path = w.config_path();
    // Files that do not parse or validate: `sluice reload` reads the file first and says so;
    // the daemon, on SIGHUP, refuses it and keeps serving.
    let invalid: [(&str, &[&str]); 2] = [
        (
            "[policy\npassthrough = [\"api.test\"]\n",
            &["parse", &path, "invalid table header"],
        ),
        (
            "[policy]\npassthrough = [\"api.test\"]\ntcp_allow = [\"no-port\"]\n",
            &["policy.tcp_allow", "no-port", &path],
        ),
    ];
    for (n, (extra, wants)) in invalid.into_iter().enumerate() {
        w.write_config(extra);
        let out = w.reload();
        assert_eq!(out.status.code(), Some(125), "{extra}: {out:?}");
        let stderr = text(&out.stderr);
        println!("sluice reload (invalid):\n{stderr}");
        for want in wants.iter().chain(&["keeps its running configuration"]) {
            assert!(stderr.contains(want), "{extra}: wants {want:?} in {stderr}");
        }
        w.sluice.signal(Signal::SIGHUP).unwrap();
        wait_for("the refusal", || {
            w.sluice.log(1).matches("config: reload refused").count() == n + 1
        });
        let line = w.sluice.log(1);
        let line = line
            .lines()
            .rfind(|l| l.contains("reload refused"))
            .unwrap();
        for want in wants.iter().chain(&["the running configuration stays"]) {
            assert!(line.contains(want), "{extra}: wants {want:?} in {line}");
        }
        // Still intercepted: the old rules serve.
        let ok = w.proxy_curl(TOKEN, &ours, &["https://api.test/still"]);
        assert!(run(ok).status.success(), "{extra}");
    }
    // A restart-only field refuses the whole file, the live change in it included. (A new
    // `listen.control` would send `sluice reload` itself elsewhere: SIGHUP reports it.)
    w.write_config(
        "[listen]\ncontrol = \"127.0.0.1:3001\"\n[policy]\npassthrough = [\"api.test\"]\n",
    );
    w.sluice.signal(Signal::SIGHUP).unwrap();
    wait_for("the refusal", || {
        w.sluice.log(1).matches("config: reload refused").count() == 3
    });
    let log = w.sluice.log(1);
    assert!(log.contains("listen.control cannot change"), "{log}");
    w.write_config(
        "[listen]\nproxy = \"127.0.0.1:3129\"\ndns_port = 15054\n\
         [policy]\npassthrough = [\"api.test\"]\n",
    );
    let out = w.reload();
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let stderr = text(&out.stderr);
    println!("sluice reload (refused):\n{stderr}");
    for want in [
        "listen.dns_port, listen.proxy",
        "restart to change it",
        "409",
    ] {
        assert!(stderr.contains(want), "wants {want:?} in {stderr}");
    }
    let ok = w.proxy_curl(TOKEN, &ours, &["https://api.test/still"]);
    assert!(run(ok).status.success());

    w.write_config("[policy]\npassthrough = [\"api.test\"]\n");
    let out = w.reload();
    assert!(out.status.success(), "{out:?}");
    println!("sluice reload:\n{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        format!("reloaded {path}:\n  policy.passthrough: added api.test\n")
    );
    let passed = w.proxy_curl(TOKEN, &theirs, &["https://api.test/passed"]);
    assert!(run(passed).status.success());
    let ours_now = w.proxy_curl(TOKEN, &ours, &["https://api.test/"]).output();
    assert_eq!(ours_now.unwrap().status.code(), Some(60));
    let again = w.reload();
    assert_eq!(
        text(&again.stdout),
        format!("reloaded {path}: nothing changed\n")
    );

    finish_stream(stream);
    let metrics = w.sluice.metrics().unwrap();
    assert!(
        metrics.contains("sluice_config_reloads_total{result=\"ok\"} 2")
            && metrics.contains("sluice_config_reloads_total{result=\"refused\"} 4"),
        "{metrics}"
    );
    let records = w.config_records();
    let count = |d: &str| records.iter().filter(|r| r["decision"] == d).count();
    assert_eq!((count("allow"), count("deny")), (2, 4), "{records:?}");
    let by = |trigger: &str| {
        records
            .iter()
            .filter(|r| r["reason"].as_str().unwrap().contains(trigger))
            .count()
    };
    assert_eq!((by("SIGHUP"), by("control API")), (3, 3), "{records:?}");
    assert!(w.sluice.is_running(), "{}", w.sluice.log(1));
}
