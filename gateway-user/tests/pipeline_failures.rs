//! Failures of the assembled data path answered readably, in-process without root: an
//! upstream that refuses, never answers, or shows a certificate that does not verify;
//! request-smuggling attempts; requests for another host than the SNI; bad first bytes.
//! Each as the client reads it, as the upstream (never) sees it, and as the audit records it.

#[cfg(test)]
#[path = "pipeline/support.rs"]
#[allow(
    dead_code,
    reason = "shared with pipeline.rs; each test binary uses part of it"
)]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::upstream::{Impostor, Upstreams, refusing_upstream, silent_upstream};
use support::{Gateway, Reply, Setup, exchange, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET {scheme}://api.test/` through the gateway toward `dest`: over TLS (SNI `api.test`,
/// HTTP/2 when `h2`) or, for `http`, plain HTTP/1.1.
async fn get(gw: &Gateway, dest: SocketAddr, scheme: &str, h2: bool) -> Reply {
    let sni = (scheme == "https").then_some("api.test");
    let get = request("GET", &format!("{scheme}://api.test/"), "api.test", &[], "");
    gw.client(dest, sni, h2).await.send(get).await
}

/// Asserts each request record failed on the upstream's side with `status`.
fn assert_upstream_failures(records: &[serde_json::Value], status: u16) {
    for record in records {
        assert_eq!(record["decision"], "error", "{record}");
        assert_eq!(record["status"], status, "{record}");
        assert_eq!(record["side"], "upstream", "{record}");
        assert!(
            record["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{record}"
        );
    }
}

const CASES: [(&str, bool); 3] = [("http", false), ("https", false), ("https", true)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upstream_is_a_502_naming_the_upstream() {
    let up = Upstreams::start().await;
    let (refusing, _held) = refusing_upstream();
    let gw = Gateway::start(Setup::default(), &up).await;
    for (scheme, h2) in CASES {
        let reply = get(&gw, refusing, scheme, h2).await;
        assert_eq!(reply.status, 502, "{scheme} h2={h2}: {reply:?}");
        let said = format!("upstream: connection to {refusing} refused");
        assert!(reply.body.contains(&said), "{scheme} h2={h2}: {reply:?}");
    }
    assert_upstream_failures(&gw.records("request", 3), 502);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_is_a_504_once_the_configured_limit_passes() {
    let up = Upstreams::start().await;
    let silent = silent_upstream().await;
    // One limit per gateway, so that only the limit under test can pass.
    let waiting = Setup {
        response_timeout: Duration::from_millis(300),
        ..Setup::default()
    };
    let gw = Gateway::start(waiting, &up).await;
    // Plain HTTP: the request went out, no response head came back.
    let reply = get(&gw, silent, "http", false).await;
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(
        reply.body.contains("upstream: no response within 300ms"),
        "{reply:?}"
    );
    assert_upstream_failures(&gw.records("request", 1), 504);
    gw.stop().await;
    // TLS: the upstream accepted the connection but never finished the handshake.
    let handshaking = Setup {
        tls_handshake_timeout: Duration::from_millis(300),
        ..Setup::default()
    };
    let gw = Gateway::start(handshaking, &up).await;
    for h2 in [false, true] {
        let reply = get(&gw, silent, "https", h2).await;
        assert_eq!(reply.status, 504, "h2={h2}: {reply:?}");
        let said = format!("upstream: TLS handshake with api.test at {silent} timed out");
        assert!(reply.body.contains(&said), "h2={h2}: {reply:?}");
    }
    assert_upstream_failures(&gw.records("request", 2), 504);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_certificate_that_does_not_verify_is_a_502_naming_it() {
    let up = Upstreams::start().await;
    let wrong_name = up.impostor(Impostor::WrongName).await;
    let unknown_issuer = up.impostor(Impostor::UnknownIssuer).await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let cases = [
        (wrong_name, false, "not valid for name \"api.test\""),
        (wrong_name, true, "not valid for name \"api.test\""),
        (unknown_issuer, false, "UnknownIssuer"),
        (unknown_issuer, true, "UnknownIssuer"),
    ];
    for (dest, h2, verdict) in cases {
        let reply = get(&gw, dest, "https", h2).await;
        assert_eq!(reply.status, 502, "{verdict} h2={h2}: {reply:?}");
        let said = "upstream certificate for api.test is not valid";
        assert!(reply.body.contains(said), "{verdict} h2={h2}: {reply:?}");
        assert!(reply.body.contains(verdict), "{verdict} h2={h2}: {reply:?}");
    }
    assert_upstream_failures(&gw.records("request", 4), 502);
    assert_eq!(
        up.heads(),
        Vec::<String>::new(),
        "nothing was sent to an impostor"
    );
    gw.stop().await;
}

/// Raw HTTP/1.1 requests whose framing an upstream could read otherwise than the gateway,
/// each marking its attempt with a path starting `/smuggled`, and whether plain HTTP
/// refuses it already at detection (a first head `httparse` rejects is refused there,
/// closed unanswered, rather than handed on).
const SMUGGLING: [(&str, &str, bool); 9] = [
    (
        "CL then TE",
        "POST /smuggled-1 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        false,
    ),
    (
        "TE then CL",
        "POST /smuggled-2 HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\
         Content-Length: 5\r\n\r\n0\r\n\r\n",
        false,
    ),
    (
        "conflicting CL",
        "POST /smuggled-3 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\
         Content-Length: 6\r\n\r\nhello!",
        false,
    ),
    (
        "CL list that disagrees",
        "POST /smuggled-4 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5, 6\r\n\r\nhello!",
        false,
    ),
    (
        "second request smuggled after a clean one",
        "GET /clean HTTP/1.1\r\nHost: api.test\r\n\r\n\
         POST /smuggled-5 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        false,
    ),
    (
        "a GET hidden in a CL and TE body",
        "POST /smuggled-6 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled-7 HTTP/1.1\r\nHost: x\r\n\r\n",
        false,
    ),
    (
        "obs-fold",
        "POST /smuggled-8 HTTP/1.1\r\nHost: api.test\r\nX-Folded: a\r\n b\r\n\
         Content-Length: 5\r\n\r\nhello",
        true,
    ),
    (
        "space before the colon",
        "POST /smuggled-9 HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding : chunked\r\n\
         Content-Length: 5\r\n\r\nhello",
        true,
    ),
    (
        "TE not ending in chunked",
        "POST /smuggled-10 HTTP/1.1\r\nHost: api.test\r\n\
         Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        false,
    ),
];

/// Sends `raw` to api.test on a fresh connection over TLS (HTTP/1.1) and one over plain
/// HTTP; the answers, each read until the gateway closed that connection.
async fn over_tls_and_plain(
    gw: &Gateway,
    up: &Upstreams,
    raw: &[u8],
) -> std::io::Result<[(&'static str, String); 2]> {
    let tls = gw.connect_tls(up.https, "api.test", &[b"http/1.1"]).await?;
    let plain = gw.connect(up.http).await;
    Ok([
        ("TLS", exchange(tls, raw).await),
        ("plain", exchange(plain, raw).await),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_get_400_and_a_closed_connection_and_never_reach_the_upstream() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    for (name, raw, refused_on_plain) in SMUGGLING {
        for (over, answer) in over_tls_and_plain(&gw, &up, raw.as_bytes()).await.unwrap() {
            // `exchange` returned: the gateway closed the connection after its answer.
            if over == "plain" && refused_on_plain {
                assert_eq!(answer, "", "{name} over {over}: refused unanswered");
            } else {
                let last = answer.rsplit("HTTP/1.1 ").next().unwrap_or_default();
                assert!(last.starts_with("400 "), "{name} over {over}: {answer}");
            }
        }
    }
    assert_eq!(
        up.heads(),
        ["GET /clean", "GET /clean"],
        "only the clean request"
    );
    // Each attempt is audited as the sandbox's doing: as a refused request (the gateway's
    // own checks) or as its connection's error or refusal (hyper's and detection's).
    let connections = gw.records("connection", 2 * SMUGGLING.len());
    let requests = gw.records("request", 0);
    for connection in &connections {
        let refused = requests.iter().any(|r| {
            r["conn"] == connection["conn"] && r["status"] == 400 && r["side"] == "downstream"
        });
        let failed = connection["side"] == "downstream" && connection["decision"] != "allow";
        assert!(refused || failed, "{connection}: {requests:?}");
    }
    gw.stop().await;
}

/// A kept-alive connection idle between requests (ten times the delay after which the
/// gateway parks it and frees its HTTP state; parking itself is tested in the engine's own
/// tests) goes on serving the same connection, and its framing check still sees every
/// byte: a smuggling attempt after the pauses is refused as on a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_idle_between_requests_keeps_serving_and_checking_framing() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let mut tls = gw
        .connect_tls(up.https, "api.test", &[b"http/1.1"])
        .await
        .unwrap();
    for path in ["/clean", "/clean-again"] {
        let head = format!("GET {path} HTTP/1.1\r\nHost: api.test\r\n\r\n");
        tls.write_all(head.as_bytes()).await.unwrap();
        let answer = read_response(&mut tls).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(
            answer.ends_with(&format!("GET api.test {path} 0 HTTP/1.1")),
            "{answer}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (name, smuggling, _) = SMUGGLING[5];
    let answer = exchange(tls, smuggling.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{name}: {answer}");
    assert_eq!(up.heads(), ["GET /clean", "GET /clean-again"]);
    let requests = gw.records("request", 3);
    let numbers: Vec<_> = requests.iter().map(|r| r["request"].clone()).collect();
    assert_eq!(numbers, [1, 2, 3], "one connection: {requests:?}");
    assert!(requests.iter().all(|r| r["conn"] == requests[0]["conn"]));
    assert_eq!(requests[2]["status"], 400, "{requests:?}");
    gw.stop().await;
}

/// A request asking to switch protocols that is not switched leaves no HTTP connection
/// behind: hyper would keep the connection ready to hand over and the framing check stops
/// following it after such a request, so the gateway closes it after the answer — a refusal
/// (421 here) or an upstream's answer to the request without its `Upgrade` — and a request
/// pipelined behind it is never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_closes_its_connection_and_nothing_behind_it_is_sent() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let behind = "GET /behind HTTP/1.1\r\nHost: api.test\r\n\r\n";
    let cases = [
        ("other.test", "websocket", "421"),
        ("api.test", "h2c", "200"),
    ];
    for (host, protocol, status) in cases {
        let raw = format!(
            "GET /up HTTP/1.1\r\nHost: {host}\r\nUpgrade: {protocol}\r\n\
             Connection: upgrade\r\n\r\n{behind}"
        );
        let tls = gw
            .connect_tls(up.https, "api.test", &[b"http/1.1"])
            .await
            .unwrap();
        // `exchange` returned: the gateway closed the connection after one answer.
        let answer = exchange(tls, raw.as_bytes()).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    assert_eq!(
        up.heads(),
        ["GET /up"],
        "only the forwarded request went up"
    );
    gw.stop().await;
}

/// Reads one response framed by Content-Length from `io`: its head and body as text.
async fn read_response<IO>(io: &mut IO) -> std::io::Result<String>
where
    IO: tokio::io::AsyncRead + Unpin,
{
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Ok(String::from_utf8_lossy(&got).into_owned());
            }
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&chunk[..n]);
    }
}

/// A request target that is not a path (`OPTIONS *`) would be appended to the authority
/// (`https://api.test*`) and name another host than the one checked: refused, never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_not_a_path_is_400_and_never_sent() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let raw = b"OPTIONS * HTTP/1.1\r\nHost: api.test\r\n\r\n";
    for (over, answer) in over_tls_and_plain(&gw, &up, raw).await.unwrap() {
        assert!(answer.starts_with("HTTP/1.1 400 "), "{over}: {answer}");
        assert!(answer.contains("not an absolute path"), "{over}: {answer}");
    }
    assert!(up.heads().is_empty(), "sent upstream: {:?}", up.heads());
    gw.stop().await;
}

/// A chunked body whose chunk size is not a number is the sandbox's error, like any other
/// framing it breaks: 400 on the sandbox's side, and nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_chunk_size_is_400_on_the_sandboxs_side_and_never_sent() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let raw = "POST /smuggled-bad-chunk HTTP/1.1\r\nHost: api.test\r\n\
               Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    for (over, answer) in over_tls_and_plain(&gw, &up, raw.as_bytes()).await.unwrap() {
        assert!(answer.starts_with("HTTP/1.1 400 "), "{over}: {answer}");
    }
    assert_eq!(up.heads(), Vec::<String>::new(), "nothing went up");
    let requests = gw.records("request", 2);
    for record in &requests {
        assert_eq!(record["status"], 400, "{record}");
        assert_eq!(record["side"], "downstream", "{record}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_host_than_the_sni_is_421_and_the_same_host_spelled_otherwise_is_served() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    for h2 in [false, true] {
        let mut client = gw.client(up.https, Some("api.test"), h2).await;
        // HTTP/2 names the host in `:authority` (from the URI), HTTP/1.1 in `Host`.
        let get = |authority: &str| {
            let uri = if h2 {
                format!("https://{authority}/")
            } else {
                "/".to_owned()
            };
            request("GET", &uri, authority, &[], "")
        };
        let misdirected = client.send(get("evil.test")).await;
        assert_eq!(misdirected.status, 421, "h2={h2}: {misdirected:?}");
        let body = &misdirected.body;
        assert!(
            body.contains("evil.test") && body.contains("api.test"),
            "{body}"
        );
        // Another case, an explicit port and a trailing dot name the same host.
        let same = client.send(get("API.test.:443")).await;
        assert_eq!(same.status, 200, "h2={h2}: {same:?}");
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|s| !format!("{s:?}").contains("evil")),
        "{seen:?}"
    );
    gw.stop().await;
}

/// A TLS record header (handshake) around a ClientHello that declares `length` bytes.
fn hello_header(length: u32) -> Vec<u8> {
    let mut body = vec![0x01];
    body.extend_from_slice(&length.to_be_bytes()[1..]);
    body.extend_from_slice(&[0x03, 0x03]);
    body.extend_from_slice(&[0u8; 32]);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(body.len() as u16).to_be_bytes());
    record.extend_from_slice(&body);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_first_bytes_are_refused_audited_and_the_gateway_keeps_serving() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Setup::default(), &up).await;
    let mut oversize = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x01, 0x00, 0x00];
    oversize.resize(5 + 0x4000, 0);
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "garbage",
            b"\x16\x03\x01\x00\x05\xff\xff\xff\xff\xff".to_vec(),
        ),
        ("truncated", hello_header(200)[..20].to_vec()),
        ("oversize", oversize),
        ("silent", Vec::new()),
    ];
    for (name, bytes) in cases {
        let mut tcp = gw.connect(up.https).await;
        if !bytes.is_empty() {
            tcp.write_all(&bytes).await.unwrap();
        }
        if name == "truncated" {
            tcp.shutdown().await.unwrap();
        }
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
            .await
            .expect("{name}: the gateway left the connection open");
        assert!(answer.is_empty(), "{name}: answered {answer:?} ({read:?})");
    }
    let refusals = gw.records("connection", 4);
    let reasons: Vec<&str> = refusals
        .iter()
        .filter(|r| r["decision"] == "deny")
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert_eq!(
        reasons.len(),
        4,
        "one refusal per bad connection: {refusals:?}"
    );
    for want in [
        "malformed",
        "closed before",
        "detection limit",
        "sent nothing",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "{want}: {reasons:?}"
        );
    }
    assert_eq!(
        up.heads(),
        Vec::<String>::new(),
        "nothing reached the upstream"
    );
    let reply = get(&gw, up.https, "https", false).await;
    assert_eq!(reply.status, 200, "the gateway still serves: {reply:?}");
    gw.stop().await;
}
