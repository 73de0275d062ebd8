//! What a session needs on every request, built once per session snapshot and reused: its
//! compiled policy and the scrubber of its credentials' values.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::credentials::{Bound, Scrubber, StreamError};
use crate::policy::{CompiledPolicy, PolicyError, PolicySpec};
use crate::session::{CryptoError, MasterKey, Session, StoredCredential};

/// Most sessions kept compiled; past it the cache starts over (compiling is cheap).
const MAX_ENTRIES: usize = 4096;
/// Layerings kept per session: one per node rule set its connections were accepted under
/// (after a reload, connections from before it still carry the old one).
const LAYERINGS_PER_SESSION: usize = 2;

/// Why a session's scrubber could not be built; the request is refused (gateway side).
#[derive(Debug, thiserror::Error)]
pub enum ScrubberError {
    /// A sealed value does not open under the master key.
    #[error("credential {name}: {source}")]
    Open {
        /// The credential's name.
        name: String,
        /// The error.
        source: CryptoError,
    },
    /// The matcher could not be built.
    #[error(transparent)]
    Build(#[from] StreamError),
}

/// Compiled policies and scrubbers by session id.
#[derive(Debug, Default)]
pub struct CompiledSessions {
    by_id: Mutex<HashMap<String, Compiled>>,
    /// Each session's policy layered over the node's rules, newest first.
    layered: Mutex<HashMap<String, Vec<Layered>>>,
    scrubbers: Mutex<HashMap<String, Arc<ScrubEntry>>>,
}

/// A session's policy compiled, and the spec it was compiled from (the API may replace a
/// session's policy: a snapshot with another spec is compiled again).
#[derive(Debug)]
struct Compiled {
    spec: PolicySpec,
    policy: Arc<CompiledPolicy>,
    /// The last snapshot found to carry `spec`. The same snapshot again is known to carry
    /// it without comparing the specs (with a thousand rules, comparing them on every
    /// request cost more than the rest of the policy check). Weak, so the cache keeps no
    /// session alive; and while it exists no other snapshot can take that address.
    snapshot: Weak<Session>,
}

/// A session's policy over the node's rules.
#[derive(Debug)]
struct Layered {
    node: Arc<CompiledPolicy>,
    session: Arc<CompiledPolicy>,
    policy: Arc<CompiledPolicy>,
}

/// A scrubber and the sealed credentials it was built from.
#[derive(Debug)]
struct ScrubEntry {
    credentials: Vec<StoredCredential>,
    scrubber: Scrubber,
    /// The snapshot it was built from (see [`Compiled::snapshot`]).
    snapshot: Weak<Session>,
}

impl CompiledSessions {
    /// The compiled policy of `session`, compiled again when the snapshot's policy differs
    /// from the one cached (replaced through the API).
    pub fn get(&self, session: &Arc<Session>) -> Result<Arc<CompiledPolicy>, PolicyError> {
        if let Some(found) = lock(&self.by_id).get_mut(&session.id) {
            if std::ptr::eq(found.snapshot.as_ptr(), Arc::as_ptr(session)) {
                return Ok(found.policy.clone());
            }
            if found.spec == session.policy {
                found.snapshot = Arc::downgrade(session);
                return Ok(found.policy.clone());
            }
        }
        let compiled = Arc::new(CompiledPolicy::compile(&session.policy)?);
        let mut map = lock(&self.by_id);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            session.id.clone(),
            Compiled {
                spec: session.policy.clone(),
                policy: compiled.clone(),
                snapshot: Arc::downgrade(session),
            },
        );
        Ok(compiled)
    }

    /// The one policy of a connection of `session`, by which it is routed and each of its
    /// requests checked: the session's own layered over `node`, the node's rules the
    /// connection was accepted under (see [`CompiledPolicy::layered_over`]). Rebuilt when the
    /// node's rules were reloaded or the session's policy replaced since.
    pub fn layered(
        &self,
        session: &Arc<Session>,
        node: &Arc<CompiledPolicy>,
    ) -> Result<Arc<CompiledPolicy>, PolicyError> {
        let own = self.get(session)?;
        if let Some(found) = lock(&self.layered).get(&session.id).and_then(|kept| {
            kept.iter()
                .find(|l| Arc::ptr_eq(&l.node, node) && Arc::ptr_eq(&l.session, &own))
        }) {
            return Ok(found.policy.clone());
        }
        let policy = Arc::new(own.layered_over(node)?);
        let mut map = lock(&self.layered);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        let kept = map.entry(session.id.clone()).or_default();
        kept.retain(|l| Arc::ptr_eq(&l.session, &own));
        kept.insert(
            0,
            Layered {
                node: node.clone(),
                session: own,
                policy: policy.clone(),
            },
        );
        kept.truncate(LAYERINGS_PER_SESSION);
        Ok(policy)
    }

    /// The scrubber of every credential value of `session`, whatever host each is bound to;
    /// `None` when the session has no credentials. Built when the session's credentials
    /// (as sealed) differ from the cached snapshot's, reused otherwise.
    ///
    /// # Security
    /// The values opened here go into the scrubber only: it turns them back into
    /// placeholders in responses, and never puts a value into anything.
    pub fn scrubber(
        &self,
        session: &Arc<Session>,
        master: &MasterKey,
    ) -> Result<Option<Scrubber>, ScrubberError> {
        if session.credentials.is_empty() {
            return Ok(None);
        }
        if let Some(entry) = lock(&self.scrubbers).get(&session.id)
            && (std::ptr::eq(entry.snapshot.as_ptr(), Arc::as_ptr(session))
                || entry.credentials == session.credentials)
        {
            return Ok(Some(entry.scrubber.clone()));
        }
        let mut bounds = Vec::with_capacity(session.credentials.len());
        for stored in &session.credentials {
            let name = &stored.spec.name;
            let value = session
                .open_credential(name, master)
                .map_err(|source| ScrubberError::Open {
                    name: name.clone(),
                    source,
                })?
                .unwrap_or_else(|| crate::credentials::Secret::new(Vec::new()));
            bounds.push(Bound {
                spec: stored.spec.clone(),
                value,
            });
        }
        let scrubber = Scrubber::new(&bounds)?;
        let mut map = lock(&self.scrubbers);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            session.id.clone(),
            Arc::new(ScrubEntry {
                credentials: session.credentials.clone(),
                scrubber: scrubber.clone(),
                snapshot: Arc::downgrade(session),
            }),
        );
        Ok(Some(scrubber))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::Enforcement;
    use crate::session::store::seal_new_session;
    use crate::session::store::tests::new_session;

    #[test]
    fn a_replaced_policy_is_compiled_again_and_layered_again() {
        let key = MasterKey::generate().unwrap();
        let (session, _) = seal_new_session(new_session(Duration::from_secs(60)), &key).unwrap();
        let session = Arc::new(session);
        let node = Arc::new(CompiledPolicy::compile(&PolicySpec::default()).unwrap());
        let cache = CompiledSessions::default();
        let before = cache.layered(&session, &node).unwrap();
        assert!(Arc::ptr_eq(
            &before,
            &cache.layered(&session, &node).unwrap()
        ));
        // Another snapshot of the same session with the same policy: nothing compiled again.
        let again = Arc::new((*session).clone());
        assert!(Arc::ptr_eq(
            &cache.get(&session).unwrap(),
            &cache.get(&again).unwrap()
        ));
        assert!(Arc::ptr_eq(&before, &cache.layered(&again, &node).unwrap()));
        let mut replaced = (*session).clone();
        replaced.policy.enforcement = Enforcement::Audit;
        replaced.policy.passthrough = vec!["pinned.test".into()];
        let session = Arc::new(replaced);
        let after = cache.layered(&session, &node).unwrap();
        assert_eq!(after.enforcement(), Enforcement::Audit);
        assert!(
            after.is_passthrough(&crate::host::test_host("pinned.test"))
                && !before.is_passthrough(&crate::host::test_host("pinned.test"))
        );
        assert_eq!(cache.get(&session).unwrap().spec(), &session.policy);
    }

    #[test]
    fn connections_from_before_and_after_a_reload_keep_their_layerings() {
        let key = MasterKey::generate().unwrap();
        let (session, _) = seal_new_session(new_session(Duration::from_secs(60)), &key).unwrap();
        let session = Arc::new(session);
        let node = |passthrough: &str| {
            let spec = PolicySpec {
                passthrough: vec![passthrough.into()],
                ..PolicySpec::default()
            };
            Arc::new(CompiledPolicy::compile(&spec).unwrap())
        };
        let (old, new) = (node("old.test"), node("new.test"));
        let cache = CompiledSessions::default();
        let on_old = cache.layered(&session, &old).unwrap();
        let on_new = cache.layered(&session, &new).unwrap();
        assert!(on_new.is_passthrough(&crate::host::test_host("new.test")));
        assert!(!on_new.is_passthrough(&crate::host::test_host("old.test")));
        for _ in 0..3 {
            assert!(Arc::ptr_eq(
                &on_old,
                &cache.layered(&session, &old).unwrap()
            ));
            assert!(Arc::ptr_eq(
                &on_new,
                &cache.layered(&session, &new).unwrap()
            ));
        }
    }
}
