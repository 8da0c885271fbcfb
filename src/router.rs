//! A running router: binds both listeners, starts control and the reload triggers, and drains on shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{App, SharedApp};
use crate::config::Config;
use crate::control::{self, Control};
use crate::metrics::Metrics;
use crate::server::Timeouts;
use crate::state::ClientPool;
use crate::{admin, proxy, server, store};

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Handles to a started router.
pub struct Router {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub app: SharedApp,
    stop_listening: CancellationToken,
    shutdown_delay: Duration,
    servers: Vec<JoinHandle<()>>,
    writer: store::Writer,
}

impl Router {
    /// Starts serving `config`. With `config_path`, the file is watched and reloadable.
    pub async fn start(config: Config, config_path: Option<PathBuf>) -> Result<Router, StartError> {
        let server_cfg = config.server.clone();
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
        };
        let listener = bind(server_cfg.listen).await?;
        let admin_listener = bind(server_cfg.admin_listen).await?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: server_cfg.listen, source })?;
        let admin_addr =
            admin_listener.local_addr().map_err(|source| StartError::Bind { addr: server_cfg.admin_listen, source })?;

        let metrics = Metrics::new()?;
        let (store, writer, stored, log) = store::open(&server_cfg.state, metrics.store_errors.clone());
        // Leaders chosen before a restart still lead, unless routes.yaml changed them since.
        let (overrides, notes) = control::reconcile(&config, stored);
        for note in &notes {
            tracing::warn!(route = %note.route, reason = %note.reason, "leader override dropped");
            store.send(store::Write::Override { route: note.route.clone(), value: None });
            store.send(store::Write::Decision(note.clone()));
        }
        let leaders = overrides.iter().map(|(r, o)| (r.clone(), o.model.clone())).collect();
        let mut pool = ClientPool::default();
        let snapshot = control::initial(Arc::new(config), &mut pool, &metrics, &leaders);
        let (tx, rx) = mpsc::channel(64);
        let app: SharedApp = Arc::new(App::new(snapshot, metrics, tx.clone(), store));
        spawn_retention(&app, server_cfg.retention_max_age, server_cfg.retention_max_records);
        let log = log.into_iter().chain(notes).collect();
        tokio::spawn(Control::new(app.clone(), pool, config_path.clone(), overrides, log).run(rx));
        spawn_ticker(&app);
        if let Some(path) = &config_path {
            match crate::config::watch::spawn(path, tx, app.shutdown.clone()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => tracing::info!("{e}"),
                Err(e) => tracing::warn!(error = %e, "cannot watch the config directory; polling the file every 2 s"),
            }
        }

        let stop_listening = CancellationToken::new();
        let drain = server_cfg.drain_timeout;
        let proxy_app = app.clone();
        let proxy_handler = move |req| proxy::handle(proxy_app.clone(), req);
        let limit_app = app.clone();
        let proxy_limit = move || limit_app.snapshot().config.server.max_body;
        let admin_app = app.clone();
        let admin_handler = move |req| admin::handle(admin_app.clone(), req);
        // The admin listener outlives the proxy's drain so /readyz keeps answering 503.
        let servers = vec![
            tokio::spawn(server::serve(
                listener,
                proxy_handler,
                proxy_limit,
                Timeouts::default(),
                stop_listening.clone(),
                drain,
            )),
            tokio::spawn(server::serve(
                admin_listener,
                admin_handler,
                || ADMIN_MAX_BODY,
                Timeouts::default(),
                app.shutdown.clone(),
                Duration::from_secs(1),
            )),
        ];
        tracing::info!(%addr, %admin_addr, "shadowroute listening");
        Ok(Router { addr, admin_addr, app, stop_listening, shutdown_delay: server_cfg.shutdown_delay, servers, writer })
    }

    /// Graceful shutdown: readiness fails first, then after `shutdown_delay` the listener
    /// closes and in-flight requests and streams finish (up to `drain_timeout`).
    pub async fn shutdown(self) {
        self.app.begin_draining();
        tracing::info!(delay = ?self.shutdown_delay, "draining: readiness now fails");
        tokio::time::sleep(self.shutdown_delay).await;
        self.app.begin_closing();
        self.stop_listening.cancel();
        let mut servers = self.servers.into_iter();
        if let Some(proxy) = servers.next() {
            let _ = proxy.await;
        }
        self.app.shutdown.cancel();
        self.app.tasks.close();
        self.app.tasks.wait().await;
        for s in servers {
            let _ = s.await;
        }
        // Background jobs are done: let the store write what they queued, then stop.
        self.app.store.stop();
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        tracing::info!("drained");
    }
}

/// The largest request body the admin listener reads.
const ADMIN_MAX_BODY: u64 = 64 * 1024;

/// How often the decision engine looks at the evidence.
const DECISION_TICK: Duration = Duration::from_millis(500);

/// Asks control to run the decision engine at a steady pace.
fn spawn_ticker(app: &SharedApp) {
    let app2 = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(DECISION_TICK);
        loop {
            tokio::select! {
                () = app2.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    // A full channel means control is busy; the next tick will do.
                    let _ = app2.control.try_send(crate::control::Command::Tick);
                }
            }
        }
    });
}

/// Prunes comparison records by age and count every minute, through the store's writer.
fn spawn_retention(app: &SharedApp, max_age: Duration, max_rows: u64) {
    let app2 = app.clone();
    // Not on `app.tasks`, which holds only request-driven work; it ends with the shutdown token.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = app2.shutdown.cancelled() => return,
                _ = tick.tick() => app2.store.send(store::Write::Prune { max_age, max_rows }),
            }
        }
    });
}
