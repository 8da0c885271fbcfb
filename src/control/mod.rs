//! The single writer of the routing snapshot: reloads, promotions, rollbacks and operator actions all go through here.

mod leaders;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use crate::app::SharedApp;
use crate::config::{self, Config, ConfigErrors};
use crate::decide::Decider;
use crate::state::{self, ClientPool, ReloadStatus, Snapshot};
use crate::store::{DecisionRecord, Override};

pub use leaders::{reconcile, Board, RouteStatus};

/// An operator action's answer: a message, or an HTTP status and a message.
pub type Reply = oneshot::Sender<Result<String, (u16, String)>>;

/// Operator actions on a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    Promote(String),
    Rollback,
    Pause,
    Resume,
}

/// Requests to change the snapshot.
pub enum Command {
    /// Re-read the config file. Unless `force`, an unchanged file is a no-op.
    Reload { force: bool, reply: Option<oneshot::Sender<Result<String, ConfigErrors>>> },
    /// Evaluate every route's evidence and apply what the decision engine decides.
    Tick,
    /// An operator action through the admin API.
    Operate { route: String, action: Operator, reply: Reply },
}

/// Owns everything needed to build the next snapshot.
pub struct Control {
    app: SharedApp,
    pool: ClientPool,
    config_path: Option<PathBuf>,
    /// Leaders chosen at run time, by route.
    leaders: HashMap<String, String>,
    overrides: HashMap<String, Override>,
    deciders: HashMap<String, Decider>,
    generation: u64,
}

/// Builds the first snapshot, before the app exists, with the leaders that survived the restart.
pub fn initial(
    config: Arc<Config>,
    pool: &mut ClientPool,
    metrics: &crate::metrics::Metrics,
    leaders: &HashMap<String, String>,
) -> Snapshot {
    let status = ReloadStatus { at: SystemTime::now(), error: None };
    state::prepare(config, pool, metrics, leaders, 1, status)
}

impl Control {
    pub fn new(
        app: SharedApp,
        pool: ClientPool,
        config_path: Option<PathBuf>,
        overrides: HashMap<String, Override>,
        log: Vec<DecisionRecord>,
    ) -> Control {
        let leaders = overrides.iter().map(|(r, o)| (r.clone(), o.model.clone())).collect();
        let control = Control { app, pool, config_path, leaders, overrides, deciders: HashMap::new(), generation: 1 };
        control.app.board().log = log.into_iter().collect::<VecDeque<_>>();
        control.publish_metrics(&control.app.snapshot());
        control.app.metrics.config_last_reload_success.set(1);
        for result in ["success", "error"] {
            control.app.metrics.config_reloads.with_label_values(&[result]);
        }
        control
    }

    /// Applies commands one at a time until the channel closes.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::Reload { force, reply } => {
                    let result = self.reload(force).await;
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
                Command::Tick => self.tick(),
                Command::Operate { route, action, reply } => {
                    let _ = reply.send(self.operate(&route, action));
                }
            }
        }
    }

    async fn reload(&mut self, force: bool) -> Result<String, ConfigErrors> {
        let Some(path) = self.config_path.clone() else {
            return Ok("no config file: nothing to reload".into());
        };
        let loaded = tokio::task::spawn_blocking(move || config::load(&path)).await;
        let loaded = loaded.unwrap_or_else(|e| {
            Err(ConfigErrors {
                file: "config".into(),
                errors: vec![config::ConfigError {
                    pos: config::Pos { line: 1, col: 1 },
                    message: format!("reload task failed: {e}"),
                }],
            })
        });
        let current = self.app.snapshot();
        let app = self.app.clone();
        let metrics = &app.metrics;
        match loaded {
            Ok(config) => {
                if !force && config.hash == current.config.hash && current.last_reload.error.is_none() {
                    return Ok("unchanged".into());
                }
                if config.server.listen != current.config.server.listen
                    || config.server.admin_listen != current.config.server.admin_listen
                {
                    tracing::warn!("listen addresses changed in the config; they take effect on restart");
                }
                let config = Arc::new(config);
                self.reconcile_overrides(&config);
                let hash = config.hash.clone();
                self.swap(config, None);
                metrics.config_reloads.with_label_values(&["success"]).inc();
                metrics.config_last_reload_success.set(1);
                tracing::info!(hash = %hash, generation = self.generation, "config reloaded");
                Ok(hash)
            }
            Err(errors) => {
                // The same failure found again by the watch or the poll: already logged, counted
                // and shown; only an operator's reload reports it anew.
                if !force && current.last_reload.error.as_ref() == Some(&errors) {
                    return Err(errors);
                }
                metrics.config_reloads.with_label_values(&["error"]).inc();
                metrics.config_last_reload_success.set(0);
                tracing::error!("config reload failed; the previous config keeps serving:\n{errors}");
                self.swap(current.config.clone(), Some(errors.clone()));
                Err(errors)
            }
        }
    }

    /// Builds and stores the next snapshot from `config` and the current leaders.
    fn swap(&mut self, config: Arc<Config>, error: Option<ConfigErrors>) {
        self.generation += 1;
        let status = ReloadStatus { at: SystemTime::now(), error };
        let next = state::prepare(config, &mut self.pool, &self.app.metrics, &self.leaders, self.generation, status);
        self.publish_metrics(&next);
        self.app.store(next);
    }

    /// Sets the per-route series to the new snapshot's values, zeroes included.
    fn publish_metrics(&self, snap: &Snapshot) {
        self.app.shadow.sync_routes(snap);
        let m = &self.app.metrics;
        m.leader_info.reset();
        // Quality gauges describe the current leader and candidates only: series of routes or
        // candidates that are gone must not linger with their last value.
        for g in [
            &m.agreement,
            &m.noise_agreement,
            &m.judge_win_rate,
            &m.judge_win_rate_lower,
            &m.judge_win_rate_upper,
            &m.latency_ratio,
        ] {
            g.reset();
        }
        m.decision_state.reset();
        for op in ["open", "comparison", "decision", "override", "feedback", "prune"] {
            m.store_errors.with_label_values(&[op]);
        }
        for name in snap.config.models.keys() {
            for kind in ["connect", "request", "timeout", "status_429", "status_5xx"] {
                m.upstream_errors.with_label_values(&[name, kind]);
            }
        }
        for r in &snap.routes {
            m.leader_info.with_label_values(&[&r.route.name, &r.leader]).set(1);
            let chain: Vec<&String> = std::iter::once(&r.leader).chain(&r.route.fallbacks).collect();
            for pair in chain.windows(2) {
                m.fallbacks.with_label_values(&[&r.route.name, pair[0], pair[1]]);
            }
            for model in std::iter::once(&r.leader).chain(&r.route.fallbacks) {
                m.duration.with_label_values(&[&r.route.name, model]);
                m.ttfb.with_label_values(&[&r.route.name, model]);
                for direction in ["input", "output"] {
                    m.tokens.with_label_values(&[&r.route.name, model, direction]);
                }
                m.cost.with_label_values(&[&r.route.name, model]);
            }
            for reason in ["degraded", "rollback", "manual", "sre_edit"] {
                m.leader_changes.with_label_values(&[&r.route.name, reason]);
            }
            // Quality gauges start as NaN (no data), not 0, which would read as total disagreement.
            let unset = |g: &prometheus::GaugeVec, labels: &[&str]| g.with_label_values(labels).set(f64::NAN);
            unset(&m.noise_agreement, &[&r.route.name]);
            for s in crate::decide::State::ALL {
                m.decision_state.with_label_values(&[&r.route.name, s.as_str()]);
            }
            for c in &r.candidates {
                for g in [&m.agreement, &m.judge_win_rate, &m.judge_win_rate_lower, &m.judge_win_rate_upper] {
                    unset(g, &[&r.route.name, &c.model]);
                }
                for q in ["ttft_p50", "ttft_p95", "total_p50", "total_p95"] {
                    unset(&m.latency_ratio, &[&r.route.name, &c.model, q]);
                }
                for outcome in ["ok", "error", "timeout", "leader_failed"] {
                    m.shadow_requests.with_label_values(&[&r.route.name, &c.model, outcome]);
                }
                for reason in ["inflight", "budget", "draining"] {
                    m.shadow_dropped.with_label_values(&[&r.route.name, &c.model, reason]);
                }
            }
        }
    }
}
