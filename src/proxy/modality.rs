//! Which modality a request is: a pure function of its path, override header and body.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::scan;

/// The kinds of traffic a route can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Modality {
    Text,
    Vision,
    Audio,
    Speech,
    Embeddings,
    Image,
}

impl Modality {
    pub const ALL: [Modality; 6] =
        [Modality::Text, Modality::Vision, Modality::Audio, Modality::Speech, Modality::Embeddings, Modality::Image];

    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Vision => "vision",
            Modality::Audio => "audio",
            Modality::Speech => "speech",
            Modality::Embeddings => "embeddings",
            Modality::Image => "image",
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Modality {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Modality::ALL.into_iter().find(|m| m.as_str() == s.trim()).ok_or_else(|| {
            format!("unknown modality `{s}` (expected text, vision, audio, speech, embeddings or image)")
        })
    }
}

/// The inference endpoints the router serves, by path under `/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Responses,
    AudioTranscriptions,
    AudioTranslations,
    AudioSpeech,
    Embeddings,
    ImageGenerations,
    ImageEdits,
    ImageVariations,
}

impl Endpoint {
    pub const ALL: [Endpoint; 10] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Responses,
        Endpoint::AudioTranscriptions,
        Endpoint::AudioTranslations,
        Endpoint::AudioSpeech,
        Endpoint::Embeddings,
        Endpoint::ImageGenerations,
        Endpoint::ImageEdits,
        Endpoint::ImageVariations,
    ];

    /// The path after `/v1`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Responses => "/responses",
            Endpoint::AudioTranscriptions => "/audio/transcriptions",
            Endpoint::AudioTranslations => "/audio/translations",
            Endpoint::AudioSpeech => "/audio/speech",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::ImageGenerations => "/images/generations",
            Endpoint::ImageEdits => "/images/edits",
            Endpoint::ImageVariations => "/images/variations",
        }
    }

    /// The endpoint for a full request path such as `/v1/chat/completions`.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        let rest = path.strip_prefix("/v1")?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        Endpoint::ALL.into_iter().find(|e| e.path() == rest)
    }

    /// Whether the body is multipart/form-data rather than JSON.
    pub fn is_multipart(self) -> bool {
        matches!(
            self,
            Endpoint::AudioTranscriptions
                | Endpoint::AudioTranslations
                | Endpoint::ImageEdits
                | Endpoint::ImageVariations
        )
    }

    /// Whether the body's content decides between text, vision and audio.
    fn is_conversational(self) -> bool {
        matches!(self, Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Responses)
    }

    /// The modality that the path alone decides, if it does.
    fn fixed(self) -> Option<Modality> {
        match self {
            Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Responses => None,
            Endpoint::AudioTranscriptions | Endpoint::AudioTranslations => Some(Modality::Audio),
            Endpoint::AudioSpeech => Some(Modality::Speech),
            Endpoint::Embeddings => Some(Modality::Embeddings),
            Endpoint::ImageGenerations | Endpoint::ImageEdits | Endpoint::ImageVariations => Some(Modality::Image),
        }
    }
}

/// Why a request could not be classified; the client's fault, so a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("invalid x-shadowroute-modality header: {0}")]
    BadOverride(String),
    #[error("x-shadowroute-modality `{modality}` does not fit {path}")]
    OverrideMismatch { modality: Modality, path: &'static str },
}

/// Classifies a request. `parts` is what its content parts carry (see [`scan_parts`]; the
/// default for bodies without any). Audio outranks vision, vision outranks text; the override
/// header may pick any of the modalities the endpoint can carry.
pub fn classify(endpoint: Endpoint, override_header: Option<&str>, parts: Seen) -> Result<Modality, ClassifyError> {
    if let Some(raw) = override_header {
        let modality: Modality = raw.parse().map_err(ClassifyError::BadOverride)?;
        let fits = match endpoint.fixed() {
            Some(fixed) => fixed == modality,
            None => matches!(modality, Modality::Text | Modality::Vision | Modality::Audio),
        };
        if !fits {
            return Err(ClassifyError::OverrideMismatch { modality, path: endpoint.path() });
        }
        return Ok(modality);
    }
    if let Some(fixed) = endpoint.fixed() {
        return Ok(fixed);
    }
    debug_assert!(endpoint.is_conversational());
    Ok(if parts.audio {
        Modality::Audio
    } else if parts.image {
        Modality::Vision
    } else {
        Modality::Text
    })
}

/// Which media a conversational request's content parts carry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub image: bool,
    pub audio: bool,
}

/// The body field whose content parts decide the modality of `endpoint`, if any.
pub fn parts_field(endpoint: Endpoint) -> Option<&'static str> {
    match endpoint {
        Endpoint::ChatCompletions => Some("messages"),
        Endpoint::Responses => Some("input"),
        _ => None,
    }
}

/// Scans the raw JSON of the [`parts_field`] for media parts: chat `messages` carry parts in
/// their `content`; Responses `input` items are parts themselves or messages with parts.
/// Everything is borrowed from the body (an inline image is never copied) unless the field
/// holds a `\u` escape; shapes that are not parts are ignored, and a field without a quoted
/// part word is not parsed at all (so a part type spelled with escapes is not seen, nor a key
/// spelled with escapes in a field serde_json cannot read into a value tree).
pub fn scan_parts(endpoint: Endpoint, raw: &[u8]) -> Seen {
    let mut seen = Seen::default();
    if !has_part_word(raw) {
        return seen;
    }
    // A `\u` escape could spell a key or a part word differently: such a field is read by
    // serde_json and written back out without those escapes before the scan. One a value tree
    // refuses (a lone surrogate, which clients that cut a string inside an emoji send, or
    // nesting past serde's limit) is scanned as it is.
    let unescaped;
    let raw = match scan::has_unicode_escape(raw).then(|| serde_json::from_slice::<Value>(raw).ok()).flatten() {
        Some(value) => {
            unescaped = value.to_string();
            unescaped.as_bytes()
        }
        None => raw,
    };
    for item in scan::element_fields(raw, PART_KEYS).flatten() {
        let fields = PartFields::from(item);
        if endpoint == Endpoint::Responses {
            scan_part(&fields, &mut seen);
        }
        if matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Responses) {
            for part in fields.content.into_iter().flat_map(|c| scan::element_fields(c, PART_KEYS)).flatten() {
                scan_part(&PartFields::from(part), &mut seen);
            }
        }
    }
    seen
}

/// Content parts that may make a conversational request vision or audio; without any of
/// these quoted words in the parts field the request is text and is not parsed at all.
const PART_WORDS: &[&[u8]] =
    &[b"image_url", b"input_image", b"image", b"input_audio", b"audio", b"file", b"input_file"];

/// Whether `raw` holds one of [`PART_WORDS`] in quotes: one pass over its quote marks.
fn has_part_word(raw: &[u8]) -> bool {
    memchr::memchr_iter(b'"', raw).any(|i| {
        let rest = &raw[i + 1..];
        // Every part word starts with one of these letters; most quoted text does not.
        matches!(rest.first(), Some(b'i' | b'a' | b'f'))
            && PART_WORDS.iter().any(|w| rest.starts_with(w) && rest.get(w.len()) == Some(&b'"'))
    })
}

/// The fields of a part (or message) that classification reads, each still raw JSON, found
/// by the structural scan of a body already known to be valid JSON. A field that is present
/// but null is `Some("null")`, as a JSON reader would see it; a key that repeats counts its
/// last value, as in a JSON reader's map.
#[derive(Default)]
struct PartFields<'a> {
    kind: Option<&'a [u8]>,
    content: Option<&'a [u8]>,
    file: Option<&'a [u8]>,
    file_data: Option<&'a [u8]>,
    filename: Option<&'a [u8]>,
}

/// The keys of [`PartFields`], in its order.
const PART_KEYS: [&[u8]; 5] = [b"type", b"content", b"file", b"file_data", b"filename"];

impl<'a> From<[Option<&'a [u8]>; 5]> for PartFields<'a> {
    fn from([kind, content, file, file_data, filename]: [Option<&'a [u8]>; 5]) -> PartFields<'a> {
        PartFields { kind, content, file, file_data, filename }
    }
}

impl<'a> PartFields<'a> {
    /// The fields of an object; None for anything that is not one.
    fn of(raw: &'a [u8]) -> Option<PartFields<'a>> {
        scan::top_level_fields(raw, PART_KEYS).map(PartFields::from)
    }
}

/// A raw JSON string's text; None for other values.
fn text(raw: Option<&[u8]>) -> Option<Cow<'_, str>> {
    let raw = raw?;
    match raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")) {
        Some(inner) if !inner.contains(&b'\\') => std::str::from_utf8(inner).ok().map(Cow::Borrowed),
        _ => serde_json::from_slice::<String>(raw).ok().map(Cow::Owned),
    }
}

fn scan_part(part: &PartFields<'_>, seen: &mut Seen) {
    match text(part.kind).as_deref() {
        Some("image_url" | "input_image" | "image") => seen.image = true,
        Some("input_audio" | "audio") => seen.audio = true,
        Some("file" | "input_file") if file_is_image(part) => seen.image = true,
        _ => {}
    }
}

/// A `file` part counts as an image when its data URL or file name says so.
fn file_is_image(part: &PartFields<'_>) -> bool {
    let nested;
    let file = match part.file {
        Some(raw) => {
            nested = PartFields::of(raw).unwrap_or_default();
            &nested
        }
        None => part,
    };
    let data = text(file.file_data).unwrap_or_default();
    let name = text(file.filename).unwrap_or_default().to_ascii_lowercase();
    data.starts_with("data:image/") || [".png", ".jpg", ".jpeg", ".gif", ".webp"].iter().any(|ext| name.ends_with(ext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Classifies a whole JSON body the way the request path does: the parts field's raw text, scanned.
    fn classify_body(e: Endpoint, header: Option<&str>, body: &Value) -> Result<Modality, ClassifyError> {
        let raw = parts_field(e).and_then(|f| body.get(f)).map(|v| v.to_string()).unwrap_or_default();
        classify(e, header, scan_parts(e, raw.as_bytes()))
    }

    /// The reading of parts over a JSON value tree that the scan replaced, kept as its oracle.
    fn oracle(e: Endpoint, body: &Value) -> Seen {
        fn part(p: &Value, seen: &mut Seen) {
            match p.get("type").and_then(Value::as_str) {
                Some("image_url" | "input_image" | "image") => seen.image = true,
                Some("input_audio" | "audio") => seen.audio = true,
                Some("file" | "input_file") => {
                    let file = p.get("file").unwrap_or(p);
                    let data = file.get("file_data").and_then(Value::as_str).unwrap_or("");
                    let name = file.get("filename").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
                    if data.starts_with("data:image/")
                        || [".png", ".jpg", ".jpeg", ".gif", ".webp"].iter().any(|x| name.ends_with(x))
                    {
                        seen.image = true;
                    }
                }
                _ => {}
            }
        }
        fn content(c: Option<&Value>, seen: &mut Seen) {
            for p in c.and_then(Value::as_array).into_iter().flatten() {
                part(p, seen);
            }
        }
        let mut seen = Seen::default();
        match e {
            Endpoint::ChatCompletions => {
                for m in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
                    content(m.get("content"), &mut seen);
                }
            }
            Endpoint::Responses => {
                for item in body.get("input").and_then(Value::as_array).into_iter().flatten() {
                    part(item, &mut seen);
                    content(item.get("content"), &mut seen);
                }
            }
            _ => {}
        }
        seen
    }

    fn chat(content: Value) -> Value {
        json!({"model": "x", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]})
    }

    #[test]
    fn paths_map_to_endpoints() {
        assert_eq!(Endpoint::from_path("/v1/chat/completions"), Some(Endpoint::ChatCompletions));
        assert_eq!(Endpoint::from_path("/v1/chat/completions/"), Some(Endpoint::ChatCompletions));
        assert_eq!(Endpoint::from_path("/v1/images/edits"), Some(Endpoint::ImageEdits));
        assert_eq!(Endpoint::from_path("/v2/chat/completions"), None);
        assert_eq!(Endpoint::from_path("/v1/unknown"), None);
        assert_eq!(Endpoint::from_path("/chat/completions"), None);
    }

    #[test]
    fn text_only_chat_completions_responses_are_text() {
        for e in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Responses] {
            let body =
                json!({"model": "x", "messages": [{"role": "user", "content": "hi"}], "prompt": "hi", "input": "hi"});
            assert_eq!(classify_body(e, None, &body), Ok(Modality::Text), "{e:?}");
        }
        let parts = chat(json!([{"type": "text", "text": "hi"}]));
        assert_eq!(classify_body(Endpoint::ChatCompletions, None, &parts), Ok(Modality::Text));
    }

    #[test]
    fn any_image_part_is_vision() {
        let url = chat(
            json!([{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]),
        );
        assert_eq!(classify_body(Endpoint::ChatCompletions, None, &url), Ok(Modality::Vision));
        let file = chat(json!([{"type": "file", "file": {"file_data": "data:image/png;base64,AAAA"}}]));
        assert_eq!(classify_body(Endpoint::ChatCompletions, None, &file), Ok(Modality::Vision));
        let pdf = chat(json!([{"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA"}}]));
        assert_eq!(classify_body(Endpoint::ChatCompletions, None, &pdf), Ok(Modality::Text));
        let responses = json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": "?"}, {"type": "input_image", "image_url": "https://x"}]}]});
        assert_eq!(classify_body(Endpoint::Responses, None, &responses), Ok(Modality::Vision));
    }

    #[test]
    fn audio_outranks_vision_outranks_text() {
        let both = chat(json!([
            {"type": "image_url", "image_url": {"url": "https://x"}},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
        ]));
        assert_eq!(classify_body(Endpoint::ChatCompletions, None, &both), Ok(Modality::Audio));
        let responses = json!({"input": [{"type": "input_audio", "input_audio": {"data": "AA"}}]});
        assert_eq!(classify_body(Endpoint::Responses, None, &responses), Ok(Modality::Audio));
    }

    #[test]
    fn keys_spelled_with_escapes_are_read_as_json_reads_them() {
        let raw = br#"[{"role": "user", "cont\u0065nt": [{"typ\u0065": "image_url", "image_url": {"url": "u"}}]}]"#;
        assert_eq!(scan_parts(Endpoint::ChatCompletions, raw), Seen { image: true, audio: false });
        let raw = br#"[{"type": "file", "file": {"filen\u0061me": "X.PNG", "a": "\"\\"}}]"#;
        assert_eq!(scan_parts(Endpoint::Responses, raw), Seen { image: true, audio: false });
        // A lone surrogate elsewhere in the field (a string cut inside an emoji): still vision.
        let raw = br#"[{"role": "user", "content": [{"type": "text", "text": "\ud83d"}, {"type": "image_url", "image_url": {"url": "u"}}]}]"#;
        assert_eq!(scan_parts(Endpoint::ChatCompletions, raw), Seen { image: true, audio: false });
        // Repeated keys: the last one counts, as in a JSON reader's map.
        let raw = br#"[{"content": [{"type": "input_audio", "type": "text"}]}]"#;
        assert_eq!(scan_parts(Endpoint::ChatCompletions, raw), Seen::default());
    }

    #[test]
    fn only_quoted_part_words_lead_to_a_scan() {
        for word in PART_WORDS {
            let w = std::str::from_utf8(word).unwrap();
            assert!(has_part_word(format!(r#"[{{"type": "{w}"}}]"#).as_bytes()), "{w}");
            assert!(!has_part_word(format!(r#"[{{"type": "{w}s"}}, "x{w}", {w}]"#).as_bytes()), "{w}");
        }
        assert!(!has_part_word(b"\"") && !has_part_word(b""));
    }

    #[test]
    fn fixed_paths() {
        let cases = [
            (Endpoint::AudioTranscriptions, Modality::Audio),
            (Endpoint::AudioTranslations, Modality::Audio),
            (Endpoint::AudioSpeech, Modality::Speech),
            (Endpoint::Embeddings, Modality::Embeddings),
            (Endpoint::ImageGenerations, Modality::Image),
            (Endpoint::ImageEdits, Modality::Image),
            (Endpoint::ImageVariations, Modality::Image),
        ];
        for (e, m) in cases {
            assert_eq!(classify(e, None, Seen::default()), Ok(m), "{e:?}");
        }
    }

    #[test]
    fn override_is_validated() {
        let body = chat(json!("hi"));
        assert_eq!(classify_body(Endpoint::ChatCompletions, Some("vision"), &body), Ok(Modality::Vision));
        assert!(matches!(
            classify_body(Endpoint::ChatCompletions, Some("pictures"), &body),
            Err(ClassifyError::BadOverride(_))
        ));
        assert!(matches!(
            classify_body(Endpoint::ChatCompletions, Some("image"), &body),
            Err(ClassifyError::OverrideMismatch { .. })
        ));
        assert!(matches!(
            classify(Endpoint::Embeddings, Some("text"), Seen::default()),
            Err(ClassifyError::OverrideMismatch { .. })
        ));
        assert_eq!(classify(Endpoint::Embeddings, Some("embeddings"), Seen::default()), Ok(Modality::Embeddings));
    }

    mod prop {
        use super::{classify_body, oracle};
        use crate::proxy::modality::*;
        use proptest::prelude::*;
        use serde_json::Value;

        fn arb_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                "[a-z_]{0,12}".prop_map(Value::String),
                prop_oneof![
                    Just("image_url"),
                    Just("input_audio"),
                    Just("file"),
                    Just("input_file"),
                    Just("text"),
                    Just("data:image/png;base64,AA"),
                    Just("x.PNG"),
                    Just("a\"b")
                ]
                .prop_map(|s| Value::String(s.into())),
            ];
            leaf.prop_recursive(5, 64, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("type".to_string()),
                            Just("content".to_string()),
                            Just("messages".to_string()),
                            Just("input".to_string()),
                            Just("file".to_string()),
                            Just("file_data".to_string()),
                            Just("filename".to_string()),
                            "[a-z]{1,6}"
                        ],
                        inner,
                        0..6
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn arbitrary_bodies_never_panic(body in arb_json(), idx in 0usize..10, header in proptest::option::of("[a-z]{0,10}")) {
                let e = Endpoint::ALL[idx];
                let _ = classify_body(e, header.as_deref(), &body);
            }

            /// The scan reads parts exactly as the value-tree reading did, on any body.
            #[test]
            fn the_scan_agrees_with_the_value_reading(inner in arb_json(), idx in 0usize..2) {
                let e = [Endpoint::ChatCompletions, Endpoint::Responses][idx];
                let body = serde_json::json!({"messages": inner.clone(), "input": inner});
                let raw = parts_field(e).and_then(|f| body.get(f)).map(|v| v.to_string()).unwrap_or_default();
                prop_assert_eq!(scan_parts(e, raw.as_bytes()), oracle(e, &body));
            }

            #[test]
            fn arbitrary_paths_never_panic(path in "\\PC{0,40}") {
                let _ = Endpoint::from_path(&path);
            }
        }
    }
}
