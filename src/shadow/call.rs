//! One background upstream call (candidate, noise re-send, judge, embedding): sent, read to the end, timed.

use std::time::{Duration, Instant};

use http::HeaderValue;
use http_body_util::BodyExt;

use crate::client::{ClientError, Outgoing};
use crate::evaluate::Timing;
use crate::proxy::capture::{Capture, Captured, Format};
use crate::proxy::modality::Endpoint;
use crate::proxy::UpBody;
use crate::state::Upstream;

/// How much of a background response is kept.
pub const CAPTURE_CAP: usize = 1024 * 1024;

/// How a background call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    Ok,
    Error(String),
    Timeout,
}

/// The result of a background call.
#[derive(Debug, Clone)]
pub struct CallResult {
    pub outcome: CallOutcome,
    pub captured: Captured,
    pub timing: Timing,
}

/// Sends `body` to `model` at `path` with only the headers the router chooses: the content
/// type, the model's own key, the request id and `x-shadowroute-shadow: 1`. Never a client header.
pub async fn call(
    up: &Upstream,
    endpoint: Endpoint,
    query: Option<&str>,
    content_type: HeaderValue,
    body: UpBody,
    request_id: &HeaderValue,
    timeout: Duration,
) -> CallResult {
    let started = Instant::now();
    let mut first_byte = None;
    let mut capture: Option<Capture> = None;
    let mut ended = false;
    let work = async {
        let target = up.wire.target(endpoint, query);
        let headers = up.wire.headers([
            ("content-type", content_type.as_bytes()),
            ("x-shadowroute-shadow", b"1"),
            ("x-request-id", request_id.as_bytes()),
        ]);
        let head_by = tokio::time::Instant::from_std(started) + timeout;
        let req = Outgoing { method: "POST", target: &target, headers: &headers, passed_on: None, body, head_by };
        let resp = up.send(req, true).await.map_err(|e| match e {
            ClientError::Connect(e) | ClientError::Request(e) => CallOutcome::Error(e),
            ClientError::Timeout => CallOutcome::Timeout,
        })?;
        let status = resp.status;
        let format = Format::from_content_type(resp.headers.get("content-type"));
        let cap = capture.insert(Capture::new(format, CAPTURE_CAP));
        let mut body = resp.body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| CallOutcome::Error(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                first_byte.get_or_insert_with(Instant::now);
                cap.push(data);
            }
        }
        ended = true;
        if status.is_success() {
            Ok(())
        } else {
            Err(CallOutcome::Error(format!("status {}", status.as_u16())))
        }
    };
    let outcome = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(())) => CallOutcome::Ok,
        Ok(Err(outcome)) => outcome,
        Err(_) => CallOutcome::Timeout,
    };
    let end = Instant::now();
    let captured = match capture.as_mut() {
        Some(c) if !ended => {
            c.cut_short();
            c.finish()
        }
        Some(c) => c.finish(),
        None => Captured::default(),
    };
    let outcome = match (&outcome, &captured.error) {
        (CallOutcome::Ok, Some(e)) => CallOutcome::Error(format!("error in the response: {e}")),
        _ => outcome,
    };
    let timing = Timing {
        ttft_us: first_byte.unwrap_or(end).duration_since(started).as_micros() as u64,
        total_us: end.duration_since(started).as_micros() as u64,
    };
    CallResult { outcome, captured, timing }
}
