//! Tests of the real-Squid harness (root only): curl in the node namespace through Squid in
//! the net namespace to fake upstreams, with and without Basic auth and TLS to the proxy.

#![expect(clippy::expect_used, reason = "tests")]

use std::net::{IpAddr, SocketAddr};
use std::process::Output;
use std::time::Duration;

use tests::addrs::{self, HOST_A, HOST_C};
use tests::squid::{SquidError, squid};
use tests::{NetLab, TestCa, upstream};

const LOG_WAIT: Duration = Duration::from_secs(5);

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// `curl -sS --max-time 10 <args>` from the node namespace; returns (stdout, whole output).
fn curl(lab: &NetLab, args: &[&str]) -> (String, Output) {
    let out = lab
        .exec_in_node("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("spawn curl");
    (String::from_utf8_lossy(&out.stdout).into_owned(), out)
}

#[test]
fn connect_and_plain_get_through_squid_are_logged() {
    let lab = NetLab::new("sq").unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let ca_path = ca_file.to_str().unwrap();
    let _tls = upstream::https(&ca)
        .hostname("api.test")
        .route("/", "ok")
        .start(&lab, sa(HOST_A, 443))
        .unwrap();
    let plain = upstream::http()
        .route("/plain", "plain ok")
        .start(&lab, sa(HOST_A, 80))
        .unwrap();
    let proxy = squid()
        .host("api.test", HOST_A.into())
        .start(&lab, sa(HOST_C, 3128))
        .unwrap();
    assert_eq!(proxy.url(), "http://198.51.100.12:3128");

    let (body, out) = curl(
        &lab,
        &["-x", &proxy.url(), "--cacert", ca_path, "https://api.test/"],
    );
    assert_eq!(body, "ok", "{out:?}\n{}", proxy.cache_log());
    assert!(
        proxy.wait_for_log("CONNECT api.test:443", LOG_WAIT),
        "{:?}",
        proxy.access_log()
    );

    let (body, out) = curl(&lab, &["-x", &proxy.url(), "http://api.test/plain"]);
    assert_eq!(body, "plain ok", "{out:?}");
    assert!(proxy.wait_for_log("GET http://api.test/plain", LOG_WAIT));
    assert_eq!(plain.requests().len(), 1);
    // The readiness probe is not in the log: only the two requests are.
    assert_eq!(proxy.access_log().len(), 2, "{:?}", proxy.access_log());

    // Names Squid was not told about do not resolve (no real DNS).
    let (_, out) = curl(
        &lab,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            &proxy.url(),
            "http://unknown.test/",
        ],
    );
    let code = String::from_utf8_lossy(&out.stdout);
    assert!(code == "502" || code == "503", "{code} {out:?}");
}

#[test]
fn basic_auth_demands_credentials_and_logs_the_user() {
    let lab = NetLab::new("sq").unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let ca_path = ca_file.to_str().unwrap();
    let _tls = upstream::https(&ca)
        .hostname("api.test")
        .route("/", "ok")
        .start(&lab, sa(HOST_A, 443))
        .unwrap();
    let proxy = squid()
        .basic_auth("alice", "s3cret")
        .host("api.test", HOST_A.into())
        .start(&lab, sa(HOST_C, 3128))
        .unwrap();
    let url = proxy.url();

    let code = |extra: &[&str]| {
        let mut args = vec![
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_connect}",
            "-x",
            &url,
        ];
        args.extend_from_slice(extra);
        args.extend(["--cacert", ca_path, "https://api.test/"]);
        let (codes, out) = curl(&lab, &args);
        (codes, out)
    };
    let (codes, out) = code(&[]);
    assert!(codes.ends_with(" 407"), "no credentials: {codes} {out:?}");
    let (codes, out) = code(&["--proxy-user", "alice:wrong"]);
    assert!(codes.ends_with(" 407"), "wrong password: {codes} {out:?}");
    let (codes, out) = code(&["--proxy-user", "alice:s3cret"]);
    assert_eq!(codes, "200 200", "{out:?}\n{}", proxy.cache_log());

    assert!(proxy.wait_for_log("TCP_DENIED/407", LOG_WAIT));
    assert!(
        proxy.wait_for_log("CONNECT api.test:443 alice ", LOG_WAIT),
        "{:?}",
        proxy.access_log()
    );
}

#[test]
fn https_proxy_speaks_tls_to_the_client() {
    let lab = NetLab::new("sq").unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let ca_path = ca_file.to_str().unwrap();
    let _tls = upstream::https(&ca)
        .hostname("api.test")
        .route("/", "ok")
        .start(&lab, sa(HOST_A, 443))
        .unwrap();
    let proxy = squid()
        .https(&ca, &["198.51.100.12"])
        .basic_auth("bob", "pw")
        .host("api.test", HOST_A.into())
        .start(&lab, sa(HOST_C, 3129))
        .unwrap();
    assert_eq!(proxy.url(), "https://198.51.100.12:3129");

    let (body, out) = curl(
        &lab,
        &[
            "--proxy",
            &proxy.url(),
            "--proxy-cacert",
            ca_path,
            "--proxy-user",
            "bob:pw",
            "--cacert",
            ca_path,
            "https://api.test/",
        ],
    );
    assert_eq!(body, "ok", "{out:?}\n{}", proxy.cache_log());
    assert!(proxy.wait_for_log("CONNECT api.test:443 bob ", LOG_WAIT));

    // A client that does not trust the proxy's CA fails the handshake to the proxy.
    let rogue = TestCa::rogue().unwrap().pem_file().unwrap();
    let (_, out) = curl(
        &lab,
        &[
            "--proxy",
            &proxy.url(),
            "--proxy-cacert",
            rogue.to_str().unwrap(),
            "https://api.test/",
        ],
    );
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn stop_takes_the_proxy_down_and_drop_cleans_up() {
    let lab = NetLab::new("sq").unwrap();
    let _plain = upstream::http()
        .route("/", "ok")
        .start(&lab, sa(HOST_A, 80))
        .unwrap();
    // An address the lab does not have yet: the harness adds it to the net side.
    let extra = sa(IpAddr::from([203, 0, 113, 20]), 8080);
    let mut proxy = squid().start(&lab, extra).unwrap();
    let (body, out) = curl(&lab, &["-x", &proxy.url(), "http://198.51.100.10/"]);
    assert_eq!(body, "ok", "{out:?}");

    proxy.stop();
    let addr = proxy.addr();
    let refused = lab
        .in_net(move || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .unwrap();
    assert_eq!(
        refused.map(drop).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    let (_, out) = curl(&lab, &["-x", &proxy.url(), "http://198.51.100.10/"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "curl: couldn't connect: {out:?}"
    );
    proxy.stop();
    let shm_prefix = format!("{}-", proxy.service_name());
    drop(proxy);
    let leftovers: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&shm_prefix))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bad_addresses_are_refused_before_anything_starts() {
    let lab = NetLab::new("sq").unwrap();
    let err = squid()
        .start(&lab, sa(IpAddr::from([192, 0, 2, 1]), 3128))
        .unwrap_err();
    assert!(matches!(err, SquidError::NotTestAddress(_)), "{err}");
    // A broken configuration line makes Squid exit; the error carries its log.
    let err = squid()
        .config_line("no_such_directive on")
        .start(&lab, sa(addrs::HOST_B, 3128))
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SquidError::Exited { .. }), "{text}");
    assert!(text.contains("no_such_directive"), "{text}");
}
