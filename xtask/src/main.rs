//! `cargo xtask …`: set-up of the toolchain, running the daemon, the test suite and the
//! benchmark.
//!
//! Every command first makes sure the machine has what the build needs (see [`setup`]),
//! so a fresh machine needs no manual step.

mod bench;
mod cmd;
mod image;
mod layers;
mod setup;
mod test;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Sluice development tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what the build and the tests need when it is missing (a no-op when all is present).
    Setup,
    /// Build Sluice (release) and run the node daemon with embedded defaults.
    Run {
        /// Arguments passed to `sluice run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: unit tests, end-to-end tests and kernel tests (needs root).
    Test {
        /// Only run tests whose name contains this filter.
        filter: Option<String>,
    },
    /// Run the kernel tests on each kernel of the matrix: the host's natively, the others in
    /// qemu VMs booted from Debian's kernel packages (needs root).
    VmTest(vm::VmArgs),
    /// Check that no two source files of the daemon crate import each other, and that no
    /// module imports from a layer above it (the unit tests run this check too).
    Layers {
        /// The source directory of the crate to check. Default is gateway-user/src.
        src: Option<std::path::PathBuf>,
    },
    /// Build the node image (release binary, no base image, no pull) into podman's store.
    Image(image::ImageArgs),
    /// Benchmark Sluice against direct and peer proxies (PERFORMANCE.md); writes bench/results/.
    Bench(bench::BenchArgs),
    /// Load clients the benchmark runs (inside sandboxes for the capture path).
    #[command(hide = true)]
    BenchClient(bench::client::ClientArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(setup::Needs::ALL),
        Task::Run { args } => run_daemon(&args),
        Task::Test { filter } => test::run(filter.as_deref()),
        Task::VmTest(args) => vm::run(&args),
        Task::Layers { src } => layers::run(src.as_deref()),
        Task::Bench(args) => bench::run(&args),
        Task::Image(args) => image::run(&args),
        Task::BenchClient(args) => bench::client::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_daemon(args: &[String]) -> anyhow::Result<()> {
    setup::run(setup::Needs::BUILD)?;
    if setup::is_root() {
        setup::node_bpffs()?;
    }
    let bin = cmd::build_sluice(true)?;
    let mut run = std::process::Command::new(bin);
    run.arg("run").args(args);
    cmd::exec(run)
}
