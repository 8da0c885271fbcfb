//! The request path: read, classify, route, forward to the leader (or a fallback) and stream back.

pub mod body;
pub mod capture;
pub mod error;
mod feedback;
mod forward;
pub mod headers;
mod json;
pub mod modality;
pub mod multipart;
pub mod request;
mod scan;

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};

pub use body::UpBody;
use error::ProxyError;
use headers::X_REQUEST_ID;

use crate::app::SharedApp;
use crate::server::{Reply, Request};
use crate::state::Snapshot;
use std::sync::Arc;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body the router sends.
pub type RespBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(bytes: Bytes) -> RespBody {
    Full::new(bytes).map_err(|e: Infallible| match e {}).boxed_unsync()
}

/// Labels of a request that failed before an upstream answered.
struct Failure {
    error: ProxyError,
    route: String,
    modality: &'static str,
    model: String,
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Failure {
        Failure { error, route: "none".into(), modality: "none", model: "none".into() }
    }
}

/// Serves one inference request.
pub async fn handle(app: SharedApp, req: Request) -> Reply {
    let started = Instant::now();
    let request_id = request::request_id(&req.headers);
    let snap = app.snapshot();
    let result = serve(&app, &snap, req, &request_id, started).await;
    result.unwrap_or_else(|f| {
        let resp = f.error.response(&request_id);
        let code = resp.status().as_u16().to_string();
        app.metrics.requests.with_label_values(&[&f.route, f.modality, &f.model, &code]).inc();
        app.metrics.overhead.observe(started.elapsed().as_secs_f64());
        resp.into()
    })
}

async fn serve(
    app: &SharedApp,
    snap: &Arc<Snapshot>,
    req: Request,
    request_id: &HeaderValue,
    started: Instant,
) -> Result<Reply, Failure> {
    if app.closing() {
        return Err(ProxyError::Draining.into());
    }
    let path = req.uri.path();
    // Every path takes one method; anything else is a 405 naming both.
    let only = |method: Method| -> Result<(), Failure> {
        if req.method == method {
            return Ok(());
        }
        Err(ProxyError::MethodNotAllowed { method: req.method.to_string(), path: path.into() }.into())
    };
    if path == "/v1/models" || path == "/v1/models/" {
        only(Method::GET)?;
        return Ok(models_list(snap, request_id).into());
    }
    if path == "/v1/feedback" {
        only(Method::POST)?;
        return feedback::handle(app, req.body, request_id).await.map(Reply::from).map_err(Failure::from);
    }
    let Some(endpoint) = modality::Endpoint::from_path(path) else {
        return Err(ProxyError::NotFound { method: req.method.to_string(), path: path.into() }.into());
    };
    only(Method::POST)?;
    let client_req = request::ClientRequest::read(endpoint, req, snap.config.server.max_body)?;
    let modality = client_req.modality;
    let Some(route) = snap.route_for(modality, &client_req.headers) else {
        let detail = if snap.routes.iter().any(|r| r.route.modalities.contains(&modality)) {
            " for these request headers"
        } else {
            ""
        };
        return Err(ProxyError::NoRoute { modality: modality.to_string(), detail: detail.into() }.into());
    };
    forward::forward(app, snap, route, Arc::new(client_req), request_id, started).await
}

/// `GET /v1/models`: the routes and models this router serves.
fn models_list(snap: &Snapshot, request_id: &HeaderValue) -> Response<RespBody> {
    let mut data: Vec<serde_json::Value> = snap
        .routes
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.route.name, "object": "model", "created": 0, "owned_by": "shadowroute",
                "modalities": r.route.modalities.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                "leader": r.leader,
            })
        })
        .collect();
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let mut resp = error::json_response(StatusCode::OK, &serde_json::json!({"object": "list", "data": data}));
    resp.headers_mut().insert(X_REQUEST_ID, request_id.clone());
    resp
}
