//! Hand-worked captures: streams split anywhere, bodies of every endpoint, bounded memory.
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
        c.push(&Bytes::copy_from_slice(p));
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
    assert_eq!(Format::from_content_type(Some(b"text/event-stream")), Format::Sse);
    assert_eq!(Format::from_content_type(Some(b"text/event-stream; charset=utf-8")), Format::Sse);
    assert_eq!(Format::from_content_type(Some(b"application/json")), Format::Json);
    assert_eq!(Format::from_content_type(Some(b"Application/JSON; charset=utf-8")), Format::Json);
    assert_eq!(Format::from_content_type(Some(b"application/problem+json")), Format::Json);
    assert_eq!(Format::from_content_type(Some(b"text/plain")), Format::Other);
    assert_eq!(Format::from_content_type(Some(b"audio/mpeg")), Format::Other);
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
        chat_chunk(json!({"tool_calls": [{"index": 1, "function": {"name": "get_time", "arguments": ":\"CET\"}"}}]})),
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
    let body =
        "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"upstream overloaded\"}\n\n";
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
    // Large frames (each over the cap), and a small first frame held as it came, then more.
    for first in [64 * 1024, 100] {
        let mut c = Capture::new(Format::Json, cap);
        let (head, rest) = body.as_bytes().split_at(first);
        c.push(&Bytes::copy_from_slice(head));
        for chunk in rest.chunks(64 * 1024) {
            c.push(&Bytes::copy_from_slice(chunk));
            assert!(c.held <= cap);
        }
        assert_eq!(c.rest.capacity(), 0);
        assert!(c.first.is_none(), "the held frame is released");
        let out = c.finish();
        assert!(out.truncated);
        assert!(out.usage.is_none());
        assert_eq!(out.text, "");
        assert_eq!(out.bytes, body.len() as u64);
    }
    let mut c = Capture::new(Format::Json, cap);
    for chunk in body.as_bytes().chunks(64 * 1024) {
        c.push(&Bytes::copy_from_slice(chunk));
    }
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
        c.push(&Bytes::copy_from_slice(chunk));
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
        c.push(&Bytes::copy_from_slice(chunk));
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

fn read_values(body: &[u8]) -> Option<Value> {
    read_fields(body).and_then(|f| fields_value(f.raw))
}

#[test]
fn only_the_fields_read_are_parsed_and_escaped_keys_still_count() {
    let plain = br#"{"id":"x","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Paris"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
    let v = read_values(plain).unwrap();
    assert!(v.get("id").is_none() && v.get("model").is_none());
    assert_eq!(v["choices"][0]["message"]["content"], "Paris");
    let c = capture_all(Format::Json, BIG, plain);
    assert_eq!(c.text, "Paris");
    assert_eq!(c.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((3, 1)));
    // A key spelled with an escape is the same key: the full parse reads it.
    let escaped = br#"{"ch\u006fices":[{"index":0,"message":{"content":"Rome"}}]}"#;
    assert!(read_values(escaped).is_none());
    assert_eq!(capture_all(Format::Json, BIG, escaped).text, "Rome");
    // The last of a repeated key wins, as in a full parse.
    let twice = br#"{"text":"a","text":"b"}"#;
    assert_eq!(read_values(twice).unwrap()["text"], "b");
    assert_eq!(capture_all(Format::Json, BIG, twice).text, "b");
}

/// The capture as the value reading alone would make it, for comparison with the fast paths.
fn by_values(body: &[u8]) -> Captured {
    let mut c = Capture::new(Format::Json, BIG);
    c.bytes = body.len() as u64;
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        c.absorb_body(&v);
    }
    c.finish()
}

#[test]
fn plain_answers_read_as_the_values_read_them() {
    for body in [
        r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Paris"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        r#"{"choices":[{"index":1,"message":{"content":"b"}},{"index":0,"message":{"content":"a"}}]}"#,
        r#"{"choices":[{"message":null,"text":"t"}]}"#,
        r#"{"choices":[{"text":"legacy"}],"usage":null}"#,
        r#"{"choices":[{"index":"0","message":{"content":"x"}}]}"#,
        r#"{"choices":[{"index":0,"message":{"content":"x"},"message":{"content":"y"}}]}"#,
        r#"{"choices":[{"message":{"content":[{"type":"text","text":"p"}]}}]}"#,
        r#"{"choices":[{"message":{"content":"x","tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}}]}"#,
        r#"{"error":null,"choices":[{"message":{"content":"e\"s\u00e9"}}],"object":"chat.completion"}"#,
        r#"{"error":{"message":"no"},"choices":[]}"#,
        r#"{"choices":[1,2],"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#,
        r#"{"choices":[],"object":"chat.completion","text":nul}"#,
        // Malformed inside the fields read: the value reading gets nothing, and so must the fast one.
        r#"{"choices":[{"index":0,"message":{"content":"x"},"logprobs":tru}]}"#,
        r#"{"choices":[{"index":0,"message":{"content":"x"}}],"usage":{"prompt_tokens":1,}}"#,
        r#"{"choices":[{"index":0,"message":{"content":"x","refusal":01}}]}"#,
        // Numbers past f64's range, which a full parse refuses.
        r#"{"choices":[{"index":0,"message":{"content":"x"},"logprobs":1e400}]}"#,
        r#"{"choices":[{"index":0,"message":{"content":"x"}}],"usage":{"prompt_tokens":-2E+309}}"#,
        r#"{"choices":[{"index":0,"message":{"content":"x"}}],"usage":{"prompt_tokens":1e-400}}"#,
        // Choices and messages of other shapes.
        r#"{"choices":[[0,{"content":"x"}]]}"#,
        r#"{"choices":{"index":0,"message":{"content":"x"}}}"#,
        r#"{"choices":[{"index":0,"message":[{"content":"x"}]}]}"#,
        r#"{"choices":[{"index":0,"message":{"content":"x"}},7]}"#,
    ] {
        assert_eq!(capture_all(Format::Json, BIG, body.as_bytes()), by_values(body.as_bytes()), "{body}");
    }
    // The first of those is read without a value tree; content parts are not.
    let fast = |b: &str| read_fields(b.as_bytes()).as_ref().and_then(plain::read).is_some();
    assert!(fast(r#"{"choices":[{"index":0,"message":{"content":"Paris"}}],"usage":{"prompt_tokens":3}}"#));
    assert!(!fast(r#"{"choices":[{"message":{"content":[{"type":"text","text":"p"}]}}]}"#));
}

#[test]
fn embeddings_answers_read_as_the_values_read_them() {
    let b64 = |xs: &[f32]| {
        let bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        base64_text(&bytes)
    };
    let one_two = b64(&[1.0, -2.5]);
    for body in [
        r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,-3,1e-3]}],"model":"m","usage":{"prompt_tokens":3,"total_tokens":3}}"#.to_string(),
        r#"{"data":[{"index":1,"embedding":[1]},{"index":0,"embedding":[2,-0]},{"embedding":[3]},7,{"index":0}]}"#.to_string(),
        format!(r#"{{"data":[{{"index":0,"embedding":"{one_two}"}},{{"index":1,"embedding":"not base64!"}}]}}"#),
        r#"{"data":[{"embedding":[1,null,"x",2]}]}"#.to_string(),
        r#"{"data":[{"embedding":null},{"embedding":{"a":1}},{"embedding":[1],"embedding":[2]}],"error":null}"#.to_string(),
        r#"{"data":[],"object":"response"}"#.to_string(),
        r#"{"data":[{"embedding":[1]}],"choices":[{"text":"t"}]}"#.to_string(),
        r#"{"data":[{"embedding":[1]}],"error":{"message":"no"}}"#.to_string(),
        r#"{"data":{"embedding":[1]}}"#.to_string(),
        r#"{"data":[{"index":"1","embedding":[1]},{"index":-1,"embedding":[2]},{"index":1.0,"embedding":[3]}]}"#.to_string(),
        r#"{"data":[{"embedding":[0.30000000000000004,3.4028235677973366e38,1e-50,123456789012345678901234567890]}]}"#.to_string(),
        // Malformed or out of range inside the fields read: nothing, as by the value reading.
        r#"{"data":[{"embedding":[1,]}]}"#.to_string(),
        r#"{"data":[{"embedding":[1e400]}]}"#.to_string(),
        r#"{"data":[{"embedding":[1]}],"usage":{"prompt_tokens":01}}"#.to_string(),
        r#"{"data":[{"embedding":[1],"x":tru}]}"#.to_string(),
    ] {
        assert_eq!(capture_all(Format::Json, BIG, body.as_bytes()), by_values(body.as_bytes()), "{body}");
    }
    let fast = |b: &str| read_fields(b.as_bytes()).as_ref().and_then(plain::embeddings).is_some();
    assert!(fast(r#"{"object":"list","data":[{"index":0,"embedding":[0.5]}],"usage":{"prompt_tokens":1}}"#));
    assert!(fast(&format!(r#"{{"data":[{{"embedding":"{one_two}"}}]}}"#)));
    assert!(!fast(r#"{"data":[{"embedding":[1,null]}]}"#));
    // A malformed field the readings do not take is not checked (the value reading of just the
    // fields read does the same): the scan finds the fields, and the rows are read.
    let odd = br#"{"id":01,"data":[{"embedding":[1]}]}"#;
    assert!(read_fields(odd).is_some_and(|f| !f.checked()));
    assert_eq!(capture_all(Format::Json, BIG, odd).embeddings, vec![vec![1.0]]);
    assert!(read_fields(br#"{"id":1,"data":[]}"#).is_some_and(|f| f.checked()));
    // A large body is checked whole too, its rows read in the same pass; what it yields is the same.
    let row: Vec<String> = (0..1536).map(|i| format!("{}", f64::from(i) * -0.000123)).collect();
    let big = format!(
        r#"{{"object":"list","data":[{{"index":0,"embedding":[{}]}}],"usage":{{"prompt_tokens":2}}}}"#,
        row.join(",")
    );
    assert!(big.len() > 16 << 10 && read_fields(big.as_bytes()).is_some_and(|f| f.checked()));
    assert_eq!(capture_all(Format::Json, 1 << 20, big.as_bytes()), by_values(big.as_bytes()));
    assert_eq!(capture_all(Format::Json, 1 << 20, big.as_bytes()).embeddings[0].len(), 1536);
    let long = format!(r#"{{"choices":[{{"index":0,"message":{{"content":"{}"}}}}]}}"#, "word ".repeat(4000));
    assert!(long.len() > 16 << 10 && read_fields(long.as_bytes()).is_some_and(|f| f.checked()));
    assert_eq!(capture_all(Format::Json, 1 << 20, long.as_bytes()), by_values(long.as_bytes()));
}

/// Standard base64 with padding, for building test bodies.
fn base64_text(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
        }
        out.push_str(&"=".repeat(3 - chunk.len()));
    }
    out
}

use proptest::strategy::Strategy as _;

proptest::proptest! {
    /// Over generated chat and completion answers, the fast readings (only the fields read,
    /// and plain choices without a value tree) capture exactly what the value reading does.
    #[test]
    fn fast_readings_agree_with_values(
        choices in proptest::collection::vec(
            (
                proptest::option::of(proptest::prop_oneof![
                    proptest::strategy::Just(json!(0)), proptest::strategy::Just(json!(1)),
                    proptest::strategy::Just(json!("0")), proptest::strategy::Just(json!(0.0)),
                    proptest::strategy::Just(json!(-1)), proptest::strategy::Just(Value::Null),
                ]),
                proptest::option::of(proptest::prop_oneof![
                    ".{0,12}".prop_map(|t| json!({"role": "assistant", "content": t})),
                    proptest::strategy::Just(json!({"content": null})),
                    proptest::strategy::Just(Value::Null),
                    ".{0,6}".prop_map(|t| json!({"content": [{"type": "text", "text": t}, "raw"]})),
                    ".{0,6}".prop_map(|t| json!({"content": t, "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]})),
                    proptest::strategy::Just(json!({"content": 7})),
                ]),
                proptest::option::of(proptest::prop_oneof![".{0,8}".prop_map(Value::String), proptest::strategy::Just(json!(3))]),
            ),
            0..4,
        ),
        usage in proptest::option::of(proptest::prop_oneof![
            (0u64..1000, 0u64..1000).prop_map(|(p, c)| json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})),
            (0u64..1000).prop_map(|n| json!({"input_tokens": n, "output_tokens": 2.5})),
            proptest::strategy::Just(Value::Null),
        ]),
        error in proptest::option::of(proptest::prop_oneof![proptest::strategy::Just(Value::Null), proptest::strategy::Just(json!({"message": "bad"}))]),
        id in ".{0,8}",
    ) {
        let mut body = serde_json::Map::new();
        body.insert("id".into(), json!(id));
        body.insert("object".into(), json!("chat.completion"));
        let choices: Vec<Value> = choices
            .into_iter()
            .map(|(index, message, text)| {
                let mut c = serde_json::Map::new();
                if let Some(i) = index { c.insert("index".into(), i); }
                if let Some(m) = message { c.insert("message".into(), m); }
                if let Some(t) = text { c.insert("text".into(), t); }
                Value::Object(c)
            })
            .collect();
        body.insert("choices".into(), Value::Array(choices));
        if let Some(u) = usage { body.insert("usage".into(), u); }
        if let Some(e) = error { body.insert("error".into(), e); }
        let text = Value::Object(body).to_string();
        proptest::prop_assert_eq!(capture_all(Format::Json, BIG, text.as_bytes()), by_values(text.as_bytes()), "{}", text);
    }
}

proptest::proptest! {
    /// Over generated embeddings answers, the fast reading captures exactly what the value
    /// reading does (rows of every number shape serde writes, base64 rows, odd elements).
    #[test]
    fn embeddings_readings_agree_with_values(
        rows in proptest::collection::vec(
            proptest::prop_oneof![
                (
                    proptest::option::of(proptest::prop_oneof![
                        (0u64..4).prop_map(|i| json!(i)), proptest::strategy::Just(json!(-1)),
                        proptest::strategy::Just(json!("1")), proptest::strategy::Just(Value::Null),
                    ]),
                    proptest::option::of(proptest::prop_oneof![
                        proptest::collection::vec(proptest::num::f32::ANY.prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)), 0..6).prop_map(Value::Array),
                        proptest::collection::vec(proptest::num::f64::NORMAL.prop_map(|f| json!(f)), 0..6).prop_map(Value::Array),
                        proptest::collection::vec(proptest::num::i64::ANY.prop_map(|n| json!(n)), 0..4).prop_map(Value::Array),
                        proptest::collection::vec(proptest::num::f32::NORMAL, 0..4).prop_map(|xs| {
                            json!(base64_text(&xs.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()))
                        }),
                        proptest::strategy::Just(json!([1, null])),
                        proptest::strategy::Just(json!("*")),
                        proptest::strategy::Just(Value::Null),
                    ]),
                )
                    .prop_map(|(index, embedding)| {
                        let mut row = serde_json::Map::new();
                        row.insert("object".into(), json!("embedding"));
                        if let Some(i) = index { row.insert("index".into(), i); }
                        if let Some(e) = embedding { row.insert("embedding".into(), e); }
                        Value::Object(row)
                    }),
                proptest::strategy::Just(json!(7)),
            ],
            0..4,
        ),
        usage in proptest::option::of((0u64..1000).prop_map(|n| json!({"prompt_tokens": n, "total_tokens": n}))),
        object in proptest::option::of(proptest::prop_oneof![proptest::strategy::Just("list"), proptest::strategy::Just("response")]),
        pretty in proptest::bool::ANY,
    ) {
        // Rows holding anything but numbers, and `object: response`, are left to the value reading.
        let by_value = object == Some("response")
            || rows.iter().any(|r| r.get("embedding").and_then(Value::as_array).is_some_and(|a| !a.iter().all(Value::is_number)));
        let mut body = serde_json::Map::new();
        if let Some(o) = object { body.insert("object".into(), json!(o)); }
        body.insert("data".into(), Value::Array(rows));
        body.insert("model".into(), json!("m"));
        if let Some(u) = usage { body.insert("usage".into(), u); }
        let body = Value::Object(body);
        let text = if pretty { serde_json::to_string_pretty(&body).unwrap() } else { body.to_string() };
        proptest::prop_assert_eq!(capture_all(Format::Json, BIG, text.as_bytes()), by_values(text.as_bytes()), "{}", text);
        let fields = read_fields(text.as_bytes());
        proptest::prop_assert!(fields.as_ref().is_some_and(|f| f.checked()));
        proptest::prop_assert_eq!(fields.as_ref().and_then(plain::embeddings).is_some(), !by_value, "{}", text);
        // A malformed field the readings do not take (so the whole-body check refuses the body
        // and the scan finds the fields) changes nothing.
        let odd = format!("{{\"id\":01,{}", &text[1..]);
        let mut want = by_values(text.as_bytes());
        want.bytes = odd.len() as u64;
        proptest::prop_assert!(read_fields(odd.as_bytes()).is_some_and(|f| !f.checked()));
        proptest::prop_assert_eq!(capture_all(Format::Json, BIG, odd.as_bytes()), want, "{}", odd);
    }
}

proptest::proptest! {
    /// Over generated `usage` objects (no repeated keys), the scan's counts are serde's.
    #[test]
    fn usage_scan_agrees_with_serde(
        fields in proptest::collection::btree_map(
            proptest::prop_oneof![
                proptest::strategy::Just("prompt_tokens".to_string()), proptest::strategy::Just("input_tokens".to_string()),
                proptest::strategy::Just("completion_tokens".to_string()), proptest::strategy::Just("output_tokens".to_string()),
                proptest::strategy::Just("total_tokens".to_string()), "[a-z_\"\\\\]{0,6}",
            ],
            proptest::prop_oneof![
                proptest::num::u64::ANY.prop_map(|n| json!(n)), (0u64..100_000).prop_map(|n| json!(n)),
                proptest::num::i64::ANY.prop_map(|n| json!(n)), proptest::num::f64::NORMAL.prop_map(|f| json!(f)),
                proptest::strategy::Just(Value::Null), ".{0,4}".prop_map(|s| json!(s)),
                proptest::strategy::Just(json!({"cached_tokens": 3, "x": [1, {"prompt_tokens": 9}]})),
            ],
            0..6,
        ),
        pretty in proptest::bool::ANY,
    ) {
        let obj = Value::Object(fields.into_iter().collect());
        let text = if pretty { serde_json::to_string_pretty(&obj).unwrap() } else { obj.to_string() };
        let by_serde = serde_json::from_str::<UsageFields>(&text).ok().and_then(|u| u.usage());
        proptest::prop_assert_eq!(usage_of(text.as_bytes()), by_serde, "{}", text);
    }
}

#[test]
fn usage_numbers_the_scan_does_not_read_go_to_serde() {
    for (raw, want) in [
        (r#"{"prompt_tokens": 12, "completion_tokens": 3}"#, Some((12, 3))),
        (r#"{"prompt_tokens": null, "input_tokens": 4}"#, Some((4, 0))),
        (r#"{"prompt_tokens": 2.9, "output_tokens": 1e2}"#, Some((2, 100))),
        (r#"{"prompt_tokens": 123456789012345678901}"#, Some((u64::MAX, 0))),
        (r#"{"prompt_tokens": -1}"#, None),
        (r#"{"prompt_tokens": 01}"#, None),
        (r#"{"\u0070rompt_tokens": 5}"#, Some((5, 0))),
        (r#"{"prompt_tokens": "5"}"#, None),
        ("null", None),
    ] {
        let got = usage_of(raw.as_bytes()).map(|u| (u.input_tokens, u.output_tokens));
        assert_eq!(got, want, "{raw}");
    }
}

/// A usage-only capture of `body` fed as `pieces`.
fn usage_only_pieces<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Captured {
    let mut c = Capture::usage_only(Format::Json, BIG);
    for p in pieces {
        c.push(&Bytes::copy_from_slice(p));
    }
    c.finish()
}

/// A body in several frames is metered as the same body in one: whether its end answers (the
/// usage is the last field, or a later one follows it) or the frames are gathered (the usage
/// first, in a string, nested, absent; a body that is not an object; an end that does not parse).
#[test]
fn usage_only_captures_read_the_end_of_a_body_in_frames_as_the_whole_body() {
    let row: Vec<String> = (0..1536).map(|i| format!("{}", f64::from(i) * -0.000123)).collect();
    let big = format!(
        r#"{{"object":"list","data":[{{"index":0,"embedding":[{}]}}],"usage":{{"prompt_tokens":2,"total_tokens":2}}}}"#,
        row.join(",")
    );
    let filler = "x".repeat(6000);
    let bodies = [
        big.clone(),
        format!("\u{feff} {}  \n", big),
        format!(r#"{{"usage":{{"prompt_tokens":4}},"text":"{filler}"}}"#),
        format!(r#"{{"text":"{filler}","usage":{{"prompt_tokens":5,"completion_tokens":1}},"id":"x"}}"#),
        format!(r#"{{"text":"{filler} \",\"usage\":{{\"prompt_tokens\":9}}}}"}}"#),
        format!(r#"{{"a":{{"text":"{filler}","usage":{{"prompt_tokens":6}}}}}}"#),
        format!(r#"{{"text":"{filler}"}}"#),
        format!(r#"[{{"text":"{filler}","usage":{{"prompt_tokens":7}}}}]"#),
        format!(r#"x{{"text":"{filler}","usage":{{"prompt_tokens":8}}}}"#),
        format!(r#"{{"text":"{filler}","usage":{{"prompt_tokens":3,"completion_tokens":}}}}"#),
    ];
    for body in &bodies {
        let body = body.as_bytes();
        let whole = usage_only_pieces([body]);
        for cut in [1, body.len() / 2, body.len() - 100, body.len() - 5000, body.len() - 1] {
            let (a, b) = body.split_at(cut);
            assert_eq!(usage_only_pieces([a, b]), whole, "cut at {cut}");
        }
        for seed in 0..8 {
            assert_eq!(usage_only_pieces(random_pieces(body, seed, 3000)), whole, "seed {seed}");
        }
    }
    // The usage of those that have one where the end answers.
    assert_eq!(
        usage_only_pieces([&big.as_bytes()[..10], &big.as_bytes()[10..]]).usage,
        usage_of(br#"{"prompt_tokens":2,"total_tokens":2}"#)
    );
    let in_string = usage_only_pieces(random_pieces(bodies[4].as_bytes(), 1, 3000));
    assert_eq!(in_string.usage, None);
}

/// A body that broke off: JSON is read only when what arrived could be whole (it ends with `}`,
/// as when only a chunked body's last chunk was lost) or is a stream labelled JSON; a stream
/// keeps what arrived.
#[test]
fn a_body_cut_short_is_read_only_when_it_could_be_whole() {
    let body =
        json!({"choices": [{"index": 0, "message": {"content": "whole"}}], "usage": {"prompt_tokens": 2}}).to_string();
    let cut = |format: Format, pieces: &[&[u8]]| {
        let mut c = Capture::new(format, BIG);
        for p in pieces {
            c.push(&Bytes::copy_from_slice(p));
        }
        c.cut_short();
        c.finish()
    };
    let (head, rest) = body.as_bytes().split_at(20);
    let partial = &rest[..rest.len() - 5];
    assert_eq!(
        cut(Format::Json, &[head, partial]),
        Captured { bytes: (head.len() + partial.len()) as u64, ..Captured::default() }
    );
    assert_eq!(cut(Format::Json, &[head, rest]), capture_all(Format::Json, BIG, body.as_bytes()));
    let stream = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"so far\"}}]}\n\ndata: {\"choi";
    assert_eq!(cut(Format::Sse, &[stream.as_bytes()]).text, "so far");
    assert_eq!(cut(Format::Json, &[stream.as_bytes()]).text, "so far");
}

/// After the first frame, small frames are copied rather than held (each held frame keeps its
/// read buffer alive), large ones held as they came; the capture is the same either way.
#[test]
fn small_frames_are_copied_and_large_ones_held() {
    let body = json!({"text": "y".repeat(40_000), "usage": {"prompt_tokens": 3}}).to_string();
    let whole = capture_all(Format::Json, BIG, body.as_bytes());
    let mut c = Capture::new(Format::Json, BIG);
    for piece in body.as_bytes().chunks(100) {
        c.push(&Bytes::copy_from_slice(piece));
    }
    assert!(c.rest.is_empty());
    assert_eq!(c.small.len(), body.len() - 100);
    assert_eq!(c.finish(), whole);
    let mut c = Capture::new(Format::Json, BIG);
    let (a, rest) = body.as_bytes().split_at(100);
    let (b, rest) = rest.split_at(50);
    let (big, d) = rest.split_at(rest.len() - 100);
    assert!(big.len() >= SHARE_FROM);
    for piece in [a, b, big, d] {
        c.push(&Bytes::copy_from_slice(piece));
    }
    assert_eq!(c.rest.iter().map(Bytes::len).collect::<Vec<_>>(), [b.len(), big.len()]);
    assert_eq!(c.small.len(), d.len());
    assert_eq!(c.finish(), whole);
}
