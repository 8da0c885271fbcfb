//! The usual chat or completion answer (plain text in its chosen choice) read without a value tree; anything else is left to the value reading.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// A field's raw JSON when present, `null` included (an `Option` would read `null` as absent).
#[derive(Default)]
struct Field<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|raw| Field(Some(raw)))
    }
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    index: Field<'a>,
    #[serde(default, borrow)]
    message: Field<'a>,
    #[serde(default, borrow)]
    text: Field<'a>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(default, borrow)]
    content: Field<'a>,
    #[serde(default, borrow)]
    tool_calls: Field<'a>,
    #[serde(default, borrow)]
    function_call: Field<'a>,
}

/// A plain answer's text (if any) and raw `usage` (if any).
type Plain<'a> = (Option<Cow<'a, str>>, Option<&'a [u8]>);

/// What `Capture::absorb_body` would take from a body whose top-level fields are these
/// (`[error, usage, choices, output, output_text, object, text, data]` as the scan found them):
/// the chosen choice's text (if any) and the raw `usage` value. None when the body is not of this
/// shape, or when serde would read it differently from a value tree (a repeated key, a type not
/// expected here, tool calls, content parts, an error, embeddings); the caller then reads values.
pub(super) fn read<'a>(fields: &[Option<&'a [u8]>; 8]) -> Option<Plain<'a>> {
    let [error, usage, choices, output, output_text, object, text, data] = *fields;
    if error.is_some_and(|e| e != b"null") || data.is_some() {
        return None;
    }
    // Fields the value reading would parse (and so reject if malformed) but not use here.
    for unused in [output, output_text, object, text].into_iter().flatten() {
        serde_json::from_slice::<IgnoredAny>(unused).ok()?;
    }
    // Checked as the value reading would (it must be JSON), then read as raw text.
    if let Some(u) = usage {
        serde_json::from_slice::<IgnoredAny>(u).ok()?;
    }
    let choices: Vec<Choice<'a>> = serde_json::from_slice(choices?).ok()?;
    let chosen = choices
        .iter()
        .enumerate()
        .find(|(pos, c)| c.index.0.and_then(index).unwrap_or(*pos as u64) == 0)
        .map(|(_, c)| c);
    let Some(choice) = chosen else { return Some((None, usage)) };
    let text = match choice.message.0 {
        Some(raw) => {
            let msg: Message<'a> = serde_json::from_str(raw.get()).ok()?;
            if msg.tool_calls.0.is_some() || msg.function_call.0.is_some() {
                return None;
            }
            match msg.content.0 {
                Some(c) if c.get().starts_with('[') => return None,
                Some(c) => string(c)?,
                None => None,
            }
        }
        None => match choice.text.0 {
            Some(t) => string(t)?,
            None => None,
        },
    };
    Some((text, usage))
}

/// A choice's `index` as `Value::as_u64` reads it.
fn index(raw: &RawValue) -> Option<u64> {
    let s = raw.get();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    serde_json::from_str::<Value>(s).ok()?.as_u64()
}

/// `Some(Some(text))` for a JSON string, `Some(None)` for any other value (which adds no text).
fn string(raw: &RawValue) -> Option<Option<Cow<'_, str>>> {
    let s = raw.get();
    if !s.starts_with('"') {
        return Some(None);
    }
    let text = serde_json::from_str::<&str>(s)
        .map(Cow::Borrowed)
        .or_else(|_| serde_json::from_str::<String>(s).map(Cow::Owned));
    Some(Some(text.ok()?))
}
