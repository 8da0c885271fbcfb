//! Per-request context handed to endpoint handlers: parsed payload, effective behaviour and randomness.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;

use super::config::Behavior;
use super::multipart::{self, Part};
use super::state::ServerState;
use crate::raw_headers::RawHeaders;
use crate::rng::{jittered, Rng};

/// The request body, parsed once up front because the request log needs the model field anyway.
pub(crate) enum Payload {
    Empty,
    Json(Value),
    Multipart(Vec<Part>),
    /// Unparseable body; the message is what a 400 should say.
    Invalid(String),
}

impl Payload {
    pub(crate) fn parse(headers: &RawHeaders, body: &Bytes) -> Payload {
        let content_type = headers.get_str("content-type").unwrap_or("");
        if let Some(boundary) = multipart::boundary(content_type) {
            return match multipart::parse(body, &boundary) {
                Ok(parts) => Payload::Multipart(parts),
                Err(e) => Payload::Invalid(format!("Could not parse multipart form: {e}")),
            };
        }
        if content_type.trim_start().to_ascii_lowercase().starts_with("multipart/") {
            return Payload::Invalid("multipart body without a usable boundary".to_string());
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Payload::Empty;
        }
        match serde_json::from_slice(body) {
            Ok(v) => Payload::Json(v),
            Err(e) => Payload::Invalid(format!("We could not parse the JSON body of your request. ({e})")),
        }
    }

    /// The `model` field of a JSON body or multipart form, for the request log.
    pub(crate) fn model(&self) -> Option<String> {
        match self {
            Payload::Json(v) => v.get("model").and_then(Value::as_str).map(str::to_string),
            Payload::Multipart(parts) => multipart::field(parts, "model").map(|p| p.text().trim().to_string()),
            Payload::Empty | Payload::Invalid(_) => None,
        }
    }
}

pub(crate) struct Ctx {
    pub(crate) state: Arc<ServerState>,
    pub(crate) behavior: Behavior,
    pub(crate) rng: Rng,
    pub(crate) payload: Payload,
}

impl Ctx {
    /// Takes the JSON object body, or the message for the 400 to answer instead.
    pub(crate) fn take_json(&mut self) -> Result<Value, String> {
        match std::mem::replace(&mut self.payload, Payload::Empty) {
            Payload::Json(v @ Value::Object(_)) => Ok(v),
            Payload::Json(_) => Err("The request body must be a JSON object.".to_string()),
            Payload::Invalid(msg) => Err(msg),
            Payload::Empty => Err("You must provide a JSON request body.".to_string()),
            Payload::Multipart(_) => Err("This endpoint expects a JSON body, not multipart/form-data.".to_string()),
        }
    }

    /// Takes the multipart form, or the message for the 400 to answer instead.
    pub(crate) fn take_multipart(&mut self) -> Result<Vec<Part>, String> {
        match std::mem::replace(&mut self.payload, Payload::Empty) {
            Payload::Multipart(parts) => Ok(parts),
            Payload::Invalid(msg) => Err(msg),
            _ => Err("This endpoint expects a multipart/form-data body.".to_string()),
        }
    }

    /// The model the client asked for, echoed back like a real provider; the server name if absent.
    pub(crate) fn model(&self, body: &Value) -> String {
        body.get("model").and_then(Value::as_str).map_or_else(|| self.state.name.clone(), str::to_string)
    }

    /// Simulates generating `steps` more tokens.
    pub(crate) async fn pace(&mut self, steps: usize) {
        let steps = u32::try_from(steps).unwrap_or(u32::MAX);
        let d = self.behavior.per_token.saturating_mul(steps);
        tokio::time::sleep(jittered(d, self.behavior.jitter, &mut self.rng)).await;
    }

    /// One jittered per-token delay, for producers that run detached from the context.
    pub(crate) fn token_delay(behavior: &Behavior, rng: &mut Rng) -> Duration {
        jittered(behavior.per_token, behavior.jitter, rng)
    }

    pub(crate) fn id(&mut self, prefix: &str) -> String {
        format!("{prefix}{:016x}", self.rng.next_u64())
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
