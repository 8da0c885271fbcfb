//! Response body type (whole or channel-fed stream) and helpers for OpenAI-shaped responses.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Either a complete body or frames produced by a background task; each received chunk becomes its
/// own frame so SSE events reach the client as they are generated.
pub(crate) enum SimBody {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<Bytes>),
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            SimBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            SimBody::Channel(rx) => rx.poll_recv(cx).map(|chunk| chunk.map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            SimBody::Channel(_) => SizeHint::default(),
        }
    }
}

pub(crate) type Resp = Response<SimBody>;

/// Frames buffered ahead of a slow client; small because producers pace themselves anyway.
pub(crate) const STREAM_BUFFER: usize = 16;

pub(crate) fn bytes(status: StatusCode, content_type: &'static str, data: Bytes) -> Resp {
    let mut resp = Response::new(SimBody::Full(Some(data)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub(crate) fn json(status: StatusCode, value: &Value) -> Resp {
    bytes(status, "application/json", Bytes::from(value.to_string()))
}

pub(crate) fn ok_json(value: &Value) -> Resp {
    json(StatusCode::OK, value)
}

/// A 200 response whose body is whatever the sender produces until it is dropped.
pub(crate) fn channel(content_type: &'static str, rx: mpsc::Receiver<Bytes>) -> Resp {
    let mut resp = Response::new(SimBody::Channel(rx));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// OpenAI error body; type and code follow the status the way the real API reports them.
pub(crate) fn error(status: StatusCode, message: impl Into<String>, param: Option<&str>) -> Resp {
    let (kind, code) = match status.as_u16() {
        429 => ("rate_limit_exceeded", Some("rate_limit_exceeded")),
        401 => ("authentication_error", None),
        400..=499 => ("invalid_request_error", None),
        _ => ("server_error", None),
    };
    error_body(status, message.into(), kind, param, code)
}

pub(crate) fn error_body(
    status: StatusCode,
    message: String,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Resp {
    let body = json!({
        "error": { "message": message, "type": kind, "param": param, "code": code }
    });
    json(status, &body)
}

pub(crate) fn bad_request(message: impl Into<String>, param: Option<&str>) -> Resp {
    error(StatusCode::BAD_REQUEST, message, param)
}

/// The failure injected by `error_rate`; 429s carry `retry-after` so routers exercise their backoff.
pub(crate) fn injected_error(status: u16) -> Resp {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = if status == StatusCode::TOO_MANY_REQUESTS {
        "Rate limit reached for requests (simulated)."
    } else {
        "The server had an error while processing your request (simulated)."
    };
    let mut resp = error(status, message, None);
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}
