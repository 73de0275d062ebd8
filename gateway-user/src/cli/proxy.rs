//! `sluice proxy`: the node's upstream (corporate) proxies.

use std::process::ExitCode;

use crate::api::{ProxyTest, ProxyView};
use crate::config::Config;
use crate::upstream::egress::{ConnectTo, ProxySpec};

/// `sluice proxy …`.
#[derive(Debug, clap::Subcommand)]
pub enum ProxyCommand {
    /// List the node's upstream proxies (passwords masked).
    List {
        /// Print the API's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Create an upstream proxy through the API. It is kept in the session store, so every
    /// node sharing the store (Redis) can use it; its password is sealed with the master key
    /// and shown nowhere. Proxies of the node's file cannot be changed here.
    Add {
        /// Its id: lowercase letters, digits, '-', '_', '.'; not none, direct, refused, env.
        id: String,
        /// `http[s]://[user:password@]host[:port]`. Give `env:VAR`, `file:PATH` or `-`
        /// (stdin) to keep a password out of `ps` and shell history.
        url: String,
        /// What errors, audit records and listings call it (default: the id).
        #[arg(long)]
        label: Option<String>,
        /// A destination that goes direct: HOST, *.SUFFIX, .SUFFIX or CIDR, optionally
        /// :PORT. Repeat for more.
        #[arg(long = "no-proxy", value_name = "ENTRY")]
        no_proxy: Vec<String>,
        /// What the CONNECT names: the host name (corporate proxies filter by name) or
        /// the resolved address Sluice checked.
        #[arg(long, value_enum, default_value = "name")]
        connect_to: ConnectToArg,
        /// Make it the node default (over the file's default) on every node sharing the
        /// store.
        #[arg(long)]
        default: bool,
        /// Replace a proxy of the same id created through the API.
        #[arg(long)]
        replace: bool,
        /// Print the API's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Remove a proxy created through the API (not while it is the default). Sessions and
    /// sandboxes that name it are refused, never sent direct.
    Remove {
        /// The proxy's id.
        id: String,
    },
    /// Make a proxy created through the API the node default, or (`--unset`) stop it being
    /// the default.
    Default {
        /// The proxy's id.
        id: String,
        /// Stop it being the default (the file's default, the environment's proxy, or
        /// direct apply again).
        #[arg(long)]
        unset: bool,
    },
    /// Open a tunnel through a proxy and report what it answered and how long it took
    /// (at most 5 tests a minute per proxy).
    Test {
        /// The proxy's id (`sluice proxy list`).
        id: String,
        /// Where to tunnel to, as HOST:PORT.
        #[arg(long, default_value = crate::control::proxies::DEFAULT_TARGET)]
        target: String,
        /// Print the API's JSON answer.
        #[arg(long)]
        json: bool,
    },
}

/// `--connect-to`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ConnectToArg {
    /// The host name.
    Name,
    /// The checked address.
    Address,
}

/// Runs a `sluice proxy` command.
pub async fn run(config: &Config, command: &ProxyCommand) -> ExitCode {
    let client = match super::client(config) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    match command {
        ProxyCommand::List { json } => match client.proxies().await {
            Ok(list) if *json => super::print_json(&list),
            Ok(list) => {
                println!(
                    "{:<12} {:<8} {:<8} {:<20} URL",
                    "ID", "SOURCE", "DEFAULT", "LABEL"
                );
                for p in list {
                    let default = if p.default { "yes" } else { "-" };
                    println!(
                        "{:<12} {:<8} {:<8} {:<20} {}",
                        p.id, p.source, default, p.label, p.url
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => super::fail(&e),
        },
        ProxyCommand::Add {
            id,
            url,
            label,
            no_proxy,
            connect_to,
            default,
            replace,
            json,
        } => {
            let url = match super::session::read_value("URL", url, &mut std::io::stdin()) {
                Ok(url) => url,
                Err(e) => return super::fail(&e),
            };
            let spec = ProxySpec {
                id: id.clone(),
                label: label.clone(),
                url,
                default: *default,
                no_proxy: no_proxy.clone(),
                connect_to: match connect_to {
                    ConnectToArg::Name => ConnectTo::Name,
                    ConnectToArg::Address => ConnectTo::Address,
                },
            };
            match client.put_proxy(&spec, *replace).await {
                Ok(view) if *json => super::print_json(&view),
                Ok(view) => shown("stored", &view),
                Err(e) => super::fail(&e),
            }
        }
        ProxyCommand::Remove { id } => match client.remove_proxy(id).await {
            Ok(view) => shown("removed", &view),
            Err(e) => super::fail(&e),
        },
        ProxyCommand::Default { id, unset } => match client.default_proxy(id, !unset).await {
            Ok(view) => shown(
                if *unset {
                    "no longer the default"
                } else {
                    "the default"
                },
                &view,
            ),
            Err(e) => super::fail(&e),
        },
        ProxyCommand::Test { id, target, json } => {
            let request = ProxyTest {
                target: Some(target.clone()),
            };
            match client.test_proxy(id, &request).await {
                Ok(result) if *json => {
                    let code = super::print_json(&result);
                    if result.ok { code } else { ExitCode::FAILURE }
                }
                Ok(result) => {
                    let verdict = if result.ok { "ok" } else { "FAILED" };
                    println!(
                        "{} ({}) -> {}: {verdict} in {:.0} ms: {}",
                        result.id, result.label, result.target, result.latency_ms, result.message
                    );
                    if result.ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => super::fail(&e),
            }
        }
    }
}

/// Prints one proxy after a change.
fn shown(what: &str, view: &ProxyView) -> ExitCode {
    let default = if view.default { ", default" } else { "" };
    println!(
        "{} ({}): {what}{default}; {}",
        view.id, view.label, view.url
    );
    ExitCode::SUCCESS
}
