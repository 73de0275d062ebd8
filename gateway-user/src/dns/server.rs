//! The UDP DNS listener: receives queries, asks policy, resolves, replies, audits.
//!
//! Listener/handler split: the caller binds the socket (so tests bind port 0 and the daemon can
//! bind inside a sandbox's netns), and [`DnsServer::run`] serves it until the shutdown token is
//! cancelled, then drains the queries in flight (each bounded by the resolver timeout).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::DnsError;
use super::exfil;
use super::message::{self, Outcome, Prepared, Question, Resolution};
use super::resolve::Resolver;
use crate::audit::Who;

/// Largest query datagram read; longer ones are cut and then fail to parse (FORMERR).
const MAX_QUERY_LEN: usize = 4096;

/// One audit record per received datagram, answered or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEvent {
    /// The sandbox-side address the query came from.
    pub client: SocketAddr,
    /// The question, when the datagram had a readable one.
    pub question: Option<Question>,
    /// What happened (and so which response code was sent, if any).
    pub outcome: Outcome,
    /// From receipt to reply sent (or dropped).
    pub duration: Duration,
    /// The sandbox that asked, when the policy hook identified it.
    pub who: Option<Who>,
    /// Signs of data carried in the name (`long-label`, `high-entropy-label`); see
    /// [`exfil::flags`]. Empty when the name looks ordinary or there was no question.
    pub flags: Vec<String>,
}

/// What the policy hook says about one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Resolve the name.
    Resolve,
    /// NXDOMAIN: no rule that applies to the client could allow a connection to the name.
    /// The reason names the rule.
    Deny(String),
    /// REFUSED: the query is not served for this client (unidentified sandbox, unusable
    /// session, name budget spent). The reason says which.
    Refuse(String),
}

/// The policy hook's answer: the verdict and, when known, the sandbox that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// What to do.
    pub verdict: Admit,
    /// The sandbox that asked, for the audit record.
    pub who: Option<Who>,
}

/// Decides, before any lookup, whether a question from `client` may be resolved.
///
/// Implemented for synchronous closures `Fn(SocketAddr, &Question) -> Admission`; the
/// daemon's hook is asynchronous (it looks up the sandbox's session).
///
/// # Security
/// Must fail closed: an error while deciding is [`Admit::Refuse`], never [`Admit::Resolve`].
pub trait QueryPolicy: Send + Sync + 'static {
    /// The admission of `question` asked by `client`.
    fn admit<'a>(&'a self, client: SocketAddr, question: &'a Question) -> BoxFuture<'a, Admission>;
}

impl<F> QueryPolicy for F
where
    F: Fn(SocketAddr, &Question) -> Admission + Send + Sync + 'static,
{
    fn admit<'a>(&'a self, client: SocketAddr, question: &'a Question) -> BoxFuture<'a, Admission> {
        Box::pin(async move { self(client, question) })
    }
}

type AuditFn = dyn Fn(DnsEvent) + Send + Sync;

/// Serves DNS on one already-bound UDP socket (run one per address family / netns).
///
/// # Security
///
/// The [`QueryPolicy`] runs before any lookup; a name it does not admit never reaches the
/// upstream resolver. Queries beyond the in-flight cap are dropped, not answered, and still
/// audited.
pub struct DnsServer {
    socket: UdpSocket,
    resolver: Resolver,
    policy: Arc<dyn QueryPolicy>,
    audit: Arc<AuditFn>,
    max_in_flight: usize,
}

impl DnsServer {
    /// Default cap on queries handled at once.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

    /// A server for `socket`. `policy` decides whether a question (name lowercase, no
    /// trailing dot) may resolve for its client; `audit` receives one [`DnsEvent`] per
    /// datagram and should be quick (hand the event to a channel).
    pub fn new(
        socket: UdpSocket,
        resolver: Resolver,
        policy: impl QueryPolicy,
        audit: impl Fn(DnsEvent) + Send + Sync + 'static,
    ) -> Self {
        Self {
            socket,
            resolver,
            policy: Arc::new(policy),
            audit: Arc::new(audit),
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// Sets the cap on queries handled at once; more are dropped with a
    /// [`Outcome::Dropped`] event. Default is [`DnsServer::DEFAULT_MAX_IN_FLIGHT`] (256).
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight;
        self
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then waits for queries in flight.
    ///
    /// Returns an error only if the socket fails in a way retrying cannot fix; transient
    /// errors (ICMP-induced refusals, interrupts) are skipped.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DnsError> {
        let max_in_flight = self.max_in_flight;
        let shared = Arc::new(Shared {
            socket: self.socket,
            resolver: self.resolver,
            policy: self.policy,
            audit: self.audit,
        });
        let permits = Arc::new(Semaphore::new(max_in_flight));
        let mut tasks = JoinSet::new();
        let mut buf = vec![0u8; MAX_QUERY_LEN];
        let result = loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break Ok(()),
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => log_join(joined),
                received = shared.socket.recv_from(&mut buf) => {
                    let (len, client) = match received {
                        Ok(received) => received,
                        Err(err) if is_transient(&err) => continue,
                        Err(err) => break Err(DnsError::Receive(err)),
                    };
                    let started = Instant::now();
                    let datagram = buf[..len].to_vec();
                    match permits.clone().try_acquire_owned() {
                        Ok(permit) => {
                            tasks.spawn(handle(shared.clone(), datagram, client, started, permit));
                        }
                        Err(_) => {
                            let question = message::question_of(&datagram);
                            (shared.audit)(DnsEvent {
                                client,
                                flags: question.as_ref().map(|q| exfil::flags(&q.name)).unwrap_or_default(),
                                question,
                                outcome: Outcome::Dropped(format!(
                                    "more than {max_in_flight} queries in flight"
                                )),
                                duration: started.elapsed(),
                                who: None,
                            });
                        }
                    }
                }
            }
        };
        while let Some(joined) = tasks.join_next().await {
            log_join(joined);
        }
        result
    }
}

impl fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsServer")
            .field("socket", &self.socket)
            .field("resolver", &self.resolver)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// What every query task needs.
struct Shared {
    socket: UdpSocket,
    resolver: Resolver,
    policy: Arc<dyn QueryPolicy>,
    audit: Arc<AuditFn>,
}

impl Shared {
    /// Policy first, then lookup: a name not admitted never reaches the resolver.
    async fn decide(&self, client: SocketAddr, question: &Question) -> (Resolution, Option<Who>) {
        let admission = self.policy.admit(client, question).await;
        let resolution = match admission.verdict {
            Admit::Resolve => self.resolver.resolve(question).await,
            Admit::Deny(why) => Resolution::Denied(why),
            Admit::Refuse(why) => Resolution::Refused(why),
        };
        (resolution, admission.who)
    }
}

/// Handles one datagram: answer, send, audit. The permit is held until the event is written.
async fn handle(
    shared: Arc<Shared>,
    datagram: Vec<u8>,
    client: SocketAddr,
    started: Instant,
    _permit: OwnedSemaphorePermit,
) {
    let mut event = EventGuard {
        shared: shared.clone(),
        client,
        started,
        question: None,
        who: None,
        done: false,
    };
    let reply = match message::prepare(&datagram) {
        Prepared::Done(reply) => reply,
        Prepared::Resolve(pending) => {
            event.question = Some(pending.question().clone());
            let (resolution, who) = shared.decide(client, pending.question()).await;
            event.who = who;
            pending.finish(resolution)
        }
    };
    if let Some(bytes) = &reply.bytes
        && let Err(err) = shared.socket.send_to(bytes, client).await
    {
        tracing::warn!(%client, error = %err, "dns: sending the reply failed");
    }
    event.question = reply.info.question;
    event.write(reply.info.outcome);
}

/// Writes the query's audit event exactly once, even if its task panics or is cancelled.
struct EventGuard {
    shared: Arc<Shared>,
    client: SocketAddr,
    started: Instant,
    question: Option<Question>,
    who: Option<Who>,
    done: bool,
}

impl EventGuard {
    fn write(&mut self, outcome: Outcome) {
        self.done = true;
        let question = self.question.take();
        (self.shared.audit)(DnsEvent {
            client: self.client,
            flags: question
                .as_ref()
                .map(|q| exfil::flags(&q.name))
                .unwrap_or_default(),
            question,
            outcome,
            duration: self.started.elapsed(),
            who: self.who.take(),
        });
    }
}

impl Drop for EventGuard {
    fn drop(&mut self) {
        if !self.done {
            self.write(Outcome::Failed(
                "dns: query handling ended without a result".to_owned(),
            ));
        }
    }
}

/// Receive errors that concern one peer or one call, not the socket.
fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(err) = joined {
        tracing::error!(error = %err, "dns: a query task failed");
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
