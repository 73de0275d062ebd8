//! Builds the kernel programs (`gateway-ebpf`) for `bpfel-unknown-none` with aya-build and
//! leaves the object at `$OUT_DIR/gateway-ebpf`, where `sluice::capture` embeds it.
//!
//! `AYA_BUILD_SKIP=1` skips the eBPF build (clippy, docs, machines without nightly): an empty
//! object is embedded and loading it at runtime fails with a clear error.

use std::{env, fs, path::PathBuf};

use aya_build::{Package, Toolchain};

fn main() -> aya_build::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let ebpf_dir = manifest_dir
        .join("..")
        .join("gateway-ebpf")
        .canonicalize()?;
    let common_dir = manifest_dir
        .join("..")
        .join("gateway-common")
        .canonicalize()?;
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    println!("cargo:rerun-if-changed={}", common_dir.display());

    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        fs::write(out_dir.join("gateway-ebpf"), [])?;
        println!(
            "cargo:warning=AYA_BUILD_SKIP is set: kernel programs not built, capture cannot load"
        );
        return Ok(());
    }

    if !on_path("bpf-linker") {
        return Err(std::io::Error::other(
            "bpf-linker not found on PATH: the kernel programs cannot be linked. Run the project \
             setup (cargo xtask), or `LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker \
             --no-default-features --features llvm-22`, or build with AYA_BUILD_SKIP=1 to skip \
             the kernel programs",
        )
        .into());
    }

    // gateway-ebpf is its own workspace (excluded from the root one): aya-build runs
    // `cargo build --package gateway-ebpf` in the current directory, so run it from there.
    env::set_current_dir(&ebpf_dir)?;
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| std::io::Error::other("gateway-ebpf path is not UTF-8"))?;
    aya_build::build_ebpf(
        [Package {
            name: "gateway-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}

/// Is an executable named `name` in one of the `PATH` directories?
fn on_path(name: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}
