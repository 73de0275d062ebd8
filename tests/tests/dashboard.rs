//! The operator's dashboard end to end: the real daemon serves `/ui/`, real sandboxes make
//! requests through it, and headless Chromium (Debian's `chromium`, driven by Playwright for
//! Python, both installed by `cargo xtask setup`) logs in, watches, filters, creates and
//! revokes a session, applies a suggested policy, and is shown hostile URLs and labels.
//!
//! The browser side is `tests/ui/dashboard.py` (its scenarios print `PASS name` or
//! `FAIL name: why`); this file builds its world: `api.test` and `models.test` (real HTTPS
//! echo hosts), a daemon that resolves them, an enforcing session whose rule refuses every path
//! outside `/v1/`, an audit-mode session that may only name `api.test` (with a deny list, a rate limit and PII
//! redaction that applying a suggestion must keep), and a command that makes
//! one request from a new `sluice exec` sandbox of a session.
//!
//! The screenshots the run takes (live view, session detail) land in this test's target
//! directory; with `SLUICE_UPDATE_SCREENSHOTS=1` they also replace the ones under
//! `docs/screenshots/` that README shows.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::sluice::{Options, Sluice};
use tests::upstream::{self, RunningUpstream};
use tests::{NetLab, TestCa, addrs};

/// The browser the driver launches (Debian's package; `cargo xtask setup` installs it).
const CHROMIUM: &str = "/usr/bin/chromium";
/// The Python Playwright is installed for.
const PYTHON: &str = "/usr/bin/python3";
/// The whole browser run, every scenario included, is bounded by this.
const DRIVER_LIMIT: Duration = Duration::from_secs(300);
/// The scenarios `tests/ui/dashboard.py` runs, each of which must print `PASS name`.
const SCENARIOS: [&str; 5] = ["live", "session", "policy", "xss", "auth"];

/// The lab, the two hosts and the daemon. Fields drop in order: the daemon first, the lab last.
struct World {
    sluice: Sluice,
    _api: RunningUpstream,
    _models: RunningUpstream,
    _ca_file: tempfile::TempPath,
    lab: NetLab,
}

/// `api.test` at 203.0.113.10:443 and `models.test` at 198.51.100.10:443, both echoing every
/// request, both certified by a test CA the daemon trusts upstream.
fn world() -> World {
    let lab = NetLab::new("ui").unwrap();
    let ca = TestCa::new().unwrap();
    let ca_file = ca.pem_file().unwrap();
    let api = upstream::https(&ca)
        .hostname("api.test")
        .echo()
        .start(&lab, SocketAddr::new(addrs::FAR_HOST.into(), 443))
        .unwrap();
    let models = upstream::https(&ca)
        .hostname("models.test")
        .echo()
        .start(&lab, SocketAddr::new(addrs::HOST_A.into(), 443))
        .unwrap();
    let sluice = Sluice::start(
        &lab,
        &Options {
            extra_toml: format!("[upstream]\nextra_roots = [{:?}]\n", ca_file.to_path_buf()),
            dns_hosts: vec![
                ("api.test".into(), addrs::FAR_HOST.to_string()),
                ("models.test".into(), addrs::HOST_A.to_string()),
            ],
            ..Options::default()
        },
    )
    .unwrap();
    World {
        sluice,
        _api: api,
        _models: models,
        _ca_file: ca_file,
        lab,
    }
}

/// Refuses to run without the browser or its driver, naming the fix.
fn require_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `cargo xtask setup` (it installs Debian's chromium)"
    );
    let probe = Command::new(PYTHON)
        .args(["-c", "import playwright.sync_api"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "Playwright is missing for {PYTHON}: run `cargo xtask setup` ({})",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
}

/// Writes the driver's `SLUICE_UI_FETCH` command: `fetch SESSION URL` runs curl in a new
/// sandbox of SESSION (trusting Sluice's CA) and prints the HTTP status, `000` when there was
/// none (refused connection, a sandbox that could not start).
fn fetch_script(sluice: &Sluice, lab: &NetLab) -> PathBuf {
    let ca = sluice.state_dir().join("ca.pem");
    let script = format!(
        "#!/bin/sh\n\
         status=$(nsenter --net={node} -- {bin} --config {config} exec --session \"$1\" -- \
         curl -sg -o /dev/null -w '%{{http_code}}' --max-time 10 --cacert {ca} \"$2\" 2>/dev/null)\n\
         echo \"${{status:-000}}\"\n",
        node = lab.node_ns_path().display(),
        bin = tests::sluice::binary().display(),
        config = sluice.config_path().display(),
        ca = ca.display(),
    );
    let path = sluice.public_file("ui-fetch", script.as_bytes()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Runs `command` to completion or until `limit`, then kills it; returns (exit success, its
/// stdout and stderr).
fn run_bounded(mut command: Command, limit: Duration) -> (bool, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let success = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = out.join().unwrap() + &err.join().unwrap();
    (success, text)
}

/// Where this run's screenshots go.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// With `SLUICE_UPDATE_SCREENSHOTS=1`, copies the run's screenshots over README's.
fn publish_screenshots(from: &Path) {
    if std::env::var_os("SLUICE_UPDATE_SCREENSHOTS").is_none() {
        return;
    }
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&docs).unwrap();
    for name in ["live.png", "session.png"] {
        std::fs::copy(from.join(name), docs.join(name)).unwrap();
    }
}

#[test]
fn an_operator_watches_decides_and_acts_in_a_real_browser() {
    require_browser();
    let world = world();
    let sluice = &world.sluice;
    let (session, _) = sluice
        .create_session(&["--allow", "api.test", "--rule", "api.test=GET:/v1/"], &[])
        .unwrap();
    let (audit_session, _) = sluice
        .create_session(
            &[
                "--allow",
                "api.test",
                "--deny",
                "paste.test",
                "--rate",
                "api.test=600",
                "--pii",
                "redact",
                "--audit-only",
            ],
            &[],
        )
        .unwrap();
    let token = std::fs::read_to_string(sluice.state_dir().join("admin.token")).unwrap();
    let fetch = fetch_script(sluice, &world.lab);
    let shots = screenshot_dir();
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/dashboard.py");

    let mut command = sluice.node_command(PYTHON);
    command
        .arg(&driver)
        .env("SLUICE_UI_URL", "http://127.0.0.1:3000/ui/")
        .env("SLUICE_UI_BASE", "http://127.0.0.1:3000")
        .env("SLUICE_ADMIN_TOKEN", token.trim())
        .env("SLUICE_UI_FETCH", &fetch)
        .env("SLUICE_UI_SESSION", &session)
        .env("SLUICE_UI_AUDIT_SESSION", &audit_session)
        .env("SLUICE_UI_ALLOWED_URL", "https://api.test/v1/models")
        .env("SLUICE_UI_REFUSED_URL", "https://api.test/admin/keys")
        .env("SLUICE_UI_POLICY_URL", "https://models.test/v1/embed")
        .env("SLUICE_UI_CREATE_HOST", "models.test")
        .env("SLUICE_UI_CREATE_URL", "https://models.test/v1/chat")
        .env("SLUICE_UI_SCREENSHOTS", &shots)
        .env("PYTHONUNBUFFERED", "1");
    let (success, output) = run_bounded(command, DRIVER_LIMIT);
    println!("{output}");
    let failed: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|name| !output.lines().any(|l| l == format!("PASS {name}")))
        .collect();
    assert!(
        success && failed.is_empty(),
        "dashboard scenarios that did not pass: {failed:?} (screenshots in {}; daemon log:\n{})",
        shots.display(),
        sluice.log(1)
    );
    for name in ["live.png", "session.png"] {
        let size = std::fs::metadata(shots.join(name)).map_or(0, |m| m.len());
        assert!(size > 10_000, "{name} is {size} bytes: no real screenshot");
    }
    publish_screenshots(&shots);
}
