//! `sluice run`: the node daemon with the control API on top of it.

use std::path::PathBuf;

use anyhow::Context;

use crate::config::Config;
use crate::control::auth::AdminToken;
use crate::control::serve_control;
use crate::daemon::Prepared;

/// Runs the daemon and its control API until SIGINT or SIGTERM; SIGHUP reloads the
/// configuration from `path` (the `--config` it was started with).
pub(super) async fn run(config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let prepared = Prepared::new(config, path)?;
    let token = AdminToken::load_or_create(&prepared.config().admin_token_path())?;
    let daemon = prepared.start().await?;
    let addr = daemon.node().config.listen.control;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("daemon: bind the control API on {addr}"))?;
    let drain = daemon.drain().clone();
    drain.spawn(serve_control(
        listener,
        daemon.node().clone(),
        token,
        drain.clone(),
    ));
    daemon.serve().await
}
