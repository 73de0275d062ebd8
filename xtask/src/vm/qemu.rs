//! Booting one kernel of the matrix in a throwaway qemu VM and reading its results off the
//! serial console. The VM has no network device and sees this machine's files read-only;
//! it is killed when it outlives its time bound.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    Counts, Leg,
    initramfs::{EXIT_MARK, KERNEL_MARK},
    kernel::{Kernel, Spec},
};

/// Memory for the VM: the tests run a few Python and daemon processes at a time.
const MEMORY_MIB: u32 = 2048;

/// Boots `kernel` with `initramfs`, streams its console (prefixed with the kernel's name) to
/// stdout and into `target/vm/kernels/<name>/console.log`, and returns the leg's result.
pub fn boot(
    spec: &Spec,
    kernel: &Kernel,
    initramfs: &Path,
    timeout_minutes: u64,
) -> anyhow::Result<Leg> {
    let log_path = kernel
        .root
        .parent()
        .unwrap_or(&kernel.root)
        .join("console.log");
    let mut log = fs::File::create(&log_path)?;
    let share = |tag: &str, path: &Path| {
        format!(
            "local,path={},mount_tag={tag},security_model=passthrough,readonly=on,multidevs=remap",
            path.display()
        )
    };
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg", "-cpu", "max", "-smp", "2"])
        .args(["-m", &MEMORY_MIB.to_string()])
        .args([
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
        ])
        .args(["-nic", "none"])
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 panic=-1 loglevel=4 rdinit=/init"])
        .arg("-virtfs")
        .arg(share("hostroot", Path::new("/")))
        .arg("-virtfs")
        .arg(share("kmods", &kernel.root))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "xtask: booting kernel {} ({}) under qemu (TCG)",
        spec.name, kernel.release
    );
    let mut child = qemu
        .spawn()
        .context("start qemu-system-x86_64 (`cargo xtask setup` installs qemu-system-x86)")?;
    let (lines, received) = mpsc::channel();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let lines = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(lines);

    let deadline = Instant::now() + Duration::from_secs(timeout_minutes * 60);
    let mut counts = Counts::default();
    let mut release = String::new();
    let mut exit: Option<i32> = None;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        match received.recv_timeout(left) {
            Ok(line) => {
                let line = line.trim_end_matches('\r').to_owned();
                writeln!(log, "{line}")?;
                println!("[{}] {line}", spec.name);
                counts.add_output(&line);
                if let Some(r) = line.strip_prefix(KERNEL_MARK) {
                    release = r.trim().to_owned();
                }
                if let Some(code) = line.strip_prefix(EXIT_MARK) {
                    exit = code.trim().parse().ok();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Whatever happened, the VM goes: it is only a process of ours.
    let _ = child.kill();
    let _ = child.wait();

    let note = match (timed_out, exit) {
        (true, _) => format!("killed after {timeout_minutes} min"),
        (false, None) => "the VM stopped without reporting".to_owned(),
        (false, Some(0)) => String::new(),
        (false, Some(125)) => "the VM could not set up (see console.log)".to_owned(),
        (false, Some(code)) => format!("tests exited {code}"),
    };
    Ok(Leg {
        kernel: spec.name.to_owned(),
        release: if release.is_empty() {
            kernel.release.clone()
        } else {
            release
        },
        passed: counts.passed,
        failed: counts.failed,
        ok: exit == Some(0) && counts.failed == 0 && counts.passed > 0,
        seconds: 0,
        note,
    })
}
