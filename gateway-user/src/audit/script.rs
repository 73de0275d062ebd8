//! The batch script and the writer's connection: one idempotent call per batch.
//!
//! The script appends only the records whose sequence number is above the node's `last_seq`
//! and moves `last_seq` with each one, all inside Redis's atomic script execution. So the
//! same batch sent twice (after a timeout, a lost reply, a crash before the spool was trimmed)
//! is stored once, and a batch overlapping an earlier one adds only its new records.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::entry::Entry;

/// Appends a batch: per record `seq, session, kind, record` after `max_len, node` in ARGV.
/// `last_seq` is set after each XADD, so a script stopped half-way still never duplicates.
const APPEND_LUA: &str = r"
local last_text = redis.call('GET', KEYS[2]) or '0'
local last = tonumber(last_text)
local added = 0
for i = 3, #ARGV, 4 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'seq', ARGV[i], 'node', ARGV[2],
      'session', ARGV[i + 1], 'kind', ARGV[i + 2], 'record', ARGV[i + 3])
    redis.call('SET', KEYS[2], ARGV[i])
    last = seq
    last_text = ARGV[i]
    added = added + 1
  end
end
return {added, last_text}
";

/// The batch script (hashed once; loaded into Redis on first use and after a Redis restart).
pub(super) fn append_script() -> redis::Script {
    redis::Script::new(APPEND_LUA)
}

/// Why one batch did not reach Redis.
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamError {
    /// Redis refused or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer in time.
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
}

/// The key holding the highest sequence number the stream has from `node`.
pub(super) fn last_seq_key(stream_key: &str, node: &str) -> String {
    format!("{stream_key}:node:{node}:last_seq")
}

/// Appends `entries` (in increasing `seq` order) to the stream `keys.0`, skipping those at or
/// below the node's `last_seq` (`keys.1`); returns how many were new.
pub(super) async fn append_batch(
    script: &redis::Script,
    conn: &mut MultiplexedConnection,
    keys: (&str, &str),
    max_len: u64,
    node: &str,
    entries: &[Entry],
) -> redis::RedisResult<u64> {
    let mut call = script.prepare_invoke();
    call.key(keys.0).key(keys.1).arg(max_len).arg(node);
    for entry in entries {
        call.arg(entry.seq)
            .arg(&entry.session)
            .arg(&entry.kind)
            .arg(&entry.json);
    }
    let (added, _last): (u64, String) = call.invoke_async(conn).await?;
    Ok(added)
}

/// The writer's connection, opened when missing; a failed call drops it so the next one
/// reconnects.
pub(super) async fn connect<'a>(
    client: &redis::Client,
    slot: &'a mut Option<MultiplexedConnection>,
    limit: Duration,
) -> Result<&'a mut MultiplexedConnection, StreamError> {
    if let Some(conn) = slot {
        return Ok(conn);
    }
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(limit))
        .set_response_timeout(Some(limit));
    let connecting = client.get_multiplexed_async_connection_with_config(&config);
    let conn = tokio::time::timeout(limit, connecting)
        .await
        .map_err(|_| StreamError::Timeout(limit))??;
    Ok(slot.insert(conn))
}
