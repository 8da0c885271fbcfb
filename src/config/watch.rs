//! Reload triggers: a watch on the config file's directory (survives symlink swaps) that in-place writes do not wake, SIGHUP, and a poll.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::control::Command;

/// How long file events settle before one reload; editors and the kubelet write in bursts...
const DEBOUNCE: Duration = Duration::from_millis(300);
/// ...and at most this long, so a file rewritten without pause is still reloaded.
const SETTLE_MAX: Duration = Duration::from_secs(2);
/// The poll while the directory is watched: a safety net for changes the watch does not see
/// (writes by a process that keeps the file open; file systems whose events do not arrive).
pub const POLL: Duration = Duration::from_secs(30);
/// The poll while it is not (where there is no inotify, or the watch failed, which is retried
/// at each poll): how edits are picked up then.
const POLL_UNWATCHED: Duration = Duration::from_secs(2);

/// Sends `Reload` commands until `stop`: on changes in the directory of `path`, on SIGHUP and
/// at each poll. Kubernetes ConfigMaps replace a `..data` symlink in the directory, so the
/// directory, not the file, is what is watched; unchanged content is ignored by control.
/// SIGHUP and the poll run even when the watch cannot be set up, whose error is returned.
pub fn spawn(path: &Path, control: mpsc::Sender<Command>, stop: CancellationToken) -> io::Result<()> {
    let dir: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(OsStr::to_os_string);
    // Only the config file, or the `..data` symlink the kubelet swaps, matters: the state
    // database often lives in the same directory.
    let relevant: Relevant =
        Arc::new(move |f: &OsStr| Some(f) == name.as_deref() || f.as_encoded_bytes().starts_with(b".."));
    let (mut watch, error) = match DirWatch::new(&dir, relevant.clone()) {
        Ok(w) => (Some(w), Ok(())),
        Err(e) => (None, Err(e)),
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let period = |watch: &Option<DirWatch>| if watch.is_some() { POLL } else { POLL_UNWATCHED };
        let mut next_poll = Instant::now() + period(&watch);
        loop {
            let force = tokio::select! {
                () = stop.cancelled() => return,
                first = changed(&mut watch) => {
                    // Settle: swallow the rest of the burst.
                    let mut next = first;
                    let settled_by = Instant::now() + SETTLE_MAX;
                    while next.is_ok() {
                        let quiet = settled_by.min(Instant::now() + DEBOUNCE);
                        match tokio::time::timeout_at(quiet, changed(&mut watch)).await {
                            Ok(more) => next = more,
                            Err(_settled) => break,
                        }
                    }
                    if let Err(e) = next {
                        tracing::warn!(error = %e, "the config directory is no longer watched; polling the file every 2 s");
                        watch = None;
                        next_poll = next_poll.min(Instant::now() + POLL_UNWATCHED);
                    }
                    false
                }
                _ = async { match hup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading config");
                    true
                }
                () = tokio::time::sleep_until(next_poll) => {
                    if watch.is_none() {
                        // A change missed while unwatched is caught by this poll's reload.
                        watch = DirWatch::new(&dir, relevant.clone()).ok();
                        if watch.is_some() {
                            tracing::info!("the config directory is watched again");
                        }
                    }
                    next_poll = Instant::now() + period(&watch);
                    false
                }
            };
            if control.send(Command::Reload { force, reply: None }).await.is_err() {
                return;
            }
        }
    });
    error
}

/// The next relevant change seen by `watch`; never, without one.
async fn changed(watch: &mut Option<DirWatch>) -> io::Result<()> {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

/// Whether a file name in the watched directory is one whose changes reload.
type Relevant = Arc<dyn Fn(&OsStr) -> bool + Send + Sync>;

/// An inotify watch on a directory, read by the runtime itself (no thread of its own).
#[cfg(target_os = "linux")]
struct DirWatch {
    fd: tokio::io::unix::AsyncFd<inotify::Inotify>,
    buffer: Vec<u8>,
    relevant: Relevant,
}

/// Finished writes, renames, creations, deletions and attribute changes (a `chmod` that makes
/// the file readable again), and not in-place writes or opens: a SQLite database beside the
/// config writes its log page by page and never closes it, and a watch on every write woke
/// once per page written; a watch on opens woke for the reload's own reading of the file.
#[cfg(target_os = "linux")]
const MASK: inotify::WatchMask = inotify::WatchMask::CLOSE_WRITE
    .union(inotify::WatchMask::MOVED_TO)
    .union(inotify::WatchMask::MOVED_FROM)
    .union(inotify::WatchMask::CREATE)
    .union(inotify::WatchMask::DELETE)
    .union(inotify::WatchMask::ATTRIB);

#[cfg(target_os = "linux")]
impl DirWatch {
    fn new(dir: &Path, relevant: Relevant) -> io::Result<DirWatch> {
        let inotify = inotify::Inotify::init()?;
        inotify.watches().add(dir, MASK)?;
        // Deprecated as unsound when the registered descriptor can be closed or replaced while
        // registered (`register`, the replacement, is `unsafe`). Here nothing does: the inotify
        // instance is never replaced through `get_mut` (used only to read), and its descriptor
        // is closed only when the last handle to it drops, after `AsyncFd` has deregistered it.
        #[allow(deprecated)]
        let fd = tokio::io::unix::AsyncFd::new(inotify)?;
        Ok(DirWatch { fd, buffer: vec![0; 4096], relevant })
    }

    /// Returns when a relevant file changed, or events were lost (the queue overflowed);
    /// an error when the watch ended (the directory went away).
    async fn changed(&mut self) -> io::Result<()> {
        use inotify::EventMask;
        let DirWatch { fd, buffer, relevant } = self;
        loop {
            let mut ready = fd.readable_mut().await?;
            let Ok(read) = ready.try_io(|inotify| inotify.get_mut().read_events(buffer)) else { continue };
            let mut found = false;
            for event in read? {
                if event.mask.contains(EventMask::IGNORED) {
                    return Err(io::Error::other("the watch on the config directory ended"));
                }
                found |= event.mask.contains(EventMask::Q_OVERFLOW) || event.name.is_some_and(&**relevant);
            }
            if found {
                return Ok(());
            }
        }
    }
}

/// Where there is no inotify, no watch (there is none to hold): the poll picks edits up.
#[cfg(not(target_os = "linux"))]
enum DirWatch {}

#[cfg(not(target_os = "linux"))]
impl DirWatch {
    fn new(_dir: &Path, _relevant: Relevant) -> io::Result<DirWatch> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no directory watch on this system; edits are polled every 2 s"))
    }

    async fn changed(&mut self) -> io::Result<()> {
        match *self {}
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Whether the watch reports a change within `wait` (an error fails the test).
    async fn reports(watch: &mut DirWatch, wait: Duration) -> bool {
        match tokio::time::timeout(wait, watch.changed()).await {
            Ok(result) => {
                result.unwrap();
                true
            }
            Err(_quiet) => false,
        }
    }

    /// Reads what is pending, so the next check sees only the next change.
    async fn drain(watch: &mut DirWatch) {
        while reports(watch, Duration::from_millis(100)).await {}
    }

    #[tokio::test]
    async fn wakes_for_the_configs_changes_and_the_kubelets_swap_not_for_a_database_beside_it() {
        let dir = std::env::temp_dir().join(format!("shadowroute-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("routes.yaml");
        std::fs::write(&config, "a").unwrap();
        let mut db = std::fs::File::create(dir.join("state.db")).unwrap();
        let relevant: Relevant = Arc::new(|f: &OsStr| f == "routes.yaml" || f.as_encoded_bytes().starts_with(b".."));
        let mut watch = DirWatch::new(&dir, relevant).unwrap();

        // A database writing in place, and the config read: no event at all, so nothing wakes.
        for _ in 0..100 {
            std::io::Write::write_all(&mut db, &[0; 4096]).unwrap();
        }
        db.sync_all().unwrap();
        assert_eq!(std::fs::read(&config).unwrap(), b"a");
        assert!(tokio::time::timeout(Duration::from_millis(300), watch.fd.readable()).await.is_err());
        // Another file written whole: read, and not reported.
        std::fs::write(dir.join("other.json"), "{}").unwrap();
        assert!(!reports(&mut watch, Duration::from_millis(300)).await);

        // The existing config written in place (opened, truncated, written, closed).
        std::fs::write(&config, "b").unwrap();
        assert!(reports(&mut watch, Duration::from_secs(5)).await);
        drain(&mut watch).await;
        // Made readable again after a failed reload.
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        assert!(reports(&mut watch, Duration::from_secs(5)).await);
        drain(&mut watch).await;
        // Replaced by a rename, as editors save.
        std::fs::write(dir.join(".routes.yaml.swp"), "c").unwrap();
        drain(&mut watch).await;
        std::fs::rename(dir.join(".routes.yaml.swp"), &config).unwrap();
        assert!(reports(&mut watch, Duration::from_secs(5)).await);
        drain(&mut watch).await;

        // The kubelet's swap: a new `..data` symlink renamed over the old one.
        std::os::unix::fs::symlink("v2", dir.join("tmp-data")).unwrap();
        drain(&mut watch).await;
        std::fs::rename(dir.join("tmp-data"), dir.join("..data")).unwrap();
        assert!(reports(&mut watch, Duration::from_secs(5)).await);
        drain(&mut watch).await;

        // The watch removed (as when its file system goes away): an error, not a silent stop.
        let mut watches = watch.fd.get_ref().watches();
        let wd = watches.add(&dir, MASK).unwrap();
        watches.remove(wd).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(5), watch.changed()).await;
        assert!(matches!(ended, Ok(Err(_))), "{ended:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
