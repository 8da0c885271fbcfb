//! The admin listener: health, readiness, metrics, config and routes, and token-guarded writes.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::app::SharedApp;
use crate::config::AdminToken;
use crate::control::{Command, Operator};
use crate::proxy::error::{error_body, json_response};
use crate::proxy::{full, RespBody};
use crate::raw_headers::RawHeaders;
use crate::server::{Reply, Request};

/// Serves one admin request.
pub async fn handle(app: SharedApp, req: Request) -> Reply {
    let path = req.uri.path().trim_end_matches('/').to_string();
    let resp = match (req.method.clone(), path.as_str()) {
        (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (Method::GET, "/readyz") => readyz(&app),
        (Method::GET, "/metrics") => {
            let mut r = Response::new(full(Bytes::from(app.metrics.encode())));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        (Method::GET, "/admin/config") => json_response(StatusCode::OK, &config_view(&app)),
        (Method::GET, "/admin/routes") => json_response(StatusCode::OK, &routes_view(&app)),
        (Method::POST, "/admin/reload") => match authorize(&app, &req.headers) {
            Ok(()) => reload(&app).await,
            Err(resp) => *resp,
        },
        (Method::GET, "/admin/decisions") => {
            let log: Vec<_> = app.board().log.iter().cloned().collect();
            json_response(StatusCode::OK, &json!({ "decisions": log }))
        }
        (Method::POST, p) if p.starts_with("/admin/routes/") => match authorize(&app, &req.headers) {
            Ok(()) => operate(&app, p, req).await,
            Err(resp) => *resp,
        },
        (_, "/healthz" | "/readyz" | "/metrics" | "/admin/config" | "/admin/routes" | "/admin/reload") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this admin path", "method_not_allowed")
        }
        _ => error(StatusCode::NOT_FOUND, &format!("unknown admin path {path}"), "unknown_url"),
    };
    resp.into()
}

/// The answer to a request body the server could not read.
fn body_error(e: &crate::server::BodyError) -> Response<RespBody> {
    match e {
        crate::server::BodyError::TooLarge { .. } => {
            error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string(), "request_too_large")
        }
        crate::server::BodyError::Invalid(_) => error(StatusCode::BAD_REQUEST, &e.to_string(), "invalid_body"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<RespBody> {
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn error(status: StatusCode, message: &str, code: &str) -> Response<RespBody> {
    let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
    json_response(status, &error_body(message, kind, code))
}

fn readyz(app: &SharedApp) -> Response<RespBody> {
    if app.draining() {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if !app.ready() {
        text(StatusCode::SERVICE_UNAVAILABLE, "not ready: a route has no leader\n")
    } else {
        text(StatusCode::OK, "ready\n")
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn config_view(app: &SharedApp) -> Value {
    let snap = app.snapshot();
    let last = &snap.last_reload;
    json!({
        "hash": snap.config.hash,
        "generation": snap.generation,
        "loaded_at": unix(snap.loaded_at),
        "last_reload": {
            "at": unix(last.at),
            "ok": last.error.is_none(),
            "error": last.error.as_ref().map(|e| e.to_string()),
            "errors": last.error.as_ref().map(|e| e.to_json()),
        },
        "routes": snap.routes.iter().map(|r| r.route.name.clone()).collect::<Vec<_>>(),
        "models": snap.config.models.keys().cloned().collect::<Vec<_>>(),
    })
}

/// The JSON of `GET /admin/routes` (also what the demo and `shadowroute status` render).
pub fn routes_view(app: &SharedApp) -> Value {
    let snap = app.snapshot();
    let board = app.board();
    let evals = app.shadow.evaluations();
    let routes: Vec<Value> = snap
        .routes
        .iter()
        .map(|r| {
            let names: Vec<String> = r.candidates.iter().map(|c| c.model.clone()).collect();
            let evidence = evals.get(&r.route.name).map(|e| crate::evaluate::evidence::route_json(e, &names, &r.route.policy));
            json!({
                "name": r.route.name,
                "modalities": r.route.modalities.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                "leader": r.leader,
                "configured_leader": r.route.leader,
                "fallbacks": r.route.fallbacks,
                "candidates": r.candidates.iter().map(|c| json!({"model": c.model, "sample": c.sample})).collect::<Vec<_>>(),
                "mode": r.route.policy.mode.as_str(),
                "comparator": comparator_name(&r.route),
                "evidence": evidence,
                "decision": board.routes.get(&r.route.name),
            })
        })
        .collect();
    json!({ "routes": routes })
}

/// The comparator a route's shadow traffic is judged by, as people call it.
fn comparator_name(route: &crate::config::Route) -> String {
    use crate::proxy::modality::Modality;
    if route.modalities.iter().all(|m| matches!(m, Modality::Speech | Modality::Image)) {
        "none (latency and errors only)".into()
    } else if route.modalities == [Modality::Embeddings] {
        "neighbourhood (rank correlation)".into()
    } else {
        route.evaluate.agreement.name()
    }
}

/// Admin writes need `Authorization: Bearer <token>`; with no token configured they are refused.
fn authorize(app: &SharedApp, headers: &RawHeaders) -> Result<(), Box<Response<RespBody>>> {
    let configured = match &app.snapshot().config.server.admin_token {
        AdminToken::None => None,
        AdminToken::Env(var) => std::env::var(var).ok(),
        AdminToken::File(path) => std::fs::read_to_string(path).ok(),
    };
    let Some(expected) = configured.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "admin writes are disabled: no admin token is configured (server.admin_token_env or admin_token_file)",
            "admin_disabled",
        )));
    };
    let given = headers.get_str("authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Box::new(error(StatusCode::UNAUTHORIZED, "missing or wrong admin bearer token", "unauthorized")))
    }
}

/// Compares without an early exit, so timing does not reveal how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0);
    }
    diff == 0
}

/// `POST /admin/routes/{route}/promote|rollback|pause|resume`, through control.
async fn operate(app: &SharedApp, path: &str, req: Request) -> Response<RespBody> {
    let rest = path.trim_start_matches("/admin/routes/");
    let Some((route, verb)) = rest.rsplit_once('/') else {
        return error(
            StatusCode::NOT_FOUND,
            "expected /admin/routes/{route}/promote|rollback|pause|resume",
            "unknown_url",
        );
    };
    let action = match verb {
        "promote" => {
            let body = match req.body {
                Ok(b) => b,
                Err(e) => return body_error(&e),
            };
            let model = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("model").and_then(Value::as_str).map(str::to_string));
            match model {
                Some(m) => Operator::Promote(m),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "promote needs a JSON body {\"model\": \"<name>\"}",
                        "invalid_body",
                    )
                }
            }
        }
        "rollback" => Operator::Rollback,
        "pause" => Operator::Pause,
        "resume" => Operator::Resume,
        other => return error(StatusCode::NOT_FOUND, &format!("unknown route action `{other}`"), "unknown_url"),
    };
    let (tx, rx) = oneshot::channel();
    let cmd = Command::Operate { route: route.to_string(), action, reply: tx };
    if app.control.send(cmd).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the router is shutting down", "draining");
    }
    match rx.await {
        Ok(Ok(message)) => json_response(StatusCode::OK, &json!({"status": "ok", "message": message})),
        Ok(Err((status, message))) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            error(status, &message, "rejected")
        }
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the router is shutting down", "draining"),
    }
}

async fn reload(app: &SharedApp) -> Response<RespBody> {
    let (tx, rx) = oneshot::channel();
    if app.control.send(Command::Reload { force: true, reply: Some(tx) }).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the router is shutting down", "draining");
    }
    match rx.await {
        Ok(Ok(hash)) => json_response(StatusCode::OK, &json!({"status": "reloaded", "hash": hash})),
        Ok(Err(errors)) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"error": {"message": errors.to_string(), "type": "invalid_request_error", "param": null, "code": "invalid_config"}, "errors": errors.to_json()}),
        ),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the router is shutting down", "draining"),
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secretsecret", b"secret"));
    }
}
