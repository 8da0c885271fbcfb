//! Bounded, incremental capture of an upstream response body: usage, final content, tool calls, embeddings.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::mem;

use serde_json::Value;

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
    pub fn from_content_type(ct: Option<&str>) -> Format {
        let Some(ct) = ct else { return Format::Other };
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mime == "text/event-stream" {
            Format::Sse
        } else if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
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

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCall {
    pub name: String,
    pub arguments: String,
}

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
    /// Non-streamed body, parsed only at the end because JSON cannot be read in pieces.
    raw: Vec<u8>,
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
    /// Only usage and errors are wanted (metering, no comparison): skip everything else cheaply.
    usage_only: bool,
}

/// The two fields metering needs; serde skips the rest of the body without building it.
#[derive(serde::Deserialize)]
struct Metering {
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl Capture {
    /// A capture that keeps only usage and errors: the request path's default, when the
    /// response is not compared with anything.
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
            raw: Vec::new(),
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
    pub fn push(&mut self, chunk: &[u8]) {
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        match self.format {
            Format::Sse => self.push_sse(chunk),
            Format::Json => self.push_json(chunk),
            Format::Other => {}
        }
    }

    /// Ends the capture; on an aborted body this still returns everything seen so far.
    pub fn finish(mut self) -> Captured {
        match self.format {
            Format::Sse => self.finish_sse(),
            Format::Json => self.finish_json(),
            Format::Other => {}
        }
        Captured {
            text: self.text,
            tool_calls: self.tool_calls.into_values().collect(),
            usage: self.usage,
            embeddings: self.embeddings,
            error: self.error,
            truncated: self.truncated,
            bytes: self.bytes,
            events: self.events,
        }
    }

    fn push_json(&mut self, chunk: &[u8]) {
        if self.truncated {
            return;
        }
        if self.raw.len().saturating_add(chunk.len()) > self.cap {
            // A partial JSON document is worthless, so release it rather than hold `cap` bytes.
            self.truncated = true;
            self.raw = Vec::new();
            return;
        }
        self.raw.extend_from_slice(chunk);
    }

    fn finish_json(&mut self) {
        if self.truncated {
            return;
        }
        let raw = mem::take(&mut self.raw);
        let body = raw.strip_prefix(UTF8_BOM).unwrap_or(raw.as_slice()).trim_ascii();
        if body.is_empty() {
            return;
        }
        if self.usage_only {
            if let Ok(m) = serde_json::from_slice::<Metering>(body) {
                self.usage = m.usage.as_ref().and_then(parse_usage);
                if let Some(e) = m.error.as_ref() {
                    self.set_error(e);
                }
                return;
            }
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => self.absorb_body(&v),
            // Some upstreams stream while labelling the body JSON; read it as what it is.
            Err(_) if body.starts_with(b"data:") || body.starts_with(b"event:") || body.starts_with(b":") => {
                self.push_sse(body);
                self.finish_sse();
            }
            Err(_) => {}
        }
    }

    fn push_sse(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() && !self.done {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let seg = &chunk[..i];
                    chunk = &chunk[i + 1..];
                    if self.line_overflow {
                        // This newline ends a line already discarded.
                        self.line_overflow = false;
                    } else if self.line.len().saturating_add(seg.len()) > self.line_cap {
                        self.drop_line(seg);
                        self.line_overflow = false;
                    } else if self.line.is_empty() {
                        // Common case: the whole line is in this chunk, so skip the copy.
                        self.handle_line(seg);
                    } else {
                        let mut line = mem::take(&mut self.line);
                        line.extend_from_slice(seg);
                        self.handle_line(&line);
                        line.clear();
                        self.line = line;
                    }
                }
                None => {
                    if !self.line_overflow {
                        if self.line.len().saturating_add(chunk.len()) > self.line_cap {
                            self.drop_line(chunk);
                        } else {
                            self.line.extend_from_slice(chunk);
                        }
                    }
                    break;
                }
            }
        }
    }

    /// Discards an oversize line; if it carried data, the pending event is lost with it.
    fn drop_line(&mut self, incoming: &[u8]) {
        let is_data = self.line.iter().chain(incoming).take(4).eq(b"data".iter());
        self.line = Vec::new();
        self.line_overflow = true;
        self.truncated = true;
        if is_data {
            self.data_lines += 1;
            self.data_overflow = true;
            self.data = Vec::new();
        }
    }

    fn finish_sse(&mut self) {
        if self.done {
            return;
        }
        if !self.line_overflow && !self.line.is_empty() {
            let line = mem::take(&mut self.line);
            self.handle_line(&line);
        }
        // The stream may end without the final blank line; its last event still counts.
        self.dispatch();
    }

    fn handle_line(&mut self, line: &[u8]) {
        if self.done {
            return;
        }
        let mut line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.at_start {
            self.at_start = false;
            line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => self.push_data(value),
            b"event" => {
                let name = &value[..value.len().min(MAX_EVENT_NAME_LEN)];
                self.event_name = String::from_utf8_lossy(name).into_owned();
            }
            _ => {}
        }
    }

    fn push_data(&mut self, value: &[u8]) {
        self.data_lines += 1;
        if self.data_overflow {
            return;
        }
        let sep = usize::from(self.data_lines > 1);
        if self.data.len().saturating_add(sep).saturating_add(value.len()) > self.line_cap {
            self.data_overflow = true;
            self.truncated = true;
            self.data = Vec::new();
            return;
        }
        if sep == 1 {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
    }

    fn dispatch(&mut self) {
        let name = mem::take(&mut self.event_name);
        if self.data_lines == 0 {
            return;
        }
        let lines = mem::replace(&mut self.data_lines, 0);
        let overflow = mem::replace(&mut self.data_overflow, false);
        let mut data = mem::take(&mut self.data);
        self.events += 1;
        if !overflow {
            self.on_data(&data, &name, lines);
        }
        data.clear();
        self.data = data;
    }

    fn on_data(&mut self, data: &[u8], name: &str, lines: usize) {
        let data = data.trim_ascii();
        if data == b"[DONE]".as_slice() {
            self.done = true;
            return;
        }
        if self.usage_only && !contains(data, b"usage") && !contains(data, b"error") {
            return;
        }
        if let Ok(v) = serde_json::from_slice::<Value>(data) {
            self.on_event(&v, name);
            return;
        }
        if lines > 1 {
            // Some servers omit the blank line between events, which glues them into one
            // multi-line event; reading each line alone recovers them.
            for part in data.split(|&b| b == b'\n') {
                let part = part.trim_ascii();
                if part == b"[DONE]".as_slice() {
                    self.done = true;
                    return;
                }
                if let Ok(v) = serde_json::from_slice::<Value>(part) {
                    self.on_event(&v, name);
                }
            }
        } else if name == "error" && !data.is_empty() {
            self.set_error_text(&String::from_utf8_lossy(data));
        }
    }

    fn on_event(&mut self, v: &Value, name: &str) {
        let ty = str_at(v, "type").unwrap_or("");
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            self.set_error(e);
        } else if ty == "error" || name == "error" {
            self.set_error(v);
        }
        if let Some(u) = v.get("usage").and_then(parse_usage) {
            // Later reports are cumulative, so the latest wins.
            self.usage = Some(u);
        }
        match ty {
            "response.output_text.delta" | "transcript.text.delta" => {
                if let Some(d) = str_at(v, "delta") {
                    self.append_text(d);
                }
            }
            "response.output_text.done" if self.text.is_empty() => {
                if let Some(t) = str_at(v, "text") {
                    self.append_text(t);
                }
            }
            "transcript.text.done" => {
                if let Some(t) = str_at(v, "text") {
                    self.replace_text(t);
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                if let Some(r) = v.get("response") {
                    self.on_response_final(r);
                }
            }
            "response.output_item.added" | "response.output_item.done" => {
                let item = v.get("item").filter(|i| str_at(i, "type") == Some("function_call"));
                if let Some(item) = item {
                    let key = self.responses_key(v);
                    let args = item.get("arguments").map(args_text);
                    self.fill_tool_call(key, str_at(item, "name"), args.as_deref());
                }
            }
            "response.function_call_arguments.delta" => {
                let key = self.responses_key(v);
                if let Some(d) = str_at(v, "delta") {
                    self.append_tool_args(key, d);
                }
            }
            "response.function_call_arguments.done" => {
                let key = self.responses_key(v);
                let args = v.get("arguments").map(args_text);
                self.fill_tool_call(key, None, args.as_deref());
            }
            _ => {}
        }
        if let Some(choices) = v.get("choices").and_then(Value::as_array) {
            self.on_chunk_choices(choices);
        }
    }

    /// Responses events address tool calls by `output_index`, which also orders them.
    fn responses_key(&self, v: &Value) -> u64 {
        v.get("output_index")
            .and_then(Value::as_u64)
            .or_else(|| self.tool_calls.keys().next_back().copied())
            .unwrap_or(0)
    }

    fn on_chunk_choices(&mut self, choices: &[Value]) {
        for (pos, choice) in choices.iter().enumerate() {
            // With n > 1 the choices interleave; only the first is compared.
            if choice_index(choice, pos) != 0 {
                continue;
            }
            if let Some(delta) = choice.get("delta") {
                if let Some(c) = delta.get("content") {
                    self.append_content(c);
                }
                if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                    for (i, call) in calls.iter().enumerate() {
                        let key = call.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
                        let func = call.get("function");
                        let name = func.and_then(|f| str_at(f, "name")).filter(|n| !n.is_empty());
                        self.fill_tool_call(key, name, None);
                        if let Some(a) = func.and_then(|f| f.get("arguments")) {
                            let a = args_text(a);
                            self.append_tool_args(key, &a);
                        }
                    }
                }
                // The deprecated `functions` API streams a single call the same way.
                if let Some(func) = delta.get("function_call").filter(|f| f.is_object()) {
                    let name = str_at(func, "name").filter(|n| !n.is_empty());
                    self.fill_tool_call(0, name, None);
                    if let Some(a) = func.get("arguments") {
                        let a = args_text(a);
                        self.append_tool_args(0, &a);
                    }
                }
            }
            if let Some(t) = str_at(choice, "text") {
                self.append_text(t);
            }
        }
    }

    fn on_response_final(&mut self, r: &Value) {
        if let Some(u) = r.get("usage").and_then(parse_usage) {
            self.usage = Some(u);
        }
        if let Some(e) = r.get("error").filter(|e| !e.is_null()) {
            self.set_error(e);
        }
        // The final object repeats the output; use it only when the deltas never came.
        if self.text.is_empty() {
            self.absorb_responses_text(r);
        }
        if self.tool_calls.is_empty() {
            self.absorb_responses_tool_calls(r);
        }
    }

    fn absorb_body(&mut self, v: &Value) {
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            self.set_error(e);
        }
        if let Some(u) = v.get("usage").and_then(parse_usage) {
            self.usage = Some(u);
        }
        if let Some(choices) = v.get("choices").and_then(Value::as_array) {
            let first = choices.iter().enumerate().find(|&(pos, c)| choice_index(c, pos) == 0).map(|(_, c)| c);
            if let Some(choice) = first {
                if let Some(msg) = choice.get("message") {
                    self.absorb_message(msg);
                } else if let Some(t) = str_at(choice, "text") {
                    self.append_text(t);
                }
            }
        } else if v.get("output").is_some_and(Value::is_array) || str_at(v, "object") == Some("response") {
            self.absorb_responses_text(v);
            self.absorb_responses_tool_calls(v);
        } else if let Some(t) = str_at(v, "text") {
            self.append_text(t);
        }
        if let Some(data) = v.get("data").and_then(Value::as_array) {
            self.absorb_embeddings(data);
        }
    }

    fn absorb_message(&mut self, msg: &Value) {
        if let Some(c) = msg.get("content") {
            self.append_content(c);
        }
        let calls = msg.get("tool_calls").and_then(Value::as_array).filter(|c| !c.is_empty());
        if let Some(calls) = calls {
            for (i, call) in calls.iter().enumerate() {
                let func = call.get("function");
                let args = func.and_then(|f| f.get("arguments")).map(args_text);
                self.fill_tool_call(i as u64, func.and_then(|f| str_at(f, "name")), args.as_deref());
            }
        } else if let Some(func) = msg.get("function_call").filter(|f| f.is_object()) {
            let args = func.get("arguments").map(args_text);
            self.fill_tool_call(0, str_at(func, "name"), args.as_deref());
        }
    }

    fn absorb_responses_text(&mut self, r: &Value) {
        if let Some(t) = str_at(r, "output_text") {
            self.append_text(t);
            return;
        }
        let Some(items) = r.get("output").and_then(Value::as_array) else {
            return;
        };
        for item in items {
            let Some(parts) = item.get("content").and_then(Value::as_array) else {
                continue;
            };
            for part in parts {
                if str_at(part, "type") == Some("output_text") {
                    if let Some(t) = str_at(part, "text") {
                        self.append_text(t);
                    }
                }
            }
        }
    }

    fn absorb_responses_tool_calls(&mut self, r: &Value) {
        let Some(items) = r.get("output").and_then(Value::as_array) else {
            return;
        };
        for (i, item) in items.iter().enumerate() {
            if str_at(item, "type") != Some("function_call") {
                continue;
            }
            let args = item.get("arguments").map(args_text);
            self.fill_tool_call(i as u64, str_at(item, "name"), args.as_deref());
        }
    }

    fn absorb_embeddings(&mut self, data: &[Value]) {
        let mut rows: Vec<(u64, Vec<f32>)> = Vec::new();
        for (pos, item) in data.iter().enumerate() {
            let Some(embedding) = item.get("embedding") else {
                continue;
            };
            let row: Vec<f32> = match embedding {
                Value::Array(xs) => xs.iter().filter_map(Value::as_f64).map(|x| x as f32).collect(),
                // `encoding_format: base64` (the official SDKs' default) packs little-endian f32s.
                Value::String(b64) => match decode_base64(b64) {
                    Some(bytes) => bytes
                        .chunks_exact(4)
                        .filter_map(|c| <[u8; 4]>::try_from(c).ok().map(f32::from_le_bytes))
                        .collect(),
                    None => continue,
                },
                _ => continue,
            };
            let index = item.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
            rows.push((index, row));
        }
        rows.sort_by_key(|(index, _)| *index);
        self.embeddings = rows.into_iter().map(|(_, row)| row).collect();
    }

    fn append_content(&mut self, content: &Value) {
        match content {
            Value::String(s) => self.append_text(s),
            Value::Array(parts) => {
                for part in parts {
                    if let Some(t) = part.as_str().or_else(|| str_at(part, "text")) {
                        self.append_text(t);
                    }
                }
            }
            _ => {}
        }
    }

    /// Charges `s` against the assembled budget and returns the part that fits.
    /// Once anything was cut, nothing more is taken: later pieces would leave a gap.
    fn clip<'a>(&mut self, s: &'a str) -> &'a str {
        if self.truncated {
            return "";
        }
        let room = self.cap.saturating_sub(self.assembled);
        let kept = if s.len() > room {
            self.truncated = true;
            s.get(..floor_boundary(s, room)).unwrap_or("")
        } else {
            s
        };
        self.assembled += kept.len();
        kept
    }

    fn append_text(&mut self, s: &str) {
        let s = self.clip(s);
        self.text.push_str(s);
    }

    fn replace_text(&mut self, s: &str) {
        // Past the cap the deltas already hold the longest prefix we may keep.
        if self.truncated {
            return;
        }
        self.assembled = self.assembled.saturating_sub(self.text.len());
        self.text.clear();
        self.append_text(s);
    }

    fn ensure_tool_call(&mut self, key: u64) -> bool {
        if self.tool_calls.contains_key(&key) {
            return true;
        }
        if self.tool_calls.len() >= MAX_TOOL_CALLS {
            self.truncated = true;
            return false;
        }
        self.tool_calls.insert(key, ToolCall::default());
        true
    }

    /// Sets whichever of name and arguments are still empty; providers that repeat the name in
    /// every fragment, or send the full arguments again at the end, must not duplicate them.
    fn fill_tool_call(&mut self, key: u64, name: Option<&str>, args: Option<&str>) {
        if !self.ensure_tool_call(key) {
            return;
        }
        let Some(call) = self.tool_calls.get(&key) else {
            return;
        };
        let (want_name, want_args) = (call.name.is_empty(), call.arguments.is_empty());
        if let Some(name) = name.filter(|_| want_name) {
            let name = self.clip(name);
            if let Some(call) = self.tool_calls.get_mut(&key) {
                call.name.push_str(name);
            }
        }
        if let Some(args) = args.filter(|_| want_args) {
            let args = self.clip(args);
            if let Some(call) = self.tool_calls.get_mut(&key) {
                call.arguments.push_str(args);
            }
        }
    }

    fn append_tool_args(&mut self, key: u64, fragment: &str) {
        if fragment.is_empty() || !self.ensure_tool_call(key) {
            return;
        }
        let fragment = self.clip(fragment);
        if let Some(call) = self.tool_calls.get_mut(&key) {
            call.arguments.push_str(fragment);
        }
    }

    fn set_error(&mut self, e: &Value) {
        if self.error.is_none() {
            self.set_error_text(&error_message(e));
        }
    }

    /// The first error is kept: later ones are usually consequences of it.
    fn set_error_text(&mut self, msg: &str) {
        if self.error.is_none() {
            let end = floor_boundary(msg, MAX_ERROR_LEN);
            self.error = Some(msg.get(..end).unwrap_or("").to_owned());
        }
    }
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
    let obj = u.as_object()?;
    let num = |key: &str| {
        obj.get(key)
            .and_then(|n| n.as_u64().or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64)))
    };
    let input = num("prompt_tokens").or_else(|| num("input_tokens"));
    let output = num("completion_tokens").or_else(|| num("output_tokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(Usage { input_tokens: input.unwrap_or(0), output_tokens: output.unwrap_or(0) })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BIG: usize = 1 << 16;
    const CHAT_TEXT: &str = "Héllo, wörld 🌍 ✓";

    fn sse_body(events: &[Value]) -> Vec<u8> {
        let mut out = String::new();
        for e in events {
            out.push_str("data: ");
            out.push_str(&e.to_string());
            out.push_str("\n\n");
        }
        out.push_str("data: [DONE]\n\n");
        out.into_bytes()
    }

    fn named_sse(events: &[Value]) -> Vec<u8> {
        let mut out = String::new();
        for e in events {
            let ty = e["type"].as_str().unwrap();
            out.push_str(&format!("event: {ty}\ndata: {e}\n\n"));
        }
        out.into_bytes()
    }

    fn capture_pieces<'a>(format: Format, cap: usize, pieces: impl IntoIterator<Item = &'a [u8]>) -> Captured {
        let mut c = Capture::new(format, cap);
        for p in pieces {
            c.push(p);
        }
        c.finish()
    }

    fn capture_all(format: Format, cap: usize, body: &[u8]) -> Captured {
        capture_pieces(format, cap, [body])
    }

    struct Lcg(u64);

    impl Lcg {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
    }

    fn random_pieces(body: &[u8], seed: u64, max: usize) -> Vec<&[u8]> {
        let mut rng = Lcg(seed.wrapping_add(0x9E37_79B9_7F4A_7C15));
        let mut out = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let n = (1 + (rng.next_u64() as usize) % max).min(rest.len());
            let (a, b) = rest.split_at(n);
            out.push(a);
            rest = b;
        }
        out
    }

    /// Every way of cutting `body` must give the same capture as feeding it whole.
    fn assert_split_invariant(format: Format, cap: usize, body: &[u8]) -> Captured {
        let whole = capture_all(format, cap, body);
        assert_eq!(capture_pieces(format, cap, body.chunks(1)), whole, "byte by byte");
        for i in 0..=body.len() {
            let (a, b) = body.split_at(i);
            assert_eq!(capture_pieces(format, cap, [a, b]), whole, "split at {i}");
        }
        for seed in 0..64 {
            assert_eq!(capture_pieces(format, cap, random_pieces(body, seed, 23)), whole, "seed {seed}");
        }
        whole
    }

    fn chat_chunk(delta: Value) -> Value {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": null}], "usage": null
        })
    }

    fn chat_stream() -> Vec<u8> {
        sse_body(&[
            chat_chunk(json!({"role": "assistant", "content": ""})),
            chat_chunk(json!({"content": "Héllo"})),
            chat_chunk(json!({"content": ", wörld "})),
            chat_chunk(json!({"content": "🌍 ✓"})),
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": null}),
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
                   "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}),
        ])
    }

    #[test]
    fn content_types() {
        assert_eq!(Format::from_content_type(Some("text/event-stream")), Format::Sse);
        assert_eq!(Format::from_content_type(Some("text/event-stream; charset=utf-8")), Format::Sse);
        assert_eq!(Format::from_content_type(Some("application/json")), Format::Json);
        assert_eq!(Format::from_content_type(Some("Application/JSON; charset=utf-8")), Format::Json);
        assert_eq!(Format::from_content_type(Some("application/problem+json")), Format::Json);
        assert_eq!(Format::from_content_type(Some("text/plain")), Format::Other);
        assert_eq!(Format::from_content_type(Some("audio/mpeg")), Format::Other);
        assert_eq!(Format::from_content_type(None), Format::Other);
    }

    #[test]
    fn chat_stream_any_split_gives_same_result() {
        let body = chat_stream();
        let out = assert_split_invariant(Format::Sse, BIG, &body);
        assert_eq!(out.text, CHAT_TEXT);
        assert_eq!(out.usage, Some(Usage { input_tokens: 12, output_tokens: 7 }));
        assert_eq!(out.events, 7);
        assert_eq!(out.bytes, body.len() as u64);
        assert!(!out.truncated);
        assert!(out.error.is_none());
        assert!(out.tool_calls.is_empty());
    }

    #[test]
    fn multibyte_char_split_across_chunks() {
        let body = sse_body(&[chat_chunk(json!({"content": "crab 🦀 €"}))]);
        let at = body.windows(4).position(|w| w == "🦀".as_bytes()).unwrap();
        for cut in at + 1..at + 4 {
            let (a, b) = body.split_at(cut);
            let out = capture_pieces(Format::Sse, BIG, [a, b]);
            assert_eq!(out.text, "crab 🦀 €");
        }
    }

    #[test]
    fn tool_call_fragments_reassemble() {
        let body = sse_body(&[
            chat_chunk(json!({"role": "assistant", "content": null, "tool_calls": [
                {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})),
            chat_chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]})),
            chat_chunk(json!({"tool_calls": [
                {"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\""}}]})),
            chat_chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]})),
            chat_chunk(
                json!({"tool_calls": [{"index": 1, "function": {"name": "get_time", "arguments": ":\"CET\"}"}}]}),
            ),
        ]);
        let out = assert_split_invariant(Format::Sse, BIG, &body);
        assert_eq!(
            out.tool_calls,
            vec![
                ToolCall { name: "get_weather".into(), arguments: "{\"city\":\"Paris\"}".into() },
                ToolCall { name: "get_time".into(), arguments: "{\"tz\":\"CET\"}".into() },
            ]
        );
        assert_eq!(out.text, "");
    }

    #[test]
    fn done_ends_the_stream() {
        let a = chat_chunk(json!({"content": "kept"}));
        let b = chat_chunk(json!({"content": "ignored"}));
        let body = format!("data: {a}\n\ndata: [DONE]\n\ndata: {b}\n\n");
        let out = capture_all(Format::Sse, BIG, body.as_bytes());
        assert_eq!(out.text, "kept");
        assert_eq!(out.events, 2);

        // `[DONE]` without its closing blank line still ends the stream.
        let body = format!("data: {a}\n\ndata: [DONE]");
        let out = capture_all(Format::Sse, BIG, body.as_bytes());
        assert_eq!(out.text, "kept");
        assert_eq!(out.events, 2);
    }

    #[test]
    fn crlf_comments_and_no_space_after_colon() {
        let a = chat_chunk(json!({"content": "Hi"}));
        let b = chat_chunk(json!({"content": " there"}));
        let body = format!(
            ": ping\r\n\r\nevent: message\r\ndata:{a}\r\n\r\n: keep-alive\r\nid: 7\r\ndata: {b}\r\n\r\ndata: [DONE]\r\n\r\n"
        );
        let out = assert_split_invariant(Format::Sse, BIG, body.as_bytes());
        assert_eq!(out.text, "Hi there");
        assert_eq!(out.events, 3);
    }

    #[test]
    fn multi_line_data_is_joined() {
        let body = "data: {\"choices\":[{\"index\":0,\ndata: \"delta\":{\"content\":\"joined\"}}]}\n\n";
        let out = capture_all(Format::Sse, BIG, body.as_bytes());
        assert_eq!(out.text, "joined");
        assert_eq!(out.events, 1);
    }

    #[test]
    fn events_without_blank_separator_are_recovered() {
        let a = chat_chunk(json!({"content": "one "}));
        let b = chat_chunk(json!({"content": "two"}));
        let body = format!("data: {a}\ndata: {b}\n\n");
        let out = capture_all(Format::Sse, BIG, body.as_bytes());
        assert_eq!(out.text, "one two");
    }

    #[test]
    fn other_choices_are_ignored() {
        let body = sse_body(&[json!({"choices": [
            {"index": 1, "delta": {"content": "zzz"}},
            {"index": 0, "delta": {"content": "first"}}
        ]})]);
        assert_eq!(capture_all(Format::Sse, BIG, &body).text, "first");
    }

    #[test]
    fn legacy_completion_stream() {
        let body = sse_body(&[
            json!({"object": "text_completion", "choices": [{"index": 0, "text": "foo", "finish_reason": null}]}),
            json!({"object": "text_completion", "choices": [{"index": 0, "text": "bar", "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 2, "completion_tokens": 2}}),
        ]);
        let out = capture_all(Format::Sse, BIG, &body);
        assert_eq!(out.text, "foobar");
        assert_eq!(out.usage, Some(Usage { input_tokens: 2, output_tokens: 2 }));
    }

    #[test]
    fn responses_stream() {
        let body = named_sse(&[
            json!({"type": "response.created", "sequence_number": 0,
                   "response": {"id": "resp_1", "status": "in_progress", "output": [], "usage": null}}),
            json!({"type": "response.output_item.added", "output_index": 0,
                   "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}}),
            json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "Bon"}),
            json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "jour"}),
            json!({"type": "response.output_text.done", "output_index": 0, "content_index": 0, "text": "Bonjour"}),
            json!({"type": "response.output_item.added", "output_index": 1,
                   "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup", "arguments": ""}}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 1, "item_id": "fc_1", "delta": "{\"id\":"}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 1, "item_id": "fc_1", "delta": "7}"}),
            json!({"type": "response.function_call_arguments.done", "output_index": 1, "item_id": "fc_1", "arguments": "{\"id\":7}"}),
            json!({"type": "response.completed", "response": {
                "id": "resp_1", "status": "completed",
                "output": [
                    {"type": "message", "content": [{"type": "output_text", "text": "Bonjour"}]},
                    {"type": "function_call", "name": "lookup", "arguments": "{\"id\":7}"}
                ],
                "usage": {"input_tokens": 11, "output_tokens": 4, "total_tokens": 15}}}),
        ]);
        let out = assert_split_invariant(Format::Sse, BIG, &body);
        assert_eq!(out.text, "Bonjour");
        assert_eq!(out.tool_calls, vec![ToolCall { name: "lookup".into(), arguments: "{\"id\":7}".into() }]);
        assert_eq!(out.usage, Some(Usage { input_tokens: 11, output_tokens: 4 }));
        assert_eq!(out.events, 10);
    }

    #[test]
    fn responses_completed_alone_supplies_text() {
        let body = named_sse(&[json!({"type": "response.completed", "response": {
            "output": [{"type": "message", "content": [
                {"type": "output_text", "text": "from "}, {"type": "output_text", "text": "final"}]}],
            "usage": {"input_tokens": 1, "output_tokens": 2}}})]);
        let out = capture_all(Format::Sse, BIG, &body);
        assert_eq!(out.text, "from final");
        assert_eq!(out.usage, Some(Usage { input_tokens: 1, output_tokens: 2 }));
    }

    #[test]
    fn transcription_stream() {
        let body = sse_body(&[
            json!({"type": "transcript.text.delta", "delta": "Hel"}),
            json!({"type": "transcript.text.delta", "delta": "lo"}),
            json!({"type": "transcript.text.done", "text": "Hello.",
                   "usage": {"type": "tokens", "input_tokens": 5, "output_tokens": 2, "total_tokens": 7}}),
        ]);
        let out = capture_all(Format::Sse, BIG, &body);
        assert_eq!(out.text, "Hello.");
        assert_eq!(out.usage, Some(Usage { input_tokens: 5, output_tokens: 2 }));
    }

    #[test]
    fn error_events_are_surfaced() {
        let body = "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"upstream overloaded\"}\n\n";
        assert_eq!(capture_all(Format::Sse, BIG, body.as_bytes()).error.as_deref(), Some("upstream overloaded"));

        let body = sse_body(&[json!({"error": {"message": "rate limited", "type": "rate_limit_error"}})]);
        assert_eq!(capture_all(Format::Sse, BIG, &body).error.as_deref(), Some("rate limited"));

        let body = "event: error\ndata: boom\n\n";
        assert_eq!(capture_all(Format::Sse, BIG, body.as_bytes()).error.as_deref(), Some("boom"));

        let body = named_sse(&[json!({"type": "response.failed", "response": {
            "status": "failed", "error": {"code": "server_error", "message": "model crashed"}, "usage": null}})]);
        assert_eq!(capture_all(Format::Sse, BIG, &body).error.as_deref(), Some("model crashed"));
    }

    #[test]
    fn non_json_events_are_ignored() {
        let a = chat_chunk(json!({"content": "ok"}));
        let body = format!("data: not json\n\ndata: {a}\n\n");
        let out = capture_all(Format::Sse, BIG, body.as_bytes());
        assert_eq!(out.text, "ok");
        assert_eq!(out.events, 2);
        assert!(out.error.is_none());
    }

    #[test]
    fn aborted_stream_keeps_what_was_seen() {
        let a = chat_chunk(json!({"content": "partial"})).to_string();
        let b = chat_chunk(json!({"content": "never"})).to_string();
        let body = format!("data: {a}\n\ndata: {}", &b[..b.len() / 2]);
        let out = capture_all(Format::Sse, BIG, body.as_bytes());
        assert_eq!(out.text, "partial");
        assert_eq!(out.events, 2);
        assert!(out.usage.is_none());
    }

    #[test]
    fn chat_json_with_content_and_usage() {
        let body = json!({
            "id": "chatcmpl-9", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": "The answer is 42.",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}]}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26}
        })
        .to_string();
        let out = assert_split_invariant(Format::Json, BIG, body.as_bytes());
        assert_eq!(out.text, "The answer is 42.");
        assert_eq!(out.tool_calls, vec![ToolCall { name: "lookup".into(), arguments: "{\"q\":1}".into() }]);
        assert_eq!(out.usage, Some(Usage { input_tokens: 20, output_tokens: 6 }));
        assert_eq!(out.events, 0);
        assert_eq!(out.bytes, body.len() as u64);
        assert!(!out.truncated);
    }

    #[test]
    fn chat_json_content_parts_and_legacy_text() {
        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}]});
        assert_eq!(capture_all(Format::Json, BIG, body.to_string().as_bytes()).text, "ab");

        let body = json!({"object": "text_completion", "choices": [{"index": 0, "text": "legacy"}],
                          "usage": {"prompt_tokens": 1, "completion_tokens": 1}});
        let out = capture_all(Format::Json, BIG, body.to_string().as_bytes());
        assert_eq!(out.text, "legacy");
        assert_eq!(out.usage, Some(Usage { input_tokens: 1, output_tokens: 1 }));
    }

    #[test]
    fn responses_json() {
        let body = json!({
            "id": "resp_1", "object": "response", "status": "completed", "error": null,
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "id": "msg_1", "role": "assistant", "content": [
                    {"type": "output_text", "text": "Hello ", "annotations": []},
                    {"type": "refusal", "refusal": "no"},
                    {"type": "output_text", "text": "there", "annotations": []}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "search", "arguments": "{\"q\":\"rust\"}"}
            ],
            "usage": {"input_tokens": 30, "output_tokens": 9, "total_tokens": 39}
        });
        let out = capture_all(Format::Json, BIG, body.to_string().as_bytes());
        assert_eq!(out.text, "Hello there");
        assert_eq!(out.tool_calls, vec![ToolCall { name: "search".into(), arguments: "{\"q\":\"rust\"}".into() }]);
        assert_eq!(out.usage, Some(Usage { input_tokens: 30, output_tokens: 9 }));
        assert!(out.error.is_none());

        let body = json!({"object": "response", "output_text": "shortcut", "output": []});
        assert_eq!(capture_all(Format::Json, BIG, body.to_string().as_bytes()).text, "shortcut");
    }

    #[test]
    fn embeddings_ordered_by_index() {
        let body = json!({
            "object": "list", "model": "embed",
            "data": [
                {"object": "embedding", "index": 1, "embedding": [0.5, -1.0]},
                {"object": "embedding", "index": 0, "embedding": [0.25, 2.0]}
            ],
            "usage": {"prompt_tokens": 8, "total_tokens": 8}
        });
        let out = capture_all(Format::Json, BIG, body.to_string().as_bytes());
        assert_eq!(out.embeddings, vec![vec![0.25_f32, 2.0], vec![0.5_f32, -1.0]]);
        assert_eq!(out.usage, Some(Usage { input_tokens: 8, output_tokens: 0 }));
        assert_eq!(out.text, "");
    }

    #[test]
    fn base64_embeddings() {
        // Little-endian f32 [1.0, -2.5].
        let body = json!({"data": [{"index": 0, "embedding": "AACAPwAAIMA="}], "usage": {"prompt_tokens": 2}});
        let out = capture_all(Format::Json, BIG, body.to_string().as_bytes());
        assert_eq!(out.embeddings, vec![vec![1.0_f32, -2.5]]);
    }

    #[test]
    fn transcription_and_image_json() {
        let body = json!({"text": "hello world",
                          "usage": {"type": "tokens", "input_tokens": 14, "output_tokens": 3, "total_tokens": 17}});
        let out = capture_all(Format::Json, BIG, body.to_string().as_bytes());
        assert_eq!(out.text, "hello world");
        assert_eq!(out.usage, Some(Usage { input_tokens: 14, output_tokens: 3 }));

        let body = json!({"created": 1, "data": [{"b64_json": "AAAA"}],
                          "usage": {"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210}});
        let out = capture_all(Format::Json, BIG, body.to_string().as_bytes());
        assert_eq!(out.text, "");
        assert!(out.embeddings.is_empty());
        assert_eq!(out.usage, Some(Usage { input_tokens: 50, output_tokens: 4160 }));
    }

    #[test]
    fn error_json() {
        let body = json!({"error": {"message": "Invalid model", "type": "invalid_request_error", "code": null}});
        let out = capture_all(Format::Json, BIG, body.to_string().as_bytes());
        assert_eq!(out.error.as_deref(), Some("Invalid model"));
        assert_eq!(out.text, "");
        assert!(out.usage.is_none());
    }

    #[test]
    fn json_labelled_stream_is_read_as_sse() {
        let body = chat_stream();
        let out = capture_all(Format::Json, BIG, &body);
        assert_eq!(out.text, CHAT_TEXT);
        assert_eq!(out.usage, Some(Usage { input_tokens: 12, output_tokens: 7 }));
    }

    #[test]
    fn other_format_counts_bytes_only() {
        let out = capture_pieces(Format::Other, 4, [b"abcdef".as_slice(), b"gh".as_slice()]);
        assert_eq!(out.bytes, 8);
        assert_eq!(out.events, 0);
        assert_eq!(out, Captured { bytes: 8, ..Captured::default() });
    }

    #[test]
    fn json_over_cap_is_truncated_and_released() {
        let cap = 1024;
        let body = json!({"choices": [{"index": 0, "message": {"content": "y".repeat(10 << 20)}}],
                          "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
        .to_string();
        let mut c = Capture::new(Format::Json, cap);
        for chunk in body.as_bytes().chunks(64 * 1024) {
            c.push(chunk);
            assert!(c.raw.len() <= cap);
        }
        assert_eq!(c.raw.capacity(), 0);
        let out = c.finish();
        assert!(out.truncated);
        assert!(out.usage.is_none());
        assert_eq!(out.text, "");
        assert_eq!(out.bytes, body.len() as u64);

        // Exactly at the cap is still whole.
        let body = json!({"text": "fits"}).to_string();
        let out = capture_all(Format::Json, body.len(), body.as_bytes());
        assert!(!out.truncated);
        assert_eq!(out.text, "fits");
    }

    #[test]
    fn sse_over_cap_truncates_text_but_keeps_usage() {
        let cap = 1024;
        let piece = format!("{}é", "x".repeat(999));
        let event = format!("data: {}\n\n", chat_chunk(json!({"content": piece})));
        let n = (10 << 20) / event.len() + 1;
        let mut body = Vec::with_capacity(n * event.len() + 512);
        for _ in 0..n {
            body.extend_from_slice(event.as_bytes());
        }
        let last = json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n}});
        body.extend_from_slice(format!("data: {last}\n\ndata: [DONE]\n\n").as_bytes());
        assert!(body.len() >= 10 << 20);

        let mut c = Capture::new(Format::Sse, cap);
        for chunk in body.chunks(64 * 1024) {
            c.push(chunk);
            assert!(c.text.len() <= cap);
            assert!(c.line.capacity() <= 64 * 1024);
            assert!(c.data.capacity() <= 64 * 1024);
        }
        let out = c.finish();
        assert!(out.truncated);
        assert!(out.text.len() <= cap);
        assert!(out.text.starts_with("xxx"));
        assert_eq!(out.usage, Some(Usage { input_tokens: 3, output_tokens: n as u64 }));
        assert_eq!(out.events, n as u64 + 2);
        assert_eq!(out.bytes, body.len() as u64);
    }

    #[test]
    fn text_is_cut_on_a_char_boundary() {
        let body = sse_body(&[chat_chunk(json!({"content": "abcdé"})), chat_chunk(json!({"content": "f"}))]);
        let out = capture_all(Format::Sse, 5, &body);
        assert_eq!(out.text, "abcd");
        assert!(out.truncated);
    }

    #[test]
    fn oversize_line_is_dropped_and_stream_recovers() {
        let mut body = b"data: ".to_vec();
        body.extend(std::iter::repeat_n(b'x', 2 * MIN_LINE_CAP));
        body.extend_from_slice(b"\n\n");
        let last = json!({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 5}});
        body.extend_from_slice(format!("data: {last}\n\ndata: [DONE]\n\n").as_bytes());

        let mut c = Capture::new(Format::Sse, 64);
        for chunk in body.chunks(4096) {
            c.push(chunk);
            assert!(c.line.len() <= c.line_cap);
            assert!(c.data.len() <= c.line_cap);
        }
        let out = c.finish();
        assert!(out.truncated);
        assert_eq!(out.usage, Some(Usage { input_tokens: 4, output_tokens: 5 }));
        assert_eq!(out.events, 3);
    }

    #[test]
    fn base64_decoder() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("a*b").is_none());
    }
}
