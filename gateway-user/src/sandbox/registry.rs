//! The in-memory sandbox table, persisted as JSON.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::Sandbox;

/// Why the registry could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The state file could not be read or written.
    #[error("sandbox registry: {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The state file is not valid JSON.
    #[error("sandbox registry: parse {path}: {message}; move it aside to start without sandboxes")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// Enrolled sandboxes by cgroup id. Reads (one per accepted connection) never wait on writes
/// for long: writes are rare (enroll, remove).
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    by_cgroup: RwLock<HashMap<u64, Arc<Sandbox>>>,
    next_id: AtomicU64,
}

impl Registry {
    /// Loads the registry persisted at `path` (an absent file is an empty registry).
    pub fn load(path: &Path) -> Result<Registry, RegistryError> {
        let sandboxes: Vec<Sandbox> = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RegistryError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(RegistryError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let next = sandboxes.iter().map(|s| s.id).max().unwrap_or(0) + 1;
        let by_cgroup = sandboxes
            .into_iter()
            .map(|s| (s.cgroup_id, Arc::new(s)))
            .collect();
        Ok(Registry {
            path: path.to_path_buf(),
            by_cgroup: RwLock::new(by_cgroup),
            next_id: AtomicU64::new(next),
        })
    }

    /// A fresh sandbox id.
    pub fn allocate_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The sandbox whose cgroup id is `cgroup_id`.
    pub fn by_cgroup(&self, cgroup_id: u64) -> Option<Arc<Sandbox>> {
        self.read().get(&cgroup_id).cloned()
    }

    /// The sandbox with daemon id `id`.
    pub fn by_id(&self, id: u64) -> Option<Arc<Sandbox>> {
        self.read().values().find(|s| s.id == id).cloned()
    }

    /// Every sandbox, ordered by id.
    pub fn list(&self) -> Vec<Arc<Sandbox>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// Adds a sandbox and persists the table.
    pub fn insert(&self, sandbox: Sandbox) -> Result<Arc<Sandbox>, RegistryError> {
        let sandbox = Arc::new(sandbox);
        self.write().insert(sandbox.cgroup_id, sandbox.clone());
        self.save()?;
        Ok(sandbox)
    }

    /// Removes a sandbox by id and persists the table.
    pub fn remove(&self, id: u64) -> Result<Option<Arc<Sandbox>>, RegistryError> {
        let removed = {
            let mut map = self.write();
            let key = map.iter().find(|(_, s)| s.id == id).map(|(k, _)| *k);
            key.and_then(|k| map.remove(&k))
        };
        self.save()?;
        Ok(removed)
    }

    fn save(&self) -> Result<(), RegistryError> {
        let list: Vec<Sandbox> = self.list().iter().map(|s| Sandbox::clone(s)).collect();
        let json = serde_json::to_vec_pretty(&list).unwrap_or_default();
        let tmp = self.path.with_extension("json.tmp");
        let io = |action, source| RegistryError::Io {
            action,
            path: self.path.clone(),
            source,
        };
        std::fs::write(&tmp, json).map_err(|e| io("write", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io("rename", e))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Arc<Sandbox>>> {
        self.by_cgroup
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Arc<Sandbox>>> {
        self.by_cgroup
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(id: u64, cgroup_id: u64) -> Sandbox {
        Sandbox {
            id,
            cgroup: PathBuf::from(format!("/cg/{id}")),
            cgroup_id,
            netns: None,
            session: Some("s1".into()),
            owned: true,
            extra_attach: false,
            upstream_proxy: None,
            container: None,
        }
    }

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandboxes.json");
        let reg = Registry::load(&path).unwrap();
        let id = reg.allocate_id();
        reg.insert(sandbox(id, 77)).unwrap();
        reg.insert(sandbox(reg.allocate_id(), 78)).unwrap();
        reg.remove(id).unwrap();

        let again = Registry::load(&path).unwrap();
        assert!(again.by_cgroup(77).is_none());
        assert_eq!(again.by_cgroup(78).unwrap().session.as_deref(), Some("s1"));
        assert!(
            again.allocate_id() > 2,
            "ids are never reused after a restart"
        );
    }

    #[test]
    fn corrupt_state_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandboxes.json");
        std::fs::write(&path, b"{nope").unwrap();
        let err = Registry::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("sandboxes.json") && err.contains("move it aside"),
            "{err}"
        );
    }
}
