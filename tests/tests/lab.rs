//! Tests of the test lab itself (root only): namespaces, isolation, fakes, certs, cgroups.

#![expect(clippy::expect_used, reason = "tests")]

#[path = "lab/fakes.rs"]
mod fakes;

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tests::addrs::{self, HOST_A};
use tests::netlab::{NET_VETH, NODE_VETH};
use tests::upstream::{self, UpstreamError};
use tests::{NetLab, TestCgroup};

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `curl -sS <args>` from the node namespace.
fn curl(lab: &NetLab, args: &[&str]) -> Output {
    run(lab
        .exec_in_node("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args))
}

fn ip_out(args: &[&str]) -> String {
    let out = run(Command::new("ip").args(args));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

#[test]
fn namespaces_exist_and_are_removed_on_drop() {
    let lab = NetLab::new("sl").unwrap();
    let (node, net) = (lab.node_ns().to_owned(), lab.net_ns().to_owned());
    assert_ne!(node, net);
    assert!(lab.node_ns_path().exists() && lab.net_ns_path().exists());
    let listed = ip_out(&["netns", "list"]);
    assert!(listed.contains(&node) && listed.contains(&net), "{listed}");
    // The veth exists only inside the lab, never in the host namespace.
    assert!(ip_out(&["-n", &node, "link", "show", NODE_VETH]).contains(NODE_VETH));
    assert!(ip_out(&["-n", &net, "link", "show", NET_VETH]).contains(NET_VETH));
    assert!(!ip_out(&["link", "show"]).contains(NODE_VETH));
    let other = NetLab::new("sl").unwrap();
    assert_ne!(other.node_ns(), node);
    drop((lab, other));
    let listed = ip_out(&["netns", "list"]);
    assert!(
        !listed.contains(&node) && !listed.contains(&net),
        "{listed}"
    );
    assert!(!tests::netlab::netns_path(&node).exists());
}

#[test]
fn no_default_route_and_test_hosts_route_via_lab_veth() {
    let lab = NetLab::new("sl").unwrap();
    for ns in [lab.node_ns(), lab.net_ns()] {
        for family in ["-4", "-6"] {
            let out = ip_out(&["-n", ns, family, "route", "show", "default"]);
            assert!(out.trim().is_empty(), "{ns} {family}: {out}");
        }
    }
    for host in addrs::TEST_HOSTS {
        assert_eq!(lab.route_dev(host).unwrap(), NODE_VETH, "{host}");
    }
    // Anything else is unreachable from the node: no way out of the lab.
    for outside in ["192.0.2.1", "192.0.2.2", "1.1.1.1", "2606:4700::1111"] {
        let out = run(Command::new("ip").args(["-n", lab.node_ns(), "route", "get", outside]));
        assert!(
            !out.status.success(),
            "{outside} is routable: {}",
            stdout(&out)
        );
    }
}

#[test]
fn nothing_in_the_lab_touches_192_0_2() {
    let lab = NetLab::new("sl").unwrap();
    for ns in [lab.node_ns(), lab.net_ns()] {
        for what in [
            &["addr"][..],
            &["-4", "route"],
            &["-6", "route"],
            &["neigh"],
        ] {
            let out = ip_out(&[&["-n", ns][..], what].concat());
            assert!(!out.contains("192.0.2."), "{ns} {what:?}: {out}");
        }
    }
    for ip in ["192.0.2.1", "192.0.2.10", "10.0.0.1", "127.0.0.1"] {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(lab.add_host(ip).is_err(), "{ip}");
        let started = upstream::http().route("/", "x").start(&lab, sa(ip, 80));
        assert!(
            matches!(started, Err(UpstreamError::NotTestAddress(_))),
            "{ip}"
        );
        assert!(upstream::tcp_echo().start(&lab, sa(ip, 7)).is_err(), "{ip}");
    }
}

#[test]
fn cgroup_holds_node_processes_and_cleans_up() {
    let mount = tests::cgroup::cgroup2_mount().unwrap();
    assert!(mount.join("cgroup.procs").exists(), "{}", mount.display());
    let lab = NetLab::new("sl").unwrap();
    let up = upstream::http()
        .route("/", "from-cgroup")
        .start(&lab, sa(HOST_A, 80))
        .unwrap();
    let cg = TestCgroup::unique("sl-lab").unwrap();
    let path = cg.path().to_owned();
    assert!(path.starts_with(&mount));
    assert_eq!(cg.id(), std::fs::metadata(&path).unwrap().ino());

    // curl in the cgroup and in the node namespace, and it reports its own cgroup.
    let mut probe = lab.exec_in_node("sh");
    probe.args([
        "-c",
        r#"cat /proc/self/cgroup; curl -sS "$0""#,
        &up.url("/"),
    ]);
    let out = run(&mut cg.wrap(&probe));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "0::/{}",
            path.file_name().unwrap().to_str().unwrap()
        )),
        "{text}"
    );
    assert!(text.ends_with("from-cgroup"), "{text}");

    let mut sleeper = cg.command("sleep").arg("60").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cg.procs().unwrap().contains(&sleeper.id()) {
        assert!(Instant::now() < deadline, "sleep never joined the cgroup");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(cg);
    assert!(!sleeper.wait().unwrap().success(), "killed on drop");
    assert!(!path.exists());
}

#[test]
fn closures_and_threads_run_inside_the_namespaces() {
    let lab = NetLab::new("sl").unwrap();
    let ino = |path: std::path::PathBuf| std::fs::metadata(path).unwrap().ino();
    let (node, net) = (ino(lab.node_ns_path()), ino(lab.net_ns_path()));
    let here = move || ino("/proc/thread-self/ns/net".into());
    assert_eq!(lab.in_node(here).unwrap(), node);
    assert_eq!(lab.in_net(here).unwrap(), net);
    let thread = lab
        .spawn_in_node("probe", move || {
            let child = std::thread::spawn(here).join().unwrap();
            (here(), child)
        })
        .unwrap();
    assert_eq!(
        thread.join().unwrap(),
        (node, node),
        "spawned threads inherit"
    );
    assert_ne!(here(), node);
    let missing = tests::netlab::netns_path("sl-does-not-exist");
    assert!(tests::netlab::in_netns(&missing, || ()).is_err());
    assert!(tests::netlab::spawn_in_netns(&missing, "x", || ()).is_err());
}

#[test]
fn labs_build_in_parallel() {
    let labs: Vec<NetLab> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| NetLab::new("slpar").unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut names: Vec<&str> = labs
        .iter()
        .flat_map(|l| [l.node_ns(), l.net_ns()])
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 8);
}

#[test]
fn lab_and_fakes_are_cleaned_up_when_a_test_panics() {
    let seen = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = NetLab::new("slpanic").unwrap();
        let up = upstream::http()
            .route("/", "x")
            .start(&lab, sa(HOST_A, 80))
            .unwrap();
        let cg = TestCgroup::unique("sl-panic").unwrap();
        *seen.lock().unwrap() = Some((lab.node_ns_path(), lab.net_ns_path(), cg.path().to_owned()));
        let _keep = (&up, &cg);
        panic!("simulated test failure");
    }));
    assert!(result.is_err());
    let (node, net, cgroup) = seen.lock().unwrap().take().unwrap();
    assert!(!node.exists() && !net.exists() && !cgroup.exists());
}
