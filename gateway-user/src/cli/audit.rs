//! `sluice audit`, `sluice env` and `sluice policy suggest`: reading what the node recorded
//! and what a sandbox needs.

use std::process::ExitCode;

use crate::config::Config;
use crate::control::client::encode;
use crate::control::env::EnvFormat;

/// Arguments of `sluice audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this session's records.
    #[arg(long)]
    session: Option<String>,
    /// Only records of this kind: connection, request, dns, sandbox, config.
    #[arg(long)]
    kind: Option<String>,
    /// How many of the newest records to print first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Keep printing new records as they are written (Ctrl-C stops).
    #[arg(long)]
    follow: bool,
    /// Print each record as one JSON line.
    #[arg(long)]
    json: bool,
}

/// `sluice policy …`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Print the smallest policy that would have allowed what a session did.
    Suggest {
        /// The session.
        #[arg(long)]
        session: String,
    },
}

/// Prints records, then follows if asked.
pub async fn run(config: &Config, args: AuditArgs) -> ExitCode {
    let client = match super::client(config) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    let mut base = String::new();
    for (key, value) in [("session", &args.session), ("kind", &args.kind)] {
        if let Some(value) = value {
            base.push_str(&format!("{key}={}&", encode(value)));
        }
    }
    let mut query = format!("{base}limit={}", args.limit);
    loop {
        let page = match client.audit(&query).await {
            Ok(page) => page,
            Err(e) => return super::fail(&e),
        };
        for record in &page.records {
            if args.json {
                println!("{record}");
            } else {
                println!("{}", line(record));
            }
        }
        if !args.follow {
            return ExitCode::SUCCESS;
        }
        query = format!("{base}limit=1000&follow=30&after={}", encode(&page.next));
    }
}

/// One record as a short human line.
fn line(record: &serde_json::Value) -> String {
    let text = |key: &str| record.get(key).and_then(|v| v.as_str()).unwrap_or("-");
    let mut out = format!(
        "{} {:<10} {:<6}",
        text("time"),
        text("kind"),
        text("decision")
    );
    if let Some(session) = record.get("session").and_then(|v| v.as_str()) {
        out.push_str(&format!(" session={session}"));
    }
    match record.get("url").and_then(|v| v.as_str()) {
        Some(url) => {
            let status = record
                .get("status")
                .map(ToString::to_string)
                .unwrap_or_default();
            out.push_str(&format!(" {} {url} {status}", text("method")));
        }
        None => out.push_str(&format!(" {} {}", text("host"), text("destination"))),
    }
    if let Some(reason) = record.get("reason").and_then(|v| v.as_str()) {
        out.push_str(&format!(" ({reason})"));
    }
    out
}

/// `sluice env [--session ID] [--proxy] [--format …]`.
pub async fn env(
    config: &Config,
    session: Option<&str>,
    proxy: bool,
    format: EnvFormat,
) -> ExitCode {
    let client = match super::client(config) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    match client.sandbox_env(session, proxy).await {
        Ok(env) => match env.render(format) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => super::fail(&e),
        },
        Err(e) => super::fail(&e),
    }
}

/// `sluice policy suggest --session ID`.
pub async fn policy(config: &Config, command: PolicyCommand) -> ExitCode {
    let client = match super::client(config) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    let PolicyCommand::Suggest { session } = command;
    let policy = match client.suggest_policy(&session).await {
        Ok(policy) => policy,
        Err(e) => return super::fail(&e),
    };
    // The policy on stdout (to save and apply); what to do about clients that refused
    // Sluice's certificate on stderr, for the operator.
    println!(
        "{}",
        serde_json::to_string_pretty(&policy).unwrap_or_default()
    );
    match client.trust_advice(&session).await {
        Ok(list) => {
            for advice in list.advice {
                eprintln!("sluice: trust: {}", advice.message);
            }
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&e),
    }
}
