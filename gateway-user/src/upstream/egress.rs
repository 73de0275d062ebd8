//! Which path a connection leaves by: directly, or through an upstream (corporate) proxy.
//!
//! Proxies are named in the node's configuration (`[[upstream.proxies]]`) or given by URL
//! in a session; a sandbox may override its session. [`resolve`] walks the levels, first
//! match wins: sandbox → session → node default → `SLUICE_PROXY_URL` (then `PROXY_URL`) in
//! the daemon's environment → direct. `none` at a level forces direct from there down.
//!
//! # Security
//! The sandbox's own environment never takes part: only the daemon's configuration, its
//! environment and what the operator set on a session or sandbox. A proxy named but not
//! found is an error (the connection is refused), never a silent direct path. Passwords are
//! held as [`Secret`]s and every text form of a URL masks them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use percent_encoding::percent_decode_str;
use serde::Serialize;

use crate::credentials::Secret;
use crate::host::{Host, HostPattern};
use crate::net::Cidr;

/// The text standing for a password wherever a URL is shown.
pub const MASK: &str = "***";

/// A parsed `http://` or `https://` proxy URL, with optional basic-auth user and password.
#[derive(Clone)]
pub struct ProxyUrl {
    /// TLS to the proxy (`https://`), verified against the upstream roots.
    pub tls: bool,
    /// The proxy's host.
    pub host: Host,
    /// Its port (default 80 for `http`, 443 for `https`).
    pub port: u16,
    /// The basic-auth user, percent-decoded.
    pub user: Option<String>,
    /// The basic-auth password, percent-decoded.
    pub password: Option<Secret>,
}

/// Why a proxy URL, id or choice was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyConfigError {
    /// Not an `http://` or `https://` URL with a host and no path.
    #[error(
        "upstream proxy {0}: must be an http:// or https:// URL with a host and no path \
         (e.g. http://user:pass@proxy.example.com:3128)"
    )]
    Url(String),
    /// An id that is not lowercase letters, digits, `-`, `_` or `.`.
    #[error(
        "upstream proxy id {0:?}: use lowercase letters, digits, '-', '_' or '.', at most 64, \
         and not none, direct, refused or env"
    )]
    Id(String),
    /// A `no_proxy` entry that does not parse.
    #[error(
        "upstream proxy {proxy}: no_proxy entry {entry:?} is not HOST, *.SUFFIX, .SUFFIX or \
         CIDR, optionally with :PORT ([v6] in brackets)"
    )]
    NoProxy {
        /// The proxy's id.
        proxy: String,
        /// The entry.
        entry: String,
    },
    /// Two proxies share an id.
    #[error("upstream proxy id {0:?} is defined twice")]
    Duplicate(String),
    /// More than one proxy says `default = true`.
    #[error("upstream proxies {0:?} and {1:?} both say default = true; at most one may")]
    TwoDefaults(String, String),
}

impl ProxyUrl {
    /// Parses `http[s]://[user[:password]@]host[:port][/]`; user and password may be
    /// percent-encoded.
    pub fn parse(text: &str) -> Result<ProxyUrl, ProxyConfigError> {
        let bad = || ProxyConfigError::Url(mask(text));
        let text = text.trim();
        let canonical = ["http://", "https://"].iter().any(|scheme| {
            text.get(..scheme.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
                && !text[scheme.len()..].starts_with('/')
        });
        if !canonical || text.contains('\\') {
            return Err(bad());
        }
        let url = url::Url::parse(text).map_err(|_| bad())?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(bad()),
        };
        let path_ok = matches!(url.path(), "" | "/");
        if !path_ok || url.query().is_some() || url.fragment().is_some() {
            return Err(bad());
        }
        let host = url
            .host_str()
            .and_then(|h| Host::parse(h).ok())
            .ok_or_else(bad)?;
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let user = (!url.username().is_empty()).then(|| decode(url.username()));
        let password = url
            .password()
            .map(|p| Secret::new(percent_decode_str(p).collect()));
        Ok(ProxyUrl {
            tls,
            host,
            port: url
                .port_or_known_default()
                .unwrap_or(if tls { 443 } else { 80 }),
            user,
            password,
        })
    }

    /// `host:port` (IPv6 in brackets).
    pub fn authority(&self) -> String {
        self.host.authority(Some(self.port))
    }

    /// Sets the password from its text as written in a URL (percent-encoded).
    pub fn set_encoded_password(&mut self, encoded: &[u8]) -> Result<(), &'static str> {
        let text = std::str::from_utf8(encoded).map_err(|_| "its password is not UTF-8")?;
        self.password = Some(Secret::new(percent_decode_str(text).collect()));
        Ok(())
    }

    /// The `Proxy-Authorization` value, when the URL has a user.
    pub fn basic_auth(&self) -> Option<String> {
        let user = self.user.as_deref()?;
        let mut raw = Vec::with_capacity(user.len() + 16);
        raw.extend_from_slice(user.as_bytes());
        raw.push(b':');
        if let Some(password) = &self.password {
            raw.extend_from_slice(password.expose());
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(&raw);
        zeroize::Zeroize::zeroize(&mut raw);
        Some(format!("Basic {encoded}"))
    }
}

/// The URL with its password masked: `http://user:****@proxy.example.com:3128`.
impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://")?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if self.password.is_some() {
                write!(f, ":{MASK}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.authority())
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// `text` with everything that could be a password masked, whatever its shape (for
/// messages about text that may not parse): all of it before the last `@` but the scheme
/// and a plain user name.
pub fn mask(text: &str) -> String {
    let Some(at) = text.rfind('@') else {
        return text.to_owned();
    };
    let (head, host) = (&text[..at], &text[at + 1..]);
    let (scheme, userinfo) = match head.split_once("://") {
        Some((scheme, rest)) if scheme.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            (format!("{scheme}://"), rest)
        }
        _ => (String::new(), ""),
    };
    let user = userinfo.split(':').next().unwrap_or_default();
    let plain = user
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'%'));
    let user = if plain { user } else { "" };
    format!("{scheme}{user}:{MASK}@{host}")
}

/// Splits a stored proxy choice into the text kept in the clear and the URL's password
/// (percent-encoding kept), parsing it as [`ProxyUrl::parse`] does. `none`, ids, and URLs
/// without a password come back whole; a URL that does not parse comes back masked, with
/// no password (it never reaches a store in the clear).
pub fn split_password(text: &str) -> (String, Option<String>) {
    if !text.contains("://") || ProxyUrl::parse(text).is_err() {
        return (
            if text.contains('@') {
                mask(text)
            } else {
                text.to_owned()
            },
            None,
        );
    }
    let Ok(mut url) = url::Url::parse(text.trim()) else {
        return (mask(text), None);
    };
    let password = url.password().map(str::to_owned);
    if password.is_some() && url.set_password(None).is_err() {
        return (mask(text), None);
    }
    (url.to_string(), password)
}

/// What the CONNECT request names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectTo {
    /// The host name the sandbox asked for (corporate proxies filter by name); the
    /// address when there is no name (`tcp_allow` relays).
    #[default]
    Name,
    /// The resolved address Sluice checked.
    Address,
}

/// One `no_proxy` entry: a host pattern or an address range, optionally one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoProxy {
    target: NoProxyTarget,
    port: Option<u16>,
    text: String,
}

/// The entry as written.
impl fmt::Display for NoProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum NoProxyTarget {
    /// `host`, `*.suffix`; `.suffix` means the suffix and every name under it.
    Pattern(Vec<HostPattern>),
    Cidr(Cidr),
}

impl NoProxy {
    /// Parses `HOST`, `*.SUFFIX`, `.SUFFIX` or `CIDR`, each optionally `:PORT`
    /// (`[2001:db8::/32]:443` for IPv6).
    pub fn parse(text: &str) -> Option<NoProxy> {
        let text = text.trim();
        let (target, port) = split_port(text)?;
        let target = target
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(target);
        let looks_numeric =
            target.contains(':') || target.contains('/') || target.parse::<IpAddr>().is_ok();
        let target = if looks_numeric {
            NoProxyTarget::Cidr(Cidr::parse(target).ok()?)
        } else if let Some(suffix) = target.strip_prefix('.') {
            NoProxyTarget::Pattern(vec![
                HostPattern::parse(suffix).ok()?,
                HostPattern::parse(&format!("*.{suffix}")).ok()?,
            ])
        } else {
            NoProxyTarget::Pattern(vec![HostPattern::parse(target).ok()?])
        };
        Some(NoProxy {
            target,
            port,
            text: text.to_owned(),
        })
    }

    /// Whether a connection to `dest` (for `name`, when known) goes direct.
    pub fn matches(&self, name: Option<&Host>, dest: SocketAddr) -> bool {
        if self.port.is_some_and(|p| p != dest.port()) {
            return false;
        }
        match &self.target {
            NoProxyTarget::Pattern(patterns) => {
                let dest_host = Host::from(dest.ip());
                let host = name.unwrap_or(&dest_host);
                patterns.iter().any(|p| p.matches(host))
            }
            NoProxyTarget::Cidr(cidr) => cidr.contains(dest.ip()),
        }
    }
}

/// Splits an optional trailing `:PORT` (a bare IPv6 address has no port).
fn split_port(text: &str) -> Option<(&str, Option<u16>)> {
    if text.is_empty() {
        return None;
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        return match after {
            "" => Some((inner, None)),
            _ => {
                let port = after.strip_prefix(':')?.parse().ok().filter(|p| *p > 0)?;
                Some((inner, Some(port)))
            }
        };
    }
    match text.rsplit_once(':') {
        Some((head, port)) if !head.contains(':') => {
            Some((head, Some(port.parse().ok().filter(|p| *p > 0)?)))
        }
        _ => Some((text, None)),
    }
}

/// One upstream proxy.
#[derive(Debug)]
pub struct UpstreamProxy {
    /// Its id (`env` for the daemon's environment, `session` for a session's URL).
    pub id: String,
    /// Its label, shown in errors, audit records and listings.
    pub label: String,
    /// Where it listens, with its credentials.
    pub url: ProxyUrl,
    /// Destinations that go direct instead.
    pub no_proxy: Vec<NoProxy>,
    /// What the CONNECT names.
    pub connect_to: ConnectTo,
    /// Which version of an API-created proxy this is (empty for the others, which do not
    /// change while the daemon runs): connections pooled for one version are never used
    /// for another.
    pub revision: String,
}

impl UpstreamProxy {
    /// Whether a connection to `dest` goes direct instead: a `no_proxy` entry covers it.
    /// `name` must be one the caller bound to `dest` (a sandbox's unbound word never
    /// matches a host entry).
    pub fn bypassed(&self, name: Option<&Host>, dest: SocketAddr) -> bool {
        self.no_proxy.iter().any(|n| n.matches(name, dest))
    }

    /// A proxy given only by URL (a session's, or the daemon's environment), labelled
    /// with its scheme and address (not its user: the label reaches sandboxes in errors).
    pub fn from_url(id: &str, url: ProxyUrl) -> UpstreamProxy {
        let scheme = if url.tls { "https" } else { "http" };
        UpstreamProxy {
            id: id.to_owned(),
            label: format!("{scheme}://{}", url.authority()),
            url,
            no_proxy: Vec::new(),
            connect_to: ConnectTo::default(),
            revision: String::new(),
        }
    }
}

/// The path a connection leaves by.
#[derive(Clone, Debug, Default)]
pub enum Egress {
    /// Straight to the destination.
    #[default]
    Direct,
    /// Through this proxy (unless its `no_proxy` covers the destination).
    Proxy(Arc<UpstreamProxy>),
    /// Nowhere: the egress could not be resolved (why). Every dial fails with it.
    Refused(Arc<str>),
    /// What a connection's sandbox and session say, resolved against the node's proxies as
    /// they are at each dial and each request ([`crate::upstream::Dialer::settle`]): a
    /// default set, or a proxy removed, while a sandbox holds a connection open applies to
    /// its next request.
    Plan(Arc<Plan>),
}

/// A connection's sandbox and session levels.
#[derive(Debug)]
pub struct Plan {
    /// The sandbox's say.
    pub sandbox: Level,
    /// The session's say.
    pub session: Level,
}

impl Plan {
    /// The egress the levels give with `node`'s proxies; refused (with why) when they
    /// cannot be used.
    pub fn settle(&self, node: &NodeProxies) -> Egress {
        match resolve(&self.sandbox, &self.session, node) {
            Ok(egress) => egress,
            Err(error) => {
                tracing::warn!(%error, "egress: refused");
                Egress::Refused(error.to_string().into())
            }
        }
    }
}

impl Egress {
    /// A short name for pools: `direct`, `refused`, the proxy's id, or `ID#REVISION` for
    /// an API-created proxy (ids of the node's file cannot be `direct` or `refused`, nor
    /// `env`, nor contain the `:` of `session:ID` or the `#`).
    pub fn key(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Egress::Direct => "direct".into(),
            Egress::Proxy(proxy) if proxy.revision.is_empty() => proxy.id.as_str().into(),
            Egress::Proxy(proxy) => format!("{}#{}", proxy.id, proxy.revision).into(),
            Egress::Refused(_) => "refused".into(),
            Egress::Plan(_) => "unsettled".into(),
        }
    }
}

/// What a level (sandbox or session) says about its proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyChoice {
    /// `none`: direct, whatever the levels below say.
    Direct,
    /// A proxy of the node's configuration, by id.
    Id(String),
    /// A proxy given by URL (`http://…`); its password is sealed elsewhere.
    Url(String),
}

impl ProxyChoice {
    /// Parses `none`, an id, or an `http(s)://` URL.
    pub fn parse(text: &str) -> Result<ProxyChoice, ProxyConfigError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") {
            return Ok(ProxyChoice::Direct);
        }
        if text.contains("://") {
            ProxyUrl::parse(text)?;
            return Ok(ProxyChoice::Url(text.to_owned()));
        }
        check_id(text)?;
        Ok(ProxyChoice::Id(text.to_owned()))
    }
}

/// Ids a proxy of the node's file cannot take: they name other things.
const RESERVED_IDS: &[&str] = &["none", "direct", "refused", "env"];

/// Checks a proxy id: 1..=64 of lowercase letters, digits, `-`, `_`, `.`, not one of
/// [`RESERVED_IDS`].
pub fn check_id(id: &str) -> Result<(), ProxyConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !RESERVED_IDS.contains(&id)
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(ProxyConfigError::Id(id.to_owned()))
    }
}

/// One `[[upstream.proxies]]` entry of the node's configuration.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    /// Its id (lowercase letters, digits, `-`, `_`, `.`), which sessions and sandboxes name.
    pub id: String,
    /// What errors, audit records and listings call it. Default is the id.
    #[serde(default)]
    pub label: Option<String>,
    /// `http[s]://[user:password@]host[:port]`.
    pub url: String,
    /// Whether it is the node's default (at most one).
    #[serde(default)]
    pub default: bool,
    /// Destinations that go direct: `HOST`, `*.SUFFIX`, `.SUFFIX` or `CIDR`, each
    /// optionally `:PORT`.
    #[serde(default)]
    pub no_proxy: Vec<String>,
    /// What the CONNECT names: `name` (default) or `address`.
    #[serde(default)]
    pub connect_to: ConnectTo,
}

/// Masks the URL's password.
impl fmt::Debug for ProxySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxySpec")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("url", &mask(&self.url))
            .field("default", &self.default)
            .field("no_proxy", &self.no_proxy)
            .field("connect_to", &self.connect_to)
            .finish()
    }
}

impl ProxySpec {
    /// Builds the proxy this entry describes.
    pub fn build(&self) -> Result<UpstreamProxy, ProxyConfigError> {
        check_id(&self.id)?;
        let url = ProxyUrl::parse(&self.url)?;
        let no_proxy = self
            .no_proxy
            .iter()
            .map(|entry| {
                NoProxy::parse(entry).ok_or_else(|| ProxyConfigError::NoProxy {
                    proxy: self.id.clone(),
                    entry: entry.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(UpstreamProxy {
            id: self.id.clone(),
            label: self.label.clone().unwrap_or_else(|| self.id.clone()),
            url,
            no_proxy,
            connect_to: self.connect_to,
            revision: String::new(),
        })
    }
}

/// The node's proxies: those of its configuration, those created through the API (kept
/// in the session store), the default, and the one its environment names.
#[derive(Clone, Debug, Default)]
pub struct NodeProxies {
    /// The configuration's, by id, in configuration order.
    pub list: Vec<Arc<UpstreamProxy>>,
    /// The id of the configuration's one marked `default`.
    pub default: Option<String>,
    /// `SLUICE_PROXY_URL`, else `PROXY_URL`, from the daemon's environment.
    pub env: Option<Arc<UpstreamProxy>>,
    /// Those created through the API, by id.
    pub stored: Vec<Arc<UpstreamProxy>>,
    /// The id of the API's default, which overrides the configuration's.
    pub stored_default: Option<String>,
    /// API-created ids this node cannot use, and why (a choice of one is refused).
    pub broken: Vec<(String, String)>,
    /// Addresses of the API-created proxies this node cannot use (a sandbox may not dial
    /// them either).
    pub broken_addresses: Vec<(Host, u16)>,
    /// Why the API's default cannot be used, if it cannot (the default is then refused).
    pub default_problem: Option<String>,
    /// The store's proxy-table epoch these were read with.
    pub epoch: Option<String>,
}

impl NodeProxies {
    /// The node's proxies from its configuration's entries and its environment's proxy.
    pub fn build(
        specs: &[ProxySpec],
        env: Option<Arc<UpstreamProxy>>,
    ) -> Result<NodeProxies, ProxyConfigError> {
        let mut list: Vec<Arc<UpstreamProxy>> = Vec::with_capacity(specs.len());
        let mut default: Option<&ProxySpec> = None;
        for spec in specs {
            if list.iter().any(|p| p.id == spec.id) {
                return Err(ProxyConfigError::Duplicate(spec.id.clone()));
            }
            list.push(Arc::new(spec.build()?));
            if spec.default {
                if let Some(first) = default {
                    return Err(ProxyConfigError::TwoDefaults(
                        first.id.clone(),
                        spec.id.clone(),
                    ));
                }
                default = Some(spec);
            }
        }
        Ok(NodeProxies {
            list,
            default: default.map(|s| s.id.clone()),
            env,
            ..NodeProxies::default()
        })
    }

    /// These proxies with the API-created ones (everything but `list`, `default`, `env`)
    /// taken from `stored`.
    pub fn with_stored(&self, stored: NodeProxies) -> NodeProxies {
        NodeProxies {
            list: self.list.clone(),
            default: self.default.clone(),
            env: self.env.clone(),
            ..stored
        }
    }

    /// The ids a sandbox or session may name: the configuration's, then the API's.
    pub fn ids(&self) -> Vec<&str> {
        self.list
            .iter()
            .chain(&self.stored)
            .map(|p| p.id.as_str())
            .collect()
    }

    /// The proxy with id `id` (the configuration's first).
    pub fn by_id(&self, id: &str) -> Option<&Arc<UpstreamProxy>> {
        self.list.iter().chain(&self.stored).find(|p| p.id == id)
    }

    /// Every usable proxy: the configuration's, the API's, the environment's.
    pub fn all(&self) -> impl Iterator<Item = &Arc<UpstreamProxy>> {
        self.list.iter().chain(&self.stored).chain(&self.env)
    }

    /// The id of the node's default: the API's, else the configuration's.
    pub fn default_id(&self) -> Option<&str> {
        self.stored_default.as_deref().or(self.default.as_deref())
    }

    /// The proxy `id` names for `level`: refused when unknown or broken here (an API
    /// entry this node cannot use, or one whose id the node's file also defines).
    fn pick(&self, level: &'static str, id: &str) -> Result<Egress, EgressError> {
        if let Some((_, reason)) = self.broken.iter().find(|(broken, _)| broken == id) {
            return Err(EgressError::Unusable {
                level,
                reason: format!("upstream proxy {id:?}: {reason}"),
            });
        }
        match self.by_id(id) {
            Some(proxy) => Ok(Egress::Proxy(proxy.clone())),
            None => Err(EgressError::UnknownId {
                level,
                id: id.to_owned(),
            }),
        }
    }

    /// Reads `SLUICE_PROXY_URL` (then `PROXY_URL`) through `var`; an unparsable value is an
    /// error (never ignored).
    pub fn env_proxy(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Arc<UpstreamProxy>>, ProxyConfigError> {
        let Some(text) = ["SLUICE_PROXY_URL", "PROXY_URL"]
            .iter()
            .find_map(|name| var(name).filter(|v| !v.trim().is_empty()))
        else {
            return Ok(None);
        };
        let url = ProxyUrl::parse(&text)?;
        Ok(Some(Arc::new(UpstreamProxy::from_url("env", url))))
    }
}

/// Why no egress could be chosen (the connection is refused).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// A level names a proxy id the node does not define.
    #[error(
        "policy: the {level} names upstream proxy {id:?}, which this node does not define \
         (`sluice proxy list` shows the ids); nothing is sent direct instead"
    )]
    UnknownId {
        /// `sandbox` or `session`.
        level: &'static str,
        /// The id.
        id: String,
    },
    /// A URL that no longer parses, or whose sealed password cannot be opened.
    #[error("policy: the {level}'s upstream proxy cannot be used: {reason}")]
    Unusable {
        /// `sandbox` or `session`.
        level: &'static str,
        /// Why.
        reason: String,
    },
}

impl crate::audit::Sided for EgressError {
    fn side(&self) -> crate::audit::Side {
        crate::audit::Side::Policy
    }
}

/// One level's say, with the URL proxy it names already built (its password opened).
#[derive(Debug)]
pub enum Level {
    /// The level says nothing.
    Inherit,
    /// The level chose; a `Url` choice carries its built proxy.
    Chose(ProxyChoice, Option<Arc<UpstreamProxy>>),
}

/// Picks the egress: sandbox → session → node default (the API's, else the
/// configuration's) → environment → direct, first level that says something wins.
pub fn resolve(
    sandbox: &Level,
    session: &Level,
    node: &NodeProxies,
) -> Result<Egress, EgressError> {
    for (name, level) in [("sandbox", sandbox), ("session", session)] {
        match level {
            Level::Inherit => continue,
            Level::Chose(ProxyChoice::Direct, _) => return Ok(Egress::Direct),
            Level::Chose(ProxyChoice::Id(id), _) => return node.pick(name, id),
            Level::Chose(ProxyChoice::Url(_), Some(proxy)) => {
                return Ok(Egress::Proxy(proxy.clone()));
            }
            Level::Chose(ProxyChoice::Url(url), None) => {
                return Err(EgressError::Unusable {
                    level: name,
                    reason: format!("{} was not built", mask(url)),
                });
            }
        }
    }
    if let Some(reason) = &node.default_problem {
        return Err(EgressError::Unusable {
            level: "node default",
            reason: reason.clone(),
        });
    }
    if let Some(id) = node.default_id() {
        return node.pick("node default", id);
    }
    Ok(node.env.clone().map_or(Egress::Direct, Egress::Proxy))
}

#[cfg(test)]
#[path = "egress_tests.rs"]
mod tests;
