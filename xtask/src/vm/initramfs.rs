//! The VM's initramfs: busybox, the kernel's 9p modules, and an init that mounts this
//! machine's root read-only over 9p (with the VM kernel's own modules at `/lib/modules`),
//! switches into it and runs the kernel tests.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use super::{TestBinaries, kernel::Kernel};

/// Where Debian's busybox-static puts its binary.
const BUSYBOX: &str = "/bin/busybox";

/// Modules the init loads before it can mount the root (with their dependencies).
const ROOT_MODULES: [&str; 3] = ["virtio_pci", "9pnet_virtio", "9p"];

/// The line the VM prints last: `SLUICE-VM-EXIT <status>`.
pub const EXIT_MARK: &str = "SLUICE-VM-EXIT";

/// The line naming the running kernel: `SLUICE-VM-KERNEL <release>`.
pub const KERNEL_MARK: &str = "SLUICE-VM-KERNEL";

/// Builds the initramfs for `kernel` that runs `tests` (with their output shown when
/// `show_output`) and returns its path.
pub fn build(
    kernel: &Kernel,
    tests: &TestBinaries,
    sluice: &Path,
    filter: Option<&str>,
    show_output: bool,
) -> anyhow::Result<PathBuf> {
    let out = kernel
        .root
        .parent()
        .unwrap_or(&kernel.root)
        .join("initramfs");
    let _ = fs::remove_dir_all(&out);
    for dir in ["bin", "dev", "proc", "sys", "newroot", "modules"] {
        fs::create_dir_all(out.join(dir))?;
    }
    fs::copy(BUSYBOX, out.join("bin/busybox")).with_context(|| {
        format!("copy {BUSYBOX} (Debian's busybox-static; `cargo xtask setup` installs it)")
    })?;
    let mut order = String::new();
    for module in root_modules(kernel)? {
        let name = module
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let plain = name
            .trim_end_matches(".xz")
            .trim_end_matches(".zst")
            .to_owned();
        fs::write(out.join("modules").join(&plain), decompress(&module)?)?;
        order.push_str(&plain);
        order.push('\n');
    }
    fs::write(out.join("modules/order"), order)?;
    write_exec(&out.join("init"), INIT)?;
    write_exec(
        &out.join("run.sh"),
        &run_script(tests, sluice, filter, show_output),
    )?;
    let image = out.with_extension("cpio");
    archive(&out, &image)?;
    Ok(image)
}

/// The init: runs from the initramfs, mounts the machine's root and hands over to `run.sh`.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do
    insmod /modules/$m 2>/dev/null || echo "sluice-vm: insmod $m failed (built in?)"
done
fail() { echo "sluice-vm: $*"; echo "SLUICE-VM-EXIT 125"; echo o > /proc/sysrq-trigger; sleep 60; }
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 hostroot /newroot || fail "cannot mount the host root"
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
for d in tmp run dev/shm var/tmp root; do mount -t tmpfs tmpfs /newroot/$d; done
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup || fail "cannot mount cgroup2"
mount -t bpf bpf /newroot/sys/fs/bpf || fail "cannot mount bpffs"
# The VM kernel's modules (the machine's /lib/modules is not this kernel's, or absent):
# modprobe finds them with -d, and the kernel's own module requests go through a wrapper.
mkdir -p /newroot/run/kmods
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 kmods /newroot/run/kmods || fail "cannot mount the kernel's modules"
printf '#!/bin/sh\nexec /sbin/modprobe -d /run/kmods "$@"\n' > /newroot/run/modprobe
chmod 755 /newroot/run/modprobe
echo /run/modprobe > /proc/sys/kernel/modprobe
cp /run.sh /newroot/tmp/run.sh
exec switch_root /newroot /bin/sh /tmp/run.sh
"#;

/// The test script, run as PID 1 in the machine's root on the VM's kernel.
fn run_script(
    tests: &TestBinaries,
    sluice: &Path,
    filter: Option<&str>,
    show_output: bool,
) -> String {
    let mut script = format!(
        "#!/bin/sh\n\
         export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export HOME=/root RUST_BACKTRACE=1 SLUICE_BIN='{}'\n\
         /run/modprobe veth\n\
         ip link set lo up\n\
         echo \"{KERNEL_MARK} $(uname -r)\"\n\
         cd /tmp\n\
         rc=0\n",
        sluice.display()
    );
    let mut filter = filter
        .map(|f| format!(" '{}'", f.replace('\'', "")))
        .unwrap_or_default();
    if show_output {
        filter.push_str(" --nocapture");
    }
    for bin in &tests.0 {
        let _ = writeln!(
            script,
            "'{}' --test-threads=1 --color=never{filter} || rc=1",
            bin.display()
        );
    }
    let _ = write!(
        script,
        "echo \"{EXIT_MARK} $rc\"\n\
         sync\n\
         echo o > /proc/sysrq-trigger\n\
         sleep 60\n"
    );
    script
}

/// The module files for [`ROOT_MODULES`], dependencies first (per `modules.dep`); modules
/// built into the kernel are skipped.
fn root_modules(kernel: &Kernel) -> anyhow::Result<Vec<PathBuf>> {
    let dir = kernel.modules();
    let deps_text = fs::read_to_string(dir.join("modules.dep"))
        .with_context(|| format!("read {}", dir.join("modules.dep").display()))?;
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in deps_text.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            module_name(path),
            (
                path.to_owned(),
                rest.split_whitespace().map(module_name).collect(),
            ),
        );
    }
    let builtin = fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let builtin: Vec<String> = builtin.lines().map(module_name).collect();
    let mut order = Vec::new();
    for wanted in ROOT_MODULES {
        if builtin.iter().any(|b| b == wanted) {
            continue;
        }
        if !deps.contains_key(wanted) {
            bail!(
                "kernel {} has no {wanted} module and does not build it in",
                kernel.release
            );
        }
        visit(wanted, &deps, &mut order);
    }
    Ok(order
        .iter()
        .filter_map(|name| deps.get(name))
        .map(|(path, _)| dir.join(path))
        .collect())
}

/// Adds `name`'s dependencies, then `name`, to `order` (each once).
fn visit(name: &str, deps: &BTreeMap<String, (String, Vec<String>)>, order: &mut Vec<String>) {
    if order.iter().any(|n| n == name) {
        return;
    }
    if let Some((_, needs)) = deps.get(name) {
        for need in needs {
            visit(need, deps, order);
        }
    }
    order.push(name.to_owned());
}

/// `kernel/fs/9p/9p.ko.xz` → `9p` (modules.dep names `-` and `_` alike; keep the file's).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The module's bytes, decompressed when Debian ships it compressed.
fn decompress(module: &Path) -> anyhow::Result<Vec<u8>> {
    let ext = module.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tool = match ext {
        "ko" => return fs::read(module).with_context(|| format!("read {}", module.display())),
        "xz" => "xz",
        "zst" => "zstd",
        other => bail!("unknown module compression .{other}: {}", module.display()),
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(module)
        .output()
        .with_context(|| format!("start {tool}"))?;
    if !out.status.success() {
        bail!("{tool} -dc {} failed", module.display());
    }
    Ok(out.stdout)
}

fn write_exec(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Packs `dir` as a newc cpio archive at `image`.
fn archive(dir: &Path, image: &Path) -> anyhow::Result<()> {
    let list = Command::new("find")
        .arg(".")
        .current_dir(dir)
        .output()
        .context("start find")?;
    let mut cpio = Command::new("cpio");
    cpio.args(["--quiet", "-o", "-H", "newc"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(fs::File::create(image)?);
    let mut child = cpio
        .spawn()
        .context("start cpio (`cargo xtask setup` installs it)")?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(&list.stdout)?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cpio failed ({status})");
    }
    Ok(())
}
