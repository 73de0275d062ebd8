//! Attaching a program to a cgroup as a pinned bpf link with the raw `bpf(2)` syscall.
//!
//! aya 0.14 attaches `cgroup/setsockopt` through a link (`CgroupSockoptLink`) that cannot be
//! turned into an `FdLink`, so it cannot be pinned, and an unpinned link detaches when the
//! daemon exits: the guard would be gone after a crash. This glue makes the same
//! `BPF_LINK_CREATE` aya would, and pins the link fd with `BPF_OBJ_PIN`; from then on the
//! pin behaves like every other link pin (`PinnedLink::from_pin` re-adopts it, unpinning it
//! detaches it, `pins::link_cgroup_id` reads its cgroup).

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

/// `enum bpf_attach_type`: `BPF_CGROUP_SETSOCKOPT`.
pub(crate) const BPF_CGROUP_SETSOCKOPT: u32 = 22;

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_LINK_CREATE: libc::c_long = 28;

/// `bpf_attr` prefix for `BPF_LINK_CREATE` (the kernel zero-fills what we do not pass).
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
}

/// `bpf_attr` prefix for `BPF_OBJ_PIN`.
#[repr(C)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// Attach `prog` to the cgroup `cgroup` for `attach_type` as a bpf link, and pin the link at
/// `pin` (whose directory must exist on bpffs). The link fd is closed on return: the pin keeps
/// the program attached.
pub(crate) fn attach_pinned(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: u32,
    pin: &Path,
) -> io::Result<()> {
    let link = link(prog, cgroup, attach_type)?;
    let path = CString::new(pin.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let pin_attr = ObjPinAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd_u32(link.as_fd())?,
        file_flags: 0,
    };
    bpf(BPF_OBJ_PIN, &pin_attr).map(drop)
}

/// Attach `prog` to the cgroup `cgroup` for `attach_type` as a bpf link; closing the returned
/// fd detaches it.
pub(crate) fn link(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    let attr = LinkCreateAttr {
        prog_fd: fd_u32(prog)?,
        target_fd: fd_u32(cgroup)?,
        attach_type,
        flags: 0,
    };
    bpf_new_fd(BPF_LINK_CREATE, &attr)
}

fn fd_u32(fd: BorrowedFd<'_>) -> io::Result<u32> {
    u32::try_from(fd.as_raw_fd()).map_err(io::Error::other)
}

/// Run a `bpf(cmd, attr)` that returns a new fd, owned by the result.
fn bpf_new_fd<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
    let raw = i32::try_from(bpf(cmd, attr)?).map_err(io::Error::other)?;
    #[expect(unsafe_code, reason = "taking ownership of the fd bpf(2) returned")]
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Run `bpf(cmd, attr)`, returning its non-negative result.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    #[expect(
        unsafe_code,
        reason = "aya 0.14 cannot create a pinnable cgroup sockopt link"
    )]
    // SAFETY: `attr` is a valid, fully initialised bpf_attr prefix for `cmd` of
    // `size_of::<T>()` bytes; any pointer inside it stays valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_ref(attr), size_of::<T>()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
