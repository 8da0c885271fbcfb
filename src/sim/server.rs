//! HTTP plumbing for one simulated server: accept loop, body intake, request log, behaviour gates and routing.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::audio::{self, Listen};
use super::body::{error, injected_error, ok_json, Resp};
use super::chat;
use super::ctx::{Ctx, Payload};
use super::embed;
use super::images;
use super::state::{Received, ServerState};
use crate::raw_headers::RawHeaders;
use crate::rng::jittered;
use crate::server::{BodyError, Reply, Request, Timeouts};

/// Request bodies above this are refused with 413, as the real API does for oversized uploads.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Serves until `stop` changes or its sender is dropped; connections still open then (including
/// requests deliberately hung by the `hang` behaviour) are closed.
pub(crate) async fn accept_loop(listener: TcpListener, state: Arc<ServerState>, mut stop: watch::Receiver<bool>) {
    let token = CancellationToken::new();
    let handler = move |req: Request| {
        let state = Arc::clone(&state);
        async move { Reply::from(handle(state, req).await.map(|b| b.map_err(|e| match e {}).boxed_unsync())) }
    };
    let serving =
        crate::server::serve(listener, handler, || MAX_BODY as u64, Timeouts::default(), token.clone(), Duration::ZERO);
    tokio::pin!(serving);
    tokio::select! {
        () = &mut serving => {}
        _ = stop.changed() => {
            token.cancel();
            serving.await;
        }
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

fn declared_length(headers: &RawHeaders) -> Option<usize> {
    let n = crate::client::codec::decimal(headers.get("content-length")?.trim_ascii())?;
    Some(usize::try_from(n).unwrap_or(usize::MAX))
}

async fn handle(state: Arc<ServerState>, req: Request) -> Resp {
    let path = req.uri.path().to_string();
    if path == "/sim" || path.starts_with("/sim/") {
        return control(&state, &req.method, &path);
    }
    let query = req.uri.query().map(str::to_string);
    let Request { method: verb, headers, body, .. } = req;
    let method = verb.as_str();
    let (payload, body_len) = match body {
        Ok(bytes) => (Payload::parse(&headers, &bytes), bytes.len()),
        Err(BodyError::TooLarge { .. }) => {
            let n = declared_length(&headers).unwrap_or(MAX_BODY + 1);
            state.record(Received {
                method,
                path: &path,
                query: query.as_deref(),
                headers: &headers,
                model: None,
                body_len: n,
            });
            let msg = format!("Request body exceeds the maximum of {MAX_BODY} bytes.");
            return error(StatusCode::PAYLOAD_TOO_LARGE, msg, None);
        }
        Err(BodyError::Invalid(e)) => {
            return error(StatusCode::BAD_REQUEST, format!("Could not read request body: {e}"), None);
        }
    };
    state.record(Received {
        method,
        path: &path,
        query: query.as_deref(),
        headers: &headers,
        model: payload.model(),
        body_len,
    });
    let Some(route) = route(&verb, &path) else {
        return not_found(&verb, &path);
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
