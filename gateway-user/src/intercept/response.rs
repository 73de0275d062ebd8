//! Responses Sluice writes itself (refusals and failures), with bodies the agent can read.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::body::BoxBody;

/// Header naming the gateway as the author of a response (so agents and people can tell a
/// Sluice refusal from an upstream answer).
pub(super) const GENERATED_BY: &str = "x-sluice-error";

/// A plain-text response: `sluice: <message>` and a newline.
pub(super) fn text(status: StatusCode, message: &str) -> Response<BoxBody> {
    let body = Full::new(Bytes::from(format!("sluice: {message}\n")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(GENERATED_BY, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn text_response_carries_the_reason() {
        let response = text(StatusCode::BAD_GATEWAY, "upstream refused");
        assert_eq!(response.status(), 502);
        assert_eq!(response.headers()[GENERATED_BY], "1");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"sluice: upstream refused\n");
    }
}
