//! The archive sink (`kind = "archive"`): appends every event as one JSON object per line
//! to `events-NNNNNNNN.jsonl` files in a folder, starting the next file before one would
//! pass `max_file_size`. For audit and offline replay.
//!
//! Invariants:
//! - A line is never half-written: it is built whole, written with one `write_all` to a
//!   file opened for appending, and a failed write is cut off again (`set_len`). A torn
//!   last line left by a crash is cut off when the folder is first opened, with a warning.
//! - Building the sink touches nothing: `check`, `test-sink` and a reload build sinks they
//!   may throw away, and one that cut a "torn" line while the running sink was writing it
//!   would delete a delivered event. The folder is opened at the first delivery, under an
//!   exclusive lock on `.hookrelay-archive.lock`, held while the sink lives: a second
//!   writer (another relay, `test-sink` beside a running one) is refused and retried.
//! - `Delivered` is reported only after the line is fsync'd (`sync_data`); a new file's
//!   directory entry is fsync'd too. Delivery is at least once: an event whose line was
//!   synced just before a crash is appended again after restart; readers drop duplicates
//!   by `id`.
//! - Only this sink writes in its folder (the lock file); one mutex orders its appends.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;

use super::{Delivery, Outcome, Sink, SinkBuildError, SinkError};
use crate::config::ArchiveSinkConfig;

const PREFIX: &str = "events-";
const SUFFIX: &str = ".jsonl";
/// Held while a sink has the folder open: one writer per folder.
const LOCK_FILE: &str = ".hookrelay-archive.lock";
/// How much of a file's end is read at a time while looking for its last full line.
const TAIL_CHUNK: u64 = 64 * 1024;

/// Appends events to JSON-lines files in one folder.
#[derive(Debug)]
pub struct ArchiveSink {
    name: Arc<str>,
    dir: PathBuf,
    max_file_size: u64,
    /// `None` until the first delivery opens the folder.
    state: Arc<Mutex<Option<Current>>>,
}

/// The file being appended to.
#[derive(Debug)]
struct Current {
    /// Locked for as long as this is open.
    _lock: File,
    dir: PathBuf,
    max_file_size: u64,
    seq: u64,
    file: File,
    /// Its length: every byte up to here is a whole line.
    len: u64,
}

/// One archived event, as written (field order is the line's order).
#[derive(Serialize)]
struct Line<'a> {
    id: String,
    source: &'a str,
    event_type: Option<&'a str>,
    delivery_id: Option<&'a str>,
    /// RFC 3339, UTC, milliseconds.
    received_at: String,
    content_type: Option<&'a str>,
    /// `[name, value]` in arrival order; a value that is not UTF-8 is decoded lossily.
    headers: Vec<(&'a str, String)>,
    /// `"utf-8"` or `"base64"`: how `body` holds the original bytes.
    body_encoding: &'static str,
    body: String,
}

impl ArchiveSink {
    /// The sink for `config`; its folder is opened at the first delivery.
    pub fn new(name: &str, config: &ArchiveSinkConfig) -> Result<ArchiveSink, SinkBuildError> {
        Ok(ArchiveSink {
            name: Arc::from(name),
            dir: config.path.clone(),
            max_file_size: config.max_file_size,
            state: Arc::new(Mutex::new(None)),
        })
    }
}

impl Sink for ArchiveSink {
    fn kind(&self) -> &'static str {
        "archive"
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        let line = line(delivery);
        let state = self.state.clone();
        let (dir, max_file_size) = (self.dir.clone(), self.max_file_size);
        // File writes and fsync block: keep them off the async workers.
        let written = tokio::task::spawn_blocking(move || {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            let current = match &mut *state {
                Some(current) => current,
                None => state.insert(Current::open(&dir, max_file_size)?),
            };
            current.append(&line)
        })
        .await;
        match written {
            Ok(Ok(())) => Outcome::Delivered {
                status: None,
                message_id: None,
            },
            Ok(Err(e)) => Outcome::Retry {
                after: None,
                error: SinkError::new(
                    None,
                    format!(
                        "cannot append to the archive folder {}: {e}; check free space and \
                         permissions of [sinks.{}] path",
                        self.dir.display(),
                        self.name
                    ),
                ),
            },
            Err(e) => Outcome::Retry {
                after: None,
                error: SinkError::new(None, format!("the archive write was interrupted: {e}")),
            },
        }
    }
}

/// The event as one line, newline included.
fn line(d: &Delivery) -> Vec<u8> {
    let (body_encoding, body) = match std::str::from_utf8(&d.event.body) {
        Ok(text) => ("utf-8", text.to_string()),
        Err(_) => ("base64", BASE64.encode(&d.event.body)),
    };
    let received = UNIX_EPOCH + Duration::from_millis(d.event.received_at_ms);
    let line = Line {
        id: d.event.id.hyphenated().to_string(),
        source: &d.event.source,
        event_type: d.event.event_type.as_deref(),
        delivery_id: d.event.delivery_id.as_deref(),
        received_at: humantime::format_rfc3339_millis(received).to_string(),
        content_type: d.event.content_type.as_deref(),
        // Credentials are masked, as the admin API does; signatures stay, so an auditor
        // can check an event against its sender's secret later.
        headers: d
            .event
            .headers
            .iter()
            .map(|(k, v)| {
                let value = if crate::verify::is_credential_header(&k.to_ascii_lowercase()) {
                    "***".to_string()
                } else {
                    String::from_utf8_lossy(v).into_owned()
                };
                (k.as_str(), value)
            })
            .collect(),
        body_encoding,
        body,
    };
    // serde_json escapes every control character, so the line holds no raw newline.
    let mut out = serde_json::to_vec(&line).expect("an event always serializes");
    out.push(b'\n');
    out
}

impl Current {
    /// Opens (creating) the folder and its newest file under the folder's lock, cutting
    /// off a torn last line.
    fn open(dir: &Path, max_file_size: u64) -> io::Result<Current> {
        fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))?;
        if let Err(e) = lock.try_lock() {
            return Err(match e {
                std::fs::TryLockError::WouldBlock => io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    "another hookrelay sink writes in this folder (it holds .hookrelay-archive.lock); \
                     give each archive sink a folder of its own",
                ),
                std::fs::TryLockError::Error(e) => e,
            });
        }
        let newest = fs::read_dir(dir)?
            .filter_map(|entry| sequence(&entry.ok()?.file_name().to_string_lossy()))
            .max();
        let seq = newest.unwrap_or(1);
        let (file, len) = open_file(dir, seq)?;
        let mut current = Current {
            _lock: lock,
            dir: dir.to_path_buf(),
            max_file_size,
            seq,
            file,
            len,
        };
        current.cut_torn_tail()?;
        Ok(current)
    }

    /// Cuts a last line with no newline (a crash mid-write) off the current file.
    fn cut_torn_tail(&mut self) -> io::Result<()> {
        let whole = last_line_end(&mut self.file, self.len)?;
        if whole < self.len {
            tracing::warn!(
                file = %file_path(&self.dir, self.seq).display(),
                bytes = self.len - whole,
                "archive: cutting off a torn last line left by a crash; that event was not \
                 reported delivered and is appended again"
            );
            self.file.set_len(whole)?;
            self.file.sync_all()?;
            self.len = whole;
        }
        Ok(())
    }

    /// Appends one whole line and syncs it; starts the next file first when needed.
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let size = line.len() as u64;
        // A line longer than the limit still gets a file of its own.
        if self.len > 0 && self.len + size > self.max_file_size {
            let (file, len) = open_file(&self.dir, self.seq + 1)?;
            self.seq += 1;
            self.file = file;
            self.len = len;
        }
        if let Err(e) = self
            .file
            .write_all(line)
            .and_then(|()| self.file.sync_data())
        {
            // Never leave part of a line behind: later lines would follow garbage.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += size;
        Ok(())
    }
}

/// `events-00000042.jsonl` → 42.
fn sequence(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn file_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:08}{SUFFIX}"))
}

/// Opens file `seq` for appending, creating it (and syncing the folder so it survives a
/// crash); returns it with its length.
fn open_file(dir: &Path, seq: u64) -> io::Result<(File, u64)> {
    let path = file_path(dir, seq);
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)?;
    if !existed {
        File::open(dir)?.sync_all()?;
    }
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// The length of the file's whole lines: just past its last `\n`, or 0.
fn last_line_end(file: &mut File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; TAIL_CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(TAIL_CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use uuid::Uuid;

    fn delivery(body: &'static [u8]) -> Delivery {
        Delivery {
            event: Arc::new(crate::store::StoredEvent {
                id: Uuid::now_v7(),
                source: Arc::from("nexus"),
                event_type: Some("component.created".to_string()),
                content_type: Some("application/json".to_string()),
                received_at_ms: 1_700_000_000_123,
                body: Bytes::from_static(body),
                delivery_id: Some("d-1".to_string()),
                headers: vec![(
                    "x-nexus-webhook-id".to_string(),
                    b"rm:repository:component".to_vec(),
                )],
            }),
            summary: None,
            attempt: 1,
        }
    }

    fn sink(dir: &Path, max: u64) -> ArchiveSink {
        ArchiveSink::new(
            "audit",
            &ArchiveSinkConfig {
                path: dir.to_path_buf(),
                max_file_size: max,
            },
        )
        .unwrap()
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn credentials_are_masked_and_signatures_kept() {
        let mut d = delivery(b"{}");
        std::sync::Arc::make_mut(&mut d.event).headers = vec![
            ("authorization".to_string(), b"Basic dXNlcjpwYXNz".to_vec()),
            ("x-api-key".to_string(), b"hunter2".to_vec()),
            ("x-hub-signature-256".to_string(), b"sha256=ab".to_vec()),
            ("idempotency-key".to_string(), b"idem-1".to_vec()),
        ];
        let v: serde_json::Value = serde_json::from_slice(&line(&d)).unwrap();
        assert_eq!(
            v["headers"],
            serde_json::json!([
                ["authorization", "***"],
                ["x-api-key", "***"],
                ["x-hub-signature-256", "sha256=ab"],
                ["idempotency-key", "idem-1"]
            ])
        );
    }

    #[test]
    fn a_line_holds_every_field_and_a_non_utf8_body_as_base64() {
        let d = delivery(b"{\"a\":\"\n\"}");
        let v: serde_json::Value = serde_json::from_slice(&line(&d)).unwrap();
        assert_eq!(v["id"], d.event.id.to_string());
        assert_eq!(v["source"], "nexus");
        assert_eq!(v["event_type"], "component.created");
        assert_eq!(v["delivery_id"], "d-1");
        assert_eq!(v["received_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["headers"][0][0], "x-nexus-webhook-id");
        assert_eq!(v["headers"][0][1], "rm:repository:component");
        assert_eq!(v["body_encoding"], "utf-8");
        assert_eq!(v["body"], "{\"a\":\"\n\"}");
        let raw = line(&d);
        assert_eq!(raw.iter().filter(|&&b| b == b'\n').count(), 1);

        let v: serde_json::Value = serde_json::from_slice(&line(&delivery(b"\xff\x00"))).unwrap();
        assert_eq!(v["body_encoding"], "base64");
        assert_eq!(v["body"], "/wA=");
    }

    #[tokio::test]
    async fn appends_then_rotates_before_a_file_would_pass_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let one = line(&delivery(b"{}")).len() as u64;
        // Room for two lines per file.
        let s = sink(dir.path(), one * 2 + one / 2);
        for _ in 0..5 {
            assert_eq!(
                s.deliver(&delivery(b"{}")).await,
                Outcome::Delivered {
                    status: None,
                    message_id: None,
                }
            );
        }
        let counts: Vec<usize> = (1..=3)
            .map(|seq| lines(&file_path(dir.path(), seq)).len())
            .collect();
        assert_eq!(counts, [2, 2, 1]);
        assert!(!file_path(dir.path(), 4).exists());
    }

    #[tokio::test]
    async fn a_restart_cuts_a_torn_line_and_continues_the_newest_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = sink(dir.path(), 1 << 20);
            s.deliver(&delivery(b"first")).await;
        }
        let path = file_path(dir.path(), 1);
        let whole = fs::metadata(&path).unwrap().len();
        // A crash mid-write leaves the start of a line.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":\"torn")
            .unwrap();
        // Building touches nothing (a reload or `check` builds sinks it throws away)...
        let s = sink(dir.path(), 1 << 20);
        assert!(fs::metadata(&path).unwrap().len() > whole);
        // ...the first delivery opens the folder and cuts the torn line.
        s.deliver(&delivery(b"second")).await;
        let got: Vec<String> = lines(&path)
            .iter()
            .map(|v| v["body"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, ["first", "second"]);
    }

    #[test]
    fn a_file_with_no_newline_at_all_is_cut_to_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            file_path(dir.path(), 7),
            vec![b'x'; (TAIL_CHUNK * 2 + 5) as usize],
        )
        .unwrap();
        fs::write(dir.path().join("events-notes.jsonl"), "not ours").unwrap();
        let current = Current::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((current.seq, current.len), (7, 0));
    }

    #[tokio::test]
    async fn a_second_writer_in_the_folder_is_refused_and_cuts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let running = sink(dir.path(), 1 << 20);
        running.deliver(&delivery(b"first")).await;
        let path = file_path(dir.path(), 1);
        // As a write in progress would look to anyone else.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":\"in progress")
            .unwrap();
        let before = fs::metadata(&path).unwrap().len();
        let other = sink(dir.path(), 1 << 20);
        let Outcome::Retry { error, .. } = other.deliver(&delivery(b"second")).await else {
            panic!("a second writer must wait");
        };
        assert!(
            error.message.contains("another hookrelay sink"),
            "{}",
            error.message
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), before);
        // Once the first is gone, the folder is the other's.
        drop(running);
        assert!(matches!(
            other.deliver(&delivery(b"second")).await,
            Outcome::Delivered { .. }
        ));
    }

    #[test]
    fn file_names_parse_only_when_they_are_ours() {
        assert_eq!(sequence("events-00000042.jsonl"), Some(42));
        assert_eq!(sequence("events-.jsonl"), None);
        assert_eq!(sequence("events-1a.jsonl"), None);
        assert_eq!(sequence("other-1.jsonl"), None);
    }
}
