//! The peers: HAProxy (terminate + re-encrypt reverse proxy), Squid with ssl-bump and
//! mitmproxy (explicit proxies), each started from its template in `bench/peers/`.
//!
//! A peer that fails to start is left out with the reason, and its rows say "n/a".

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use super::env::{Env, Spawned};
use super::install;

/// Which peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HAProxy 2.6, reverse proxy on 127.0.0.1:8443 (nginx) and :8444 (SSE/upload app).
    Haproxy,
    /// Squid 5.7 ssl-bump, explicit proxy on 127.0.0.1:3129.
    Squid,
    /// mitmproxy 11.0.2, explicit proxy on 127.0.0.1:8080.
    Mitmproxy,
}

impl Kind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Haproxy => "haproxy",
            Kind::Squid => "squid",
            Kind::Mitmproxy => "mitmproxy",
        }
    }
}

/// A running peer.
#[derive(Debug)]
pub struct Peer {
    /// Which one.
    pub kind: Kind,
    proc: Spawned,
    /// The CA its clients trust (the bench CA for HAProxy, the peer's own for the others).
    pub ca_file: PathBuf,
}

impl Peer {
    /// The main process, whose CPU (with its children) and memory are measured.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The explicit proxy URL, for the peers that are explicit proxies.
    pub fn proxy_url(&self) -> Option<String> {
        match self.kind {
            Kind::Haproxy => None,
            Kind::Squid => Some("http://127.0.0.1:3129".into()),
            Kind::Mitmproxy => Some("http://127.0.0.1:8080".into()),
        }
    }
}

/// Starts `kind`; the error says why it could not run.
pub fn start(env: &Env, kind: Kind) -> anyhow::Result<Peer> {
    let peer = match kind {
        Kind::Haproxy => haproxy(env)?,
        Kind::Squid => squid(env)?,
        Kind::Mitmproxy => mitmproxy(env)?,
    };
    eprintln!("bench: started {} (pid {})", kind.name(), peer.pid());
    Ok(peer)
}

fn haproxy(env: &Env) -> anyhow::Result<Peer> {
    let cfg = env.render("peers/haproxy.cfg", "haproxy.cfg")?;
    let mut cmd = env.lab.exec_in_node("haproxy");
    cmd.arg("-f").arg(&cfg).arg("-db");
    let proc = Spawned::start("haproxy", cmd, &env.log("haproxy"))?;
    env.wait_port_in_node("127.0.0.1:8443", Duration::from_secs(15))?;
    env.wait_port_in_node("127.0.0.1:8444", Duration::from_secs(5))?;
    Ok(Peer {
        kind: Kind::Haproxy,
        proc,
        ca_file: env.ca_file.clone(),
    })
}

fn squid(env: &Env) -> anyhow::Result<Peer> {
    let dir = env.dir.path().join("squid");
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = self_signed_ca("Squid bench CA")?;
    std::fs::write(dir.join("ca.pem"), cert)?;
    std::fs::write(dir.join("ca.key"), key)?;
    let mut init = Command::new("/usr/lib/squid/security_file_certgen");
    init.arg("-c")
        .arg("-s")
        .arg(dir.join("ssl_db"))
        .args(["-M", "16MB"]);
    super::tools::run_bounded(init, Duration::from_secs(30)).context("squid: init ssl_db")?;
    // Squid drops privileges to `proxy`: its directory must be its own.
    let mut chown = Command::new("chown");
    chown.arg("-R").arg("proxy:proxy").arg(&dir);
    super::tools::run_bounded(chown, Duration::from_secs(10))?;
    let conf = env.render("peers/squid.conf", "squid.conf")?;
    let mut cmd = env.lab.exec_in_node("squid");
    cmd.arg("-N").arg("-f").arg(&conf);
    let proc = Spawned::start("squid", cmd, &env.log("squid"))?;
    env.wait_port_in_node("127.0.0.1:3129", Duration::from_secs(30))?;
    Ok(Peer {
        kind: Kind::Squid,
        proc,
        ca_file: dir.join("ca.pem"),
    })
}

fn mitmproxy(env: &Env) -> anyhow::Result<Peer> {
    let confdir = env.dir.path().join("mitmproxy");
    std::fs::create_dir_all(&confdir)?;
    let args = env.render("peers/mitmproxy.args", "mitmproxy.args")?;
    let args: Vec<String> = std::fs::read_to_string(args)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let mut cmd = env.node(install::mitmdump());
    cmd.args(&args);
    let proc = Spawned::start("mitmproxy", cmd, &env.log("mitmproxy"))?;
    env.wait_port_in_node("127.0.0.1:8080", Duration::from_secs(60))?;
    let ca_file = confdir.join("mitmproxy-ca-cert.pem");
    super::env::wait_until(Duration::from_secs(10), "mitmproxy CA", || ca_file.exists())?;
    Ok(Peer {
        kind: Kind::Mitmproxy,
        proc,
        ca_file,
    })
}

/// A throwaway ECDSA P-256 CA for a peer that mints its own leaves: (cert PEM, key PEM).
fn self_signed_ca(name: &str) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}
