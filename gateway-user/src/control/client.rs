//! The CLI's client of the control API.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::audit::AuditRecords;
use super::auth::AdminToken;
use super::env::SandboxEnv;
use super::sessions::CreatedSession;
use crate::api::{
    ApiError, CreateSandbox, CreateSession, Health, ProxyTest, ProxyTestResult, ProxyView,
    ReloadReport, SandboxView, TrustAdviceList,
};
use crate::policy::PolicySpec;
use crate::session::SessionView;
use crate::upstream::egress::ProxySpec;

/// Why a control API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon could not be reached.
    #[error(
        "cannot reach the sluice daemon's control API at {addr}: {detail}; is `sluice run` running (with the same --config)?"
    )]
    Unreachable {
        /// The API address.
        addr: SocketAddr,
        /// The connect error.
        detail: String,
    },
    /// The daemon answered with an error.
    #[error("sluice daemon: {message} (HTTP {status})")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The daemon's message.
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("sluice daemon: unexpected answer: {0}")]
    Protocol(String),
}

/// A client bound to one daemon.
#[derive(Debug, Clone)]
pub struct ControlClient {
    addr: SocketAddr,
    token: AdminToken,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl ControlClient {
    /// A client for the API at `addr` using `token`.
    pub fn new(addr: SocketAddr, token: AdminToken) -> ControlClient {
        let http = Client::builder(TokioExecutor::new()).build_http();
        ControlClient { addr, token, http }
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/v1/health", None::<&()>).await
    }

    /// `POST /v1/sandboxes`.
    pub async fn create_sandbox(&self, req: &CreateSandbox) -> Result<SandboxView, ClientError> {
        self.call(Method::POST, "/v1/sandboxes", Some(req)).await
    }

    /// `GET /v1/sandboxes`.
    pub async fn sandboxes(&self) -> Result<Vec<SandboxView>, ClientError> {
        self.call(Method::GET, "/v1/sandboxes", None::<&()>).await
    }

    /// `DELETE /v1/sandboxes/{id}`.
    pub async fn remove_sandbox(&self, id: u64) -> Result<SandboxView, ClientError> {
        self.call(Method::DELETE, &format!("/v1/sandboxes/{id}"), None::<&()>)
            .await
    }

    /// `POST /v1/sessions`.
    pub async fn create_session(&self, req: &CreateSession) -> Result<CreatedSession, ClientError> {
        self.call(Method::POST, "/v1/sessions", Some(req)).await
    }

    /// `GET /v1/sessions`.
    pub async fn sessions(&self) -> Result<Vec<SessionView>, ClientError> {
        self.call(Method::GET, "/v1/sessions", None::<&()>).await
    }

    /// `GET /v1/sessions/{id}`.
    pub async fn session(&self, id: &str) -> Result<SessionView, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/sessions/{}", encode(id)),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/sessions/{id}/revoke`.
    pub async fn revoke_session(&self, id: &str) -> Result<SessionView, ClientError> {
        let path = format!("/v1/sessions/{}/revoke", encode(id));
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// `GET /v1/sessions/{id}/env` (`session`), else `GET /v1/env`; `?proxy=1` if `proxy`.
    pub async fn sandbox_env(
        &self,
        session: Option<&str>,
        proxy: bool,
    ) -> Result<SandboxEnv, ClientError> {
        let base = match session {
            Some(id) => format!("/v1/sessions/{}/env", encode(id)),
            None => "/v1/env".to_owned(),
        };
        let path = if proxy {
            format!("{base}?proxy=1")
        } else {
            base
        };
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/sessions/{id}/policy/suggest`.
    pub async fn suggest_policy(&self, id: &str) -> Result<PolicySpec, ClientError> {
        let path = format!("/v1/sessions/{}/policy/suggest", encode(id));
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/sessions/{id}/trust/advice`.
    pub async fn trust_advice(&self, id: &str) -> Result<TrustAdviceList, ClientError> {
        let path = format!("/v1/sessions/{}/trust/advice", encode(id));
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/proxies`.
    pub async fn proxies(&self) -> Result<Vec<ProxyView>, ClientError> {
        self.call(Method::GET, "/v1/proxies", None::<&()>).await
    }

    /// `POST /v1/proxies` (`replace`: `PUT /v1/proxies/{id}`).
    pub async fn put_proxy(
        &self,
        spec: &ProxySpec,
        replace: bool,
    ) -> Result<ProxyView, ClientError> {
        if replace {
            let path = format!("/v1/proxies/{}", encode(&spec.id));
            self.call(Method::PUT, &path, Some(spec)).await
        } else {
            self.call(Method::POST, "/v1/proxies", Some(spec)).await
        }
    }

    /// `DELETE /v1/proxies/{id}`.
    pub async fn remove_proxy(&self, id: &str) -> Result<ProxyView, ClientError> {
        let path = format!("/v1/proxies/{}", encode(id));
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// `PUT` (`on`) or `DELETE /v1/proxies/{id}/default`.
    pub async fn default_proxy(&self, id: &str, on: bool) -> Result<ProxyView, ClientError> {
        let path = format!("/v1/proxies/{}/default", encode(id));
        let method = if on { Method::PUT } else { Method::DELETE };
        self.call(method, &path, None::<&()>).await
    }

    /// `POST /v1/proxies/{id}/test`.
    pub async fn test_proxy(
        &self,
        id: &str,
        request: &ProxyTest,
    ) -> Result<ProxyTestResult, ClientError> {
        let path = format!("/v1/proxies/{}/test", encode(id));
        self.call(Method::POST, &path, Some(request)).await
    }

    /// `POST /v1/reload`: the daemon re-reads its configuration file.
    pub async fn reload(&self) -> Result<ReloadReport, ClientError> {
        self.call(Method::POST, "/v1/reload", None::<&()>).await
    }

    /// `GET /v1/audit?…` with an already encoded query.
    pub async fn audit(&self, query: &str) -> Result<AuditRecords, ClientError> {
        self.call(Method::GET, &format!("/v1/audit?{query}"), None::<&()>)
            .await
    }

    async fn call<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| ClientError::Protocol(e.to_string()))?,
            None => Vec::new(),
        };
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header(header::AUTHORIZATION, self.token.bearer())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| ClientError::Unreachable {
                addr: self.addr,
                detail: std::error::Error::source(&e).map_or(e.to_string(), ToString::to_string),
            })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ClientError::Api { status, message });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

/// Percent-encodes a path segment or query value (ids are plain, but never trust that).
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
