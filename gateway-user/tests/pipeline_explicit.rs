//! The explicit proxy (`HTTPS_PROXY` mode) through the assembled data path, in-process
//! without root: a sandbox authenticated by its session token in `Proxy-Authorization` gets
//! `CONNECT` tunnels intercepted (or passed through) and absolute-form `http://` requests
//! forwarded, with its session's credentials; without a valid token it gets 407; requests the
//! proxy cannot give a destination get 400, internal destinations 403; a drain closes the
//! tunnels. Each case as a client (or an attacker in its sandbox) would notice it, and as the
//! audit log records it.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

#[cfg(test)]
#[path = "pipeline/support.rs"]
#[allow(
    dead_code,
    reason = "shared with pipeline.rs; each test binary uses part of it"
)]
mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use sluice::config::PolicyConfig;
use sluice::policy::PolicySpec;
use sluice::session::NewSession;
use support::upstream::routes::pattern;
use support::upstream::{Upstreams, websocket_upstream};
use support::{Client, Gateway, Reply, Setup, exchange, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The real value of `API_KEY`, bound to api.test.
const SECRET: &str = "sk-live-8c1f0e7d2b9a4c6e8f1a3b5d7c9e0f21";
/// `Authorization: Bearer <placeholder>`.
const BEARER: (&str, &str) = ("authorization", "Bearer sluice_cred:API_KEY");

/// The names the proxy resolves (its static table): all on loopback, where the upstreams are.
fn setup() -> Setup {
    Setup {
        hosts: vec![
            ("api.test", "127.0.0.1"),
            ("web.test", "127.0.0.1"),
            ("ws.test", "127.0.0.1"),
            ("pinned.test", "127.0.0.1"),
        ],
        ..Setup::default()
    }
}

/// A ten-minute session; with `API_KEY` (= [`SECRET`], bound to api.test) when `credential`.
fn session(credential: bool) -> NewSession {
    let credentials = if credential {
        vec![support::api_key(SECRET)]
    } else {
        Vec::new()
    };
    support::session_with(credentials, PolicySpec::default())
}

/// `Proxy-Authorization` for `user:password`.
fn basic(user_password: &str) -> (&'static str, String) {
    let value = format!("Basic {}", STANDARD.encode(user_password));
    ("proxy-authorization", value)
}

/// Sends `CONNECT authority` with `headers`; returns the proxy's answer head and the
/// connection (a tunnel after a 200).
async fn connect(gw: &Gateway, authority: &str, headers: &[(&str, String)]) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(gw.proxy).await.unwrap();
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"\r\n").await.unwrap();
    // Byte by byte, so nothing of the tunnel is read with the head.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while !answer.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap() == 1 {
            answer.push(byte[0]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the proxy did not answer the CONNECT");
    (String::from_utf8_lossy(&answer).into_owned(), stream)
}

/// A TLS client over `io` for `sni`, trusting `root` (Sluice's CA, or an upstream's).
async fn tls(
    io: TcpStream,
    root: rustls::pki_types::CertificateDer<'static>,
    sni: &str,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, io)
        .await
}

/// An HTTP/1.1 client of the proxy itself (for absolute-form requests).
async fn proxy_client(gw: &Gateway) -> Client {
    Client::open(TcpStream::connect(gw.proxy).await.unwrap(), false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnels_are_intercepted_and_absolute_form_requests_forwarded() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(setup(), &up).await;
    let (id, token) = gw.create_session_with_token(session(false)).await;
    let auth = basic(&format!("sluice:{token}"));
    let api = format!("api.test:{}", up.https.port());
    for (h2, alpn) in [(false, &b"http/1.1"[..]), (true, &b"h2"[..])] {
        let (head, tunnel) = connect(&gw, &api, std::slice::from_ref(&auth)).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        // The client trusts the Sluice CA: the tunnel is intercepted.
        let tls = tls(tunnel, gw.ca.clone(), "api.test", alpn).await.unwrap();
        let get = request("GET", "https://api.test/via-proxy?x=1", "api.test", &[], "");
        let reply = Client::open(tls, h2).await.send(get).await;
        assert_eq!(reply.status, 200, "h2={h2}: {reply:?}");
        assert!(
            reply.body.starts_with("GET api.test /via-proxy 0"),
            "{reply:?}"
        );
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|s| s.tls && s.query == "x=1"), "{seen:?}");

    let web = format!("web.test:{}", up.http.port());
    let url = format!("http://{web}/hello");
    let get = request("GET", &url, &web, &[(auth.0, &auth.1)], "");
    let reply = proxy_client(&gw).await.send(get).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, format!("GET {web} /hello 0 HTTP/1.1"));
    // The proxy's token never reaches an upstream.
    let plain = up.seen().pop().unwrap();
    assert!(!plain.tls, "{plain:?}");
    assert_eq!(plain.header("proxy-authorization"), "", "{plain:?}");

    let requests = gw.records("request", 3);
    let via_proxy: Vec<_> = requests
        .iter()
        .filter(|r| {
            r["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("https://api.test/via-proxy"))
        })
        .collect();
    assert_eq!(via_proxy.len(), 2, "{requests:?}");
    assert!(
        via_proxy
            .iter()
            .all(|r| r["session"] == id.as_str() && r["status"] == 200),
        "{requests:?}"
    );
    let plain = requests.iter().find(|r| r["url"] == url.as_str());
    let plain = plain.unwrap_or_else(|| panic!("no record of {url}: {requests:?}"));
    assert_eq!(plain["session"], id.as_str(), "{plain}");
    let connections = gw.records("connection", 3);
    let tunnels: Vec<_> = connections
        .iter()
        .filter(|c| c["host"] == "api.test")
        .collect();
    assert_eq!(tunnels.len(), 2, "{connections:?}");
    assert!(
        tunnels
            .iter()
            .all(|c| c["mode"] == "intercept" && c["session"] == id.as_str()),
        "{connections:?}"
    );
    let audit = gw.stop().await;
    assert!(!audit.contains(&token), "the token reached the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_or_revoked_tokens_get_407_and_reach_nothing() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(setup(), &up).await;
    let (id, token) = gw.create_session_with_token(session(false)).await;
    let (revoked, revoked_token) = gw.create_session_with_token(session(false)).await;
    gw.revoke(&revoked).await;
    let web = format!("web.test:{}", up.http.port());
    let url = format!("http://{web}/hello");
    let bearer = ("proxy-authorization", format!("Bearer {token}"));
    let attempts = [
        (None, "no session token"),
        (Some(basic("sluice:sluice_stk_wrong")), "unknown token"),
        // The right token under another user name, or as a bearer token.
        (Some(basic(&format!("nobody:{token}"))), "no session token"),
        (Some(bearer), "no session token"),
        (Some(basic(&format!("sluice:{revoked_token}"))), "revoked"),
    ];
    for (auth, reason) in &attempts {
        let headers: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = proxy_client(&gw)
            .await
            .send(request("GET", &url, &web, &headers, ""))
            .await;
        assert_eq!(reply.status, 407, "{auth:?}: {reply:?}");
        assert_eq!(
            reply.header("proxy-authenticate"),
            "Basic realm=\"sluice\"",
            "{reply:?}"
        );
        assert!(reply.body.contains(reason), "{auth:?}: {reply:?}");
        assert!(
            reply.body.contains("Proxy-Authorization Basic"),
            "says how: {reply:?}"
        );
        let mut head = format!("CONNECT {web} HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n");
        if let Some((name, value)) = auth {
            head += &format!("{name}: {value}\r\n");
        }
        let stream = TcpStream::connect(gw.proxy).await.unwrap();
        let answer = exchange(stream, format!("{head}\r\n").as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 407"), "{auth:?}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("proxy-authenticate: basic realm=\"sluice\""),
            "{answer}"
        );
    }
    assert!(
        up.heads().is_empty(),
        "reached an upstream: {:?}",
        up.heads()
    );

    let records = gw.records("connection", 2 * attempts.len());
    assert!(
        records
            .iter()
            .all(|r| r["decision"] == "deny" && r["side"] == "policy" && r["conn"].is_string()),
        "{records:?}"
    );
    let reasons: Vec<&str> = records
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"policy: proxy: session: unknown token"),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"policy: proxy: no session token"),
        "{reasons:?}"
    );
    assert!(
        records.iter().all(|r| r["session"] != id.as_str()),
        "a refused client is not taken for the session: {records:?}"
    );
    let audit = gw.stop().await;
    assert!(!audit.contains(&token), "the token reached the audit log");
    assert!(
        !audit.contains(&revoked_token),
        "the token reached the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_usable_destination_get_400_and_internal_ones_403() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(setup(), &up).await;
    let (id, token) = gw.create_session_with_token(session(false)).await;
    let auth = basic(&format!("sluice:{token}"));
    let auth = (auth.0, auth.1.as_str());
    // Origin-form, as to a server: the proxy cannot tell where it goes.
    let web = format!("web.test:{}", up.http.port());
    let origin = request("GET", "/hello", &web, &[auth], "");
    let reply = proxy_client(&gw).await.send(origin).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply
            .body
            .contains("expected CONNECT host:port or an absolute http:// URL"),
        "{reply:?}"
    );
    let record = gw.records("connection", 1).remove(0);
    assert_eq!(
        (&record["decision"], &record["side"], &record["session"]),
        (&"error".into(), &"downstream".into(), &id.as_str().into()),
        "{record}"
    );
    assert!(record["conn"].is_string(), "{record}");

    // A name the gateway cannot resolve is the gateway's 502, not a guess.
    let nowhere = request("GET", "http://nowhere.test/", "nowhere.test", &[auth], "");
    let reply = proxy_client(&gw).await.send(nowhere).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(reply.body.contains("resolve nowhere.test"), "{reply:?}");

    // Internal destinations, by address and through CONNECT; loopback outside 127.0.0.0/8
    // (the test's allowed range) too.
    let metadata = request(
        "GET",
        "http://169.254.169.254/latest/",
        "169.254.169.254",
        &[auth],
        "",
    );
    let reply = proxy_client(&gw).await.send(metadata).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        reply.body.contains("internal destinations are refused"),
        "{reply:?}"
    );
    let headers = [(auth.0, auth.1.to_owned())];
    for target in ["10.1.0.1:443", "[::1]:22"] {
        let (head, mut rest) = connect(&gw, target, &headers).await;
        assert!(head.starts_with("HTTP/1.1 403"), "{target}: {head}");
        // No tunnel: whatever the client sends next is not relayed anywhere.
        let _ = rest.write_all(b"SSH-2.0-probe\r\n").await;
    }
    let records = gw.records("connection", 5);
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r["mode"] == "refused" && r["side"] == "policy")
        .collect();
    assert_eq!(refused.len(), 3, "{records:?}");
    assert!(
        refused.iter().all(|r| r["decision"] == "deny"
            && r["session"] == id.as_str()
            && r["reason"]
                .as_str()
                .is_some_and(|t| t.contains("internal destinations are refused"))),
        "{records:?}"
    );
    assert!(up.heads().is_empty(), "{:?}", up.heads());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_is_injected_through_a_connect_tunnel_and_never_over_plain_http() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(setup(), &up).await;
    let (_, token) = gw.create_session_with_token(session(true)).await;
    let auth = basic(&format!("sluice:{token}"));
    let api = format!("api.test:{}", up.https.port());
    let (head, tunnel) = connect(&gw, &api, std::slice::from_ref(&auth)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let tls = tls(tunnel, gw.ca.clone(), "api.test", b"h2").await.unwrap();
    let get = request("GET", "https://api.test/headers", "api.test", &[BEARER], "");
    let reply = Client::open(tls, true).await.send(get).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    // The upstream got the value; the sandbox reads its echo back as the placeholder.
    assert_eq!(
        up.seen()[0].header("authorization"),
        format!("Bearer {SECRET}")
    );
    assert_eq!(reply.header("x-echoed-authorization"), BEARER.1);
    assert!(!reply.body.contains(SECRET), "{reply:?}");
    let injected = gw.records("request", 1).remove(0);
    assert_eq!(injected["credentials"], serde_json::json!(["API_KEY"]));

    // Plain HTTP toward the credential's host, absolute-form, is refused before it leaves.
    let plain_api = format!("api.test:{}", up.http.port());
    let with_auth = [BEARER, (auth.0, auth.1.as_str())];
    let absolute = request(
        "GET",
        &format!("http://{plain_api}/"),
        &plain_api,
        &with_auth,
        "",
    );
    let reply = proxy_client(&gw).await.send(absolute).await;
    assert_refused_plain_http(&reply);
    // A Host naming the credential's host toward an address differs from the target: 400.
    let ip = up.http.to_string();
    let spoofed = request("GET", &format!("http://{ip}/"), &plain_api, &with_auth, "");
    let reply = proxy_client(&gw).await.send(spoofed).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.body.contains("differs from the request target"),
        "{reply:?}"
    );
    // A tunnel to the address, then plain HTTP with the credential's host inside it.
    let (head, tunnel) = connect(&gw, &ip, std::slice::from_ref(&auth)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let inside = request("GET", "/", &plain_api, &[BEARER], "");
    let reply = Client::open(tunnel, false).await.send(inside).await;
    assert_refused_plain_http(&reply);
    assert_eq!(
        up.seen().len(),
        1,
        "only the HTTPS request arrived: {:?}",
        up.seen()
    );
    let audit = gw.stop().await;
    assert!(!audit.contains(SECRET), "the value reached the audit log");
    assert!(!audit.contains(&token), "the token reached the audit log");
}

fn assert_refused_plain_http(reply: &Reply) {
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        reply
            .body
            .contains("credential API_KEY is only sent over HTTPS to api.test"),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_tunnel_to_a_passthrough_host_carries_the_real_tls_byte_for_byte() {
    let up = Upstreams::start().await;
    let mut setup = setup();
    setup.policy = PolicyConfig {
        passthrough: vec![format!("pinned.test:{}", up.https.port())],
        tcp_allow: Vec::new(),
    };
    let gw = Gateway::start(setup, &up).await;
    let (id, token) = gw.create_session_with_token(session(false)).await;
    let pinned = format!("pinned.test:{}", up.https.port());
    let auth = basic(&format!("sluice:{token}"));
    let (head, tunnel) = connect(&gw, &pinned, std::slice::from_ref(&auth)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Trusting only the upstream's own CA works: the client talks to pinned.test itself.
    let pem = std::fs::read(&up.ca_pem).unwrap();
    let root = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    let tls = tls(tunnel, root, "pinned.test", b"http/1.1").await.unwrap();
    const N: usize = 4 << 20;
    let get = request("GET", &format!("/bytes/{N}"), "pinned.test", &[], "");
    let mut client = Client::open(tls, false).await;
    let response = client.response(get).await;
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), N);
    assert!(body == pattern(0, N), "the body changed on the way");
    drop(client);
    let records = gw.records("connection", 1);
    let record = &records[0];
    assert_eq!(record["mode"], "passthrough", "{record}");
    assert_eq!(record["host"], "pinned.test", "{record}");
    assert_eq!(record["session"], id.as_str(), "{record}");
    let down = record["bytes_down"].as_u64().unwrap();
    assert!(
        down > N as u64,
        "the record counts the tunnel's bytes: {record}"
    );
    assert!(
        gw.records("request", 0).is_empty(),
        "nothing was intercepted"
    );
    gw.stop().await;
}

/// A WebSocket in a `CONNECT` tunnel that never ends is closed with the tunnel when the
/// gateway drains, not left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_closes_connect_tunnels() {
    let up = Upstreams::start().await;
    let (ws, on_close) = websocket_upstream().await;
    let gw = Gateway::start(setup(), &up).await;
    let (_, token) = gw.create_session_with_token(session(false)).await;
    let auth = basic(&format!("sluice:{token}"));
    let target = format!("ws.test:{}", ws.port());
    let (head, mut tunnel) = connect(&gw, &target, std::slice::from_ref(&auth)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tunnel
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut status = vec![0u8; 12];
    tunnel.read_exact(&mut status).await.unwrap();
    assert_eq!(
        &status,
        b"HTTP/1.1 101",
        "{}",
        String::from_utf8_lossy(&status)
    );
    tokio::time::timeout(Duration::from_secs(30), gw.stop())
        .await
        .expect("the gateway did not stop: a tunnel outlived the drain");
    tokio::time::timeout(Duration::from_secs(10), on_close)
        .await
        .expect("the tunnel to the upstream was left open after the drain")
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tunnel.read_to_end(&mut rest))
        .await
        .expect("the tunnel to the sandbox was left open after the drain");
    assert!(read.is_ok() || rest.is_empty(), "{read:?}");
}
