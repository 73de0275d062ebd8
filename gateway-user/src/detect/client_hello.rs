//! A pure, bounded parser for the TLS ClientHello a downstream client sends first.
//!
//! It reads the bytes peeked so far, reassembles a ClientHello split over several
//! handshake records (large post-quantum hellos often are), and extracts what routing
//! needs: the server name, the ALPN list and the offered versions. It never panics,
//! never reads past a length it has checked, and never buffers more than
//! [`MAX_CLIENT_HELLO_LEN`] bytes.
//!
//! # Security
//!
//! The server name is what policy matches on, so it is validated strictly: a DNS name
//! (letters, digits, `-`, `_`), lowercased, without a trailing dot. Two `server_name`
//! (or ALPN, or `supported_versions`) extensions, or two host names in one list, make
//! the hello malformed rather than letting the gateway and the upstream read different
//! names. An IP literal in SNI is forbidden by RFC 6066; it is reported as no SNI
//! (`server_name: None`), so the connection falls to the no-SNI policy and is never
//! treated as a name.

use std::net::IpAddr;

use crate::host::Host;

/// The largest ClientHello accepted, in wire bytes (record headers included): 16 KiB.
///
/// Real hellos, post-quantum key shares included, stay under 2 KiB; the cap keeps a
/// hostile client from making the gateway buffer without bound.
pub const MAX_CLIENT_HELLO_LEN: usize = 16 * 1024;

/// What a complete, well-formed ClientHello offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The SNI host name: a valid DNS name, lowercase, no trailing dot. `None` when the
    /// client sent no SNI or an IP literal (forbidden by RFC 6066).
    pub server_name: Option<Host>,
    /// ALPN protocol names in the client's order of preference; empty when not offered.
    pub alpn: Vec<Vec<u8>>,
    /// `legacy_version` of the hello (0x0303 for TLS 1.2 and 1.3 clients).
    pub legacy_version: u16,
    /// The `supported_versions` extension (GREASE values included); empty when absent.
    pub supported_versions: Vec<u16>,
}

/// Why [`parse`] gave no ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes so far are a valid beginning: read more and parse again.
    #[error("downstream: TLS ClientHello is incomplete, more bytes are needed")]
    Incomplete,
    /// The first bytes are not a TLS handshake record; try another protocol.
    #[error("downstream: the first bytes are not a TLS handshake record")]
    NotTls,
    /// The ClientHello is (or would be) larger than [`MAX_CLIENT_HELLO_LEN`].
    #[error("downstream: TLS ClientHello exceeds the {MAX_CLIENT_HELLO_LEN}-byte cap")]
    TooLarge,
    /// The client speaks TLS but the ClientHello violates the protocol.
    #[error("downstream: malformed TLS ClientHello: {0}")]
    Malformed(&'static str),
}

/// Parses the ClientHello at the start of `buf`, the bytes a client has sent so far.
///
/// Bytes after the end of the hello (a ChangeCipherSpec, early data) are ignored.
/// Every prefix of a valid hello gives [`Error::Incomplete`].
pub fn parse(buf: &[u8]) -> Result<ClientHello, Error> {
    check_start(buf)?;
    let body = handshake_body(buf)?;
    parse_body(&body)
}

const CONTENT_HANDSHAKE: u8 = 22;
const TLS_MAJOR: u8 = 3;
const RECORD_HEADER_LEN: usize = 5;
const MAX_RECORD_PAYLOAD: usize = 1 << 14;
const HANDSHAKE_HEADER_LEN: usize = 4;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const NAME_TYPE_HOST: u8 = 0;

/// Decides from the first record header whether this is TLS at all.
fn check_start(buf: &[u8]) -> Result<(), Error> {
    match buf {
        [] => Err(Error::Incomplete),
        // change_cipher_spec, alert, handshake, application_data, heartbeat.
        [first, ..] if !(20..=24).contains(first) => Err(Error::NotTls),
        [_] => Err(Error::Incomplete),
        [_, major, ..] if *major != TLS_MAJOR => Err(Error::NotTls),
        [CONTENT_HANDSHAKE, ..] => Ok(()),
        _ => Err(Error::Malformed("the first TLS record is not a handshake")),
    }
}

/// Reassembles the ClientHello body (after its 4-byte header) from handshake records.
///
/// A first pass only reads headers, so an incomplete hello costs no copy.
fn handshake_body(buf: &[u8]) -> Result<Vec<u8>, Error> {
    let total = handshake_len(buf)?;
    let body_len = total - HANDSHAKE_HEADER_LEN;
    let mut body = Vec::with_capacity(body_len);
    let mut skip = HANDSHAKE_HEADER_LEN;
    for fragment in Records::new(buf) {
        let fragment = fragment?;
        let rest = fragment.get(skip..).unwrap_or_default();
        skip = skip.saturating_sub(fragment.len());
        let want = body_len - body.len();
        body.extend_from_slice(rest.get(..want).unwrap_or(rest));
        if body.len() == body_len {
            return Ok(body);
        }
    }
    Err(incomplete_or_too_large(buf))
}

/// The length of the ClientHello handshake message (header included), once all of
/// it is in `buf`; checks the record headers on the way.
fn handshake_len(buf: &[u8]) -> Result<usize, Error> {
    let mut header = [0u8; HANDSHAKE_HEADER_LEN];
    let mut gathered = 0;
    let mut total = None;
    let mut records = Records::new(buf);
    while let Some(fragment) = records.next() {
        let fragment = fragment?;
        for (slot, byte) in header.iter_mut().skip(gathered).zip(fragment) {
            *slot = *byte;
        }
        gathered += fragment.len();
        if header[0] != HANDSHAKE_CLIENT_HELLO {
            return Err(Error::Malformed(
                "the first handshake message is not a ClientHello",
            ));
        }
        if total.is_none() && gathered >= HANDSHAKE_HEADER_LEN {
            let body_len =
                usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]);
            if body_len + HANDSHAKE_HEADER_LEN + RECORD_HEADER_LEN > MAX_CLIENT_HELLO_LEN {
                return Err(Error::TooLarge);
            }
            total = Some(body_len + HANDSHAKE_HEADER_LEN);
        }
        if let Some(total) = total
            && gathered >= total
        {
            let wire_len = buf.len() - records.rest.len();
            if wire_len > MAX_CLIENT_HELLO_LEN {
                return Err(Error::TooLarge); // Complete, but small records made it too long.
            }
            return Ok(total);
        }
    }
    Err(incomplete_or_too_large(buf))
}

/// An unfinished hello that already fills the cap will never fit.
fn incomplete_or_too_large(buf: &[u8]) -> Error {
    if buf.len() >= MAX_CLIENT_HELLO_LEN {
        Error::TooLarge
    } else {
        Error::Incomplete
    }
}

/// Iterates over the payloads of consecutive handshake records, the last possibly
/// partial; stops at the end of `buf` or at the first bad record header.
#[derive(Debug)]
struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<&'a [u8], Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = std::mem::take(&mut self.rest);
        let (header, after) = match rest.split_at_checked(RECORD_HEADER_LEN) {
            Some(split) => split,
            None => return record_header_error(rest).map(Err),
        };
        if let Some(error) = record_header_error(header) {
            return Some(Err(error));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 {
            return Some(Err(Error::Malformed("empty handshake record")));
        }
        if len > MAX_RECORD_PAYLOAD {
            return Some(Err(Error::Malformed("record longer than 2^14 bytes")));
        }
        match after.split_at_checked(len) {
            Some((payload, next)) => {
                self.rest = next;
                Some(Ok(payload))
            }
            None if after.is_empty() => None,
            None => Some(Ok(after)),
        }
    }
}

/// Checks the type and version bytes present in a (possibly partial) record header.
fn record_header_error(header: &[u8]) -> Option<Error> {
    match header {
        [] => None,
        [CONTENT_HANDSHAKE] | [CONTENT_HANDSHAKE, TLS_MAJOR, ..] => None,
        [CONTENT_HANDSHAKE, _, ..] => Some(Error::Malformed("record version is not TLS")),
        _ => Some(Error::Malformed(
            "ClientHello interleaved with a non-handshake record",
        )),
    }
}

/// Parses a complete ClientHello body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2).
fn parse_body(body: &[u8]) -> Result<ClientHello, Error> {
    let mut r = Reader(body);
    let legacy_version = r
        .u16()
        .ok_or(Error::Malformed("legacy_version truncated"))?;
    r.take(32).ok_or(Error::Malformed("random truncated"))?;
    let session_id = r
        .vec_u8()
        .ok_or(Error::Malformed("legacy_session_id overruns"))?;
    if session_id.0.len() > 32 {
        return Err(Error::Malformed("legacy_session_id longer than 32 bytes"));
    }
    let suites = r
        .vec_u16()
        .ok_or(Error::Malformed("cipher_suites overrun"))?;
    if suites.0.is_empty() || suites.0.len() % 2 != 0 {
        return Err(Error::Malformed(
            "cipher_suites length is not a positive even number",
        ));
    }
    let compression = r
        .vec_u8()
        .ok_or(Error::Malformed("compression_methods overrun"))?;
    if compression.0.is_empty() {
        return Err(Error::Malformed("compression_methods is empty"));
    }
    let mut hello = ClientHello {
        server_name: None,
        alpn: Vec::new(),
        legacy_version,
        supported_versions: Vec::new(),
    };
    if r.0.is_empty() {
        return Ok(hello); // TLS 1.2 allows a hello without extensions.
    }
    let mut extensions = r.vec_u16().ok_or(Error::Malformed("extensions overrun"))?;
    if !r.0.is_empty() {
        return Err(Error::Malformed("trailing bytes after extensions"));
    }
    let mut seen = [false; 3];
    while !extensions.0.is_empty() {
        let kind = extensions
            .u16()
            .ok_or(Error::Malformed("extension header truncated"))?;
        let data = extensions
            .vec_u16()
            .ok_or(Error::Malformed("extension overruns"))?;
        let slot = match kind {
            EXT_SERVER_NAME => 0,
            EXT_ALPN => 1,
            EXT_SUPPORTED_VERSIONS => 2,
            _ => continue,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(Error::Malformed(
                "duplicate server_name, ALPN or supported_versions",
            ));
        }
        match kind {
            EXT_SERVER_NAME => hello.server_name = server_name(data)?,
            EXT_ALPN => hello.alpn = alpn(data)?,
            _ => hello.supported_versions = supported_versions(data)?,
        }
    }
    Ok(hello)
}

/// The `server_name` extension (RFC 6066 §3): exactly one host_name.
fn server_name(mut data: Reader<'_>) -> Result<Option<Host>, Error> {
    let mut list = data
        .vec_u16()
        .ok_or(Error::Malformed("server_name list overruns"))?;
    if list.0.is_empty() || !data.0.is_empty() {
        return Err(Error::Malformed(
            "server_name list is empty or has trailing bytes",
        ));
    }
    let mut host = None;
    while !list.0.is_empty() {
        let kind = list
            .u8()
            .ok_or(Error::Malformed("server_name entry truncated"))?;
        let name = list
            .vec_u16()
            .ok_or(Error::Malformed("host_name overruns"))?;
        if kind != NAME_TYPE_HOST {
            return Err(Error::Malformed("server_name has an unknown name type"));
        }
        if host.replace(name.0).is_some() {
            return Err(Error::Malformed(
                "server_name lists more than one host_name",
            ));
        }
    }
    host.map_or(Ok(None), dns_name)
}

/// Validates an SNI host name and normalizes it to lowercase without a trailing dot.
fn dns_name(raw: &[u8]) -> Result<Option<Host>, Error> {
    const INVALID: Error = Error::Malformed("host_name is not a valid DNS name");
    let name = std::str::from_utf8(raw).map_err(|_| INVALID)?;
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.parse::<IpAddr>().is_ok() {
        return Ok(None); // RFC 6066: literal IP addresses are not permitted; treat as absent.
    }
    if name.is_empty() || name.len() > 253 {
        return Err(INVALID);
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return Err(INVALID);
    }
    let tld = name.rsplit('.').next().unwrap_or(name);
    if tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(INVALID); // "10.1" or "1.2.3.4.5": numeric forms resolvers may read as IPs.
    }
    Host::parse(name).map(Some).map_err(|_| INVALID)
}

/// The ALPN extension (RFC 7301 §3.1): a non-empty list of non-empty names.
fn alpn(mut data: Reader<'_>) -> Result<Vec<Vec<u8>>, Error> {
    let mut list = data
        .vec_u16()
        .ok_or(Error::Malformed("ALPN list overruns"))?;
    if list.0.is_empty() || !data.0.is_empty() {
        return Err(Error::Malformed("ALPN list is empty or has trailing bytes"));
    }
    let mut protocols = Vec::new();
    while !list.0.is_empty() {
        let name = list
            .vec_u8()
            .ok_or(Error::Malformed("ALPN protocol name overruns"))?;
        if name.0.is_empty() {
            return Err(Error::Malformed("ALPN protocol name is empty"));
        }
        protocols.push(name.0.to_vec());
    }
    Ok(protocols)
}

/// The `supported_versions` extension in a ClientHello (RFC 8446 §4.2.1).
fn supported_versions(mut data: Reader<'_>) -> Result<Vec<u16>, Error> {
    let list = data
        .vec_u8()
        .ok_or(Error::Malformed("supported_versions overruns"))?;
    if list.0.is_empty() || list.0.len() % 2 != 0 || !data.0.is_empty() {
        return Err(Error::Malformed("supported_versions has a bad length"));
    }
    Ok(list
        .0
        .chunks_exact(2)
        .map(|v| u16::from_be_bytes([v[0], v[1]]))
        .collect())
}

/// A cursor over bytes whose every read is bounds-checked.
#[derive(Debug, Clone, Copy)]
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec_u8(&mut self) -> Option<Reader<'a>> {
        let len = self.u8()?;
        self.take(usize::from(len)).map(Reader)
    }

    /// A vector with a two-byte length prefix.
    fn vec_u16(&mut self) -> Option<Reader<'a>> {
        let len = self.u16()?;
        self.take(usize::from(len)).map(Reader)
    }
}
