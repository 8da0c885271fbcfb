//! Reload triggers: a watch on the config file's directory (survives symlink swaps), SIGHUP, and a slow poll.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::control::Command;

/// How long file events settle before one reload; editors and the kubelet write in bursts.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// A safety net for file systems whose events do not arrive.
const POLL: Duration = Duration::from_secs(30);

/// Watches the directory of `path` and sends `Reload` commands until `stop`.
/// Kubernetes ConfigMaps replace a `..data` symlink in the directory, so the directory,
/// not the file, is what is watched; unchanged content is ignored by control.
pub fn spawn(path: &Path, control: mpsc::Sender<Command>, stop: CancellationToken) -> notify::Result<()> {
    let dir: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let name = path.file_name().map(|n| n.to_os_string());
    // Only the config file, or the `..data` symlink the kubelet swaps, matters: the state
    // database often lives in the same directory and is written all the time.
    let relevant = move |p: &Path| {
        p.file_name().is_some_and(|f| Some(f) == name.as_deref() || f.to_string_lossy().starts_with(".."))
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| e.paths.iter().any(|p| relevant(p))) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        let _watcher = watcher;
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut poll = tokio::time::interval(POLL);
        poll.tick().await;
        loop {
            let force = tokio::select! {
                () = stop.cancelled() => return,
                event = rx.recv() => {
                    if event.is_none() { return; }
                    // Settle: swallow the rest of the burst.
                    loop {
                        match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                            Ok(Some(())) => continue,
                            Ok(None) => return,
                            Err(_) => break,
                        }
                    }
                    false
                }
                _ = async { match hup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading config");
                    true
                }
                _ = poll.tick() => false,
            };
            if control.send(Command::Reload { force, reply: None }).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}
