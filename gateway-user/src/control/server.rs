//! The control API server (hyper, HTTP/1.1).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::auth::AdminToken;
use super::types::{ApiError, CreateSandbox, SandboxView};
use crate::daemon::{Node, NodeError};
use crate::drain::Drain;

/// Largest request body accepted; more is a 413.
const MAX_BODY: usize = 64 * 1024;

type Reply = Response<Full<Bytes>>;

/// Serves the control API on `listener` until `drain` stops.
pub async fn serve_control(
    listener: TcpListener,
    node: Arc<Node>,
    token: AdminToken,
    drain: Drain,
) {
    let token = Arc::new(token);
    let stopping = drain.stopping();
    tokio::pin!(stopping);
    loop {
        let stream = tokio::select! {
            () = &mut stopping => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "control: accept failed");
                    continue;
                }
            },
        };
        let node = node.clone();
        let token = token.clone();
        let aborted = drain.aborted();
        drain.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let node = node.clone();
                let token = token.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&node, &token, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(error = %e, "control: connection error");
                },
                () = aborted => {}
            }
        });
    }
}

async fn route(node: &Node, token: &AdminToken, req: Request<Incoming>) -> Reply {
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
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::GET, ["v1", "health"]) => json(StatusCode::OK, &node.health()),
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
        (_, ["v1", "health" | "sandboxes"] | ["v1", "sandboxes", _]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this path",
        ),
        _ => error(StatusCode::NOT_FOUND, &format!("no such endpoint: {path}")),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Reply> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body over {MAX_BODY} bytes"),
            ));
        }
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("reading body: {e}"),
            ));
        }
    };
    serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")))
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
    let mut reply = Response::new(Full::new(Bytes::from(bytes)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    reply
}
