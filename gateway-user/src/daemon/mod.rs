//! The node daemon (`sluice run`): capture, listeners, reload and drain on signal.
//!
//! The control API is a layer above: `sluice run` ([`crate::cli`]) starts the daemon, serves
//! [`crate::control`] on its [`Node`], then waits on [`Daemon::serve`].

mod dns;
pub mod leftovers;
mod listeners;
mod lock;
pub mod memory;
mod node;
mod reload;
mod services;
mod stored_proxies;

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use listeners::ListenerSet;
pub use lock::{DaemonLock, LockError};
pub use node::{Node, NodeError};
pub use reload::{ReloadCounts, ReloadError, Trigger};
pub use services::Services;

use crate::audit::{AuditLog, AuditWriter};
use crate::capture::{self, Capture, CaptureConfig};
use crate::config::Config;
use crate::detect::Limits;
use crate::drain::Drain;
use crate::intercept::InterceptContext;
use crate::live::Live;
use crate::proxy::{ExplicitProxy, KernelIdentify, ProxyContext, serve_explicit};
use crate::sandbox::Registry;
use crate::tls::{CertificateAuthority, LeafMinter, ServerConfigCache};
use crate::upstream::{Dialer, NodeProxies, UpstreamClient, UpstreamSettings};
use crate::workers::Workers;

/// How long in-flight connections get to finish after SIGTERM.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// The first steps of `sluice run`, before anything is captured: the signal handlers, the
/// one-daemon lock and the state directory. [`Prepared::start`] then starts the node.
#[derive(Debug)]
pub struct Prepared {
    config: Config,
    path: Option<PathBuf>,
    signals: Signals,
    lock: DaemonLock,
}

/// The node daemon, running: capture restored, the transparent, DNS and explicit proxy
/// listeners serving. Whoever started it adds its own servers on [`Daemon::node`] under
/// [`Daemon::drain`] (`sluice run` adds the control API), then [`Daemon::serve`]s.
#[derive(Debug)]
pub struct Daemon {
    node: Arc<Node>,
    drain: Drain,
    signals: Signals,
    audit: AuditLog,
    audit_writer: AuditWriter,
    _lock: DaemonLock,
}

impl Prepared {
    /// Installs the signal handlers (first thing: before them, SIGHUP would kill the
    /// process), takes the daemon lock and creates the state directory (mode 0700). `path`
    /// is the `--config` the daemon was started with, which SIGHUP reloads (see
    /// [`Node::config_source`]).
    pub fn new(config: Config, path: Option<PathBuf>) -> anyhow::Result<Prepared> {
        let signals = Signals::install()?;
        let lock = DaemonLock::acquire(&config.capture.pin_dir)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.state_dir)
            .with_context(|| format!("daemon: create state_dir {}", config.state_dir.display()))?;
        Ok(Prepared {
            config,
            path,
            signals,
            lock,
        })
    }

    /// The configuration the daemon runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts the node: the audit writer, the kernel capture, the sandbox registry, the
    /// session services, and the listeners (transparent, DNS, explicit proxy if configured).
    pub async fn start(self) -> anyhow::Result<Daemon> {
        let Prepared {
            config,
            path,
            signals,
            lock,
        } = self;
        let (audit, audit_writer) = AuditLog::start(config.audit_target())?;

        let capture_config = capture_config(&config)?;
        let parent_cgroup = capture_config.parent_cgroup.clone();
        let capture = Arc::new(Capture::install(&capture_config)?);
        let registry = Arc::new(Registry::load(&config.state_dir.join("sandboxes.json"))?);
        let live = Live::build(&config.live())?;
        let resolver = crate::dns::Resolver::new(live.hosts.clone());
        let live = live.into_store();
        let services = Arc::new(Services::start(&config, live.clone()).await?);
        let ca = load_ca(&config)?;
        let tls = upstream_tls(&config, &ca)?;
        let dialer = Dialer::new(config.connect_timeout(), live.clone()).with_proxies(
            node_proxies(&config)?,
            tls.1.clone(),
            resolver.clone(),
        );
        let gate = Arc::new(services.gate());
        let intercept = Arc::new(intercept_context(&config, &audit, &dialer, gate, ca, tls)?);
        let proxy = Arc::new(ProxyContext {
            identify: Arc::new(KernelIdentify {
                capture: capture.clone(),
                sandboxes: registry.clone(),
            }),
            audit: audit.clone(),
            dialer,
            live,
            max_connections: 65_536,
            detect_limits: Limits::default(),
            intercept,
            resolver,
            trust_failures: Arc::default(),
            workers: Some(Arc::new(
                Workers::per_core().context("daemon: start the connection workers")?,
            )),
        });
        let drain = Drain::new();
        let node = Arc::new(
            Node::new(
                config.clone(),
                capture,
                registry,
                proxy,
                drain.clone(),
                parent_cgroup,
                services,
            )
            .config_source(path),
        );

        node.refresh_proxies()
            .await
            .context("daemon: read the upstream proxies created through the API")?;
        drain.spawn(stored_proxies::watch(node.clone()));

        let listen = &config.listen;
        let set = listeners::bind_here(listen.transparent_port, listen.dns_port)
            .context("daemon: bind the transparent and DNS listeners")?;
        node.serve(set, &drain, None)?;
        node.restore();
        drain.spawn(sweep_vanished(node.clone()));
        drain.spawn(memory::give_back_periodically(drain.clone()));
        if let Some(addr) = listen.proxy {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("daemon: bind the explicit proxy on {addr}"))?;
            let explicit = Arc::new(ExplicitProxy {
                ctx: node.proxy.clone(),
                cache: node.services.sessions.clone(),
                resolver: node.resolver.clone(),
            });
            drain.spawn(serve_explicit(listener, explicit, drain.clone()));
        }
        Ok(Daemon {
            node,
            drain,
            signals,
            audit,
            audit_writer,
            _lock: lock,
        })
    }
}

impl Daemon {
    /// The running node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The drain that in-flight connections and servers run under.
    pub fn drain(&self) -> &Drain {
        &self.drain
    }

    /// Runs until SIGINT or SIGTERM; SIGHUP reloads the configuration. Then gives in-flight
    /// connections [`DRAIN_GRACE`] to finish and the audit writer 2 s to drain its queue.
    pub async fn serve(self) -> anyhow::Result<()> {
        let Daemon {
            node,
            drain,
            mut signals,
            audit,
            audit_writer,
            _lock,
        } = self;
        let listen = &node.config.listen;
        tracing::info!(
            transparent = listen.transparent_port,
            dns = listen.dns_port,
            control = %listen.control,
            parent_cgroup = %node.parent_cgroup.display(),
            sandboxes = node.registry.list().len(),
            "sluice: ready"
        );
        tracing::info!(
            "sluice: dashboard at http://{}/ui/ (log in with the token in {})",
            listen.control,
            node.config.admin_token_path().display()
        );

        signals.serve(&node).await;
        tracing::info!(
            "sluice: stopping (capture stays pinned: sandboxes are refused until restart)"
        );
        drain.shutdown(DRAIN_GRACE).await;
        drop(node);
        drop(audit);
        if tokio::time::timeout(Duration::from_secs(2), audit_writer.finish())
            .await
            .is_err()
        {
            tracing::warn!("audit: writer did not drain in 2 s");
        }
        Ok(())
    }
}

/// The CA (created on first run), and the bundle file sandboxes trust.
fn load_ca(config: &Config) -> anyhow::Result<CertificateAuthority> {
    let ca =
        CertificateAuthority::load_or_create(&config.state_dir, time::OffsetDateTime::now_utc())
            .context("daemon: load the CA")?;
    tracing::info!(origin = ?ca.origin(), fingerprint = ca.fingerprint_sha256(), not_after = %ca.not_after(), "ca: ready");
    crate::tls::trust::write(&config.state_dir, ca.cert_pem(), ca.cert_der()).context(
        "daemon: write the trust files (ca-bundle.pem: the node's roots + the Sluice CA; certs/)",
    )?;
    Ok(ca)
}

/// The upstream TLS client configurations (`h2`+`http/1.1`, and `http/1.1` only, also used
/// toward `https://` proxies), trusting the configured roots and never the Sluice CA.
fn upstream_tls(
    config: &Config,
    ca: &CertificateAuthority,
) -> anyhow::Result<(Arc<rustls::ClientConfig>, Arc<rustls::ClientConfig>)> {
    let (tls, tls_h1, counts) = crate::upstream::client_configs(
        config.upstream.roots,
        &config.upstream.extra_roots,
        Some(ca.cert_der()),
    )?;
    tracing::info!(
        system = counts.system,
        skipped = counts.skipped,
        webpki = counts.webpki,
        extra = counts.extra,
        "upstream: trusted roots"
    );
    Ok((tls, tls_h1))
}

/// The node's upstream proxies: `[[upstream.proxies]]`, and `SLUICE_PROXY_URL` (then
/// `PROXY_URL`) from the daemon's environment. A value that does not parse stops the start.
fn node_proxies(config: &Config) -> anyhow::Result<Arc<NodeProxies>> {
    let env = NodeProxies::env_proxy(|name| std::env::var(name).ok())
        .context("daemon: the environment's upstream proxy")?;
    let proxies = NodeProxies::build(&config.upstream.proxies, env)?;
    for proxy in proxies.list.iter().chain(&proxies.env) {
        let default = proxies.default.as_deref() == Some(proxy.id.as_str());
        tracing::info!(id = proxy.id, label = proxy.label, url = %proxy.url, default, "upstream: proxy");
    }
    Ok(Arc::new(proxies))
}

/// The interception engine: the CA, leaf cache, upstream client.
fn intercept_context(
    config: &Config,
    audit: &AuditLog,
    dialer: &Dialer,
    gate: Arc<crate::gate::SessionGate>,
    ca: CertificateAuthority,
    (tls, tls_h1): (Arc<rustls::ClientConfig>, Arc<rustls::ClientConfig>),
) -> anyhow::Result<InterceptContext> {
    let minter = Arc::new(LeafMinter::with_capacity(
        Arc::new(ca),
        config.tls.leaf_cache_size,
    )?);
    let upstream = UpstreamClient::with_tls(
        UpstreamSettings {
            connect_timeout: config.connect_timeout(),
            pool_idle_timeout: Duration::from_millis(config.upstream.pool_idle_timeout_ms),
            ..UpstreamSettings::default()
        },
        dialer.clone(),
        tls,
        tls_h1,
    );
    Ok(InterceptContext {
        tls: Arc::new(ServerConfigCache::new(minter)?),
        upstream,
        audit: audit.clone(),
        policy: gate,
    })
}

/// The kernel capture settings of `config`; a relative parent cgroup is resolved under the
/// cgroup2 mount.
pub fn capture_config(config: &Config) -> anyhow::Result<CaptureConfig> {
    let configured = &config.capture.parent_cgroup;
    let parent_cgroup = if configured.is_absolute() {
        configured.clone()
    } else {
        capture::cgroup2_mount()?.join(configured)
    };
    Ok(CaptureConfig {
        parent_cgroup,
        pin_dir: config.capture.pin_dir.clone(),
        proxy_port: config.listen.transparent_port,
        dns_port: config.listen.dns_port,
        control_port: Some(config.listen.control.port()),
        explicit_proxy_port: config.listen.proxy.map(|addr| addr.port()),
        conn_cap_per_sandbox: None,
    })
}

/// Detaches and unpins the capture of `config` (`sluice uninstall`). Refuses while a daemon
/// runs, and while sandboxes are enrolled unless `force`.
pub fn uninstall(config: &Config, force: bool) -> anyhow::Result<()> {
    let _lock = DaemonLock::acquire(&config.capture.pin_dir)?;
    let enrolled = Registry::load(&config.state_dir.join("sandboxes.json"))?
        .list()
        .len();
    if enrolled > 0 && !force {
        anyhow::bail!(
            "{enrolled} sandboxes are enrolled; their sockets would no longer be captured. \
             Unenroll them first, or pass --force"
        );
    }
    let capture_config = capture_config(config)?;
    Capture::uninstall(&capture_config)?;
    let _ = std::fs::remove_file(config.state_dir.join("sandboxes.json"));
    Ok(())
}

/// The daemon's signal handlers, installed first thing: before them, SIGHUP would kill it.
#[derive(Debug)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("daemon: install the {name} handler"))
        };
        Ok(Signals {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
            hup: install(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// Reloads on SIGHUP (the outcome is logged and audited by [`Node::reload`]); returns on
    /// SIGTERM or SIGINT.
    async fn serve(&mut self, node: &Node) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => {
                    let _ = tokio::task::block_in_place(|| node.reload(Trigger::Signal));
                }
            }
        }
    }
}

/// Every 10 s, unregisters enrolled sandboxes whose cgroup is gone ([`Node::sweep_vanished`]).
async fn sweep_vanished(node: Arc<Node>) {
    let stopping = node.drain.stopping();
    tokio::pin!(stopping);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tokio::select! {
            () = &mut stopping => return,
            _ = tick.tick() => {
                let node = node.clone();
                let _ = tokio::task::spawn_blocking(move || node.sweep_vanished()).await;
            }
        }
    }
}
