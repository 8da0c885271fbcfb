//! HTTP plumbing for one simulated server: accept loop, body intake, request log, behaviour gates and routing.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::audio::{self, Listen};
use super::body::{error, injected_error, ok_json, Resp};
use super::chat;
use super::ctx::{Ctx, Payload};
use super::embed;
use super::images;
use super::state::{Received, ServerState};
use crate::rng::jittered;

/// Request bodies above this are refused with 413, as the real API does for oversized uploads.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Accepts connections until `stop` changes or its sender is dropped; connection tasks (including
/// requests deliberately hung by the `hang` behaviour) are aborted when the loop ends.
pub(crate) async fn accept_loop(listener: TcpListener, state: Arc<ServerState>, mut stop: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    conns.spawn(serve_connection(stream, Arc::clone(&state)));
                }
                Err(err) => {
                    tracing::warn!(server = %state.name, error = %err, "sim accept failed");
                    // Back off so a persistent failure such as fd exhaustion cannot spin a core.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

async fn serve_connection(stream: TcpStream, state: Arc<ServerState>) {
    // Streamed tokens are tiny writes; Nagle would batch them and distort measured latencies.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req: Request<Incoming>| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(state, req).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(err) = builder.serve_connection(TokioIo::new(stream), service).await {
        tracing::debug!(error = %err, "sim connection ended with an error");
    }
}

enum Route {
    Chat,
    Completions,
    Responses,
    Embeddings,
    Transcriptions,
    Translations,
    Speech,
    ImageGenerations,
    ImageForm,
    Models,
    Model(String),
}

fn route(method: &Method, path: &str) -> Option<Route> {
    let path = path.trim_end_matches('/');
    if *method == Method::GET {
        if path == "/v1/models" {
            return Some(Route::Models);
        }
        return path.strip_prefix("/v1/models/").filter(|id| !id.is_empty()).map(|id| Route::Model(id.to_string()));
    }
    if *method != Method::POST {
        return None;
    }
    Some(match path {
        "/v1/chat/completions" => Route::Chat,
        "/v1/completions" => Route::Completions,
        "/v1/responses" => Route::Responses,
        "/v1/embeddings" => Route::Embeddings,
        "/v1/audio/transcriptions" => Route::Transcriptions,
        "/v1/audio/translations" => Route::Translations,
        "/v1/audio/speech" => Route::Speech,
        "/v1/images/generations" => Route::ImageGenerations,
        "/v1/images/edits" | "/v1/images/variations" => Route::ImageForm,
        _ => return None,
    })
}

fn not_found(method: &Method, path: &str) -> Resp {
    error(StatusCode::NOT_FOUND, format!("Invalid URL ({method} {path})"), None)
}

enum BodyError {
    TooLarge(usize),
    Broken(String),
}

async fn read_body(mut body: Incoming) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            let total = buf.len() + data.len();
            if total > MAX_BODY {
                return Err(BodyError::TooLarge(total));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

async fn handle(state: Arc<ServerState>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    if path == "/sim" || path.starts_with("/sim/") {
        return control(&state, req.method(), &path);
    }
    let (parts, incoming) = req.into_parts();
    let method = parts.method.as_str();
    // Refuse a declared oversize body before reading any of it.
    let body = match declared_length(&parts.headers) {
        Some(n) if n > MAX_BODY => Err(BodyError::TooLarge(n)),
        _ => read_body(incoming).await,
    };
    let (payload, body_len) = match body {
        Ok(bytes) => (Payload::parse(&parts.headers, &bytes), bytes.len()),
        Err(BodyError::TooLarge(n)) => {
            state.record(Received { method, path: &path, headers: &parts.headers, model: None, body_len: n });
            let msg = format!("Request body exceeds the maximum of {MAX_BODY} bytes.");
            return error(StatusCode::PAYLOAD_TOO_LARGE, msg, None);
        }
        Err(BodyError::Broken(e)) => {
            return error(StatusCode::BAD_REQUEST, format!("Could not read request body: {e}"), None);
        }
    };
    state.record(Received { method, path: &path, headers: &parts.headers, model: payload.model(), body_len });
    let Some(route) = route(&parts.method, &path) else {
        return not_found(&parts.method, &path);
    };

    let behavior = state.behavior_now();
    let mut rng = state.next_rng();
    if behavior.hang {
        // Accepted and logged but never answered; the connection task is aborted at shutdown.
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(jittered(behavior.ttft, behavior.jitter, &mut rng)).await;
    if rng.chance(behavior.error_rate) {
        return injected_error(behavior.error_status);
    }
    let ctx = Ctx { state, behavior, rng, payload };
    match route {
        Route::Chat => chat::chat_completions(ctx).await,
        Route::Completions => chat::completions(ctx).await,
        Route::Responses => chat::responses(ctx).await,
        Route::Embeddings => embed::embeddings(ctx),
        Route::Transcriptions => audio::transcribe(ctx, Listen::Transcribe),
        Route::Translations => audio::transcribe(ctx, Listen::Translate),
        Route::Speech => audio::speech(ctx),
        Route::ImageGenerations => images::generations(ctx),
        Route::ImageForm => images::form(ctx),
        Route::Models => images::list_models(&ctx),
        Route::Model(id) => images::get_model(&ctx, &id),
    }
}

/// Test and rehearsal introspection; never delayed, failed or logged by the simulated behaviour.
fn control(state: &ServerState, method: &Method, path: &str) -> Resp {
    match (method.as_str(), path.trim_end_matches('/')) {
        ("GET", "/sim/requests") => ok_json(&state.recent_requests()),
        ("DELETE", "/sim/requests") => {
            state.clear_requests();
            ok_json(&json!({ "cleared": true }))
        }
        ("GET", "/sim/stats") => ok_json(&json!({ "requests": state.request_count() })),
        _ => not_found(method, path),
    }
}
