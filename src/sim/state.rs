//! Per-server shared state: effective behaviour over time, per-request randomness and the request log.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use serde_json::{json, Map, Value};

use super::config::{Behavior, Phase, ServerConfig};
use crate::rng::Rng;

/// How many received requests `GET /sim/requests` can show.
const LOG_CAPACITY: usize = 64;

pub(crate) struct ServerState {
    pub(crate) name: String,
    pub(crate) seed: u64,
    started: Instant,
    behavior: RwLock<BehaviorSource>,
    counter: AtomicU64,
    log: Mutex<RequestLog>,
}

struct BehaviorSource {
    base: Behavior,
    schedule: Vec<Phase>,
}

#[derive(Default)]
struct RequestLog {
    recent: VecDeque<Value>,
    total: u64,
}

/// What the log keeps about one request.
pub(crate) struct Received<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: &'a crate::raw_headers::RawHeaders,
    pub(crate) model: Option<String>,
    pub(crate) body_len: usize,
}

impl ServerState {
    pub(crate) fn new(cfg: &ServerConfig, started: Instant) -> Self {
        ServerState {
            name: cfg.name.clone(),
            seed: cfg.seed,
            started,
            behavior: RwLock::new(BehaviorSource { base: cfg.behavior.clone(), schedule: cfg.schedule.clone() }),
            counter: AtomicU64::new(0),
            log: Mutex::new(RequestLog::default()),
        }
    }

    /// The initial behaviour with every phase that is due applied in config order.
    pub(crate) fn behavior_now(&self) -> Behavior {
        let elapsed = self.started.elapsed();
        let source = self.behavior.read().unwrap_or_else(|e| e.into_inner());
        let mut b = source.base.clone();
        for phase in source.schedule.iter().filter(|p| p.at <= elapsed) {
            phase.apply(&mut b);
        }
        b
    }

    /// Replaces the behaviour and drops the schedule: a test that sets a behaviour explicitly expects
    /// exactly that behaviour, not a later phase silently overriding it.
    pub(crate) fn set_behavior(&self, b: Behavior) {
        let mut source = self.behavior.write().unwrap_or_else(|e| e.into_inner());
        source.base = b;
        source.schedule.clear();
    }

    /// Seeded from (server seed, request number): a run is reproducible for a given request order,
    /// while consecutive requests still differ.
    pub(crate) fn next_rng(&self) -> Rng {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Rng::from_parts(self.seed, n)
    }

    pub(crate) fn record(&self, r: Received<'_>) {
        let mut headers = Map::new();
        for (name, value) in r.headers.iter() {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            let value = String::from_utf8_lossy(value).into_owned();
            // Repeated headers are joined the way HTTP allows them to be combined.
            match headers.get_mut(&name) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                _ => {
                    headers.insert(name, Value::String(value));
                }
            }
        }
        let entry = json!({
            "method": r.method,
            "path": r.path,
            "query": r.query,
            "headers": headers,
            "model": r.model,
            "body_len": r.body_len,
        });
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.recent.len() == LOG_CAPACITY {
            log.recent.pop_front();
        }
        log.recent.push_back(entry);
        log.total += 1;
    }

    /// Oldest first.
    pub(crate) fn recent_requests(&self) -> Value {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        Value::Array(log.recent.iter().cloned().collect())
    }

    pub(crate) fn request_count(&self) -> u64 {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Lets a rehearsal start from a clean log without restarting the server.
    pub(crate) fn clear_requests(&self) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.recent.clear();
        log.total = 0;
    }
}
