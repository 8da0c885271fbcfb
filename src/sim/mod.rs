//! `shadowroute sim`: simulated OpenAI-compatible model servers for demos, end-to-end and load tests.

pub mod tasks;

mod audio;
mod body;
mod chat;
mod config;
mod ctx;
mod embed;
mod images;
mod multipart;
mod respond;
mod server;
mod state;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Behavior, Phase, PromptAccuracy, ServerConfig, SimConfig};

use state::ServerState;

/// The started servers; dropping this also stops them (the accept loops see the stop sender vanish),
/// but `shutdown` additionally waits until every connection task has ended.
pub struct RunningSim {
    servers: Vec<Running>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

struct Running {
    name: String,
    addr: SocketAddr,
    state: Arc<ServerState>,
}

impl std::fmt::Debug for RunningSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSim").field("servers", &self.servers()).finish()
    }
}

impl RunningSim {
    /// The bound address of server `name` (the real port when the config asked for port 0).
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.find(name).map(|s| s.addr)
    }

    /// Every server's name and bound address, in config order.
    pub fn servers(&self) -> Vec<(String, SocketAddr)> {
        self.servers.iter().map(|s| (s.name.clone(), s.addr)).collect()
    }

    /// The OpenAI base URL of server `name`, e.g. "http://127.0.0.1:8101/v1".
    pub fn base_url(&self, name: &str) -> Option<String> {
        self.addr(name).map(|addr| format!("http://{addr}/v1"))
    }

    /// Replaces the behaviour of server `name` from now on, discarding its schedule; false if unknown.
    pub fn set_behavior(&self, name: &str, b: Behavior) -> bool {
        match self.find(name) {
            Some(s) => {
                s.state.set_behavior(b);
                true
            }
            None => false,
        }
    }

    /// Stops accepting, aborts open connections (hung requests included) and waits for the loops to end.
    pub async fn shutdown(self) {
        let RunningSim { stop, tasks, .. } = self;
        // Errors only mean every loop already ended.
        let _ = stop.send(true);
        for task in tasks {
            if let Err(err) = task.await {
                tracing::warn!(error = %err, "sim accept loop ended abnormally");
            }
        }
    }

    fn find(&self, name: &str) -> Option<&Running> {
        self.servers.iter().find(|s| s.name == name)
    }
}

/// Validates `cfg`, binds every listener (port 0 allowed), then spawns the accept loops. All ports are
/// bound before anything is spawned, so a port clash fails the whole start instead of leaving a partial fleet.
pub async fn start(cfg: SimConfig) -> io::Result<RunningSim> {
    cfg.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut bound = Vec::with_capacity(cfg.servers.len());
    for spec in &cfg.servers {
        let listener = TcpListener::bind(spec.listen).await.map_err(|e| {
            io::Error::new(e.kind(), format!("sim server '{}' cannot listen on {}: {e}", spec.name, spec.listen))
        })?;
        let addr = listener.local_addr()?;
        bound.push((spec, listener, addr));
    }

    // One start instant for the whole fleet so schedules of different servers line up.
    let started = Instant::now();
    let (stop, stop_rx) = watch::channel(false);
    let mut servers = Vec::with_capacity(bound.len());
    let mut tasks = Vec::with_capacity(bound.len());
    for (spec, listener, addr) in bound {
        let state = Arc::new(ServerState::new(spec, started));
        let accept = server::accept_loop(listener, Arc::clone(&state), stop_rx.clone());
        tasks.push(tokio::spawn(accept));
        tracing::info!(server = %spec.name, %addr, "sim server listening");
        servers.push(Running { name: spec.name.clone(), addr, state });
    }
    Ok(RunningSim { servers, stop, tasks })
}
