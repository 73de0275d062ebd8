//! Answers to one intercepted request: the upstream's response streamed back through the
//! plan's filter, or Sluice's own (refusals, failures), each writing the request's record.

use http::header::{CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};

use super::body::{BoxBody, Counted, RequestAudit};
use super::hook::{Refusal, ResponseFilter};
use super::state::ConnState;
use super::{checks, decode, filtered, response};
use crate::audit::Decision;
use crate::host::Host;
use crate::upstream::BoxError;

/// Where a checked request goes.
#[derive(Debug)]
pub(super) struct Target {
    /// The request's host (equal to the SNI on TLS connections).
    pub(super) host: Host,
    /// Port from the authority or the scheme's default.
    pub(super) port: u16,
    /// The absolute URL sent upstream.
    pub(super) url: String,
    /// An HTTP/1.1 WebSocket upgrade.
    pub(super) websocket: bool,
    /// The request carried an `Upgrade` header (the tracker stops following after it).
    pub(super) had_upgrade: bool,
}

/// Streams an upstream response back through the plan's filter, the audit guard riding on
/// its body.
///
/// # Security
/// With a filter, the body is decoded first (see [`decode`]); a coding that cannot be
/// decoded, or an encoded body whose start does not decode, is answered with 502 and nothing
/// of it is sent. A body that stops decoding later is cut off with an error.
pub(super) async fn respond(
    upstream: Response<Incoming>,
    target: &Target,
    state: &ConnState,
    mut audit: RequestAudit,
    filter: Option<Box<dyn ResponseFilter>>,
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
    let Some(mut filter) = filter else {
        audit.decide(Decision::Allow, parts.status.as_u16(), None);
        return Response::from_parts(parts, Counted::boxed_with_audit(body, audit));
    };
    let coding = if body.is_end_stream() {
        None
    } else {
        match decode::coding(&parts.headers) {
            Ok(coding) => coding,
            Err(error) => {
                return answer(
                    audit,
                    StatusCode::BAD_GATEWAY,
                    Decision::Error,
                    error.to_string(),
                );
            }
        }
    };
    filter.headers(&mut parts.headers);
    // Scrubbing may change the length: the body streams with chunked framing.
    parts.headers.remove(CONTENT_LENGTH);
    let mut body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync();
    if let Some(coding) = coding {
        parts.headers.remove(CONTENT_ENCODING);
        body = decode::decoded(body, coding);
    }
    let mut body = filtered::response(body, filter);
    if coding.is_some() {
        // See that the body decodes before answering 200: a body that is not what its
        // header says is refused with a readable 502.
        body = match decode::first_frame(body).await {
            Ok(body) => body,
            Err(error) => {
                return answer(
                    audit,
                    StatusCode::BAD_GATEWAY,
                    Decision::Error,
                    error.to_string(),
                );
            }
        };
    }
    audit.decide(Decision::Allow, parts.status.as_u16(), None);
    Response::from_parts(parts, Counted::boxed_with_audit(body, audit))
}

/// Answers a refusal (with `Retry-After` when it has one) and writes the record now.
pub(super) fn refuse(audit: RequestAudit, refusal: Refusal) -> Response<BoxBody> {
    let mut response = answer(audit, refusal.status, Decision::Deny, refusal.reason);
    if let Some(after) = refusal.retry_after {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
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

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "h2",
        Version::HTTP_10 => "http/1.0",
        _ => "http/1.1",
    }
}
