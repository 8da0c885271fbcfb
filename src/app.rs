//! The shared handles every task sees: the snapshot, metrics, the control channel, background tasks.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{Board, Command};
use crate::metrics::Metrics;
use crate::shadow::Shadow;
use crate::state::Snapshot;
use crate::store::StoreHandle;

/// Process-wide state. The snapshot is read once per request; only `control` stores it.
pub struct App {
    snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    pub control: mpsc::Sender<Command>,
    pub shadow: Shadow,
    pub store: StoreHandle,
    /// Decision states and the decision log, written by control.
    board: Mutex<Board>,
    /// Shadow work, store writes and other background jobs, drained on shutdown.
    pub tasks: TaskTracker,
    /// Cancelled when the process begins to shut down.
    pub shutdown: CancellationToken,
    /// 0 serving, 1 draining (readiness fails, requests still served), 2 closing (new requests get 503).
    stage: AtomicU8,
}

impl App {
    pub fn new(snapshot: Snapshot, metrics: Metrics, control: mpsc::Sender<Command>, store: StoreHandle) -> App {
        App {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            control,
            shadow: Shadow::default(),
            store,
            board: Mutex::new(Board::default()),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            stage: AtomicU8::new(0),
        }
    }

    /// The current snapshot, pinned for as long as the caller holds it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Replaces the snapshot. Only `control` calls this, so writes never race.
    pub(crate) fn store(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    pub fn draining(&self) -> bool {
        self.stage.load(Ordering::Relaxed) >= 1
    }

    pub fn closing(&self) -> bool {
        self.stage.load(Ordering::Relaxed) >= 2
    }

    pub fn begin_draining(&self) {
        self.stage.fetch_max(1, Ordering::Relaxed);
    }

    pub fn begin_closing(&self) {
        self.stage.fetch_max(2, Ordering::Relaxed);
    }

    pub fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether readiness should pass.
    pub fn ready(&self) -> bool {
        !self.draining() && self.snapshot.load().ready()
    }
}

pub type SharedApp = Arc<App>;
