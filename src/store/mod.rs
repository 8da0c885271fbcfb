//! The state store: comparison records, decisions, leader overrides and feedback, written by one background thread.

pub mod redact;
mod sqlite;

use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::IntCounterVec;
use serde::Serialize;

pub use sqlite::SqliteStore;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One shadow comparison, without payloads unless configured (and then redacted unless `full`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ComparisonRecord {
    pub at_ms: i64,
    pub route: String,
    pub candidate: String,
    pub leader: String,
    pub segment: String,
    pub request_id: String,
    pub outcome: &'static str,
    pub agreement: Option<f64>,
    pub noise: Option<f64>,
    pub judge: Option<f64>,
    pub judge_inconclusive: bool,
    pub leader_ttft_ms: f64,
    pub leader_total_ms: f64,
    pub candidate_ttft_ms: Option<f64>,
    pub candidate_total_ms: Option<f64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    pub payload: Option<Payload>,
}

/// Texts kept with a record when `store_payloads` allows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Payload {
    pub request: String,
    pub leader: String,
    pub candidate: String,
}

/// A decision of the decision engine or an operator, with its evidence.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionRecord {
    pub at_ms: i64,
    pub route: String,
    /// promote | rollback | recommend | manual_promote | manual_rollback | pause | resume | sre_override
    pub kind: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub evidence: serde_json::Value,
}

/// A leader chosen at run time, and the leader routes.yaml named when it was chosen.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Override {
    pub route: String,
    pub model: String,
    pub configured_leader: String,
    pub at_ms: i64,
}

/// An application's score for a served request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FeedbackRecord {
    pub at_ms: i64,
    pub route: String,
    pub model: String,
    pub request_id: String,
    pub score: f64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(pub String);

/// The operations every backend provides (SQLite now; PostgreSQL for several replicas).
pub trait Store: Send {
    /// Inserts comparison records in order; one error for each that did not land.
    fn comparisons(&mut self, records: &[&ComparisonRecord]) -> Vec<StoreError>;
    fn decision(&mut self, d: &DecisionRecord) -> Result<(), StoreError>;
    /// Sets (`Some`) or clears (`None`) the override of a route.
    fn set_override(&mut self, route: &str, o: Option<&Override>) -> Result<(), StoreError>;
    fn feedback(&mut self, f: &FeedbackRecord) -> Result<(), StoreError>;
    fn overrides(&mut self) -> Result<Vec<Override>, StoreError>;
    fn decisions(&mut self, limit: usize) -> Result<Vec<DecisionRecord>, StoreError>;
    /// Deletes comparison records older than `max_age` or beyond the newest `max_rows`.
    fn prune(&mut self, max_age: Duration, max_rows: u64) -> Result<u64, StoreError>;
    /// Groups the following writes into one transaction (one disk sync instead of many).
    fn begin(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// At most this many queued writes share one transaction.
const BATCH: usize = 512;
/// How long the writer gathers writes after the first one: fewer wake-ups and transactions
/// under load, at most this much delay before a record lands.
const GATHER: Duration = Duration::from_millis(100);

/// What the writer thread is asked to do.
pub enum Write {
    Comparison(Box<ComparisonRecord>),
    Decision(DecisionRecord),
    Override {
        route: String,
        value: Option<Override>,
    },
    Feedback(FeedbackRecord),
    Prune {
        max_age: Duration,
        max_rows: u64,
    },
    /// Ends the writer after everything queued before it.
    Stop,
}

impl Write {
    fn op(&self) -> &'static str {
        match self {
            Write::Comparison(_) => "comparison",
            Write::Decision(_) => "decision",
            Write::Override { .. } => "override",
            Write::Feedback(_) => "feedback",
            Write::Prune { .. } => "prune",
            Write::Stop => "stop",
        }
    }
}

/// The request path's side of the store: a bounded queue that never blocks.
#[derive(Clone)]
pub struct StoreHandle {
    tx: SyncSender<Write>,
    errors: IntCounterVec,
}

/// Queue depth: past this, records are dropped and counted rather than waited for.
const QUEUE: usize = 4096;

impl StoreHandle {
    /// Asks the writer to finish what is queued and stop (blocks briefly if the queue is full).
    pub fn stop(&self) {
        let _ = self.tx.send(Write::Stop);
    }

    /// Queues a write; when the queue is full the write is dropped and counted.
    pub fn send(&self, w: Write) {
        let op = w.op();
        match self.tx.try_send(w) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.errors.with_label_values(&[&format!("{op}_dropped")]).inc(),
            Err(TrySendError::Disconnected(_)) => self.errors.with_label_values(&[&format!("{op}_closed")]).inc(),
        }
    }
}

/// The writer thread; joined on shutdown after the queue drains.
pub struct Writer {
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    /// Waits for queued writes to land (the queue closes when every handle is dropped).
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Opens the store at `path` and starts its writer. Returns what could be read at start
/// (overrides and recent decisions). If the file cannot be opened the router still serves:
/// writes are counted as errors and nothing survives a restart.
pub fn open(path: &Path, errors: IntCounterVec) -> (StoreHandle, Writer, Vec<Override>, Vec<DecisionRecord>) {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let handle = StoreHandle { tx, errors: errors.clone() };
    let mut store: Option<Box<dyn Store>> = match SqliteStore::open(path) {
        Ok(s) => Some(Box::new(s)),
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot open the state store; decisions and records will not persist");
            errors.with_label_values(&["open"]).inc();
            None
        }
    };
    let (overrides, decisions) = match store.as_mut() {
        Some(s) => {
            let o = s.overrides().unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read leader overrides");
                Vec::new()
            });
            let d = s.decisions(200).unwrap_or_default();
            (o, d)
        }
        None => (Vec::new(), Vec::new()),
    };
    let thread = std::thread::Builder::new().name("shadowroute-store".into()).spawn(move || run(store, rx, errors));
    let handle_thread = match thread {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the store writer");
            None
        }
    };
    (handle, Writer { handle: handle_thread }, overrides, decisions)
}

fn run(mut store: Option<Box<dyn Store>>, rx: Receiver<Write>, errors: IntCounterVec) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut backlog = false;
    while let Ok(first) = rx.recv() {
        // Gather by sleeping rather than by waiting on the queue: a sender then never has to
        // wake this thread (a futex call and a context switch per record on a busy core).
        // A full batch means more is queued: write on without sleeping.
        if !backlog && !matches!(first, Write::Stop) {
            std::thread::sleep(GATHER);
        }
        let mut stop_seen = matches!(first, Write::Stop);
        batch.push(first);
        while batch.len() < BATCH && !stop_seen {
            match rx.try_recv() {
                Ok(w) => {
                    stop_seen = matches!(w, Write::Stop);
                    batch.push(w);
                }
                Err(_) => break,
            }
        }
        backlog = batch.len() == BATCH;
        let stop = batch.iter().any(|w| matches!(w, Write::Stop));
        let Some(s) = store.as_mut() else {
            for w in batch.drain(..).filter(|w| !matches!(w, Write::Stop)) {
                errors.with_label_values(&[w.op()]).inc();
            }
            if stop {
                return;
            }
            continue;
        };
        let in_tx = s.begin().is_ok();
        let mut rest = &batch[..];
        while let Some(w) = rest.first() {
            let op = w.op();
            // A run of comparisons (the bulk of the writes) is inserted by one call.
            let run: Vec<&ComparisonRecord> = rest
                .iter()
                .map_while(|w| match w {
                    Write::Comparison(r) => Some(&**r),
                    _ => None,
                })
                .collect();
            let failed = match w {
                Write::Comparison(_) => s.comparisons(&run),
                Write::Decision(d) => s.decision(d).err().into_iter().collect(),
                Write::Override { route, value } => s.set_override(route, value.as_ref()).err().into_iter().collect(),
                Write::Feedback(f) => s.feedback(f).err().into_iter().collect(),
                Write::Prune { max_age, max_rows } => s.prune(*max_age, *max_rows).err().into_iter().collect(),
                Write::Stop => Vec::new(),
            };
            rest = &rest[run.len().max(1)..];
            for e in failed {
                errors.with_label_values(&[op]).inc();
                tracing::warn!(error = %e, op, "state store write failed");
            }
        }
        batch.clear();
        if in_tx {
            if let Err(e) = s.commit() {
                errors.with_label_values(&["commit"]).inc();
                tracing::warn!(error = %e, "state store commit failed");
            }
        }
        if stop {
            return;
        }
    }
}
