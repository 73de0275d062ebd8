//! `GET /v1/audit`: records read back from the JSONL file or the Redis Stream, filtered by
//! session and kind, paged with a cursor, optionally waiting for new ones (`follow`).

use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::sessions::Failure;
use crate::audit::{
    AuditQuery, AuditTarget, MAX_FOLLOW, follow_file, follow_redis, query_file, query_redis,
};
use crate::daemon::Node;
use crate::policy::Observed;

/// One page of records.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct AuditRecords {
    /// Records, oldest first.
    pub records: Vec<serde_json::Value>,
    /// Cursor for the next call (`after=`).
    pub next: String,
}

/// Parameters of `GET /v1/audit` (`session`, `kind`, `after`, `limit`, `follow` seconds).
pub fn parse(query: &str) -> Result<(AuditQuery, Option<Duration>), Failure> {
    let mut q = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    let mut follow = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |what: &str| (StatusCode::BAD_REQUEST, format!("query `{key}`: {what}"));
        match key {
            "session" => q.session = Some(value.to_owned()),
            "kind" => q.kind = Some(value.to_owned()),
            "after" => q.after = Some(value.to_owned()),
            "limit" => q.limit = value.parse().map_err(|_| bad("must be a number"))?,
            "follow" => {
                let secs: u64 = value.parse().map_err(|_| bad("must be seconds"))?;
                follow = Some(Duration::from_secs(secs).min(MAX_FOLLOW));
            }
            _ => {
                return Err(bad(
                    "unknown parameter (session, kind, after, limit, follow)",
                ));
            }
        }
    }
    Ok((q, follow))
}

/// Reads a page, waiting up to `follow` for new records when given.
pub async fn read(
    node: &Node,
    query: &AuditQuery,
    follow: Option<Duration>,
) -> Result<AuditRecords, Failure> {
    Reader::new(follow.unwrap_or_default())
        .read(node, query, follow)
        .await
}

/// Reads pages of the audit log one after another (a follow loop, the dashboard's stream).
/// With a Redis Stream it keeps one connection for all its reads, so a busy log costs a
/// stream no new connection per batch; a failed read drops it and the next one reconnects.
#[derive(Debug)]
pub struct Reader {
    /// The longest `follow` this reader waits for (Redis answers within it plus a margin).
    longest_follow: Duration,
    redis: Option<redis::aio::MultiplexedConnection>,
}

impl Reader {
    /// A reader whose reads wait at most `longest_follow` for new records.
    pub fn new(longest_follow: Duration) -> Reader {
        Reader {
            longest_follow,
            redis: None,
        }
    }

    /// One page of `node`'s log, waiting up to `follow` (at most the reader's longest) for
    /// new records when given.
    pub async fn read(
        &mut self,
        node: &Node,
        query: &AuditQuery,
        follow: Option<Duration>,
    ) -> Result<AuditRecords, Failure> {
        let follow = follow.map(|wait| wait.min(self.longest_follow));
        let page = match node.config.audit_target() {
            AuditTarget::File { path } => match follow {
                Some(wait) => follow_file(&path, query, wait).await,
                None => tokio::task::block_in_place(|| query_file(&path, query)),
            }
            .map_err(failed)?,
            AuditTarget::Redis {
                url, stream_key, ..
            } => {
                let read = self.read_redis(&url, &stream_key, query, follow).await;
                if read.is_err() {
                    self.redis = None;
                }
                read?
            }
        };
        Ok(AuditRecords {
            records: page.records,
            next: page.next,
        })
    }

    async fn read_redis(
        &mut self,
        url: &str,
        stream_key: &str,
        query: &AuditQuery,
        follow: Option<Duration>,
    ) -> Result<crate::audit::AuditPage, Failure> {
        let conn = match &mut self.redis {
            Some(conn) => conn,
            None => self.redis.insert(connect(url, self.longest_follow).await?),
        };
        match follow {
            Some(wait) => follow_redis(conn, stream_key, query, wait).await,
            None => query_redis(conn, stream_key, query).await,
        }
        .map_err(failed)
    }
}

/// A connection whose replies may take `longest_follow` (a blocking read) plus a margin.
async fn connect(
    url: &str,
    longest_follow: Duration,
) -> Result<redis::aio::MultiplexedConnection, Failure> {
    let unavailable = |e: redis::RedisError| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("audit: redis: {e}"),
        )
    };
    let client = redis::Client::open(url).map_err(unavailable)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(longest_follow + Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(unavailable)
}

fn failed(e: crate::audit::QueryError) -> Failure {
    let status = match e {
        crate::audit::QueryError::BadCursor(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, e.to_string())
}

/// What a suggested policy must allow, from one audit record: an intercepted request, or a
/// passed-through / relayed connection. Other records (DNS, sandbox) give `None`.
pub fn observed(record: &serde_json::Value) -> Option<Observed> {
    let text = |key: &str| record.get(key).and_then(|v| v.as_str());
    let port = text("destination")
        .and_then(|d| d.parse::<std::net::SocketAddr>().ok())
        .map(|d| d.port());
    match text("kind")? {
        "request" => {
            let url: http::Uri = text("url")?.parse().ok()?;
            let https = url.scheme_str() == Some("https");
            Some(Observed {
                host: url.host()?.to_ascii_lowercase(),
                port: url.port_u16().unwrap_or(if https { 443 } else { 80 }),
                method: text("method").map(str::to_owned),
                path: Some(url.path().to_owned()),
                tcp: false,
                refused_certificate: false,
                executable: None,
            })
        }
        "connection" if text("trust_refused").is_some() => Some(Observed {
            host: text("host")?.to_owned(),
            port: port?,
            method: None,
            path: None,
            tcp: false,
            refused_certificate: true,
            executable: text("executable").map(str::to_owned),
        }),
        "connection" if matches!(text("mode"), Some("relay" | "passthrough" | "refused")) => {
            let tcp = text("mode") == Some("relay") || text("host").is_none();
            let host = text("host").map(str::to_owned).or_else(|| {
                Some(
                    text("destination")?
                        .parse::<std::net::SocketAddr>()
                        .ok()?
                        .ip()
                        .to_string(),
                )
            })?;
            Some(Observed {
                host,
                port: port?,
                method: None,
                path: None,
                tcp,
                refused_certificate: false,
                executable: None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RedisServer;

    /// Connections Redis has accepted since it started.
    async fn accepted(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(conn)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    }

    #[tokio::test]
    async fn a_reader_keeps_one_redis_connection_across_reads() {
        let redis = RedisServer::start().unwrap();
        let mut admin = redis.connection().await.unwrap();
        for i in 0..10 {
            let _: String = redis::cmd("XADD")
                .arg("t:audit")
                .arg("*")
                .arg("record")
                .arg(format!("{{\"kind\":\"dns\",\"seq\":{i}}}"))
                .query_async(&mut admin)
                .await
                .unwrap();
        }
        let before = accepted(&mut admin).await;
        let mut reader = Reader::new(Duration::from_millis(50));
        let mut query = AuditQuery {
            limit: 1,
            after: Some("0-0".to_owned()),
            ..AuditQuery::default()
        };
        let mut seen = 0;
        for _ in 0..10 {
            let page = reader
                .read_redis(
                    &redis.url(),
                    "t:audit",
                    &query,
                    Some(Duration::from_millis(50)),
                )
                .await
                .unwrap();
            seen += page.records.len();
            query.after = Some(page.next);
        }
        assert_eq!(
            seen, 10,
            "the reads paged through the stream one record at a time"
        );
        // Ten reads, one connection (the old reader opened one per read).
        assert_eq!(accepted(&mut admin).await - before, 1);
    }
}
