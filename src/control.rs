//! The single writer of the routing snapshot: every reload (and later every leader change) goes through here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use crate::app::SharedApp;
use crate::config::{self, Config, ConfigErrors};
use crate::state::{self, ClientPool, ReloadStatus, Snapshot};

/// Requests to change the snapshot.
pub enum Command {
    /// Re-read the config file. Unless `force`, an unchanged file is a no-op.
    Reload { force: bool, reply: Option<oneshot::Sender<Result<String, ConfigErrors>>> },
}

/// Owns everything needed to build the next snapshot.
pub struct Control {
    app: SharedApp,
    pool: ClientPool,
    config_path: Option<PathBuf>,
    leaders: HashMap<String, String>,
    generation: u64,
}

/// Builds the first snapshot, before the app exists.
pub fn initial(config: Arc<Config>, pool: &mut ClientPool) -> Snapshot {
    let status = ReloadStatus { at: SystemTime::now(), error: None };
    state::prepare(config, pool, &HashMap::new(), 1, status)
}

impl Control {
    pub fn new(app: SharedApp, pool: ClientPool, config_path: Option<PathBuf>) -> Control {
        let control = Control { app, pool, config_path, leaders: HashMap::new(), generation: 1 };
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
        let metrics = &self.app.metrics;
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
                self.generation += 1;
                let status = ReloadStatus { at: SystemTime::now(), error: None };
                let hash = config.hash.clone();
                let next = state::prepare(Arc::new(config), &mut self.pool, &self.leaders, self.generation, status);
                self.publish_metrics(&next);
                self.app.store(next);
                metrics.config_reloads.with_label_values(&["success"]).inc();
                metrics.config_last_reload_success.set(1);
                tracing::info!(hash = %hash, generation = self.generation, "config reloaded");
                Ok(hash)
            }
            Err(errors) => {
                metrics.config_reloads.with_label_values(&["error"]).inc();
                metrics.config_last_reload_success.set(0);
                tracing::error!("config reload failed; the previous config keeps serving:\n{errors}");
                let status = ReloadStatus { at: SystemTime::now(), error: Some(errors.clone()) };
                let same =
                    state::prepare(current.config.clone(), &mut self.pool, &self.leaders, current.generation, status);
                self.app.store(same);
                Err(errors)
            }
        }
    }

    /// Sets the per-route series to the new snapshot's values, zeroes included.
    fn publish_metrics(&self, snap: &Snapshot) {
        self.app.shadow.sync_routes(snap);
        let m = &self.app.metrics;
        m.leader_info.reset();
        for r in &snap.routes {
            m.leader_info.with_label_values(&[&r.route.name, &r.leader]).set(1);
            for model in std::iter::once(&r.leader).chain(&r.route.fallbacks) {
                m.duration.with_label_values(&[&r.route.name, model]);
                m.ttfb.with_label_values(&[&r.route.name, model]);
                for direction in ["input", "output"] {
                    m.tokens.with_label_values(&[&r.route.name, model, direction]);
                }
                m.cost.with_label_values(&[&r.route.name, model]);
            }
            for c in &r.candidates {
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
