//! Pure request checks and header surgery, tested as tables.

use http::header::{
    CONNECTION, CONTENT_LENGTH, COOKIE, EXPECT, HOST, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Method, StatusCode, Uri, Version};

use crate::audit::{Side, Sided};
use crate::host::Host;

/// Why a request is answered by Sluice instead of being forwarded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum CheckError {
    /// No Host header and no authority.
    #[error("request has no Host header")]
    MissingHost,
    /// More than one Host, or Host and the URI authority disagree, or it does not parse.
    #[error("ambiguous or malformed Host: {0}")]
    BadHost(String),
    /// The Host names another server than the TLS SNI.
    #[error(
        "this connection is for {sni} (TLS SNI) but the request is for {host}; open a new connection for {host}"
    )]
    Misdirected {
        /// The SNI.
        sni: String,
        /// The request's host.
        host: String,
    },
    /// Both Content-Length and Transfer-Encoding (request smuggling).
    #[error("request has both Content-Length and Transfer-Encoding; send only one")]
    LengthAndChunked,
    /// Content-Length missing a number, or several that disagree.
    #[error("request has an invalid or conflicting Content-Length")]
    BadContentLength,
    /// Methods the engine cannot forward inside an intercepted connection.
    #[error("{0} is not supported inside an intercepted connection")]
    Unsupported(String),
    /// A request target that is not an absolute path (`*`, or an HTTP/2 `:path` without
    /// its leading `/`): appended to the authority it could name another host.
    #[error("request target {0:?} is not an absolute path; send /path")]
    BadTarget(String),
}

impl Sided for CheckError {
    /// Every check is about what the sandbox sent.
    fn side(&self) -> Side {
        Side::Downstream
    }
}

impl CheckError {
    /// The status answering this error.
    pub(super) fn status(&self) -> StatusCode {
        match self {
            CheckError::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            CheckError::Unsupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The host and port a request names, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Authority {
    /// The host, normalised.
    pub(super) host: Host,
    /// The port the authority named, if any.
    pub(super) port: Option<u16>,
}

impl Authority {
    /// The port named, or the scheme's default.
    pub(super) fn port_or_default(&self, https: bool) -> u16 {
        self.port.unwrap_or(if https { 443 } else { 80 })
    }

    /// `scheme://host[:port]/path?query`: the normalised host (IPv6 in brackets), the port
    /// only if the request named one, the request's path and query.
    ///
    /// # Security
    /// The path must begin with `/`: anything else (`@other.host/…`, `*`) would be read as
    /// part of the authority, and the request sent somewhere other than the host checked
    /// against the SNI, the policy and the credentials.
    pub(super) fn url(&self, scheme: &str, uri: &Uri) -> Result<String, CheckError> {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        if !path.starts_with('/') {
            return Err(CheckError::BadTarget(path.to_owned()));
        }
        let mut url =
            String::with_capacity(scheme.len() + self.host.as_str().len() + path.len() + 12);
        url.push_str(scheme);
        url.push_str("://");
        self.host.write_authority(&mut url, self.port);
        url.push_str(path);
        Ok(url)
    }
}

/// Whether `uri` names exactly `host` (as [`Authority::url`] writes it: normalised, IPv6 in
/// brackets). Compares text, without parsing a host again.
pub(super) fn names_host(uri: &Uri, host: &Host) -> bool {
    let Some(named) = uri.host() else {
        return false;
    };
    let named = match host.ip() {
        Some(std::net::IpAddr::V6(_)) => named.strip_prefix('[').and_then(|n| n.strip_suffix(']')),
        _ => Some(named),
    };
    named == Some(host.as_str())
}

/// The request's authority: the URI authority (HTTP/2, absolute form) or the one Host
/// header; both present must name the same host (the URI's port is the one kept).
pub(super) fn authority(uri: &Uri, headers: &HeaderMap) -> Result<Authority, CheckError> {
    let mut hosts = headers.get_all(HOST).iter();
    let header = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(CheckError::BadHost("several Host headers".into())),
        (Some(value), None) => Some(
            value
                .to_str()
                .map_err(|_| CheckError::BadHost("Host is not ASCII".into()))?,
        ),
        (None, _) => None,
    };
    let (named, other) = match (uri.authority().map(|a| a.as_str()), header) {
        (Some(from_uri), header) => (from_uri, header),
        (None, Some(header)) => (header, None),
        (None, None) => return Err(CheckError::MissingHost),
    };
    let authority = parse_authority(named)?;
    if let Some(header) = other
        && parse_authority(header)?.host != authority.host
    {
        return Err(CheckError::BadHost(format!(
            "Host {header:?} differs from the request target {named:?}"
        )));
    }
    Ok(authority)
}

fn parse_authority(text: &str) -> Result<Authority, CheckError> {
    if text.contains('@') {
        return Err(CheckError::BadHost("userinfo in the authority".into()));
    }
    Host::from_authority(text)
        .map(|(host, port)| Authority { host, port })
        .map_err(|_| CheckError::BadHost(format!("{text:?}")))
}

/// Refuses ambiguous body framing that survived the HTTP parser.
///
/// # Security
/// A request with both Content-Length and Transfer-Encoding, or with conflicting lengths,
/// could be framed differently by the upstream (request smuggling).
pub(super) fn framing(headers: &HeaderMap) -> Result<(), CheckError> {
    if headers.contains_key(TRANSFER_ENCODING) && headers.contains_key(CONTENT_LENGTH) {
        return Err(CheckError::LengthAndChunked);
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value.to_str().map_err(|_| CheckError::BadContentLength)?;
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CheckError::BadContentLength);
            }
            let n: u64 = part.parse().map_err(|_| CheckError::BadContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(CheckError::BadContentLength);
            }
            length = Some(n);
        }
    }
    Ok(())
}

/// Whether the request is an HTTP/1.1 WebSocket upgrade.
pub(super) fn is_websocket_upgrade(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    method == Method::GET
        && version == Version::HTTP_11
        && headers
            .get(UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers (Connection and what it names, Keep-Alive, Proxy-*, TE other
/// than `trailers`, Transfer-Encoding, Expect, Host, and Upgrade unless `websocket` is set,
/// in which case `Connection: upgrade` and `Upgrade` are kept).
///
/// # Security
/// Proxy-Authorization (the explicit proxy's token) never reaches an upstream.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, websocket: bool) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(|n| !(websocket && *n == UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    let keep_trailers = headers.get_all(TE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim() == "trailers"))
    });
    for name in [
        CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TE,
        TRANSFER_ENCODING,
        EXPECT,
        HOST,
        UPGRADE,
    ] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection", "http2-settings"] {
        headers.remove(name);
    }
    if keep_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    if websocket {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    }
}

/// Removes hop-by-hop headers from a response (keeping the upgrade pair on a 101).
pub(super) fn strip_response_hop_by_hop(headers: &mut HeaderMap, switching: bool) {
    let upgrade = headers.get(UPGRADE).cloned();
    strip_hop_by_hop(headers, false);
    headers.remove(TE);
    if let (true, Some(upgrade)) = (switching, upgrade) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade);
    }
}

/// Joins several Cookie fields (HTTP/2 splits them) into one, as HTTP/1.1 requires.
pub(super) fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(COOKIE).iter().count() < 2 {
        return;
    }
    let parts: Vec<&[u8]> = headers
        .get_all(COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let joined = parts.join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn authority_table() {
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            Result<(&'a str, Option<u16>), ()>,
        );
        let cases: &[Case<'_>] = &[
            ("/", &[("host", "a.test")], Ok(("a.test", None))),
            ("/", &[("host", "A.Test.:8443")], Ok(("a.test", Some(8443)))),
            ("https://a.test/x", &[], Ok(("a.test", None))),
            (
                "https://a.test/x",
                &[("host", "A.test")],
                Ok(("a.test", None)),
            ),
            (
                "https://a.test:8443/x",
                &[("host", "a.test")],
                Ok(("a.test", Some(8443))),
            ),
            ("https://a.test/x", &[("host", "b.test")], Err(())),
            ("https://a.test/x", &[("host", "u@a.test")], Err(())),
            ("/", &[("host", "a.test"), ("host", "a.test")], Err(())),
            ("/", &[], Err(())),
            ("/", &[("host", "")], Err(())),
            ("/", &[("host", "a b")], Err(())),
            ("/", &[("host", "u@a.test")], Err(())),
            ("/", &[("host", "a.test:99999")], Err(())),
            (
                "/",
                &[("host", "[2001:db8::1]:443")],
                Ok(("2001:db8::1", Some(443))),
            ),
        ];
        for (uri, hs, want) in cases {
            let got = authority(&uri.parse().unwrap(), &headers(hs));
            let got = got
                .as_ref()
                .map(|a| (a.host.as_str(), a.port))
                .map_err(|_| ());
            assert_eq!(got, *want, "{uri} {hs:?}");
        }
        assert_eq!(
            authority(&"/".parse().unwrap(), &headers(&[]))
                .unwrap_err()
                .status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn authority_url_and_port() {
        let of = |host: &str| {
            authority(&"/p?q=1".parse().unwrap(), &headers(&[("host", host)])).unwrap()
        };
        let uri: Uri = "/p?q=1".parse().unwrap();
        let url = |host: &str, scheme: &str| of(host).url(scheme, &uri).unwrap();
        assert_eq!(url("A.test.:8443", "https"), "https://a.test:8443/p?q=1");
        assert_eq!(url("A.test.", "https"), "https://a.test/p?q=1");
        assert_eq!(
            url("[2001:db8::1]:80", "http"),
            "http://[2001:db8::1]:80/p?q=1"
        );
        let star: Uri = "*".parse().unwrap();
        assert_eq!(
            of("a.test").url("https", &star),
            Err(CheckError::BadTarget("*".into())),
            "`OPTIONS *` would make https://a.test*"
        );
        let names = |url: &str, host: &str| names_host(&url.parse().unwrap(), &of(host).host);
        assert!(names(&url("A.test.:8443", "https"), "a.test"));
        assert!(names(&url("[2001:db8::1]", "http"), "[2001:db8::1]"));
        assert!(!names("https://a.test*/", "a.test"));
        assert!(!names("https://other.test/", "a.test"));
        assert!(!names("https://a.test@other.test/", "a.test"));
        assert_eq!(of("a.test").port_or_default(true), 443);
        assert_eq!(of("a.test:8080").port_or_default(true), 8080);
        assert_eq!(of("[2001:db8::1]").port_or_default(false), 80);
    }

    #[test]
    fn framing_table() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[], true),
            (&[("content-length", "5")], true),
            (&[("content-length", "5"), ("content-length", "5")], true),
            (&[("content-length", "5, 5")], true),
            (&[("content-length", "5"), ("content-length", "6")], false),
            (&[("content-length", "5, 6")], false),
            (&[("content-length", "-1")], false),
            (&[("content-length", "+5")], false),
            (&[("content-length", "")], false),
            (&[("transfer-encoding", "chunked")], true),
            (
                &[("content-length", "5"), ("transfer-encoding", "chunked")],
                false,
            ),
        ];
        for (hs, ok) in cases {
            assert_eq!(framing(&headers(hs)).is_ok(), *ok, "{hs:?}");
        }
    }

    #[test]
    fn hop_by_hop_table() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers, deflate"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("host", "a.test"),
            ("authorization", "Bearer x"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "te", "x-kept"]);
        assert_eq!(h["te"], "trailers");

        let mut ws = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_websocket_upgrade(&Method::GET, Version::HTTP_11, &ws));
        assert!(!is_websocket_upgrade(&Method::POST, Version::HTTP_11, &ws));
        assert!(!is_websocket_upgrade(&Method::GET, Version::HTTP_2, &ws));
        strip_hop_by_hop(&mut ws, true);
        assert_eq!(ws["connection"], "upgrade");
        assert_eq!(ws["upgrade"], "websocket");
        assert_eq!(ws["sec-websocket-key"], "k");
    }

    #[test]
    fn misc_table() {
        let mut h = headers(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
        assert_eq!(h[COOKIE], "a=1; b=2");
        let mut r = headers(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        strip_response_hop_by_hop(&mut r, true);
        assert_eq!(r["upgrade"], "websocket");
        let mut r = headers(&[("connection", "close"), ("transfer-encoding", "chunked")]);
        strip_response_hop_by_hop(&mut r, false);
        assert!(r.is_empty());
    }
}
