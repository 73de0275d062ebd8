//! The node: everything the daemon serves, and the sandbox lifecycle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gateway_common::SandboxEntry;

use super::leftovers;
use super::listeners::{self, ListenerSet};
use crate::api::{CreateSandbox, Health};
use crate::audit::{AuditLog, Decision, Kind, Record, Who};
use crate::capture::{self, Capture};
use crate::config::Config;
use crate::drain::Drain;
use crate::proxy::{ProxyContext, serve_transparent};
use crate::sandbox::{Registry, Sandbox, cgroup, netns, sockets};

/// Why a sandbox operation failed; maps onto an HTTP status in the control API.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The request cannot work as given.
    #[error("{0}")]
    BadRequest(String),
    /// No such sandbox.
    #[error("{0}")]
    NotFound(String),
    /// It already exists.
    #[error("{0}")]
    Conflict(String),
    /// The node failed to carry it out.
    #[error("{0}")]
    Failed(String),
}

/// The running node.
#[derive(Debug)]
pub struct Node {
    /// The configuration it started with. Authoritative for every restart-only field (a
    /// reload never changes those); the live fields may have been reloaded since.
    pub config: Config,
    /// The kernel side.
    pub capture: Arc<Capture>,
    /// Enrolled sandboxes.
    pub registry: Arc<Registry>,
    /// Shared by every transparent listener.
    pub proxy: Arc<ProxyContext>,
    /// Audit records.
    pub audit: AuditLog,
    /// The daemon's drain; each sandbox's listeners run under a child of it.
    pub drain: Drain,
    /// The parent cgroup of created sandboxes.
    pub parent_cgroup: PathBuf,
    /// The sandboxes' DNS resolver (static table, then the system resolver).
    pub resolver: crate::dns::Resolver,
    /// Sessions, credentials, rate budgets.
    pub services: Arc<super::Services>,
    /// Distinct DNS names per sandbox per minute, shared by every DNS socket.
    pub dns_budget: Arc<crate::dns::NameBudget>,
    pub(super) reloader: super::reload::Reloader,
    /// One reread of the stored upstream proxies at a time.
    pub(super) proxy_refresh: tokio::sync::Mutex<()>,
    sandbox_drains: Mutex<HashMap<u64, Drain>>,
}

impl Node {
    /// Assembles a node from its parts (nothing is started).
    pub fn new(
        config: Config,
        capture: Arc<Capture>,
        registry: Arc<Registry>,
        proxy: Arc<ProxyContext>,
        drain: Drain,
        parent_cgroup: PathBuf,
        services: Arc<super::Services>,
    ) -> Node {
        let audit = proxy.audit.clone();
        // One resolver for DNS answers and for the proxy's name bindings: a reload of the
        // static table reaches both.
        let resolver = proxy.resolver.clone();
        Node {
            resolver,
            dns_budget: Arc::new(crate::dns::NameBudget::new(config.dns.max_names_per_minute)),
            reloader: super::reload::Reloader::new(None, config.clone()),
            proxy_refresh: tokio::sync::Mutex::new(()),
            config,
            capture,
            registry,
            proxy,
            audit,
            drain,
            parent_cgroup,
            services,
            sandbox_drains: Mutex::new(HashMap::new()),
        }
    }

    /// Reloads read `path` (the `--config` the daemon was started with; `None`: the default
    /// file if it exists, else the built-in defaults).
    pub fn config_source(mut self, path: Option<PathBuf>) -> Node {
        self.reloader = super::reload::Reloader::new(path, self.config.clone());
        self
    }

    /// Serves a set of listeners (transparent + DNS) under `drain`; `who` names the sandbox
    /// when the set lives in that sandbox's own namespace.
    pub fn serve(&self, set: ListenerSet, drain: &Drain, who: Option<&Who>) -> std::io::Result<()> {
        for listener in set.tcp {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            drain.spawn(serve_transparent(
                listener,
                self.proxy.clone(),
                drain.clone(),
            ));
        }
        for socket in set.udp {
            let socket = tokio::net::UdpSocket::from_std(socket)?;
            super::dns::serve(self, socket, drain, who.cloned())?;
        }
        Ok(())
    }

    /// `GET /v1/health`.
    pub fn health(&self) -> Health {
        Health {
            status: "ok".to_owned(),
            sandboxes: self.registry.list().len(),
            connections: self.capture.conn_count().unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Creates a sandbox cgroup under the parent (optionally with its own network namespace),
    /// or enrolls an existing cgroup, and registers it with the kernel.
    pub async fn create_sandbox(&self, req: CreateSandbox) -> Result<Arc<Sandbox>, NodeError> {
        tokio::task::block_in_place(|| match req.cgroup.clone() {
            Some(path) => self.enroll_existing(&path, req),
            None => self.create_owned(req),
        })
    }

    /// Unregisters a sandbox; for a sandbox Sluice created, kills what runs in it and removes
    /// its cgroup and namespace.
    pub async fn remove_sandbox(&self, id: u64) -> Result<Arc<Sandbox>, NodeError> {
        let sandbox = self
            .registry
            .by_id(id)
            .ok_or_else(|| NodeError::NotFound(format!("no sandbox {id}")))?;
        tokio::task::block_in_place(|| self.teardown(&sandbox))?;
        self.registry
            .remove(id)
            .map_err(|e| NodeError::Failed(e.to_string()))?;
        self.audit_sandbox(&sandbox, "removed");
        Ok(sandbox)
    }

    /// Re-adopts persisted sandboxes after a restart: drops those whose cgroup is gone or,
    /// for sandboxes Sluice created, empty (the `sluice exec` that ran it is gone), re-registers
    /// the rest and re-creates in-namespace listeners; then removes leftovers nobody owns.
    pub fn restore(&self) {
        for sandbox in self.registry.list() {
            let alive = capture::cgroup_id(&sandbox.cgroup).is_ok_and(|id| id == sandbox.cgroup_id)
                && (!sandbox.owned || cgroup::populated(&sandbox.cgroup).unwrap_or(false));
            let result = if alive {
                self.activate(&sandbox)
            } else {
                Err(NodeError::NotFound("cgroup gone or empty".into()))
            };
            match result {
                Ok(()) => {}
                // A workload Sluice did not start keeps running whatever happens here: never
                // release it. It stays registered and attached (its connections go to its
                // namespace's port, where nothing of Sluice's answers: refused, not direct).
                Err(e) if alive && !sandbox.owned => tracing::error!(
                    sandbox = sandbox.id,
                    error = %e,
                    "restore: the sandbox's listeners are not back; it stays captured, its connections refused"
                ),
                Err(e) => {
                    tracing::warn!(sandbox = sandbox.id, error = %e, "restore: dropping sandbox");
                    let _ = self.teardown(&sandbox);
                    let _ = self.registry.remove(sandbox.id);
                }
            }
        }
        let reaped = leftovers::reap(&self.parent_cgroup, &self.registry.list());
        if reaped != leftovers::Reaped::default() {
            tracing::warn!(
                cgroups = ?reaped.cgroups,
                namespaces = ?reaped.namespaces,
                "restore: removed leftovers of a previous run"
            );
        }
    }

    /// Unregisters enrolled sandboxes whose cgroup is gone (a container deleted without the
    /// runtime wrapper's `delete`, a runtime that removed the cgroup itself): their map
    /// entries, programs and namespace names go with them. Returns how many.
    pub fn sweep_vanished(&self) -> usize {
        let mut swept = 0;
        for sandbox in self.registry.list() {
            let alive = capture::cgroup_id(&sandbox.cgroup).is_ok_and(|id| id == sandbox.cgroup_id);
            if sandbox.owned || alive {
                continue;
            }
            tracing::info!(sandbox = sandbox.id, cgroup = %sandbox.cgroup.display(), "sandbox: its cgroup is gone; unenrolling");
            let _ = self.teardown(&sandbox);
            if self.registry.remove(sandbox.id).is_ok() {
                self.audit_sandbox(&sandbox, "removed (cgroup gone)");
                swept += 1;
            }
        }
        swept
    }

    /// A fresh sandbox id whose cgroup directory does not exist yet, with the directory made
    /// (a name still taken by something else is skipped, never reused).
    fn new_cgroup(&self) -> Result<(u64, PathBuf), NodeError> {
        let mut last = None;
        for _ in 0..64 {
            let id = self.registry.allocate_id();
            let path = self
                .parent_cgroup
                .join(format!("{}{id}", leftovers::CGROUP_PREFIX));
            match cgroup::create(&path) {
                Ok(()) => return Ok((id, path)),
                Err(e) if is_taken(&e) => last = Some(e.to_string()),
                Err(e) => return Err(NodeError::Failed(e.to_string())),
            }
        }
        Err(NodeError::Failed(format!(
            "no free sandbox name under {}: {}",
            self.parent_cgroup.display(),
            last.unwrap_or_default()
        )))
    }

    /// Checks a sandbox's upstream proxy override: `none` or an id this node defines.
    fn sandbox_proxy(&self, choice: Option<String>) -> Result<Option<String>, NodeError> {
        use crate::upstream::egress::ProxyChoice;
        let Some(text) = choice else {
            return Ok(None);
        };
        let ids = || {
            let proxies = self.proxy.dialer.proxies();
            let ids = proxies.ids();
            if ids.is_empty() {
                "this node defines none ([[upstream.proxies]] or `sluice proxy add`)".to_owned()
            } else {
                format!("this node defines {}", ids.join(", "))
            }
        };
        match ProxyChoice::parse(&text) {
            Ok(ProxyChoice::Direct) => Ok(Some("none".into())),
            Ok(ProxyChoice::Id(id)) if self.proxy.dialer.proxies().by_id(&id).is_some() => {
                Ok(Some(id))
            }
            Ok(ProxyChoice::Id(id)) => Err(NodeError::BadRequest(format!(
                "upstream_proxy: no proxy {id:?}; {}, or use none",
                ids()
            ))),
            Ok(ProxyChoice::Url(_)) => Err(NodeError::BadRequest(
                "upstream_proxy: a sandbox names a proxy id of the node or none, not a URL; \
                 define the proxy in [[upstream.proxies]] or give the URL to its session"
                    .into(),
            )),
            Err(e) => Err(NodeError::BadRequest(format!("upstream_proxy: {e}"))),
        }
    }

    fn create_owned(&self, req: CreateSandbox) -> Result<Arc<Sandbox>, NodeError> {
        let upstream_proxy = self.sandbox_proxy(req.upstream_proxy)?;
        let (id, path) = self.new_cgroup()?;
        let mut sandbox = Sandbox {
            id,
            cgroup: path.clone(),
            cgroup_id: 0,
            netns: None,
            session: req.session,
            owned: true,
            extra_attach: false,
            upstream_proxy,
            container: None,
        };
        let built = (|| {
            sandbox.cgroup_id =
                capture::cgroup_id(&path).map_err(|e| NodeError::Failed(e.to_string()))?;
            if req.netns {
                let name = format!("{}{id}", leftovers::netns_prefix(&self.parent_cgroup));
                let ns = netns::create(&name).map_err(|e| NodeError::Failed(e.to_string()))?;
                sandbox.netns = Some(ns);
            }
            self.activate(&sandbox)
        })();
        if let Err(e) = built {
            let _ = self.teardown(&sandbox);
            return Err(e);
        }
        self.commit(sandbox)
    }

    fn enroll_existing(&self, path: &Path, req: CreateSandbox) -> Result<Arc<Sandbox>, NodeError> {
        if req.netns {
            return Err(NodeError::BadRequest(
                "--netns applies to sandboxes Sluice creates; an existing cgroup keeps its runtime's namespace".into(),
            ));
        }
        let cgroup_id = capture::cgroup_id(path).map_err(|e| {
            NodeError::BadRequest(format!(
                "cgroup {} cannot be used ({e}); give the path of an existing cgroup v2 directory",
                path.display()
            ))
        })?;
        if let Some(existing) = self.registry.by_cgroup(cgroup_id) {
            return Err(NodeError::Conflict(format!(
                "cgroup {} is already enrolled as sandbox {}",
                path.display(),
                existing.id
            )));
        }
        if req.container.is_some() && req.pid.is_none() {
            return Err(NodeError::BadRequest(
                "container: give the container's first process (pid) too".into(),
            ));
        }
        if let Some(pid) = req.pid {
            self.check_container_process(path, pid)?;
        }
        let early = sockets::holders(path).map_err(|e| {
            NodeError::BadRequest(format!("cgroup {}: its processes: {e}", path.display()))
        })?;
        if !early.is_empty() && !req.force {
            return Err(NodeError::Conflict(format!(
                "cgroup {} already holds network sockets that would escape capture ({}); \
                 restart the workload inside an enrolled cgroup (the runtime wrapper, `sluice \
                 exec`), or pass --force to enroll it anyway (recorded in the audit log)",
                path.display(),
                describe_holders(&early)
            )));
        }
        let extra_attach = !path.starts_with(&self.parent_cgroup);
        let upstream_proxy = self.sandbox_proxy(req.upstream_proxy)?;
        let mut sandbox = Sandbox {
            id: self.registry.allocate_id(),
            cgroup: path.to_path_buf(),
            cgroup_id,
            netns: None,
            session: req.session,
            owned: false,
            extra_attach,
            upstream_proxy,
            container: req.container,
        };
        if let Some(pid) = req.pid
            && !self.in_own_netns(pid)?
        {
            let name = format!(
                "{}{}",
                leftovers::netns_prefix(&self.parent_cgroup),
                sandbox.id
            );
            let ns = netns::attach(&name, pid).map_err(|e| NodeError::Failed(e.to_string()))?;
            sandbox.netns = Some(ns);
        }
        if extra_attach && let Err(e) = self.capture.attach_extra(path) {
            let _ = self.teardown(&sandbox);
            return Err(NodeError::Failed(e.to_string()));
        }
        if let Err(e) = self.activate(&sandbox) {
            let _ = self.teardown(&sandbox);
            return Err(e);
        }
        let sandbox = self.commit(sandbox)?;
        if !early.is_empty() {
            self.audit_sandbox(
                &sandbox,
                &format!(
                    "forced: sockets opened before enrollment stay uncaptured ({})",
                    describe_holders(&early)
                ),
            );
        }
        Ok(sandbox)
    }

    /// Checks that `pid` (a container's first process) lives in `cgroup` and that its network
    /// namespace is not one another sandbox's listeners already serve.
    fn check_container_process(&self, cgroup: &Path, pid: u32) -> Result<(), NodeError> {
        let members = cgroup::procs(cgroup).map_err(|e| NodeError::BadRequest(e.to_string()))?;
        if !members.contains(&pid) {
            return Err(NodeError::BadRequest(format!(
                "pid {pid} is not in cgroup {}: give the container's first process",
                cgroup.display()
            )));
        }
        let ns = netns::identity(&proc_netns(pid))
            .map_err(|e| NodeError::BadRequest(format!("pid {pid}: its network namespace: {e}")))?;
        let shared = self.registry.list().into_iter().find(|s| {
            s.netns
                .as_deref()
                .is_some_and(|path| netns::identity(path).is_ok_and(|other| other == ns))
        });
        match shared {
            Some(other) => Err(NodeError::Conflict(format!(
                "pid {pid}'s network namespace already has sandbox {}'s listeners: containers \
                 sharing a network namespace (a pod's) are not supported yet",
                other.id
            ))),
            None => Ok(()),
        }
    }

    /// Whether `pid` shares the daemon's network namespace (its listeners then serve it).
    fn in_own_netns(&self, pid: u32) -> Result<bool, NodeError> {
        let failed = |e: std::io::Error| NodeError::Failed(format!("network namespace: {e}"));
        let own = netns::identity(Path::new("/proc/self/ns/net")).map_err(failed)?;
        let theirs = netns::identity(&proc_netns(pid)).map_err(failed)?;
        Ok(own == theirs)
    }

    /// Starts the sandbox's in-namespace listeners (if any) and registers it with the kernel.
    fn activate(&self, sandbox: &Sandbox) -> Result<(), NodeError> {
        // The kernel entry first: whatever fails after, the sandbox is captured.
        let entry = SandboxEntry {
            sandbox_id: sandbox.id,
            flags: 0,
            _pad: 0,
        };
        self.capture
            .register_sandbox(sandbox.cgroup_id, entry)
            .map_err(|e| NodeError::Failed(e.to_string()))?;
        if let Some(ns) = &sandbox.netns {
            let listen = &self.config.listen;
            let set = listeners::bind_in(ns, listen.transparent_port, listen.dns_port)
                .map_err(|e| NodeError::Failed(e.to_string()))?;
            let drain = self.drain.child();
            self.serve(set, &drain, Some(&who(sandbox)))
                .map_err(|e| NodeError::Failed(e.to_string()))?;
            self.drains().insert(sandbox.id, drain);
        }
        Ok(())
    }

    fn commit(&self, sandbox: Sandbox) -> Result<Arc<Sandbox>, NodeError> {
        let sandbox = self
            .registry
            .insert(sandbox)
            .map_err(|e| NodeError::Failed(e.to_string()))?;
        self.audit_sandbox(&sandbox, "enrolled");
        Ok(sandbox)
    }

    fn teardown(&self, sandbox: &Sandbox) -> Result<(), NodeError> {
        let fail = |e: String| NodeError::Failed(e);
        let _ = self.capture.unregister_sandbox(sandbox.cgroup_id);
        if let Some(drain) = self.drains().remove(&sandbox.id) {
            drain.stop_now();
        }
        if sandbox.owned {
            cgroup::kill_all(&sandbox.cgroup).or_else(|e| match e {
                cgroup::CgroupError::Io { ref source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Ok(())
                }
                e => Err(fail(e.to_string())),
            })?;
            cgroup::remove_tree(&sandbox.cgroup).map_err(|e| fail(e.to_string()))?;
        }
        if sandbox.extra_attach {
            self.capture
                .detach_extra_id(sandbox.cgroup_id)
                .map_err(|e| fail(e.to_string()))?;
        }
        if let Some(ns) = &sandbox.netns {
            netns::delete(ns).map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }

    fn audit_sandbox(&self, sandbox: &Sandbox, what: &str) {
        let mut record = Record::new(Kind::Sandbox);
        record.who = Some(who(sandbox));
        record.decision = Decision::Allow;
        record.reason = Some(format!("{what}: {}", sandbox.cgroup.display()));
        self.audit.write(record);
    }

    fn drains(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Drain>> {
        self.sandbox_drains
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether creating a cgroup failed because the name is taken.
fn is_taken(error: &cgroup::CgroupError) -> bool {
    matches!(error, cgroup::CgroupError::Io { source, .. }
        if source.kind() == std::io::ErrorKind::AlreadyExists)
}

/// `pid 12 (3 sockets), pid 40 (1 socket)`.
fn describe_holders(holders: &[sockets::Holder]) -> String {
    holders
        .iter()
        .map(|h| {
            let plural = if h.sockets == 1 { "" } else { "s" };
            format!("pid {} ({} socket{plural})", h.pid, h.sockets)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The network namespace file of process `pid`.
fn proc_netns(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// The audit identity of a sandbox itself (no process).
fn who(sandbox: &Sandbox) -> Who {
    Who {
        sandbox: sandbox.id,
        session: sandbox.session.clone(),
        cgroup: sandbox.cgroup_id,
        ..Who::default()
    }
}
