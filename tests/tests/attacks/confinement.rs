//! A `sluice exec` sandbox is not root on the node: its secrets, processes, files, sysctls,
//! cgroups, Unix services and namespaces are out of reach, whatever uid the workload has.

use std::process::Stdio;

use super::range::{EXEC_MODES, Mode, Range};

const EPERM: u64 = 1;
const EBADF: u64 = 9;

#[test]
fn reading_the_master_key_fails() {
    let range = Range::plain();
    let key = range.state_dir().join("master.key");
    assert!(key.exists(), "the daemon made {}", key.display());
    for mode in EXEC_MODES {
        let shot = range.fire(mode, &[], "read", &[key.to_str().unwrap()]);
        shot.assert_refused("reading the master key");
    }
}

#[test]
fn reading_the_admin_token_fails() {
    let range = Range::plain();
    let token = range.state_dir().join("admin.token");
    for mode in EXEC_MODES {
        let shot = range.fire(mode, &[], "read", &[token.to_str().unwrap()]);
        shot.assert_refused("reading the admin token");
    }
}

#[test]
fn reading_the_ca_private_key_fails() {
    let range = Range::plain();
    let key = range.state_dir().join("ca-key.pem");
    assert!(key.exists());
    for mode in EXEC_MODES {
        let shot = range.fire(mode, &[], "read", &[key.to_str().unwrap()]);
        shot.assert_refused("reading the CA key");
    }
}

#[test]
fn the_state_dir_shows_only_the_public_ca_files() {
    let range = Range::plain();
    let dir = range.state_dir();
    for mode in EXEC_MODES {
        let shot = range.fire(mode, &[], "list-dir", &[dir.to_str().unwrap()]);
        // The public trust files `sluice env` points at: certificates, and a wget setting.
        assert_eq!(
            shot.got["detail"],
            serde_json::json!(["ca-bundle.pem", "ca.pem", "certs", "wgetrc"]),
            "{mode:?}: {}",
            shot.got
        );
        let certs = dir.join("certs");
        let shot = range.fire(mode, &[], "list-dir", &[certs.to_str().unwrap()]);
        let names = shot.got["detail"].as_array().cloned().unwrap_or_default();
        assert!(
            !names.is_empty()
                && names.iter().all(|n| {
                    let n = n.as_str().unwrap_or_default();
                    n.ends_with(".0") || n == "ca-certificates.crt" || n == "java"
                }),
            "{mode:?}: certs/ holds certificates only: {}",
            shot.got
        );
        let ca = range.fire(mode, &[], "read", &[dir.join("ca.pem").to_str().unwrap()]);
        assert!(
            !ca.refused(),
            "the CA certificate stays readable: {}",
            ca.got
        );
        let write = range.fire(mode, &[], "write", &[dir.join("ca.pem").to_str().unwrap()]);
        write.assert_refused("replacing the CA certificate");
    }
}

#[test]
fn rewriting_the_daemon_config_fails() {
    let range = Range::plain();
    let config = range.sluice.config_path().to_path_buf();
    let before = std::fs::read(&config).unwrap();
    for mode in EXEC_MODES {
        let path = config.to_str().unwrap();
        range
            .fire(mode, &[], "write", &[path])
            .assert_refused("writing the config");
        range
            .fire(mode, &[], "read", &[path])
            .assert_refused("reading the config");
    }
    assert_eq!(std::fs::read(&config).unwrap(), before);
}

#[test]
fn the_daemon_is_invisible_and_cannot_be_signalled() {
    let mut range = Range::plain();
    let daemon = range.sluice.pid().unwrap();
    for mode in EXEC_MODES {
        let seen = range.fire(mode, &[], "processes", &[]);
        let pids: Vec<u64> = serde_json::from_value(seen.got["detail"].clone()).unwrap();
        assert!(
            pids.iter().all(|p| *p <= 3),
            "{mode:?}: a sandbox sees only its own processes: {pids:?}"
        );
        let shot = range.fire(mode, &[], "signal", &[&daemon.to_string()]);
        shot.assert_refused("signalling the daemon");
    }
    assert!(range.sluice.is_running());
}

#[test]
fn another_sandbox_cannot_be_seen_or_traced() {
    let range = Range::plain();
    let mut victim = range
        .sluice
        .exec(&[], &["sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let victim_pids = wait_for_sandbox_procs(&range, 2);
    for mode in EXEC_MODES {
        for pid in &victim_pids {
            let shot = range.fire(mode, &[], "ptrace", &[&pid.to_string()]);
            shot.assert_refused("tracing another sandbox");
            let shot = range.fire(mode, &[], "signal", &[&pid.to_string()]);
            shot.assert_refused("signalling another sandbox");
        }
    }
    let _ = victim.kill();
    let _ = victim.wait();
}

#[test]
fn host_sysctls_cannot_be_written() {
    let range = Range::plain();
    for mode in EXEC_MODES {
        for sysctl in ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/hostname"] {
            range
                .fire(mode, &[], "write", &[sysctl])
                .assert_refused(sysctl);
        }
    }
}

#[test]
fn host_files_cannot_be_written() {
    let range = Range::plain();
    let dir = tempfile::tempdir().unwrap();
    let owned = dir.path().join("root-owned");
    std::fs::write(&owned, b"original").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for mode in EXEC_MODES {
        let etc = format!("/etc/sluice-attack-{}", std::process::id());
        range
            .fire(mode, &[], "write", &[&etc])
            .assert_refused("writing /etc");
        assert!(!std::path::Path::new(&etc).exists());
        range
            .fire(mode, &[], "write", &[owned.to_str().unwrap()])
            .assert_refused("writing a root-owned file");
    }
    assert_eq!(std::fs::read(&owned).unwrap(), b"original");
}

#[test]
fn the_cgroup_cannot_be_left() {
    let range = Range::plain();
    for mode in EXEC_MODES {
        range
            .fire(mode, &[], "cgroup-escape", &[])
            .assert_refused("moving to the root cgroup");
    }
}

#[test]
fn host_unix_services_are_unreachable() {
    use std::os::unix::fs::PermissionsExt;
    let range = Range::plain();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("service.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    listener.set_nonblocking(true).unwrap();
    for mode in EXEC_MODES {
        let shot = range.fire(mode, &[], "unix-connect", &[path.to_str().unwrap()]);
        shot.assert_refused("connecting to a host Unix socket");
        assert_eq!(shot.errno(), Some(EPERM), "{}", shot.got);
    }
    assert!(listener.accept().is_err(), "the service saw no connection");
}

#[test]
fn inherited_descriptors_are_closed() {
    let range = Range::plain();
    let secret = range.state_dir().join("master.key");
    for mode in EXEC_MODES {
        // The launcher of `sluice exec` holds fd 3 open on the master key (not close-on-exec).
        let mut argv = vec!["sh", "-c", r#"exec 3<"$0"; exec "$@""#];
        let script = range.sluice.command();
        let program = script.get_program().to_string_lossy().into_owned();
        let args: Vec<String> = script
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let secret_path = secret.to_string_lossy().into_owned();
        argv.push(&secret_path);
        argv.push(&program);
        argv.extend(args.iter().map(String::as_str));
        argv.push("exec");
        if mode == Mode::Shared {
            argv.push("--share-netns");
        }
        argv.extend(["--", "python3", "-c", "import os; os.fstat(3)"]);
        let out = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("Bad file descriptor"),
            "{mode:?}: fd 3 reached the workload: {out:?}"
        );
        let _ = EBADF;
    }
}

#[test]
fn new_namespaces_cannot_be_made() {
    let range = Range::plain();
    for mode in EXEC_MODES {
        for flags in ["0x10000000", "0x40000000", "0x20000", "0x20000000"] {
            let shot = range.fire(mode, &[], "unshare", &[flags]);
            shot.assert_refused("unshare");
            assert_eq!(shot.errno(), Some(EPERM), "{flags}: {}", shot.got);
        }
    }
}

#[test]
fn the_node_network_namespace_cannot_be_joined() {
    let range = Range::plain();
    let node_ns = range.lab.node_ns_path();
    for mode in EXEC_MODES {
        let shot = range.fire(mode, &[], "setns", &[node_ns.to_str().unwrap()]);
        shot.assert_refused("setns into the node namespace");
    }
}

#[test]
fn the_masks_cannot_be_removed() {
    let range = Range::plain();
    let dir = range.state_dir();
    for mode in EXEC_MODES {
        range
            .fire(mode, &[], "umount", &[dir.to_str().unwrap()])
            .assert_refused("unmounting the state dir mask");
        range
            .fire(mode, &[], "mount", &["/tmp"])
            .assert_refused("mounting a filesystem");
    }
}

#[test]
fn io_uring_and_bpf_are_refused() {
    let range = Range::plain();
    for mode in EXEC_MODES {
        range
            .fire(mode, &[], "io-uring", &[])
            .assert_refused("io_uring_setup");
        range.fire(mode, &[], "bpf", &[]).assert_refused("bpf()");
    }
}

/// Host pids of the processes in sandboxes other than the range's enrolled one, once at
/// least `n` are running.
fn wait_for_sandbox_procs(range: &Range, n: usize) -> Vec<u32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut pids = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&range.sluice.parent_cgroup) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("sb-") {
                    let procs = std::fs::read_to_string(entry.path().join("cgroup.procs"))
                        .unwrap_or_default();
                    pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
                }
            }
        }
        if pids.len() >= n || std::time::Instant::now() > deadline {
            return pids;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_workload_is_root_only_inside_its_own_user_namespace() {
    let range = Range::plain();
    let out = range.output(
        Mode::Exec,
        &[],
        &["sh", "-c", "id -u; cat /proc/self/uid_map"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("0"), "root inside: {out:?}");
    let map: Vec<u64> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(map[0], 0);
    assert!(
        map[1] >= 0x5000_0000,
        "mapped to an unprivileged range: {map:?}"
    );
    let user = range.output(Mode::Exec, &["--user", "nobody"], &["id", "-u"]);
    assert_eq!(
        String::from_utf8_lossy(&user.stdout).trim(),
        "65534",
        "{user:?}"
    );
    let root = range.output(Mode::Exec, &["--user", "root"], &["true"]);
    assert!(!root.status.success());
    assert!(
        String::from_utf8_lossy(&root.stderr).contains("never runs as the node's root"),
        "{root:?}"
    );
}

#[test]
fn secrets_in_the_callers_environment_stay_out() {
    let range = Range::plain();
    for mode in EXEC_MODES {
        let mut cmd = range.sluice.exec(
            if mode == Mode::Shared {
                &["--share-netns", "--env", "MODEL"]
            } else {
                &["--env", "MODEL"]
            },
            &["env"],
        );
        cmd.env("OPENAI_KEY", "sk-real-attack-value")
            .env("AWS_SECRET_ACCESS_KEY", "aws-real-attack-value")
            .env("OPENAI_API_KEY", "sluice_cred:OPENAI_API_KEY")
            .env("MODEL", "small");
        let out = cmd.output().unwrap();
        let env = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(!env.contains("real-attack-value"), "{mode:?}: {env}");
        assert!(
            env.contains("OPENAI_API_KEY=sluice_cred:OPENAI_API_KEY"),
            "{env}"
        );
        assert!(
            env.contains("MODEL=small"),
            "--env passes a named variable: {env}"
        );
    }
}

#[test]
fn the_nodes_home_and_temp_dirs_are_not_shared() {
    let range = Range::plain();
    let marker = format!("sl-private-{}", std::process::id());
    for mode in EXEC_MODES {
        let root = range.output(mode, &[], &["ls", "-A", "/root"]);
        assert!(root.status.success(), "{root:?}");
        assert!(
            root.stdout.is_empty(),
            "{mode:?}: the node's /root shows: {root:?}"
        );
        for dir in ["/tmp", "/dev/shm", "/var/tmp"] {
            let path = format!("{dir}/{marker}");
            let wrote = range.output(mode, &[], &["sh", "-c", &format!("echo drop > {path}")]);
            assert!(
                wrote.status.success(),
                "{mode:?}: {dir} is writable inside: {wrote:?}"
            );
            let read = range.output(mode, &[], &["cat", &path]);
            assert!(
                !read.status.success(),
                "{mode:?}: another sandbox read {path}"
            );
            assert!(
                !std::path::Path::new(&path).exists(),
                "the node's {dir} got the file"
            );
        }
    }
}

#[test]
fn a_working_directory_in_a_hidden_place_is_no_way_around() {
    let range = Range::plain();
    let state = range.state_dir();
    for mode in EXEC_MODES {
        let mut cmd = range.sluice.exec(
            if mode == Mode::Shared {
                &["--share-netns"]
            } else {
                &[]
            },
            &["sh", "-c", "ls -A .; cat ./master.key ../state/master.key"],
        );
        let out = cmd.current_dir(&state).output().unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(!listing.contains("master.key"), "{mode:?}: {out:?}");
        assert!(!out.status.success(), "{mode:?}: the key was read: {out:?}");
    }
}
