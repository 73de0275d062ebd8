//! One intercepted request: checks, policy, forward upstream, stream the response back,
//! one audit record.

use std::sync::Arc;

use http::header::{CONNECTION, CONTENT_LENGTH, HeaderValue, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::body::{BoxBody, Counted, RequestAudit, unreadable_request_body};
use super::checks::{self, CheckError};
use super::filtered;
use super::hook::{BodyFilter, Refusal, RefusalSlot, RequestInfo, take_refusal};
use super::respond::{Target, deny, fail, refuse, respond};
use super::state::ConnState;
use super::upgrade;
use crate::audit::{Kind, Mode, Record, Said, Side};
use crate::upstream::ViaProxy;

/// Request bodies up to this size are filtered whole (exact `Content-Length` kept).
const WHOLE_BODY_LIMIT: usize = 256 * 1024;

/// Serves one request; never fails (failures become responses with readable bodies).
///
/// # Security
/// On HTTP/1, a request that asks to switch protocols (CONNECT, or any `Upgrade` header) and
/// is answered otherwise closes its connection: hyper keeps such a connection ready to hand
/// over, and the framing check stops following the bytes after such a request, so nothing
/// more may be read from it as HTTP.
pub(super) async fn handle(request: Request<Incoming>, state: Arc<ConnState>) -> Response<BoxBody> {
    let switching = !state.h2
        && (request.method() == Method::CONNECT || request.headers().contains_key(UPGRADE));
    let mut response = answer(request, state).await;
    if switching && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        close_after(&mut response);
    }
    response
}

async fn answer(request: Request<Incoming>, state: Arc<ConnState>) -> Response<BoxBody> {
    let mut record = Record::new(Kind::Request);
    record.conn = Some(state.peer.conn.to_string());
    record.who = state.peer.who.clone();
    record.destination = Some(state.peer.dest.to_string());
    record.mode = Some(Mode::Intercept);
    record.method = Some(request.method().to_string());
    record.protocol = Some(state.protocol().to_owned());
    let mut audit = RequestAudit::start(&state.ctx.audit, record, state.counters.clone());

    let (mut parts, body) = request.into_parts();
    let wire = state
        .framing
        .as_ref()
        .and_then(|v| v.next())
        .unwrap_or(Ok(()));
    let (target, url) = match wire.and_then(|()| check(&parts, &state)) {
        Ok(checked) => checked,
        Err(error) => {
            let status = error.status();
            let mut response = deny(audit, status, &error);
            if !state.h2 && status == StatusCode::BAD_REQUEST {
                // The framing of what follows on this connection cannot be trusted.
                close_after(&mut response);
            }
            return response;
        }
    };
    audit.record_mut().host = Some(target.host.to_string());
    // The URI sent upstream must name the host that was checked (SNI, policy, credentials).
    let uri = url
        .parse::<Uri>()
        .ok()
        .filter(|uri| checks::names_host(uri, &target.host));
    let url = audit.record_mut().url.insert(url);
    let Some(uri) = uri else {
        let why = Said {
            side: Side::Downstream,
            text: format!("cannot build the upstream URL {url:?}"),
        };
        return deny(audit, StatusCode::BAD_REQUEST, &why);
    };
    checks::strip_hop_by_hop(&mut parts.headers, target.websocket);
    checks::join_cookies(&mut parts.headers);
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let info = RequestInfo {
        who: state.peer.who.clone(),
        dest: state.peer.dest,
        scheme: state.scheme(),
        host: target.host.clone(),
        port: target.port,
        node: state.peer.node.clone(),
    };
    let policy = state.ctx.policy.clone();
    let plan = match policy.check(info, &mut parts).await {
        Ok(plan) => plan,
        Err(refusal) => return refuse(audit, refusal),
    };
    audit.attach_notes(plan.notes.clone());
    if target.websocket {
        let request = Request::from_parts(parts, body);
        return upgrade::forward(request, &state, audit, plan.response).await;
    }
    let slot = RefusalSlot::default();
    let body = Counted::request(body, audit.up(), slot.clone());
    let body = match plan.body {
        None => body,
        Some(filter) => match filter_request_body(&mut parts.headers, body, filter, &slot).await {
            Ok(body) => body,
            Err(refusal) => return refused_or_broken(audit, refusal),
        },
    };
    let request = Request::from_parts(parts, body);
    match state
        .ctx
        .upstream
        .send(state.peer.dest, &state.peer.egress, request, state.offer())
        .await
    {
        Ok(upstream) => {
            audit.record_mut().proxy = upstream
                .extensions()
                .get::<ViaProxy>()
                .map(|via| via.0.to_string());
            respond(upstream, &state, audit, plan.response).await
        }
        Err(error) => match take_refusal(&slot) {
            Some(refusal) => refused_or_broken(audit, refusal),
            None => {
                audit.record_mut().proxy = error.proxy_label().map(str::to_owned);
                fail(audit, error.status(), &error)
            }
        },
    }
}

/// Answers a request whose body was refused by a filter, or broken off by the sandbox (a
/// failure on its side, audited as such, not a refusal).
fn refused_or_broken(audit: RequestAudit, refusal: Refusal) -> Response<BoxBody> {
    if refusal.side == Side::Downstream {
        fail(audit, refusal.status, &refusal)
    } else {
        refuse(audit, refusal)
    }
}

/// Puts the request body through `filter`. A body of known, small length is filtered whole
/// and keeps an exact `Content-Length` (and a refusal comes before anything is sent);
/// larger or unsized bodies stream, their length left to chunked framing.
async fn filter_request_body(
    headers: &mut HeaderMap,
    body: BoxBody,
    mut filter: Box<dyn BodyFilter>,
    slot: &RefusalSlot,
) -> Result<BoxBody, Refusal> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let Some(declared) = declared.filter(|len| *len <= WHOLE_BODY_LIMIT) else {
        headers.remove(CONTENT_LENGTH);
        return Ok(filtered::request(body, filter, slot.clone()));
    };
    let mut body = body;
    let mut collected = Vec::with_capacity(declared);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| unreadable_request_body(&e))?;
        if let Ok(data) = frame.into_data() {
            collected.extend_from_slice(&data);
        }
    }
    let out = filtered::whole(&collected, filter.as_mut())?;
    headers.insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    Ok(Full::new(out)
        .map_err(|never| match never {})
        .boxed_unsync())
}

/// The request's target, and the absolute URL it is sent to.
fn check(parts: &Parts, state: &ConnState) -> Result<(Target, String), CheckError> {
    if parts.method == Method::CONNECT {
        return Err(CheckError::Unsupported("CONNECT".into()));
    }
    let authority = checks::authority(&parts.uri, &parts.headers)?;
    if let Some(sni) = &state.sni
        && *sni != authority.host
    {
        return Err(CheckError::Misdirected {
            sni: sni.to_string(),
            host: authority.host.to_string(),
        });
    }
    checks::framing(&parts.headers)?;
    let url = authority.url(state.scheme(), &parts.uri)?;
    let target = Target {
        port: authority.port_or_default(state.sni.is_some()),
        websocket: !state.h2
            && checks::is_websocket_upgrade(&parts.method, parts.version, &parts.headers),
        host: authority.host,
    };
    Ok((target, url))
}

/// Asks hyper to close an HTTP/1 connection after this response.
fn close_after(response: &mut Response<BoxBody>) {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}
