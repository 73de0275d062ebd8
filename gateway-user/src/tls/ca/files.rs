//! File handling for the CA state: atomic writes, private-key permission checks.
//!
//! Every write goes to a fresh temporary file in the same directory (created with its final
//! mode, so a key is never readable by others, not even briefly), is synced, then renamed over
//! the target. Reads of private keys check the mode of the opened file (not of the path), so a
//! swap between check and read cannot slip a world-readable key through.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::CaError;

/// Mode of the private key file.
pub(super) const PRIVATE_MODE: u32 = 0o600;
/// Mode of the certificate file (public by nature).
pub(super) const PUBLIC_MODE: u32 = 0o644;
/// Largest PEM file we read; a CA cert or key is a few KiB.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Whether `path` exists (following symlinks).
pub(super) fn exists(path: &Path) -> Result<bool, CaError> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("inspect", path, e)),
    }
}

/// Creates `dir` (and parents) with mode 0700 if it does not exist yet.
pub(super) fn ensure_private_dir(dir: &Path) -> Result<(), CaError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error("create the state directory", dir, e))
}

/// Writes `contents` to `path` atomically with file mode `mode`.
pub(super) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let dir = parent(path);
    let tmp = temp_path(path);
    let written = write_new(&tmp, contents, mode).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        // Best effort: the temporary file holds nothing the target would not have held.
        let _ = fs::remove_file(&tmp);
        return Err(io_error("write", path, e));
    }
    // Make the rename durable; failure here leaves a correct file, so only report it.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync the directory of", path, e))
}

/// Reads a public PEM file (the certificate).
pub(super) fn read_public(path: &Path) -> Result<String, CaError> {
    let file = File::open(path).map_err(|e| io_error("open", path, e))?;
    read_bounded(file, path)
}

/// Reads a private key file, refusing it if group or others have any permission on it.
///
/// # Security
/// The mode is taken from the opened file descriptor, so the file checked is the file read.
pub(super) fn read_private(path: &Path) -> Result<String, CaError> {
    let file = File::open(path).map_err(|e| io_error("open", path, e))?;
    let meta = file.metadata().map_err(|e| io_error("inspect", path, e))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CaError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    read_bounded(file, path)
}

/// Renames `from` to `to` (replacing `to`) if `from` exists.
pub(super) fn move_aside(from: &Path, to: &Path) -> Result<(), CaError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("move aside", from, e)),
    }
}

fn write_new(tmp: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    // The umask may have narrowed `mode`; set it exactly (never wider than asked).
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

fn read_bounded(file: File, path: &Path) -> Result<String, CaError> {
    let mut text = String::new();
    file.take(MAX_PEM_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| io_error("read", path, e))?;
    Ok(text)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag: u64 = rand::random();
    parent(path).join(format!(".{name}.tmp-{tag:016x}"))
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> CaError {
    CaError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
