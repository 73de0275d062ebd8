//! Corporate egress: every upstream connection leaves through the upstream proxy the
//! cascade picks (sandbox → session → node default → the daemon's environment → direct), a
//! real Squid in the test network. Each Squid dials out from its own address, so the test
//! host's peer address says which path a request took (Squid logs a tunnel only when it
//! closes, and Sluice keeps intercepted tunnels pooled). Intercepted requests (with the
//! session's credential injected), passthrough and `tcp_allow` relays all go through it; a
//! proxy that is down or refuses gives a 502 naming it, and nothing goes direct; the
//! proxy's password shows nowhere.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use sluice::testing::RedisServer;
use tests::sluice::{Options, SECOND_NODE_LISTEN, Sluice, shared_store_toml};
use tests::squid::{self, Squid};
use tests::upstream::{self, RunningUpstream};
use tests::{NetLab, TestCa, addrs};

/// The real credential, bound to api.test.
const SECRET: &str = "sk-corp-4b1d9e7a2c";
/// The corporate proxy's password (never shown anywhere).
const PROXY_PASSWORD: &str = "Sq-pw-8e2f71c3d9";
const USER: &str = "agent";
/// How long Squid may take to write a log line.
const LOG_WAIT: Duration = Duration::from_secs(5);
/// The corporate proxy's address (it dials out from it too).
const CORP: Ipv4Addr = addrs::HOST_C;
/// A second proxy's address.
const TENANT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 13);

struct World {
    lab: NetLab,
    ca: TestCa,
    ca_file: tempfile::TempPath,
    api: RunningUpstream,
    pinned: RunningUpstream,
    echo: tests::upstream::RunningTcp,
}

/// The test network: api.test (HTTPS, echoes) on FAR_HOST, pinned.test (HTTPS, passed
/// through) on HOST_A, a TCP echo on HOST_B:7.
fn world(name: &str) -> World {
    let lab = NetLab::new(name).unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let api = upstream::https(&ca)
        .hostname("api.test")
        .echo()
        .start(&lab, SocketAddr::new(addrs::FAR_HOST.into(), 443))
        .unwrap();
    let pinned = upstream::https(&ca)
        .hostname("pinned.test")
        .route("/", "pinned-ok")
        .start(&lab, SocketAddr::new(addrs::HOST_A.into(), 443))
        .unwrap();
    let echo = upstream::tcp_echo()
        .start(&lab, SocketAddr::new(addrs::HOST_B.into(), 7))
        .unwrap();
    World {
        lab,
        ca,
        ca_file,
        api,
        pinned,
        echo,
    }
}

impl World {
    /// A Squid on `ip`:3128 that dials out from `ip` and resolves the test names; with
    /// basic auth when `auth`.
    fn squid(&self, ip: Ipv4Addr, auth: bool) -> Squid {
        let mut builder = squid::squid()
            .host("api.test", addrs::FAR_HOST.into())
            .host("pinned.test", addrs::HOST_A.into())
            .config_line(&format!("tcp_outgoing_address {ip}"));
        if auth {
            builder = builder.basic_auth(USER, PROXY_PASSWORD);
        }
        builder
            .start(&self.lab, SocketAddr::new(ip.into(), 3128))
            .unwrap()
    }

    /// The daemon, with `proxies` (TOML `[[upstream.proxies]]` tables) and `env`.
    fn sluice(&self, proxies: &str, env: &[(&str, &str)]) -> Sluice {
        let ca_file = self.ca_file.to_path_buf();
        Sluice::start(
            &self.lab,
            &Options {
                extra_toml: format!(
                    "[upstream]\nextra_roots = [{ca_file:?}]\n{proxies}\
                     [policy]\npassthrough = [\"pinned.test\"]\ntcp_allow = [\"198.51.100.11:7\"]\n"
                ),
                dns_hosts: vec![
                    ("api.test".into(), addrs::FAR_HOST.to_string()),
                    ("pinned.test".into(), addrs::HOST_A.to_string()),
                ],
                daemon_env: env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Options::default()
            },
        )
        .unwrap()
    }
}

/// A `[[upstream.proxies]]` table.
fn proxy_toml(id: &str, label: &str, url: &str, default: bool, extra: &str) -> String {
    format!(
        "[[upstream.proxies]]\nid = {id:?}\nlabel = {label:?}\nurl = {url:?}\ndefault = {default}\n{extra}"
    )
}

fn authed_url(squid: &Squid, password: &str) -> String {
    format!("http://{USER}:{password}@{}", squid.addr())
}

/// A session holding `API_KEY` for api.test, plus `args`; returns (id, token).
fn session(sluice: &Sluice, args: &[&str]) -> (String, String) {
    let mut all = vec!["--cred", "API_KEY=env:SECRET@api.test"];
    all.extend_from_slice(args);
    sluice.create_session(&all, &[("SECRET", SECRET)]).unwrap()
}

/// curl in a new sandbox (`flags` for `sluice exec`), trusting the Sluice CA and the test
/// CA; stdout then stderr.
fn curl(sluice: &Sluice, world: &World, flags: &[&str], args: &[&str]) -> String {
    let bundle = sluice
        .public_file(
            "trust.pem",
            &[
                std::fs::read(sluice.state_dir().join("ca.pem")).unwrap(),
                std::fs::read(&world.ca_file).unwrap(),
            ]
            .concat(),
        )
        .unwrap();
    let bundle = bundle.to_string_lossy().into_owned();
    let mut argv = vec![
        "curl",
        "-sS",
        "--max-time",
        "15",
        "--cacert",
        bundle.as_str(),
    ];
    argv.extend_from_slice(args);
    let out = sluice.exec(flags, &argv).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A request to api.test carrying the credential's placeholder.
fn api_call(sluice: &Sluice, world: &World, flags: &[&str]) -> String {
    curl(
        sluice,
        world,
        flags,
        &[
            "-H",
            "Authorization: Bearer sluice_cred:API_KEY",
            "https://api.test/echo",
        ],
    )
}

/// An api.test request that should fail: the body, then the status on the last line.
fn api_status(sluice: &Sluice, world: &World, flags: &[&str]) -> String {
    curl(
        sluice,
        world,
        flags,
        &["-w", "\n%{http_code}", "https://api.test/echo"],
    )
}

/// `sluice ARGS`: (success, stdout then stderr).
fn cli(sluice: &Sluice, args: &[&str]) -> (bool, String) {
    let out = sluice.command().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn log_has(squid: &Squid, needle: &str) -> bool {
    squid.wait_for_log(needle, LOG_WAIT)
}

/// The address the last request to `fake` came from: a proxy's, or the node's (direct).
fn last_peer(fake: &RunningUpstream) -> Option<IpAddr> {
    fake.requests().last().map(|r| r.peer.ip())
}

#[test]
fn intercepted_passthrough_and_relayed_traffic_leave_through_squid() {
    let w = world("egr1");
    let corp = w.squid(CORP, true);
    let sluice = w.sluice(
        &proxy_toml(
            "corp",
            "Corp Squid",
            &authed_url(&corp, PROXY_PASSWORD),
            true,
            "no_proxy = [\"direct.test\"]\n",
        ),
        &[],
    );
    let (id, token) = session(&sluice, &[]);
    let plain_web = upstream::http()
        .echo()
        .start(&w.lab, SocketAddr::new(addrs::FAR_HOST.into(), 80))
        .unwrap();

    // A name under no_proxy counts only where it resolves: a sandbox that names it toward
    // an address of its choosing still goes through the proxy.
    let out = curl(
        &sluice,
        &w,
        &["--session", &id],
        &["-H", "Host: direct.test", "http://203.0.113.10/leak"],
    );
    assert!(out.contains("\"method\""), "{out}");
    assert_eq!(last_peer(&plain_web), Some(CORP.into()), "not direct");

    // Intercepted, with the credential swapped in on the way out.
    let out = api_call(&sluice, &w, &["--session", &id]);
    assert!(out.contains("\"method\""), "{out}");
    let got = w.api.requests();
    let last = got.last().unwrap();
    assert_eq!(
        last.headers["authorization"],
        format!("Bearer {SECRET}"),
        "credential injected"
    );
    assert_eq!(last.peer.ip(), IpAddr::from(CORP), "through the proxy");

    // Passthrough: the real certificate, through a tunnel named by the SNI.
    let out = curl(&sluice, &w, &["--session", &id], &["https://pinned.test/"]);
    assert_eq!(out, "pinned-ok");
    assert_eq!(last_peer(&w.pinned), Some(CORP.into()));
    assert!(
        log_has(&corp, &format!("CONNECT pinned.test:443 {USER}")),
        "the tunnel named the SNI and authenticated: {:?}",
        corp.access_log()
    );

    // tcp_allow relay: no name, so the tunnel names the address.
    let script = "import socket; s = socket.create_connection(('198.51.100.11', 7), 5); \
                  s.sendall(b'ping-through-squid'); print(s.recv(100).decode())";
    let out = sluice
        .exec(&["--session", &id], &["python3", "-c", script])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ping-through-squid",
        "{out:?}"
    );
    assert!(
        log_has(&corp, "CONNECT 198.51.100.11:7"),
        "{:?}",
        corp.access_log()
    );
    let peers: Vec<_> = w.echo.connections().iter().map(|c| c.peer.ip()).collect();
    assert_eq!(peers, vec![IpAddr::from(CORP)], "through the proxy only");

    // A name paired with an address it does not resolve to: the tunnel names the checked
    // address, never the name (the proxy would resolve the name somewhere else).
    let _ = curl(
        &sluice,
        &w,
        &["--session", &id],
        &[
            "--resolve",
            "internal.test:443:203.0.113.10",
            "https://internal.test/",
        ],
    );
    assert!(
        log_has(&corp, "CONNECT 203.0.113.10:443"),
        "{:?}",
        corp.access_log()
    );
    assert!(
        !corp
            .access_log()
            .iter()
            .any(|l| l.contains("internal.test")),
        "{:?}",
        corp.access_log()
    );

    // The explicit proxy takes the same path.
    let seen = w.api.requests().len();
    let out = sluice
        .node_command("curl")
        .args(["-sS", "--max-time", "15", "--cacert"])
        .arg(sluice.state_dir().join("ca.pem"))
        .args(["-x", &format!("http://sluice:{token}@127.0.0.1:3128")])
        .args(["-H", "Authorization: Bearer sluice_cred:API_KEY"])
        .arg("https://api.test/echo")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let got = w.api.requests();
    assert_eq!(got.len(), seen + 1);
    assert_eq!(got[seen].peer.ip(), IpAddr::from(CORP));
    assert_eq!(
        got[seen].headers["authorization"],
        format!("Bearer {SECRET}")
    );
    // ... and so do a passthrough tunnel and a tcp_allow relay asked of the explicit proxy.
    let out = sluice
        .node_command("curl")
        .args(["-sS", "--max-time", "15", "--cacert"])
        .arg(&*w.ca_file)
        .args(["-x", &format!("http://sluice:{token}@127.0.0.1:3128")])
        .arg("https://pinned.test/")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pinned-ok", "{out:?}");
    assert_eq!(w.pinned.requests().len(), 2);
    assert_eq!(last_peer(&w.pinned), Some(CORP.into()));
    let tunnel = format!(
        "import base64, socket; s = socket.create_connection(('127.0.0.1', 3128), 5); \
         auth = base64.b64encode(b'sluice:{token}').decode(); \
         s.sendall(('CONNECT 198.51.100.11:7 HTTP/1.1\\r\\nHost: 198.51.100.11:7\\r\\n' \
         'Proxy-Authorization: Basic ' + auth + '\\r\\n\\r\\n').encode()); \
         head = s.recv(200); s.sendall(b'explicit-relay'); \
         print(head.split(b' ')[1].decode(), s.recv(100).decode())"
    );
    let out = sluice
        .node_command("python3")
        .args(["-c", &tunnel])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "200 explicit-relay",
        "{out:?}"
    );
    let peers: Vec<_> = w.echo.connections().iter().map(|c| c.peer.ip()).collect();
    assert_eq!(peers, vec![IpAddr::from(CORP); 2], "through the proxy only");

    // Audit records name the path.
    let request = sluice
        .wait_audit(|r| r["kind"] == "request" && r["host"] == "api.test")
        .unwrap();
    eprintln!("request record: {request}");
    assert_eq!(request["proxy"], "Corp Squid", "{request}");
    let relay = sluice
        .wait_audit(|r| r["mode"] == "relay" && r["destination"] == "198.51.100.11:7")
        .unwrap();
    assert_eq!(relay["proxy"], "Corp Squid", "{relay}");
    let pass = sluice
        .wait_audit(|r| r["mode"] == "passthrough" && r["host"] == "pinned.test")
        .unwrap();
    assert_eq!(pass["proxy"], "Corp Squid", "{pass}");

    assert_password_nowhere(&sluice, &[&id]);
}

/// The password is in no log, audit record, API answer or CLI output.
fn assert_password_nowhere(sluice: &Sluice, sessions: &[&str]) {
    let mut seen = vec![
        ("daemon log", sluice.log(1)),
        (
            "audit",
            sluice
                .audit()
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ];
    let cli = |args: &[&str]| cli(sluice, args).1;
    seen.push(("audit API", cli(&["audit", "--json", "--limit", "500"])));
    seen.push(("proxy list", cli(&["proxy", "list"])));
    seen.push(("proxy list --json", cli(&["proxy", "list", "--json"])));
    seen.push(("session list", cli(&["session", "list", "--json"])));
    for id in sessions {
        seen.push(("session show", cli(&["session", "show", id, "--json"])));
    }
    seen.push(("sandboxes", cli(&["sandboxes"])));
    for (what, text) in seen {
        assert!(
            !text.contains(PROXY_PASSWORD),
            "{what} shows the proxy password: {text}"
        );
    }
    let listed = cli(&["proxy", "list", "--json"]);
    if listed.contains("@") {
        assert!(listed.contains(":***@"), "masked: {listed}");
    }
}

#[test]
fn each_level_of_the_cascade_overrides_the_one_below_and_none_goes_direct() {
    let w = world("egr2");
    let corp = w.squid(CORP, false);
    let tenant = w.squid(TENANT, false);
    let proxies = proxy_toml("corp", "Corp", &corp.url(), true, "")
        + &proxy_toml("tenant", "Tenant", &tenant.url(), false, "");
    let sluice = w.sluice(&proxies, &[]);
    let (plain, _) = session(&sluice, &[]);
    let (via_tenant, _) = session(&sluice, &["--upstream-proxy", "tenant"]);
    let (direct, _) = session(&sluice, &["--upstream-proxy", "none"]);
    let tenant_url = tenant.url();
    let (by_url, _) = session(&sluice, &["--upstream-proxy", &tenant_url]);

    // (sandbox flags, the address the request must arrive from).
    let node = addrs::NODE_V4;
    let cases: Vec<(Vec<&str>, Ipv4Addr)> = vec![
        (vec!["--session", &plain], CORP),
        (vec!["--session", &via_tenant], TENANT),
        (vec!["--session", &by_url], TENANT),
        (vec!["--session", &direct], node),
        (
            vec!["--session", &via_tenant, "--upstream-proxy", "corp"],
            CORP,
        ),
        (
            vec!["--session", &via_tenant, "--upstream-proxy", "none"],
            node,
        ),
        (
            vec!["--session", &direct, "--upstream-proxy", "tenant"],
            TENANT,
        ),
        (vec![], CORP),
    ];
    for (flags, want) in cases {
        let out = api_call(&sluice, &w, &flags);
        assert!(out.contains("\"method\""), "{flags:?}: {out}");
        assert_eq!(last_peer(&w.api), Some(want.into()), "{flags:?}");
    }

    // The sandbox's own environment picks nothing: with HTTPS_PROXY (and Sluice's own
    // variable names) pointing at the tenant proxy, whatever Sluice makes of the captured
    // connection, the tenant proxy never hears from the node directly.
    let ca = sluice
        .state_dir()
        .join("ca.pem")
        .to_string_lossy()
        .into_owned();
    let https_proxy = format!("HTTPS_PROXY={tenant_url}");
    let sluice_proxy = format!("SLUICE_PROXY_URL={tenant_url}");
    let proxy_url = format!("PROXY_URL={tenant_url}");
    let _ = sluice
        .exec(
            &["--session", &plain],
            &[
                "env",
                &https_proxy,
                &sluice_proxy,
                &proxy_url,
                "curl",
                "-sS",
                "--max-time",
                "15",
                "--cacert",
                &ca,
                "https://api.test/echo",
            ],
        )
        .output()
        .unwrap();
    let from_node = format!(" {node} ");
    assert!(
        !tenant.access_log().iter().any(|l| l.contains(&from_node)),
        "the node never reached the sandbox's chosen proxy directly: {:?}",
        tenant.access_log()
    );
    // Nor may a sandbox speak to a proxy itself (it would borrow the node's standing there).
    let out = curl(
        &sluice,
        &w,
        &["--session", &plain],
        &["-w", "\n%{http_code}", "http://198.51.100.12:3128/"],
    );
    assert!(
        out.ends_with("403") && out.contains("upstream proxy of this node"),
        "{out}"
    );
    let reached = |l: &String| l.contains("198.51.100.12:3128") || l.contains(&from_node);
    assert!(
        !corp.access_log().iter().any(reached),
        "{:?}",
        corp.access_log()
    );

    // An unknown id is refused where it is given.
    let refused = sluice
        .command()
        .args(["session", "create", "--upstream-proxy", "nosuch"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("nosuch") && said.contains("corp"),
        "{said}"
    );
    let refused = sluice
        .exec(
            &["--upstream-proxy", "http://u:p@198.51.100.12:3128"],
            &["true"],
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("not a URL"),
        "{said}"
    );
}

#[test]
fn the_daemons_environment_names_the_proxy_below_the_node_file() {
    let w = world("egr3");
    let envy = w.squid(CORP, false);
    let sluice = w.sluice("", &[("SLUICE_PROXY_URL", &envy.url())]);
    let (plain, _) = session(&sluice, &[]);
    let out = api_call(&sluice, &w, &["--session", &plain]);
    assert!(out.contains("\"method\""), "{out}");
    assert_eq!(last_peer(&w.api), Some(CORP.into()));
    let (direct, _) = session(&sluice, &["--upstream-proxy", "none"]);
    let out = api_call(&sluice, &w, &["--session", &direct]);
    assert!(out.contains("\"method\""), "{out}");
    assert_eq!(last_peer(&w.api), Some(addrs::NODE_V4.into()));
    let listed = String::from_utf8_lossy(
        &sluice
            .command()
            .args(["proxy", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        listed.contains("env") && listed.contains(&envy.url()),
        "{listed}"
    );
}

#[test]
fn a_down_or_refusing_proxy_gives_a_502_naming_it_and_nothing_goes_direct() {
    let w = world("egr4");
    let mut corp = w.squid(CORP, true);
    let proxies = proxy_toml(
        "corp",
        "Corp Squid",
        &authed_url(&corp, PROXY_PASSWORD),
        true,
        "no_proxy = [\"pinned.test:443\"]\n",
    ) + &proxy_toml(
        "wrong",
        "Wrong Password",
        &authed_url(&corp, "not-the-password"),
        false,
        "",
    );
    let sluice = w.sluice(&proxies, &[]);
    let (plain, _) = session(&sluice, &[]);

    // Wrong password: Squid answers 407; the sandbox gets a 502 saying so.
    let out = api_status(
        &sluice,
        &w,
        &["--session", &plain, "--upstream-proxy", "wrong"],
    );
    assert!(out.ends_with("502"), "{out}");
    assert!(
        out.contains("Wrong Password") && out.contains("407"),
        "{out}"
    );
    eprintln!("wrong password answer: {out}");
    assert!(w.api.requests().is_empty(), "nothing reached the host");

    // The same through a session's own URL, given from the environment (out of `ps`): its
    // label names the proxy's address, never its user.
    let wrong_url = authed_url(&corp, "also-wrong");
    let (by_url, _) = sluice
        .create_session(
            &["--upstream-proxy", "env:SESSION_PROXY"],
            &[("SESSION_PROXY", wrong_url.as_str())],
        )
        .unwrap();
    let out = api_status(&sluice, &w, &["--session", &by_url]);
    assert!(out.ends_with("502"), "{out}");
    assert!(
        out.contains("http://198.51.100.12:3128") && out.contains("407"),
        "{out}"
    );
    assert!(!out.contains(USER) && !out.contains("also-wrong"), "{out}");
    assert!(w.api.requests().is_empty(), "nothing reached the host");

    // no_proxy: pinned.test goes direct even with the proxy as default.
    let out = curl(
        &sluice,
        &w,
        &["--session", &plain],
        &["https://pinned.test/"],
    );
    assert_eq!(out, "pinned-ok");
    assert_eq!(last_peer(&w.pinned), Some(addrs::NODE_V4.into()));

    // Squid stopped: 502 naming it, and the host hears nothing.
    corp.stop();
    let out = api_status(&sluice, &w, &["--session", &plain]);
    assert!(out.ends_with("502"), "{out}");
    assert!(
        out.contains("Corp Squid") && out.contains("refused"),
        "{out}"
    );
    eprintln!("down proxy answer: {out}");
    assert!(w.api.requests().is_empty(), "nothing went direct");
    let record = sluice
        .wait_audit(|r| r["kind"] == "request" && r["status"] == 502 && r["proxy"] == "Corp Squid")
        .unwrap_or_else(|| panic!("no 502 audited: {:?}", sluice.audit()));
    assert!(
        record["reason"].as_str().unwrap().contains("Corp Squid"),
        "{record}"
    );
    // A relay through the down proxy fails closed too.
    let script = "import socket; s = socket.create_connection(('198.51.100.11', 7), 5); \
                  s.sendall(b'x'); print(repr(s.recv(10)))";
    let _ = sluice
        .exec(&["--session", &plain], &["python3", "-c", script])
        .output();
    assert!(w.echo.connections().is_empty(), "nothing direct");

    // `sluice proxy test` says what a proxy answers.
    let (ok, said) = cli(
        &sluice,
        &["proxy", "test", "corp", "--target", "api.test:443"],
    );
    assert!(!ok && said.contains("refused"), "{said}");
    assert_password_nowhere(&sluice, &[&plain]);
}

#[test]
fn a_proxy_test_reports_success_and_is_rate_limited() {
    let w = world("egr5");
    let corp = w.squid(CORP, true);
    let sluice = w.sluice(
        &proxy_toml(
            "corp",
            "Corp Squid",
            &authed_url(&corp, PROXY_PASSWORD),
            false,
            "",
        ),
        &[],
    );
    let run = || {
        cli(
            &sluice,
            &["proxy", "test", "corp", "--target", "api.test:443"],
        )
    };
    let (ok, said) = run();
    assert!(
        ok && said.contains("ok") && said.contains("Corp Squid"),
        "{said}"
    );
    eprintln!("sluice proxy test: {said}");
    assert!(log_has(&corp, "CONNECT api.test:443"));
    for _ in 0..4 {
        let _ = run();
    }
    let (ok, said) = run();
    assert!(!ok && said.contains("5 tests a minute"), "{said}");
    // Through the API: listed masked; read-only, said so.
    let token = std::fs::read_to_string(sluice.state_dir().join("admin.token")).unwrap();
    let api = |method: &str, path: &str| {
        let out = sluice
            .node_command("curl")
            .args(["-sS", "-X", method, "-w", "\n%{http_code}"])
            .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
            .arg(format!("http://127.0.0.1:3000{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = api("GET", "/v1/proxies");
    assert!(
        listed.ends_with("200")
            && listed.contains("\"Corp Squid\"")
            && listed.contains(&format!("http://{USER}:***@{}", corp.addr()))
            && !listed.contains(PROXY_PASSWORD),
        "{listed}"
    );
    for (method, path) in [
        ("DELETE", "/v1/proxies/corp"),
        ("PUT", "/v1/proxies/corp/default"),
    ] {
        let said = api(method, path);
        assert!(
            said.ends_with("405") && said.contains("[[upstream.proxies]]"),
            "{said}"
        );
    }
    let said = api("POST", "/v1/proxies/nosuch/test");
    assert!(said.ends_with("404") && said.contains("nosuch"), "{said}");
    // Not a default: a session without a choice goes direct.
    let (plain, _) = session(&sluice, &[]);
    let out = api_call(&sluice, &w, &["--session", &plain]);
    assert!(out.contains("\"method\""), "{out}");
    assert_eq!(last_peer(&w.api), Some(addrs::NODE_V4.into()));
}

#[test]
fn an_https_proxy_is_reached_over_verified_tls() {
    let w = world("egr6");
    let secure = squid::squid()
        .host("api.test", addrs::FAR_HOST.into())
        .config_line(&format!("tcp_outgoing_address {CORP}"))
        .https(&w.ca, &["198.51.100.12"])
        .start(&w.lab, SocketAddr::new(CORP.into(), 3130))
        .unwrap();
    let sluice = w.sluice(
        &proxy_toml("tls", "TLS Squid", &secure.url(), true, ""),
        &[],
    );
    let (plain, _) = session(&sluice, &[]);
    let out = api_call(&sluice, &w, &["--session", &plain]);
    assert!(out.contains("\"method\""), "{out}");
    assert_eq!(last_peer(&w.api), Some(CORP.into()));
    assert!(secure.url().starts_with("https://"));
}

/// A request to api.test through `node`'s explicit proxy (at `proxy`) under session
/// `token`: the final status, or the proxy's answer to CONNECT when there was none.
fn via_explicit(node: &Sluice, proxy: &str, token: &str) -> String {
    node.via_explicit_proxy(proxy, token, "https://api.test/explicit")
}

/// Python: two requests to api.test over one connection through node B's explicit proxy
/// (argv: CA file, session token), printing the status and local port after each, waiting
/// for a line on stdin between them; it fails rather than reconnect.
const HELD_CONNECTION: &str = r#"
import base64, http.client, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
auth = base64.b64encode(("sluice:" + sys.argv[2]).encode()).decode()
c = http.client.HTTPSConnection("127.0.0.1", 3129, context=ctx, timeout=15)
c.set_tunnel("api.test", 443, headers={"Proxy-Authorization": "Basic " + auth})
for n in range(2):
    c.request("GET", "/held")
    r = c.getresponse()
    r.read()
    c.auto_open = 0
    print(r.status, c.sock.getsockname()[1], flush=True)
    sys.stdin.readline()
"#;

/// Waits (bounded) until `node` lists proxy `id` as its default (`true`) or not.
fn wait_default(node: &Sluice, id: &str, default: bool) {
    let guard = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let listed: Value =
            serde_json::from_str(&cli(node, &["proxy", "list", "--json"]).1).unwrap_or(Value::Null);
        let is_default = listed.as_array().is_some_and(|all| {
            all.iter()
                .any(|p| p["id"] == id && p["default"] == true && p["problem"].is_null())
        });
        if is_default == default {
            return;
        }
        assert!(
            std::time::Instant::now() < guard,
            "{id} default={default} never reached the other node: {listed}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_proxy_created_through_the_api_reaches_every_node_sharing_redis() {
    let w = world("egr7");
    let corp = w.squid(CORP, false);
    let tenant = w.squid(TENANT, true);
    let redis = RedisServer::start().unwrap();
    let file = proxy_toml("corp", "Corp Squid", &corp.url(), true, "");
    let a = w.sluice(
        &format!(
            "{file}{}",
            shared_store_toml(redis.dir(), &redis.url()).unwrap()
        ),
        &[],
    );
    let b = w.sluice(
        &format!(
            "{file}{}{SECOND_NODE_LISTEN}",
            shared_store_toml(redis.dir(), &redis.url()).unwrap()
        ),
        &[],
    );
    let b_proxy = "http://127.0.0.1:3129";
    let (_, token) = session(&a, &[]);
    assert_eq!(via_explicit(&b, b_proxy, &token), "200");
    assert_eq!(last_peer(&w.api), Some(CORP.into()), "the file's default");

    // A client that keeps its connection open across the change (one TLS session through
    // node B's explicit proxy, two requests, no reconnect): its second request takes the
    // new path.
    let mut keeper = b
        .node_command("python3")
        .args(["-c", HELD_CONNECTION])
        .arg(b.state_dir().join("ca.pem"))
        .arg(&token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut keeper_out = std::io::BufReader::new(keeper.stdout.take().unwrap());
    let mut keeper_in = keeper.stdin.take().unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut keeper_out, &mut first).unwrap();
    assert!(first.starts_with("200 "), "{first}");
    assert_eq!(last_peer(&w.api), Some(CORP.into()));

    // Node A creates a proxy (password from the environment, never in argv) and makes it
    // the default; node B, told through Redis, sends its traffic through it.
    let url = authed_url(&tenant, PROXY_PASSWORD);
    let out = a
        .command()
        .args([
            "proxy",
            "add",
            "tenant",
            "env:TENANT_PROXY",
            "--label",
            "Tenant NAT",
        ])
        .arg("--default")
        .env("TENANT_PROXY", &url)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("default") && said.contains(":***@"), "{said}");
    eprintln!("sluice proxy add: {said}");
    wait_default(&b, "tenant", true);
    std::io::Write::write_all(&mut keeper_in, b"next\n").unwrap();
    let mut second = String::new();
    std::io::BufRead::read_line(&mut keeper_out, &mut second).unwrap();
    assert_eq!(second, first, "same status, same connection (no reconnect)");
    assert_eq!(
        last_peer(&w.api),
        Some(TENANT.into()),
        "a connection held open takes the new default at its next request"
    );
    drop(keeper_in);
    let _ = keeper.wait();
    assert_eq!(via_explicit(&b, b_proxy, &token), "200");
    assert_eq!(
        last_peer(&w.api),
        Some(TENANT.into()),
        "the API's default wins"
    );
    // The audit stream is in Redis: read through node B's API.
    let guard = std::time::Instant::now() + Duration::from_secs(20);
    let record = loop {
        let listed = cli(
            &b,
            &["audit", "--kind", "request", "--json", "--limit", "100"],
        )
        .1;
        let found = listed
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["proxy"] == "Tenant NAT" && r["host"] == "api.test");
        if let Some(record) = found {
            break record;
        }
        assert!(
            std::time::Instant::now() < guard,
            "no record through Tenant NAT: {listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("audit on node B: {record}");

    // A taken id, a file proxy, the default: refused, each saying why.
    let (ok, said) = cli(&a, &["proxy", "add", "tenant", "http://other.test:1"]);
    assert!(!ok && said.contains("--replace"), "{said}");
    let (ok, said) = cli(&a, &["proxy", "add", "corp", "http://other.test:1"]);
    assert!(!ok && said.contains("[[upstream.proxies]]"), "{said}");
    let (ok, said) = cli(&b, &["proxy", "remove", "tenant"]);
    assert!(!ok && said.contains("default --unset"), "{said}");
    eprintln!("sluice proxy remove tenant: {said}");
    let (ok, said) = cli(&a, &["proxy", "add", "bad", "socks5://u:pw@x:1"]);
    assert!(
        !ok && said.contains("http://") && !said.contains("pw@"),
        "{said}"
    );

    // Unset on node B: node A falls back to the file's default.
    let (ok, said) = cli(&b, &["proxy", "default", "--unset", "tenant"]);
    assert!(ok, "{said}");
    wait_default(&a, "tenant", false);
    let (_, token_a) = session(&a, &[]);
    assert_eq!(via_explicit(&a, "http://127.0.0.1:3128", &token_a), "200");
    assert_eq!(last_peer(&w.api), Some(CORP.into()));

    // A session may name it by id on any node.
    let (_, named) = session(&a, &["--upstream-proxy", "tenant"]);
    assert_eq!(via_explicit(&b, b_proxy, &named), "200");
    assert_eq!(last_peer(&w.api), Some(TENANT.into()));

    // Nowhere in Redis, logs, audit, API answers or CLI output.
    let snapshot = redis.snapshot().unwrap();
    assert!(
        !String::from_utf8_lossy(&snapshot).contains(PROXY_PASSWORD),
        "the Redis keyspace holds the password"
    );
    assert_password_nowhere(&a, &[]);
    assert_password_nowhere(&b, &[]);

    // Removed: a session that names it is refused, never sent direct.
    let (ok, said) = cli(&a, &["proxy", "remove", "tenant"]);
    assert!(ok, "{said}");
    let served = w.api.requests().len();
    let guard = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let status = via_explicit(&b, b_proxy, &named);
        if status != "200" {
            assert_eq!(status, "502", "refused with a reason");
            break;
        }
        assert!(
            std::time::Instant::now() < guard,
            "node B still uses a removed proxy"
        );
        assert_eq!(last_peer(&w.api), Some(TENANT.into()), "never direct");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = &w.api.requests()[served..];
    assert!(
        sent.iter().all(|r| r.peer.ip() == IpAddr::from(TENANT)),
        "nothing went direct or elsewhere while it was removed"
    );
}
