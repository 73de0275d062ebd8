//! The node image: `cargo xtask image` builds it from scratch (no pull) into podman's store;
//! it starts, answers `--version` and `check-config`, and refuses to run without what it
//! needs from the node, with Sluice's own message.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The xtask binary: `$SLUICE_XTASK` (set by `cargo xtask test`), else the workspace's debug
/// build of it.
fn xtask() -> PathBuf {
    std::env::var_os("SLUICE_XTASK").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/xtask"),
        PathBuf::from,
    )
}

/// `podman run --rm FLAGS… TAG ARGS…` with runc (crun refuses this machine's hybrid cgroup
/// layout; see KERNEL.md).
fn podman_run(conf: &std::path::Path, flags: &[&str], tag: &str, args: &[&str]) -> Output {
    Command::new("podman")
        .args([
            "--cgroup-manager",
            "cgroupfs",
            "--runtime",
            "runc",
            "run",
            "--rm",
        ])
        .args(["--ulimit", "host", "--network", "none"])
        .args(flags)
        .arg(tag)
        .args(args)
        .env("CONTAINERS_CONF", conf)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Removes the test's image and host cgroup, even on failure.
struct Cleanup {
    tag: String,
    cgroup: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rmi", "--force", &self.tag])
            .output();
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

#[test]
fn the_image_builds_without_a_pull_starts_and_says_what_it_misses() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("containers.conf");
    std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
    let tag = format!("localhost/sluice-image-test:{}", std::process::id());
    let parent = format!("sluice-image-test-{}", std::process::id());
    let cgroup2 = sluice::capture::cgroup2_mount().unwrap();
    let _cleanup = Cleanup {
        tag: tag.clone(),
        cgroup: cgroup2.join(&parent),
    };

    let built = Command::new(xtask())
        .args(["image", "--tag", &tag, "--binary"])
        .arg(tests::sluice::binary())
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built));

    let version = podman_run(&conf, &[], &tag, &["--version"]);
    assert!(version.status.success(), "{}", text(&version));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("sluice {}", env!("CARGO_PKG_VERSION"))
    );
    let config = podman_run(&conf, &[], &tag, &["check-config"]);
    assert!(config.status.success(), "{}", text(&config));
    assert!(text(&config).contains("state_dir = \"/var/lib/sluice\""));

    // The node's cgroup and bpf filesystems mounted but not its /sys/fs/bpf: the daemon
    // refuses a bpffs of its own (its pins would vanish with the container).
    let toml = dir.path().join("sluice.toml");
    std::fs::write(
        &toml,
        format!("[capture]\nparent_cgroup = {parent:?}\npin_dir = \"/sys/fs/bpf/{parent}\"\n"),
    )
    .unwrap();
    let mount = format!("{}:/etc/sluice/sluice.toml:ro", toml.display());
    let no_bpf = podman_run(
        &conf,
        &[
            "--privileged",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup",
            "-v",
            &mount,
        ],
        &tag,
        &["run"],
    );
    let said = text(&no_bpf);
    eprintln!("without /sys/fs/bpf: {said}");
    assert!(!no_bpf.status.success(), "{said}");
    assert!(
        said.contains("sluice: ") && said.contains("/sys/fs/bpf") && !said.contains("panicked"),
        "{said}"
    );
}
