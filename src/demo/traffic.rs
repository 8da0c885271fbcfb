//! The demo's client: a mix of requests across modalities, sent at a fixed rate, with client-side stats.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::sim::tasks;

/// What the client saw for one kind of request.
pub struct KindStats {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub latency_us: Option<Histogram<u64>>,
    /// Which model served, from `x-shadowroute-model`.
    pub served_by: BTreeMap<String, u64>,
}

impl Default for KindStats {
    fn default() -> Self {
        KindStats { sent: 0, ok: 0, errors: 0, latency_us: Histogram::new(3).ok(), served_by: BTreeMap::new() }
    }
}

/// Client-side statistics by request kind.
pub type Stats = Arc<Mutex<BTreeMap<&'static str, KindStats>>>;

/// The kinds of request in the mix, with their weights.
const MIX: &[(&str, u32)] =
    &[("text", 55), ("vision", 10), ("audio", 10), ("embeddings", 15), ("speech", 5), ("image", 5)];
const LANGUAGES: &[&str] = &["en-US", "de-CH", "fr-FR", "ja-JP"];

/// Sends the mix at `rate` requests per second until `stop`, never more than `max_inflight` at once.
pub async fn run(addr: SocketAddr, rate: f64, max_inflight: usize, stats: Stats, stop: CancellationToken) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let inflight = Arc::new(tokio::sync::Semaphore::new(max_inflight));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i: u64 = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let Ok(permit) = inflight.clone().try_acquire_owned() else { continue };
        i += 1;
        let kind = pick(i);
        let req = build(kind, i, addr);
        let (client, stats) = (client.clone(), stats.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = match req {
                Some(req) => client.request(req).await.ok(),
                None => None,
            };
            let mut served = None;
            let mut ok = false;
            if let Some(resp) = result {
                ok = resp.status().is_success();
                served = resp.headers().get("x-shadowroute-model").and_then(|v| v.to_str().ok()).map(str::to_string);
                ok &= resp.into_body().collect().await.is_ok();
            }
            let us = started.elapsed().as_micros() as u64;
            if let Ok(mut s) = stats.lock() {
                let k = s.entry(kind).or_default();
                k.sent += 1;
                if ok {
                    k.ok += 1;
                    if let Some(h) = k.latency_us.as_mut() {
                        let _ = h.record(us.max(1));
                    }
                } else {
                    k.errors += 1;
                }
                if let Some(m) = served {
                    *k.served_by.entry(m).or_default() += 1;
                }
            }
            drop(permit);
        });
    }
}

fn pick(i: u64) -> &'static str {
    let total: u32 = MIX.iter().map(|(_, w)| w).sum();
    let mut x = (splitmix(i) % u64::from(total)) as u32;
    for (kind, w) in MIX {
        if x < *w {
            return kind;
        }
        x -= w;
    }
    "text"
}

fn splitmix(i: u64) -> u64 {
    crate::rng::Rng::new(i).next_u64()
}

fn build(kind: &str, i: u64, addr: SocketAddr) -> Option<Request<Full<Bytes>>> {
    let task = tasks::task(i);
    let lang = LANGUAGES[(splitmix(i ^ 0xABCD) % LANGUAGES.len() as u64) as usize];
    let (path, content_type, body): (&str, String, Vec<u8>) = match kind {
        "text" => {
            let stream = i % 3 == 0;
            let body =
                json!({"model": "demo", "stream": stream, "messages": [{"role": "user", "content": task.prompt}]});
            ("/v1/chat/completions", "application/json".into(), serde_json::to_vec(&body).ok()?)
        }
        "vision" => {
            let body = json!({"model": "demo", "messages": [{"role": "user", "content": [
                {"type": "text", "text": task.prompt},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]});
            ("/v1/chat/completions", "application/json".into(), serde_json::to_vec(&body).ok()?)
        }
        "audio" => {
            let boundary = "demo-boundary";
            let body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.wav\"\r\nContent-Type: audio/wav\r\n\r\nplease transcribe {} for me today\r\n--{boundary}--\r\n",
                task.answer
            );
            ("/v1/audio/transcriptions", format!("multipart/form-data; boundary={boundary}"), body.into_bytes())
        }
        "embeddings" => {
            let inputs: Vec<String> = (0..4).map(|k| tasks::task(i * 4 + k).prompt).collect();
            let body = json!({"model": "demo", "input": inputs});
            ("/v1/embeddings", "application/json".into(), serde_json::to_vec(&body).ok()?)
        }
        "speech" => {
            let body = json!({"model": "demo", "voice": "alloy", "input": task.prompt});
            ("/v1/audio/speech", "application/json".into(), serde_json::to_vec(&body).ok()?)
        }
        _ => {
            let body = json!({"model": "demo", "prompt": "a lighthouse at dawn", "n": 1});
            ("/v1/images/generations", "application/json".into(), serde_json::to_vec(&body).ok()?)
        }
    };
    Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("accept-language", lang)
        .header("authorization", "Bearer sk-demo-client")
        .body(Full::new(Bytes::from(body)))
        .ok()
}
