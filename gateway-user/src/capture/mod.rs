//! Kernel capture: loading, attaching and pinning the eBPF programs, and reading their maps.
//!
//! The programs (crate `gateway-ebpf`, embedded at build time) are attached to one parent
//! cgroup; every enrolled sandbox is a cgroup below it (or an extra cgroup attached with
//! [`Capture::attach_extra`]) registered in the sandbox map. Maps are pinned under the pin
//! directory and links under `<pin_dir>/links/`, so the programs keep enforcing when the
//! daemon is gone: sandbox connects then fail with `ECONNREFUSED`, never bypass.
//!
//! # Security
//! Everything fails closed: until [`Capture::install`] has written the configuration, and for
//! any cgroup that is not a registered sandbox, sockets are refused. The programs are never
//! attached to the cgroup2 root.

mod error;
mod key;
mod load;
mod maps;
mod pins;
mod preflight;
mod probe;
mod rawlink;

use std::{
    fs, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, PoisonError},
};

pub use error::CaptureError;
use gateway_common::{ConnKey, ConnRecord, GatewayConfig, SandboxEntry};
pub use key::{cgroup_id, conn_key, dns_client_key, netns_cookie, original_destination};
pub use load::program_names;
pub use preflight::cgroup2_mount;
pub use probe::{MINIMUM_KERNEL, kernel_release};

use self::{load::Loaded, maps::Maps, pins::PinLayout};

/// Where the capture is attached and pinned, and where it redirects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// The cgroup whose subtree is captured (created if missing); must be strictly below the
    /// cgroup2 mount.
    pub parent_cgroup: PathBuf,
    /// The bpffs directory holding the pinned maps and links.
    pub pin_dir: PathBuf,
    /// Port of the transparent proxy listener on loopback, host order.
    pub proxy_port: u16,
    /// Port of the DNS listener on loopback, host order.
    pub dns_port: u16,
    /// Port of the control API, if any: sandboxes may not bind it (so that, with the daemon
    /// dead, nothing in a sandbox can impersonate it).
    pub control_port: Option<u16>,
    /// Port of the explicit proxy (`HTTPS_PROXY`), if any: sandboxes may not bind it.
    pub explicit_proxy_port: Option<u16>,
    /// Most live redirected TCP connections one sandbox may hold (further connects fail with
    /// EPERM), so one sandbox cannot evict the others' records from the shared connection
    /// map. `None` is [`gateway_common::MAX_CONNS_PER_SANDBOX`].
    pub conn_cap_per_sandbox: Option<u32>,
}

impl CaptureConfig {
    /// The kernel's view of this configuration (not yet marked ready).
    fn kernel(&self) -> GatewayConfig {
        GatewayConfig {
            proxy_port: self.proxy_port,
            dns_port: self.dns_port,
            flags: 0,
            control_port: self.control_port.unwrap_or(0),
            explicit_proxy_port: self.explicit_proxy_port.unwrap_or(0),
            conn_cap: self
                .conn_cap_per_sandbox
                .unwrap_or(gateway_common::MAX_CONNS_PER_SANDBOX),
        }
    }
}

/// An installed (or opened) kernel capture: handles on its maps, and the loaded programs if
/// this process loaded them. `Send + Sync`; share it as `Arc<Capture>`.
#[derive(Debug)]
pub struct Capture {
    layout: PinLayout,
    cgroup2: PathBuf,
    maps: Maps,
    loaded: Mutex<Option<Loaded>>,
}

impl Capture {
    /// Preflight, then attach the programs to `parent_cgroup` (creating it if missing), pin
    /// maps under `pin_dir` and links under `pin_dir/links/`, and write the configuration
    /// (marking it ready). Links already pinned and still attached to the parent are
    /// re-adopted, not attached a second time.
    pub fn install(cfg: &CaptureConfig) -> Result<Self, CaptureError> {
        preflight::check_capabilities()?;
        let cgroup2 = cgroup2_mount()?;
        preflight::check_below_mount(&cfg.parent_cgroup, &cgroup2)?;
        // The probe's first step, before anything is made: the rest loads the programs.
        probe::socket_cookies()?;
        preflight::ensure_bpffs(&cfg.pin_dir)?;
        preflight::ensure_cgroup(&cfg.parent_cgroup)?;
        let layout = PinLayout::new(&cfg.pin_dir);
        pins::create_dir(layout.root())?;
        maps::check_pinned_config(&layout)?;

        let parent_id = cgroup_id(&cfg.parent_cgroup)
            .map_err(CaptureError::io("read cgroup id of", &cfg.parent_cgroup))?;
        let maps_pinned = pins::MAPS.iter().all(|m| layout.map(m).exists());
        if !maps_pinned {
            // Links whose maps are no longer reachable cannot be configured: replace them.
            pins::remove_links(&layout.links())?;
        }
        let loaded = if load::adopt_pinned(&layout.links(), parent_id)? {
            tracing::info!(pin_dir = %layout.root().display(), "gateway: re-adopted pinned capture");
            None
        } else {
            let mut loaded = Loaded::load(&layout)?;
            loaded.probe_links(&cfg.parent_cgroup)?;
            loaded.attach_missing(&cfg.parent_cgroup, &layout.links())?;
            tracing::info!(
                cgroup = %cfg.parent_cgroup.display(), pin_dir = %layout.root().display(),
                "gateway: capture attached"
            );
            Some(loaded)
        };
        let maps = Maps::open(&layout)?;
        maps.write_config(cfg.kernel())?;
        Ok(Self {
            layout,
            cgroup2,
            maps,
            loaded: Mutex::new(loaded),
        })
    }

    /// Open an existing installation's pinned maps without attaching anything.
    pub fn open(cfg: &CaptureConfig) -> Result<Self, CaptureError> {
        preflight::check_capabilities()?;
        let cgroup2 = cgroup2_mount()?;
        let layout = PinLayout::new(&cfg.pin_dir);
        let maps = Maps::open(&layout)?;
        Ok(Self {
            layout,
            cgroup2,
            maps,
            loaded: Mutex::new(None),
        })
    }

    /// Unpin and detach everything under `pin_dir` (extra links, links, maps), and remove the
    /// parent cgroup if it is empty. Idempotent.
    pub fn uninstall(cfg: &CaptureConfig) -> Result<(), CaptureError> {
        preflight::check_capabilities()?;
        pins::remove_all(&PinLayout::new(&cfg.pin_dir))?;
        let cgroup2 = cgroup2_mount()?;
        preflight::check_below_mount(&cfg.parent_cgroup, &cgroup2)?;
        match fs::remove_dir(&cfg.parent_cgroup) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            // EBUSY/ENOTEMPTY: processes or child cgroups remain; they are no longer captured.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {
                tracing::warn!(
                    cgroup = %cfg.parent_cgroup.display(),
                    "gateway: parent cgroup not empty, left in place"
                );
                Ok(())
            }
            Err(e) => Err(CaptureError::io("remove cgroup", &cfg.parent_cgroup)(e)),
        }
    }

    /// Enroll the sandbox whose cgroup has id `cgroup_id`: its sockets (and those of cgroups
    /// below it) are redirected from now on.
    pub fn register_sandbox(
        &self,
        cgroup_id: u64,
        entry: SandboxEntry,
    ) -> Result<(), CaptureError> {
        self.maps.register(cgroup_id, entry)
    }

    /// Remove a sandbox: its sockets are refused from now on. Removing an unknown id is fine.
    pub fn unregister_sandbox(&self, cgroup_id: u64) -> Result<(), CaptureError> {
        self.maps.unregister(cgroup_id)
    }

    /// Every registered sandbox, as (cgroup id, entry).
    pub fn sandboxes(&self) -> Result<Vec<(u64, SandboxEntry)>, CaptureError> {
        self.maps.sandboxes()
    }

    /// The kernel's record of a redirected connection; `Ok(None)` is a miss (the caller
    /// closes the connection).
    pub fn lookup(&self, key: &ConnKey) -> Result<Option<ConnRecord>, CaptureError> {
        self.maps.lookup(key)
    }

    /// Who sent the DNS datagram the DNS listener received from `client` on a socket in the
    /// network namespace `netns_cookie` ([`netns_cookie`] of the listener socket): the
    /// record connect4/6 or sendmsg4/6 made when they redirected the sandbox socket, published
    /// by the egress program as the datagram left. `Ok(None)` is a miss.
    ///
    /// # Security
    /// A miss means the sender is unknown (it dialled the DNS listener itself, or its entry
    /// was evicted): the caller must refuse the query, never answer it with a default policy.
    pub fn dns_client(
        &self,
        netns_cookie: u64,
        client: SocketAddr,
    ) -> Result<Option<ConnRecord>, CaptureError> {
        self.maps.lookup_dns(&dns_client_key(netns_cookie, client))
    }

    /// Live redirected TCP connections the kernel counts for the sandbox whose cgroup id is
    /// `cgroup_id` (0 for an unknown one).
    pub fn sandbox_conn_count(&self, cgroup_id: u64) -> Result<i64, CaptureError> {
        self.maps.sandbox_conns(cgroup_id)
    }

    /// Number of entries in the connection map (for leak tests and metrics).
    pub fn conn_count(&self) -> Result<usize, CaptureError> {
        self.maps.conn_count()
    }

    /// Attach the programs to a cgroup outside the parent (a container runtime's cgroup),
    /// pinning its links under `pin_dir/extra/<cgroup id>/`; re-adopts links already pinned.
    pub fn attach_extra(&self, cgroup: &Path) -> Result<(), CaptureError> {
        preflight::check_below_mount(cgroup, &self.cgroup2)?;
        let id = cgroup_id(cgroup).map_err(CaptureError::io("read cgroup id of", cgroup))?;
        let dir = self.layout.extra(id);
        if load::adopt_pinned(&dir, id)? {
            return Ok(());
        }
        let mut loaded = self.loaded();
        let loaded = match &mut *loaded {
            Some(loaded) => loaded,
            empty => empty.insert(Loaded::load(&self.layout)?),
        };
        loaded.attach_missing(cgroup, &dir)?;
        tracing::info!(cgroup = %cgroup.display(), "gateway: capture attached to extra cgroup");
        Ok(())
    }

    /// Detach the programs from an extra cgroup. If the cgroup no longer exists, every extra
    /// attachment whose cgroup is gone is cleaned up instead.
    pub fn detach_extra(&self, cgroup: &Path) -> Result<(), CaptureError> {
        match cgroup_id(cgroup) {
            Ok(id) => pins::remove_links(&self.layout.extra(id)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                pins::prune_defunct_extras(&self.layout)
            }
            Err(e) => Err(CaptureError::io("read cgroup id of", cgroup)(e)),
        }
    }

    /// Detach the programs attached to the cgroup whose id is `cgroup_id`, wherever it was:
    /// never those of another cgroup that took its path since (a restarted container).
    pub fn detach_extra_id(&self, cgroup_id: u64) -> Result<(), CaptureError> {
        let dir = self.layout.extra(cgroup_id);
        if dir.exists() {
            pins::remove_links(&dir)?;
        }
        Ok(())
    }

    fn loaded(&self) -> MutexGuard<'_, Option<Loaded>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `Capture` is shared across tokio tasks.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<Capture>();
};
