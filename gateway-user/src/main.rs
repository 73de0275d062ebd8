//! The `sluice` binary: CLI and node daemon.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
