//! Errors the router itself answers with, in the OpenAI error shape, mapped in one place.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::headers::X_REQUEST_ID;
use super::modality::ClassifyError;
use super::RespBody;

/// Everything that makes the router answer a request itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("Unknown request URL: {method} {path}. See /v1/models for what this router serves.")]
    NotFound { method: String, path: String },
    #[error("Method {method} is not allowed on {path}; see /v1/models for the API this router serves.")]
    MethodNotAllowed { method: String, path: String },
    #[error("Request body is larger than the limit of {limit} bytes.")]
    TooLarge { limit: u64 },
    #[error("Malformed request body: {0}")]
    BadBody(String),
    #[error("{0}")]
    Classify(#[from] ClassifyError),
    #[error("No route serves {modality} requests{detail}.")]
    NoRoute { modality: String, detail: String },
    #[error("The router is shutting down; retry on another instance.")]
    Draining,
    #[error("Upstream model `{model}` could not be reached: {reason}")]
    UpstreamUnavailable { model: String, reason: String },
    #[error("Upstream model `{model}` did not answer within {seconds:.1}s.")]
    UpstreamTimeout { model: String, seconds: f64 },
    #[error("Could not read the request body: {0}")]
    ClientBody(String),
    #[error("Invalid feedback: {0}")]
    InvalidFeedback(String),
    #[error("Unknown or expired request_id `{0}`: feedback attaches to requests this router served recently.")]
    UnknownRequestId(String),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NotFound { .. } | ProxyError::UnknownRequestId(_) => StatusCode::NOT_FOUND,
            ProxyError::InvalidFeedback(_) => StatusCode::BAD_REQUEST,
            ProxyError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadBody(_) | ProxyError::Classify(_) | ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute { .. } | ProxyError::Draining => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamUnavailable { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ProxyError::NotFound { .. } => ("invalid_request_error", "unknown_url"),
            ProxyError::InvalidFeedback(_) => ("invalid_request_error", "invalid_feedback"),
            ProxyError::UnknownRequestId(_) => ("invalid_request_error", "unknown_request_id"),
            ProxyError::MethodNotAllowed { .. } => ("invalid_request_error", "method_not_allowed"),
            ProxyError::TooLarge { .. } => ("invalid_request_error", "request_too_large"),
            ProxyError::BadBody(_) | ProxyError::ClientBody(_) => ("invalid_request_error", "invalid_body"),
            ProxyError::Classify(_) => ("invalid_request_error", "invalid_modality"),
            ProxyError::NoRoute { .. } => ("server_error", "no_route"),
            ProxyError::Draining => ("server_error", "draining"),
            ProxyError::UpstreamUnavailable { .. } => ("server_error", "upstream_unavailable"),
            ProxyError::UpstreamTimeout { .. } => ("server_error", "upstream_timeout"),
        }
    }

    /// The OpenAI-shaped response for this error.
    pub fn response(&self, request_id: &HeaderValue) -> Response<RespBody> {
        let (kind, code) = self.kind();
        let mut resp = json_response(self.status(), &error_body(&self.to_string(), kind, code));
        let headers = resp.headers_mut();
        headers.insert(X_REQUEST_ID, request_id.clone());
        // The SDKs retry 5xx by default; a 4xx of ours will fail the same way again.
        let retry = if self.status().is_server_error() { "true" } else { "false" };
        headers.insert("x-should-retry", HeaderValue::from_static(retry));
        if matches!(self, ProxyError::Draining) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// `{"error":{"message","type","param","code"}}`.
pub fn error_body(message: &str, kind: &str, code: &str) -> serde_json::Value {
    serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// A JSON response with a complete body.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<RespBody> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut resp = Response::new(super::full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
