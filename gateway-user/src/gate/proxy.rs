//! A session's upstream proxy, as the egress resolution needs it: `none`, a node proxy's
//! id, or a URL whose sealed password is opened here.

use std::sync::Arc;

use super::SessionGate;
use crate::audit::Who;
use crate::upstream::egress::{EgressError, Level, ProxyChoice, ProxyUrl, UpstreamProxy};

impl SessionGate {
    /// What the session of `who` says about its upstream proxy.
    ///
    /// # Security
    /// A session that cannot be looked up, a stored choice that no longer parses, or a
    /// password that cannot be opened is an error: the connection is refused rather than
    /// sent another way. The opened password lives only in the built proxy.
    pub(super) async fn session_level(&self, who: &Who) -> Result<Level, EgressError> {
        let unusable = |reason: String| EgressError::Unusable {
            level: "session",
            reason,
        };
        let session = self
            .session_of(Some(who))
            .await
            .map_err(|e| unusable(e.to_string()))?;
        let Some((session, stored)) = session
            .as_ref()
            .and_then(|s| Some((s, s.upstream_proxy.as_deref()?)))
        else {
            return Ok(Level::Inherit);
        };
        let choice = ProxyChoice::parse(stored).map_err(|e| unusable(e.to_string()))?;
        let ProxyChoice::Url(bare) = &choice else {
            return Ok(Level::Chose(choice, None));
        };
        let mut url = ProxyUrl::parse(bare).map_err(|e| unusable(e.to_string()))?;
        let password = session.upstream_proxy_password(&self.master).map_err(|_| {
            unusable("its sealed password cannot be opened with this node's master key".into())
        })?;
        if let Some(encoded) = password {
            url.set_encoded_password(encoded.expose())
                .map_err(|e| unusable(e.into()))?;
        }
        let id = format!("session:{}", session.id);
        let proxy = UpstreamProxy::from_url(&id, url);
        Ok(Level::Chose(choice, Some(Arc::new(proxy))))
    }
}
