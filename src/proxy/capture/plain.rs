//! The usual answers (a chat or completion answer's plain text, an embeddings answer's rows) read from raw fields without a value tree; anything else is left to the value reading.

use std::borrow::Cow;

use serde_json::Value;

use super::Fields;
use crate::proxy::json;

/// A plain answer's text (if any) and raw `usage` (if any).
type Plain<'a> = (Option<Cow<'a, str>>, Option<&'a [u8]>);

/// An embeddings answer's rows in index order and raw `usage` (if any).
type Rows<'a> = (Vec<Vec<f32>>, Option<&'a [u8]>);

/// The fields of a choice read here, in this order.
const CHOICE: [&[u8]; 3] = [b"index", b"message", b"text"];
/// The fields of a message read here, in this order.
const MESSAGE: [&[u8]; 3] = [b"content", b"tool_calls", b"function_call"];

/// What `Capture::absorb_body` would take from a body whose top-level fields are these
/// (`[error, usage, choices, output, output_text, object, text, data]`): the chosen choice's
/// text (if any) and the raw `usage` value. Unless the whole body was checked, every field the
/// value reading would parse is checked to be JSON first (a malformed one makes that reading
/// fail, so it must here too); a repeated key counts its last value, as in the value reading's
/// maps. None when the body is not of this shape (choices that are not an array of objects, a
/// message that is not an object, tool calls, content parts, an error, embeddings); the caller
/// then reads values.
pub(super) fn read<'a>(fields: &Fields<'a>) -> Option<Plain<'a>> {
    let [error, usage, choices, output, output_text, object, text, data] = fields.raw;
    if error.is_some_and(|e| e != b"null") || data.is_some() {
        return None;
    }
    let choices = choices?;
    if !choices.starts_with(b"[")
        || !fields.checked()
            && ![Some(choices), usage, output, output_text, object, text].into_iter().flatten().all(json::valid)
    {
        return None;
    }
    let mut chosen = None;
    for (pos, choice) in fields.items(choices, CHOICE).enumerate() {
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
            let [content, tool_calls, function_call] = fields.object(raw, MESSAGE)?;
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

/// What `Capture::absorb_body` would take from an embeddings answer with these top-level
/// fields (as for [`read`]) when the whole body was checked: the rows of `data` and the raw
/// `usage` value. A row given as an array of numbers has its numbers from the pass that checked
/// the body (each the value reading's f64 made an f32), one given as base64 is decoded; elements without an
/// embedding are skipped, as there. None when the body was not checked or is not of this shape
/// (an error, choices, output or text besides the data, a row array holding anything but
/// numbers); the caller then reads values.
pub(super) fn embeddings<'a>(fields: &Fields<'a>) -> Option<Rows<'a>> {
    let [error, usage, choices, output, output_text, object, text, data] = fields.raw;
    let data = data?;
    let others_absent = [choices, output, output_text, text].iter().all(Option::is_none);
    // `object` is compared as written: the caller's scan refuses bodies with `\u` escapes.
    if !fields.checked()
        || !others_absent
        || error.is_some_and(|e| e != b"null")
        || object == Some(br#""response""#)
        || !data.starts_with(b"[")
    {
        return None;
    }
    let mut rows = Vec::new();
    for (pos, item) in fields.items(data, [b"index", b"embedding"]).enumerate() {
        let Some([index, Some(embedding)]) = item else { continue };
        let row = match embedding.first() {
            Some(b'[') => fields.numbers(embedding)?.to_vec(),
            Some(b'"') => match string(embedding)?.and_then(|b64| super::base64_row(&b64)) {
                Some(row) => row,
                None => continue,
            },
            _ => continue,
        };
        rows.push((index.and_then(index_of).unwrap_or(pos as u64), row));
    }
    rows.sort_by_key(|(index, _)| *index);
    Some((rows.into_iter().map(|(_, row)| row).collect(), usage))
}

/// A choice's `index` as `Value::as_u64` reads it.
fn index_of(raw: &[u8]) -> Option<u64> {
    if !raw.is_empty() && raw.iter().all(u8::is_ascii_digit) {
        return std::str::from_utf8(raw).ok()?.parse().ok();
    }
    serde_json::from_slice::<Value>(raw).ok()?.as_u64()
}

/// `Some(Some(text))` for a JSON string, `Some(None)` for any other value (which adds no text).
/// `raw` has been checked to be JSON, so a string without a backslash is its own text.
fn string(raw: &[u8]) -> Option<Option<Cow<'_, str>>> {
    if !raw.starts_with(b"\"") {
        return Some(None);
    }
    if let Some(inner) =
        raw.get(1..raw.len() - 1).filter(|t| raw.ends_with(b"\"") && memchr::memchr(b'\\', t).is_none())
    {
        return Some(Some(Cow::Borrowed(std::str::from_utf8(inner).ok()?)));
    }
    let text = serde_json::from_slice::<&str>(raw)
        .map(Cow::Borrowed)
        .or_else(|_| serde_json::from_slice::<String>(raw).map(Cow::Owned));
    Some(Some(text.ok()?))
}
