//! The usual chat or completion answer (plain text in its chosen choice) read from raw fields without a value tree; anything else is left to the value reading.

use std::borrow::Cow;

use serde_json::Value;

use crate::proxy::{json, scan};

/// A plain answer's text (if any) and raw `usage` (if any).
type Plain<'a> = (Option<Cow<'a, str>>, Option<&'a [u8]>);

/// The fields of a choice read here, in this order.
const CHOICE: [&[u8]; 3] = [b"index", b"message", b"text"];
/// The fields of a message read here, in this order.
const MESSAGE: [&[u8]; 3] = [b"content", b"tool_calls", b"function_call"];

/// What `Capture::absorb_body` would take from a body whose top-level fields are these
/// (`[error, usage, choices, output, output_text, object, text, data]` as the scan found them):
/// the chosen choice's text (if any) and the raw `usage` value. Every field the value reading
/// would parse is checked to be JSON first (a malformed one makes that reading fail, so it must
/// here too); a repeated key counts its last value, as in the value reading's maps. None when
/// the body is not of this shape (choices that are not an array of objects, a message that is
/// not an object, tool calls, content parts, an error, embeddings); the caller then reads values.
pub(super) fn read<'a>(fields: &[Option<&'a [u8]>; 8]) -> Option<Plain<'a>> {
    let [error, usage, choices, output, output_text, object, text, data] = *fields;
    if error.is_some_and(|e| e != b"null") || data.is_some() {
        return None;
    }
    let choices = choices?;
    if !choices.starts_with(b"[")
        || ![Some(choices), usage, output, output_text, object, text].into_iter().flatten().all(json::valid)
    {
        return None;
    }
    let mut chosen = None;
    for (pos, choice) in scan::element_fields(choices, CHOICE).enumerate() {
        let [index, message, text] = choice?;
        if index.and_then(index_of).unwrap_or(pos as u64) == 0 {
            chosen = Some((message, text));
            break;
        }
    }
    let Some((message, choice_text)) = chosen else { return Some((None, usage)) };
    let text = match message {
        Some(raw) => {
            if !raw.starts_with(b"{") {
                return None;
            }
            let [content, tool_calls, function_call] = scan::top_level_fields(raw, MESSAGE)?;
            if tool_calls.is_some() || function_call.is_some() {
                return None;
            }
            match content {
                Some(c) if c.starts_with(b"[") => return None,
                Some(c) => string(c)?,
                None => None,
            }
        }
        None => match choice_text {
            Some(t) => string(t)?,
            None => None,
        },
    };
    Some((text, usage))
}

/// A choice's `index` as `Value::as_u64` reads it.
fn index_of(raw: &[u8]) -> Option<u64> {
    if !raw.is_empty() && raw.iter().all(u8::is_ascii_digit) {
        return std::str::from_utf8(raw).ok()?.parse().ok();
    }
    serde_json::from_slice::<Value>(raw).ok()?.as_u64()
}

/// `Some(Some(text))` for a JSON string, `Some(None)` for any other value (which adds no text).
fn string(raw: &[u8]) -> Option<Option<Cow<'_, str>>> {
    if !raw.starts_with(b"\"") {
        return Some(None);
    }
    let text = serde_json::from_slice::<&str>(raw)
        .map(Cow::Borrowed)
        .or_else(|_| serde_json::from_slice::<String>(raw).map(Cow::Owned));
    Some(Some(text.ok()?))
}
