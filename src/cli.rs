//! The long-running commands behind the CLI: serve and sim, with their signal handling.

use std::path::PathBuf;

use crate::router::Router;

/// `shadowroute serve`: runs until SIGTERM or SIGINT, then drains.
pub async fn serve(config_path: PathBuf) -> Result<(), String> {
    let config = crate::config::load(&config_path).map_err(|e| format!("invalid config:\n{e}"))?;
    let router = Router::start(config, Some(config_path)).await.map_err(|e| e.to_string())?;
    // Logged on stderr as plain lines so scripts and tests can find the bound ports.
    eprintln!("shadowroute: listening on http://{} (admin http://{})", router.addr, router.admin_addr);
    wait_for_termination().await;
    router.shutdown().await;
    Ok(())
}

/// `shadowroute sim`: starts the simulated servers and runs until a termination signal.
pub async fn sim(config_path: Option<PathBuf>) -> Result<(), String> {
    let cfg = match config_path {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            crate::sim::SimConfig::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => crate::sim::SimConfig::builtin(),
    };
    let running = crate::sim::start(cfg).await.map_err(|e| format!("cannot start sim servers: {e}"))?;
    for (name, addr) in running.servers() {
        eprintln!("sim: {name} http://{addr}/v1");
    }
    wait_for_termination().await;
    running.shutdown().await;
    Ok(())
}

async fn wait_for_termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
