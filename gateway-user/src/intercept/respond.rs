//! Answers to one intercepted request: the upstream's response streamed back through the
//! plan's filter, or Sluice's own (refusals, failures), each writing the request's record.

use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};

use super::body::{BoxBody, Counted, RequestAudit};
use super::hook::{Refusal, ResponseFilter};
use super::state::ConnState;
use super::{checks, decode, filtered, response};
use crate::audit::{Outcome, Said, Side, Sided};
use crate::host::Host;
use crate::upstream::BoxError;

/// Where a checked request goes.
#[derive(Debug)]
pub(super) struct Target {
    /// The request's host (equal to the SNI on TLS connections).
    pub(super) host: Host,
    /// Port from the authority or the scheme's default.
    pub(super) port: u16,
    /// An HTTP/1.1 WebSocket upgrade.
    pub(super) websocket: bool,
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
    state: &ConnState,
    mut audit: RequestAudit,
    filter: Option<Box<dyn ResponseFilter>>,
) -> Response<BoxBody> {
    let (mut parts, body) = upstream.into_parts();
    let protocol = format!("{}>{}", state.protocol(), version_name(parts.version));
    audit.record_mut().protocol = Some(protocol);
    checks::strip_response_hop_by_hop(&mut parts.headers, false);
    parts.version = Version::HTTP_11;
    let Some(mut filter) = filter else {
        audit.decide(Outcome::allowed(), parts.status.as_u16());
        return Response::from_parts(parts, Counted::boxed_with_audit(body, audit));
    };
    let coding = if body.is_end_stream() {
        None
    } else {
        match decode::coding(&parts.headers) {
            Ok(coding) => coding,
            Err(error) => return fail(audit, StatusCode::BAD_GATEWAY, &error),
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
                let why = Said {
                    side: Side::Upstream,
                    text: error.to_string(),
                };
                return fail(audit, StatusCode::BAD_GATEWAY, &why);
            }
        };
    }
    audit.decide(Outcome::allowed(), parts.status.as_u16());
    Response::from_parts(parts, Counted::boxed_with_audit(body, audit))
}

/// Answers a refusal (with `Retry-After` when it has one) and writes the record now.
pub(super) fn refuse(audit: RequestAudit, refusal: Refusal) -> Response<BoxBody> {
    let mut response = deny(audit, refusal.status, &refusal);
    if let Some(after) = refusal.retry_after {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

/// Refuses the request with Sluice's own `status` saying `why`, and writes the record now
/// (a denial, blaming `why`'s side).
pub(super) fn deny(audit: RequestAudit, status: StatusCode, why: &dyn Sided) -> Response<BoxBody> {
    answer(audit, status, why, Outcome::refused(why))
}

/// Answers a request that failed with Sluice's own `status` saying `why`, and writes the
/// record now (an error, blaming `why`'s side).
pub(super) fn fail(audit: RequestAudit, status: StatusCode, why: &dyn Sided) -> Response<BoxBody> {
    answer(audit, status, why, Outcome::failed(why))
}

/// The body says `why` as it is; the record takes `ended` (the same words, with the side).
fn answer(
    mut audit: RequestAudit,
    status: StatusCode,
    why: &dyn Sided,
    ended: Outcome,
) -> Response<BoxBody> {
    let response = response::text(status, &why.to_string());
    audit.decide(ended, status.as_u16());
    response
}

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "h2",
        Version::HTTP_10 => "http/1.0",
        _ => "http/1.1",
    }
}
