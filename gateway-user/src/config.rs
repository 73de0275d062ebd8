//! Typed daemon configuration: parsed once, validated, dumped redacted.
//!
//! Every field has a documented default, so an empty file (or no file) is a working
//! single-node configuration: embedded store, capture under `sluice.sandboxes`.

pub mod diff;
mod live;

pub use live::LiveConfig;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::net::Cidr;
use crate::policy::{CompiledPolicy, PolicyError, PolicySpec};
use crate::session::{SessionConfig, Sessions};

/// Where the CLI looks for a configuration file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/sluice/sluice.toml";
/// Bounds of `tls.leaf_cache_size`: at least as many names as handshakes can be in flight at
/// once (a name evicted between its mint and its handshake fails that handshake), at most
/// about 300 MiB of leaves.
const LEAF_CACHE_SIZES: std::ops::RangeInclusive<usize> = 100..=100_000;

/// The whole configuration of a node.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the CA, the admin token, sandbox state and the audit log.
    /// Default is `/var/lib/sluice`.
    pub state_dir: PathBuf,
    /// Kernel capture of sandbox sockets.
    pub capture: CaptureConfig,
    /// Addresses the daemon listens on.
    pub listen: ListenConfig,
    /// The DNS responder sandboxes are steered to.
    pub dns: DnsConfig,
    /// Where audit records go.
    pub audit: AuditConfig,
    /// How the daemon reaches upstream servers.
    pub upstream: UpstreamConfig,
    /// The interception TLS the daemon serves to sandboxes.
    pub tls: TlsConfig,
    /// Routing rules for every sandbox (until per-session policy is configured).
    pub policy: PolicyConfig,
    /// Sessions allowed to use the explicit proxy. Default is none.
    pub sessions: Vec<SessionConfig>,
    /// Where sessions, rate budgets (and, with Redis, audit records) are kept.
    pub store: StoreConfig,
}

/// The session store.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Redis shared by every node (`redis://host:6379/0`, `redis+unix:///path`). Default is
    /// none: an embedded store in `state_dir` (one node).
    ///
    /// # Security
    /// A password in the URL is masked in `sluice check-config` and in logs.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key. Default is `sluice:`.
    pub key_prefix: String,
    /// File holding the master key that seals credentials (base64, mode 0600; created on
    /// first run). The `SLUICE_MASTER_KEY` environment variable wins when set. Default is
    /// `<state_dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            redis_url: None,
            key_prefix: "sluice:".into(),
            master_key_file: None,
        }
    }
}

/// Routing rules.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// TLS server names copied byte for byte instead of intercepted (exact or `*.suffix`),
    /// for clients that pin certificates, written `HOST` (port 443) or `HOST:PORT`
    /// (`pinned.example.com:8443`). A passed-through connection is relayed only to that port
    /// of an address the daemon's resolver returns for the name. Default is empty.
    pub passthrough: Vec<String>,
    /// Non-HTTP TCP destinations allowed, as `HOST_OR_CIDR:PORT` (e.g. `203.0.113.0/24:22`,
    /// `git.example.com:22`). A host entry (exact names only) matches when the original
    /// destination is one of the addresses the daemon's resolver returns for it.
    /// Default is empty: opaque TCP is refused.
    pub tcp_allow: Vec<String>,
}

impl PolicyConfig {
    /// The node's rules as the base policy every connection is routed by (a session's
    /// policy is layered over it, see [`CompiledPolicy::layered_over`]); the error names the
    /// bad entry.
    pub fn compile(&self) -> Result<CompiledPolicy, PolicyError> {
        let spec = PolicySpec {
            passthrough: self.passthrough.clone(),
            tcp_allow: self.tcp_allow.clone(),
            ..PolicySpec::default()
        };
        CompiledPolicy::compile(&spec).map_err(|e| PolicyError {
            field: format!("policy.{}", e.field),
            reason: e.reason,
        })
    }
}

/// Kernel capture settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Parent cgroup of every sandbox, relative to the cgroup2 mount unless absolute.
    /// Default is `sluice.sandboxes`.
    pub parent_cgroup: PathBuf,
    /// bpffs directory where maps and program links are pinned. Default is `/sys/fs/bpf/sluice`.
    pub pin_dir: PathBuf,
}

/// Listener addresses.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Port of the transparent listener on `127.0.0.1` and `[::1]` (in the node's and in each
    /// sandbox's network namespace). Default is `15001`.
    pub transparent_port: u16,
    /// Port of the DNS listener next to it. Default is `15053`.
    pub dns_port: u16,
    /// Control API address. Default is `127.0.0.1:3000`.
    pub control: SocketAddr,
    /// Explicit proxy (`HTTPS_PROXY`) address. Default is `127.0.0.1:3128`.
    pub proxy: Option<SocketAddr>,
}

/// DNS responder settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Static answers consulted before the system resolver (`name = ["addr", …]`).
    /// Default is empty.
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
    /// Most distinct names one sandbox may look up per minute; further new names are
    /// answered REFUSED and audited (repeats of a name already seen still resolve). It bounds
    /// DNS exfiltration under an allow-all policy. 1..=100000; needs a restart.
    /// Default is `300`.
    pub max_names_per_minute: u32,
}

impl DnsConfig {
    /// The default of [`DnsConfig::max_names_per_minute`].
    pub const DEFAULT_MAX_NAMES_PER_MINUTE: u32 = 300;
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            hosts: BTreeMap::new(),
            max_names_per_minute: Self::DEFAULT_MAX_NAMES_PER_MINUTE,
        }
    }
}

/// Audit settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// JSONL file the records are appended to (embedded store). Default is
    /// `<state_dir>/audit.jsonl`.
    pub path: Option<PathBuf>,
    /// Redis Stream the records go to when `store.redis_url` is set. Default is
    /// `<key_prefix>audit`.
    pub stream_key: Option<String>,
    /// Approximate length the stream is trimmed to. Default is `1000000`.
    pub stream_max_len: u64,
    /// Where records wait while Redis is unreachable. Default is `<state_dir>/audit-spool`.
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool may hold; past it new records are dropped and counted.
    /// Default is `1073741824` (1 GiB).
    pub spool_max_bytes: u64,
    /// This node's name in audit records (unique per node). Default is the host name.
    pub node_id: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: None,
            stream_key: None,
            stream_max_len: 1_000_000,
            spool_dir: None,
            spool_max_bytes: crate::audit::DEFAULT_SPOOL_MAX_BYTES,
            node_id: None,
        }
    }
}

/// Upstream connection settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// How long dialling an upstream may take, in milliseconds. Default is `5000`.
    pub connect_timeout_ms: u64,
    /// How long an idle pooled upstream connection is kept for reuse, in milliseconds
    /// (`100..=3600000`). Default is `90000`.
    pub pool_idle_timeout_ms: u64,
    /// Destinations allowed although they are loopback, private, link-local or metadata
    /// addresses (CIDR strings such as `10.1.0.0/16`). Default is empty: all refused.
    pub allow_internal: Vec<String>,
    /// The built-in root sets an upstream certificate may chain to: `"system+webpki"` (the
    /// node's trust store, or `SSL_CERT_FILE`/`SSL_CERT_DIR`, plus webpki-roots),
    /// `"system"` or `"webpki"`. Default is `"system+webpki"`.
    pub roots: crate::upstream::Roots,
    /// PEM files of roots trusted for upstream certificates besides `roots`. Default is
    /// empty.
    pub extra_roots: Vec<PathBuf>,
    /// Named upstream (corporate) proxies; sessions and sandboxes name them by id, and the
    /// one with `default = true` carries every connection nothing else decides. Default is
    /// none (direct, or `SLUICE_PROXY_URL` from the daemon's environment).
    pub proxies: Vec<crate::upstream::egress::ProxySpec>,
}

/// Interception TLS settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// How many intercepted host names keep their minted leaf certificate; past it the least
    /// recently used name is evicted (and minted again if it comes back). Each entry holds
    /// about 3 KiB. `100..=100000`; default is `10000`.
    pub leaf_cache_size: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            leaf_cache_size: crate::tls::DEFAULT_LEAF_CACHE_SIZE,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("/var/lib/sluice"),
            capture: CaptureConfig::default(),
            listen: ListenConfig::default(),
            dns: DnsConfig::default(),
            audit: AuditConfig::default(),
            upstream: UpstreamConfig::default(),
            tls: TlsConfig::default(),
            policy: PolicyConfig::default(),
            sessions: Vec::new(),
            store: StoreConfig::default(),
        }
    }
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            parent_cgroup: PathBuf::from("sluice.sandboxes"),
            pin_dir: PathBuf::from("/sys/fs/bpf/sluice"),
        }
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            transparent_port: 15001,
            dns_port: 15053,
            control: SocketAddr::from(([127, 0, 0, 1], 3000)),
            proxy: Some(SocketAddr::from(([127, 0, 0, 1], 3128))),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout_ms: 5000,
            pool_idle_timeout_ms: 90_000,
            allow_internal: Vec::new(),
            roots: crate::upstream::Roots::default(),
            extra_roots: Vec::new(),
            proxies: Vec::new(),
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config: read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config: parse {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error, naming the line and field.
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads `path`, or the default file if it exists, or the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => PathBuf::from(DEFAULT_CONFIG_PATH),
            None => return Ok(Config::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Config::from_text(&text, &path)
    }

    /// Parses and validates the text of the file `path`; every error names the file.
    pub fn from_text(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config = Config::parse(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        config.validate().map_err(|e| match e {
            ConfigError::Invalid(why) => ConfigError::Invalid(format!("{}: {why}", path.display())),
            other => other,
        })?;
        Ok(config)
    }

    /// Parses TOML text; the error names the offending line and field.
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks values that parse but cannot work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.listen;
        if l.transparent_port == 0 || l.dns_port == 0 {
            return Err(ConfigError::Invalid(
                "listen.transparent_port and listen.dns_port must be fixed ports (not 0): \
                 the kernel programs redirect to them"
                    .into(),
            ));
        }
        if l.transparent_port == l.dns_port {
            return Err(ConfigError::Invalid(format!(
                "listen.transparent_port and listen.dns_port are both {}: give them different ports",
                l.transparent_port
            )));
        }
        if !self.state_dir.is_absolute() {
            return Err(ConfigError::Invalid(format!(
                "state_dir {} must be an absolute path",
                self.state_dir.display()
            )));
        }
        if !(1..=100_000).contains(&self.dns.max_names_per_minute) {
            return Err(ConfigError::Invalid(format!(
                "dns.max_names_per_minute is {}: it must be 1..=100000 (default 300)",
                self.dns.max_names_per_minute
            )));
        }
        if !(100..=3_600_000).contains(&self.upstream.pool_idle_timeout_ms) {
            return Err(ConfigError::Invalid(format!(
                "upstream.pool_idle_timeout_ms is {}: it must be 100..=3600000 (default 90000)",
                self.upstream.pool_idle_timeout_ms
            )));
        }
        if !LEAF_CACHE_SIZES.contains(&self.tls.leaf_cache_size) {
            return Err(ConfigError::Invalid(format!(
                "tls.leaf_cache_size is {}: it must be {}..={} (default {})",
                self.tls.leaf_cache_size,
                LEAF_CACHE_SIZES.start(),
                LEAF_CACHE_SIZES.end(),
                crate::tls::DEFAULT_LEAF_CACHE_SIZE
            )));
        }
        self.policy
            .compile()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Sessions::from_config(&self.sessions).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        crate::upstream::NodeProxies::build(&self.upstream.proxies, None)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for cidr in &self.upstream.allow_internal {
            Cidr::parse(cidr)
                .map_err(|e| ConfigError::Invalid(format!("upstream.allow_internal: {e}")))?;
        }
        Ok(())
    }

    /// The audit log file.
    pub fn audit_path(&self) -> PathBuf {
        self.audit
            .path
            .clone()
            .unwrap_or_else(|| self.state_dir.join("audit.jsonl"))
    }

    /// Where audit records go: the Redis Stream when a Redis store is configured, else the
    /// JSONL file.
    pub fn audit_target(&self) -> crate::audit::AuditTarget {
        let Some(url) = &self.store.redis_url else {
            return crate::audit::AuditTarget::File {
                path: self.audit_path(),
            };
        };
        let audit = &self.audit;
        crate::audit::AuditTarget::Redis {
            url: url.clone(),
            stream_key: audit
                .stream_key
                .clone()
                .unwrap_or_else(|| format!("{}audit", self.store.key_prefix)),
            max_len: audit.stream_max_len,
            spool_dir: audit
                .spool_dir
                .clone()
                .unwrap_or_else(|| self.state_dir.join("audit-spool")),
            spool_max_bytes: audit.spool_max_bytes,
            node_id: self.node_name(),
        }
    }

    /// The node's name in audit records and on the dashboard: `audit.node_id`, else the host
    /// name.
    pub fn node_name(&self) -> String {
        self.audit.node_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "node".to_owned())
        })
    }

    /// The admin token file of the control API.
    pub fn admin_token_path(&self) -> PathBuf {
        self.state_dir.join("admin.token")
    }

    /// The master key file.
    pub fn master_key_path(&self) -> PathBuf {
        self.store
            .master_key_file
            .clone()
            .unwrap_or_else(|| self.state_dir.join("master.key"))
    }

    /// How long an upstream dial may take.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream.connect_timeout_ms)
    }

    /// The configuration as TOML, for `sluice check-config`.
    ///
    /// # Security
    /// Tokens and keys live in files under `state_dir`; a Redis password is masked.
    pub fn dump(&self) -> String {
        let mut shown = self.clone();
        shown.store.redis_url = shown
            .store
            .redis_url
            .as_deref()
            .map(crate::session::model::mask_password);
        for proxy in &mut shown.upstream.proxies {
            proxy.url = crate::upstream::egress::mask(&proxy.url);
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse(""), Ok(Config::default()));
    }

    #[test]
    fn dump_masks_proxy_passwords() {
        let config = Config::parse(
            "[[upstream.proxies]]\nid = \"corp\"\nurl = \"http://agent:hunter2@proxy.example:3128\"\n",
        )
        .unwrap();
        let shown = config.dump();
        assert!(
            shown.contains("http://agent:***@proxy.example:3128"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn proxies_are_validated_at_load() {
        for (bad, says) in [
            (
                "[[upstream.proxies]]\nid = \"Corp\"\nurl = \"http://p:1\"\n",
                "id",
            ),
            (
                "[[upstream.proxies]]\nid = \"a\"\nurl = \"socks5://p:1\"\n",
                "http://",
            ),
            (
                "[[upstream.proxies]]\nid = \"a\"\nurl = \"http://p:1\"\ndefault = true\n\
                 [[upstream.proxies]]\nid = \"b\"\nurl = \"http://p:2\"\ndefault = true\n",
                "at most one",
            ),
            (
                "[[upstream.proxies]]\nid = \"a\"\nurl = \"http://p:1\"\n\
                 [[upstream.proxies]]\nid = \"a\"\nurl = \"http://p:2\"\n",
                "twice",
            ),
            (
                "[[upstream.proxies]]\nid = \"a\"\nurl = \"http://p:1\"\nno_proxy = [\"a b\"]\n",
                "no_proxy",
            ),
            (
                "[[upstream.proxies]]\nid = \"a\"\nurl = \"http://p:1\"\nsecret = 1\n",
                "secret",
            ),
        ] {
            let err = match Config::parse(bad) {
                Ok(c) => c.validate().unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Config::parse("[listen]\ntransparent_prot = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("transparent_prot"), "{err}");
    }

    #[test]
    fn invalid_values_are_refused() {
        let cases = [
            ("[listen]\ntransparent_port = 0\n", "fixed ports"),
            (
                "[listen]\ntransparent_port = 5\ndns_port = 5\n",
                "different ports",
            ),
            ("state_dir = \"rel\"\n", "absolute"),
            (
                "[upstream]\nallow_internal = [\"10.0.0.0/33\"]\n",
                "allow_internal",
            ),
            ("[dns]\nmax_names_per_minute = 0\n", "1..=100000"),
            ("[tls]\nleaf_cache_size = 0\n", "tls.leaf_cache_size is 0"),
            (
                "[upstream]\npool_idle_timeout_ms = 0\n",
                "upstream.pool_idle_timeout_ms is 0",
            ),
            ("[tls]\nleaf_cache_size = 99\n", "100..=100000"),
            ("[tls]\nleaf_cache_size = 100001\n", "100..=100000"),
            (
                "[policy]\npassthrough = [\"pinned.test:0\"]\n",
                "policy.passthrough[0]: \"pinned.test:0\" is not HOST or HOST:PORT",
            ),
            (
                "[policy]\ntcp_allow = [\"*.db.test:5432\"]\n",
                "must be an exact name",
            ),
        ];
        for (text, want) in cases {
            let err = Config::parse(text).map(|c| c.validate());
            let msg = match err {
                Ok(Err(e)) => e.to_string(),
                other => panic!("{text:?}: expected a validation error, got {other:?}"),
            };
            assert!(msg.contains(want), "{text:?}: {msg}");
        }
    }

    #[test]
    fn tcp_allow_rules_parse() {
        let policy = PolicyConfig {
            passthrough: vec!["*.pinned.example".into()],
            tcp_allow: vec![
                "203.0.113.0/24:22".into(),
                "[2001:db8::1]:5432".into(),
                "git.example:9418".into(),
            ],
        };
        let parsed = policy.compile().unwrap();
        assert_eq!(
            parsed.passthrough_ports(&crate::host::test_host("a.pinned.example")),
            vec![443]
        );
        assert!(parsed.is_passthrough(&crate::host::test_host("a.pinned.example")));
        assert_eq!(
            parsed
                .tcp_allow_hosts(9418)
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>(),
            vec!["git.example"]
        );
        assert!(parsed.tcp_allow_names(&crate::host::test_host("git.example")));
        let allowed = |dest: &str| {
            crate::policy::evaluate_tcp(&parsed, None, dest.parse().unwrap()).lets_through()
        };
        assert!(allowed("203.0.113.7:22"));
        assert!(allowed("[2001:db8::1]:5432"));
        assert!(!allowed("203.0.113.7:23"));
    }

    #[test]
    fn dump_round_trips() {
        let mut c = Config::default();
        c.dns.hosts.insert(
            "example.test".into(),
            vec!["198.51.100.10".parse().unwrap()],
        );
        assert_eq!(Config::parse(&c.dump()), Ok(c));
    }
}
