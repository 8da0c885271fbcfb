//! Which modality a request is: a pure function of its path, override header and body.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

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

/// Classifies a request. `body` is the parsed JSON object (None for multipart bodies).
/// Audio outranks vision, vision outranks text; the override header may pick any of
/// the modalities the endpoint can carry.
pub fn classify(
    endpoint: Endpoint,
    override_header: Option<&str>,
    body: Option<&Map<String, Value>>,
) -> Result<Modality, ClassifyError> {
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
    let mut seen = Seen::default();
    if let Some(body) = body {
        match endpoint {
            Endpoint::ChatCompletions => {
                for message in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
                    scan_content(message.get("content"), &mut seen);
                }
            }
            Endpoint::Responses => scan_responses_input(body.get("input"), &mut seen),
            _ => {}
        }
    }
    Ok(if seen.audio {
        Modality::Audio
    } else if seen.image {
        Modality::Vision
    } else {
        Modality::Text
    })
}

#[derive(Default)]
struct Seen {
    image: bool,
    audio: bool,
}

/// Content is a string (text) or a list of typed parts.
fn scan_content(content: Option<&Value>, seen: &mut Seen) {
    for part in content.and_then(Value::as_array).into_iter().flatten() {
        scan_part(part, seen);
    }
}

fn scan_part(part: &Value, seen: &mut Seen) {
    match part.get("type").and_then(Value::as_str) {
        Some("image_url" | "input_image" | "image") => seen.image = true,
        Some("input_audio" | "audio") => seen.audio = true,
        Some("file" | "input_file") if file_is_image(part) => {
            seen.image = true;
        }
        _ => {}
    }
}

/// A `file` part counts as an image when its data URL or file name says so.
fn file_is_image(part: &Value) -> bool {
    let file = part.get("file").unwrap_or(part);
    let data = file.get("file_data").and_then(Value::as_str).unwrap_or("");
    let name = file.get("filename").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
    data.starts_with("data:image/") || [".png", ".jpg", ".jpeg", ".gif", ".webp"].iter().any(|ext| name.ends_with(ext))
}

/// Responses API `input`: a string, or items that are parts or messages with parts.
fn scan_responses_input(input: Option<&Value>, seen: &mut Seen) {
    for item in input.and_then(Value::as_array).into_iter().flatten() {
        scan_part(item, seen);
        scan_content(item.get("content"), seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            assert_eq!(classify(e, None, body.as_object()), Ok(Modality::Text), "{e:?}");
        }
        let parts = chat(json!([{"type": "text", "text": "hi"}]));
        assert_eq!(classify(Endpoint::ChatCompletions, None, parts.as_object()), Ok(Modality::Text));
    }

    #[test]
    fn any_image_part_is_vision() {
        let url = chat(
            json!([{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]),
        );
        assert_eq!(classify(Endpoint::ChatCompletions, None, url.as_object()), Ok(Modality::Vision));
        let file = chat(json!([{"type": "file", "file": {"file_data": "data:image/png;base64,AAAA"}}]));
        assert_eq!(classify(Endpoint::ChatCompletions, None, file.as_object()), Ok(Modality::Vision));
        let pdf = chat(json!([{"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA"}}]));
        assert_eq!(classify(Endpoint::ChatCompletions, None, pdf.as_object()), Ok(Modality::Text));
        let responses = json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": "?"}, {"type": "input_image", "image_url": "https://x"}]}]});
        assert_eq!(classify(Endpoint::Responses, None, responses.as_object()), Ok(Modality::Vision));
    }

    #[test]
    fn audio_outranks_vision_outranks_text() {
        let both = chat(json!([
            {"type": "image_url", "image_url": {"url": "https://x"}},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
        ]));
        assert_eq!(classify(Endpoint::ChatCompletions, None, both.as_object()), Ok(Modality::Audio));
        let responses = json!({"input": [{"type": "input_audio", "input_audio": {"data": "AA"}}]});
        assert_eq!(classify(Endpoint::Responses, None, responses.as_object()), Ok(Modality::Audio));
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
            assert_eq!(classify(e, None, None), Ok(m), "{e:?}");
        }
    }

    #[test]
    fn override_is_validated() {
        let body = chat(json!("hi"));
        assert_eq!(classify(Endpoint::ChatCompletions, Some("vision"), body.as_object()), Ok(Modality::Vision));
        assert!(matches!(
            classify(Endpoint::ChatCompletions, Some("pictures"), body.as_object()),
            Err(ClassifyError::BadOverride(_))
        ));
        assert!(matches!(
            classify(Endpoint::ChatCompletions, Some("image"), body.as_object()),
            Err(ClassifyError::OverrideMismatch { .. })
        ));
        assert!(matches!(
            classify(Endpoint::Embeddings, Some("text"), None),
            Err(ClassifyError::OverrideMismatch { .. })
        ));
        assert_eq!(classify(Endpoint::Embeddings, Some("embeddings"), None), Ok(Modality::Embeddings));
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn arb_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                "[a-z_]{0,12}".prop_map(Value::String),
                prop_oneof![Just("image_url"), Just("input_audio"), Just("file"), Just("text")]
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
                let _ = classify(e, header.as_deref(), body.as_object());
            }

            #[test]
            fn arbitrary_paths_never_panic(path in "\\PC{0,40}") {
                let _ = Endpoint::from_path(&path);
            }
        }
    }
}
