//! The embedded session store: one node, sessions in memory, persisted to
//! `<state_dir>/sessions.json` so a daemon restart keeps them.
//!
//! Every write rewrites the file atomically (temporary file, `fsync`, `rename`), mode 0600.
//! Expiry is by timestamp: a session past `expires_at` reads as `expired`, and the next write
//! drops it (lazy pruning). Revocations are broadcast in-process. Upstream proxies created
//! through the API live beside them in `<state_dir>/proxies.json`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, broadcast};

use super::crypto::MasterKey;
use super::model::{NewSession, Session, SessionState, unix_now};
use super::proxies::{ProxyTable, Put, Removed, StoredDefault, StoredProxy, new_epoch};
use super::store::{SessionStore, StoreError, StoreFuture, seal_new_session};
use super::token::{Token, TokenDigest};
use crate::policy::PolicySpec;

/// The file name under the state directory.
pub const SESSIONS_FILE: &str = "sessions.json";
/// The file of API-created upstream proxies, under the state directory.
pub const PROXIES_FILE: &str = "proxies.json";

const FILE_VERSION: u32 = 1;
const REVOCATION_BACKLOG: usize = 1024;

/// Sessions kept by this process (and its file).
///
/// # Security
/// The file holds token digests and sealed credentials, never plaintext; it is still
/// created 0600 and refused when readable by others.
#[derive(Debug)]
pub struct EmbeddedStore {
    file: Option<PathBuf>,
    table: Mutex<Table>,
    revoked: broadcast::Sender<String>,
    proxies_file: Option<PathBuf>,
    proxies: Mutex<ProxyTable>,
    proxy_changes: broadcast::Sender<()>,
}

#[derive(Debug, Default)]
struct Table {
    by_id: BTreeMap<String, Session>,
    by_token: HashMap<TokenDigest, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    version: u32,
    sessions: Vec<Session>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxiesFile {
    version: u32,
    proxies: Vec<StoredProxy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<StoredDefault>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
}

/// A file with a format version.
trait Versioned {
    fn version(&self) -> u32;
}

impl Versioned for FileFormat {
    fn version(&self) -> u32 {
        self.version
    }
}

impl Versioned for ProxiesFile {
    fn version(&self) -> u32 {
        self.version
    }
}

impl EmbeddedStore {
    /// Opens the store in `state_dir` (created 0700 if missing), loading `sessions.json` if
    /// it exists.
    pub fn open(state_dir: &Path) -> Result<EmbeddedStore, StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|source| io_error("create directory", state_dir, source))?;
        let path = state_dir.join(SESSIONS_FILE);
        let mut table = Table::default();
        if let Some(file) = read_private::<FileFormat>(&path)? {
            for session in file.sessions {
                table.insert(session);
            }
        }
        let proxies_path = state_dir.join(PROXIES_FILE);
        let proxies = read_private::<ProxiesFile>(&proxies_path)?
            .map(|file| ProxyTable {
                proxies: file.proxies,
                default: file.default,
                epoch: file.epoch,
                ..ProxyTable::default()
            })
            .unwrap_or_default();
        let mut store = EmbeddedStore::with(Some(path), table);
        store.proxies_file = Some(proxies_path);
        store.proxies = Mutex::new(proxies);
        Ok(store)
    }

    /// A store that lives only in memory (tests, and `--ephemeral` style runs).
    pub fn in_memory() -> EmbeddedStore {
        EmbeddedStore::with(None, Table::default())
    }

    /// The file the store persists to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn with(file: Option<PathBuf>, table: Table) -> EmbeddedStore {
        let (revoked, _) = broadcast::channel(REVOCATION_BACKLOG);
        let (proxy_changes, _) = broadcast::channel(REVOCATION_BACKLOG);
        EmbeddedStore {
            file,
            table: Mutex::new(table),
            revoked,
            proxies_file: None,
            proxies: Mutex::new(ProxyTable::default()),
            proxy_changes,
        }
    }

    async fn create_inner(
        &self,
        new: NewSession,
        key: &MasterKey,
    ) -> Result<(Session, Token), StoreError> {
        let (session, token) = seal_new_session(new, key)?;
        let mut table = self.table.lock().await;
        table.prune(unix_now());
        table.insert(session.clone());
        if let Err(err) = self.persist(&table).await {
            table.remove(&session.id);
            return Err(err);
        }
        Ok((session, token))
    }

    async fn revoke_inner(&self, id: &str) -> Result<bool, StoreError> {
        let mut table = self.table.lock().await;
        let Some(session) = table.by_id.get_mut(id) else {
            return Ok(false);
        };
        session.state = SessionState::Revoked;
        // In effect at once, even if the file cannot be written.
        let _ = self.revoked.send(id.to_owned());
        table.prune(unix_now());
        self.persist(&table).await?;
        Ok(true)
    }

    async fn set_policy_inner(&self, id: &str, policy: &PolicySpec) -> Result<bool, StoreError> {
        let mut table = self.table.lock().await;
        let Some(session) = table.by_id.get_mut(id) else {
            return Ok(false);
        };
        let old = std::mem::replace(&mut session.policy, policy.clone());
        if let Err(err) = self.persist(&table).await {
            if let Some(session) = table.by_id.get_mut(id) {
                session.policy = old;
            }
            return Err(err);
        }
        let _ = self.revoked.send(id.to_owned());
        Ok(true)
    }

    async fn activate_inner(&self, id: &str) -> Result<bool, StoreError> {
        let now = unix_now();
        let mut table = self.table.lock().await;
        let Some(session) = table.by_id.get_mut(id) else {
            return Ok(false);
        };
        if session.effective_state(now) != SessionState::Pending {
            return Ok(false);
        }
        session.state = SessionState::Active;
        table.prune(now);
        self.persist(&table).await?;
        Ok(true)
    }

    async fn persist(&self, table: &Table) -> Result<(), StoreError> {
        let file = FileFormat {
            version: FILE_VERSION,
            sessions: table.by_id.values().cloned().collect(),
        };
        write_json(self.file.clone(), &file).await
    }

    async fn persist_proxies(&self, table: &ProxyTable) -> Result<(), StoreError> {
        let file = ProxiesFile {
            version: FILE_VERSION,
            proxies: table.proxies.clone(),
            default: table.default.clone(),
            epoch: table.epoch.clone(),
        };
        write_json(self.proxies_file.clone(), &file).await
    }

    /// Applies `change` to the proxy table and persists it; the table is left as it was
    /// when `change` says no (`false`) or the file cannot be written.
    async fn change_proxies<T>(
        &self,
        change: impl FnOnce(&mut ProxyTable) -> (bool, T),
    ) -> Result<T, StoreError> {
        let mut table = self.proxies.lock().await;
        let mut next = table.clone();
        let (changed, answer) = change(&mut next);
        if changed {
            next.epoch.get_or_insert_with(new_epoch);
            self.persist_proxies(&next).await?;
            *table = next;
            let _ = self.proxy_changes.send(());
        }
        Ok(answer)
    }

    async fn read<F>(&self, find: F) -> Option<Session>
    where
        F: FnOnce(&Table) -> Option<&Session>,
    {
        let table = self.table.lock().await;
        find(&table).map(|session| with_effective_state(session.clone()))
    }
}

impl SessionStore for EmbeddedStore {
    fn create<'a>(
        &'a self,
        new: NewSession,
        key: &'a MasterKey,
    ) -> StoreFuture<'a, (Session, Token)> {
        Box::pin(self.create_inner(new, key))
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move { Ok(self.read(|t| t.by_id.get(id)).await) })
    }

    fn find_by_token<'a>(&'a self, digest: &'a TokenDigest) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            Ok(self
                .read(|t| t.by_token.get(digest).and_then(|id| t.by_id.get(id)))
                .await)
        })
    }

    fn list(&self) -> StoreFuture<'_, Vec<Session>> {
        Box::pin(async move {
            let table = self.table.lock().await;
            let mut sessions: Vec<Session> = table
                .by_id
                .values()
                .cloned()
                .map(with_effective_state)
                .collect();
            sessions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(sessions)
        })
    }

    fn revoke<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.revoke_inner(id))
    }

    fn activate<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.activate_inner(id))
    }

    fn set_policy<'a>(&'a self, id: &'a str, policy: &'a PolicySpec) -> StoreFuture<'a, bool> {
        Box::pin(self.set_policy_inner(id, policy))
    }

    fn revocations(&self) -> broadcast::Receiver<String> {
        self.revoked.subscribe()
    }

    fn proxies(&self) -> StoreFuture<'_, ProxyTable> {
        Box::pin(async move { Ok(self.proxies.lock().await.clone()) })
    }

    fn put_proxy(&self, proxy: StoredProxy, put: Put) -> StoreFuture<'_, bool> {
        Box::pin(self.change_proxies(move |table| {
            match table.proxies.iter_mut().find(|p| p.id == proxy.id) {
                Some(_) if put == Put::Create => return (false, false),
                Some(old) => *old = proxy,
                None => table.proxies.push(proxy),
            }
            (true, true)
        }))
    }

    fn remove_proxy<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Removed> {
        Box::pin(self.change_proxies(move |table| {
            if table.default_id() == Some(id) {
                return (false, Removed::IsDefault);
            }
            let before = table.proxies.len();
            table.proxies.retain(|p| p.id != id);
            if table.proxies.len() == before {
                return (false, Removed::Absent);
            }
            (true, Removed::Yes)
        }))
    }

    fn set_default_proxy(&self, default: StoredDefault) -> StoreFuture<'_, bool> {
        Box::pin(self.change_proxies(move |table| {
            if table.get(&default.id).is_none() {
                return (false, false);
            }
            table.default = Some(default);
            (true, true)
        }))
    }

    fn unset_default_proxy<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.change_proxies(move |table| {
            if table.default_id() != Some(id) {
                return (false, false);
            }
            table.default = None;
            (true, true)
        }))
    }

    fn proxy_changes(&self) -> broadcast::Receiver<()> {
        self.proxy_changes.subscribe()
    }
}

impl Table {
    fn insert(&mut self, session: Session) {
        self.by_token
            .insert(session.token_sha256, session.id.clone());
        self.by_id.insert(session.id.clone(), session);
    }

    fn remove(&mut self, id: &str) {
        if let Some(session) = self.by_id.remove(id) {
            self.by_token.remove(&session.token_sha256);
        }
    }

    /// Drops sessions past their expiry (revoked ones too: nothing is refused by them that
    /// expiry would not refuse).
    fn prune(&mut self, now: u64) {
        let gone: Vec<String> = self
            .by_id
            .values()
            .filter(|s| now >= s.expires_at)
            .map(|s| s.id.clone())
            .collect();
        for id in gone {
            self.remove(&id);
        }
    }
}

fn with_effective_state(mut session: Session) -> Session {
    session.state = session.effective_state(unix_now());
    session
}

/// Reads the JSON file at `path` (`None` if there is none), refusing one readable by
/// others or of another format version.
fn read_private<T: DeserializeOwned + Versioned>(path: &Path) -> Result<Option<T>, StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error("read", path, source)),
    };
    let mode = file
        .metadata()
        .map_err(|source| io_error("inspect", path, source))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::Permissions {
            path: path.display().to_string(),
            mode: mode & 0o7777,
        });
    }
    let corrupt = |reason: String| StoreError::Corrupt {
        id: path.display().to_string(),
        reason,
    };
    let parsed: T = serde_json::from_reader(std::io::BufReader::new(file))
        .map_err(|err| corrupt(err.to_string()))?;
    if parsed.version() != FILE_VERSION {
        return Err(corrupt(format!(
            "version {} (this build reads {FILE_VERSION})",
            parsed.version()
        )));
    }
    Ok(Some(parsed))
}

/// Writes `value` as JSON to `path` atomically (nothing when the store has no file).
async fn write_json(path: Option<PathBuf>, value: &impl Serialize) -> Result<(), StoreError> {
    let Some(path) = path else {
        return Ok(());
    };
    let bytes = serde_json::to_vec_pretty(value).map_err(|err| StoreError::Corrupt {
        id: path.display().to_string(),
        reason: err.to_string(),
    })?;
    tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
        .await
        .map_err(|err| StoreError::Unreachable(format!("embedded store writer: {err}")))?
}

/// Writes `bytes` to `path` so that readers see the old or the new file, never a mix.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let _ = fs::remove_file(&temp);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .map_err(|source| io_error("write", &temp, source))?;
    fs::rename(&temp, path).map_err(|source| io_error("replace", path, source))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| io_error("sync", dir, source))?;
    }
    Ok(())
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
#[path = "embedded_tests.rs"]
mod tests;
