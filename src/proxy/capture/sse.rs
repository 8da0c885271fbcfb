//! The SSE side of a capture: lines, events and `data:` payloads as they arrive in pieces.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde_json::Value;

use super::*;

/// The words a metering capture looks for in each event, with their searchers built once
/// rather than per event.
static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"usage"));
static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"error"));

impl Capture {
    pub(super) fn push_sse(&mut self, mut chunk: &[u8]) {
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
    pub(super) fn drop_line(&mut self, incoming: &[u8]) {
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

    pub(super) fn finish_sse(&mut self) {
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

    pub(super) fn handle_line(&mut self, line: &[u8]) {
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

    pub(super) fn push_data(&mut self, value: &[u8]) {
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

    pub(super) fn dispatch(&mut self) {
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

    pub(super) fn on_data(&mut self, data: &[u8], name: &str, lines: usize) {
        let data = data.trim_ascii();
        if data == b"[DONE]".as_slice() {
            self.done = true;
            return;
        }
        if self.usage_only && USAGE.find(data).is_none() && ERROR.find(data).is_none() {
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
}
