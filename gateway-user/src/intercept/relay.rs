//! The WebSocket relay for requests with a response filter (sessions holding credentials):
//! instead of copying bytes, the gateway speaks WebSocket to both sides and puts every
//! message from the upstream through the filter, so a real value the upstream echoes inside
//! a message reaches the sandbox only as its placeholder.
//!
//! - Messages are handled whole, each at most [`MAX_MESSAGE`] bytes; a bigger one ends the
//!   tunnel with close code 1009 on both sides.
//! - Compression is never negotiated: the upgrade request goes upstream without
//!   `Sec-WebSocket-Extensions`, and a 101 that names an extension anyway is refused (see
//!   [`tunnel`]), so every payload is readable.
//! - Ping, pong and close frames are relayed (close codes kept); their payloads from the
//!   upstream are scrubbed too.
//! - Messages from the sandbox go upstream unchanged: placeholders are replaced in the
//!   upgrade request's head only, never inside WebSocket messages (a placeholder sent in a
//!   message reaches the upstream as the placeholder).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use http::header::SEC_WEBSOCKET_EXTENSIONS;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::hook::ResponseFilter;

/// The largest WebSocket message (and frame) relayed, in bytes: 16 MiB.
pub(super) const MAX_MESSAGE: usize = 16 << 20;

/// How long closing both sides may take once the relay is over.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

/// How the bytes of an accepted WebSocket upgrade travel.
#[derive(Debug)]
pub(super) enum Tunnel {
    /// Copied both ways as they are (no response filter: the fast path).
    Copy,
    /// Relayed message by message, the upstream's through the filter.
    Relay(Box<dyn ResponseFilter>),
}

/// Why a relayed WebSocket ended in error (written to the request's audit record).
///
/// # Security
/// Never carries message content.
#[derive(Debug, thiserror::Error)]
pub(super) enum RelayError {
    /// The upstream's 101 names an extension (permessage-deflate...) although none was offered.
    #[error("upstream: upstream negotiated a WebSocket extension the gateway cannot scrub")]
    Extension,
    /// A message over [`MAX_MESSAGE`].
    #[error("{0}: WebSocket message over the gateway's 16 MiB limit")]
    TooBig(Side),
    /// A scrubbed text message is no longer UTF-8 (cannot happen with ASCII placeholders).
    #[error("gateway: a scrubbed WebSocket text message is not valid UTF-8")]
    NotUtf8,
    /// A raw frame where a message was expected (never read, only written).
    #[error("gateway: a raw WebSocket frame cannot be scrubbed")]
    RawFrame,
    /// The WebSocket connection with one side failed.
    #[error("{side}: WebSocket error: {source}")]
    Ws {
        /// Which side.
        side: Side,
        /// The error.
        source: tungstenite::Error,
    },
}

impl crate::audit::Sided for RelayError {
    fn side(&self) -> crate::audit::Side {
        match self {
            RelayError::Extension => crate::audit::Side::Upstream,
            RelayError::TooBig(side) | RelayError::Ws { side, .. } => match side {
                Side::Downstream => crate::audit::Side::Downstream,
                Side::Upstream => crate::audit::Side::Upstream,
            },
            RelayError::NotUtf8 | RelayError::RawFrame => crate::audit::Side::Gateway,
        }
    }
}

/// A side of the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    /// The sandbox.
    Downstream,
    /// The upstream.
    Upstream,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Downstream => "downstream",
            Side::Upstream => "upstream",
        })
    }
}

/// Decides how an upgrade the upstream accepted (with `response` headers) is carried: raw
/// without a response `filter`, relayed through it with one.
///
/// # Security
/// With a filter, an extension in the 101 is refused: its payloads (compressed) could not be
/// scrubbed, and passing them would leak.
pub(super) fn tunnel(
    filter: Option<Box<dyn ResponseFilter>>,
    response: &HeaderMap,
) -> Result<Tunnel, RelayError> {
    match (filter, response.contains_key(SEC_WEBSOCKET_EXTENSIONS)) {
        (None, _) => Ok(Tunnel::Copy),
        (Some(_), true) => Err(RelayError::Extension),
        (Some(filter), false) => Ok(Tunnel::Relay(filter)),
    }
}

/// Relays messages between the sandbox (`client`, which we serve) and the upstream
/// (`server`) until either side closes; then closes the other.
///
/// # Security
/// Every text, binary and control payload from the upstream goes through `filter` before
/// the sandbox sees it; one that cannot be scrubbed ends the tunnel instead.
pub(super) async fn relay<C, S>(
    client: C,
    server: S,
    mut filter: Box<dyn ResponseFilter>,
) -> Result<(), RelayError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let mut sandbox = WebSocketStream::from_raw_socket(client, Role::Server, Some(config)).await;
    let mut upstream = WebSocketStream::from_raw_socket(server, Role::Client, Some(config)).await;
    let result = pump(&mut sandbox, &mut upstream, filter.as_mut()).await;
    let code = match &result {
        Err(RelayError::TooBig(_)) => Some(CloseCode::Size),
        Err(RelayError::NotUtf8 | RelayError::RawFrame) => Some(CloseCode::Error),
        _ => None,
    };
    let frame = code.map(|code| CloseFrame {
        code,
        reason: Utf8Bytes::from_static(""),
    });
    tokio::join!(
        finish(&mut sandbox, frame.clone()),
        finish(&mut upstream, frame)
    );
    result
}

/// Moves messages both ways until one side's stream ends.
async fn pump<C, S>(
    sandbox: &mut WebSocketStream<C>,
    upstream: &mut WebSocketStream<S>,
    filter: &mut dyn ResponseFilter,
) -> Result<(), RelayError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        // `next` is cancel safe: a message is only handed out once complete.
        tokio::select! {
            message = sandbox.next() => match received(Side::Downstream, message)? {
                Some(message) => send(upstream, message, Side::Upstream).await?,
                None => return Ok(()),
            },
            message = upstream.next() => match received(Side::Upstream, message)? {
                Some(message) => send(sandbox, scrub(filter, message)?, Side::Downstream).await?,
                None => return Ok(()),
            },
        }
    }
}

/// Puts one message from the upstream through `filter`.
///
/// # Security
/// Payloads are replaced whole; a control payload that outgrows 125 bytes is emptied and a
/// close reason that does is dropped, never truncated mid-value.
fn scrub(filter: &mut dyn ResponseFilter, message: Message) -> Result<Message, RelayError> {
    Ok(match message {
        Message::Text(text) => Message::Text(
            Utf8Bytes::try_from(filter.message(text.as_bytes()))
                .map_err(|_| RelayError::NotUtf8)?,
        ),
        Message::Binary(data) => Message::Binary(filter.message(&data)),
        Message::Ping(data) => Message::Ping(control(filter, &data)),
        Message::Pong(data) => Message::Pong(control(filter, &data)),
        Message::Close(None) => Message::Close(None),
        Message::Close(Some(frame)) => {
            let reason = filter.message(frame.reason.as_bytes());
            let reason = Utf8Bytes::try_from(reason)
                .ok()
                .filter(|r| r.len() <= MAX_CONTROL - 2)
                .unwrap_or_else(|| Utf8Bytes::from_static(""));
            Message::Close(Some(CloseFrame {
                code: frame.code,
                reason,
            }))
        }
        // Raw frames are never read, only written; refuse rather than pass one unread.
        Message::Frame(_) => return Err(RelayError::RawFrame),
    })
}

/// A scrubbed control payload, emptied if it no longer fits a control frame.
fn control(filter: &mut dyn ResponseFilter, data: &[u8]) -> Bytes {
    let out = filter.message(data);
    if out.len() > MAX_CONTROL {
        Bytes::new()
    } else {
        out
    }
}

/// What one side's stream yielded: a message, `None` at its end, or the error.
fn received(
    side: Side,
    message: Option<Result<Message, tungstenite::Error>>,
) -> Result<Option<Message>, RelayError> {
    match message {
        None => Ok(None),
        Some(Ok(message)) => Ok(Some(message)),
        Some(Err(tungstenite::Error::Capacity(_))) => Err(RelayError::TooBig(side)),
        Some(Err(source)) => Err(RelayError::Ws { side, source }),
    }
}

/// Sends `message` to `side`. A close that finds the side already closing is not an error.
async fn send<T>(
    ws: &mut WebSocketStream<T>,
    message: Message,
    side: Side,
) -> Result<(), RelayError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let closing = message.is_close();
    match ws.send(message).await {
        Ok(()) => Ok(()),
        Err(_) if closing => Ok(()),
        Err(source) => Err(RelayError::Ws { side, source }),
    }
}

/// Closes one side (with `frame`, or echoing its close) and reads until its close arrives,
/// within [`CLOSE_WAIT`].
async fn finish<T>(ws: &mut WebSocketStream<T>, frame: Option<CloseFrame>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        let _ = ws.close(frame).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
