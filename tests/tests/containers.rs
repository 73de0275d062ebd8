//! Containers captured from birth: real podman and runc, with Sluice's OCI runtime wrapper
//! (`sluice-runtime-runc`) in front of runc. A container annotated `sluice.dev/session` (or
//! `sluice.dev/capture`) is enrolled between `create` and `start`, so its entrypoint's first
//! connection is captured; one without the annotation is untouched; if enrollment fails the
//! container does not start; deleting it removes every trace.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use tests::addrs;
use tests::api_lab::ApiLab;
use tests::netlab::NODE_VETH;
use tests::podman::Podman;
use tests::sluice::Sluice;

const SECRET: &str = "sk-live-container-0123456789abcdef";

/// The api.test stage and a podman of the test's own. Fields drop in order: the containers
/// go before the daemon and the namespaces.
struct World {
    podman: Podman,
    base: ApiLab,
}

impl std::ops::Deref for World {
    type Target = ApiLab;

    fn deref(&self) -> &ApiLab {
        &self.base
    }
}

fn world(name: &str) -> World {
    let base = ApiLab::start(name).unwrap();
    let podman = Podman::new(&base.sluice, &base.lab.node_ns_path()).unwrap();
    World { podman, base }
}

impl World {
    /// A session holding `SECRET` for api.test; (id, the placeholder the sandbox sees).
    fn session(&self) -> (String, String) {
        let (id, _) = self
            .sluice
            .create_session(
                &["--cred", "API_KEY=env:SECRET@api.test"],
                &[("SECRET", SECRET)],
            )
            .unwrap();
        let out = self
            .sluice
            .command()
            .args(["env", "--session", &id, "--format", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let env: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let placeholder = env["API_KEY"].as_str().unwrap().to_owned();
        assert_ne!(placeholder, SECRET);
        (id, placeholder)
    }

    /// A new session's `podman run` flags for a container in `network`: the annotation, the
    /// placeholder in `$API_KEY`, Sluice's CA at `/sluice-ca.pem`; (session, flags).
    fn captured(&self, network: &str) -> (String, Vec<String>) {
        let (session, placeholder) = self.session();
        let flags = [
            "--network",
            network,
            "--annotation",
            &format!("sluice.dev/session={session}"),
            "--env",
            &format!("API_KEY={placeholder}"),
            "--volume",
            &ca_volume(&self.sluice),
        ]
        .map(str::to_owned)
        .to_vec();
        (session, flags)
    }

    /// The requests the test host received under `/name`, with their `Authorization`.
    fn received(&self, name: &str) -> Vec<Option<String>> {
        let prefix = format!("/{name}");
        self.api
            .requests()
            .iter()
            .filter(|r| r.uri.path().starts_with(&prefix))
            .map(|r| {
                r.headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .collect()
    }

    /// The sandboxes the daemon lists.
    fn sandboxes(&self) -> Vec<serde_json::Value> {
        let out = self
            .sluice
            .command()
            .args(["sandboxes", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The entrypoint itself: an HTTPS request carrying the placeholder (trusting Sluice's CA,
/// mounted at `/sluice-ca.pem`), then a UDP datagram that is not DNS.
fn first_connection_script(path: &str) -> String {
    format!(
        "{}; python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\
         .sendto(b\"x\", (\"203.0.113.99\", 9999))'; echo udp=$?",
        curl_script(path)
    )
}

/// An HTTPS request to api.test/`path` with the placeholder, trusting Sluice's CA.
fn curl_script(path: &str) -> String {
    format!(
        "curl -sS --max-time 10 -o /dev/null --cacert /sluice-ca.pem \
         -H \"Authorization: Bearer $API_KEY\" https://api.test/{path}; echo curl=$?"
    )
}

/// The `--volume` that shows a container Sluice's CA at `/sluice-ca.pem`.
fn ca_volume(sluice: &Sluice) -> String {
    format!(
        "{}:/sluice-ca.pem:ro",
        sluice.state_dir().join("ca.pem").display()
    )
}

#[test]
fn an_annotated_container_is_captured_from_its_first_connection() {
    let w = world("ctr1");
    // Its own network namespace (loopback only): Sluice's listeners are bound inside it.
    let (session, flags) = w.captured("none");
    let mut run: Vec<&str> = vec!["--rm"];
    run.extend(flags.iter().map(String::as_str));
    let out = w
        .podman
        .run(&run, &first_connection_script("first"))
        .unwrap();
    let said = text(&out);
    eprintln!("container: {said}");
    assert!(out.status.success() && said.contains("curl=0"), "{said}");
    assert_eq!(
        w.received("first"),
        [Some(format!("Bearer {SECRET}"))],
        "the real credential was swapped in toward its host"
    );
    let record = w
        .sluice
        .wait_audit(|r| {
            r["kind"] == "request" && r["url"].as_str().is_some_and(|u| u.ends_with("/first"))
        })
        .unwrap();
    assert_eq!(record["session"], session.as_str(), "{record}");
    assert!(
        !said.contains("udp=0"),
        "UDP other than DNS is refused: {said}"
    );

    // The node's network (podman runs in the lab's node namespace): the daemon's own
    // listeners serve it, and UDP out of it is refused by the kernel, not by a missing route.
    for host in [addrs::FAR_HOST, std::net::Ipv4Addr::new(203, 0, 113, 99)] {
        assert_eq!(w.lab.route_dev(host.into()).unwrap(), NODE_VETH, "{host}");
    }
    let (_, flags) = w.captured("host");
    let mut run: Vec<&str> = vec!["--rm"];
    run.extend(flags.iter().map(String::as_str));
    let out = w
        .podman
        .run(&run, &first_connection_script("host-network"))
        .unwrap();
    let said = text(&out);
    eprintln!("container (host network): {said}");
    assert!(said.contains("curl=0"), "{said}");
    assert_eq!(
        w.received("host-network"),
        [Some(format!("Bearer {SECRET}"))]
    );
    assert!(
        said.contains("not permitted") && !said.contains("udp=0"),
        "{said}"
    );
    assert!(
        w.sandboxes().is_empty(),
        "--rm unenrolled both: {:?}",
        w.sandboxes()
    );
}

#[test]
fn a_container_without_the_annotation_is_untouched() {
    let w = world("ctr2");
    assert_eq!(w.lab.route_dev(addrs::FAR_HOST.into()).unwrap(), NODE_VETH);
    // The same container on the node's network, without the annotation: it reaches the test
    // host directly (by address: Sluice's DNS is not in its path), with its placeholder.
    let script = format!(
        "curl -sS -k --max-time 10 -o /dev/null -H 'Authorization: Bearer placeholder' \
         https://{}/untouched; echo curl=$?",
        addrs::FAR_HOST
    );
    let out = w
        .podman
        .run(&["--rm", "--network", "host"], &script)
        .unwrap();
    let said = text(&out);
    assert!(said.contains("curl=0"), "{said}");
    assert_eq!(w.received("untouched"), [Some("Bearer placeholder".into())]);
    assert!(w.sandboxes().is_empty());
    assert!(
        !w.sluice
            .audit()
            .iter()
            .any(|r| r["kind"] == "sandbox" || r["kind"] == "request"),
        "nothing was enrolled or recorded"
    );

    // A typo in a sluice.dev annotation is refused, not ignored.
    let out = w
        .podman
        .run(
            &["--rm", "--annotation", "sluice.dev/sesion=ses_x"],
            "echo ENTRYPOINT-RAN",
        )
        .unwrap();
    let said = text(&out);
    assert!(
        !out.status.success()
            && !said.contains("ENTRYPOINT-RAN")
            && said.contains("sluice.dev/sesion"),
        "{said}"
    );
}

#[test]
fn an_annotated_container_never_runs_uncaptured() {
    let mut w = world("ctr3");
    let (session, _) = w.session();
    let annotation = format!("sluice.dev/session={session}");

    // The daemon stopped: the container does not start, and says why.
    w.base.sluice.stop();
    let out = w
        .podman
        .run(
            &["--rm", "--network", "host", "--annotation", &annotation],
            &format!(
                "curl -sS -k --max-time 5 https://{}/while-stopped; echo ENTRYPOINT-RAN",
                addrs::FAR_HOST
            ),
        )
        .unwrap();
    let said = text(&out);
    eprintln!("with the daemon stopped: {said}");
    assert!(!out.status.success(), "{said}");
    assert!(!said.contains("ENTRYPOINT-RAN") && w.received("while-stopped").is_empty());
    assert!(
        said.contains("sluice"),
        "the runtime shows Sluice's message: {said}"
    );

    // The daemon killed after the container started: its connections are refused, never
    // direct (the pinned programs keep enforcing).
    w.base.sluice.restart().unwrap();
    let out = w
        .podman
        .detached(
            "after-kill",
            &["--network", "host", "--annotation", &annotation],
            &["/bin/sleep", "300"],
        )
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    w.base.sluice.kill9();
    let out = w
        .podman
        .command(&[
            "exec",
            "after-kill",
            "/bin/sh",
            "-c",
            &format!(
                "curl -sS -k --max-time 5 https://{}/after-kill; echo curl=$?",
                addrs::FAR_HOST
            ),
        ])
        .output()
        .unwrap();
    let said = text(&out);
    eprintln!("with the daemon killed: {said}");
    assert!(said.contains("curl=") && !said.contains("curl=0"), "{said}");
    assert!(w.received("after-kill").is_empty(), "nothing went direct");
}

#[test]
fn deleting_a_container_removes_every_trace() {
    let w = world("ctr4");
    let (session, _) = w.session();
    let annotation = format!("sluice.dev/session={session}");
    let out = w
        .podman
        .detached(
            "doomed",
            &["--network", "none", "--annotation", &annotation],
            &["/bin/sleep", "300"],
        )
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    let sandboxes = w.sandboxes();
    eprintln!("sluice sandboxes --json: {sandboxes:?}");
    let listed = w.sluice.command().arg("sandboxes").output().unwrap();
    eprintln!("sluice sandboxes:\n{}", text(&listed));
    assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
    let sandbox = &sandboxes[0];
    assert_eq!(sandbox["container"], id.as_str(), "{sandbox}");
    assert_eq!(sandbox["session"], session.as_str());
    let cgroup = sandbox["cgroup"].as_str().unwrap().to_owned();
    let netns = sandbox["netns"].as_str().unwrap().to_owned();
    assert!(std::path::Path::new(&netns).exists());
    let attached = bpftool_cgroup(&cgroup);
    assert!(attached.contains("cgroup_inet4_connect"), "{attached}");
    assert_eq!(sandbox_map_entries(&w.sluice), 1);

    let out = w
        .podman
        .command(&["rm", "--force", "--time", "0", "doomed"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(w.sandboxes().is_empty(), "{:?}", w.sandboxes());
    assert!(
        !std::path::Path::new(&netns).exists(),
        "the namespace name is gone"
    );
    assert!(
        !std::path::Path::new(&cgroup).exists(),
        "the cgroup is gone"
    );
    assert_eq!(
        sandbox_map_entries(&w.sluice),
        0,
        "the kernel map entry is gone"
    );
    let removed = w
        .sluice
        .wait_audit(|r| {
            r["kind"] == "sandbox"
                && r["reason"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("removed"))
        })
        .unwrap();
    assert_eq!(removed["session"], session.as_str(), "{removed}");

    // Created through the wrapper, then unenrolled before its start: `start` refuses it.
    let out = w
        .podman
        .command(&[
            "create",
            "--ulimit",
            "host",
            "--volume",
            tests::podman::USR_MOUNT,
            "--name",
            "unenrolled",
            "--network",
            "none",
            "--annotation",
            &annotation,
            "--rootfs",
            &w.podman.rootfs.to_string_lossy(),
            "/bin/sh",
            "-c",
            "echo ENTRYPOINT-RAN",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // `podman init` runs the runtime's `create` (the wrapper enrolls), not its `start`.
    let out = w.podman.command(&["init", "unenrolled"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let sandboxes = w.sandboxes();
    assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
    let cgroup = sandboxes[0]["cgroup"].as_str().unwrap().to_owned();
    let out = w
        .sluice
        .command()
        .args(["unenroll", "--cgroup", &cgroup])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = w
        .podman
        .command(&["start", "--attach", "unenrolled"])
        .output()
        .unwrap();
    let said = text(&out);
    eprintln!("start after unenroll: {said}");
    assert!(
        !out.status.success() && !said.contains("ENTRYPOINT-RAN"),
        "{said}"
    );
    assert!(said.contains("not enrolled with Sluice"), "{said}");
    let _ = w.podman.command(&["rm", "--force", "unenrolled"]).output();

    // Deleted behind the wrapper's back (its note of the enrollment lost): the daemon notices
    // the cgroup is gone and unenrolls it by itself.
    let out = w
        .podman
        .detached(
            "orphan",
            &["--network", "none", "--annotation", &annotation],
            &["/bin/sleep", "300"],
        )
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(w.sandboxes().len(), 1);
    std::fs::remove_file(w.sluice.state_dir().join("containers").join(&id)).unwrap();
    let out = w
        .podman
        .command(&["rm", "--force", "--time", "0", "orphan"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let swept = (0..150).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        w.sandboxes().is_empty()
    });
    assert!(swept, "still enrolled: {:?}", w.sandboxes());
    assert_eq!(sandbox_map_entries(&w.sluice), 0);
}

/// `bpftool cgroup show PATH`.
fn bpftool_cgroup(path: &str) -> String {
    let out = std::process::Command::new("bpftool")
        .args(["cgroup", "show", path])
        .output()
        .unwrap();
    text(&out)
}

/// Entries of the daemon's pinned sandbox map.
fn sandbox_map_entries(sluice: &Sluice) -> usize {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(sluice.pin_dir.join("SLUICE_SANDBOXES"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    dump.as_array().map_or(0, Vec::len)
}

#[test]
fn a_running_container_is_enrolled_by_its_id_unless_it_holds_sockets() {
    let w = world("ctr5");
    let start = |name: &str, command: &[&str]| {
        let out = w
            .podman
            .detached(name, &["--network", "host"], command)
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let enroll = |args: &[&str]| {
        let out = w
            .sluice
            .command()
            .arg("enroll")
            .args(args)
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    };

    // Started without the wrapper's help, holding no socket: enrolled by its (short) id,
    // and what runs in it from then on is captured.
    let quiet = start("quiet", &["/bin/sleep", "300"]);
    let (ok, said) = enroll(&["--container-id", &quiet[..12]]);
    eprintln!("sluice enroll --container-id {}: {said}", &quiet[..12]);
    assert!(ok, "{said}");
    assert!(said.contains(&quiet), "the cgroup named after it: {said}");
    let out = w
        .podman
        .command(&[
            "exec",
            "quiet",
            "curl",
            "-sS",
            "-k",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            // The host network's resolver is not Sluice's: name the address, keep the SNI.
            "--resolve",
            &format!("api.test:443:{}", addrs::FAR_HOST),
            "https://api.test/enrolled-by-id",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    w.sluice
        .wait_audit(|r| {
            r["kind"] == "request"
                && r["url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("/enrolled-by-id"))
        })
        .unwrap();

    // Holding a socket opened before enrollment: refused, unless forced (and recorded).
    let holder = start(
        "holder",
        &[
            "python3",
            "-c",
            "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.bind(('127.0.0.1', 0)); print('ready', flush=True); time.sleep(300)",
        ],
    );
    let ready = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let logs = w.podman.command(&["logs", "holder"]).output().unwrap();
        text(&logs).contains("ready")
    });
    assert!(ready, "the holder never bound its socket");
    let (ok, said) = enroll(&["--container-id", &holder]);
    eprintln!("sluice enroll --container-id (holding a socket): {said}");
    assert!(!ok && said.contains("escape capture"), "{said}");
    let (ok, said) = enroll(&["--container-id", &holder, "--force"]);
    assert!(ok, "{said}");
    let forced = w
        .sluice
        .wait_audit(|r| {
            r["kind"] == "sandbox"
                && r["reason"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("forced"))
        })
        .unwrap();
    assert!(
        forced["reason"].as_str().unwrap().contains("1 socket"),
        "{forced}"
    );

    // A pod UID or a container id nobody runs: said so.
    let (ok, said) = enroll(&["--container-id", "0123456789abcdef"]);
    assert!(!ok && said.contains("no cgroup"), "{said}");
    let (ok, said) = enroll(&["--pod-uid", "not-a-uid"]);
    assert!(!ok && said.contains("metadata.uid"), "{said}");
}

#[test]
fn a_container_in_its_own_namespace_stays_captured_across_a_daemon_restart() {
    let mut w = world("ctr6");
    let (_, flags) = w.captured("none");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let out = w
        .podman
        .detached("survivor", &flags, &["/bin/sleep", "300"])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let request = |path: &str| {
        let out = w
            .podman
            .command(&["exec", "survivor", "/bin/sh", "-c", &curl_script(path)])
            .output()
            .unwrap();
        text(&out)
    };
    let said = request("before-restart");
    assert!(said.contains("curl=0"), "{said}");

    w.base.sluice.stop();
    w.base.sluice.restart().unwrap();
    // The restarted daemon binds its listeners in the container's namespace again.
    let said = request("after-restart");
    eprintln!("after the restart: {said}");
    assert!(said.contains("curl=0"), "{said}");
    assert_eq!(
        w.received("after-restart"),
        [Some(format!("Bearer {SECRET}"))]
    );
    let sandboxes = w.sandboxes();
    assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
    assert_eq!(sandboxes[0]["container"].as_str().map(str::len), Some(64));
}
