//! What a capture takes from each JSON event or body: text, tool calls, usage, embeddings, errors.

use serde_json::Value;

use super::*;

impl Capture {
    pub(super) fn on_event(&mut self, v: &Value, name: &str) {
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
    pub(super) fn responses_key(&self, v: &Value) -> u64 {
        v.get("output_index")
            .and_then(Value::as_u64)
            .or_else(|| self.tool_calls.keys().next_back().copied())
            .unwrap_or(0)
    }

    pub(super) fn on_chunk_choices(&mut self, choices: &[Value]) {
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

    pub(super) fn on_response_final(&mut self, r: &Value) {
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

    pub(super) fn absorb_body(&mut self, v: &Value) {
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

    pub(super) fn absorb_message(&mut self, msg: &Value) {
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

    pub(super) fn absorb_responses_text(&mut self, r: &Value) {
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

    pub(super) fn absorb_responses_tool_calls(&mut self, r: &Value) {
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

    pub(super) fn absorb_embeddings(&mut self, data: &[Value]) {
        let mut rows: Vec<(u64, Vec<f32>)> = Vec::new();
        for (pos, item) in data.iter().enumerate() {
            let Some(embedding) = item.get("embedding") else {
                continue;
            };
            let row: Vec<f32> = match embedding {
                Value::Array(xs) => xs.iter().filter_map(Value::as_f64).map(|x| x as f32).collect(),
                Value::String(b64) => match base64_row(b64) {
                    Some(row) => row,
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

    pub(super) fn append_content(&mut self, content: &Value) {
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
    pub(super) fn clip<'a>(&mut self, s: &'a str) -> &'a str {
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

    pub(super) fn append_text(&mut self, s: &str) {
        let s = self.clip(s);
        self.text.push_str(s);
    }

    pub(super) fn replace_text(&mut self, s: &str) {
        // Past the cap the deltas already hold the longest prefix we may keep.
        if self.truncated {
            return;
        }
        self.assembled = self.assembled.saturating_sub(self.text.len());
        self.text.clear();
        self.append_text(s);
    }

    pub(super) fn ensure_tool_call(&mut self, key: u64) -> bool {
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
    pub(super) fn fill_tool_call(&mut self, key: u64, name: Option<&str>, args: Option<&str>) {
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

    pub(super) fn append_tool_args(&mut self, key: u64, fragment: &str) {
        if fragment.is_empty() || !self.ensure_tool_call(key) {
            return;
        }
        let fragment = self.clip(fragment);
        if let Some(call) = self.tool_calls.get_mut(&key) {
            call.arguments.push_str(fragment);
        }
    }

    pub(super) fn set_error(&mut self, e: &Value) {
        if self.error.is_none() {
            self.set_error_text(&error_message(e));
        }
    }

    /// The first error is kept: later ones are usually consequences of it.
    pub(super) fn set_error_text(&mut self, msg: &str) {
        if self.error.is_none() {
            let end = floor_boundary(msg, MAX_ERROR_LEN);
            self.error = Some(msg.get(..end).unwrap_or("").to_owned());
        }
    }
}
