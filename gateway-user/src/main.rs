//! The `sluice` binary: CLI and node daemon.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Installed as `sluice-runtime-<runtime>`: the OCI runtime wrapper.
    if std::env::args_os()
        .next()
        .is_some_and(|argv0| sluice::cli::runtime::is_wrapper(&argv0))
    {
        return sluice::cli::runtime::wrapper_main();
    }
    init_logging();
    sluice::cli::Cli::parse().run()
}

/// Logs to stderr (colours only on a terminal); `RUST_LOG` overrides the default `info` level.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
