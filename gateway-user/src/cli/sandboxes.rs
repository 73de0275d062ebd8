//! `sluice enroll`, `unenroll` and `sandboxes`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::api::CreateSandbox;
use crate::config::Config;
use crate::sandbox::locate::{Workload, locate};

/// What `sluice enroll` names.
#[derive(Debug)]
pub enum Target {
    /// A cgroup directory.
    Cgroup(PathBuf),
    /// A container or pod, whose cgroup is looked up.
    Workload(Workload),
}

/// Enrolls a running workload's cgroup.
pub async fn enroll(
    config: &Config,
    target: Target,
    force: bool,
    session: Option<String>,
    upstream_proxy: Option<String>,
) -> ExitCode {
    let client = match super::client(config) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    let cgroup = match target {
        Target::Cgroup(path) => path,
        Target::Workload(workload) => {
            let found = crate::capture::cgroup2_mount()
                .map_err(|e| e.to_string())
                .and_then(|root| locate(&root, &workload).map_err(|e| e.to_string()));
            match found {
                Ok(path) => path,
                Err(e) => return super::fail(&e),
            }
        }
    };
    if !cgroup.is_dir() {
        return super::fail(&format!(
            "cgroup {} does not exist: create it first (mkdir under the cgroup2 mount) or use `sluice exec`",
            cgroup.display()
        ));
    }
    let cgroup = std::fs::canonicalize(&cgroup).unwrap_or(cgroup);
    match client
        .create_sandbox(&CreateSandbox {
            netns: false,
            session,
            cgroup: Some(cgroup),
            upstream_proxy,
            force,
            ..CreateSandbox::default()
        })
        .await
    {
        Ok(s) => {
            println!(
                "enrolled {} as sandbox {} (cgroup id {})",
                s.cgroup.display(),
                s.id,
                s.cgroup_id
            );
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&e),
    }
}

/// Unenrolls the sandbox whose cgroup is `cgroup`.
pub async fn unenroll(config: &Config, cgroup: &Path) -> ExitCode {
    let client = match super::client(config) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    let wanted = std::fs::canonicalize(cgroup).unwrap_or_else(|_| cgroup.to_path_buf());
    let list = match client.sandboxes().await {
        Ok(list) => list,
        Err(e) => return super::fail(&e),
    };
    let Some(sandbox) = list.into_iter().find(|s| s.cgroup == wanted) else {
        return super::fail(&format!(
            "{} is not enrolled; `sluice sandboxes` lists what is",
            cgroup.display()
        ));
    };
    match client.remove_sandbox(sandbox.id).await {
        Ok(s) => {
            println!("unenrolled sandbox {} ({})", s.id, s.cgroup.display());
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&e),
    }
}

/// Prints the enrolled sandboxes.
pub async fn list(config: &Config, json: bool) -> ExitCode {
    let client = match super::client(config) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    match client.sandboxes().await {
        Ok(list) if json => super::print_json(&list),
        Ok(list) => {
            println!(
                "{:<6} {:<12} {:<8} {:<10} CGROUP",
                "ID", "CGROUP_ID", "NETNS", "SESSION"
            );
            for s in list {
                println!(
                    "{:<6} {:<12} {:<8} {:<10} {}",
                    s.id,
                    s.cgroup_id,
                    if s.netns.is_some() { "own" } else { "node" },
                    s.session.as_deref().unwrap_or("-"),
                    s.cgroup.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&e),
    }
}

/// Prints the daemon's health as JSON.
pub async fn status(config: &Config) -> ExitCode {
    let client = match super::client(config) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    match client.health().await {
        Ok(health) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&health).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&e),
    }
}
