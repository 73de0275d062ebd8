//! The node daemon (`sluice run`): capture, listeners, control API, drain on signal.

mod dns;
mod listeners;
mod lock;
mod node;
mod services;

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use listeners::ListenerSet;
pub use lock::{DaemonLock, LockError};
pub use node::{Node, NodeError};
pub use services::Services;

use crate::audit::AuditLog;
use crate::capture::{self, Capture, CaptureConfig};
use crate::config::Config;
use crate::control::{auth::AdminToken, serve_control};
use crate::detect::Limits;
use crate::drain::Drain;
use crate::intercept::InterceptContext;
use crate::net::Cidr;
use crate::proxy::{ExplicitProxy, ProxyContext, serve_explicit};
use crate::sandbox::Registry;
use crate::session::Sessions;
use crate::tls::{CertificateAuthority, LeafMinter, ServerConfigCache};
use crate::upstream::{UpstreamClient, UpstreamSettings};

/// How long in-flight connections get to finish after SIGTERM.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let _lock = DaemonLock::acquire(&config.capture.pin_dir)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.state_dir)
        .with_context(|| format!("daemon: create state_dir {}", config.state_dir.display()))?;
    let token = AdminToken::load_or_create(&config.admin_token_path())?;
    let (audit, audit_writer) = AuditLog::start(config.audit_target())?;

    let capture_config = capture_config(&config)?;
    let parent_cgroup = capture_config.parent_cgroup.clone();
    let capture = Arc::new(Capture::install(&capture_config)?);
    let registry = Arc::new(Registry::load(&config.state_dir.join("sandboxes.json"))?);
    let static_sessions =
        Arc::new(Sessions::from_config(&config.sessions).map_err(anyhow::Error::msg)?);
    let services = Arc::new(Services::start(&config, &static_sessions).await?);
    let gate = Arc::new(services.gate());
    let intercept = Arc::new(intercept_context(&config, &audit, gate.clone())?);
    let proxy = Arc::new(ProxyContext {
        capture: capture.clone(),
        sandboxes: registry.clone(),
        audit: audit.clone(),
        connect_timeout: config.connect_timeout(),
        allow_internal: config
            .upstream
            .allow_internal
            .iter()
            .filter_map(|c| Cidr::parse(c).ok())
            .collect(),
        max_connections: 65_536,
        detect_limits: Limits::default(),
        route_policy: config.policy.route_policy().map_err(anyhow::Error::msg)?,
        intercept,
        gate: Some(gate),
    });
    let drain = Drain::new();
    let node = Arc::new(Node::new(
        config.clone(),
        capture,
        registry,
        proxy,
        drain.clone(),
        parent_cgroup,
        services,
    ));

    let listen = &config.listen;
    let set = listeners::bind_here(listen.transparent_port, listen.dns_port)
        .context("daemon: bind the transparent and DNS listeners")?;
    node.serve(set, &drain, None)?;
    node.restore();
    let control = tokio::net::TcpListener::bind(listen.control)
        .await
        .with_context(|| format!("daemon: bind the control API on {}", listen.control))?;
    drain.spawn(serve_control(control, node.clone(), token, drain.clone()));
    if let Some(addr) = listen.proxy {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("daemon: bind the explicit proxy on {addr}"))?;
        let explicit = Arc::new(ExplicitProxy {
            ctx: node.proxy.clone(),
            sessions: static_sessions.clone(),
            cache: node.services.sessions.clone(),
            resolver: node.resolver.clone(),
        });
        drain.spawn(serve_explicit(listener, explicit, drain.clone()));
    }
    tracing::info!(
        transparent = listen.transparent_port,
        dns = listen.dns_port,
        control = %listen.control,
        parent_cgroup = %node.parent_cgroup.display(),
        sandboxes = node.registry.list().len(),
        "sluice: ready"
    );

    wait_for_signal().await?;
    tracing::info!("sluice: stopping (capture stays pinned: sandboxes are refused until restart)");
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

/// The interception engine: the CA (created on first run), leaf cache, upstream client.
fn intercept_context(
    config: &Config,
    audit: &AuditLog,
    gate: Arc<crate::gate::SessionGate>,
) -> anyhow::Result<InterceptContext> {
    let ca =
        CertificateAuthority::load_or_create(&config.state_dir, time::OffsetDateTime::now_utc())
            .context("daemon: load the CA")?;
    tracing::info!(origin = ?ca.origin(), fingerprint = ca.fingerprint_sha256(), not_after = %ca.not_after(), "ca: ready");
    crate::control::env::write_bundle(&config.state_dir, ca.cert_pem())
        .context("daemon: write ca-bundle.pem (system roots + the Sluice CA)")?;
    let minter = Arc::new(LeafMinter::new(Arc::new(ca))?);
    let upstream = UpstreamClient::new(UpstreamSettings {
        connect_timeout: config.connect_timeout(),
        extra_roots: config.upstream.extra_roots.clone(),
        ..UpstreamSettings::default()
    })?;
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

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("daemon: install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("daemon: install SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
