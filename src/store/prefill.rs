//! The store file's redb backend: redb's own file backend, plus a thread that writes zeros
//! into the file's holes just ahead of redb's writes, so that a commit's sync lands on blocks
//! the file already has instead of allocating them.
//!
//! Why: redb grows its file with `set_len`, which leaves the new space as a hole, and an
//! ingest-heavy store keeps writing its newest pages there. Syncing a write into a hole makes
//! the file system allocate blocks and write its own metadata in the same `fdatasync`. On this
//! project's ext4 test machine, ten scattered 4 KiB pages and one 32 KiB value synced in a
//! median 645 µs into a hole and 416 µs over blocks written before (`benches/holes.py`).
//!
//! Where: the lowest holes first, since redb's allocator hands out the lowest free pages of
//! each size, and never-written space (the only holes) lies where its allocations are headed.
//! The filled pages redb has not written yet (the lead) are kept to [`AHEAD`] bytes, so the
//! filler neither runs far ahead nor falls behind. It once filled only above the end of
//! redb's highest write; redb writes a page near the file's new end when it grows it, after
//! which the space its allocations were heading into was never filled (on a growing store,
//! thousands of the writer's pages a second went into holes, by `perf record -e
//! ext4:ext4_da_reserve_space`).
//!
//! Why it is safe: only holes are filled, and a hole already reads as zeros, so filling one
//! never changes what the file holds, in whatever order the writes reach the disk. A hole is
//! looked up (`SEEK_HOLE`) and claimed under the lock every redb write takes, and a write into
//! a range being filled waits for it. What redb wrote before the claim is data to `SEEK_HOLE`,
//! on disk or still in the page cache (ext4 and XFS report delayed allocations as data), and
//! so is what earlier processes wrote. Where the file system cannot report holes the whole
//! file counts as data and nothing is filled. The filler stops before `close` returns, so a
//! reopened database never races an old filler.
//!
//! How: direct writes (`O_DIRECT`) where the file system takes them, so the zeros never sit
//! in the page cache as dirty pages. A commit's `fdatasync` writes every dirty page of the
//! file and waits for every page being written back, the filler's included: with the zeros
//! written through the cache, some commits waited for a MiB of them.
//!
//! Only on file systems that overwrite blocks in place (ext4, XFS): elsewhere there is no
//! filler thread and this is redb's own backend.

use std::fs::File;
use std::ops::{Bound, Range};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use redb::{BackendError, StorageBackend, backends::FileBackend};

/// What redb's backend methods fail with (without its `experimental-api-5` feature).
type BackendIoError = std::io::Error;

/// The lead: how many filled bytes redb has not written yet the filler keeps. A busy store
/// grows by tens of MiB a second; this is about a second of that, and bounds the space filled
/// ahead of need.
const AHEAD: u64 = 32 << 20;

/// Zeros written, then synced, per step: small, so that each claim holds up redb's writes
/// into it only briefly, and, where the zeros go through the page cache, a commit's sync
/// never has many of them to write or wait for.
const CHUNK: u64 = 1 << 20;

/// One buffered write of zeros: a page, so that the page cache holds them as pages, not as
/// large folios a later 4 KiB write would dirty whole.
const ZERO_WRITE: usize = 4096;

/// One direct write of zeros (they bypass the cache, so its folios do not matter).
const DIRECT_WRITE: usize = 256 << 10;

/// What `O_DIRECT` needs aligned: a write's memory, offset and length. A page covers the
/// logical block size of every device these file systems sit on.
const DIRECT_ALIGN: usize = 4096;

/// How long the filler rests after its own write or sync failed (a full disk, say) before it
/// looks for work again. redb's own writes report such errors; the filler only steps aside.
const REST_AFTER_ERROR: Duration = Duration::from_secs(5);

/// redb's file backend with holes filled ahead of its writes.
#[derive(Debug)]
pub(super) struct PrefilledFile {
    inner: FileBackend,
    shared: Arc<Shared>,
    filler: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    /// The same open file as `inner`'s, for `SEEK_HOLE` and the filler's own writes and syncs.
    file: File,
    state: Mutex<State>,
    /// The filler waits here for work.
    work: Condvar,
    /// redb's writes, `set_len` and `close` wait here for a fill in progress to end.
    filled: Condvar,
    /// Tests: told the next range claimed, while the filler pauses before writing to it.
    #[cfg(test)]
    on_claim: Mutex<Option<std::sync::mpsc::Sender<Range<u64>>>>,
}

#[derive(Debug, Default)]
struct State {
    /// The file's length as redb last set it: zeros never extend the file.
    len: u64,
    /// Below here the filler found no hole left (or none it could fill).
    scanned_to: u64,
    /// The lead: ranges the filler filled that redb has not written since (start → end).
    lead: std::collections::BTreeMap<u64, u64>,
    /// The bytes in `lead`.
    lead_bytes: u64,
    /// The range the filler is writing zeros into right now, claimed under the lock.
    filling: Option<Range<u64>>,
    /// The filler waits for redb to eat into the lead: a write that takes it below half of
    /// [`AHEAD`] wakes it.
    waiting_for_writes: bool,
    closed: bool,
}

impl State {
    /// Where the filler should look for holes now, if anywhere: it keeps [`AHEAD`] bytes of
    /// lead, lowest holes first.
    fn pending(&self) -> Option<Range<u64>> {
        (self.lead_bytes < AHEAD && self.scanned_to < self.len).then_some(self.scanned_to..self.len)
    }

    /// Adds a range just filled to the lead.
    fn lead_by(&mut self, range: Range<u64>) {
        self.lead_bytes += range.end - range.start;
        self.lead.insert(range.start, range.end);
    }

    /// Takes `range` out of the lead (redb wrote it, or the file no longer reaches it).
    fn consume(&mut self, range: &Range<u64>) {
        let overlapping: Vec<(u64, u64)> = self
            .lead
            .range(..range.end)
            .rev()
            .take_while(|&(_, &end)| end > range.start)
            .map(|(&start, &end)| (start, end))
            .collect();
        for (start, end) in overlapping {
            self.lead.remove(&start);
            self.lead_bytes -= end - start;
            if start < range.start {
                self.lead_by(start..range.start);
            }
            if range.end < end {
                self.lead_by(range.end..end);
            }
        }
    }

    fn overlaps_fill(&self, range: &Range<u64>) -> bool {
        self.filling
            .as_ref()
            .is_some_and(|f| f.start < range.end && range.start < f.end)
    }
}

/// File systems that overwrite a written block in place (ext2/3/4, XFS), where a filled hole
/// saves a later sync its allocation. Copy-on-write ones (btrfs, ZFS, bcachefs) allocate on
/// every write anyway and tmpfs has no blocks: there, filling would only write twice.
const OVERWRITES_IN_PLACE: [u64; 2] = [0xEF53, 0x5846_5342];

fn overwrites_in_place(file: &File) -> bool {
    // The statfs word is signed on some targets; the magic numbers are all positive.
    #[allow(clippy::unnecessary_cast)]
    let kind = |stat: rustix::fs::StatFs| stat.f_type as u64;
    rustix::fs::fstatfs(file).is_ok_and(|stat| OVERWRITES_IN_PLACE.contains(&kind(stat)))
}

impl PrefilledFile {
    /// Wraps an open (read and write) file, with a filler thread where its file system
    /// overwrites blocks in place.
    pub(super) fn new(file: File) -> std::io::Result<PrefilledFile> {
        let fill = overwrites_in_place(&file);
        PrefilledFile::open(file, fill)
    }

    fn open(file: File, fill: bool) -> std::io::Result<PrefilledFile> {
        let len = file.metadata()?.len();
        let own = file.try_clone()?;
        let inner = FileBackend::new(file).map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            file: own,
            state: Mutex::new(State {
                len,
                closed: !fill,
                ..State::default()
            }),
            work: Condvar::new(),
            filled: Condvar::new(),
            #[cfg(test)]
            on_claim: Mutex::new(None),
        });
        let filler = if fill {
            let shared = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("store-prefill".into())
                    .spawn(move || fill_holes(&shared))?,
            )
        } else {
            None
        };
        Ok(PrefilledFile {
            inner,
            shared,
            filler: Mutex::new(filler),
        })
    }

    /// Stops the filler and waits for it: no zeros are written once this returns.
    fn stop_filler(&self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
        let handle = self.filler.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Waits until the filler has nothing left to do (tests).
    #[cfg(test)]
    fn wait_until_filled(&self) {
        let mut state = self.shared.lock();
        while state.filling.is_some() || (state.pending().is_some() && !state.closed) {
            self.shared.work.notify_one();
            state = self
                .shared
                .filled
                .wait_timeout(state, Duration::from_millis(10))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for PrefilledFile {
    fn drop(&mut self) {
        self.stop_filler();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits, holding the lock again on return, until no fill overlaps `range`.
    fn wait_for_fill<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        range: &Range<u64>,
    ) -> MutexGuard<'a, State> {
        while state.overlaps_fill(range) {
            state = self.filled.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state
    }
}

/// The filler thread: claims the next hole in the pending range, writes zeros into it,
/// syncs them, and sleeps when the range is free of holes.
fn fill_holes(shared: &Shared) {
    let mut zeros = Zeros::new(&shared.file);
    loop {
        let claimed = {
            let mut state = shared.lock();
            loop {
                if state.closed {
                    return;
                }
                let Some(pending) = state.pending() else {
                    // Woken again once redb's writes have eaten half the lead; at the file's
                    // end only `set_len` can make work, and it wakes the filler itself.
                    state.waiting_for_writes = state.scanned_to < state.len;
                    state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
                    continue;
                };
                match next_hole(&shared.file, pending.start, pending.end) {
                    Ok(Some(hole)) => {
                        let fill = hole.start..hole.end.min(hole.start + CHUNK);
                        state.filling = Some(fill.clone());
                        break Some(fill);
                    }
                    Ok(None) => state.scanned_to = pending.end,
                    // No SEEK_HOLE here (or the file went away): everything counts as data.
                    Err(_) => {
                        state.scanned_to = u64::MAX;
                        break None;
                    }
                }
            }
        };
        let Some(fill) = claimed else {
            return;
        };
        #[cfg(test)]
        if let Some(tell) = shared.on_claim.lock().unwrap().take() {
            let _ = tell.send(fill.clone());
            std::thread::sleep(Duration::from_millis(50));
        }
        let written = zeros.write_and_sync(&shared.file, &fill);
        {
            let mut state = shared.lock();
            state.filling = None;
            match &written {
                // `set_len` waits for a fill in progress, so the range is still in the file.
                Ok(()) => {
                    state.scanned_to = state.scanned_to.max(fill.end);
                    state.lead_by(fill.clone());
                }
                // Leave the rest to redb: it allocates as it writes, and reports what fails.
                Err(_) => state.scanned_to = state.scanned_to.max(state.len),
            }
        }
        shared.filled.notify_all();
        if let Err(e) = written {
            tracing::debug!(error = %e, "store: filling the file ahead of writes failed; resting");
            // A close must not wait out the rest: the writer reopens the store after a full
            // disk, and the reopen waits for this thread.
            let state = shared.lock();
            let _rested = shared
                .work
                .wait_timeout_while(state, REST_AFTER_ERROR, |state| !state.closed);
        }
    }
}

/// The filler's zeros, and how it writes them: directly where it can, else through the
/// page cache.
struct Zeros {
    /// The store file opened again with `O_DIRECT`, while direct writes work.
    direct: Option<File>,
    /// Zeros: at least a page, and with `direct` an aligned run of [`DIRECT_WRITE`] bytes
    /// at `aligned_at`.
    buffer: Vec<u8>,
    aligned_at: usize,
}

impl Zeros {
    fn new(file: &File) -> Zeros {
        let direct = open_direct(file);
        let (len, align) = match direct {
            Some(_) => (DIRECT_WRITE + DIRECT_ALIGN, DIRECT_ALIGN),
            None => (ZERO_WRITE, 1),
        };
        let buffer = vec![0u8; len];
        let aligned_at = buffer.as_ptr().align_offset(align);
        Zeros {
            direct,
            buffer,
            aligned_at,
        }
    }

    /// Writes zeros over `range`, syncs them, and drops what went through the page cache
    /// from it (the cache is for the pages redb reads).
    fn write_and_sync(&mut self, file: &File, range: &Range<u64>) -> std::io::Result<()> {
        self.write(file, range)?;
        file.sync_data()?;
        drop_from_cache(file, range);
        Ok(())
    }

    /// The block-aligned middle of `range` goes directly to the disk where the file takes
    /// direct writes, the rest through the page cache. A file system that refuses a direct
    /// write (`EINVAL`) gets buffered writes from then on.
    fn write(&mut self, file: &File, range: &Range<u64>) -> std::io::Result<()> {
        let page = &self.buffer[..ZERO_WRITE];
        let align = DIRECT_ALIGN as u64;
        let middle = range.start.next_multiple_of(align)..range.end / align * align;
        if let Some(direct) = self.direct.as_ref().filter(|_| middle.start < middle.end) {
            let zeros = &self.buffer[self.aligned_at..self.aligned_at + DIRECT_WRITE];
            match write_zeros(direct, zeros, &middle) {
                Ok(()) => {
                    write_zeros(file, page, &(range.start..middle.start))?;
                    return write_zeros(file, page, &(middle.end..range.end));
                }
                // The range is claimed, so writing zeros over it again is harmless.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    self.direct = None;
                }
                Err(e) => return Err(e),
            }
        }
        write_zeros(file, page, range)
    }
}

/// Opens `file` again, by its `/proc/self/fd` link, for direct writes; `None` where that
/// fails (no `/proc`, a file system without `O_DIRECT`).
fn open_direct(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = i32::try_from(rustix::fs::OFlags::DIRECT.bits()).ok()?;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(flags)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

/// Writes `zeros`-sized runs of zeros over `range`. Through the page cache the runs are a
/// page each: one large write is cached as large folios, and a page redb later writes into
/// one dirties all of it, so every 4 KiB page redb wrote there then cost a sync of up to the
/// whole folio (measured with 1 MiB writes: 57 KiB written to disk per event instead of 3).
fn write_zeros(file: &File, zeros: &[u8], range: &Range<u64>) -> std::io::Result<()> {
    let mut offset = range.start;
    while offset < range.end {
        let len = (range.end - offset).min(zeros.len() as u64);
        file.write_all_at(&zeros[..len as usize], offset)?;
        offset += len;
    }
    Ok(())
}

/// Drops the zeros just synced from the page cache: the cache is for the pages redb reads.
/// Pages redb dirtied meanwhile stay cached; the kernel never drops a dirty page.
fn drop_from_cache(file: &File, range: &Range<u64>) {
    use rustix::fs::{Advice, fadvise};
    let _advisory = fadvise(
        file,
        range.start,
        std::num::NonZeroU64::new(range.end - range.start),
        Advice::DontNeed,
    );
}

/// The first hole at or after `from` and before `len`, as the range up to the next data (or
/// `len`); `None` when there is none.
fn next_hole(file: &File, from: u64, len: u64) -> std::io::Result<Option<Range<u64>>> {
    use rustix::fs::{SeekFrom, seek};
    if from >= len {
        return Ok(None);
    }
    let start = match seek(file, SeekFrom::Hole(from)) {
        Ok(start) => start,
        // Past the file's end (it was shortened meanwhile): no hole.
        Err(rustix::io::Errno::NXIO) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if start >= len {
        return Ok(None);
    }
    let end = match seek(file, SeekFrom::Data(start)) {
        Ok(end) => end.min(len),
        Err(rustix::io::Errno::NXIO) => len,
        Err(e) => return Err(e.into()),
    };
    Ok((start < end).then_some(start..end))
}

impl StorageBackend for PrefilledFile {
    fn len(&self) -> Result<u64, BackendIoError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        let state = self.shared.lock();
        // A fill in progress must not extend the file again after it was shortened.
        let mut state = self.shared.wait_for_fill(state, &(0..u64::MAX));
        self.inner.set_len(len)?;
        state.len = len;
        state.scanned_to = state.scanned_to.min(len);
        state.consume(&(len..u64::MAX));
        drop(state);
        self.shared.work.notify_one();
        Ok(())
    }

    fn sync_data(&self) -> Result<(), BackendIoError> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        let range = offset..offset.saturating_add(data.len() as u64);
        let state = self.shared.lock();
        let mut state = self.shared.wait_for_fill(state, &range);
        state.consume(&range);
        let wake = state.waiting_for_writes && state.lead_bytes <= AHEAD / 2;
        if wake {
            state.waiting_for_writes = false;
        }
        drop(state);
        if wake {
            self.shared.work.notify_one();
        }
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), BackendIoError> {
        self.stop_filler();
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    const MIB: u64 = 1 << 20;

    /// Filling on whatever file system the tests' temp folder is on: the mechanism is the
    /// same wherever `SEEK_HOLE` works.
    fn open_backend(path: &std::path::Path) -> PrefilledFile {
        open_backend_filling(path, true)
    }

    fn open_backend_filling(path: &std::path::Path, fill: bool) -> PrefilledFile {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        PrefilledFile::open(file, fill).unwrap()
    }

    /// A page whose bytes say which write it was.
    fn page(marker: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (marker as usize * 31 + i % 251 + 1) as u8 | 1)
            .collect()
    }

    fn read_at(path: &std::path::Path, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        File::open(path)
            .unwrap()
            .read_exact_at(&mut out, offset)
            .unwrap();
        out
    }

    /// Whether `len` bytes at `offset` all read as zeros.
    fn zeros_at(path: &std::path::Path, offset: u64, len: usize) -> bool {
        read_at(path, offset, len).iter().all(|&b| b == 0)
    }

    /// A fresh folder and the store file's path in it (created by the test).
    fn temp_store() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        (dir, path)
    }

    fn first_hole(path: &std::path::Path, from: u64) -> Option<u64> {
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        next_hole(&file, from, len).unwrap().map(|hole| hole.start)
    }

    #[test]
    fn zeros_cover_an_unaligned_range_exactly_and_leave_the_bytes_around_it() {
        let (_dir, path) = temp_store();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let around = page(3, 3 * MIB as usize);
        file.write_all_at(&around, 0).unwrap();
        // Edges off the block size, and a middle longer than one direct write.
        let range = 1000..(2 * MIB + 5000);
        let mut zeros = Zeros::new(&file);
        if overwrites_in_place(&file) {
            assert!(zeros.direct.is_some(), "ext4 and XFS take direct writes");
        }
        zeros.write_and_sync(&file, &range).unwrap();

        let len = (range.end - range.start) as usize;
        assert!(
            zeros_at(&path, range.start, len),
            "the whole range is zeros"
        );
        assert_eq!(read_at(&path, 0, 1000), around[..1000]);
        let end = range.end as usize;
        assert_eq!(read_at(&path, range.end, around.len() - end), around[end..]);
    }

    #[test]
    fn the_lowest_holes_are_filled_and_the_file_reads_as_before() {
        let (_dir, path) = temp_store();
        let backend = open_backend(&path);
        backend.set_len(128 * MIB).unwrap();
        backend.write(0, &page(1, 4096)).unwrap();
        // A write far up, as redb makes when it grows the file, must not leave the space
        // below it, where its allocations are headed, unfilled.
        let top = 100 * MIB;
        backend.write(top, &page(2, 32 << 10)).unwrap();
        backend.wait_until_filled();

        let hole = first_hole(&path, 4096).expect("the space above the lead is a hole");
        assert!(
            hole >= 4096 + AHEAD,
            "the lowest {AHEAD} bytes of holes filled, found one at {hole}"
        );
        assert!(
            hole < top,
            "no more than the lead filled: the first hole is at {hole}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 128 * MIB);
        assert_eq!(read_at(&path, 0, 4096), page(1, 4096));
        assert_eq!(read_at(&path, top, 32 << 10), page(2, 32 << 10));
        assert!(zeros_at(&path, 4096, MIB as usize));
        assert!(zeros_at(&path, 127 * MIB, MIB as usize));
    }

    #[test]
    fn redb_writing_into_the_lead_lets_the_filler_go_further() {
        let (_dir, path) = temp_store();
        let backend = open_backend(&path);
        backend.set_len(128 * MIB).unwrap();
        backend.wait_until_filled();
        let before = first_hole(&path, 0).expect("a hole above the lead");
        // redb takes the filled pages, as its allocations reach them.
        let data = page(3, MIB as usize);
        for mib in 0..24 {
            backend.write(mib * MIB, &data).unwrap();
        }
        backend.wait_until_filled();
        let after = first_hole(&path, 0).expect("a hole above the lead");
        assert!(
            after >= before + 16 * MIB,
            "the lead grew back after redb wrote into it: first hole {before} then {after}"
        );
        assert_eq!(read_at(&path, 23 * MIB, MIB as usize), data);
        assert!(zeros_at(&path, 24 * MIB, MIB as usize));
    }

    #[test]
    fn a_write_into_the_range_being_filled_waits_and_is_kept() {
        let (_dir, path) = temp_store();
        let backend = open_backend(&path);
        let (tell, claimed) = std::sync::mpsc::channel();
        *backend.shared.on_claim.lock().unwrap() = Some(tell);
        backend.set_len(64 * MIB).unwrap();
        // The filler has claimed a hole and pauses before writing its zeros: a write into
        // that hole now must wait for them, not be overwritten by them.
        let fill = claimed.recv().unwrap();
        let offset = fill.start + 8192;
        backend.write(offset, &page(7, 4096)).unwrap();
        backend.wait_until_filled();
        assert_eq!(read_at(&path, offset, 4096), page(7, 4096));
        assert!(zeros_at(&path, fill.start, 8192));
    }

    #[test]
    fn data_an_earlier_process_left_in_the_file_is_kept() {
        let (_dir, path) = temp_store();
        {
            let file = File::create(&path).unwrap();
            file.set_len(8 * MIB).unwrap();
            for i in 0..25u64 {
                file.write_all_at(&page(i, 4096), (i * 300) << 10).unwrap();
            }
            file.sync_all().unwrap();
        }
        let backend = open_backend(&path);
        backend.wait_until_filled();
        assert_eq!(
            first_hole(&path, 0),
            None,
            "every hole in the first {AHEAD} bytes filled"
        );
        for i in 0..25u64 {
            assert_eq!(read_at(&path, (i * 300) << 10, 4096), page(i, 4096));
        }
        assert!(zeros_at(&path, 4096, 4096));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 * MIB);
    }

    #[test]
    fn a_file_shortened_while_the_filler_works_keeps_its_new_length() {
        let (_dir, path) = temp_store();
        let backend = open_backend(&path);
        backend.set_len(64 * MIB).unwrap();
        backend.write(0, &page(1, 4096)).unwrap();
        backend.set_len(MIB).unwrap();
        backend.wait_until_filled();
        assert_eq!(backend.len().unwrap(), MIB);
        backend.close().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), MIB);
        assert_eq!(read_at(&path, 0, 4096), page(1, 4096));
    }

    #[test]
    fn close_returns_only_once_the_filler_has_stopped() {
        let (_dir, path) = temp_store();
        let backend = open_backend(&path);
        backend.set_len(256 * MIB).unwrap();
        backend.write(0, &page(1, 4096)).unwrap();
        backend.close().unwrap();
        assert!(
            backend.filler.lock().unwrap().is_none(),
            "the filler was joined"
        );
        let hole = first_hole(&path, 4096);
        // Nothing can fill holes any more: a write now wakes no one.
        backend.write(100 * MIB, &page(2, 4096)).unwrap();
        assert_eq!(first_hole(&path, 4096), hole);
    }

    #[test]
    fn without_a_filler_nothing_is_filled_and_writes_go_through() {
        let (_dir, path) = temp_store();
        let backend = open_backend_filling(&path, false);
        assert!(backend.filler.lock().unwrap().is_none());
        backend.set_len(64 * MIB).unwrap();
        backend.write(MIB, &page(3, 4096)).unwrap();
        backend.wait_until_filled();
        assert_eq!(read_at(&path, MIB, 4096), page(3, 4096));
        assert_eq!(first_hole(&path, MIB + 4096), Some(MIB + 4096));
        backend.close().unwrap();
    }

    #[test]
    fn a_redb_database_on_the_backend_survives_a_reopen() {
        let (_dir, path) = temp_store();
        const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
        for round in 0..2u64 {
            let db = redb::Database::builder()
                .create_with_backend(open_backend(&path))
                .unwrap();
            for batch in 0..50u64 {
                let tx = db.begin_write().unwrap();
                {
                    let mut table = tx.open_table(TABLE).unwrap();
                    for i in 0..20u64 {
                        let key = (round * 50 + batch) * 20 + i;
                        table.insert(key, page(key, 3000).as_slice()).unwrap();
                    }
                }
                tx.commit().unwrap();
            }
        }
        let db = redb::Database::builder()
            .create_with_backend(open_backend(&path))
            .unwrap();
        let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
        let table = tx.open_table(TABLE).unwrap();
        for key in 0..2000u64 {
            assert_eq!(
                table.get(key).unwrap().unwrap().value(),
                page(key, 3000).as_slice()
            );
        }
        drop(table);
        drop(tx);
        assert!(matches!(
            redb::Database::builder().create_with_backend(open_backend(&path)),
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
        ));
    }
}
