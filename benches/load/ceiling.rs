//! The durable ceiling: bare hyper plus the two things no durable relay can skip, measured
//! in the same run. Its handler checks the GitHub signature as the relay does and hands the
//! body to one journal thread, which group-commits like the relay's store writer: it takes
//! every body waiting, writes them as one contiguous run into a file on the relay's file
//! system, `fdatasync`s once, then lets their `202`s go. No index, no dedup, no b-tree, no
//! reads: the fastest any store that syncs before answering could be on this disk and
//! these cores. The relay's ratio to it says how much of the gap to bare hyper is the
//! store's own work, and how much is the host's price of a sync.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::{Machine, SECRET, id_reply, serve_http1};

/// The journal's span: records wrap around inside it, over blocks written (zeroed) at start,
/// so no write waits for the file system to allocate (as the relay's hole filler arranges).
const JOURNAL_BYTES: u64 = 64 << 20;

/// A body on its way to the journal, and who waits for its sync.
type Entry = (Bytes, oneshot::Sender<()>);

/// The running ceiling server; stops when dropped.
pub(crate) struct SyncedAppend {
    runtime: Option<tokio::runtime::Runtime>,
    pub(crate) addr: std::net::SocketAddr,
}

impl SyncedAppend {
    /// Starts the journal thread on a file in `dir` and the server on a loopback port.
    pub(crate) fn start(machine: &Machine, dir: &Path) -> anyhow::Result<SyncedAppend> {
        let path = dir.join("ceiling.journal");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all_at(&vec![0; JOURNAL_BYTES as usize], 0)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot zero {}", path.display()))?;
        let (tx, rx) = mpsc::unbounded_channel::<Entry>();
        std::thread::Builder::new()
            .name("ceiling-journal".into())
            .spawn(move || journal(file, rx))
            .context("cannot start the ceiling's journal thread")?;
        // As many workers as the relay's runtime and the bare baseline get: one per core.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(machine.cores)
            .thread_name("ceiling-server")
            .enable_all()
            .build()
            .context("cannot start the ceiling server's runtime")?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        runtime.spawn(serve(listener, Arc::new(tx)));
        Ok(SyncedAppend {
            runtime: Some(runtime),
            addr,
        })
    }
}

impl Drop for SyncedAppend {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping the server's tasks drops the last sender: the journal thread ends.
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// The group commit: every body waiting goes into one contiguous write and one sync.
fn journal(file: std::fs::File, mut rx: mpsc::UnboundedReceiver<Entry>) {
    let mut offset = 0u64;
    let mut run = Vec::with_capacity(256 << 10);
    let mut waiting = Vec::with_capacity(256);
    while let Some(first) = rx.blocking_recv() {
        waiting.push(first);
        while let Ok(next) = rx.try_recv() {
            waiting.push(next);
        }
        run.clear();
        for (body, _) in &waiting {
            // A length prefix, as any journal that is read back needs.
            run.extend_from_slice(&(body.len() as u32).to_le_bytes());
            run.extend_from_slice(body);
        }
        if offset + run.len() as u64 > JOURNAL_BYTES {
            offset = 0;
        }
        let synced = file
            .write_all_at(&run, offset)
            .and_then(|()| file.sync_data());
        offset += run.len() as u64;
        if let Err(err) = synced {
            // The waiting requests' senders drop unanswered: they get a 500, which fails
            // the run, saying why here.
            eprintln!("ceiling journal: cannot write or sync: {err}");
            waiting.clear();
            continue;
        }
        for (_, synced) in waiting.drain(..) {
            let _ = synced.send(());
        }
    }
}

/// Whether `header` is `sha256=` and the hex HMAC-SHA256 of `body` under the bench's secret.
fn signed(header: Option<&http::HeaderValue>, body: &[u8]) -> bool {
    use hmac::{KeyInit, Mac};
    let Some(hex_tag) = header.and_then(|v| v.as_bytes().strip_prefix(b"sha256=")) else {
        return false;
    };
    let Ok(tag) = hex::decode(hex_tag) else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// Answers `202` once the body is synced, `401` when its signature does not check.
async fn serve(listener: TcpListener, journal: Arc<mpsc::UnboundedSender<Entry>>) {
    serve_http1(listener, move |request: Request<Incoming>| {
        let journal = journal.clone();
        async move {
            let (parts, body) = request.into_parts();
            let Ok(body) = body.collect().await else {
                return id_reply(StatusCode::BAD_REQUEST);
            };
            let body = body.to_bytes();
            if !signed(parts.headers.get("x-hub-signature-256"), &body) {
                return id_reply(StatusCode::UNAUTHORIZED);
            }
            let (synced, wait) = oneshot::channel();
            if journal.send((body, synced)).is_ok() && wait.await.is_ok() {
                id_reply(StatusCode::ACCEPTED)
            } else {
                id_reply(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    })
    .await
}
