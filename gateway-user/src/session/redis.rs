//! The Redis session store: shared by every node; revocations fan out over pub/sub.
//!
//! Keys (`P` = the configured prefix, e.g. `sluice:`):
//! - `P session:ID` — a hash: `session` = the session JSON as created, `state` = the current
//!   state (authoritative; a hash so revoke/activate can change the state atomically in a
//!   script without re-encoding the JSON), `policy` = the policy JSON when it was replaced
//!   after creation (it wins over the one in `session`). Expires at the session's `expires_at` (`EXPIREAT`).
//! - `P token:DIGEST_HEX` — the session id, same expiry (`SET … EXAT`).
//! - `P sessions` — the set of ids, for listing; ids whose hash has expired are removed when
//!   listing.
//! - channel `P revoked` — ids of revoked sessions and of sessions whose policy changed.
//! - `P proxies` — a hash: upstream proxy id → the [`StoredProxy`] JSON (sealed whole);
//!   `P proxy-default` — the [`StoredDefault`] JSON; `P proxy-epoch` — set with the first
//!   entry, never removed; channel `P proxies-changed` — the id of each proxy written,
//!   removed or made the default.
//!
//! Revoking keeps the hash (state `revoked`) until its expiry so it reads as "revoked", not
//! "unknown". A background task subscribes to both channels, reconnecting with backoff; after
//! a reconnect it sends [`RESYNC`] and a proxy change because messages published during the
//! gap were missed.
//!
//! Commands go through a `ConnectionManager` with short timeouts (connect 1 s, response 2 s,
//! whole operation 3 s): the data path would rather fail closed than wait.

use std::fmt;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use ::redis::{Client, RedisError, Script, cmd};
use futures_util::StreamExt as _;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::crypto::MasterKey;
use super::model::{NewSession, Session, SessionState, mask_password, unix_now};
use super::proxies::{ProxyTable, Put, Removed, StoredDefault, StoredProxy, new_epoch};
use super::store::{RESYNC, SessionStore, StoreError, StoreFuture, seal_new_session};
use super::token::{Token, TokenDigest};
use crate::policy::PolicySpec;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const PING_EVERY: Duration = Duration::from_secs(10);
const REVOCATION_BACKLOG: usize = 1024;

/// Sets the state to `revoked` if the session exists and publishes its id. KEYS[1] = session
/// hash; ARGV[1] = channel, ARGV[2] = id.
const REVOKE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'revoked')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1";

/// Sets the session's policy (a field over the one in its JSON) if the session exists and
/// publishes its id, so every node's cache reads it again. KEYS[1] = session hash; ARGV[1] =
/// the policy JSON, ARGV[2] = channel, ARGV[3] = id.
const SET_POLICY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'policy', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1";

/// Moves `pending` to `active`. KEYS[1] = session hash.
const ACTIVATE: &str = r"
if redis.call('HGET', KEYS[1], 'state') == 'pending' then
  redis.call('HSET', KEYS[1], 'state', 'active')
  return 1
end
return 0";

/// Stores a proxy, unless ARGV[3] is `1` and the id is taken. KEYS = proxies hash, default,
/// epoch; ARGV[1] = id, ARGV[2] = JSON, ARGV[3] = create only, ARGV[4] = channel, ARGV[5] =
/// an epoch in case there is none.
const PUT_PROXY: &str = r"
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SETNX', KEYS[3], ARGV[5])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1";

/// Removes a proxy unless it is (or may be: unreadable) the default (2); 0 if absent. KEYS
/// as [`PUT_PROXY`]; ARGV[1] = id, ARGV[2] = channel, ARGV[3] = an epoch.
const REMOVE_PROXY: &str = r"
local d = redis.call('GET', KEYS[2])
if d then
  local ok, v = pcall(cjson.decode, d)
  if not ok or type(v) ~= 'table' or v.id == ARGV[1] then return 2 end
end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SETNX', KEYS[3], ARGV[3])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1";

/// Makes ARGV[2] (a sealed default naming ARGV[1]) the default; 0 if there is no such
/// proxy. KEYS as [`PUT_PROXY`]; ARGV[3] = channel, ARGV[4] = an epoch.
const SET_DEFAULT_PROXY: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SETNX', KEYS[3], ARGV[4])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1";

/// Clears the default if it names ARGV[1] (or cannot be read); 0 otherwise. KEYS as
/// [`PUT_PROXY`]; ARGV[2] = channel.
const UNSET_DEFAULT_PROXY: &str = r"
local d = redis.call('GET', KEYS[2])
if not d then return 0 end
local ok, v = pcall(cjson.decode, d)
if ok and type(v) == 'table' and v.id ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1";

/// Sessions in Redis.
///
/// # Security
/// Redis holds token digests and sealed credentials only. `Debug` masks the URL's password.
pub struct RedisStore {
    commands: ConnectionManager,
    prefix: String,
    shown_url: String,
    revoked: broadcast::Sender<String>,
    proxy_changes: broadcast::Sender<()>,
    subscriber: JoinHandle<()>,
}

impl RedisStore {
    /// Connects to `url` (`redis://` or `redis+unix://`; `rediss://` needs a TLS feature of
    /// the `redis` crate this build does not enable), subscribes to revocations, and starts
    /// the subscriber task. Fails if Redis is unreachable now.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<RedisStore, StoreError> {
        let shown_url = mask_password(url);
        let client = Client::open(url).map_err(|_| {
            StoreError::Unreachable(format!(
                "{shown_url} is not a usable Redis URL (redis:// or redis+unix://)"
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let commands = bounded(ConnectionManager::new_with_config(client.clone(), config))
            .await
            .map_err(|err| StoreError::Unreachable(format!("{shown_url}: {err}")))?;
        let channels = Channels {
            revoked: format!("{key_prefix}revoked"),
            proxies: format!("{key_prefix}proxies-changed"),
        };
        let pubsub = bounded(subscribe(&client, &channels))
            .await
            .map_err(|err| StoreError::Unreachable(format!("{shown_url}: subscribe: {err}")))?;
        let (revoked, _) = broadcast::channel(REVOCATION_BACKLOG);
        let (proxy_changes, _) = broadcast::channel(REVOCATION_BACKLOG);
        let outlets = Outlets {
            revoked: revoked.clone(),
            proxies: proxy_changes.clone(),
        };
        let subscriber = tokio::spawn(forward_messages(client, channels, outlets, pubsub));
        Ok(RedisStore {
            commands,
            prefix: key_prefix.to_owned(),
            shown_url,
            revoked,
            proxy_changes,
            subscriber,
        })
    }

    fn proxies_key(&self) -> String {
        format!("{}proxies", self.prefix)
    }

    fn default_proxy_key(&self) -> String {
        format!("{}proxy-default", self.prefix)
    }

    fn proxies_channel(&self) -> String {
        format!("{}proxies-changed", self.prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{}proxy-epoch", self.prefix)
    }

    /// The table; an entry (or default) that does not parse is reported, not fatal.
    async fn proxies_inner(&self) -> Result<ProxyTable, StoreError> {
        let mut conn = self.commands.clone();
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HGETALL")
            .arg(self.proxies_key())
            .cmd("GET")
            .arg(self.default_proxy_key())
            .cmd("GET")
            .arg(self.epoch_key());
        let (entries, default, epoch): (Vec<(String, String)>, Option<String>, Option<String>) =
            self.run(pipe.query_async(&mut conn)).await?;
        let mut table = ProxyTable {
            epoch,
            ..ProxyTable::default()
        };
        for (id, json) in entries {
            match serde_json::from_str::<StoredProxy>(&json) {
                Ok(entry) if entry.id == id => table.proxies.push(entry),
                Ok(_) => table
                    .unreadable
                    .push((id, "stored under another id".into())),
                Err(err) => table
                    .unreadable
                    .push((id, format!("stored entry does not parse: {err}"))),
            }
        }
        table.proxies.sort_by(|a, b| a.id.cmp(&b.id));
        match default.map(|json| serde_json::from_str::<StoredDefault>(&json)) {
            None => {}
            Some(Ok(default)) => table.default = Some(default),
            Some(Err(err)) => {
                table.default_unreadable = Some(format!("stored default does not parse: {err}"));
            }
        }
        Ok(table)
    }

    async fn proxy_script(&self, code: &str, args: &[&str]) -> Result<i64, StoreError> {
        let mut conn = self.commands.clone();
        let script = Script::new(code);
        let mut invocation = script.key(self.proxies_key());
        invocation
            .key(self.default_proxy_key())
            .key(self.epoch_key());
        for arg in args {
            invocation.arg(*arg);
        }
        self.run(invocation.invoke_async(&mut conn)).await
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}session:{id}", self.prefix)
    }

    fn token_key(&self, digest: &TokenDigest) -> String {
        format!("{}token:{}", self.prefix, digest.to_hex())
    }

    fn set_key(&self) -> String {
        format!("{}sessions", self.prefix)
    }

    async fn create_inner(
        &self,
        new: NewSession,
        key: &MasterKey,
    ) -> Result<(Session, Token), StoreError> {
        let (session, token) = seal_new_session(new, key)?;
        let json = serde_json::to_string(&session).map_err(|err| corrupt(&session.id, err))?;
        let session_key = self.session_key(&session.id);
        let expires_at = session.expires_at;
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&session_key)
            .arg("session")
            .arg(&json)
            .arg("state")
            .arg(SessionState::Pending.as_str())
            .ignore()
            .cmd("EXPIREAT")
            .arg(&session_key)
            .arg(expires_at)
            .ignore()
            .cmd("SET")
            .arg(self.token_key(&session.token_sha256))
            .arg(&session.id)
            .arg("EXAT")
            .arg(expires_at)
            .ignore()
            .cmd("SADD")
            .arg(self.set_key())
            .arg(&session.id)
            .ignore();
        let mut conn = self.commands.clone();
        self.run(pipe.query_async::<()>(&mut conn)).await?;
        Ok((session, token))
    }

    async fn get_inner(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let mut conn = self.commands.clone();
        let key = self.session_key(id);
        let fields: Fields = self
            .run(
                cmd("HMGET")
                    .arg(&key)
                    .arg("session")
                    .arg("state")
                    .arg("policy")
                    .query_async(&mut conn),
            )
            .await?;
        decode(id, fields)
    }

    async fn find_by_token_inner(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<Session>, StoreError> {
        let mut conn = self.commands.clone();
        let id: Option<String> = self
            .run(
                cmd("GET")
                    .arg(self.token_key(digest))
                    .query_async(&mut conn),
            )
            .await?;
        match id {
            Some(id) => self.get_inner(&id).await,
            None => Ok(None),
        }
    }

    async fn list_inner(&self) -> Result<Vec<Session>, StoreError> {
        let mut conn = self.commands.clone();
        let ids: Vec<String> = self
            .run(cmd("SMEMBERS").arg(self.set_key()).query_async(&mut conn))
            .await?;
        let mut sessions = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for id in ids {
            match self.get_inner(&id).await? {
                Some(session) => sessions.push(session),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            let mut srem = cmd("SREM");
            srem.arg(self.set_key()).arg(&gone);
            self.run(srem.query_async::<i64>(&mut conn)).await?;
        }
        sessions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(sessions)
    }

    async fn script(&self, code: &str, id: &str, args: &[&str]) -> Result<bool, StoreError> {
        let mut conn = self.commands.clone();
        let script = Script::new(code);
        let mut invocation = script.key(self.session_key(id));
        for arg in args {
            invocation.arg(*arg);
        }
        let changed: i64 = self.run(invocation.invoke_async(&mut conn)).await?;
        Ok(changed == 1)
    }

    /// Runs one Redis operation under [`OPERATION_TIMEOUT`], mapping errors.
    async fn run<T>(
        &self,
        op: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        bounded(op)
            .await
            .map_err(|err| redis_error(&self.shown_url, err))
    }
}

impl SessionStore for RedisStore {
    fn create<'a>(
        &'a self,
        new: NewSession,
        key: &'a MasterKey,
    ) -> StoreFuture<'a, (Session, Token)> {
        Box::pin(self.create_inner(new, key))
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(self.get_inner(id))
    }

    fn find_by_token<'a>(&'a self, digest: &'a TokenDigest) -> StoreFuture<'a, Option<Session>> {
        Box::pin(self.find_by_token_inner(digest))
    }

    fn list(&self) -> StoreFuture<'_, Vec<Session>> {
        Box::pin(self.list_inner())
    }

    fn revoke<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let channel = format!("{}revoked", self.prefix);
            self.script(REVOKE, id, &[&channel, id]).await
        })
    }

    fn activate<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.script(ACTIVATE, id, &[]))
    }

    fn set_policy<'a>(&'a self, id: &'a str, policy: &'a PolicySpec) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let json = serde_json::to_string(policy).map_err(|err| corrupt(id, err))?;
            let channel = format!("{}revoked", self.prefix);
            self.script(SET_POLICY, id, &[&json, &channel, id]).await
        })
    }

    fn revocations(&self) -> broadcast::Receiver<String> {
        self.revoked.subscribe()
    }

    fn proxies(&self) -> StoreFuture<'_, ProxyTable> {
        Box::pin(self.proxies_inner())
    }

    fn put_proxy(&self, proxy: StoredProxy, put: Put) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let json = serde_json::to_string(&proxy).map_err(|err| corrupt(&proxy.id, err))?;
            let create = if put == Put::Create { "1" } else { "0" };
            let channel = self.proxies_channel();
            let epoch = new_epoch();
            let done = self
                .proxy_script(PUT_PROXY, &[&proxy.id, &json, create, &channel, &epoch])
                .await?;
            Ok(done == 1)
        })
    }

    fn remove_proxy<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Removed> {
        Box::pin(async move {
            let channel = self.proxies_channel();
            let epoch = new_epoch();
            Ok(
                match self
                    .proxy_script(REMOVE_PROXY, &[id, &channel, &epoch])
                    .await?
                {
                    1 => Removed::Yes,
                    2 => Removed::IsDefault,
                    _ => Removed::Absent,
                },
            )
        })
    }

    fn set_default_proxy(&self, default: StoredDefault) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let json = serde_json::to_string(&default).map_err(|err| corrupt(&default.id, err))?;
            let channel = self.proxies_channel();
            let epoch = new_epoch();
            let args = [default.id.as_str(), &json, &channel, &epoch];
            Ok(self.proxy_script(SET_DEFAULT_PROXY, &args).await? == 1)
        })
    }

    fn unset_default_proxy<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let channel = self.proxies_channel();
            Ok(self
                .proxy_script(UNSET_DEFAULT_PROXY, &[id, &channel])
                .await?
                == 1)
        })
    }

    fn proxy_changes(&self) -> broadcast::Receiver<()> {
        self.proxy_changes.subscribe()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown_url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A stored hash back to a session: the JSON, with the `state` field as the current state
/// and expiry applied.
/// A session hash's `session`, `state` and `policy` fields.
type Fields = (Option<String>, Option<String>, Option<String>);

fn decode(id: &str, (json, state, policy): Fields) -> Result<Option<Session>, StoreError> {
    let Some(json) = json else {
        return Ok(None);
    };
    let mut session: Session = serde_json::from_str(&json).map_err(|err| corrupt(id, err))?;
    if let Some(policy) = policy {
        session.policy = serde_json::from_str(&policy).map_err(|err| corrupt(id, err))?;
    }
    if let Some(state) = state {
        session.state = serde_json::from_value(serde_json::Value::String(state))
            .map_err(|err| corrupt(id, err))?;
    }
    session.state = session.effective_state(unix_now());
    Ok(Some(session))
}

fn corrupt(id: &str, err: impl fmt::Display) -> StoreError {
    StoreError::Corrupt {
        id: id.to_owned(),
        reason: err.to_string(),
    }
}

fn redis_error(url: &str, err: RedisError) -> StoreError {
    StoreError::Unreachable(format!("{url}: {err}"))
}

async fn bounded<T>(op: impl Future<Output = Result<T, RedisError>>) -> Result<T, RedisError> {
    match tokio::time::timeout(OPERATION_TIMEOUT, op).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer within 3 s",
        ))),
    }
}

/// The store's pub/sub channels.
struct Channels {
    revoked: String,
    proxies: String,
}

/// Where messages of each channel go.
struct Outlets {
    revoked: broadcast::Sender<String>,
    proxies: broadcast::Sender<()>,
}

impl Outlets {
    /// Everything may have been missed: drop every cached session, reread the proxies.
    fn resync(&self) {
        let _ = self.revoked.send(RESYNC.to_owned());
        let _ = self.proxies.send(());
    }
}

async fn subscribe(client: &Client, channels: &Channels) -> Result<PubSub, RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channels.revoked).await?;
    pubsub.subscribe(&channels.proxies).await?;
    Ok(pubsub)
}

/// Forwards published revocations and proxy changes for as long as the store lives;
/// reconnects with backoff and resyncs after every reconnect.
async fn forward_messages(client: Client, channels: Channels, outlets: Outlets, first: PubSub) {
    let mut next = Some(first);
    let mut backoff = BACKOFF_MIN;
    loop {
        let pubsub = match next.take() {
            Some(pubsub) => pubsub,
            None => match bounded(subscribe(&client, &channels)).await {
                Ok(pubsub) => {
                    tracing::info!(
                        "store: subscription re-established; dropping cached sessions, rereading proxies"
                    );
                    outlets.resync();
                    backoff = BACKOFF_MIN;
                    pubsub
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "store: cannot subscribe to revocations");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        relay(pubsub, &channels, &outlets).await;
        tracing::warn!("store: subscription lost; reconnecting");
    }
}

/// Relays messages until the connection drops or stops answering pings.
async fn relay(pubsub: PubSub, channels: &Channels, outlets: &Outlets) {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return };
                if message.get_channel_name() == channels.proxies {
                    let _ = outlets.proxies.send(());
                    continue;
                }
                match message.get_payload::<String>() {
                    Ok(id) => {
                        let _ = outlets.revoked.send(id);
                    }
                    Err(err) => {
                        // Fail closed: an unreadable message drops every cached session.
                        tracing::warn!(error = %err, "store: unreadable revocation message");
                        outlets.resync();
                    }
                }
            }
            _ = ping.tick() => {
                let answered = tokio::time::timeout(RESPONSE_TIMEOUT, sink.ping::<::redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "redis_tests.rs"]
pub(crate) mod tests;
