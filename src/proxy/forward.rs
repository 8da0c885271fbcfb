//! Sends a request to the route's leader, fails over to its fallbacks, and streams the answer back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;

use super::body::{Finished, Observed, Outcome};
use super::capture::{Capture, Format};
use super::error::ProxyError;
use super::modality::Modality;
use super::request::ClientRequest;
use super::Failure;
use crate::app::SharedApp;
use crate::client::{ClientError, Outgoing, UpstreamResponse};
use crate::evaluate::Timing;
use crate::server::Reply;
use crate::shadow::{self, LeaderAnswer, Served};
use crate::state::{ModelSeries, RouteState, Snapshot, Upstream};

/// How much of a response is kept for usage and comparison.
const CAPTURE_CAP: usize = 1024 * 1024;

/// Why an upstream attempt did not produce a usable response.
enum AttemptError {
    Connect(String),
    Request(String),
    Timeout(Duration),
}

/// Tries the leader, then each fallback, until one answers with something other than
/// 429/5xx or a transport failure. Nothing has reached the client before that.
pub(super) async fn forward(
    app: &SharedApp,
    snap: &Arc<Snapshot>,
    route: &RouteState,
    req: Arc<ClientRequest>,
    request_id: &HeaderValue,
    started: Instant,
) -> Result<Reply, Failure> {
    let route_name = route.route.name.as_str();
    let modality = req.modality.as_str();
    // The leader, then the fallbacks in order (by index: no list is built per request).
    let fallbacks = &route.route.fallbacks;
    let target = |i: usize| match i {
        0 => Some(route.leader.as_str()),
        _ => fallbacks.get(i - 1).map(String::as_str),
    };
    let fail =
        |error, model: &str| Failure { error, route: route_name.to_string(), modality, model: model.to_string() };
    // Decided before the leader is called, so candidates run alongside it.
    let mut leader_tx = shadow::start(app, snap, route, &req, request_id);
    let mut router_time = Duration::ZERO;
    let mut last_error = None;
    for i in 0..=fallbacks.len() {
        let (Some(name), next) = (target(i), target(i + 1)) else { continue };
        let Some(up) = snap.upstream(name) else { continue };
        // The model's URL and key, the rewritten body, the request id, then the client's
        // forwarded header lines.
        let target = up.wire.target(req.endpoint, req.query.as_deref());
        let headers = up.wire.headers([("x-request-id", request_id.as_bytes())]);
        let body = req.body_for(&up.model.model);
        let sent_at = Instant::now();
        if i == 0 {
            router_time += sent_at - started;
        }
        let head_by = tokio::time::Instant::from_std(sent_at) + up.model.timeouts.first_byte;
        let upstream_req = Outgoing {
            method: "POST",
            target: &target,
            headers: &headers,
            passed_on: Some(&req.forwarded),
            body,
            head_by,
        };
        let attempt = up.send(upstream_req, false).await;
        let headers_at = Instant::now();
        let error = match attempt {
            Ok(resp) => {
                let status = resp.status;
                let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                if retryable {
                    let kind = if status == StatusCode::TOO_MANY_REQUESTS { "status_429" } else { "status_5xx" };
                    app.metrics.upstream_errors.with_label_values(&[name, kind]).inc();
                }
                if let (true, Some(to)) = (retryable, next) {
                    tracing::warn!(
                        route = route_name,
                        from = name,
                        to,
                        status = status.as_u16(),
                        "upstream failed; trying fallback"
                    );
                    app.metrics.fallbacks.with_label_values(&[route_name, name, to]).inc();
                    continue;
                }
                let ttfb = headers_at - started;
                // Only the leader's own answer is compared with candidates.
                let tee = if i == 0 { leader_tx.take() } else { None };
                let timing = Timings { started, ttfb, router_time, headers_at };
                let series = route.series.get(name).cloned();
                return Ok(respond(app, route_name, req.modality, up, resp, request_id, timing, tee, series));
            }
            Err(ClientError::Connect(e)) => AttemptError::Connect(e),
            Err(ClientError::Request(e)) => AttemptError::Request(e),
            Err(ClientError::Timeout) => AttemptError::Timeout(up.model.timeouts.first_byte),
        };
        let kind = match &error {
            AttemptError::Connect(_) => "connect",
            AttemptError::Request(_) => "request",
            AttemptError::Timeout(_) => "timeout",
        };
        app.metrics.upstream_errors.with_label_values(&[name, kind]).inc();
        if let Some(to) = next {
            tracing::warn!(route = route_name, from = name, to, kind, "upstream failed; trying fallback");
            app.metrics.fallbacks.with_label_values(&[route_name, name, to]).inc();
        }
        last_error = Some((name.to_string(), error));
    }
    let (model, error) =
        last_error.unwrap_or_else(|| (route.leader.clone(), AttemptError::Connect("no upstream is defined".into())));
    let error = match error {
        AttemptError::Connect(reason) | AttemptError::Request(reason) => {
            ProxyError::UpstreamUnavailable { model: model.clone(), reason }
        }
        AttemptError::Timeout(t) => ProxyError::UpstreamTimeout { model: model.clone(), seconds: t.as_secs_f64() },
    };
    Err(fail(error, &model))
}

/// When things happened to one client request.
struct Timings {
    started: Instant,
    ttfb: Duration,
    router_time: Duration,
    headers_at: Instant,
}

/// The client's response: the upstream's status, headers and body, observed as it streams.
#[allow(clippy::too_many_arguments)]
fn respond(
    app: &SharedApp,
    route: &str,
    modality: Modality,
    up: &Upstream,
    resp: UpstreamResponse,
    request_id: &HeaderValue,
    t: Timings,
    tee: Option<tokio::sync::oneshot::Sender<LeaderAnswer>>,
    series: Option<Arc<ModelSeries>>,
) -> Reply {
    let UpstreamResponse { status: upstream_status, headers: passed_on, body } = resp;
    // The router's own lines, then the upstream's as they arrived (see `server::Reply`).
    let mut own = Vec::with_capacity(2);
    own.push(("x-request-id", request_id.clone()));
    if let Some(v) = &up.wire.name {
        own.push(("x-shadowroute-model", v.clone()));
    }
    let format = Format::from_content_type(passed_on.get("content-type"));
    let success = upstream_status.is_success();
    let teeing = tee.is_some();
    let status = upstream_status.as_u16();
    let series = series.unwrap_or_else(|| Arc::new(ModelSeries::new(&app.metrics, route, &[modality], &up.model.name)));
    if let Ok(id) = request_id.to_str() {
        app.shadow.served(id, Served { route: series.route.clone(), model: series.model.clone() });
    }
    let metrics = app.clone();
    let model = up.model.clone();
    let Timings { started, ttfb, router_time, headers_at } = t;
    let on_finish = move |f: Finished| {
        let m = &metrics.metrics;
        let name = model.name.as_str();
        series.requests(m, &series.route, modality, name, status).inc();
        series.ttfb.observe(ttfb.as_secs_f64());
        series.duration.observe((f.at - started).as_secs_f64());
        if matches!(f.outcome, Outcome::IdleTimeout | Outcome::TotalTimeout | Outcome::UpstreamError) {
            m.upstream_errors.with_label_values(&[name, f.outcome.as_str()]).inc();
        }
        let Some(tx) = tee else {
            // Read for its usage alone, which is cheap.
            if let Some(usage) = &f.answer.read().usage {
                series.meter(usage, model.price.as_ref());
            }
            return;
        };
        let us = |d: Duration| d.as_micros() as u64;
        let answer = LeaderAnswer {
            complete: success && f.outcome == Outcome::Complete,
            leader_failed: status >= 500
                || status == 429
                || matches!(f.outcome, Outcome::IdleTimeout | Outcome::TotalTimeout | Outcome::UpstreamError),
            timing: Timing {
                ttft_us: us(f.first_byte_at.unwrap_or(f.at).saturating_duration_since(started)),
                total_us: us(f.at.saturating_duration_since(started)),
            },
            answer: f.answer,
            series,
            price: model.price,
        };
        // The job reads and meters it; if the job is gone, it is metered here.
        if let Err(answer) = tx.send(answer) {
            answer.read();
        }
    };
    let total_deadline = started + up.model.timeouts.total;
    // Only a teed response is compared; every other one is read for its usage alone.
    let capture = if teeing { Capture::new(format, CAPTURE_CAP) } else { Capture::usage_only(format, CAPTURE_CAP) };
    let observed = Observed::new(body, up.model.timeouts.idle, total_deadline, capture, on_finish);
    app.metrics.overhead.observe((router_time + headers_at.elapsed()).as_secs_f64());
    Reply::Relayed { status: upstream_status, own, passed_on, body: observed.boxed_unsync() }
}
