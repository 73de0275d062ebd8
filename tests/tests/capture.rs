//! Kernel capture end to end: the real `sluice` daemon in a lab's node namespace, sandboxed
//! processes started by `sluice exec`, test hosts in the lab's net namespace.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::net::SocketAddr;
use std::process::Output;

use serde_json::Value;
use tests::sluice::{Options, Sluice};
use tests::{NetLab, TestCgroup, addrs, upstream};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/capture/sandbox.py");

fn lab_and_daemon(options: &Options) -> (NetLab, Sluice) {
    let lab = NetLab::new("cap").unwrap();
    let sluice = Sluice::start(&lab, options).unwrap();
    (lab, sluice)
}

/// Runs the helper script in a new sandbox and returns its JSON line, with the id of the
/// sandbox it ran in added as `sandbox` (the script's own pid is its PID namespace's).
fn in_sandbox(sluice: &Sluice, flags: &[&str], args: &[&str]) -> Value {
    let script = sluice.share(std::path::Path::new(SCRIPT)).unwrap();
    let mut argv = vec!["python3", script.as_str()];
    argv.extend_from_slice(args);
    let mark = sluice.audit().len();
    let out = sluice.exec(flags, &argv).output().unwrap();
    let mut got = parse(&out);
    let enrolled = sluice
        .audit()
        .into_iter()
        .skip(mark)
        .find(|r| {
            r["kind"] == "sandbox"
                && r["reason"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("enrolled"))
        })
        .unwrap_or_else(|| panic!("no sandbox record for {args:?}"));
    got["sandbox"] = enrolled["sandbox"].clone();
    got
}

fn parse(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "no JSON from sandbox: status {}, stdout {stdout:?}, stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn connection_to<'a>(dest: &'a str, sandbox: u64) -> impl Fn(&Value) -> bool + 'a {
    move |r: &Value| {
        r["kind"] == "connection" && r["destination"] == dest && r["sandbox"] == sandbox
    }
}

#[test]
fn sandboxed_tcp_reaches_hosts_through_the_daemon() {
    let (lab, sluice) = lab_and_daemon(&Options::default());
    let v4 = SocketAddr::new(addrs::HOST_A.into(), 80);
    let v6 = SocketAddr::new(addrs::HOST_V6_A.into(), 80);
    let _a = upstream::http()
        .route("/hello", "hi4")
        .start(&lab, v4)
        .unwrap();
    let _b = upstream::http()
        .route("/hello", "hi6")
        .start(&lab, v6)
        .unwrap();

    let cases = [
        ("4", "198.51.100.10", "198.51.100.10:80", "198.51.100.10"),
        (
            "6",
            "2001:db8:1::10",
            "[2001:db8:1::10]:80",
            "2001:db8:1::10",
        ),
        (
            "6",
            "::ffff:198.51.100.10",
            "198.51.100.10:80",
            "::ffff:198.51.100.10",
        ),
    ];
    for (family, host, audited, peer) in cases {
        let got = in_sandbox(&sluice, &[], &["get", family, host, "80"]);
        assert_eq!(got["status"], "HTTP/1.1 200 OK", "{host}: {got}");
        assert_eq!(
            got["peer"][0], peer,
            "getpeername shows the original destination: {got}"
        );
        assert_eq!(got["peer"][1], 80);
        let sandbox = got["sandbox"].as_u64().unwrap();
        let record = sluice
            .wait_audit(connection_to(audited, sandbox))
            .unwrap_or_else(|| {
                panic!(
                    "no audit record for {audited} sandbox {sandbox}: {:?}",
                    sluice.audit()
                )
            });
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(
            record["mode"], "intercept",
            "plain HTTP is intercepted: {record}"
        );
        assert!(record["bytes_down"].as_u64().unwrap() > 0, "{record}");
        assert!(record["sandbox"].as_u64().is_some(), "{record}");
    }
}

#[test]
fn bypass_attempts_from_a_sandbox_fail() {
    let options = Options {
        dns_hosts: vec![("example.test".into(), "198.51.100.10".into())],
        ..Options::default()
    };
    let (lab, sluice) = lab_and_daemon(&options);
    let _web = upstream::http()
        .route("/hello", "hi")
        .start(&lab, SocketAddr::new(addrs::HOST_A.into(), 80))
        .unwrap();
    const EPERM: u64 = 1;

    let udp = in_sandbox(&sluice, &[], &["udp", "198.51.100.10", "9999"]);
    assert_eq!(
        (udp["ok"].as_bool(), udp["errno"].as_u64()),
        (Some(false), Some(EPERM)),
        "{udp}"
    );
    // ICMP ping sockets may already be refused by the kernel's ping_group_range (EACCES).
    // Moving to a cgroup outside the sandbox meets a read-only cgroup filesystem (EROFS).
    const EACCES: u64 = 13;
    const EROFS: u64 = 30;
    for step in ["raw", "ping", "packet", "vsock", "escape"] {
        let got = in_sandbox(&sluice, &[], &[step]);
        assert_eq!(got["ok"].as_bool(), Some(false), "{step}: {got}");
        assert!(
            matches!(got["errno"].as_u64(), Some(EPERM | EACCES | EROFS)),
            "{step}: {got}"
        );
    }

    // DNS to an arbitrary resolver address is answered by the daemon (on the sandbox's own
    // DNS socket: the node's shared one refuses senders it cannot identify).
    let out = sluice
        .exec(
            &["--netns"],
            &[
                "dig",
                "+short",
                "+timeout=3",
                "+tries=1",
                "@203.0.113.53",
                "example.test",
                "A",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "198.51.100.10",
        "{out:?}"
    );
    assert!(
        sluice
            .wait_audit(|r| r["kind"] == "dns" && r["host"] == "example.test")
            .is_some()
    );

    // Trying to move into a child cgroup does not escape capture.
    let nested = in_sandbox(
        &sluice,
        &[],
        &[
            "join-child",
            &sluice.parent_cgroup.to_string_lossy(),
            "198.51.100.10",
            "80",
        ],
    );
    // The cgroup filesystem is read-only inside a sandbox: the nesting attempt fails (EROFS),
    // and the connection made afterwards is captured all the same.
    assert_eq!(nested["nesting"]["errno"], 30, "{nested}");
    assert!(
        nested["cgroup"].as_str().unwrap().ends_with("\n0::/"),
        "the sandbox is the root of its own cgroup namespace: {nested}"
    );
    assert_eq!(nested["status"], "HTTP/1.1 200 OK", "{nested}");
    let sandbox = nested["sandbox"].as_u64().unwrap();
    assert!(
        sluice
            .wait_audit(connection_to("198.51.100.10:80", sandbox))
            .is_some(),
        "nested connect audited"
    );

    // The control API and other loopback services are refused, and the refusal is audited.
    let api = in_sandbox(&sluice, &[], &["get", "4", "127.0.0.1", "3000"]);
    assert!(
        api.get("status").is_none_or(|s| s == ""),
        "control API must not answer a sandbox: {api}"
    );
    let sandbox = api["sandbox"].as_u64().unwrap();
    let refused = sluice
        .wait_audit(connection_to("127.0.0.1:3000", sandbox))
        .unwrap();
    assert_eq!(refused["decision"], "deny", "{refused}");
    assert!(
        refused["reason"].as_str().unwrap().contains("loopback"),
        "{refused}"
    );
}

#[test]
fn killed_daemon_fails_closed_and_restart_readopts() {
    let (lab, mut sluice) = lab_and_daemon(&Options::default());
    let _web = upstream::http()
        .route("/hello", "hi")
        .start(&lab, SocketAddr::new(addrs::HOST_A.into(), 80))
        .unwrap();
    let cgroup = TestCgroup::new(&sluice.parent_cgroup, "runtime-made").unwrap();
    let enrolled = sluice
        .command()
        .args(["enroll", "--cgroup"])
        .arg(cgroup.path())
        .output()
        .unwrap();
    assert!(enrolled.status.success(), "{enrolled:?}");

    let curl = |cg: &TestCgroup| {
        let mut cmd = lab.exec_in_node("curl");
        cmd.args(["-sS", "--max-time", "5", "http://198.51.100.10/hello"]);
        cg.wrap(&cmd).output().unwrap()
    };
    let ok = curl(&cgroup);
    assert_eq!(ok.stdout, b"hi", "{ok:?}");

    sluice.kill9();
    let mut get = lab.exec_in_node("python3");
    get.args([SCRIPT, "get", "4", "198.51.100.10", "80"]);
    let refused = parse(&cgroup.wrap(&get).output().unwrap());
    const ECONNREFUSED: u64 = 111;
    assert_eq!(
        refused["errno"], ECONNREFUSED,
        "refused, not direct: {refused}"
    );
    assert!(
        _web.requests().len() == 1,
        "the host saw only the request made before the kill"
    );

    sluice.restart().unwrap();
    let again = curl(&cgroup);
    assert_eq!(
        again.stdout,
        b"hi",
        "{again:?}\n{:?}\n{}",
        sluice.audit(),
        sluice.log(2)
    );
    let unenrolled = sluice
        .command()
        .args(["unenroll", "--cgroup"])
        .arg(cgroup.path())
        .output()
        .unwrap();
    assert!(unenrolled.status.success(), "{unenrolled:?}");
    let after = parse(&cgroup.wrap(&get).output().unwrap());
    const EPERM: u64 = 1;
    assert_eq!(
        after["errno"], EPERM,
        "an unenrolled cgroup under the parent is refused: {after}"
    );
    let show = std::process::Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(&sluice.parent_cgroup)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    for hook in [
        "cgroup_inet_sock_create",
        "cgroup_inet4_connect",
        "cgroup_inet6_connect",
        "cgroup_udp4_sendmsg",
        "cgroup_udp6_sendmsg",
        "cgroup_udp4_recvmsg",
        "cgroup_udp6_recvmsg",
        "cgroup_inet4_getpeername",
        "cgroup_inet6_getpeername",
        "cgroup_sock_ops",
    ] {
        let n = text
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == hook))
            .count();
        assert_eq!(n, 1, "{hook} attached {n} times after restart:\n{text}");
    }
}

#[test]
fn processes_outside_sandboxes_are_not_captured() {
    let (lab, mut sluice) = lab_and_daemon(&Options::default());
    let web = upstream::http()
        .route("/hello", "hi")
        .start(&lab, SocketAddr::new(addrs::HOST_A.into(), 80))
        .unwrap();
    let out = lab
        .exec_in_node("curl")
        .args(["-sS", "--max-time", "5", "http://198.51.100.10/hello"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"hi", "{out:?}");
    assert_eq!(web.requests().len(), 1);
    // The same request from a sandbox afterwards is captured and audited: the audit works.
    let sandboxed = sluice
        .exec(
            &[],
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "http://198.51.100.10/hello",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(sandboxed.stdout, b"hi", "{sandboxed:?}");
    // A stopped daemon has written every record it ever will, so nothing can still be on
    // its way: the sandboxed connection must be the only one audited.
    let stopped = sluice.stop();
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    let audited: Vec<Value> = sluice
        .audit()
        .into_iter()
        .filter(|r| r["kind"] == "connection")
        .collect();
    assert_eq!(
        audited.len(),
        1,
        "a direct connection outside any sandbox was audited as captured: {audited:?}"
    );
    assert_eq!(audited[0]["destination"], "198.51.100.10:80", "{audited:?}");
    assert!(audited[0]["sandbox"].as_u64().is_some(), "{audited:?}");
}

#[test]
fn exec_netns_sandbox_reaches_hosts_only_through_the_daemon() {
    let (lab, sluice) = lab_and_daemon(&Options::default());
    let _web = upstream::http()
        .route("/hello", "hi")
        .start(&lab, SocketAddr::new(addrs::FAR_HOST.into(), 80))
        .unwrap();
    let out = sluice
        .exec(
            &["--netns"],
            &[
                "sh",
                "-c",
                "ip -o link | wc -l; exec curl -sS --max-time 5 http://203.0.113.10/hello",
            ],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\nhi",
        "only loopback in the sandbox namespace, yet the host answers"
    );
    assert!(
        sluice
            .wait_audit(|r| r["kind"] == "connection"
                && r["destination"] == "203.0.113.10:80"
                && r["decision"] == "allow")
            .is_some()
    );
    let list = sluice.command().arg("sandboxes").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).lines().count(),
        1,
        "the sandbox is removed after exec: {list:?}"
    );
}

#[test]
fn exec_passes_exit_codes_and_reports_missing_commands() {
    let (_lab, sluice) = lab_and_daemon(&Options::default());
    let code = sluice.exec(&[], &["sh", "-c", "exit 7"]).output().unwrap();
    assert_eq!(code.status.code(), Some(7));
    let missing = sluice
        .exec(&[], &["no-such-command-sluice"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("command not found: no-such-command-sluice"),
        "{missing:?}"
    );
}

#[test]
fn misuse_gets_clear_errors() {
    let (lab, sluice) = lab_and_daemon(&Options::default());
    let second = sluice.command().arg("run").output().unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another sluice daemon") && err.contains(&*sluice.pin_dir.to_string_lossy()),
        "{err}"
    );

    let missing = sluice
        .command()
        .args([
            "enroll",
            "--cgroup",
            "/sys/fs/cgroup/unified/no-such-sluice-cgroup",
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("does not exist"),
        "{missing:?}"
    );

    let no_daemon = lab
        .exec_in_node(tests::sluice::binary())
        .args(["--config", "/nonexistent.toml", "sandboxes"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&no_daemon.stderr).contains("/nonexistent.toml"),
        "{no_daemon:?}"
    );
}

#[test]
fn connection_records_do_not_leak() {
    let options = Options {
        extra_toml: "[policy]\ntcp_allow = [\"198.51.100.11:7\"]\n".into(),
        ..Options::default()
    };
    let (lab, sluice) = lab_and_daemon(&options);
    let _echo = upstream::tcp_echo()
        .start(&lab, SocketAddr::new(addrs::HOST_B.into(), 7))
        .unwrap();
    let got = in_sandbox(&sluice, &[], &["many", "198.51.100.11", "7", "2000"]);
    assert_eq!(got["ok"], 2000, "{got}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = sluice.command().arg("status").output().unwrap();
        let health: Value =
            serde_json::from_slice(&status.stdout).unwrap_or_else(|_| panic!("{status:?}"));
        if health["connections"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connection map still holds entries: {health}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn opaque_tcp_needs_a_rule() {
    let options = Options {
        extra_toml: "[policy]\ntcp_allow = [\"198.51.100.11:7\"]\n".into(),
        ..Options::default()
    };
    let (lab, sluice) = lab_and_daemon(&options);
    let allowed = upstream::tcp_echo()
        .start(&lab, SocketAddr::new(addrs::HOST_B.into(), 7))
        .unwrap();
    let other = upstream::tcp_echo()
        .start(&lab, SocketAddr::new(addrs::HOST_C.into(), 7))
        .unwrap();
    let ok = in_sandbox(&sluice, &[], &["many", "198.51.100.11", "7", "1"]);
    assert_eq!(ok["ok"], 1, "{ok}");
    let refused = in_sandbox(&sluice, &[], &["many", "198.51.100.12", "7", "1"]);
    assert_eq!(
        refused["ok"], 0,
        "opaque TCP without a rule gets no echo: {refused}"
    );
    let record = sluice
        .wait_audit(|r| r["destination"] == "198.51.100.12:7" && r["decision"] == "deny")
        .unwrap_or_else(|| panic!("no refusal audited: {:?}", sluice.audit()));
    assert!(
        record["reason"].as_str().unwrap().contains("tcp_allow"),
        "{record}"
    );
    assert_eq!(allowed.connections().len(), 1);
    assert!(
        other.connections().is_empty(),
        "nothing reached the host without a rule"
    );
}

#[test]
fn a_server_that_speaks_first_is_relayed_without_waiting_for_the_client() {
    let options = Options {
        extra_toml: "[policy]\ntcp_allow = [\"198.51.100.11:25\"]\n".into(),
        ..Options::default()
    };
    let (lab, sluice) = lab_and_daemon(&options);
    let _smtp = upstream::tcp_echo()
        .banner("220 mail.test ESMTP ready\r\n")
        .start(&lab, SocketAddr::new(addrs::HOST_B.into(), 25))
        .unwrap();
    // Like an SMTP client: connect, wait (2 s at most) for the greeting, then talk.
    let client = "import socket; s = socket.create_connection(('198.51.100.11', 25)); \
                  s.settimeout(2); print(s.recv(100).decode().strip()); \
                  s.sendall(b'EHLO sandbox\\r\\n'); print(s.recv(100).decode().strip())";
    let out = sluice
        .exec(&[], &["python3", "-c", client])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "220 mail.test ESMTP ready\nEHLO sandbox\n"
    );
    let record = sluice
        .wait_audit(|r| r["destination"] == "198.51.100.11:25" && r["decision"] == "allow")
        .unwrap_or_else(|| panic!("no relay audited: {:?}", sluice.audit()));
    assert_eq!(record["mode"], "relay", "{record}");
}

/// `BPF_LINK_CREATE`: the bpf(2) command that kernels before 5.7 lack.
const BPF_LINK_CREATE: &str = "28";

#[test]
fn a_kernel_without_cgroup_links_is_refused_by_name_and_nothing_is_attached() {
    let lab = NetLab::new("probe").unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/capture/kernel_without.py"
    );
    let options = Options {
        // Debian's Python: python3-seccomp is a Debian package.
        wrapper: vec![
            "/usr/bin/python3".into(),
            script.into(),
            BPF_LINK_CREATE.into(),
        ],
        ..Options::default()
    };
    let mut sluice = Sluice::prepare(&lab, &options).unwrap();
    let refusal = sluice
        .restart()
        .expect_err("sluice must not start without cgroup links")
        .to_string();
    for needle in [
        "lacks bpf links for cgroup programs (BPF_LINK_CREATE) (Linux 5.7)",
        "Sluice needs Linux 5.14 or newer",
        "Nothing was attached",
    ] {
        assert!(refusal.contains(needle), "{needle:?} not in:\n{refusal}");
    }
    let shown = std::process::Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(&sluice.parent_cgroup)
        .output()
        .unwrap();
    let attached = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success() && attached.trim().is_empty(),
        "programs attached after the refusal: {attached}"
    );
    let links: Vec<_> = std::fs::read_dir(sluice.pin_dir.join("links"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        links.is_empty(),
        "links pinned after the refusal: {links:?}"
    );
    assert!(!sluice.parent_cgroup.join("sluice-probe").exists());

    // What the refusal left does not stand in the way once the kernel has what it needs.
    sluice.set_wrapper(Vec::new());
    sluice.restart().expect("the next start, with cgroup links");
    let _web = upstream::http()
        .route("/hello", "hi")
        .start(&lab, SocketAddr::new(addrs::HOST_A.into(), 80))
        .unwrap();
    let got = in_sandbox(&sluice, &[], &["get", "4", "198.51.100.10", "80"]);
    assert_eq!(got["status"], "HTTP/1.1 200 OK", "{got}");
    let sandbox = got["sandbox"].as_u64().unwrap();
    assert!(
        sluice
            .wait_audit(connection_to("198.51.100.10:80", sandbox))
            .is_some()
    );
}
