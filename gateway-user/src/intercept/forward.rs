//! One intercepted request: checks, policy, forward upstream, stream the response back,
//! one audit record.

use std::sync::Arc;

use http::header::{CONNECTION, HeaderValue, UPGRADE};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use super::body::{BoxBody, Counted, RequestAudit};
use super::checks::{self, CheckError};
use super::serve::ConnState;
use super::{RequestFacts, response, upgrade};
use crate::audit::{Decision, Kind, Mode, Record};

/// Where a checked request goes.
#[derive(Debug)]
pub(super) struct Target {
    /// Lowercase host, no port.
    pub(super) host: String,
    /// Port from the authority or the scheme's default.
    pub(super) port: u16,
    /// The absolute URL sent upstream.
    pub(super) url: String,
    /// An HTTP/1.1 WebSocket upgrade.
    pub(super) websocket: bool,
    /// The request carried an `Upgrade` header (the tracker stops following after it).
    pub(super) had_upgrade: bool,
}

/// Serves one request; never fails (failures become responses with readable bodies).
pub(super) async fn handle(request: Request<Incoming>, state: Arc<ConnState>) -> Response<BoxBody> {
    let mut record = Record::new(Kind::Request);
    record.who = state.who.clone();
    record.destination = Some(state.dest.to_string());
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
    let target = match wire.and_then(|()| check(&parts, &state)) {
        Ok(target) => target,
        Err(error) => {
            let status = error.status();
            let mut response = answer(audit, status, Decision::Deny, error.to_string());
            if !state.h2 && status == StatusCode::BAD_REQUEST {
                // The framing of what follows on this connection cannot be trusted.
                close_after(&mut response);
            }
            return response;
        }
    };
    audit.record_mut().host = Some(target.host.clone());
    audit.record_mut().url = Some(target.url.clone());
    checks::strip_hop_by_hop(&mut parts.headers, target.websocket);
    checks::join_cookies(&mut parts.headers);

    let facts = RequestFacts {
        who: state.who.as_ref(),
        dest: state.dest,
        scheme: state.scheme(),
        host: &target.host,
        port: target.port,
        method: &parts.method,
        path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        headers: &parts.headers,
    };
    if let Err(refusal) = state.ctx.policy.check(&facts) {
        return answer(audit, refusal.status, Decision::Deny, refusal.reason);
    }
    let Ok(uri) = target.url.parse::<Uri>() else {
        let reason = format!("cannot build the upstream URL {:?}", target.url);
        return answer(audit, StatusCode::BAD_REQUEST, Decision::Deny, reason);
    };
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let request = Request::from_parts(parts, body);
    if target.websocket {
        return upgrade::forward(request, &target, &state, audit).await;
    }
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, Counted::boxed(body, audit.up()));
    match state.ctx.upstream.send(state.dest, request, false).await {
        Ok(upstream) => respond(upstream, &target, &state, audit),
        Err(error) => answer(audit, error.status(), Decision::Error, error.to_string()),
    }
}

/// Streams an upstream response back, the audit guard riding on its body.
pub(super) fn respond(
    upstream: Response<Incoming>,
    target: &Target,
    state: &ConnState,
    mut audit: RequestAudit,
) -> Response<BoxBody> {
    let (mut parts, body) = upstream.into_parts();
    let protocol = format!("{}>{}", state.protocol(), version_name(parts.version));
    audit.record_mut().protocol = Some(protocol);
    checks::strip_response_hop_by_hop(&mut parts.headers, false);
    if target.had_upgrade && !state.h2 {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    parts.version = Version::HTTP_11;
    audit.decide(Decision::Allow, parts.status.as_u16(), None);
    Response::from_parts(parts, Counted::boxed_with_audit(body, audit))
}

/// Answers with Sluice's own response and writes the record now.
pub(super) fn answer(
    mut audit: RequestAudit,
    status: StatusCode,
    decision: Decision,
    reason: String,
) -> Response<BoxBody> {
    let response = response::text(status, &reason);
    audit.decide(decision, status.as_u16(), Some(reason));
    response
}

fn check(parts: &Parts, state: &ConnState) -> Result<Target, CheckError> {
    if parts.method == Method::CONNECT {
        return Err(CheckError::Unsupported("CONNECT".into()));
    }
    let authority = checks::authority(&parts.uri, &parts.headers)?;
    let raw_host = checks::host_of(&authority)?;
    let host = raw_host
        .strip_suffix('.')
        .unwrap_or(raw_host)
        .to_ascii_lowercase();
    if let Some(sni) = &state.sni
        && !checks::same_host(sni, &host)
    {
        return Err(CheckError::Misdirected {
            sni: sni.clone(),
            host,
        });
    }
    checks::framing(&parts.headers)?;
    let https = state.sni.is_some();
    Ok(Target {
        port: checks::port_of(&authority, https),
        url: checks::url(
            state.scheme(),
            &checks::normalized_authority(&host, &authority),
            &parts.uri,
        ),
        websocket: !state.h2
            && checks::is_websocket_upgrade(&parts.method, parts.version, &parts.headers),
        had_upgrade: parts.headers.contains_key(UPGRADE),
        host,
    })
}

/// Asks hyper to close an HTTP/1 connection after this response.
fn close_after(response: &mut Response<BoxBody>) {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "h2",
        Version::HTTP_10 => "http/1.0",
        _ => "http/1.1",
    }
}
