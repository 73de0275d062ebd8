//! A minimal client of the daemon's control API (`127.0.0.1:3000` in the node namespace):
//! one HTTP/1.1 request per connection, bearer token, JSON bodies. The bench only needs
//! health, sessions, metrics and reload, so a plain socket beats pulling in an HTTP stack.
//!
//! Call it from inside the node namespace ([`tests::NetLab::in_node`] or
//! [`tests::netlab::in_netns`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};

/// The control API's address inside the node namespace.
const ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 3000);

/// One answer of the control API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The body (de-chunked), as text.
    pub body: String,
}

/// Sends `method path` with `token` and an optional JSON `body`; reads the whole answer.
pub fn call(
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&ADDR.into(), timeout)
        .context("control API: connect to 127.0.0.1:3000")?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("control API: read the answer to {method} {path}"))?;
    parse_reply(&raw)
}

/// Splits a raw HTTP/1.1 answer into status and body (handles `chunked`).
pub fn parse_reply(raw: &[u8]) -> anyhow::Result<Reply> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("control API: no complete HTTP head in the answer");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("control API: no status code")?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("transfer-encoding") && value.trim() == "chunked"
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok(Reply { status, body })
}

fn dechunk(mut rest: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .context("control API: truncated chunk size")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .context("control API: bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = after.get(..size).context("control API: truncated chunk")?;
        out.push_str(chunk);
        rest = after.get(size..).unwrap_or("").trim_start_matches("\r\n");
    }
}

/// The value of the un-labelled Prometheus sample `name` in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.split_once(' ')?;
            (key == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .map(|v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_plain_and_chunked() {
        let plain = b"HTTP/1.1 201 Created\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
        assert_eq!(
            parse_reply(plain).unwrap(),
            Reply {
                status: 201,
                body: "{\"a\":1}".into()
            }
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab\r\n\r\n3\r\ncde\r\n0\r\n\r\n";
        assert_eq!(parse_reply(chunked).unwrap().body, "ab\r\ncde");
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn metrics_read_by_name() {
        let text = "# HELP sluice_a_total A.\n# TYPE sluice_a_total counter\nsluice_a_total 12\n\
                    sluice_ab_total 3\nsluice_b 4.0\n";
        assert_eq!(metric(text, "sluice_a_total"), Some(12));
        assert_eq!(metric(text, "sluice_ab_total"), Some(3));
        assert_eq!(metric(text, "sluice_b"), Some(4));
        assert_eq!(metric(text, "sluice_c"), None);
    }
}
