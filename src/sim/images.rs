//! Image endpoints (generations, edits, variations) answering with a fixed 1x1 PNG, and the model list.

use http::StatusCode;
use serde_json::{json, Value};

use super::body::{bad_request, error_body, ok_json, Resp};
use super::ctx::{now_secs, Ctx};
use super::multipart::{self, Part};

/// A valid 1x1 RGBA PNG; image content is irrelevant to routing, only the response shape matters.
const PNG_1X1_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// The real API's maximum images per request.
const MAX_IMAGES: u64 = 10;

pub(crate) fn generations(mut ctx: Ctx) -> Resp {
    let body = match ctx.take_json() {
        Ok(v) => v,
        Err(msg) => return bad_request(msg, None),
    };
    let Some(prompt) = body.get("prompt").and_then(Value::as_str).filter(|p| !p.is_empty()) else {
        return bad_request("'prompt' is a required non-empty string", Some("prompt"));
    };
    let n = match body.get("n") {
        None | Some(Value::Null) => Some(1),
        Some(v) => v.as_u64(),
    };
    let format = body.get("response_format").and_then(Value::as_str).unwrap_or("b64_json");
    answer(n, format, Some(prompt))
}

/// Edits and variations: the sim only needs a prompt or an image part to answer.
pub(crate) fn form(mut ctx: Ctx) -> Resp {
    let parts = match ctx.take_multipart() {
        Ok(p) => p,
        Err(msg) => return bad_request(msg, None),
    };
    let text = |name: &str| multipart::field(&parts, name).map(Part::text).map(|t| t.trim().to_string());
    let prompt = text("prompt").filter(|p| !p.is_empty());
    let has_image = parts.iter().any(|p| p.name == "image" || p.name == "image[]");
    if prompt.is_none() && !has_image {
        return bad_request("Missing required parameter: 'image'.", Some("image"));
    }
    let n = match text("n") {
        None => Some(1),
        Some(s) => s.parse::<u64>().ok(),
    };
    let format = text("response_format").unwrap_or_else(|| "b64_json".to_string());
    answer(n, &format, prompt.as_deref())
}

fn answer(n: Option<u64>, format: &str, prompt: Option<&str>) -> Resp {
    let n = match n {
        Some(n) if (1..=MAX_IMAGES).contains(&n) => n,
        _ => {
            let msg = format!("'n' must be an integer between 1 and {MAX_IMAGES}");
            return bad_request(msg, Some("n"));
        }
    };
    let as_url = match format {
        "b64_json" => false,
        "url" => true,
        other => {
            let msg = format!("'{other}' is not one of ['url', 'b64_json'] - 'response_format'");
            return bad_request(msg, Some("response_format"));
        }
    };
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let mut item = if as_url {
                json!({ "url": format!("https://sim.invalid/img/{i}.png") })
            } else {
                json!({ "b64_json": PNG_1X1_B64 })
            };
            if let Some(p) = prompt {
                item["revised_prompt"] = json!(p);
            }
            item
        })
        .collect();
    ok_json(&json!({ "created": now_secs(), "data": data }))
}

fn model_object(name: &str) -> Value {
    json!({ "id": name, "object": "model", "created": 0, "owned_by": "shadowroute-sim" })
}

pub(crate) fn list_models(ctx: &Ctx) -> Resp {
    ok_json(&json!({ "object": "list", "data": [model_object(&ctx.state.name)] }))
}

pub(crate) fn get_model(ctx: &Ctx, id: &str) -> Resp {
    if id == ctx.state.name {
        return ok_json(&model_object(id));
    }
    error_body(
        StatusCode::NOT_FOUND,
        format!("The model '{id}' does not exist"),
        "invalid_request_error",
        Some("model"),
        Some("model_not_found"),
    )
}
