//! The store's health for notices: its commits (published by the writer, see
//! `store::StoreHealth`) and the free space of the file system holding it (checked every
//! `[notices] check_interval` with `statvfs`). The store is unhealthy while commits fail or
//! free space is under `min_free`; `storage.unhealthy` and `storage.recovered` are raised on
//! the changes between the two.
//!
//! Invariant: reads only; `statvfs` runs on the blocking pool, so a hung file system stalls
//! this watcher and nothing else. Checking free space early is the point: a store that can
//! no longer commit cannot store the notice that says so until it can again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde_json::{Map, Value, json};

use super::{Notices, Trouble};
use crate::clock::now_ms;
use crate::store::{Store, StoreHealth};

/// Free space under the threshold, as last measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LowSpace {
    free: u64,
    since_ms: u64,
}

/// Watches until the store closes (its health channel ends). While commits fail, each
/// check also probes the store (see [`Store::ping`]), so it is seen to work again once it
/// does, whether or not events arrive meanwhile.
pub(super) async fn watch(notices: Notices, store: Store, min_free: u64, check_interval: Duration) {
    let mut commits = store.health();
    let path: PathBuf = store.path().to_path_buf();
    let mut tick = tokio::time::interval(check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut health = commits.borrow_and_update().clone();
    let mut low: Option<LowSpace> = None;
    let mut warned = false;
    // The trouble last raised, so its recovery can say what ended.
    let mut raised: Option<Trouble> = None;
    loop {
        tokio::select! {
            changed = commits.changed() => {
                if changed.is_err() {
                    return;
                }
                health = commits.borrow_and_update().clone();
            }
            _ = tick.tick() => {
                if health.failing_since_ms.is_some() {
                    // Its outcome arrives through `commits`.
                    let _probe = tokio::time::timeout(check_interval, store.ping()).await;
                }
                if min_free == 0 {
                    continue;
                }
                let folder = path.parent().unwrap_or(Path::new(".")).to_path_buf();
                match tokio::task::spawn_blocking(move || free_space(&folder)).await {
                    Ok(Ok(free)) => {
                        warned = false;
                        low = (free < min_free).then(|| LowSpace {
                            free,
                            since_ms: low.map_or_else(now_ms, |l| l.since_ms),
                        });
                    }
                    Ok(Err(err)) if !warned => {
                        warned = true;
                        tracing::warn!(error = %err, "cannot read the free space of the store's file system; storage notices see only commit failures");
                    }
                    _ => {}
                }
            }
        }
        let now = compose(&health, low, min_free);
        match (&raised, now) {
            (None, Some((trouble, extra))) => {
                notices.storage_unhealthy(trouble.clone(), extra);
                raised = Some(trouble);
            }
            (Some(_), Some((trouble, _))) => raised = Some(trouble),
            (Some(ended), None) => {
                notices.storage_recovered(ended.clone(), now_ms());
                raised = None;
            }
            (None, None) => {}
        }
    }
}

/// The store's trouble, if it has any, and the body fields that describe it.
fn compose(
    health: &StoreHealth,
    low: Option<LowSpace>,
    min_free: u64,
) -> Option<(Trouble, Map<String, Value>)> {
    let mut reasons = Vec::new();
    let mut extra = Map::new();
    let mut since: Option<u64> = None;
    if let Some(failing) = health.failing_since_ms {
        let n = health.consecutive_failures;
        reasons.push(format!(
            "{n} failed commit{} in a row",
            if n == 1 { "" } else { "s" }
        ));
        since = Some(failing);
    }
    if let Some(low) = low {
        reasons.push(format!(
            "{} free on the store's file system, under [notices] min_free {}",
            ByteSize(low.free).display().iec(),
            ByteSize(min_free).display().iec()
        ));
        extra.insert("free_bytes".into(), json!(low.free));
        extra.insert("min_free_bytes".into(), json!(min_free));
        since = Some(since.map_or(low.since_ms, |s| s.min(low.since_ms)));
    }
    let since_ms = since?;
    Some((
        Trouble {
            since_ms,
            failures: health.consecutive_failures,
            last_error: health.last_error.clone(),
            reason: reasons.join("; "),
        },
        extra,
    ))
}

/// Bytes an unprivileged writer may still use on the file system holding `folder`.
fn free_space(folder: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(folder)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_commits_and_enough_space_are_no_trouble() {
        assert_eq!(compose(&StoreHealth::default(), None, 1 << 30), None);
    }

    #[test]
    fn failing_commits_say_how_many_and_the_last_error() {
        let health = StoreHealth {
            consecutive_failures: 3,
            failing_since_ms: Some(5_000),
            last_error: Some("disk full (ENOSPC): free space on the volume".into()),
        };
        let (trouble, extra) = compose(&health, None, 1 << 30).unwrap();
        assert_eq!(trouble.since_ms, 5_000);
        assert_eq!(trouble.failures, 3);
        assert_eq!(trouble.reason, "3 failed commits in a row");
        assert!(trouble.last_error.unwrap().starts_with("disk full"));
        assert!(extra.is_empty());
    }

    #[test]
    fn low_space_names_both_sizes_and_both_causes_combine() {
        let low = LowSpace {
            free: 100 << 20,
            since_ms: 7_000,
        };
        let (trouble, extra) = compose(&StoreHealth::default(), Some(low), 1 << 30).unwrap();
        assert_eq!(
            trouble.reason,
            "100.0 MiB free on the store's file system, under [notices] min_free 1.0 GiB"
        );
        assert_eq!(extra["free_bytes"], json!(100u64 << 20));
        let failing = StoreHealth {
            consecutive_failures: 1,
            failing_since_ms: Some(9_000),
            last_error: Some("disk full".into()),
        };
        let (both, _) = compose(&failing, Some(low), 1 << 30).unwrap();
        assert_eq!(both.since_ms, 7_000, "the earlier of the two");
        assert!(
            both.reason
                .starts_with("1 failed commit in a row; 100.0 MiB free")
        );
    }

    #[test]
    fn free_space_is_read_from_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_space(dir.path()).unwrap() > 0);
        assert!(free_space(&dir.path().join("missing")).is_err());
    }
}
