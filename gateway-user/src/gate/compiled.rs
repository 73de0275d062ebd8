//! Compiled session policies, built once per session and reused by every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::policy::{CompiledPolicy, PolicyError};
use crate::session::Session;

/// Most sessions kept compiled; past it the cache starts over (compiling is cheap).
const MAX_ENTRIES: usize = 4096;

/// Compiled policies by session id.
#[derive(Debug, Default)]
pub struct CompiledSessions {
    by_id: Mutex<HashMap<String, Arc<CompiledPolicy>>>,
}

impl CompiledSessions {
    /// The compiled policy of `session` (a session's policy never changes after creation).
    pub fn get(&self, session: &Session) -> Result<Arc<CompiledPolicy>, PolicyError> {
        if let Some(found) = self.lock().get(&session.id) {
            return Ok(found.clone());
        }
        let compiled = Arc::new(CompiledPolicy::compile(&session.policy)?);
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(session.id.clone(), compiled.clone());
        Ok(compiled)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CompiledPolicy>>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
