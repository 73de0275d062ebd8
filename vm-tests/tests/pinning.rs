//! Pinned links outlive the process that installed them, are re-adopted instead of attached
//! twice, keep enforcing (fail closed) while no daemon runs, and are removed by uninstall.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::{fs, process::Command};

use sluice::capture::{Capture, CaptureError, program_names};
use vm_tests::{TestEnv, attached_programs, finish, free_port};

fn assert_attached_once(env: &TestEnv) {
    let attached = attached_programs(&env.parent);
    assert_eq!(attached.len(), program_names().count(), "{attached:?}");
    for name in program_names() {
        assert_eq!(attached.get(name), Some(&1), "{name} in {attached:?}");
    }
}

const CONNECT: &str = r#"
import errno, socket
try:
    socket.create_connection(("198.51.100.7", 80), timeout=5)
    print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"#;

#[test]
fn reinstall_readopts_and_pins_fail_closed() {
    let env = TestEnv::new();
    let proxy_port = free_port(&env); // nothing listens there
    let cfg = env.config(proxy_port, free_port(&env));
    let capture = Capture::install(&cfg).unwrap();
    let sandbox = env.sandbox(&capture, "sb", 1);
    drop(capture);
    assert_attached_once(&env);

    // Daemon gone, links pinned: the connect is redirected to the dead listener.
    assert_eq!(
        finish(env.spawn_python(Some(&sandbox), CONNECT)).trim(),
        "ECONNREFUSED"
    );

    let again = Capture::install(&cfg).unwrap();
    assert_attached_once(&env);
    assert_eq!(
        again.sandboxes().unwrap().len(),
        1,
        "the pinned sandbox map survived"
    );
    let opened = Capture::open(&cfg).unwrap();
    assert_eq!(opened.sandboxes().unwrap(), again.sandboxes().unwrap());
    drop((again, opened));

    Capture::uninstall(&cfg).unwrap();
    Capture::uninstall(&cfg).unwrap();
    assert!(!env.pin_dir.exists(), "pins left behind");
    assert!(
        attached_programs(&env.parent).is_empty(),
        "programs still attached"
    );
    assert!(
        env.parent.exists(),
        "the parent holds a sandbox cgroup, so it stays"
    );
    assert!(matches!(
        Capture::open(&cfg),
        Err(CaptureError::NotInstalled(_))
    ));

    // Nothing attached any more: the sandbox is no longer redirected (the netns has no route).
    assert_eq!(
        finish(env.spawn_python(Some(&sandbox), CONNECT)).trim(),
        "ENETUNREACH"
    );
}

#[test]
fn pins_survive_the_installing_process() {
    let env = TestEnv::new();
    let cfg = env.config(free_port(&env), free_port(&env));
    // Install from a separate process that exits right away.
    let exe = std::env::current_exe().unwrap();
    let status = Command::new(exe)
        .args([
            "--exact",
            "install_in_child_process",
            "--ignored",
            "--nocapture",
        ])
        .env("SLUICE_TEST_PARENT", &cfg.parent_cgroup)
        .env("SLUICE_TEST_PIN_DIR", &cfg.pin_dir)
        .env(
            "SLUICE_TEST_PORTS",
            format!("{} {}", cfg.proxy_port, cfg.dns_port),
        )
        .status()
        .unwrap();
    assert!(status.success());
    assert_attached_once(&env);
    let capture = Capture::install(&cfg).unwrap();
    assert_attached_once(&env);
    drop(capture);
    Capture::uninstall(&cfg).unwrap();
    assert!(
        !cfg.parent_cgroup.exists(),
        "an empty parent cgroup is removed"
    );
}

/// Helper for `pins_survive_the_installing_process`; does nothing unless run by it.
#[test]
#[ignore = "run as a child process by pins_survive_the_installing_process"]
fn install_in_child_process() {
    let (Some(parent), Some(pin_dir), Some(ports)) = (
        std::env::var_os("SLUICE_TEST_PARENT"),
        std::env::var_os("SLUICE_TEST_PIN_DIR"),
        std::env::var("SLUICE_TEST_PORTS").ok(),
    ) else {
        return;
    };
    let (proxy, dns) = ports.split_once(' ').unwrap();
    let cfg = sluice::capture::CaptureConfig {
        parent_cgroup: parent.into(),
        pin_dir: pin_dir.into(),
        proxy_port: proxy.parse().unwrap(),
        dns_port: dns.parse().unwrap(),
        control_port: None,
        explicit_proxy_port: None,
        conn_cap_per_sandbox: None,
    };
    Capture::install(&cfg).unwrap();
}

#[test]
fn stale_links_of_a_removed_parent_are_replaced() {
    let env = TestEnv::new();
    let cfg = env.config(free_port(&env), free_port(&env));
    drop(Capture::install(&cfg).unwrap());
    // Someone removes the parent cgroup while the links stay pinned: the links go defunct.
    fs::remove_dir(&cfg.parent_cgroup).unwrap();
    let capture = Capture::install(&cfg).unwrap();
    assert_attached_once(&env);
    let sandbox = env.sandbox(&capture, "sb", 1);
    let proxy = env.listen(&format!("127.0.0.1:{}", cfg.proxy_port));
    let child = env.spawn_python(Some(&sandbox), CONNECT);
    let (stream, _) = vm_tests::accept_timeout(&proxy, std::time::Duration::from_secs(10));
    drop(stream);
    assert_eq!(finish(child).trim(), "connected");
}

#[test]
fn refuses_the_cgroup_root_and_foreign_paths() {
    let env = TestEnv::new();
    let mount = sluice::capture::cgroup2_mount().unwrap();
    for parent in [
        mount.clone(),
        mount.join("..").join("x"),
        "/tmp/not-a-cgroup".into(),
    ] {
        let cfg = sluice::capture::CaptureConfig {
            parent_cgroup: parent,
            ..env.config(1, 2)
        };
        let err = Capture::install(&cfg).expect_err("install must refuse");
        assert!(
            matches!(err, CaptureError::CgroupOutsideHierarchy { .. }),
            "{err}"
        );
    }
    let capture = env.install(free_port(&env), free_port(&env));
    assert!(matches!(
        capture.attach_extra(&mount),
        Err(CaptureError::CgroupOutsideHierarchy { .. })
    ));
    let extra = env.pin_dir.join("extra");
    assert!(!extra.exists() || fs::read_dir(extra).unwrap().next().is_none());
}

#[test]
fn pins_of_another_layout_are_refused_before_anything_is_replaced() {
    let env = TestEnv::new();
    let cfg = env.config(free_port(&env), free_port(&env));
    fs::create_dir_all(&env.pin_dir).unwrap();
    // A config map as an older sluice pinned it: 8-byte values.
    let old = env.pin_dir.join(gateway_common::map_names::CONFIG);
    let status = Command::new("bpftool")
        .args(["map", "create"])
        .arg(&old)
        .args([
            "type",
            "array",
            "key",
            "4",
            "value",
            "8",
            "entries",
            "1",
            "name",
            "SLUICE_CONFIG",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "bpftool map create");
    let err = Capture::install(&cfg).expect_err("install must refuse");
    assert!(
        matches!(
            err,
            CaptureError::IncompatiblePin {
                found: 8,
                want: 16,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("sluice uninstall"), "{err}");
    assert!(attached_programs(&env.parent).is_empty());
}
