//! Loading the embedded kernel programs, attaching them to a cgroup, pinning the links, and
//! re-adopting links that are already pinned.

use std::{
    fs::File,
    os::fd::AsFd as _,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr,
        CgroupSockopt, SockOps,
        links::{FdLink, PinnedLink},
    },
};

use super::{
    CaptureError,
    pins::{self, MAPS, PinLayout},
    probe, rawlink,
};

/// The kernel object built by `build.rs` (empty when built with `AYA_BUILD_SKIP`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gateway-ebpf"));

/// tracing target of the kernel programs' debug logs; kernel logging is compiled in but only
/// switched on when this target is enabled at debug level when the programs are loaded.
const KERNEL_LOG_TARGET: &str = "sluice::capture::kernel";

/// How a program attaches.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Sock,
    SockAddr,
    SockOps,
    Skb(CgroupSkbAttachType),
    Sockopt,
}

/// Every kernel program, by its function name in `gateway-ebpf`.
const PROGRAMS: [(&str, Kind); 15] = [
    ("sl_sock_create", Kind::Sock),
    ("sl_connect4", Kind::SockAddr),
    ("sl_connect6", Kind::SockAddr),
    ("sl_sendmsg4", Kind::SockAddr),
    ("sl_sendmsg6", Kind::SockAddr),
    ("sl_recvmsg4", Kind::SockAddr),
    ("sl_recvmsg6", Kind::SockAddr),
    ("sl_getpeer4", Kind::SockAddr),
    ("sl_getpeer6", Kind::SockAddr),
    ("sl_sockops", Kind::SockOps),
    ("sl_bind4", Kind::SockAddr),
    ("sl_bind6", Kind::SockAddr),
    ("sl_setsockopt", Kind::Sockopt),
    ("sl_egress", Kind::Skb(CgroupSkbAttachType::Egress)),
    ("sl_ingress", Kind::Skb(CgroupSkbAttachType::Ingress)),
];

/// The names of all kernel programs (for tests and diagnostics).
pub fn program_names() -> impl Iterator<Item = &'static str> {
    PROGRAMS.iter().map(|(name, _)| *name)
}

/// The loaded (verified) programs and, while kernel debug logging is on, the log pump.
#[derive(Debug)]
pub(crate) struct Loaded {
    ebpf: Ebpf,
    _logs: Option<LogPump>,
}

impl Loaded {
    /// Load and verify every program, sharing (or creating and pinning) the maps in `layout`.
    pub(crate) fn load(layout: &PinLayout) -> Result<Self, CaptureError> {
        if OBJECT.is_empty() {
            return Err(CaptureError::NotBuilt);
        }
        let debug = tracing::enabled!(target: KERNEL_LOG_TARGET, tracing::Level::DEBUG);
        // aya-log levels: 0 = off, 4 = debug.
        let log_level: u8 = if debug { 4 } else { 0 };
        let mut loader = EbpfLoader::new();
        for name in MAPS {
            loader.map_pin_path(name, layout.map(name));
        }
        loader.override_global("AYA_LOG_LEVEL", &log_level, false);
        let mut ebpf = loader
            .load(OBJECT)
            .map_err(|e| CaptureError::Load(Box::new(e)))?;
        for (name, kind) in PROGRAMS {
            load_program(&mut ebpf, name, kind)?;
        }
        // Taken only after every program is loaded: the logger owns the log map's fd.
        let logs = if debug {
            match aya_log::EbpfLogger::init(&mut ebpf) {
                Ok(mut logger) => Some(LogPump::spawn(move || logger.flush())),
                Err(err) => {
                    tracing::warn!(%err, "gateway: kernel debug logs unavailable");
                    None
                }
            }
        } else {
            None
        };
        Ok(Self { ebpf, _logs: logs })
    }

    /// Make sure the kernel can create the cgroup links the capture pins (the last thing
    /// the probe checks before anything is attached to `parent`).
    pub(crate) fn probe_links(&self, parent: &Path) -> Result<(), CaptureError> {
        let (name, _) = PROGRAMS[0];
        let prog = self
            .ebpf
            .program(name)
            .ok_or(CaptureError::MissingProgram(name))?;
        let fd = prog.fd().map_err(CaptureError::program(name, "probe"))?;
        probe::cgroup_links(parent, fd.as_fd())
    }

    /// Attach every program whose link is not pinned in `link_dir` to `cgroup`, and pin it.
    /// All or nothing: when one fails, the links this call pinned are removed again.
    pub(crate) fn attach_missing(
        &mut self,
        cgroup: &Path,
        link_dir: &Path,
    ) -> Result<(), CaptureError> {
        let fd = File::open(cgroup).map_err(CaptureError::io("open cgroup", cgroup))?;
        pins::create_dir(link_dir)?;
        let mut pinned: Vec<std::path::PathBuf> = Vec::new();
        for (name, kind) in PROGRAMS {
            let pin = link_dir.join(name);
            if pin.exists() {
                continue;
            }
            if let Err(err) = attach_pinned(&mut self.ebpf, name, kind, &fd, &pin) {
                for pin in &pinned {
                    unpin_link(pin);
                }
                return Err(err);
            }
            pinned.push(pin);
        }
        Ok(())
    }
}

/// Keep the links in `link_dir` that are attached to `cgroup_id`; unpin the rest (a link
/// whose cgroup was removed is defunct). Returns whether every program is still attached.
pub(crate) fn adopt_pinned(link_dir: &Path, cgroup_id: u64) -> Result<bool, CaptureError> {
    let mut complete = true;
    for (name, _) in PROGRAMS {
        let path = link_dir.join(name);
        if !path.exists() {
            complete = false;
            continue;
        }
        let attached_to =
            pins::link_cgroup_id(&path).map_err(CaptureError::io("inspect link", &path))?;
        if attached_to != cgroup_id {
            let link = PinnedLink::from_pin(&path)
                .map_err(CaptureError::program(name, "open link pin"))?;
            tracing::warn!(
                program = name,
                attached_to,
                cgroup_id,
                "gateway: pinned link is not attached to the cgroup any more; replacing it"
            );
            drop(
                link.unpin()
                    .map_err(CaptureError::io("unpin stale link", &path))?,
            );
            complete = false;
        }
    }
    Ok(complete)
}

/// Detach and unpin the link pinned at `pin` (best effort: on failure it stays attached,
/// which keeps its sandboxes captured).
fn unpin_link(pin: &Path) {
    match PinnedLink::from_pin(pin).map(PinnedLink::unpin) {
        Ok(Ok(link)) => drop(link),
        Ok(Err(err)) => tracing::warn!(pin = %pin.display(), %err, "gateway: cannot unpin link"),
        Err(err) => tracing::warn!(pin = %pin.display(), %err, "gateway: cannot open link pin"),
    }
}

fn load_program(ebpf: &mut Ebpf, name: &'static str, kind: Kind) -> Result<(), CaptureError> {
    let prog = ebpf
        .program_mut(name)
        .ok_or(CaptureError::MissingProgram(name))?;
    let load = |err| probe::load_failure(name, err);
    match kind {
        Kind::Sock => <&mut CgroupSock>::try_from(prog)
            .map_err(CaptureError::program(name, "load"))?
            .load(),
        Kind::SockAddr => <&mut CgroupSockAddr>::try_from(prog)
            .map_err(CaptureError::program(name, "load"))?
            .load(),
        Kind::SockOps => <&mut SockOps>::try_from(prog)
            .map_err(CaptureError::program(name, "load"))?
            .load(),
        Kind::Skb(_) => <&mut CgroupSkb>::try_from(prog)
            .map_err(CaptureError::program(name, "load"))?
            .load(),
        Kind::Sockopt => <&mut CgroupSockopt>::try_from(prog)
            .map_err(CaptureError::program(name, "load"))?
            .load(),
    }
    .map_err(load)
}

/// Attach one program to `cgroup` and pin its link at `pin`.
fn attach_pinned(
    ebpf: &mut Ebpf,
    name: &'static str,
    kind: Kind,
    cgroup: &File,
    pin: &Path,
) -> Result<(), CaptureError> {
    let prog = ebpf
        .program_mut(name)
        .ok_or(CaptureError::MissingProgram(name))?;
    let mode = CgroupAttachMode::Single;
    let link = match kind {
        Kind::Sock => {
            let p =
                <&mut CgroupSock>::try_from(prog).map_err(CaptureError::program(name, "attach"))?;
            let id = p
                .attach(cgroup, mode)
                .map_err(CaptureError::program(name, "attach"))?;
            FdLink::try_from(
                p.take_link(id)
                    .map_err(CaptureError::program(name, "attach"))?,
            )
        }
        Kind::SockAddr => {
            let p = <&mut CgroupSockAddr>::try_from(prog)
                .map_err(CaptureError::program(name, "attach"))?;
            let id = p
                .attach(cgroup, mode)
                .map_err(CaptureError::program(name, "attach"))?;
            FdLink::try_from(
                p.take_link(id)
                    .map_err(CaptureError::program(name, "attach"))?,
            )
        }
        Kind::SockOps => {
            let p =
                <&mut SockOps>::try_from(prog).map_err(CaptureError::program(name, "attach"))?;
            let id = p
                .attach(cgroup, mode)
                .map_err(CaptureError::program(name, "attach"))?;
            FdLink::try_from(
                p.take_link(id)
                    .map_err(CaptureError::program(name, "attach"))?,
            )
        }
        Kind::Skb(attach_type) => {
            let p =
                <&mut CgroupSkb>::try_from(prog).map_err(CaptureError::program(name, "attach"))?;
            let id = p
                .attach(cgroup, attach_type, mode)
                .map_err(CaptureError::program(name, "attach"))?;
            FdLink::try_from(
                p.take_link(id)
                    .map_err(CaptureError::program(name, "attach"))?,
            )
        }
        Kind::Sockopt => {
            // aya 0.14's sockopt link cannot become an FdLink: create and pin it directly.
            let p = <&mut CgroupSockopt>::try_from(prog)
                .map_err(CaptureError::program(name, "attach"))?;
            let prog_fd = p.fd().map_err(CaptureError::program(name, "attach"))?;
            return rawlink::attach_pinned(
                prog_fd.as_fd(),
                cgroup.as_fd(),
                rawlink::BPF_CGROUP_SETSOCKOPT,
                pin,
            )
            .map_err(CaptureError::program(name, "attach and pin link"));
        }
    };
    link.map_err(CaptureError::program(name, "attach"))?
        .pin(pin)
        .map_err(CaptureError::program(name, "pin link"))
        .map(drop)
}

/// Forwards kernel debug logs to `log` (and from there to tracing) from a background thread.
#[derive(Debug)]
struct LogPump {
    stop: Arc<AtomicBool>,
}

impl LogPump {
    fn spawn(mut flush: impl FnMut() + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("sluice-kernel-log".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    flush();
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(%err, "gateway: cannot start the kernel log thread");
        }
        Self { stop }
    }
}

impl Drop for LogPump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_knows_every_programs_hook() {
        for name in program_names() {
            assert!(
                probe::known_hook(name).is_some(),
                "{name} has no hook entry"
            );
        }
    }
}
