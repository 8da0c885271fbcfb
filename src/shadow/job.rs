//! One shadowed request in the background: candidate calls, the leader's noise re-send, comparison, judge, record.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::future::join_all;
use http::HeaderValue;
use serde_json::Value;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::call::{call, CallOutcome, CallResult};
use super::{sampling, LeaderAnswer, LeaderResult};
use crate::app::SharedApp;
use crate::compare::judge::{self, JudgeOutcome, Verdict};
use crate::compare::{self, Comparator, Output};
use crate::config::{Agreement, Candidate, Route, StorePayloads};
use crate::evaluate::{Sample, ShadowOutcome};
use crate::proxy::capture::Captured;
use crate::proxy::modality::Endpoint;
use crate::proxy::request::{ClientRequest, Payload};
use crate::proxy::UpBody;
use crate::state::Snapshot;
use crate::store::{self, ComparisonRecord, Write};

/// How a request's outputs are compared: embeddings by neighbourhood, speech and images not
/// at all (latency and errors only), everything else by the route's `agreement`.
pub fn comparator_for(route: &Route, endpoint: Endpoint) -> Option<Agreement> {
    match endpoint {
        Endpoint::Embeddings => Some(Agreement::Pure(Comparator::Neighbourhood)),
        Endpoint::AudioSpeech | Endpoint::ImageGenerations | Endpoint::ImageEdits | Endpoint::ImageVariations => None,
        _ => Some(route.evaluate.agreement.clone()),
    }
}

fn output(c: &Captured) -> Output<'_> {
    Output { text: &c.text, tool_calls: &c.tool_calls, embeddings: &c.embeddings }
}

/// Everything one background job needs; it owns its permits until it ends.
pub struct Job {
    pub app: SharedApp,
    pub snap: Arc<Snapshot>,
    pub route: Arc<Route>,
    pub leader: String,
    pub jobs: Vec<(Candidate, OwnedSemaphorePermit)>,
    pub noise: Option<OwnedSemaphorePermit>,
    pub req: Arc<ClientRequest>,
    pub request_id: HeaderValue,
    pub segment: String,
}

impl Job {
    fn content_type(&self) -> HeaderValue {
        match &self.req.payload {
            Payload::Multipart { boundary, .. } => {
                HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
                    .unwrap_or(HeaderValue::from_static("multipart/form-data"))
            }
            Payload::Json(_) => HeaderValue::from_static("application/json"),
        }
    }

    /// Sends the request to `model` (its own URL, key and model name). Boxed: the exchange's
    /// state is kilobytes, and the join below would otherwise copy it each time it moves the
    /// call (about 4,000 instructions of copying per mirrored request, by callgrind).
    fn send(
        &self,
        model: &str,
        timeout: std::time::Duration,
    ) -> Option<Pin<Box<impl Future<Output = CallResult> + Send + 'static>>> {
        let up = self.snap.upstream(model)?;
        let up = up.clone();
        let (endpoint, query) = (self.req.endpoint, self.req.query.clone());
        let (ct, rid) = (self.content_type(), self.request_id.clone());
        let body = self.req.body_for(&up.model.model);
        Some(Box::pin(async move { call(&up, endpoint, query.as_deref(), ct, body, &rid, timeout).await }))
    }

    pub async fn run(self, leader_rx: oneshot::Receiver<LeaderAnswer>) {
        // The candidates, the noise re-send and the wait for the leader run together in this
        // one task (no task per call: spawning copies each call's state twice).
        // The permits stay with the job (self.jobs) until the comparisons are recorded.
        let calls = join_all(self.jobs.iter().filter_map(|(cand, _permit)| {
            let fut = self.send(&cand.model, cand.timeout)?;
            let model = cand.model.as_str();
            Some(async move { (model, fut.await) })
        }));
        let noise_timeout = self.snap.upstream(&self.leader).map(|u| u.model.timeouts.total).unwrap_or_default();
        let noise_call = async {
            // Built only when this request re-sends to the leader for the noise floor.
            match &self.noise {
                Some(_) => Some(self.send(&self.leader, noise_timeout)?.await),
                None => None,
            }
        };
        // The leader's answer is read as soon as it arrives (its raw frames freed), here in the
        // job's task rather than in the client's write.
        let leader = async { leader_rx.await.ok().map(LeaderAnswer::read) };
        let (leader, results, noise) = tokio::join!(leader, calls, noise_call);
        let compare = comparator_for(&self.route, self.req.endpoint);
        let leader_ok = leader.as_ref().filter(|l| l.ok);
        if let Some(eval) = self.app.shadow.evaluations().get_mut(&self.route.name).filter(|e| e.leader == self.leader)
        {
            // No result at all means the leader failed and a fallback (or an error) answered.
            match &leader {
                Some(l) if !l.ok && !l.leader_failed => {}
                Some(l) => eval.record_leader(!l.leader_failed),
                None => eval.record_leader(false),
            }
        }
        if let (Some(l), Some(n)) = (leader_ok, &noise) {
            if n.outcome == CallOutcome::Ok {
                if let Some(a) = self.agreement(&compare, &l.captured, &n.captured).await {
                    if let Some(eval) =
                        super::eval_for(&mut self.app.shadow.evaluations(), &self.route.name, &self.leader, &self.route)
                    {
                        eval.record_noise(&self.segment, a);
                    }
                }
            }
        }
        for (model, result) in results {
            self.finish_candidate(model, &compare, leader.as_ref(), leader_ok.is_some(), result).await;
        }
        drop(self.jobs);
        drop(self.noise);
    }

    async fn finish_candidate(
        &self,
        model: &str,
        compare: &Option<Agreement>,
        leader: Option<&LeaderResult>,
        leader_ok: bool,
        r: CallResult,
    ) {
        let outcome = match (&r.outcome, leader_ok) {
            (CallOutcome::Timeout, _) => ShadowOutcome::CandidateTimeout,
            (CallOutcome::Error(_), _) => ShadowOutcome::CandidateError,
            (CallOutcome::Ok, false) => ShadowOutcome::LeaderFailed,
            (CallOutcome::Ok, true) => ShadowOutcome::Compared,
        };
        let route = self.route.name.as_str();
        let m = &self.app.metrics;
        m.shadow_requests.with_label_values(&[route, model, outcome.as_str()]).inc();
        if let CallOutcome::Error(e) = &r.outcome {
            tracing::debug!(route, candidate = model, error = %e, "shadow request failed");
        }
        let (mut agreement, mut judged) = (None, None);
        if let (ShadowOutcome::Compared, Some(l)) = (outcome, leader) {
            agreement = self.agreement(compare, &l.captured, &r.captured).await;
            if self.route.evaluate.judge.is_some() {
                // Boxed for the same reason as the embedding call.
                judged = Box::pin(self.judge(&l.captured, &r.captured)).await;
            }
        }
        let usage = r.captured.usage.clone().unwrap_or_default();
        let price = self.snap.upstream(model).and_then(|u| u.model.price);
        let cost = price.map(|p| p.cost(usage.input_tokens, usage.output_tokens)).unwrap_or(0.0);
        self.app.shadow.spend(route, model, cost);
        let leader_timing = leader.map(|l| l.timing).unwrap_or_default();
        let sample = Sample {
            segment: self.segment.clone(),
            outcome,
            agreement,
            judge: judged,
            leader: leader_timing,
            candidate: Some(r.timing),
            tokens_in: usage.input_tokens,
            tokens_out: usage.output_tokens,
            cost_usd: cost,
        };
        self.record(model, &sample);
        let payload = self.payload(leader, &r);
        let ms = |us: u64| us as f64 / 1000.0;
        self.app.store.send(Write::Comparison(Box::new(ComparisonRecord {
            at_ms: store::now_ms(),
            route: route.to_string(),
            candidate: model.to_string(),
            leader: self.leader.clone(),
            segment: self.segment.clone(),
            request_id: match self.request_id.to_str() {
                Ok(id) => id.to_owned(),
                // A client's id with bytes past ASCII: kept, with those bytes replaced.
                Err(_) => String::from_utf8_lossy(self.request_id.as_bytes()).into_owned(),
            },
            outcome: outcome.as_str(),
            agreement,
            noise: None,
            judge: match judged {
                Some(JudgeOutcome::Score(x)) => Some(x),
                _ => None,
            },
            judge_inconclusive: matches!(judged, Some(JudgeOutcome::Inconclusive)),
            leader_ttft_ms: ms(leader_timing.ttft_us),
            leader_total_ms: ms(leader_timing.total_us),
            candidate_ttft_ms: Some(ms(r.timing.ttft_us)),
            candidate_total_ms: Some(ms(r.timing.total_us)),
            tokens_in: usage.input_tokens,
            tokens_out: usage.output_tokens,
            cost_usd: cost,
            payload,
        })));
    }

    /// Adds the sample to the route's evaluation (gauges are exported by control's tick).
    fn record(&self, model: &str, sample: &Sample) {
        let mut evals = self.app.shadow.evaluations();
        let eval = super::eval_for(&mut evals, &self.route.name, &self.leader, &self.route);
        // A leader change while this request was in flight makes its evidence stale.
        if let Some(eval) = eval.filter(|e| e.leader == self.leader) {
            eval.record(model, sample);
        }
    }

    /// Agreement of two outputs under the route's comparator.
    async fn agreement(&self, compare: &Option<Agreement>, a: &Captured, b: &Captured) -> Option<f64> {
        match compare.as_ref()? {
            Agreement::Pure(c) => compare::agreement(c, &output(a), &output(b)),
            Agreement::Embedding(model) => {
                // Boxed: this call's state would otherwise enlarge every job's future.
                let r = Box::pin(self.call_json(
                    model,
                    Endpoint::Embeddings,
                    |m| serde_json::json!({"model": m, "input": [a.text, b.text]}),
                ))
                .await?;
                match (r.outcome, r.captured.embeddings.as_slice()) {
                    (CallOutcome::Ok, [x, y]) => compare::vectors::cosine(x, y).map(|c| c.clamp(0.0, 1.0)),
                    _ => None,
                }
            }
        }
    }

    /// The judge's verdict in both orders, when this request is in the judge's sample.
    async fn judge(&self, leader: &Captured, cand: &Captured) -> Option<JudgeOutcome> {
        let cfg = self.route.evaluate.judge.as_ref()?;
        let chatty =
            matches!(self.req.endpoint, Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Responses);
        if !chatty || !sampling::sampled(self.request_id.as_bytes(), &self.route.name, "judge", cfg.sample) {
            return None;
        }
        let template = cfg.prompt.as_deref().unwrap_or(crate::config::DEFAULT_JUDGE_PROMPT);
        let input = prompt_text(&self.req);
        let (candidate_first, leader_first) = (
            judge::render(template, &input, &cand.text, &leader.text),
            judge::render(template, &input, &leader.text, &cand.text),
        );
        let (first, second) =
            tokio::join!(self.ask_judge(&cfg.model, &candidate_first), self.ask_judge(&cfg.model, &leader_first));
        Some(judge::combine(first, second))
    }

    async fn ask_judge(&self, model: &str, prompt: &str) -> Option<Verdict> {
        let body = |m: &str| serde_json::json!({"model": m, "temperature": 0, "messages": [{"role": "user", "content": prompt}]});
        let r = self.call_json(model, Endpoint::ChatCompletions, body).await?;
        match r.outcome {
            CallOutcome::Ok => judge::parse_verdict(&r.captured.text),
            _ => None,
        }
    }

    /// A JSON call of the router's own (judge, embeddings) to a model from `models:`;
    /// `body` gets the model's upstream name.
    async fn call_json(&self, model: &str, endpoint: Endpoint, body: impl FnOnce(&str) -> Value) -> Option<CallResult> {
        let up = self.snap.upstream(model)?;
        let bytes = bytes::Bytes::from(serde_json::to_vec(&body(&up.model.model)).ok()?);
        let json = HeaderValue::from_static("application/json");
        Some(call(up, endpoint, None, json, UpBody::new(vec![bytes]), &self.request_id, up.model.timeouts.total).await)
    }

    fn payload(&self, leader: Option<&LeaderResult>, r: &CallResult) -> Option<store::Payload> {
        let mode = self.route.evaluate.store_payloads;
        if mode == StorePayloads::None {
            return None;
        }
        let clean = |s: &str| if mode == StorePayloads::Redacted { store::redact::redact(s) } else { s.to_string() };
        Some(store::Payload {
            request: clean(&prompt_text(&self.req)),
            leader: clean(leader.map(|l| l.captured.text.as_str()).unwrap_or("")),
            candidate: clean(&r.captured.text),
        })
    }
}

/// The user's text in a request: the last user message, the prompt, or the input.
pub fn prompt_text(req: &ClientRequest) -> String {
    let Some(obj) = req.json() else { return String::new() };
    let content_text = |content: &Value| -> String {
        match content {
            Value::String(s) => s.clone(),
            Value::Array(parts) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
            }
            _ => String::new(),
        }
    };
    if let Some(Value::Array(messages)) = obj.get("messages") {
        if let Some(m) = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")) {
            return m.get("content").map(content_text).unwrap_or_default();
        }
    }
    for key in ["prompt", "input"] {
        match obj.get(key) {
            Some(Value::String(s)) => return s.clone(),
            Some(Value::Array(items)) => {
                return items
                    .iter()
                    .map(|i| i.get("content").map(content_text).unwrap_or_else(|| content_text(i)))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            _ => {}
        }
    }
    String::new()
}
