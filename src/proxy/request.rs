//! The client's request, read once under the body limit and parsed once, ready to be rewritten per model.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::body::UpBody;
use super::error::ProxyError;
use super::modality::{self, Endpoint, Modality};
use super::{headers, multipart};

/// The request id: the client's if it sent a sane one, otherwise a new random one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get("x-request-id") {
        let ok = !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic());
        if ok {
            return v.clone();
        }
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    let a = h.finish();
    h.write_u64(a);
    let id = format!("req_{a:016x}{:016x}", h.finish());
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("req_unknown"))
}

/// How the body is understood.
pub enum Payload {
    Json(Map<String, Value>),
    Multipart { boundary: String, parts: Vec<multipart::Part> },
}

/// A client request after reading and classification.
pub struct ClientRequest {
    pub endpoint: Endpoint,
    pub modality: Modality,
    /// The client's headers (credentials included: routing may match on them; they are never forwarded).
    pub headers: HeaderMap,
    pub query: Option<String>,
    pub body: Bytes,
    pub payload: Payload,
    /// Whether the client asked for a streamed (SSE) answer.
    pub stream: bool,
}

impl ClientRequest {
    /// Reads the body under `max_body`, parses it and classifies it.
    pub async fn read(
        endpoint: Endpoint,
        parts: Parts,
        body: Incoming,
        max_body: u64,
    ) -> Result<ClientRequest, ProxyError> {
        let too_large = ProxyError::TooLarge { limit: max_body };
        let declared =
            parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_body) {
            return Err(too_large);
        }
        let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large),
            Err(e) => return Err(ProxyError::ClientBody(e.to_string())),
        };
        let override_header = match parts.headers.get("x-shadowroute-modality") {
            Some(v) => Some(v.to_str().map_err(|_| ProxyError::BadBody("x-shadowroute-modality is not text".into()))?),
            None => None,
        };
        let (payload, stream, modality) = if endpoint.is_multipart() {
            let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let boundary = multipart::boundary(ct).ok_or_else(|| {
                ProxyError::BadBody(format!("{} expects multipart/form-data with a boundary", endpoint.path()))
            })?;
            let found = multipart::parts(&body, &boundary).map_err(ProxyError::BadBody)?;
            let stream = multipart::text_field(&body, &found, "stream").is_some_and(|s| s.trim() == "true");
            let modality = modality::classify(endpoint, override_header, None)?;
            (Payload::Multipart { boundary, parts: found }, stream, modality)
        } else {
            let value: Value =
                serde_json::from_slice(&body).map_err(|e| ProxyError::BadBody(format!("invalid JSON: {e}")))?;
            let Value::Object(map) = value else {
                return Err(ProxyError::BadBody("the JSON body must be an object".into()));
            };
            let stream = map.get("stream").and_then(Value::as_bool).unwrap_or(false)
                || map.get("stream_format").and_then(Value::as_str) == Some("sse");
            let modality = modality::classify(endpoint, override_header, Some(&map))?;
            (Payload::Json(map), stream, modality)
        };
        Ok(ClientRequest {
            endpoint,
            modality,
            headers: parts.headers,
            query: parts.uri.query().map(str::to_string),
            body,
            payload,
            stream,
        })
    }

    /// The body rewritten for an upstream: its `model` field set to `model`.
    pub fn body_for(&self, model: &str) -> UpBody {
        match &self.payload {
            Payload::Json(map) => UpBody::new(vec![Bytes::from(json_with_model(map, model))]),
            Payload::Multipart { boundary, parts } => {
                UpBody::new(multipart::replace_field(&self.body, boundary, parts, "model", model))
            }
        }
    }

    /// The headers an upstream may see, without credentials or hop-by-hop headers.
    pub fn forward_headers(&self) -> HeaderMap {
        headers::upstream_request_headers(&self.headers)
    }

    /// The JSON body, if it is one.
    pub fn json(&self) -> Option<&Map<String, Value>> {
        match &self.payload {
            Payload::Json(map) => Some(map),
            Payload::Multipart { .. } => None,
        }
    }
}

/// Serializes the object with `model` replaced (or added), without cloning the tree.
fn json_with_model(map: &Map<String, Value>, model: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    let mut first = true;
    let mut put = |out: &mut Vec<u8>, key: &str, value: &dyn erased::Ser| {
        if !first {
            out.push(b',');
        }
        first = false;
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        value.write(out);
    };
    put(&mut out, "model", &model);
    for (k, v) in map {
        if k != "model" {
            put(&mut out, k, v);
        }
    }
    out.push(b'}');
    out
}

mod erased {
    /// A value that can write itself as JSON; lets one closure take strings and values.
    pub trait Ser {
        fn write(&self, out: &mut Vec<u8>);
    }
    impl<T: serde::Serialize + ?Sized> Ser for T {
        fn write(&self, out: &mut Vec<u8>) {
            let _ = serde_json::to_writer(out, self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_rewritten_and_everything_else_kept() {
        let Value::Object(map) = serde_json::json!({"model": "client-choice", "messages": [{"role": "user", "content": "hi \"there\""}], "temperature": 0.5})
        else {
            panic!()
        };
        let out: Value = serde_json::from_slice(&json_with_model(&map, "gpt-x")).unwrap();
        assert_eq!(out["model"], "gpt-x");
        assert_eq!(out["messages"][0]["content"], "hi \"there\"");
        assert_eq!(out["temperature"], 0.5);
        let Value::Object(no_model) = serde_json::json!({"input": "x"}) else { panic!() };
        let out: Value = serde_json::from_slice(&json_with_model(&no_model, "emb")).unwrap();
        assert_eq!(out["model"], "emb");
    }

    #[test]
    fn request_ids_are_kept_or_made() {
        let mut h = HeaderMap::new();
        let made = request_id(&h);
        assert!(made.to_str().unwrap().starts_with("req_"));
        assert_ne!(made, request_id(&h));
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
    }
}
