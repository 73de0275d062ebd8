//! The layout of the pin directory, and removing pins.
//!
//! ```text
//! <pin_dir>/SLUICE_SANDBOXES, SLUICE_CONFIG, SLUICE_CONNS, SLUICE_DNS_CLIENTS,
//!           SLUICE_SANDBOX_CONNS, SLUICE_SOCK_ORIG                          maps
//! <pin_dir>/links/<program>                                                 parent cgroup links
//! <pin_dir>/extra/<cgroup id>/<program>                                     extra cgroup links
//! ```

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::programs::links::PinnedLink;
use gateway_common::map_names;

use super::CaptureError;

/// Name of the per-socket storage map (kernel-internal, pinned so every load shares it).
pub(crate) const SOCK_ORIG: &str = "SLUICE_SOCK_ORIG";

/// Every pinned map, by name.
pub(crate) const MAPS: [&str; 6] = [
    map_names::SANDBOXES,
    map_names::CONFIG,
    map_names::CONNS,
    map_names::DNS_CLIENTS,
    map_names::SANDBOX_CONNS,
    SOCK_ORIG,
];

/// Paths inside one pin directory.
#[derive(Clone, Debug)]
pub(crate) struct PinLayout {
    root: PathBuf,
}

impl PinLayout {
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Where a map is pinned.
    pub(crate) fn map(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The directory of the parent cgroup's links.
    pub(crate) fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    /// The directory holding one directory of links per extra cgroup.
    pub(crate) fn extra_root(&self) -> PathBuf {
        self.root.join("extra")
    }

    /// The directory of an extra cgroup's links.
    pub(crate) fn extra(&self, cgroup_id: u64) -> PathBuf {
        self.extra_root().join(cgroup_id.to_string())
    }
}

/// Create `dir` (on bpffs) and its parents.
pub(crate) fn create_dir(dir: &Path) -> Result<(), CaptureError> {
    fs::create_dir_all(dir).map_err(CaptureError::io("create pin directory", dir))
}

/// Unpin and detach every link pinned in `dir`, then remove `dir`. Missing is fine.
pub(crate) fn remove_links(dir: &Path) -> Result<(), CaptureError> {
    for path in entries(dir)? {
        match PinnedLink::from_pin(&path) {
            // Dropping the unpinned link closes its last reference and detaches it.
            Ok(link) => drop(
                link.unpin()
                    .map_err(CaptureError::io("unpin link", &path))?,
            ),
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "gateway: not a link pin, removing it");
                remove_file(&path)?;
            }
        }
    }
    remove_dir(dir)
}

/// Remove every pin of an installation: extra links, parent links, then maps.
pub(crate) fn remove_all(layout: &PinLayout) -> Result<(), CaptureError> {
    for dir in entries(&layout.extra_root())? {
        remove_links(&dir)?;
    }
    remove_dir(&layout.extra_root())?;
    remove_links(&layout.links())?;
    for name in MAPS {
        remove_file(&layout.map(name))?;
    }
    remove_dir(layout.root())
}

/// The entries of `dir`, or none if it does not exist.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, CaptureError> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()
            .map_err(CaptureError::io("list pin directory", dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CaptureError::io("list pin directory", dir)(e)),
    }
}

fn remove_file(path: &Path) -> Result<(), CaptureError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CaptureError::io("unpin", path)(e)),
        _ => Ok(()),
    }
}

fn remove_dir(path: &Path) -> Result<(), CaptureError> {
    match fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(CaptureError::io("remove pin directory", path)(e))
        }
        _ => Ok(()),
    }
}

/// The id of the cgroup the link pinned at `pin` is attached to; 0 when that cgroup is gone
/// (the kernel detaches the links of a removed cgroup) or the pin is not a cgroup link.
///
/// aya 0.14 exposes neither a link's fd nor this field, so this asks the kernel directly:
/// `BPF_OBJ_GET` on the pin, then `BPF_OBJ_GET_INFO_BY_FD` (`bpf_link_info.type` at offset 0,
/// `cgroup.cgroup_id` at offset 16).
pub(crate) fn link_cgroup_id(pin: &Path) -> io::Result<u64> {
    use std::os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    };

    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_LINK_TYPE_CGROUP: u32 = 3;
    /// `bpf_attr` for BPF_OBJ_GET.
    #[repr(C)]
    struct ObjGetAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    /// `bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }

    let path = std::ffi::CString::new(pin.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let get = ObjGetAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    #[expect(
        unsafe_code,
        reason = "aya 0.14 has no accessor for a link's cgroup id"
    )]
    // SAFETY: `get` is a valid bpf_attr prefix for BPF_OBJ_GET; `path` outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &raw const get,
            std::mem::size_of::<ObjGetAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw_fd = i32::try_from(fd).map_err(io::Error::other)?;
    #[expect(
        unsafe_code,
        reason = "taking ownership of the fd BPF_OBJ_GET returned"
    )]
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw_fd) };

    // Zeroed and larger than any kernel's bpf_link_info: the kernel checks the tail is zero.
    let mut info = [0u8; 256];
    let attr = InfoAttr {
        bpf_fd: u32::try_from(fd.as_raw_fd()).map_err(io::Error::other)?,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    #[expect(
        unsafe_code,
        reason = "aya 0.14 has no accessor for a link's cgroup id"
    )]
    // SAFETY: `attr` is a valid bpf_attr prefix for BPF_OBJ_GET_INFO_BY_FD whose `info`
    // points to a writable buffer of `info_len` bytes; `fd` stays open during the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &raw const attr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let (head, rest) = info.split_at(4);
    let link_type = u32::from_ne_bytes(head.try_into().map_err(io::Error::other)?);
    let cgroup_id = u64::from_ne_bytes(rest[12..20].try_into().map_err(io::Error::other)?);
    Ok(if link_type == BPF_LINK_TYPE_CGROUP {
        cgroup_id
    } else {
        0
    })
}

/// Remove the extra attachments whose cgroup no longer exists (their links are defunct).
pub(crate) fn prune_defunct_extras(layout: &PinLayout) -> Result<(), CaptureError> {
    for dir in entries(&layout.extra_root())? {
        let defunct = entries(&dir)?
            .iter()
            .all(|pin| link_cgroup_id(pin).map_or(true, |id| id == 0));
        if defunct {
            remove_links(&dir)?;
        }
    }
    Ok(())
}
