//! `POST /v1/feedback`: an application's score for a request the router served, attached to the model that served it.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::Value;

use super::error::{json_response, ProxyError};
use super::headers::X_REQUEST_ID;
use super::RespBody;
use crate::app::SharedApp;
use crate::server::ReqBody;
use crate::store::{self, FeedbackRecord, Write};

const MAX_FEEDBACK_BODY: u64 = 64 * 1024;

/// Validates `{"request_id", "score"}`; score is a number in [0, 1] or a boolean.
pub fn parse(body: &Bytes) -> Result<(String, f64), ProxyError> {
    let bad = |m: &str| ProxyError::InvalidFeedback(m.to_string());
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ProxyError::InvalidFeedback(format!("invalid JSON: {e}")))?;
    let id = v
        .get("request_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("`request_id` must be a non-empty string"))?;
    let score = match v.get("score") {
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        Some(Value::Number(n)) => {
            n.as_f64().filter(|x| (0.0..=1.0).contains(x)).ok_or_else(|| bad("`score` must be between 0 and 1"))?
        }
        _ => return Err(bad("`score` must be a number between 0 and 1 or a boolean")),
    };
    Ok((id.to_string(), score))
}

pub async fn handle(
    app: &SharedApp,
    body: ReqBody,
    request_id: &HeaderValue,
) -> Result<Response<RespBody>, ProxyError> {
    let body = super::request::body_bytes(body, MAX_FEEDBACK_BODY)?;
    let (id, score) = parse(&body)?;
    let served = app.shadow.lookup_served(&id).ok_or_else(|| ProxyError::UnknownRequestId(id.clone()))?;
    {
        let mut evals = app.shadow.evaluations();
        // Feedback speaks for the leader only while it is still the leader it was given for.
        if let Some(eval) = evals.get_mut(&*served.route).filter(|e| *e.leader == *served.model) {
            eval.feedback.push(score);
        }
    }
    app.store.send(Write::Feedback(FeedbackRecord {
        at_ms: store::now_ms(),
        route: served.route.to_string(),
        model: served.model.to_string(),
        request_id: id,
        score,
    }));
    let mut resp = json_response(
        StatusCode::OK,
        &serde_json::json!({"status": "recorded", "route": &*served.route, "model": &*served.model, "score": score}),
    );
    resp.headers_mut().insert(X_REQUEST_ID, request_id.clone());
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_validated() {
        let p = |s: &str| parse(&Bytes::from(s.to_string()));
        assert_eq!(p(r#"{"request_id":"r1","score":0.5}"#).unwrap(), ("r1".into(), 0.5));
        assert_eq!(p(r#"{"request_id":"r1","score":true}"#).unwrap(), ("r1".into(), 1.0));
        for bad in [
            r#"{"request_id":"r1","score":1.5}"#,
            r#"{"request_id":"","score":1}"#,
            r#"{"score":1}"#,
            r#"{"request_id":"r","score":"good"}"#,
            "nope",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}
