//! End-to-end tests of [`super::DnsServer`] on loopback sockets bound to port 0.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::dns::Upstream;

const WAIT: Duration = Duration::from_secs(5);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A server on loopback: static table, policy "only *allowed.test", events into a channel.
struct Harness {
    addr: SocketAddr,
    events: mpsc::UnboundedReceiver<DnsEvent>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), DnsError>>,
}

/// The harness's server, not yet running, and the receiving end of its events.
async fn unstarted(
    bind: &str,
    resolver: Resolver,
    max_in_flight: usize,
) -> std::io::Result<(DnsServer, mpsc::UnboundedReceiver<DnsEvent>)> {
    let socket = UdpSocket::bind(bind).await?;
    let (tx, events) = mpsc::unbounded_channel();
    let policy = |_client: SocketAddr, q: &Question| {
        assert_ne!(q.name, "boom.allowed.test", "policy blew up");
        let verdict = if q.name.ends_with("allowed.test") {
            Admit::Resolve
        } else if q.name.starts_with("refused.") {
            Admit::Refuse("cannot identify the sandbox that asked".to_owned())
        } else {
            Admit::Deny("allow (no entry)".to_owned())
        };
        Admission { verdict, who: None }
    };
    let audit = move |event| drop(tx.send(event));
    let server = DnsServer::new(socket, resolver, policy, audit).with_max_in_flight(max_in_flight);
    Ok((server, events))
}

impl Harness {
    async fn start(bind: &str, resolver: Resolver, max_in_flight: usize) -> std::io::Result<Self> {
        let (server, events) = unstarted(bind, resolver, max_in_flight).await?;
        let addr = server.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        Ok(Self {
            addr,
            events,
            shutdown,
            task,
        })
    }

    async fn event(&mut self) -> DnsEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("event in time")
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("stops in time");
        result.unwrap().unwrap();
    }
}

fn table() -> Resolver {
    Resolver::static_only(HashMap::from([
        (
            "www.allowed.test".to_owned(),
            vec![ip("198.51.100.20"), ip("2001:db8::20")],
        ),
        ("www.denied.test".to_owned(), vec![ip("203.0.113.9")]),
    ]))
}

/// A client socket of the server's family.
async fn client_for(server: SocketAddr) -> UdpSocket {
    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    UdpSocket::bind(bind).await.unwrap()
}

async fn send_query(
    client: &UdpSocket,
    server: SocketAddr,
    id: u16,
    name: &str,
    qtype: RecordType,
) {
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    client
        .send_to(&query.to_vec().unwrap(), server)
        .await
        .unwrap();
}

async fn receive(client: &UdpSocket, server: SocketAddr) -> Message {
    let mut buf = vec![0u8; 2048];
    let received = tokio::time::timeout(WAIT, client.recv_from(&mut buf)).await;
    let (len, from) = received.expect("reply in time").unwrap();
    assert_eq!(from, server);
    Message::from_vec(&buf[..len]).unwrap()
}

async fn ask(server: SocketAddr, id: u16, name: &str, qtype: RecordType) -> (Message, SocketAddr) {
    let client = client_for(server).await;
    send_query(&client, server, id, name, qtype).await;
    (receive(&client, server).await, client.local_addr().unwrap())
}

fn addresses(reply: &Message) -> Vec<IpAddr> {
    let data = reply.answers.iter().map(|r| &r.data);
    data.map(|d| match d {
        RData::A(a) => IpAddr::V4(a.0),
        RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
        other => unreachable!("unexpected record {other:?}"),
    })
    .collect()
}

fn question(name: &str, qtype: RecordType) -> Option<Question> {
    Some(Question {
        name: name.to_owned(),
        qtype,
    })
}

#[tokio::test]
async fn answers_allowed_names_and_denies_the_rest_over_udp() {
    let mut server = Harness::start("127.0.0.1:0", table(), 8).await.unwrap();

    let (reply, client) = ask(server.addr, 41, "WWW.allowed.test", RecordType::A).await;
    assert_eq!((reply.id, reply.response_code), (41, ResponseCode::NoError));
    assert_eq!(addresses(&reply), vec![ip("198.51.100.20")]);
    let event = server.event().await;
    assert_eq!(event.client, client);
    assert_eq!(event.question, question("www.allowed.test", RecordType::A));
    assert_eq!(event.outcome, Outcome::Resolved(vec![ip("198.51.100.20")]));

    // In the static table, but policy comes first.
    let (reply, _) = ask(server.addr, 42, "www.denied.test", RecordType::A).await;
    assert_eq!(reply.response_code, ResponseCode::NXDomain);
    assert_eq!(
        server.event().await.outcome,
        Outcome::Denied("allow (no entry)".to_owned())
    );

    // A refusal by the hook is REFUSED, with its reason in the event.
    let (reply, _) = ask(server.addr, 44, "refused.test", RecordType::A).await;
    assert_eq!(reply.response_code, ResponseCode::Refused);
    assert_eq!(
        server.event().await.outcome,
        Outcome::Refused("cannot identify the sandbox that asked".to_owned())
    );

    // Names that look like smuggled data are flagged, whatever the answer.
    let (reply, _) = ask(
        server.addr,
        45,
        "a3f9c2e17b4d8e6f0a1c.x.test",
        RecordType::A,
    )
    .await;
    assert_eq!(reply.response_code, ResponseCode::NXDomain);
    assert_eq!(server.event().await.flags, ["high-entropy-label"]);

    let (reply, _) = ask(server.addr, 43, "www.allowed.test", RecordType::TXT).await;
    assert_eq!(reply.response_code, ResponseCode::Refused);
    assert_eq!(server.event().await.outcome.label(), "refused");

    server.stop().await;
}

#[tokio::test]
async fn serves_ipv6_loopback() {
    let Ok(mut server) = Harness::start("[::1]:0", table(), 8).await else {
        eprintln!("note: skipping, cannot bind [::1] on this machine");
        return;
    };
    let (reply, _) = ask(server.addr, 6, "www.allowed.test", RecordType::AAAA).await;
    assert_eq!(addresses(&reply), vec![ip("2001:db8::20")]);
    assert_eq!(
        server.event().await.outcome,
        Outcome::Resolved(vec![ip("2001:db8::20")])
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_datagrams_are_audited_and_formerr_when_readable() {
    let mut server = Harness::start("127.0.0.1:0", table(), 8).await.unwrap();
    let client = client_for(server.addr).await;

    client.send_to(&[1, 2, 3], server.addr).await.unwrap();
    let event = server.event().await;
    assert_eq!((event.question, event.outcome.label()), (None, "malformed"));

    let header_only = [0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    client.send_to(&header_only, server.addr).await.unwrap();
    let reply = receive(&client, server.addr).await;
    assert_eq!(
        (reply.id, reply.response_code),
        (0xabcd, ResponseCode::FormErr)
    );
    assert_eq!(server.event().await.outcome.label(), "malformed");
    server.stop().await;
}

#[tokio::test]
async fn a_query_task_that_panics_is_still_audited() {
    let mut server = Harness::start("127.0.0.1:0", table(), 8).await.unwrap();
    let client = client_for(server.addr).await;
    send_query(&client, server.addr, 1, "boom.allowed.test", RecordType::A).await;
    let event = server.event().await;
    assert_eq!(event.question, question("boom.allowed.test", RecordType::A));
    assert_eq!(event.outcome.label(), "failed");
    // The server keeps serving.
    let (reply, _) = ask(server.addr, 2, "www.allowed.test", RecordType::A).await;
    assert_eq!(reply.response_code, ResponseCode::NoError);
    server.stop().await;
}

/// An upstream that signals each call and answers only when the test opens the gate.
#[derive(Debug)]
struct GatedUpstream {
    entered: Notify,
    gate: Arc<Semaphore>,
}

impl Upstream for GatedUpstream {
    fn lookup(&self, _name: &str) -> BoxFuture<'static, Result<Vec<IpAddr>, DnsError>> {
        self.entered.notify_one();
        let gate = self.gate.clone();
        Box::pin(async move {
            let _open = gate.acquire().await;
            Ok(vec![ip("203.0.113.30")])
        })
    }
}

fn gated() -> (Arc<GatedUpstream>, Resolver) {
    let gate = Arc::new(Semaphore::new(0));
    let upstream = Arc::new(GatedUpstream {
        entered: Notify::new(),
        gate,
    });
    let resolver = table().with_upstream(upstream.clone()).with_timeout(WAIT);
    (upstream, resolver)
}

#[tokio::test]
async fn queries_over_the_in_flight_cap_are_dropped_and_audited() {
    let (upstream, resolver) = gated();
    let mut server = Harness::start("127.0.0.1:0", resolver, 1).await.unwrap();
    let slow = client_for(server.addr).await;
    send_query(&slow, server.addr, 1, "slow.allowed.test", RecordType::A).await;
    upstream.entered.notified().await;

    let other = client_for(server.addr).await;
    send_query(&other, server.addr, 2, "next.allowed.test", RecordType::A).await;
    let dropped = server.event().await;
    assert_eq!(dropped.client, other.local_addr().unwrap());
    assert_eq!(
        dropped.question,
        question("next.allowed.test", RecordType::A)
    );
    assert_eq!(
        dropped.outcome,
        Outcome::Dropped("more than 1 queries in flight".to_owned())
    );

    upstream.gate.add_permits(1);
    let reply = receive(&slow, server.addr).await;
    assert_eq!(addresses(&reply), vec![ip("203.0.113.30")]);
    assert_eq!(
        server.event().await.outcome,
        Outcome::Resolved(vec![ip("203.0.113.30")])
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_drains_queries_in_flight() {
    let (upstream, resolver) = gated();
    let (server, mut events) = unstarted("127.0.0.1:0", resolver, 8).await.unwrap();
    let addr = server.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    // Polled by the test instead of spawned, so the test sees what one turn of it does.
    let mut run = std::pin::pin!(server.run(shutdown.clone()));
    let client = client_for(addr).await;
    send_query(&client, addr, 9, "slow.allowed.test", RecordType::A).await;
    tokio::select! {
        stopped = &mut run => panic!("the server stopped: {stopped:?}"),
        () = upstream.entered.notified() => {}
    }

    shutdown.cancel();
    // One turn sees the cancellation; a server that did not wait would return from it.
    assert!(
        run.as_mut().now_or_never().is_none(),
        "run waits for the query in flight"
    );
    upstream.gate.add_permits(1);
    let reply = receive(&client, addr).await;
    assert_eq!(reply.id, 9);
    let event = tokio::time::timeout(WAIT, events.recv()).await.unwrap();
    assert_eq!(event.unwrap().outcome.label(), "resolved");
    tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
}

#[tokio::test]
async fn dig_resolves_through_the_server() {
    let mut server = Harness::start("127.0.0.1:0", table(), 8).await.unwrap();
    let port = format!("-p{}", server.addr.port());
    let dig = |name: &'static str, qtype: &'static str| {
        tokio::process::Command::new("dig")
            .args(["@127.0.0.1", &port, name, qtype, "+tries=1", "+time=3"])
            .output()
    };
    let Ok(output) = dig("www.allowed.test", "A").await else {
        eprintln!("note: skipping, `dig` is not installed (apt-get install dnsutils)");
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("status: NOERROR"), "{stdout}");
    assert!(stdout.contains("198.51.100.20"), "{stdout}");
    assert_eq!(server.event().await.outcome.label(), "resolved");

    let output = dig("secrets.evil.test", "TXT").await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("status: REFUSED"), "{stdout}");
    let output = dig("secrets.evil.test", "A").await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("status: NXDOMAIN"), "{stdout}");
    server.stop().await;
}
