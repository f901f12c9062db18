//! The open redb database, and reopening it after an I/O error.
//!
//! After a failed write or sync, redb refuses every later transaction, reads included, with
//! `PreviousIo` until the `Database` is dropped and opened again. Without a reopen a full
//! disk would stop ingest *and* delivery until the process restarts, even once space is
//! freed. So the writer, on such an error, reopens the file through this slot; opening runs
//! redb's repair, which rolls back to the last commit that returned.
//!
//! Invariants: at most one `Database` for the file exists at a time (redb locks the file,
//! and only the writer thread reopens). Readers hold a clone of the handle only for one
//! read; while the slot is empty (between close and open, or after a failed open) they get
//! `StoreError::Read` and try again later, as after any failed read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use super::StoreError;
use super::prefill::PrefilledFile;

/// redb's page cache. Small, because the queue is read in due order and the events once
/// each: a large cache would only hold RSS.
const CACHE_BYTES: usize = 32 << 20;

/// How long a reopen waits for reads in progress to let go of the old handle. Reads are
/// short (one page of due entries); past this the reopen fails and is tried again later.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The current database, or none while it is being reopened.
pub(super) struct Slot {
    path: PathBuf,
    current: RwLock<Option<Arc<Database>>>,
}

/// Opens (or creates) the file.
pub(super) fn open_database(path: &Path) -> Result<Database, redb::DatabaseError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create_with_backend(PrefilledFile::new(file)?)
}

impl Slot {
    /// A slot holding an open database.
    pub(super) fn new(path: PathBuf, db: Database) -> Slot {
        Slot {
            path,
            current: RwLock::new(Some(Arc::new(db))),
        }
    }

    /// The open database, if there is one now.
    pub(super) fn current(&self) -> Option<Arc<Database>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The open database for a read, or why there is none.
    pub(super) fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.current().ok_or_else(|| {
            StoreError::Read(
                "the store is being reopened after an I/O error (disk full?); trying again".into(),
            )
        })
    }

    /// Closes the current database (if any) and opens the file again. Called by the writer
    /// thread only, never while it holds a transaction. On failure the slot stays empty and
    /// the next batch calls this again.
    pub(super) fn reopen(&self) -> Result<Arc<Database>, String> {
        let old = self
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut old) = old {
            let deadline = Instant::now() + CLOSE_WAIT;
            // The file lock goes with the last handle: wait for reads in progress to end.
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(_) => {
                        return Err(
                            "a read kept the old database handle open; will try again".into()
                        );
                    }
                }
            }
        }
        let db = Arc::new(open_database(&self.path).map_err(|e| describe_open(&e))?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(db.clone());
        Ok(db)
    }
}

/// Says what to do about an error opening the file.
pub(super) fn describe_open(err: &redb::DatabaseError) -> String {
    match err {
        redb::DatabaseError::DatabaseAlreadyOpen => "the file is in use by another hookrelay process; stop it or choose another [storage] path".into(),
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) if is_disk_full(io) => {
            "disk full (ENOSPC): free space on the volume holding [storage] path".into()
        }
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(what)) => {
            damaged(&format!("DB corrupted: {what}"))
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            damaged("the file ends before the store's first pages")
        }
        other => format!(
            "{other}; if [storage] path names something other than a hookrelay store, point \
             it at a new file"
        ),
    }
}

/// The words for a store file that cannot be read as one: what redb saw, and what to do.
pub(super) fn damaged(what: &str) -> String {
    format!(
        "the file is damaged ({what}): stop the relay, keep a copy of the file, and restore the \
         store from a backup, or move the file aside to start with an empty store"
    )
}

/// Whether an I/O error means the volume is out of space (or quota).
pub(super) fn is_disk_full(err: &std::io::Error) -> bool {
    // ENOSPC and EDQUOT on Linux.
    matches!(err.raw_os_error(), Some(28) | Some(122))
}
