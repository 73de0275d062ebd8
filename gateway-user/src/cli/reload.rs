//! `sluice reload`: ask the running daemon to re-read its configuration file.

use std::process::ExitCode;

use crate::api::ReloadReport;
use crate::config::Config;

/// Calls `POST /v1/reload` and prints what changed, or the refusal (non-zero exit).
pub async fn run(config: &Config) -> ExitCode {
    let client = match super::client(config) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    match client.reload().await {
        Ok(report) => {
            print!("{}", render(&report));
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&e),
    }
}

/// The report as printed: a header line, then one indented line per change.
fn render(report: &ReloadReport) -> String {
    if report.changed.is_empty() {
        return format!("reloaded {}: nothing changed\n", report.source);
    }
    let mut out = format!("reloaded {}:\n", report.source);
    for change in &report.changed {
        out.push_str("  ");
        out.push_str(change);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_render_one_change_per_line() {
        let report = |changed: &[&str]| ReloadReport {
            source: "/etc/sluice/sluice.toml".into(),
            changed: changed.iter().map(|c| (*c).to_owned()).collect(),
        };
        assert_eq!(
            render(&report(&[])),
            "reloaded /etc/sluice/sluice.toml: nothing changed\n"
        );
        assert_eq!(
            render(&report(&[
                "policy.passthrough: added api.test",
                "sessions: added s2"
            ])),
            "reloaded /etc/sluice/sluice.toml:\n  policy.passthrough: added api.test\n  sessions: added s2\n"
        );
    }
}
