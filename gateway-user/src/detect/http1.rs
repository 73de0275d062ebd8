//! Sniffs an HTTP/1 request head: the request line and the Host header.
//!
//! Parsing is left to `httparse`; this module only decides whether the first bytes
//! look like a request at all (an upper-case method token then a space) and pulls out
//! what routing needs.
//!
//! # Security
//!
//! Anything `httparse` rejects once the bytes look like a request is reported as
//! malformed, never as opaque, so a request crafted to confuse the parser is refused
//! instead of being passed through. Two Host headers are malformed (RFC 9112 §3.2), and so
//! is a Host header that is not `HOST`, `HOST:PORT` or `[IPv6]:PORT` with a valid host.

use crate::host::Host;

/// The most header lines accepted in a request head (hyper's default too).
pub const MAX_HEADERS: usize = 100;

/// Methods are upper-case tokens (`GET`, `PROPFIND`, `VERSION-CONTROL`); longer ones
/// mean the bytes are not HTTP.
const MAX_METHOD_LEN: usize = 20;

/// The HTTP/2 connection preface, sent first by prior-knowledge (h2c) clients.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The parts of an HTTP/1 request head that routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http1Request {
    /// The method as sent (`GET`, `CONNECT`, ...).
    pub method: String,
    /// The request target as sent: origin form (`/path?q`), absolute form
    /// (`http://host/path`), authority form for CONNECT (`host:443`) or `*`.
    pub target: String,
    /// The Host header's host, validated and normalised once (see [`Host`]); `None` when
    /// the header is absent or empty (HTTP/1.0 clients may omit it).
    pub host: Option<Host>,
    /// The port the Host header names, if any (`example.com:8080`).
    pub port: Option<u16>,
}

/// Why [`parse`] gave no request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes so far are a valid beginning of a request head: read more.
    #[error("downstream: HTTP/1 request head is incomplete, more bytes are needed")]
    Incomplete,
    /// The first bytes are not an HTTP/1 request line (h2c prior knowledge included).
    #[error("downstream: the first bytes are not an HTTP/1 request")]
    NotHttp,
    /// The bytes start like a request but break HTTP/1 syntax.
    #[error("downstream: malformed HTTP/1 request: {0}")]
    Malformed(&'static str),
}

/// Parses the HTTP/1 request head at the start of `buf`, the bytes sent so far.
///
/// Bytes after the head (a body, pipelined requests) are ignored.
pub fn parse(buf: &[u8]) -> Result<Http1Request, Error> {
    sniff(buf)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Error::Incomplete),
        Err(error) => return Err(Error::Malformed(reason(error))),
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(Error::Incomplete); // Unreachable once complete; stay conservative.
    };
    let mut hosts = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let authority = hosts.next().map(|h| host(h.value)).transpose()?.flatten();
    if hosts.next().is_some() {
        return Err(Error::Malformed("more than one Host header"));
    }
    let (host, port) = authority.unzip();
    Ok(Http1Request {
        method: method.to_owned(),
        target: target.to_owned(),
        host,
        port: port.flatten(),
    })
}

/// Decides from the method token whether these bytes are an HTTP/1 request line.
fn sniff(buf: &[u8]) -> Result<(), Error> {
    if H2_PREFACE.starts_with(buf) {
        return Err(Error::Incomplete); // Empty, a method prefix, or part of the h2 preface.
    }
    if buf.starts_with(H2_PREFACE) {
        return Err(Error::NotHttp);
    }
    for (i, &byte) in buf.iter().enumerate() {
        match byte {
            b'A'..=b'Z' | b'-' if i < MAX_METHOD_LEN => {}
            b' ' if i > 0 => return Ok(()),
            _ => return Err(Error::NotHttp),
        }
    }
    Err(Error::Incomplete)
}

/// Validates a Host header value as an authority (its host normalised, see [`Host`]); an
/// empty value is no host.
fn host(value: &[u8]) -> Result<Option<(Host, Option<u16>)>, Error> {
    const INVALID: Error = Error::Malformed("Host header is not a valid authority");
    let value = value.trim_ascii();
    if value.is_empty() {
        return Ok(None);
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~:[]%!$&'()*+,;=".contains(&b);
    if !value.iter().copied().all(allowed) {
        return Err(INVALID);
    }
    let value = std::str::from_utf8(value).map_err(|_| INVALID)?;
    Host::from_authority(value).map(Some).map_err(|_| INVALID)
}

/// A short, static description of an `httparse` error.
fn reason(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or token",
        httparse::Error::TooManyHeaders => "more than 100 header lines",
        httparse::Error::Version => "not HTTP/1.0 or HTTP/1.1",
    }
}
