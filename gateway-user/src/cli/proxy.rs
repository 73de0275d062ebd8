//! `sluice proxy`: the node's upstream (corporate) proxies.

use std::process::ExitCode;

use crate::api::ProxyTest;
use crate::config::Config;

/// `sluice proxy …`.
#[derive(Debug, clap::Subcommand)]
pub enum ProxyCommand {
    /// List the node's upstream proxies (passwords masked).
    List {
        /// Print the API's JSON answer.
        #[arg(long)]
        json: bool,
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
