//! Text generation endpoints: chat completions (with tool calls and SSE streaming), completions and responses.

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::body::{bad_request, channel, ok_json, Resp, STREAM_BUFFER};
use super::config::Behavior;
use super::ctx::{now_secs, Ctx};
use super::respond::{compose, word_count};
use crate::rng::Rng;

/// One SSE event to send, and whether a per-token delay precedes it.
struct Event {
    paced: bool,
    data: String,
}

/// Streams the events from a detached task so each event is flushed as its own body frame; the task
/// ends early when the client goes away (the receiver is dropped with the connection).
fn sse(events: Vec<Event>, behavior: Behavior, mut rng: Rng) -> Resp {
    let (tx, rx) = mpsc::channel::<Bytes>(STREAM_BUFFER);
    tokio::spawn(async move {
        for event in events {
            if event.paced {
                tokio::time::sleep(Ctx::token_delay(&behavior, &mut rng)).await;
            }
            if tx.send(Bytes::from(format!("data: {}\n\n", event.data))).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    channel("text/event-stream", rx)
}

/// The text of a message `content`: a string, or the `text` of its parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                _ => p.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Streamed text pieces whose concatenation is exactly `text` (the first word has no leading space).
fn pieces(text: &str) -> Vec<String> {
    text.split_whitespace().enumerate().map(|(i, w)| if i == 0 { w.to_string() } else { format!(" {w}") }).collect()
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

fn wants_stream(body: &Value) -> bool {
    body.get("stream").and_then(Value::as_bool) == Some(true)
}

pub(crate) async fn chat_completions(mut ctx: Ctx) -> Resp {
    let body = match ctx.take_json() {
        Ok(v) => v,
        Err(msg) => return bad_request(msg, None),
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return bad_request("'messages' is a required property", Some("messages"));
    };
    let texts: Vec<(Option<&str>, String)> = messages
        .iter()
        .map(|m| {
            let role = m.get("role").and_then(Value::as_str);
            (role, m.get("content").map(content_text).unwrap_or_default())
        })
        .collect();
    let prompt = texts
        .iter()
        .rev()
        .find(|(role, _)| *role == Some("user"))
        .or_else(|| texts.last())
        .map(|(_, text)| text.clone())
        .unwrap_or_default();
    let prompt_tokens = texts.iter().map(|(_, t)| word_count(t)).sum::<usize>().max(1);
    let model = ctx.model(&body);
    let id = ctx.id("chatcmpl-sim");
    let created = now_secs();
    let stream = wants_stream(&body);

    let tool = body
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.first())
        .and_then(|t| t.get("function"))
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str);
    let call_query = prompt.trim_start().strip_prefix("call:").map(str::trim);
    if let (Some(tool), Some(query)) = (tool, call_query) {
        let call = json!({
            "id": ctx.id("call_sim"),
            "type": "function",
            "function": { "name": tool, "arguments": json!({ "q": query }).to_string() },
        });
        let completion_tokens = word_count(query);
        if !stream {
            ctx.pace(completion_tokens.saturating_sub(1)).await;
            let message = json!({ "role": "assistant", "content": null, "tool_calls": [call] });
            return ok_json(&chat_object(
                &id,
                created,
                &model,
                message,
                "tool_calls",
                prompt_tokens,
                completion_tokens,
            ));
        }
        let mut delta_call = call;
        delta_call["index"] = json!(0);
        let deltas = vec![json!({ "tool_calls": [delta_call] })];
        let events = chat_events(&id, created, &model, deltas, "tool_calls", usage(prompt_tokens, completion_tokens));
        return sse(events, ctx.behavior, ctx.rng);
    }

    let content = compose(&prompt, &ctx.behavior, &mut ctx.rng);
    let completion_tokens = word_count(&content);
    if !stream {
        ctx.pace(completion_tokens.saturating_sub(1)).await;
        let message = json!({ "role": "assistant", "content": content, "refusal": null });
        return ok_json(&chat_object(&id, created, &model, message, "stop", prompt_tokens, completion_tokens));
    }
    let deltas = pieces(&content).into_iter().map(|p| json!({ "content": p })).collect();
    let events = chat_events(&id, created, &model, deltas, "stop", usage(prompt_tokens, completion_tokens));
    sse(events, ctx.behavior, ctx.rng)
}

fn chat_object(
    id: &str,
    created: u64,
    model: &str,
    message: Value,
    finish_reason: &str,
    prompt_tokens: usize,
    completion_tokens: usize,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason }],
        "usage": usage(prompt_tokens, completion_tokens),
    })
}

/// Role chunk, one paced chunk per delta, finish chunk, then the usage chunk with empty choices.
fn chat_events(id: &str, created: u64, model: &str, deltas: Vec<Value>, finish: &str, usage: Value) -> Vec<Event> {
    let chunk = |delta: Value, finish_reason: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
        })
        .to_string()
    };
    let mut events =
        vec![Event { paced: false, data: chunk(json!({ "role": "assistant", "content": "" }), Value::Null) }];
    for (i, delta) in deltas.into_iter().enumerate() {
        events.push(Event { paced: i > 0, data: chunk(delta, Value::Null) });
    }
    events.push(Event { paced: false, data: chunk(json!({}), json!(finish)) });
    let usage_chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    });
    events.push(Event { paced: false, data: usage_chunk.to_string() });
    events
}

pub(crate) async fn completions(mut ctx: Ctx) -> Resp {
    let body = match ctx.take_json() {
        Ok(v) => v,
        Err(msg) => return bad_request(msg, None),
    };
    let prompt = match body.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        // Batched prompts are answered as one; the sim returns a single choice.
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n")
        }
        _ => return bad_request("'prompt' is a required property and must be a string", Some("prompt")),
    };
    let model = ctx.model(&body);
    let id = ctx.id("cmpl-sim");
    let created = now_secs();
    let text = compose(&prompt, &ctx.behavior, &mut ctx.rng);
    let prompt_tokens = word_count(&prompt);
    let completion_tokens = word_count(&text);
    let object = |choice: Value| json!({ "id": id, "object": "text_completion", "created": created, "model": model, "choices": [choice] });
    if !wants_stream(&body) {
        ctx.pace(completion_tokens.saturating_sub(1)).await;
        let mut done = object(json!({ "text": text, "index": 0, "logprobs": null, "finish_reason": "stop" }));
        done["usage"] = usage(prompt_tokens, completion_tokens);
        return ok_json(&done);
    }
    let mut events: Vec<Event> = pieces(&text)
        .into_iter()
        .enumerate()
        .map(|(i, piece)| Event {
            paced: i > 0,
            data: object(json!({ "text": piece, "index": 0, "logprobs": null, "finish_reason": null })).to_string(),
        })
        .collect();
    let finish = object(json!({ "text": "", "index": 0, "logprobs": null, "finish_reason": "stop" }));
    events.push(Event { paced: false, data: finish.to_string() });
    let mut usage_chunk = object(Value::Null);
    usage_chunk["choices"] = json!([]);
    usage_chunk["usage"] = usage(prompt_tokens, completion_tokens);
    events.push(Event { paced: false, data: usage_chunk.to_string() });
    sse(events, ctx.behavior, ctx.rng)
}

/// The text of the last user item of a Responses API `input`.
fn responses_prompt(input: &Value) -> Option<String> {
    match input {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let texts: Vec<(&str, String)> = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => ("user", s.clone()),
                    _ => (
                        item.get("role").and_then(Value::as_str).unwrap_or("user"),
                        item.get("content").map(content_text).unwrap_or_default(),
                    ),
                })
                .collect();
            texts.iter().rev().find(|(role, _)| *role == "user").or_else(|| texts.last()).map(|(_, t)| t.clone())
        }
        _ => None,
    }
}

pub(crate) async fn responses(mut ctx: Ctx) -> Resp {
    let body = match ctx.take_json() {
        Ok(v) => v,
        Err(msg) => return bad_request(msg, None),
    };
    if wants_stream(&body) {
        return bad_request("The simulator does not support streaming on /v1/responses.", Some("stream"));
    }
    let Some(prompt) = body.get("input").and_then(responses_prompt) else {
        return bad_request("'input' is a required property and must be a string or a list of items", Some("input"));
    };
    let model = ctx.model(&body);
    let id = ctx.id("resp_sim");
    let message_id = ctx.id("msg_sim");
    let text = compose(&prompt, &ctx.behavior, &mut ctx.rng);
    let input_tokens = word_count(&prompt);
    let output_tokens = word_count(&text);
    ctx.pace(output_tokens.saturating_sub(1)).await;
    ok_json(&json!({
        "id": id,
        "object": "response",
        "created_at": now_secs(),
        "status": "completed",
        "model": model,
        "output": [{
            "type": "message",
            "id": message_id,
            "status": "completed",
            "role": "assistant",
            "content": [{ "type": "output_text", "text": text, "annotations": [] }],
        }],
        "output_text": text,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }))
}
