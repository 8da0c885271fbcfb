//! The client's request, read once under the body limit and parsed once, ready to be rewritten per model.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;
use http::HeaderValue;
use serde_json::value::RawValue;
use serde_json::Value;

use super::body::UpBody;
use super::error::ProxyError;
use super::headers::{Forwarded, X_REQUEST_ID};
use super::modality::{self, Endpoint, Modality};
use super::{headers, json, multipart};
use crate::raw_headers::RawHeaders;
use crate::server::{BodyError, ReqBody, Request};

/// The request id: the client's if it sent a sane one, otherwise a new unique one:
/// a random per-process prefix and a counter, written without allocating twice.
pub fn request_id(headers: &RawHeaders) -> HeaderValue {
    if let Some(v) = headers.get(X_REQUEST_ID.as_str()) {
        let ok = !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic());
        if let Some(v) = ok.then(|| HeaderValue::from_bytes(v).ok()).flatten() {
            return v;
        }
    }
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| RandomState::new().build_hasher().finish());
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 36];
    buf[..4].copy_from_slice(b"req_");
    hex(prefix, &mut buf[4..20]);
    hex(seq, &mut buf[20..36]);
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("req_unknown"))
}

/// `x` as 16 lowercase hex digits, a byte (two digits) at a time.
fn hex(x: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(x.to_be_bytes()) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// A JSON object kept as its top-level fields, each still raw JSON text in the request's own
/// body: the request path rewrites `model` and copies everything else through without
/// building a value tree or copying a field.
pub struct JsonObject {
    body: Bytes,
    fields: Vec<(Key, Range<usize>)>,
}

/// A top-level key: where it is in the body, or its unescaped text if it had escapes.
enum Key {
    At(Range<usize>),
    Unescaped(String),
}

impl JsonObject {
    fn parse(body: &Bytes) -> Result<JsonObject, String> {
        let mut fields = Vec::with_capacity(8);
        if json::object_fields(body, |k, v| fields.push((Key::At(k), v))) {
            return Ok(JsonObject { body: body.clone(), fields });
        }
        JsonObject::parse_with_serde(body)
    }

    /// serde_json's reading: the error message for a bad body, and what the one-pass reader leaves to it.
    fn parse_with_serde(body: &Bytes) -> Result<JsonObject, String> {
        let raw = serde_json::from_slice::<RawObject>(body).map_err(|e| e.to_string())?.0;
        // Borrowed slices of `body`: their offsets are where they start in it.
        let at = |s: &str| {
            let start = s.as_ptr() as usize - body.as_ptr() as usize;
            start..start + s.len()
        };
        let fields = raw
            .into_iter()
            .map(|(k, v)| {
                let key = match k {
                    Cow::Borrowed(k) => Key::At(at(k)),
                    Cow::Owned(k) => Key::Unescaped(k),
                };
                (key, at(v.get()))
            })
            .collect();
        Ok(JsonObject { body: body.clone(), fields })
    }

    fn key<'a>(&'a self, k: &'a Key) -> &'a [u8] {
        match k {
            Key::At(r) => &self.body[r.clone()],
            Key::Unescaped(s) => s.as_bytes(),
        }
    }

    /// The raw JSON text of a top-level field.
    pub fn raw(&self, key: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(k, _)| self.key(k) == key.as_bytes()).map(|(_, v)| &self.body[v.clone()])
    }

    /// A top-level field parsed into a value (for the background and the rare request that needs it).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.raw(key).and_then(|r| serde_json::from_slice(r).ok())
    }

    /// The body for `model`: the client's own bytes when its one `model` field already names
    /// `model` as plain text, otherwise the object rewritten ([`JsonObject::with_model`]).
    fn for_model(&self, model: &str) -> Bytes {
        let plain = !model.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
        let mut named = self.fields.iter().filter(|(k, _)| self.key(k) == b"model");
        if let (true, Some((Key::At(_), v)), None) = (plain, named.next(), named.next()) {
            let raw = &self.body[v.clone()];
            let says = raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")) == Some(model.as_bytes());
            if says {
                return self.body.clone();
            }
        }
        Bytes::from(self.with_model(model))
    }

    /// The object with `model` set to `model` (added first if absent).
    fn with_model(&self, model: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + model.len() + 16);
        out.extend_from_slice(b"{\"model\":");
        let _ = serde_json::to_writer(&mut out, model);
        for (k, v) in &self.fields {
            let key = self.key(k);
            if key != b"model" {
                out.push(b',');
                match k {
                    Key::At(r) => {
                        out.push(b'"');
                        out.extend_from_slice(&self.body[r.clone()]);
                        out.push(b'"');
                    }
                    Key::Unescaped(s) => {
                        let _ = serde_json::to_writer(&mut out, s);
                    }
                }
                out.push(b':');
                out.extend_from_slice(&self.body[v.clone()]);
            }
        }
        out.push(b'}');
        out
    }
}

/// Deserializes a JSON object into its fields in order, borrowed from the input, or fails if
/// the body is not an object.
struct RawObject<'de>(Vec<(Cow<'de, str>, &'de RawValue)>);

/// A key borrowed from the input unless it had escapes.
struct RawKey<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for RawKey<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawKey<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<RawKey<'de>, E> {
                Ok(RawKey(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawKey<'de>, E> {
                Ok(RawKey(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawObject<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<RawKey<'de>, &'de RawValue>()? {
                    fields.push((k.0, v));
                }
                Ok(RawObject(fields))
            }
        }
        d.deserialize_map(V)
    }
}

fn classify_json(
    endpoint: Endpoint,
    override_header: Option<&str>,
    obj: &JsonObject,
) -> Result<Modality, modality::ClassifyError> {
    let parts = modality::parts_field(endpoint)
        .and_then(|field| obj.raw(field))
        .map(|raw| modality::scan_parts(endpoint, raw))
        .unwrap_or_default();
    modality::classify(endpoint, override_header, parts)
}

/// How the body is understood.
pub enum Payload {
    Json(JsonObject),
    Multipart { boundary: String, parts: Vec<multipart::Part> },
}

/// A body the server read, under `limit`.
pub fn body_bytes(body: ReqBody, limit: u64) -> Result<Bytes, ProxyError> {
    match body {
        Ok(b) if b.len() as u64 <= limit => Ok(b),
        Ok(_) | Err(BodyError::TooLarge { .. }) => Err(ProxyError::TooLarge { limit }),
        Err(BodyError::Invalid(e)) => Err(ProxyError::ClientBody(e)),
    }
}

/// A client request after reading and classification.
pub struct ClientRequest {
    pub endpoint: Endpoint,
    pub modality: Modality,
    /// The client's header lines (credentials included: routing may match on them).
    pub headers: RawHeaders,
    /// The lines an upstream may see, sharing the same bytes.
    pub forwarded: Forwarded,
    pub query: Option<String>,
    pub body: Bytes,
    pub payload: Payload,
    /// Whether the client asked for a streamed (SSE) answer.
    pub stream: bool,
}

impl ClientRequest {
    /// Takes the body the server read (under `max_body`), parses it and classifies it.
    pub fn read(endpoint: Endpoint, req: Request, max_body: u64) -> Result<ClientRequest, ProxyError> {
        let Request { uri, headers, body, .. } = req;
        let body = body_bytes(body, max_body)?;
        let override_header = match headers.get("x-shadowroute-modality") {
            Some(v) => Some(
                RawHeaders::text(v).ok_or_else(|| ProxyError::BadBody("x-shadowroute-modality is not text".into()))?,
            ),
            None => None,
        };
        let (payload, stream, modality) = if endpoint.is_multipart() {
            let ct = headers.get_str("content-type").unwrap_or("");
            let boundary = multipart::boundary(ct).ok_or_else(|| {
                ProxyError::BadBody(format!("{} expects multipart/form-data with a boundary", endpoint.path()))
            })?;
            let found = multipart::parts(&body, &boundary).map_err(ProxyError::BadBody)?;
            let stream = multipart::text_field(&body, &found, "stream").is_some_and(|s| s.trim() == "true");
            let modality = modality::classify(endpoint, override_header, modality::Seen::default())?;
            (Payload::Multipart { boundary, parts: found }, stream, modality)
        } else {
            let obj = JsonObject::parse(&body).map_err(|e| {
                let what = if body.trim_ascii_start().starts_with(b"{") {
                    "invalid JSON"
                } else {
                    "the JSON body must be an object"
                };
                ProxyError::BadBody(format!("{what}: {e}"))
            })?;
            let stream = obj.raw("stream") == Some(b"true") || obj.raw("stream_format") == Some(b"\"sse\"");
            let modality = classify_json(endpoint, override_header, &obj)?;
            (Payload::Json(obj), stream, modality)
        };
        Ok(ClientRequest {
            endpoint,
            modality,
            forwarded: headers::forwarded(&headers),
            headers,
            query: uri.query().map(str::to_string),
            body,
            payload,
            stream,
        })
    }

    /// The body rewritten for an upstream: its `model` field set to `model`.
    pub fn body_for(&self, model: &str) -> UpBody {
        match &self.payload {
            Payload::Json(obj) => UpBody::new(vec![obj.for_model(model)]),
            Payload::Multipart { boundary, parts } => {
                UpBody::new(multipart::replace_field(&self.body, boundary, parts, "model", model))
            }
        }
    }

    /// The JSON body, if it is one.
    pub fn json(&self) -> Option<&JsonObject> {
        match &self.payload {
            Payload::Json(obj) => Some(obj),
            Payload::Multipart { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_static(body: &'static [u8]) -> Result<JsonObject, String> {
        JsonObject::parse(&Bytes::from_static(body))
    }

    #[test]
    fn model_is_rewritten_and_everything_else_kept() {
        let body = serde_json::json!({"model": "client-choice", "messages": [{"role": "user", "content": "hi \"there\""}], "temperature": 0.5});
        let obj = JsonObject::parse(&Bytes::from(body.to_string())).unwrap();
        let out: Value = serde_json::from_slice(&obj.with_model("gpt-x")).unwrap();
        assert_eq!(out["model"], "gpt-x");
        assert_eq!(out["messages"][0]["content"], "hi \"there\"");
        assert_eq!(out["temperature"], 0.5);
        let no_model = parse_static(br#"{"input": "x"}"#).unwrap();
        let out: Value = serde_json::from_slice(&no_model.with_model("emb")).unwrap();
        assert_eq!(out["model"], "emb");
        // Keys with escapes keep their meaning; an escaped `model` is still the model.
        let escaped = parse_static(br#"{"a\"b": 1, "mo\u0064el": "old", "n": [1]}"#).unwrap();
        let out: Value = serde_json::from_slice(&escaped.with_model("new")).unwrap();
        assert_eq!(out, serde_json::json!({"model": "new", "a\"b": 1, "n": [1]}));
        assert_eq!(escaped.raw("n"), Some(&b"[1]"[..]));
        assert!(parse_static(b"[1, 2]").is_err());
        // A body that already names the model goes as the client sent it; any other is rewritten.
        let body = br#"{ "messages": [], "model" : "gpt-x" }"#;
        let named = parse_static(body).unwrap();
        assert_eq!(&named.for_model("gpt-x")[..], &body[..]);
        assert_eq!(&named.for_model("gpt-y")[..], &named.with_model("gpt-y")[..]);
        for rewritten in [
            &br#"{"model": "gpt-x", "model": "gpt-x"}"#[..],
            br#"{"mo\u0064el": "gpt-x"}"#,
            br#"{"model": "gpt\u002dx"}"#,
            br#"{"model": ["gpt-x"]}"#,
            br#"{"messages": []}"#,
        ] {
            let obj = parse_static(rewritten).unwrap();
            assert_eq!(
                &obj.for_model("gpt-x")[..],
                &obj.with_model("gpt-x")[..],
                "{}",
                String::from_utf8_lossy(rewritten)
            );
        }
        let odd = parse_static(br#"{"model": "a\b"}"#).unwrap();
        assert_eq!(&odd.for_model("a\\b")[..], &odd.with_model("a\\b")[..]);
        assert!(parse_static(b"{broken").is_err());
    }

    #[test]
    fn only_requests_with_media_parts_are_parsed_deeper() {
        let vision = parse_static(
            br#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}"#,
        )
        .unwrap();
        assert_eq!(classify_json(Endpoint::ChatCompletions, None, &vision), Ok(Modality::Vision));
        let text =
            parse_static(br#"{"messages": [{"role": "user", "content": "what is an image_url field?"}]}"#).unwrap();
        assert_eq!(classify_json(Endpoint::ChatCompletions, None, &text), Ok(Modality::Text));
        let quoted =
            parse_static(br#"{"messages": [{"role": "user", "content": "the key \"image_url\" is JSON"}]}"#).unwrap();
        assert_eq!(classify_json(Endpoint::ChatCompletions, None, &quoted), Ok(Modality::Text));
    }

    #[test]
    fn request_ids_are_kept_or_made() {
        let none = RawHeaders::default();
        let made = request_id(&none);
        assert!(made.to_str().unwrap().starts_with("req_"));
        assert_ne!(made, request_id(&none));
        assert!(made.len() == 36 && made.as_bytes()[4..].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        let mut digits = [0u8; 16];
        hex(0x0123_4567_89ab_cdef, &mut digits);
        assert_eq!(&digits, b"0123456789abcdef");
        hex(u64::MAX - 1, &mut digits);
        assert_eq!(&digits, b"fffffffffffffffe");
        assert_eq!(request_id(&RawHeaders::from_pairs([("X-Request-Id", "abc-123")])), "abc-123");
        assert_ne!(request_id(&RawHeaders::from_pairs([("x-request-id", "has space")])), "has space");
    }

    /// A reading's fields as (key text, value text), or None if it refused the body.
    type Fields = Option<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Both readings of a body: the one-pass reader's and serde's.
    fn both(body: &[u8]) -> (Fields, Fields) {
        let body = Bytes::copy_from_slice(body);
        let mut fast = Vec::new();
        let accepted = json::object_fields(&body, |k, v| fast.push((body[k].to_vec(), body[v].to_vec())));
        let serde = JsonObject::parse_with_serde(&body)
            .ok()
            .map(|o| o.fields.iter().map(|(k, v)| (o.key(k).to_vec(), body[v.clone()].to_vec())).collect());
        (accepted.then_some(fast), serde)
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text = || proptest::string::string_regex("(.|[\\x00-\\x1f\"\\\\/é€😀]){0,12}").unwrap();
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(text(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Every object serde_json writes is read by the one-pass reader with serde's fields,
        /// unless a top-level key needed escapes (then it is serde's to read).
        #[test]
        fn one_pass_reader_agrees_with_serde_on_objects(
            fields in proptest::collection::vec((".{0,8}", arb_json()), 0..6),
            pretty in proptest::bool::ANY,
        ) {
            let mut text = String::from("{");
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 { text.push_str(if pretty { ",\n  " } else { "," }); }
                text.push_str(&Value::from(k.as_str()).to_string());
                text.push(':');
                text.push_str(&if pretty { serde_json::to_string_pretty(v).unwrap() } else { v.to_string() });
            }
            text.push('}');
            let (fast, serde) = both(text.as_bytes());
            proptest::prop_assert!(serde.is_some());
            proptest::prop_assert!(json::valid(text.as_bytes()), "{}", text);
            let escaped_key = fields.iter().any(|(k, _)| Value::from(k.as_str()).to_string().contains('\\'));
            if escaped_key {
                proptest::prop_assert!(fast.is_none() || fast == serde);
            } else {
                proptest::prop_assert_eq!(fast, serde, "{}", text);
            }
        }

        /// After a random edit, the reader never accepts what serde refuses, never reads other
        /// fields, and refuses what serde accepts only when a key may hold escapes.
        #[test]
        fn one_pass_reader_refuses_what_serde_refuses(
            v in arb_json(),
            at in proptest::num::usize::ANY,
            edit in 0u8..3,
            byte in proptest::sample::select(b"{}[]:,\"\\ \t\n0123456789-+.eEtrufalsn\x00\x01\x1f\x7f\xc3\xa9ux/".to_vec()),
        ) {
            let mut text = serde_json::json!({"model": "m", "v": v}).to_string().into_bytes();
            let at = at % (text.len() + 1);
            match edit {
                0 if at < text.len() => text[at] = byte,
                1 if at < text.len() => { text.remove(at); }
                _ => text.insert(at, byte),
            }
            let (fast, serde) = both(&text);
            if json::valid(&text) {
                let by_serde = serde_json::from_slice::<Value>(&text);
                proptest::prop_assert!(by_serde.is_ok(), "valid, but serde refuses: {}", String::from_utf8_lossy(&text));
            }
            match (&fast, &serde) {
                (Some(_), _) => proptest::prop_assert_eq!(&fast, &serde, "{}", String::from_utf8_lossy(&text)),
                // Only an escaped top-level key is left to serde at this depth.
                (None, Some(_)) => proptest::prop_assert!(text.contains(&b'\\'), "refused a body serde reads: {}", String::from_utf8_lossy(&text)),
                (None, None) => {}
            }
        }
    }
}
