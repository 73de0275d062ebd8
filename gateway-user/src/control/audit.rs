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
    let failed = |e: crate::audit::QueryError| {
        let status = match e {
            crate::audit::QueryError::BadCursor(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, e.to_string())
    };
    let page = match node.config.audit_target() {
        AuditTarget::File { path } => match follow {
            Some(wait) => follow_file(&path, query, wait).await,
            None => tokio::task::block_in_place(|| query_file(&path, query)),
        }
        .map_err(failed)?,
        AuditTarget::Redis {
            url, stream_key, ..
        } => {
            let client = redis::Client::open(url.as_str()).map_err(|e| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("audit: redis: {e}"),
                )
            })?;
            let timeout = follow.unwrap_or_default() + Duration::from_secs(5);
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(timeout));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("audit: redis: {e}"),
                    )
                })?;
            match follow {
                Some(wait) => follow_redis(&mut conn, &stream_key, query, wait).await,
                None => query_redis(&mut conn, &stream_key, query).await,
            }
            .map_err(failed)?
        }
    };
    Ok(AuditRecords {
        records: page.records,
        next: page.next,
    })
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
