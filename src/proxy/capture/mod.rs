//! Bounded, incremental capture of an upstream response body: usage, final content, tool calls, embeddings.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::mem;

use bytes::Bytes;
use serde_json::Value;

use super::{json, scan};

/// Floor for the SSE line and event buffers. Usage rides in the last event and some terminal
/// events (`response.completed`) echo the whole response, so a tiny `cap` must not starve them.
const MIN_LINE_CAP: usize = 1 << 20;
/// A hostile stream could open tool calls without end; each costs memory even when empty.
const MAX_TOOL_CALLS: usize = 128;
/// Error messages only feed logs and metrics labels; more than this is noise.
const MAX_ERROR_LEN: usize = 4096;
const MAX_EVENT_NAME_LEN: usize = 64;
const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// How the body is framed, which decides how it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Sse,
    Json,
    Other,
}

impl Format {
    /// `text/event-stream` is SSE; `application/json` and `application/*+json` are JSON.
    pub fn from_content_type(ct: Option<&[u8]>) -> Format {
        let Some(ct) = ct else { return Format::Other };
        let mime = ct.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
        let is = |m: &[u8]| mime.eq_ignore_ascii_case(m);
        let json_suffix = mime.len() >= b"application/+json".len()
            && mime[..12].eq_ignore_ascii_case(b"application/")
            && mime[mime.len() - 5..].eq_ignore_ascii_case(b"+json");
        if is(b"text/event-stream") {
            Format::Sse
        } else if is(b"application/json") || json_suffix {
            Format::Json
        } else {
            Format::Other
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A tool call as captured, in the form the comparators read.
pub use crate::compare::ToolCall;

/// What a finished (or aborted) body yielded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Captured {
    /// Final assistant text, transcript or completion text.
    pub text: String,
    /// In index order, arguments concatenated from stream fragments.
    pub tool_calls: Vec<ToolCall>,
    pub usage: Option<Usage>,
    /// Embeddings responses only, in index order.
    pub embeddings: Vec<Vec<f32>>,
    /// The message of an error object seen in the body or stream.
    pub error: Option<String>,
    /// Something was dropped to stay within the memory budget; content may be partial.
    pub truncated: bool,
    /// Total body bytes seen.
    pub bytes: u64,
    /// SSE data events seen, `[DONE]` included; 0 for non-SSE bodies.
    pub events: u64,
}

/// Fed the body frame by frame while it is relayed to the client.
#[derive(Debug)]
pub struct Capture {
    format: Format,
    /// Budget for the raw JSON body, and separately for assembled text plus tool calls.
    cap: usize,
    line_cap: usize,
    bytes: u64,
    events: u64,
    truncated: bool,
    /// Non-streamed body, parsed only at the end because JSON cannot be read in pieces: held as
    /// the frames it came in (shared, not copied), `held` bytes in all, and gathered into one
    /// buffer at the end only when it came in several and the end alone does not answer. After
    /// the first, a frame under [`SHARE_FROM`] is copied into `small` instead (a shared frame
    /// keeps its whole read buffer alive), which joins `rest` before the next shared frame.
    first: Option<Bytes>,
    rest: Vec<Bytes>,
    small: Vec<u8>,
    held: usize,
    /// The body broke off before its end (see [`Capture::cut_short`]).
    cut: bool,
    /// The incomplete SSE line carried over between chunks.
    line: Vec<u8>,
    /// Set while skipping the rest of a line that outgrew `line_cap`.
    line_overflow: bool,
    at_start: bool,
    /// `data:` lines of the pending event, joined with `\n`.
    data: Vec<u8>,
    data_lines: usize,
    data_overflow: bool,
    event_name: String,
    done: bool,
    text: String,
    tool_calls: BTreeMap<u64, ToolCall>,
    /// Bytes held in `text` and `tool_calls`, checked against `cap`.
    assembled: usize,
    usage: Option<Usage>,
    embeddings: Vec<Vec<f32>>,
    error: Option<String>,
    /// Only usage is wanted (metering, no comparison): skip everything else cheaply.
    usage_only: bool,
}

/// The token counts of a `usage` object, read without building a map.
#[derive(serde::Deserialize)]
struct UsageFields {
    prompt_tokens: Option<serde_json::Number>,
    input_tokens: Option<serde_json::Number>,
    completion_tokens: Option<serde_json::Number>,
    output_tokens: Option<serde_json::Number>,
}

impl UsageFields {
    fn usage(&self) -> Option<Usage> {
        let input = count(&self.prompt_tokens).or_else(|| count(&self.input_tokens));
        let output = count(&self.completion_tokens).or_else(|| count(&self.output_tokens));
        usage_from(input, output)
    }
}

/// The token counts of a raw `usage` object: plain whole numbers by the structural scan, anything
/// else (null, fractions, exponents, escapes, a shape the scan cannot walk) by serde, so both
/// read the same counts. Like the scan of the body around it, this does not check fields it does
/// not read, and a repeated key counts its last value where serde would reject the object.
fn usage_of(raw: &[u8]) -> Option<Usage> {
    let scanned = if memchr::memchr(b'\\', raw).is_none() { scan::top_level_fields(raw, USAGE) } else { None };
    usage_from_fields(raw, scanned)
}

/// The token fields of a `usage` object.
const USAGE: [&[u8]; 4] = [b"prompt_tokens", b"input_tokens", b"completion_tokens", b"output_tokens"];

/// The token counts of the raw `usage` object `raw` from its `USAGE` fields as a walk found them
/// (None: not walked), as [`usage_of`] describes.
fn usage_from_fields(raw: &[u8], found: Option<[Option<&[u8]>; 4]>) -> Option<Usage> {
    if let Some(found) = found {
        let counts = found.map(|v| v.map(whole));
        if counts.iter().all(|c| *c != Some(None)) {
            let [prompt, input, completion, output] = counts.map(Option::flatten);
            return usage_from(prompt.or(input), completion.or(output));
        }
    }
    serde_json::from_slice::<UsageFields>(raw).ok()?.usage()
}

/// A JSON whole number of at most 18 digits (no sign, no leading zero), so it fits a u64.
fn whole(raw: &[u8]) -> Option<u64> {
    let ok =
        !raw.is_empty() && raw.len() <= 18 && raw.iter().all(u8::is_ascii_digit) && (raw[0] != b'0' || raw.len() == 1);
    ok.then(|| raw.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn usage_from(input: Option<u64>, output: Option<u64>) -> Option<Usage> {
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(Usage { input_tokens: input.unwrap_or(0), output_tokens: output.unwrap_or(0) })
}

/// A token count: a whole number, or a finite non-negative one truncated.
fn count(n: &Option<serde_json::Number>) -> Option<u64> {
    let n = n.as_ref()?;
    n.as_u64().or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
}

impl Capture {
    /// Whether only the usage is read (see [`Capture::usage_only`]).
    pub fn is_usage_only(&self) -> bool {
        self.usage_only
    }

    /// A capture for metering, which needs only the usage (a JSON body's `usage` is all it
    /// reads): the request path's default, when the response is not compared with anything.
    pub fn usage_only(format: Format, cap: usize) -> Capture {
        Capture { usage_only: true, ..Capture::new(format, cap) }
    }

    pub fn new(format: Format, cap: usize) -> Capture {
        Capture {
            format,
            cap,
            line_cap: cap.max(MIN_LINE_CAP),
            bytes: 0,
            events: 0,
            truncated: false,
            first: None,
            rest: Vec::new(),
            small: Vec::new(),
            held: 0,
            cut: false,
            line: Vec::new(),
            line_overflow: false,
            at_start: true,
            data: Vec::new(),
            data_lines: 0,
            data_overflow: false,
            event_name: String::new(),
            done: false,
            text: String::new(),
            tool_calls: BTreeMap::new(),
            assembled: 0,
            usage: None,
            embeddings: Vec::new(),
            error: None,
            usage_only: false,
        }
    }

    /// Accepts the next body frame; frames may split events and UTF-8 sequences anywhere.
    pub fn push(&mut self, chunk: &Bytes) {
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        match self.format {
            Format::Sse => self.push_sse(chunk),
            Format::Json => self.push_json(chunk),
            Format::Other => {}
        }
    }

    /// Notes that the body broke off before its end: a JSON body is then read only when what
    /// arrived could be whole (it ends with `}`: the end of the body may have been lost after
    /// its last byte, such as a chunked body's last chunk) or is a stream labelled JSON; part of
    /// a document is worthless, and reading it costs as much as a whole one. A stream keeps what
    /// arrived.
    pub fn cut_short(&mut self) {
        self.cut = true;
    }

    /// Ends the capture; on an aborted body this still returns everything seen so far. Called
    /// once: it takes what was assembled (by reference, so the capture's own state is not
    /// copied on the request path).
    pub fn finish(&mut self) -> Captured {
        match self.format {
            Format::Sse => self.finish_sse(),
            Format::Json => self.finish_json(),
            Format::Other => {}
        }
        Captured {
            text: mem::take(&mut self.text),
            tool_calls: mem::take(&mut self.tool_calls).into_values().collect(),
            usage: self.usage.take(),
            embeddings: mem::take(&mut self.embeddings),
            error: self.error.take(),
            truncated: self.truncated,
            bytes: self.bytes,
            events: self.events,
        }
    }

    fn push_json(&mut self, chunk: &Bytes) {
        if self.truncated || chunk.is_empty() {
            return;
        }
        if self.held.saturating_add(chunk.len()) > self.cap {
            // A partial JSON document is worthless, so release it rather than hold `cap` bytes.
            self.truncated = true;
            self.first = None;
            self.rest = Vec::new();
            self.small = Vec::new();
            return;
        }
        self.held += chunk.len();
        match self.first {
            None => self.first = Some(chunk.clone()),
            Some(_) if chunk.len() >= SHARE_FROM => {
                self.keep_small();
                self.rest.push(chunk.clone());
            }
            Some(_) => self.small.extend_from_slice(chunk),
        }
    }

    /// Moves the copied small frames to `rest`, in their place among the frames.
    fn keep_small(&mut self) {
        if !self.small.is_empty() {
            self.rest.push(Bytes::from(mem::take(&mut self.small)));
        }
    }

    fn finish_json(&mut self) {
        if self.truncated {
            return;
        }
        self.keep_small();
        let Some(first) = self.first.take() else { return };
        let rest = mem::take(&mut self.rest);
        let opens = |text: &[u8]| first.strip_prefix(UTF8_BOM).unwrap_or(&first).trim_ascii_start().starts_with(text);
        if self.cut
            && !rest.last().unwrap_or(&first).trim_ascii_end().ends_with(b"}")
            && !(opens(b"data:") || opens(b"event:") || opens(b":"))
        {
            return;
        }
        if self.usage_only && !rest.is_empty() && opens(b"{") {
            // The usage is near the end: looked for there before the frames are gathered.
            if let Some(usage) = scan::field_from_end_of_tail(&tail(&first, &rest), b"usage") {
                self.usage = usage_of(usage);
                return;
            }
        }
        let raw = match rest.is_empty() {
            true => first,
            false => {
                let mut all = Vec::with_capacity(self.held);
                for frame in std::iter::once(&first).chain(&rest) {
                    all.extend_from_slice(frame);
                }
                Bytes::from(all)
            }
        };
        let body = raw.strip_prefix(UTF8_BOM).unwrap_or(&raw).trim_ascii();
        if body.is_empty() {
            return;
        }
        if self.usage_only {
            // Walked from the end, where APIs put `usage`, then forwards if that walk fails.
            let usage =
                scan::field_from_end(body, b"usage").or_else(|| scan::top_level_fields(body, [b"usage"]).map(|[u]| u));
            if let Some(usage) = usage {
                self.usage = usage.and_then(usage_of);
                return;
            }
            // Not an object the scan can walk: read below for what it is.
        }
        let fields = read_fields(body);
        if let Some(f) = &fields {
            if let Some((text, usage)) = plain::read(f) {
                if let Some(u) = usage.and_then(|u| f.usage(u)) {
                    self.usage = Some(u);
                }
                if let Some(t) = text {
                    self.append_text(&t);
                }
                return;
            }
            if let Some((rows, usage)) = plain::embeddings(f) {
                if let Some(u) = usage.and_then(|u| f.usage(u)) {
                    self.usage = Some(u);
                }
                self.embeddings = rows;
                return;
            }
        }
        match fields.and_then(|f| fields_value(f.raw)).map_or_else(|| serde_json::from_slice::<Value>(body), Ok) {
            Ok(v) => self.absorb_body(&v),
            // Some upstreams stream while labelling the body JSON; read it as what it is.
            Err(_) if body.starts_with(b"data:") || body.starts_with(b"event:") || body.starts_with(b":") => {
                self.push_sse(body);
                self.finish_sse();
            }
            Err(_) => {}
        }
    }
}

/// How much of a body's end is looked at for its usage before its frames are gathered.
const TAIL: usize = 4096;
/// After a JSON body's first frame, frames this large are held as they came; smaller ones are
/// copied, so a body trickling in small reads cannot keep a read buffer alive per read.
const SHARE_FROM: usize = 8 * 1024;

/// The last frame of a body held as frames, or its last [`TAIL`] bytes (or all of it) gathered
/// when that frame is shorter.
fn tail<'a>(first: &'a Bytes, rest: &'a [Bytes]) -> Cow<'a, [u8]> {
    let last = rest.last().unwrap_or(first);
    if last.len() >= TAIL {
        return Cow::Borrowed(last);
    }
    let mut parts = Vec::new();
    let mut len = 0;
    for frame in rest.iter().rev().chain(std::iter::once(first)) {
        let take = (TAIL - len).min(frame.len());
        parts.push(&frame[frame.len() - take..]);
        len += take;
        if len == TAIL {
            break;
        }
    }
    let mut out = Vec::with_capacity(len);
    for part in parts.iter().rev() {
        out.extend_from_slice(part);
    }
    Cow::Owned(out)
}

/// The top-level fields `absorb_body` reads.
const READ: [&[u8]; 8] = [b"error", b"usage", b"choices", b"output", b"output_text", b"object", b"text", b"data"];

/// The raw text of a body's `READ` fields (`[error, usage, choices, output, output_text,
/// object, text, data]`), and how to find the fields inside them.
pub(super) struct Fields<'a> {
    pub raw: [Option<&'a [u8]>; 8],
    /// Present when the whole body was checked to be JSON a value tree reads (so the fields
    /// need no check): its first levels, as that check recorded them.
    tape: Option<json::Tape<'a>>,
}

impl<'a> Fields<'a> {
    /// Whether the whole body was checked.
    pub fn checked(&self) -> bool {
        self.tape.is_some()
    }

    /// The fields named by `keys` of the object `raw` (a slice of the body), as
    /// [`scan::top_level_fields`] finds them.
    pub fn object<const N: usize>(&self, raw: &'a [u8], keys: [&[u8]; N]) -> Option<[Option<&'a [u8]>; N]> {
        match &self.tape {
            Some(tape) => tape.fields(raw, keys),
            None => scan::top_level_fields(raw, keys),
        }
    }

    /// The fields named by `keys` of each item of the list `raw` (a slice of the body), as
    /// [`scan::element_fields`] finds them.
    pub fn items<const N: usize>(
        &self,
        raw: &'a [u8],
        keys: [&'a [u8]; N],
    ) -> impl Iterator<Item = Option<[Option<&'a [u8]>; N]>> + '_ {
        match self.tape.as_ref().and_then(|tape| tape.items(raw, keys)) {
            Some(recorded) => Either::Left(recorded),
            None => Either::Right(scan::element_fields(raw, keys)),
        }
    }

    /// The numbers of the list `raw` (a slice of the body) when the whole body was checked and
    /// the list holds numbers only.
    pub fn numbers(&self, raw: &'a [u8]) -> Option<&[f32]> {
        self.tape.as_ref()?.numbers(raw)
    }

    /// The token counts of the `usage` value `raw` (a slice of the body), as [`usage_of`] reads them.
    pub fn usage(&self, raw: &'a [u8]) -> Option<Usage> {
        let found = if memchr::memchr(b'\\', raw).is_none() { self.object(raw, USAGE) } else { None };
        usage_from_fields(raw, found)
    }
}

/// The `READ` fields: by the strict reader's one pass, which checks the whole body as it goes
/// and records its first levels (and the numbers of its embeddings) for the readings after it,
/// or where that pass refuses the body, by the structural scan, which checks nothing. None
/// sends the caller to a full parse: a body that is not an object the scan walks, or a `\u`
/// escape anywhere (the only way a key could spell a name the readings look for differently).
fn read_fields(body: &[u8]) -> Option<Fields<'_>> {
    if scan::has_unicode_escape(body) {
        return None;
    }
    if let Some(tape) = json::tape(body) {
        return Some(Fields { raw: tape.top_fields(READ), tape: Some(tape) });
    }
    scan::top_level_fields(body, READ).map(|raw| Fields { raw, tape: None })
}

/// One of two iterators of the same items.
enum Either<L, R> {
    Left(L),
    Right(R),
}

impl<T, L: Iterator<Item = T>, R: Iterator<Item = T>> Iterator for Either<L, R> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self {
            Either::Left(l) => l.next(),
            Either::Right(r) => r.next(),
        }
    }
}

/// The `READ` fields as an object of just those, without building values for the rest (ids,
/// model names, fingerprints); None if one does not parse. Unlike a full parse, this does not
/// check fields it does not read.
fn fields_value(fields: [Option<&[u8]>; 8]) -> Option<Value> {
    let mut object = serde_json::Map::new();
    for (key, raw) in READ.iter().zip(fields) {
        if let Some(raw) = raw {
            let key = std::str::from_utf8(key).ok()?;
            object.insert(key.to_string(), serde_json::from_slice(raw).ok()?);
        }
    }
    Some(Value::Object(object))
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn choice_index(choice: &Value, pos: usize) -> u64 {
    choice.get("index").and_then(Value::as_u64).unwrap_or(pos as u64)
}

/// Tool arguments are a JSON-encoded string by contract, but some servers send the object.
fn args_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Null => Cow::Borrowed(""),
        other => Cow::Owned(other.to_string()),
    }
}

/// Accepts both the chat (`prompt_tokens`) and the responses (`input_tokens`) naming.
fn parse_usage(u: &Value) -> Option<Usage> {
    use serde::Deserialize;
    UsageFields::deserialize(u).ok()?.usage()
}

fn error_message(e: &Value) -> String {
    let inner = e.get("error").filter(|i| !i.is_null());
    let msg = e
        .as_str()
        .or_else(|| str_at(e, "message"))
        .or_else(|| inner.and_then(Value::as_str))
        .or_else(|| inner.and_then(|i| str_at(i, "message")));
    match msg {
        Some(m) => m.to_owned(),
        None => e.to_string(),
    }
}

/// The largest char boundary of `s` not beyond `max`.
fn floor_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    let mut i = max;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// An embedding sent as base64 (`encoding_format: base64`, the official SDKs' default):
/// little-endian f32s; `None` when the text is not base64.
fn base64_row(s: &str) -> Option<Vec<f32>> {
    let bytes = decode_base64(s)?;
    Some(bytes.chunks_exact(4).filter_map(|c| <[u8; 4]>::try_from(c).ok().map(f32::from_le_bytes)).collect())
}

/// Standard or URL-safe alphabet, padding optional; `None` on any other byte.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

mod events;
mod plain;
mod sse;
#[cfg(test)]
mod tests;
