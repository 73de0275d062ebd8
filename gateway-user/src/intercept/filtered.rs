//! Bodies run through the hook's filters: the request body on its way upstream (a refusal
//! mid-body aborts it), the response body on its way to the sandbox.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};

use super::body::BoxBody;
use super::hook::{BodyFilter, Refusal, RefusalSlot, ResponseFilter, leave_refusal};
use crate::upstream::BoxError;

/// The refusal as a body error (hyper aborts the upstream request with it).
#[derive(Debug, thiserror::Error)]
#[error("gateway: request body refused: {0}")]
struct Refused(String);

/// Wraps a request body in `filter`; a refusal is left in `slot` and ends the body with an
/// error, so the upstream never gets a complete request.
pub(super) fn request(inner: BoxBody, filter: Box<dyn BodyFilter>, slot: RefusalSlot) -> BoxBody {
    Filtered {
        inner,
        side: Side::Request { filter, slot },
        trailers: None,
        done: false,
    }
    .boxed_unsync()
}

/// Wraps a response body in `filter`.
pub(super) fn response(inner: BoxBody, filter: Box<dyn ResponseFilter>) -> BoxBody {
    Filtered {
        inner,
        side: Side::Response { filter },
        trailers: None,
        done: false,
    }
    .boxed_unsync()
}

/// Runs a whole, already collected request body through `filter`.
pub(super) fn whole(body: &[u8], filter: &mut dyn BodyFilter) -> Result<Bytes, Refusal> {
    let head = filter.push(body)?;
    let tail = filter.finish()?;
    if tail.is_empty() {
        return Ok(head);
    }
    let mut out = Vec::with_capacity(head.len() + tail.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(&tail);
    Ok(Bytes::from(out))
}

enum Side {
    Request {
        filter: Box<dyn BodyFilter>,
        slot: RefusalSlot,
    },
    Response {
        filter: Box<dyn ResponseFilter>,
    },
}

impl Side {
    fn push(&mut self, chunk: &[u8]) -> Result<Bytes, BoxError> {
        match self {
            Side::Request { filter, slot } => filter.push(chunk).map_err(|r| refuse(slot, r)),
            Side::Response { filter } => Ok(filter.push(chunk)),
        }
    }

    fn trailers(&mut self, trailers: &mut HeaderMap) {
        if let Side::Response { filter } = self {
            filter.trailers(trailers);
        }
    }

    fn finish(&mut self) -> Result<Bytes, BoxError> {
        match self {
            Side::Request { filter, slot } => filter.finish().map_err(|r| refuse(slot, r)),
            Side::Response { filter } => Ok(filter.finish()),
        }
    }
}

fn refuse(slot: &RefusalSlot, refusal: Refusal) -> BoxError {
    let error = Box::new(Refused(refusal.reason.clone()));
    leave_refusal(slot, refusal);
    error
}

struct Filtered {
    inner: BoxBody,
    side: Side,
    /// Trailers that arrived while held-back bytes still had to be sent first.
    trailers: Option<HeaderMap>,
    done: bool,
}

impl Body for Filtered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => {
                    this.done = true;
                    match this.side.finish() {
                        Ok(tail) if tail.is_empty() => continue,
                        Ok(tail) => return Poll::Ready(Some(Ok(Frame::data(tail)))),
                        Err(error) => return Poll::Ready(Some(Err(error))),
                    }
                }
            };
            match frame.into_data() {
                Ok(data) => match this.side.push(&data) {
                    Ok(out) if out.is_empty() => {}
                    Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Err(error) => return Poll::Ready(Some(Err(error))),
                },
                Err(frame) => {
                    // Trailers end the body: release what is held back, then send them.
                    this.trailers = frame.into_trailers().ok();
                    if let Some(trailers) = &mut this.trailers {
                        this.side.trailers(trailers);
                    }
                    this.done = true;
                    match this.side.finish() {
                        Ok(tail) if tail.is_empty() => {}
                        Ok(tail) => return Poll::Ready(Some(Ok(Frame::data(tail)))),
                        Err(error) => return Poll::Ready(Some(Err(error))),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intercept::hook::take_refusal;
    use http_body_util::StreamBody;

    /// Uppercases, holding back the last byte of each chunk until the next.
    #[derive(Debug, Default)]
    struct HoldLast {
        held: Vec<u8>,
        refuse_on: Option<u8>,
    }

    impl BodyFilter for HoldLast {
        fn push(&mut self, chunk: &[u8]) -> Result<Bytes, Refusal> {
            if self.refuse_on.is_some_and(|b| chunk.contains(&b)) {
                return Err(Refusal::forbidden("found it"));
            }
            self.held.extend(chunk.to_ascii_uppercase());
            let keep = self.held.split_off(self.held.len().saturating_sub(1));
            Ok(Bytes::from(std::mem::replace(&mut self.held, keep)))
        }
        fn finish(&mut self) -> Result<Bytes, Refusal> {
            Ok(Bytes::from(std::mem::take(&mut self.held)))
        }
    }

    fn chunks(parts: &[&'static str]) -> BoxBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn request_filter_releases_everything_in_order() {
        let slot = RefusalSlot::default();
        let body = request(
            chunks(&["ab", "cd", "e"]),
            Box::new(HoldLast::default()),
            slot.clone(),
        );
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"ABCDE");
        assert!(take_refusal(&slot).is_none());
    }

    #[tokio::test]
    async fn refusal_mid_body_errors_and_is_left_in_the_slot() {
        let slot = RefusalSlot::default();
        let filter = HoldLast {
            refuse_on: Some(b'x'),
            ..HoldLast::default()
        };
        let body = request(chunks(&["ab", "xy", "z"]), Box::new(filter), slot.clone());
        assert!(body.collect().await.is_err());
        assert_eq!(take_refusal(&slot).unwrap().reason, "found it");
    }

    #[tokio::test]
    async fn trailers_follow_the_held_back_bytes() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"hi"))),
            Ok(Frame::trailers(trailers)),
        ];
        let inner = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
        let body = request(inner, Box::new(HoldLast::default()), RefusalSlot::default());
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(&collected.to_bytes()[..], b"HI");
    }

    /// Replaces `secret` by `***` in body and trailers (bodies unsplit, for brevity).
    #[derive(Debug)]
    struct Mask;

    impl ResponseFilter for Mask {
        fn headers(&mut self, _: &mut HeaderMap) {}
        fn push(&mut self, chunk: &[u8]) -> Bytes {
            Bytes::from(String::from_utf8_lossy(chunk).replace("secret", "***"))
        }
        fn finish(&mut self) -> Bytes {
            Bytes::new()
        }
        fn message(&mut self, message: &[u8]) -> Bytes {
            self.push(message)
        }
        fn trailers(&mut self, trailers: &mut HeaderMap) {
            for value in trailers.values_mut() {
                let text = value.to_str().unwrap().replace("secret", "***");
                *value = text.parse().unwrap();
            }
        }
    }

    #[tokio::test]
    async fn response_trailers_go_through_the_filter() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-echo", "Bearer secret".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a secret"))),
            Ok(Frame::trailers(trailers)),
        ];
        let inner = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
        let collected = response(inner, Box::new(Mask)).collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-echo"], "Bearer ***");
        assert_eq!(&collected.to_bytes()[..], b"a ***");
    }

    #[test]
    fn whole_bodies_go_through_push_and_finish() {
        let mut filter = HoldLast::default();
        assert_eq!(&whole(b"abc", &mut filter).unwrap()[..], b"ABC");
    }
}
