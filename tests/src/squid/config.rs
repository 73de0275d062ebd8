//! An instance's files: paths, the generated `squid.conf`, the htpasswd hash, ownership.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{NCSA_AUTH, Password, SquidError};
use crate::addrs;

/// Where an instance's files live (all inside its temp dir).
#[derive(Debug)]
pub(super) struct Paths {
    pub(super) config: PathBuf,
    pub(super) hosts: PathBuf,
    pub(super) htpasswd: PathBuf,
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
    pub(super) access_log: PathBuf,
    pub(super) cache_log: PathBuf,
    pub(super) stderr: PathBuf,
    pub(super) pid: PathBuf,
    pub(super) dir: PathBuf,
}

impl Paths {
    pub(super) fn new(dir: &Path) -> Paths {
        Paths {
            config: dir.join("squid.conf"),
            hosts: dir.join("hosts"),
            htpasswd: dir.join("htpasswd"),
            cert: dir.join("proxy-cert.pem"),
            key: dir.join("proxy-key.pem"),
            access_log: dir.join("access.log"),
            cache_log: dir.join("cache.log"),
            stderr: dir.join("stderr.log"),
            pid: dir.join("squid.pid"),
            dir: dir.to_owned(),
        }
    }
}

/// What [`render_config`] needs.
pub(super) struct Settings<'a> {
    pub(super) addr: SocketAddr,
    pub(super) tls: bool,
    pub(super) auth: bool,
    pub(super) extra: &'a [String],
    pub(super) paths: &'a Paths,
}

/// The whole `squid.conf`: nothing read from `/etc/squid` or written to `/var`.
pub(super) fn render_config(s: &Settings<'_>) -> String {
    let p = s.paths;
    let mut conf = String::new();
    let mut line = |text: String| {
        conf.push_str(&text);
        conf.push('\n');
    };
    if s.tls {
        line(format!(
            "https_port {} tls-cert={} tls-key={}",
            s.addr,
            p.cert.display(),
            p.key.display()
        ));
    } else {
        line(format!("http_port {}", s.addr));
    }
    for fixed in [
        format!("pid_filename {}", p.pid.display()),
        format!("coredump_dir {}", p.dir.display()),
        format!("cache_log stdio:{}", p.cache_log.display()),
        // `hasRequest`: readiness probes (connect, close) are not logged.
        "acl hasRequest has request".to_owned(),
        format!(
            "access_log stdio:{} squid hasRequest",
            p.access_log.display()
        ),
        "buffered_logs off".to_owned(),
        "logfile_rotate 0".to_owned(),
        "cache_store_log none".to_owned(),
        "netdb_filename none".to_owned(),
        "pinger_enable off".to_owned(),
        "cache deny all".to_owned(),
        "cache_mem 8 MB".to_owned(),
        "memory_cache_shared off".to_owned(),
        "max_filedescriptors 1024".to_owned(),
        "visible_hostname sluice-test-squid".to_owned(),
        format!("hosts_file {}", p.hosts.display()),
        // Owned by nobody and unroutable from the net namespace: unknown names fail fast.
        format!("dns_nameservers {}", addrs::BLACKHOLE_V4),
        "dns_timeout 2 seconds".to_owned(),
        "shutdown_lifetime 0 seconds".to_owned(),
    ] {
        line(fixed);
    }
    if s.auth {
        line(format!(
            "auth_param basic program {NCSA_AUTH} {}",
            p.htpasswd.display()
        ));
        line("auth_param basic children 2 startup=1 idle=1".to_owned());
        line("auth_param basic realm sluice-test-squid".to_owned());
        line("acl authed proxy_auth REQUIRED".to_owned());
    }
    for extra in s.extra {
        line(extra.clone());
    }
    if s.auth {
        line("http_access deny !authed".to_owned());
    }
    // No Safe_ports / SSL_ports: CONNECT goes to any port (443, 80, 7…).
    line("http_access allow all".to_owned());
    conf
}
/// `openssl passwd -apr1 -stdin`: an htpasswd hash `basic_ncsa_auth` accepts.
pub(super) fn apr1_hash(password: &Password) -> Result<String, SquidError> {
    let mut child = Command::new("openssl")
        .args(["passwd", "-apr1", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SquidError::Htpasswd(format!("spawn openssl: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{}", password.0).map_err(|e| SquidError::Htpasswd(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| SquidError::Htpasswd(e.to_string()))?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || !hash.starts_with("$apr1$") {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(SquidError::Htpasswd(format!(
            "{}: {}",
            out.status,
            stderr.trim()
        )));
    }
    Ok(hash)
}

/// Gives the directory and everything in it to `proxy`, the user Squid runs as.
pub(super) fn hand_to_proxy_user(dir: &Path) -> Result<(), SquidError> {
    let user = nix::unistd::User::from_name("proxy")
        .ok()
        .flatten()
        .ok_or(SquidError::NoProxyUser)?;
    let chown = |path: &Path| {
        nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(|errno| {
            SquidError::Files {
                what: format!("chown {} to proxy", path.display()),
                source: errno.into(),
            }
        })
    };
    chown(dir)?;
    for entry in std::fs::read_dir(dir)
        .map_err(io_err("list temp dir"))?
        .flatten()
    {
        chown(&entry.path())?;
    }
    Ok(())
}

pub(super) fn write_file(path: &Path, bytes: &[u8], what: &str) -> Result<(), SquidError> {
    std::fs::write(path, bytes).map_err(io_err(what))
}

pub(super) fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> SquidError + '_ {
    move |source| SquidError::Files {
        what: what.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tls: bool, auth: bool, extra: &[String]) -> String {
        let paths = Paths::new(Path::new("/run/sluice-e2e/sl-squid-x"));
        let addr = SocketAddr::new(addrs::HOST_C.into(), 3128);
        render_config(&Settings {
            addr,
            tls,
            auth,
            extra,
            paths: &paths,
        })
    }

    #[test]
    fn config_stays_in_its_directory_and_allows_any_connect() {
        let conf = config(false, false, &[]);
        assert!(conf.starts_with("http_port 198.51.100.12:3128\n"), "{conf}");
        for want in [
            "cache deny all",
            "buffered_logs off",
            "pid_filename /run/sluice-e2e/sl-squid-x/squid.pid",
            "hosts_file /run/sluice-e2e/sl-squid-x/hosts",
            "dns_nameservers 203.0.113.99",
        ] {
            assert!(conf.lines().any(|l| l == want), "missing {want:?}:\n{conf}");
        }
        assert!(!conf.contains("cache_dir") && !conf.contains("/var/") && !conf.contains("/etc/"));
        assert!(!conf.contains("SSL_ports") && !conf.contains("proxy_auth"));
        assert!(conf.ends_with("http_access allow all\n"));
    }

    #[test]
    fn auth_and_tls_and_extra_lines_are_ordered() {
        let extra = ["http_access deny CONNECT".to_owned()];
        let conf = config(true, true, &extra);
        assert!(
            conf.starts_with("https_port 198.51.100.12:3128 tls-cert="),
            "{conf}"
        );
        let at = |needle: &str| conf.find(needle).unwrap_or(usize::MAX);
        assert!(at("acl authed proxy_auth REQUIRED") < at("http_access deny CONNECT"));
        assert!(at("http_access deny CONNECT") < at("http_access deny !authed"));
        assert!(at("http_access deny !authed") < at("http_access allow all"));
    }
}
