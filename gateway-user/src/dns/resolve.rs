//! Name lookup for the DNS responder: a static hosts table first, then an upstream (the
//! system resolver by default) under a deadline.
//!
//! The resolver does not decide whether a name may resolve; the server asks policy first and
//! only calls [`Resolver::resolve`] for allowed names, so denied names never reach upstream.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use hickory_proto::rr::RecordType;
use tokio::sync::Semaphore;

use super::DnsError;
use super::message::{Question, Resolution, answers_type};

/// Where names missing from the static table are looked up.
///
/// Implementations must fail rather than invent addresses; [`Resolver`] bounds the time.
pub trait Upstream: Send + Sync + fmt::Debug {
    /// Resolves `name` (lowercase, no trailing dot) to its addresses of both families.
    fn lookup(&self, name: &str) -> BoxFuture<'static, Result<Vec<IpAddr>, DnsError>>;
}

/// The node's system resolver (`getaddrinfo`, as `tokio::net::lookup_host` uses), on blocking
/// threads, with a cap on lookups in flight.
///
/// A timed-out lookup cannot be cancelled: its thread runs until `getaddrinfo` returns. The
/// permit travels with that thread, so a slow resolver cannot pile up blocking threads beyond
/// the cap; over the cap, lookups fail at once with [`DnsError::UpstreamBusy`].
#[derive(Debug, Clone)]
pub struct SystemResolver {
    permits: Arc<Semaphore>,
    max_in_flight: usize,
}

impl SystemResolver {
    /// Default cap on concurrent `getaddrinfo` calls.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

    /// A system resolver running at most `max_in_flight` lookups at once.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
        }
    }
}

impl Default for SystemResolver {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_IN_FLIGHT)
    }
}

impl Upstream for SystemResolver {
    fn lookup(&self, name: &str) -> BoxFuture<'static, Result<Vec<IpAddr>, DnsError>> {
        let permit = self.permits.clone().try_acquire_owned();
        let max_in_flight = self.max_in_flight;
        let name = name.to_owned();
        Box::pin(async move {
            let permit = permit.map_err(|_| DnsError::UpstreamBusy(max_in_flight))?;
            let task = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                (name.as_str(), 0)
                    .to_socket_addrs()
                    .map(|addrs| addrs.map(|a| a.ip()).collect())
            });
            match task.await {
                Ok(Ok(addrs)) => Ok(addrs),
                Ok(Err(err)) => Err(DnsError::Lookup(err)),
                Err(err) => Err(DnsError::LookupTask(err.to_string())),
            }
        })
    }
}

/// Resolves allowed names: the static hosts table (exact match) first, then the upstream.
///
/// Cheap to clone (shared table), so the IPv4 and IPv6 listeners can share one; a table set
/// with [`Resolver::set_hosts`] is seen by every clone.
///
/// # Security
///
/// Fails closed: an upstream error or timeout is [`Resolution::Failed`] (SERVFAIL). A name in
/// the static table never goes upstream, even for a type the table has no address of.
#[derive(Debug, Clone)]
pub struct Resolver {
    hosts: Arc<ArcSwap<HashMap<String, Vec<IpAddr>>>>,
    upstream: Option<Arc<dyn Upstream>>,
    timeout: Duration,
}

impl Resolver {
    /// Default deadline for one upstream lookup.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// A resolver with the static `hosts` table in front of the system resolver.
    ///
    /// Keys are normalized (lowercase, trailing dot removed); duplicate addresses are dropped.
    pub fn new(hosts: HashMap<String, Vec<IpAddr>>) -> Self {
        Self::static_only(hosts).with_upstream(Arc::new(SystemResolver::default()))
    }

    /// A resolver with only the static `hosts` table: other names are [`Resolution::NotFound`].
    /// For hermetic tests.
    pub fn static_only(hosts: HashMap<String, Vec<IpAddr>>) -> Self {
        Self {
            hosts: Arc::new(ArcSwap::from_pointee(normalize_table(hosts))),
            upstream: None,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// Replaces the upstream consulted for names missing from the static table.
    pub fn with_upstream(mut self, upstream: Arc<dyn Upstream>) -> Self {
        self.upstream = Some(upstream);
        self
    }

    /// Sets the upstream deadline. Default is [`Resolver::DEFAULT_TIMEOUT`] (2 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Replaces the static table (configuration reload) for this resolver and every clone;
    /// lookups already past the table finish as they started.
    pub fn set_hosts(&self, hosts: HashMap<String, Vec<IpAddr>>) {
        self.hosts.store(Arc::new(normalize_table(hosts)));
    }

    /// All addresses of `name` (normalized), static table first, deduplicated in order.
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let fixed = self.hosts.load().get(name).cloned();
        if let Some(addrs) = fixed {
            return Ok(addrs);
        }
        let Some(upstream) = &self.upstream else {
            return Err(DnsError::NotFound);
        };
        let addrs = tokio::time::timeout(self.timeout, upstream.lookup(name))
            .await
            .map_err(|_| DnsError::Timeout(self.timeout))??;
        let mut unique = Vec::with_capacity(addrs.len());
        for addr in addrs {
            if !unique.contains(&addr) {
                unique.push(addr);
            }
        }
        Ok(unique)
    }

    /// Resolves an allowed question: A/AAAA look the name up and keep the matching family;
    /// other types (HTTPS, SVCB) resolve to no records without any lookup.
    pub async fn resolve(&self, question: &Question) -> Resolution {
        if !matches!(question.qtype, RecordType::A | RecordType::AAAA) {
            return Resolution::Resolved(Vec::new());
        }
        match self.lookup(&question.name).await {
            Ok(addrs) => Resolution::Resolved(
                addrs
                    .into_iter()
                    .filter(|a| answers_type(question.qtype, *a))
                    .collect(),
            ),
            Err(DnsError::NotFound) => Resolution::NotFound,
            Err(err) => Resolution::Failed(err.to_string()),
        }
    }
}

/// The static table with normalized keys and duplicate addresses dropped.
fn normalize_table(hosts: HashMap<String, Vec<IpAddr>>) -> HashMap<String, Vec<IpAddr>> {
    let mut table: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for (name, addrs) in hosts {
        let entry = table.entry(normalize_host(&name)).or_default();
        for addr in addrs {
            if !entry.contains(&addr) {
                entry.push(addr);
            }
        }
    }
    table
}

/// Normalizes a hosts-table key the way query names are: lowercase, no trailing dot.
fn normalize_host(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An upstream that counts calls and answers from a fixed result (or never).
    #[derive(Debug)]
    struct FakeUpstream {
        calls: AtomicUsize,
        answer: Option<Result<Vec<IpAddr>, String>>,
    }

    impl FakeUpstream {
        fn answering(answer: Result<Vec<IpAddr>, &str>) -> Arc<Self> {
            let answer = Some(answer.map_err(str::to_owned));
            Arc::new(Self {
                calls: AtomicUsize::new(0),
                answer,
            })
        }

        fn hanging() -> Arc<Self> {
            Arc::new(Self {
                calls: AtomicUsize::new(0),
                answer: None,
            })
        }
    }

    impl Upstream for FakeUpstream {
        fn lookup(&self, _name: &str) -> BoxFuture<'static, Result<Vec<IpAddr>, DnsError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.answer.clone() {
                Some(answer) => Box::pin(async move {
                    answer.map_err(|e| DnsError::Lookup(std::io::Error::other(e)))
                }),
                None => Box::pin(futures_util::future::pending()),
            }
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn q(name: &str, qtype: RecordType) -> Question {
        Question {
            name: name.to_owned(),
            qtype,
        }
    }

    fn table() -> HashMap<String, Vec<IpAddr>> {
        HashMap::from([
            (
                "Dual.Example.TEST.".to_owned(),
                vec![ip("198.51.100.7"), ip("2001:db8::7")],
            ),
            (
                "v4.example.test".to_owned(),
                vec![ip("203.0.113.4"), ip("203.0.113.4")],
            ),
        ])
    }

    #[tokio::test]
    async fn static_table_is_normalized_filtered_and_never_goes_upstream() {
        let upstream = FakeUpstream::answering(Ok(vec![ip("198.51.100.99")]));
        let resolver = Resolver::static_only(table()).with_upstream(upstream.clone());
        let cases = [
            (
                q("dual.example.test", RecordType::A),
                Resolution::Resolved(vec![ip("198.51.100.7")]),
            ),
            (
                q("dual.example.test", RecordType::AAAA),
                Resolution::Resolved(vec![ip("2001:db8::7")]),
            ),
            (
                q("v4.example.test", RecordType::A),
                Resolution::Resolved(vec![ip("203.0.113.4")]),
            ),
            (
                q("v4.example.test", RecordType::AAAA),
                Resolution::Resolved(vec![]),
            ),
            (
                q("dual.example.test", RecordType::HTTPS),
                Resolution::Resolved(vec![]),
            ),
        ];
        for (question, want) in cases {
            assert_eq!(resolver.resolve(&question).await, want, "{question:?}");
        }
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn misses_go_upstream_or_are_not_found() {
        let answer = vec![ip("198.51.100.1"), ip("198.51.100.1"), ip("2001:db8::1")];
        let upstream = FakeUpstream::answering(Ok(answer));
        let resolver = Resolver::static_only(table()).with_upstream(upstream.clone());
        let got = resolver.resolve(&q("other.test", RecordType::A)).await;
        assert_eq!(got, Resolution::Resolved(vec![ip("198.51.100.1")]));
        let all = resolver.lookup("other.test").await.unwrap();
        assert_eq!(all, vec![ip("198.51.100.1"), ip("2001:db8::1")]);
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);

        let hermetic = Resolver::static_only(table());
        let got = hermetic.resolve(&q("other.test", RecordType::A)).await;
        assert_eq!(got, Resolution::NotFound);
    }

    #[tokio::test]
    async fn a_new_table_reaches_every_clone() {
        let resolver = Resolver::static_only(table());
        let listener_copy = resolver.clone();
        resolver.set_hosts(HashMap::from([(
            "New.Test.".to_owned(),
            vec![ip("198.51.100.8")],
        )]));
        assert_eq!(
            listener_copy.lookup("new.test").await.unwrap(),
            vec![ip("198.51.100.8")]
        );
        assert!(matches!(
            listener_copy.lookup("v4.example.test").await,
            Err(DnsError::NotFound)
        ));
    }

    #[tokio::test]
    async fn upstream_errors_fail_closed() {
        let upstream = FakeUpstream::answering(Err("no route to resolver"));
        let resolver = Resolver::static_only(HashMap::new()).with_upstream(upstream);
        let Resolution::Failed(reason) = resolver.resolve(&q("x.test", RecordType::AAAA)).await
        else {
            unreachable!("expected a failure");
        };
        assert!(reason.contains("no route to resolver"), "{reason}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_upstream_times_out_as_a_failure() {
        let resolver = Resolver::static_only(HashMap::new()).with_upstream(FakeUpstream::hanging());
        let started = tokio::time::Instant::now();
        let got = resolver.resolve(&q("slow.test", RecordType::A)).await;
        assert_eq!(started.elapsed(), Resolver::DEFAULT_TIMEOUT);
        let Resolution::Failed(reason) = got else {
            unreachable!("expected a failure, got {got:?}")
        };
        assert!(reason.contains("timed out after 2s"), "{reason}");
    }

    #[tokio::test]
    async fn system_resolver_parses_literals_and_enforces_its_cap() {
        let system = SystemResolver::new(1);
        assert_eq!(
            system.lookup("127.0.0.1").await.unwrap(),
            vec![ip("127.0.0.1")]
        );
        let busy = SystemResolver::new(0);
        let err = busy.lookup("127.0.0.1").await.unwrap_err();
        assert!(matches!(err, DnsError::UpstreamBusy(0)), "{err}");
    }
}
