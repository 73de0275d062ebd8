//! `sluice ca show | export | rotate`: the interception CA in the state directory.

use std::process::ExitCode;

use time::OffsetDateTime;

use crate::config::Config;
use crate::tls::ca::cert_path;
use crate::tls::{CaSettings, CertificateAuthority};

/// What to do with the CA.
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Print the CA's name, fingerprint and validity.
    Show,
    /// Print the CA certificate (PEM) for sandboxes to trust.
    Export,
    /// Replace the CA now (the old files are kept with a `.old` suffix).
    Rotate,
}

/// Runs a `sluice ca` command against the state directory of `config`.
pub fn run(config: &Config, command: &CaCommand) -> ExitCode {
    let state = &config.state_dir;
    let now = OffsetDateTime::now_utc();
    let ca = match command {
        CaCommand::Rotate => CertificateAuthority::rotate(state, now, &CaSettings::default()),
        CaCommand::Show | CaCommand::Export if !cert_path(state).exists() => {
            return super::fail(&format!(
                "no CA in {} yet: `sluice run` creates one on first start",
                state.display()
            ));
        }
        CaCommand::Show | CaCommand::Export => CertificateAuthority::load_or_create(state, now),
    };
    let ca = match ca {
        Ok(ca) => ca,
        Err(e) => return super::fail(&e),
    };
    match command {
        CaCommand::Export => print!("{}", ca.cert_pem()),
        CaCommand::Show | CaCommand::Rotate => {
            println!("name:        {}", ca.common_name());
            println!("sha256:      {}", ca.fingerprint_sha256());
            println!("not before:  {}", ca.not_before());
            println!("not after:   {}", ca.not_after());
            println!("certificate: {}", cert_path(state).display());
            if let CaCommand::Rotate = command {
                println!("rotated: restart the daemon and give sandboxes the new certificate");
            }
        }
    }
    ExitCode::SUCCESS
}
