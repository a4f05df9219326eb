//! Hot reload: polls a file (or directory) every 500 ms and applies it to a
//! [`ControlPlane`] when its contents change. An invalid new version is logged and the
//! previous configuration keeps serving.
//!
//! Polling instead of inotify keeps the dependency tree small and works on every
//! filesystem (including bind mounts and editors that replace files).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use crate::error::ConfigError;
use crate::model::MeshConfig;
use crate::raw::{load_raw, raw_files};
use crate::server::ControlPlane;

/// The default polling period.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What a watched path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `mesh.yaml`.
    Mesh,
    /// A raw resource file or directory ([`crate::raw`]).
    Raw,
}

/// Loads `path` into `control` once.
pub fn apply(control: &ControlPlane, path: &Path, source: Source) -> Result<(), ConfigError> {
    match source {
        Source::Mesh => control.set_config(MeshConfig::from_file(path)?),
        Source::Raw => {
            control.replace_all(load_raw(path)?);
            Ok(())
        }
    }
}

/// The bytes the poller compares: every file's name and contents. Unreadable files count
/// as empty so a file being replaced is simply seen again on the next poll.
fn fingerprint(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let files = raw_files(path).unwrap_or_default();
    files
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap_or_default();
            (f, bytes)
        })
        .collect()
}

/// Polls `path` every `interval` forever, applying each changed version to `control`.
/// The contents at the time of the call (not of the first poll) are taken as already
/// applied, so a change made right after [`apply`] is not missed. Cancel by dropping the
/// future.
pub fn watch(
    control: ControlPlane,
    path: PathBuf,
    source: Source,
    interval: Duration,
) -> impl Future<Output = ()> + Send {
    let last = fingerprint(&path);
    poll(control, path, source, interval, last)
}

async fn poll(
    control: ControlPlane,
    path: PathBuf,
    source: Source,
    interval: Duration,
    mut last: Vec<(PathBuf, Vec<u8>)>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = fingerprint(&path);
        if now == last {
            continue;
        }
        last = now;
        match apply(&control, &path, source) {
            Ok(()) => info!(path = %path.display(), version = %control.version(), "reloaded"),
            Err(e) => warn!(
                path = %path.display(),
                version = %control.version(),
                "ignoring invalid new version, still serving the previous one: {e}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "services:\n  - name: a.default\n    port: 80\n";
    const TWO: &str =
        "services:\n  - name: a.default\n    port: 80\n  - name: b.default\n    port: 81\n";

    #[tokio::test]
    async fn reloads_valid_changes_and_keeps_serving_on_invalid_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.yaml");
        std::fs::write(&path, ONE).unwrap();
        let control = ControlPlane::new(MeshConfig::from_yaml(ONE).unwrap()).unwrap();
        let task = tokio::spawn(watch(
            control.clone(),
            path.clone(),
            Source::Mesh,
            Duration::from_millis(20),
        ));
        let wait_version = |want: &'static str| {
            let control = control.clone();
            async move {
                for _ in 0..200 {
                    if control.version() == want {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        };
        std::fs::write(&path, TWO).unwrap();
        assert!(wait_version("2").await);
        assert_eq!(control.config().unwrap().services.len(), 2);
        std::fs::write(&path, "services: [ {name: 'bad|name', port: 1} ]").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(control.version(), "2");
        std::fs::write(&path, ONE).unwrap();
        assert!(wait_version("3").await);
        task.abort();
    }
}
