//! The common stage of interception tests: a lab, a real HTTPS echo host `api.test` (at
//! [`addrs::FAR_HOST`]:443, certified by a test CA Sluice trusts upstream), and a daemon that
//! resolves `api.test` to it.

use std::net::SocketAddr;

use crate::sluice::{Options, Sluice};
use crate::upstream::{self, RunningUpstream};
use crate::{NetLab, TestCa, addrs};

/// A lab with `api.test` and a daemon in front of it. Fields drop in order: the daemon
/// before the host, the lab last.
#[derive(Debug)]
pub struct ApiLab {
    /// The daemon.
    pub sluice: Sluice,
    /// The echo host (its requests are recorded).
    pub api: RunningUpstream,
    /// The test CA's certificate file (what Sluice trusts for `api.test`).
    pub ca_file: tempfile::TempPath,
    /// The test CA.
    pub ca: TestCa,
    /// The namespaces.
    pub lab: NetLab,
}

impl ApiLab {
    /// Starts everything in a new lab named after `name`.
    pub fn start(name: &str) -> std::io::Result<ApiLab> {
        let lab = NetLab::new(name).map_err(std::io::Error::other)?;
        let ca = TestCa::new().map_err(std::io::Error::other)?;
        let ca_file = ca.pem_file().map_err(std::io::Error::other)?;
        let api = upstream::https(&ca)
            .hostname("api.test")
            .echo()
            .start(&lab, SocketAddr::new(addrs::FAR_HOST.into(), 443))
            .map_err(std::io::Error::other)?;
        let sluice = Sluice::start(
            &lab,
            &Options {
                extra_toml: format!("[upstream]\nextra_roots = [{:?}]\n", ca_file.to_path_buf()),
                dns_hosts: vec![("api.test".into(), addrs::FAR_HOST.to_string())],
                ..Options::default()
            },
        )?;
        Ok(ApiLab {
            sluice,
            api,
            ca_file,
            ca,
            lab,
        })
    }
}
