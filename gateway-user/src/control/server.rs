//! The control API server (hyper, HTTP/1.1).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::auth::AdminToken;
use super::env::SandboxEnv;
use super::proxies::{self, TestLimiter};
use super::sessions;
use crate::api::{ApiError, CreateSandbox, CreateSession, ProxyTest, SandboxView, TrustAdviceList};
use crate::daemon::{Node, NodeError, ReloadError, Trigger};
use crate::drain::Drain;
use crate::session::Put;
use crate::upstream::egress::ProxySpec;

/// Largest request body accepted; more is a 413.
const MAX_BODY: usize = 64 * 1024;
/// Most control connections served at once; further accepts wait.
const MAX_CONNECTIONS: usize = 256;

/// A reply body: a whole one, or the audit event stream.
type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;
type Reply = Response<Body>;

/// Serves the control API on `listener` until `drain` stops.
pub async fn serve_control(
    listener: TcpListener,
    node: Arc<Node>,
    token: AdminToken,
    drain: Drain,
) {
    let token = Arc::new(token);
    let tests = Arc::new(TestLimiter::default());
    crate::proxy::listener::serve(
        listener,
        "control",
        MAX_CONNECTIONS,
        drain,
        move |stream, _| {
            let node = node.clone();
            let token = token.clone();
            let tests = tests.clone();
            async move {
                let service = hyper::service::service_fn(move |req| {
                    let node = node.clone();
                    let token = token.clone();
                    let tests = tests.clone();
                    async move {
                        let mut reply = route(&node, &token, &tests, req).await;
                        guard_headers(reply.headers_mut());
                        Ok::<_, std::convert::Infallible>(reply)
                    }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!(error = %e, "control: connection error");
                }
            }
        },
    )
    .await;
}

/// Headers every control answer carries unless it set its own: never sniffed into a script or
/// style, never cached, never framed or rendered with anything active (API answers are data;
/// the dashboard's files set their own policy).
fn guard_headers(headers: &mut header::HeaderMap) {
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers
            .entry(name)
            .or_insert(header::HeaderValue::from_static(value));
    }
}

async fn route(
    node: &Arc<Node>,
    token: &AdminToken,
    tests: &TestLimiter,
    req: Request<Incoming>,
) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["v1", "health"]) => return json(StatusCode::OK, &node.health()),
        // Public certificates only: what a sandbox platform's init script fetches.
        (&Method::GET, ["v1", "ca", "bundle"]) => return ca_bundle(node),
        // The dashboard's files: no data in them, so no token (the page asks for it).
        (&Method::GET | &Method::HEAD, ["ui", ..]) => return ui_file(&path),
        _ => {}
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !token.verify(auth) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token: send `Authorization: Bearer <token from state_dir/admin.token>`",
        );
    }
    match (method, segments.as_slice()) {
        (Method::GET, ["v1", "sandboxes"]) => {
            let list: Vec<SandboxView> = node
                .registry
                .list()
                .iter()
                .map(|s| SandboxView::from(&**s))
                .collect();
            json(StatusCode::OK, &list)
        }
        (Method::POST, ["v1", "sandboxes"]) => {
            let create: CreateSandbox = match read_json(req).await {
                Ok(body) => body,
                Err(reply) => return reply,
            };
            if let Some(id) = &create.session
                && let Err(failure) = sessions::require_usable(node, id).await
            {
                return failed(failure);
            }
            match node.create_sandbox(create).await {
                Ok(sandbox) => json(StatusCode::CREATED, &SandboxView::from(&*sandbox)),
                Err(e) => node_error(&e),
            }
        }
        (Method::GET, ["v1", "sandboxes", id]) => match parse_id(id) {
            Ok(id) => match node.registry.by_id(id) {
                Some(s) => json(StatusCode::OK, &SandboxView::from(&*s)),
                None => error(StatusCode::NOT_FOUND, &format!("no sandbox {id}")),
            },
            Err(reply) => *reply,
        },
        (Method::DELETE, ["v1", "sandboxes", id]) => match parse_id(id) {
            Ok(id) => match node.remove_sandbox(id).await {
                Ok(sandbox) => json(StatusCode::OK, &SandboxView::from(&*sandbox)),
                Err(e) => node_error(&e),
            },
            Err(reply) => *reply,
        },
        (Method::POST, ["v1", "sessions"]) => match read_json::<CreateSession>(req).await {
            Ok(create) => reply(StatusCode::CREATED, sessions::create(node, create).await),
            Err(reply) => reply,
        },
        (Method::GET, ["v1", "sessions"]) => reply(StatusCode::OK, sessions::list(node).await),
        (Method::GET, ["v1", "sessions", id]) => {
            reply(StatusCode::OK, sessions::show(node, id).await)
        }
        (Method::POST, ["v1", "sessions", id, "revoke"])
        | (Method::DELETE, ["v1", "sessions", id]) => {
            reply(StatusCode::OK, sessions::revoke(node, id).await)
        }
        (Method::PUT, ["v1", "sessions", id, "policy"]) => {
            match read_json::<crate::policy::PolicySpec>(req).await {
                Ok(policy) => reply(StatusCode::OK, sessions::set_policy(node, id, policy).await),
                Err(reply) => reply,
            }
        }
        (Method::GET, ["v1", "node"]) => json(StatusCode::OK, &super::node_info::describe(node)),
        (Method::GET, ["v1", "audit", "stream"]) => audit_stream(node, &query).await,
        (Method::GET, ["v1", "sessions", id, "env"]) => reply(
            StatusCode::OK,
            sandbox_env(node, Some(id), wants_proxy(&query)).await,
        ),
        (Method::GET, ["v1", "env"]) => reply(
            StatusCode::OK,
            sandbox_env(node, None, wants_proxy(&query)).await,
        ),
        (Method::GET, ["v1", "proxies"]) => json(StatusCode::OK, &proxies::list(node)),
        (Method::POST, ["v1", "proxies"]) => match read_json::<ProxySpec>(req).await {
            Ok(spec) => reply(
                StatusCode::CREATED,
                proxies::put(node, spec, Put::Create, None).await,
            ),
            Err(reply) => reply,
        },
        (Method::PUT, ["v1", "proxies", id]) => {
            let id = (*id).to_owned();
            match read_json::<ProxySpec>(req).await {
                Ok(spec) => reply(
                    StatusCode::OK,
                    proxies::put(node, spec, Put::Replace, Some(&id)).await,
                ),
                Err(reply) => reply,
            }
        }
        (Method::DELETE, ["v1", "proxies", id]) => {
            reply(StatusCode::OK, proxies::remove(node, id).await)
        }
        (Method::PUT, ["v1", "proxies", id, "default"]) => {
            reply(StatusCode::OK, proxies::set_default(node, id, true).await)
        }
        (Method::DELETE, ["v1", "proxies", id, "default"]) => {
            reply(StatusCode::OK, proxies::set_default(node, id, false).await)
        }
        (Method::POST, ["v1", "proxies", id, "test"]) => {
            let id = (*id).to_owned();
            let request = match read_optional_json::<ProxyTest>(req).await {
                Ok(body) => body,
                Err(reply) => return reply,
            };
            reply(
                StatusCode::OK,
                proxies::test(node, tests, &id, request).await,
            )
        }
        (Method::GET, ["v1", "audit"]) => match super::audit::parse(&query) {
            Ok((q, follow)) => reply(StatusCode::OK, super::audit::read(node, &q, follow).await),
            Err(failure) => failed(failure),
        },
        (Method::GET, ["v1", "sessions", id, "policy", "suggest"]) => {
            reply(StatusCode::OK, suggest(node, id).await)
        }
        (Method::GET, ["v1", "sessions", id, "trust", "advice"]) => {
            reply(StatusCode::OK, trust_advice(node, id).await)
        }
        (Method::GET, ["v1", "ca.pem"]) => {
            match std::fs::read_to_string(node.config.state_dir.join("ca.pem")) {
                Ok(pem) => text(StatusCode::OK, "application/x-pem-file", pem),
                Err(e) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("ca: read ca.pem: {e}"),
                ),
            }
        }
        (Method::POST, ["v1", "reload"]) => {
            match tokio::task::block_in_place(|| node.reload(Trigger::Api)) {
                Ok(report) => json(StatusCode::OK, &report),
                Err(
                    e @ (ReloadError::Invalid(_)
                    | ReloadError::Live { .. }
                    | ReloadError::Render(_)),
                ) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
                Err(e @ ReloadError::NeedsRestart(_)) => {
                    error(StatusCode::CONFLICT, &e.to_string())
                }
            }
        }
        (Method::GET, ["v1", "openapi.json"]) => {
            text(StatusCode::OK, "application/json", OPENAPI.to_owned())
        }
        (Method::GET, ["metrics"]) => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            super::metrics::render(node),
        ),
        (
            _,
            [
                "v1",
                "health" | "sandboxes" | "sessions" | "audit" | "ca.pem" | "openapi.json"
                | "reload" | "proxies" | "env" | "node",
            ]
            | ["metrics"],
        )
        | (_, ["v1", "audit", "stream"])
        | (_, ["v1", "proxies", _, "test" | "default"])
        | (_, ["v1", "proxies", _])
        | (_, ["v1", "ca", "bundle"])
        | (_, ["v1", "sandboxes" | "sessions", _])
        | (_, ["v1", "sessions", _, "revoke" | "env" | "policy"]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this path",
        ),
        _ => error(StatusCode::NOT_FOUND, &format!("no such endpoint: {path}")),
    }
}

/// `?proxy=1` or `?proxy=true`.
fn wants_proxy(query: &str) -> bool {
    query
        .split('&')
        .any(|kv| kv == "proxy=true" || kv == "proxy=1")
}

/// `GET /v1/audit/stream`: server-sent events (see [`super::audit_stream`]).
async fn audit_stream(node: &Arc<Node>, query: &str) -> Reply {
    let query = match super::audit_stream::parse(query) {
        Ok(query) => query,
        Err(failure) => return failed(failure),
    };
    match super::audit_stream::open(node.clone(), query).await {
        Ok(events) => {
            let mut reply = Response::new(events.boxed_unsync());
            let headers = reply.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            reply
        }
        Err(failure) => failed(failure),
    }
}

/// `/ui/<file>`: a dashboard file with headers that keep it from being framed, sniffed,
/// cached or told where it was opened from; `/ui` moves to `/ui/` so relative imports work.
fn ui_file(path: &str) -> Reply {
    if path == "/ui" {
        let mut reply = Response::new(Full::new(Bytes::new()).boxed_unsync());
        *reply.status_mut() = StatusCode::PERMANENT_REDIRECT;
        reply
            .headers_mut()
            .insert(header::LOCATION, header::HeaderValue::from_static("/ui/"));
        return reply;
    }
    let name = path.strip_prefix("/ui/").unwrap_or_default();
    let Some((content_type, body)) = super::ui::asset(name) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no such dashboard file: {path}"),
        );
    };
    let mut reply = text(StatusCode::OK, content_type, body.to_owned());
    let headers = reply.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, super::ui::CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, header::HeaderValue::from_static(value));
    }
    reply
}

/// `GET /v1/ca/bundle`: the node's roots and the Sluice CA, as sandboxes trust them.
fn ca_bundle(node: &Node) -> Reply {
    let path = node
        .config
        .state_dir
        .join(crate::tls::trust::CA_BUNDLE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(pem) => text(StatusCode::OK, "application/x-pem-file", pem),
        Err(e) => {
            // Unauthenticated: the reason goes to the log, not to the caller.
            tracing::warn!(path = %path.display(), error = %e, "ca: cannot read the bundle");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the CA bundle cannot be read; see the daemon's log",
            )
        }
    }
}

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

async fn sandbox_env(
    node: &Node,
    id: Option<&str>,
    proxy: bool,
) -> Result<SandboxEnv, sessions::Failure> {
    let session = match id {
        None => None,
        Some(id) => match node.services.store.get(id).await {
            Ok(Some(session)) => Some(session),
            Ok(None) => return Err((StatusCode::NOT_FOUND, format!("no session {id}"))),
            Err(e) => return Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        },
    };
    let proxy = match (proxy, &session) {
        (false, _) => None,
        (true, None) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "proxy mode needs a session: its token authenticates to the explicit proxy \
                 (GET /v1/sessions/{id}/env?proxy=1, `sluice env --session ID --proxy`)"
                    .to_owned(),
            ));
        }
        (true, Some(_)) => Some(node.config.listen.proxy.ok_or((
            StatusCode::CONFLICT,
            "the explicit proxy is off on this node (listen.proxy)".to_owned(),
        ))?),
    };
    let files = crate::tls::trust::files_in(&node.config.state_dir)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(SandboxEnv::build(session.as_ref(), &files, proxy))
}

/// The smallest policy that would have allowed what the session did (its request and
/// connection records, refused ones included; the newest 10,000).
async fn suggest(node: &Node, id: &str) -> Result<crate::policy::PolicySpec, sessions::Failure> {
    let observed = session_observed(node, id).await?;
    Ok(crate::policy::suggest(observed))
}

/// What to do about each client of the session that refused Sluice's certificate.
async fn trust_advice(node: &Node, id: &str) -> Result<TrustAdviceList, sessions::Failure> {
    let observed = session_observed(node, id).await?;
    let files = crate::tls::trust::files_in(&node.config.state_dir)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let refusals = observed.iter().filter(|o| o.refused_certificate).map(|o| {
        let host = match o.port {
            443 => o.host.clone(),
            port => format!("{}:{port}", o.host),
        };
        (o.executable.as_deref(), host)
    });
    Ok(TrustAdviceList {
        advice: crate::tls::clients::advise(refusals, &files),
    })
}

/// What the session's audit records show (the newest 10,000).
async fn session_observed(
    node: &Node,
    id: &str,
) -> Result<Vec<crate::policy::Observed>, sessions::Failure> {
    sessions::show(node, id).await?;
    let query = crate::audit::AuditQuery {
        session: Some(id.to_owned()),
        limit: crate::audit::query::MAX_LIMIT,
        ..Default::default()
    };
    let page = super::audit::read(node, &query, None).await?;
    Ok(page
        .records
        .iter()
        .filter_map(super::audit::observed)
        .collect())
}

fn reply<T: serde::Serialize>(status: StatusCode, result: Result<T, sessions::Failure>) -> Reply {
    match result {
        Ok(body) => json(status, &body),
        Err(failure) => failed(failure),
    }
}

fn failed((status, message): sessions::Failure) -> Reply {
    error(status, &message)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    reply
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Reply> {
    parse_json(&read_body(req).await?).map_err(|reply| *reply)
}

/// Like [`read_json`], an empty body being the type's default.
async fn read_optional_json<T: serde::de::DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, Reply> {
    let body = read_body(req).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(&body).map_err(|reply| *reply)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Reply> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body over {MAX_BODY} bytes"),
            ))
        }
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("reading body: {e}"),
        )),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Reply>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let message = if field == "." {
            format!("invalid JSON body: {}", e.inner())
        } else {
            format!("invalid JSON body at `{field}`: {}", e.inner())
        };
        Box::new(error(StatusCode::BAD_REQUEST, &message))
    })
}

fn parse_id(text: &str) -> Result<u64, Box<Reply>> {
    text.parse().map_err(|_| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("sandbox id {text:?} is not a number"),
        ))
    })
}

fn node_error(e: &NodeError) -> Reply {
    let status = match e {
        NodeError::BadRequest(_) => StatusCode::BAD_REQUEST,
        NodeError::NotFound(_) => StatusCode::NOT_FOUND,
        NodeError::Conflict(_) => StatusCode::CONFLICT,
        NodeError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

fn error(status: StatusCode, message: &str) -> Reply {
    json(
        status,
        &ApiError {
            error: message.to_owned(),
        },
    )
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut reply = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    reply
}
