//! The storage module: the only place that talks to redb.
//!
//! prismdb keeps every logical table (records, ordinals, value index, bitmaps, schema, …)
//! inside one redb table of byte keys and byte values; the first byte of each key is the
//! logical table's tag (see [`crate::keys`]). One physical table means a write transaction
//! touches one B-tree, so a single-record write copies as few pages as possible.
//!
//! The rest of the crate sees three things: [`Store`] (open, begin a read, run a write),
//! [`Reader`] / [`Writer`] and the [`Kv`] trait that both implement, so that read logic
//! runs unchanged inside a write transaction and sees that transaction's own writes.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// Where a database keeps its bytes, for [`crate::Database::open_backend`]: redb's storage
/// backend trait (`len`, `read`, `set_len`, `sync_data`, `write`), re-exported so callers can
/// supply their own (tests wrap an in-memory one to inject faults).
pub use redb::StorageBackend;

use crate::error::{Error, Result};

mod journal;
mod pipeline;
pub(crate) use journal::replay_check;
pub use journal::Journaled;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("prism");

/// How a commit reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Fsync on every commit: when the call returns, the write survives a crash (default).
    #[default]
    Immediate,
    /// No fsync per commit: a crash (of the process or the machine) may lose the commits
    /// made since the last durable one, never corrupts the file and never leaves half of a
    /// commit. `Database::sync` or any `Immediate` commit makes them durable; a clean close
    /// keeps them.
    Eventual,
}

impl Durability {
    /// redb's durability of a commit made with this one.
    fn redb(self) -> redb::Durability {
        match self {
            Durability::Immediate => redb::Durability::Immediate,
            Durability::Eventual => redb::Durability::None,
        }
    }
}

/// Where the bytes of the file go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Bytes in allocated pages.
    pub allocated_bytes: u64,
    /// Bytes of keys and values stored.
    pub stored_bytes: u64,
    /// Bytes of B-tree structure (page headers, offsets, branch pages).
    pub metadata_bytes: u64,
    /// Bytes allocated but holding nothing (partly filled and free pages).
    pub fragmented_bytes: u64,
    /// Height of the B-tree.
    pub tree_height: u32,
}

/// An open redb database holding prismdb's one table.
pub(crate) struct Store {
    db: redb::Database,
    /// Set when a write failed in storage (an I/O error, most likely): what the file holds
    /// after that is only known once it is reopened, so every later write is refused.
    failed: AtomicBool,
    /// Held by the one writer at a time. redb serializes its write transactions too, but a
    /// pipeline (see [`Store::write_pipelined`]) builds each transaction on the one before
    /// it while that one commits, so nobody else may write between them.
    writers: parking_lot::Mutex<()>,
    /// How many writers wait for `writers`: a pipeline hands the turn over between its
    /// transactions when one does.
    waiting: AtomicUsize,
    /// The thread running a pipeline, while one runs: a write it makes from the pipeline's
    /// `committed` callback (an import's progress callback) is refused, as it would wait
    /// for the turn it holds.
    pipeline_thread: parking_lot::Mutex<Option<std::thread::ThreadId>>,
    /// Counts the commits of announced writes (see [`Writer::announce`]): odd while one is
    /// under way, so that a reader can tell whether its snapshot began between two of them
    /// ([`Reader::stamp`]). Changed only under the writers' turn.
    announced: AtomicU64,
}

fn internal(context: &str, err: impl std::fmt::Display) -> Error {
    Error::Internal(format!("storage: {context}: {err}"))
}

/// The journal file of the database file at `path`.
pub fn journal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// Opens the database file at `path` and its journal (creating both if missing), locked
/// against other processes, with the journal replayed.
fn open_journaled(
    path: &Path,
) -> std::io::Result<Journaled<redb::backends::FileBackend, redb::backends::FileBackend>> {
    let open = |path: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    };
    let journal_path = journal_path(path);
    let lock = open(&journal_path)?;
    lock.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => std::io::Error::other(
            "the database is already open, in this process or another (its journal is locked)",
        ),
        std::fs::TryLockError::Error(e) => e,
    })?;
    let file_backend = |file| redb::backends::FileBackend::new(file).map_err(std::io::Error::other);
    let main = file_backend(open(path)?)?;
    let journal = file_backend(open(&journal_path)?)?;
    Journaled::open_locked(main, journal, Some(lock))
}

/// Runs `work`, turning a panic into an `internal` error. redb trusts the pages it reads
/// (it verifies their checksums only in [`Store::check_pages`]), so a damaged page can make
/// it index out of bounds; callers get an error instead of an unwinding panic.
fn guarded<R>(context: &str, work: impl FnOnce() -> Result<R>) -> Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|_| {
        Err(Error::Internal(format!(
            "storage: {context}: a page failed to decode; the file may be damaged \
             (Database::verify_storage checks every page)"
        )))
    })
}

impl Store {
    /// Opens (or creates) the file at `path` with a page cache of `cache_bytes`.
    /// Commits are made durable through the journal beside it (`<path>-wal`, see
    /// [`Journaled`]), which this replays first if the last process did not close cleanly.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Store> {
        let cannot =
            |e: &dyn std::fmt::Display| internal(&format!("cannot open {}", path.display()), e);
        let backend = open_journaled(path).map_err(|e| cannot(&e))?;
        guarded("open", || {
            let db = redb::Database::builder()
                .set_cache_size(cache_bytes)
                .create_with_backend(backend)
                .map_err(|e| cannot(&e))?;
            Self::with_table(db)
        })
    }

    /// Creates a store that lives in memory only (tests, scratch work).
    pub fn in_memory() -> Result<Store> {
        Store::open_backend(redb::backends::InMemoryBackend::new(), 64 << 20)
    }

    /// Opens (or creates) a store over `backend` with a page cache of `cache_bytes`.
    pub fn open_backend(backend: impl StorageBackend, cache_bytes: usize) -> Result<Store> {
        guarded("open", || {
            let db = redb::Database::builder()
                .set_cache_size(cache_bytes)
                .create_with_backend(backend)
                .map_err(|e| internal("cannot open the storage backend", e))?;
            Self::with_table(db)
        })
    }

    fn with_table(db: redb::Database) -> Result<Store> {
        let txn = db.begin_write().map_err(|e| internal("begin", e))?;
        txn.open_table(TABLE)
            .map_err(|e| internal("open table", e))?;
        txn.commit().map_err(|e| internal("commit", e))?;
        Ok(Store {
            db,
            failed: AtomicBool::new(false),
            writers: parking_lot::Mutex::new(()),
            waiting: AtomicUsize::new(0),
            pipeline_thread: parking_lot::Mutex::new(None),
            announced: AtomicU64::new(0),
        })
    }

    /// Waits for the writers' turn and returns it (held until dropped). Fails with
    /// `conflict` on the thread running a pipeline, which holds the turn.
    fn writers_turn(&self) -> Result<parking_lot::MutexGuard<'_, ()>> {
        if *self.pipeline_thread.lock() == Some(std::thread::current().id()) {
            return Err(Error::Conflict(
                "cannot write while this thread runs an import job (from its progress \
                 callback): the job holds the writers' turn until it ends"
                    .into(),
            ));
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let turn = self.writers.lock();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        Ok(turn)
    }

    /// Fails if an earlier write failed in storage.
    fn refuse_if_failed(&self) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Error::Internal(
                "storage: an earlier write failed in storage; reopen the database before writing"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Marks the store failed and passes the error on.
    fn fail(&self, error: Error) -> Error {
        self.failed.store(true, Ordering::SeqCst);
        error
    }

    /// Begins a read transaction: a consistent snapshot that later commits do not change.
    pub fn read(&self) -> Result<Reader> {
        let announced_before = self.announced.load(Ordering::SeqCst);
        let table = guarded("begin read", || {
            self.db
                .begin_read()
                .map_err(|e| internal("begin read", e))?
                .open_table(TABLE)
                .map_err(|e| internal("open table", e))
        })?;
        let announced_after = self.announced.load(Ordering::SeqCst);
        let between = announced_before == announced_after && announced_before.is_multiple_of(2);
        Ok(Reader {
            table,
            stamp: between.then_some(announced_before),
        })
    }

    /// Marks an announced commit as under way (the count becomes odd; it stays odd if a
    /// pipeline left it so) and returns the count to end it with. Called under the
    /// writers' turn, before the commit.
    fn announce_begin(&self) -> u64 {
        let count = self.announced.load(Ordering::SeqCst);
        let under_way = count + 1 + (count & 1);
        self.announced.store(under_way, Ordering::SeqCst);
        under_way
    }

    /// Marks the announced commit begun at `under_way` as ended, whether it succeeded or
    /// not: what the file holds does not change again until the next commit.
    fn announce_end(&self, under_way: u64) {
        self.announced.store(under_way + 1, Ordering::SeqCst);
    }

    /// Runs `body` in one write transaction and commits it if `body` returns `Ok`.
    ///
    /// If `body` fails, nothing it wrote is kept. Writers are serialized: a second caller
    /// waits until the first has committed or rolled back.
    pub fn write<R>(
        &self,
        durability: Durability,
        body: impl FnOnce(&mut Writer<'_>) -> Result<R>,
    ) -> Result<R> {
        let mut panicked = true;
        let outcome = guarded("write", || {
            let outcome = self.write_unguarded(durability, body);
            panicked = false;
            outcome
        });
        if panicked {
            self.failed.store(true, Ordering::SeqCst);
        }
        outcome
    }

    fn write_unguarded<R>(
        &self,
        durability: Durability,
        body: impl FnOnce(&mut Writer<'_>) -> Result<R>,
    ) -> Result<R> {
        let _turn = self.writers_turn()?;
        self.refuse_if_failed()?;
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| self.fail(internal("begin write", e)))?;
        txn.set_durability(durability.redb())
            .map_err(|e| internal("set durability", e))?;
        let (outcome, storage_failed) = {
            let table = txn
                .open_table(TABLE)
                .map_err(|e| self.fail(internal("open table", e)))?;
            let mut writer = Writer::over(Base::Table(table), Arc::default());
            let outcome = body(&mut writer)
                .and_then(|value| writer.flush().map(|()| (value, writer.announced)));
            (outcome, writer.storage_failed)
        };
        match outcome {
            Ok((value, announced)) => {
                let under_way = announced.then(|| self.announce_begin());
                let committed = txn.commit();
                if let Some(under_way) = under_way {
                    self.announce_end(under_way);
                }
                committed.map_err(|e| self.fail(internal("commit", e)))?;
                Ok(value)
            }
            Err(err) => {
                txn.abort().map_err(|e| self.fail(internal("abort", e)))?;
                Err(if storage_failed { self.fail(err) } else { err })
            }
        }
    }

    /// Page-level statistics of the file: what is data, what is free.
    pub fn stats(&self) -> Result<StorageStats> {
        let _turn = self.writers_turn()?;
        let txn = self
            .db
            .begin_write()
            .map_err(|e| internal("begin write", e))?;
        let stats = txn.stats().map_err(|e| internal("stats", e))?;
        txn.abort().map_err(|e| internal("abort", e))?;
        Ok(StorageStats {
            allocated_bytes: stats.allocated_pages() * stats.page_size() as u64,
            stored_bytes: stats.stored_bytes(),
            metadata_bytes: stats.metadata_bytes(),
            fragmented_bytes: stats.fragmented_bytes(),
            tree_height: stats.tree_height(),
        })
    }

    /// Rewrites the file to drop free pages; returns whether anything was reclaimed.
    pub fn compact(&mut self) -> Result<bool> {
        guarded("compact", || {
            self.db.compact().map_err(|e| internal("compact", e))
        })
    }

    /// Verifies the checksum of every page reachable from the last commit (redb's
    /// integrity check); returns `false` if a page was damaged (redb then rolls back to the
    /// newest commit whose pages verify).
    pub fn check_pages(&mut self) -> Result<bool> {
        guarded("page check", || {
            self.db
                .check_integrity()
                .map_err(|e| internal("page check", e))
        })
    }
}

/// Ordered byte-keyed access shared by readers and writers.
pub(crate) trait Kv {
    /// Calls `f` with the value stored under `key`, if any.
    fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>>;

    /// Calls `f` on each entry with `start <= key < end` (or `>`/`>=` per the bounds), in key
    /// order (reverse order if `reverse`), until `f` returns `Ok(false)` or an error.
    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()>;

    /// Returns a copy of the value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with(key, |v| v.to_vec())
    }

    /// Calls `f` on each entry whose key starts with `prefix`, in key order.
    fn scan_prefix(
        &self,
        prefix: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let end = prefix_end(prefix);
        let upper = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        self.scan(Bound::Included(prefix), upper, false, f)
    }
}

/// The smallest key greater than every key that starts with `prefix`, or `None` if there is
/// none (the prefix is all 0xff).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn get_in<T: ReadableTable<&'static [u8], &'static [u8]>, R>(
    table: &T,
    key: &[u8],
    f: impl FnOnce(&[u8]) -> R,
) -> Result<Option<R>> {
    guarded("get", || {
        let guard = table.get(key).map_err(|e| internal("get", e))?;
        Ok(guard.map(|g| f(g.value())))
    })
}

fn scan_in<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    reverse: bool,
    f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<()> {
    guarded("range", || scan_unguarded(table, start, end, reverse, f))
}

fn scan_unguarded<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    reverse: bool,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<()> {
    let range = table
        .range::<&[u8]>((start, end))
        .map_err(|e| internal("range", e))?;
    let mut visit = |entry: std::result::Result<_, redb::StorageError>| -> Result<bool> {
        let (k, v): (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>) =
            entry.map_err(|e| internal("range step", e))?;
        f(k.value(), v.value())
    };
    if reverse {
        for entry in range.rev() {
            if !visit(entry)? {
                break;
            }
        }
    } else {
        for entry in range {
            if !visit(entry)? {
                break;
            }
        }
    }
    Ok(())
}

/// A read transaction: every read sees the state of one commit.
pub(crate) struct Reader {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    /// See [`Reader::stamp`].
    stamp: Option<u64>,
}

impl Reader {
    /// How many announced commits (see [`Writer::announce`]) this snapshot holds, when
    /// that is certain: two snapshots with the same stamp hold the same announced writes,
    /// so what only announced commits change (catalogs) is the same in both. `None` when
    /// an announced commit was under way as the snapshot began.
    pub fn stamp(&self) -> Option<u64> {
        self.stamp
    }
}

impl Kv for Reader {
    fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        get_in(&self.table, key, f)
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        scan_in(&self.table, start, end, reverse, f)
    }
}

/// The open table of a write transaction. Reads see the transaction's own writes.
///
/// Writes are held in a sorted buffer and applied to redb in key order when the transaction
/// ends (or when the buffer grows past [`FLUSH_BYTES`]), so the tree's pages are visited in
/// order. Keys written with [`Writer::put_new`] (new records and ordinals: ids only grow, so
/// they land together at the end of their range) go in through one redb cursor per run,
/// which packs them into full leaves instead of splitting a leaf in half at every insert.
///
/// A writer of a pipeline (see [`Store::write_pipelined`]) has no redb table yet: it reads a
/// snapshot with the writes of the transaction before it (still committing) laid over it,
/// and holds all of its own until it is committed in turn.
pub(crate) struct Writer<'txn> {
    base: Base<'txn>,
    /// The writes of the pipeline's transaction before this one, not yet committed (empty
    /// outside a pipeline): read through, under this writer's own.
    below: Arc<HeldWrites>,
    pending: HeldWrites,
    /// The first bytes of the keys held in `pending` or `below`, so that reads of the
    /// other logical tables go straight to redb.
    held_tags: HeldTags,
    pending_bytes: usize,
    /// Whether applying held writes to redb failed (the store is then marked failed).
    storage_failed: bool,
    /// Whether this transaction's commit is announced (see [`Writer::announce`]).
    announced: bool,
}

/// Where a writer reads what it does not hold.
enum Base<'txn> {
    /// The write transaction's table, which the held writes are applied to.
    Table(redb::Table<'txn, &'static [u8], &'static [u8]>),
    /// A read snapshot; the held writes are committed later by the pipeline.
    Snapshot(redb::ReadOnlyTable<&'static [u8], &'static [u8]>),
}

/// Writes held in key order.
type HeldWrites = BTreeMap<Vec<u8>, Held>;

/// Which first key bytes (logical tables: a key's tag) a writer holds writes under, so that
/// its reads of the other tables skip the held writes: bit `b` for first byte `b` below 63
/// (bit 0 also for the empty key), bit 63 for any higher first byte.
#[derive(Clone, Copy, Debug, Default)]
struct HeldTags(u64);

impl HeldTags {
    /// The first bytes of the keys of `writes` (a look-up per distinct first byte).
    fn of(writes: &HeldWrites) -> HeldTags {
        let mut tags = HeldTags::default();
        let mut from = Vec::new();
        let after = |from: &[u8]| {
            writes
                .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
                .next()
                .map(|(key, _)| key)
        };
        while let Some(key) = after(&from) {
            tags.add(key);
            match key.first() {
                None => from = vec![0],
                Some(&byte) if byte < 63 => from = vec![byte + 1],
                Some(_) => break,
            }
        }
        tags
    }

    fn bucket(first: Option<u8>) -> u32 {
        u32::from(first.map_or(0, |byte| byte.min(63)))
    }

    fn add(&mut self, key: &[u8]) {
        self.0 |= 1 << HeldTags::bucket(key.first().copied());
    }

    /// Whether a held key may start with a byte from `low` to `high` (`None`: unbounded).
    fn may_hold(&self, low: Option<u8>, high: Option<u8>) -> bool {
        let low = HeldTags::bucket(low);
        let high = high.map_or(63, |_| HeldTags::bucket(high));
        let span = (u64::MAX >> (63 - high)) & (u64::MAX << low);
        self.0 & span != 0
    }
}

/// The first byte of a scan's start bound's key (`None` when unbounded or empty).
fn first_byte(start: Bound<&[u8]>) -> Option<u8> {
    match start {
        Bound::Included(key) | Bound::Excluded(key) => key.first().copied(),
        Bound::Unbounded => None,
    }
}

/// The first byte of a scan's end bound's key (`None` when unbounded; 0 for the empty key).
fn last_byte(end: Bound<&[u8]>) -> Option<u8> {
    match end {
        Bound::Included(key) | Bound::Excluded(key) => Some(key.first().copied().unwrap_or(0)),
        Bound::Unbounded => None,
    }
}

/// A write held until the flush.
enum Held {
    /// Store this value (replacing any).
    Put(Vec<u8>),
    /// Store this value under a key the caller knows is not stored yet.
    New(Vec<u8>),
    /// Remove the key.
    Delete,
}

impl Held {
    fn value(&self) -> Option<&[u8]> {
        match self {
            Held::Put(v) | Held::New(v) => Some(v),
            Held::Delete => None,
        }
    }
}

/// Held writes past this many bytes are applied early (still inside the transaction).
const FLUSH_BYTES: usize = 64 << 20;

/// What one held write is counted as beyond its key and value bytes (the tree's share).
const HELD_OVERHEAD: usize = 32;

/// [`Writer::put_many`] merges a run into the held writes (a pass over both) only when it
/// is at least this fraction of them (else a tree descent each is less) ...
const MERGE_RATIO: usize = 8;

/// ... and holds at least this many writes. The merge builds the run in a buffer the
/// allocator may have to page in afresh: a patch's trigram fold (~800 bitmap chunks) took
/// 9 ms instead of 3 that way, where an import chunk's ~70,000 gain from it. Small in unit
/// tests, so that the storage proptest reaches the merge.
#[cfg(not(test))]
const MERGE_MIN_WRITES: usize = 16_384;
#[cfg(test)]
const MERGE_MIN_WRITES: usize = 4;

impl<'txn> Writer<'txn> {
    fn over(base: Base<'txn>, below: Arc<HeldWrites>) -> Writer<'txn> {
        Writer {
            base,
            held_tags: HeldTags::of(&below),
            below,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            storage_failed: false,
            announced: false,
        }
    }

    /// Announces this transaction's commit: readers whose snapshots begin while it is under
    /// way get no [`Reader::stamp`], and those after it a new one. Writes that caches keyed
    /// by the stamp depend on (catalogs) must be announced.
    pub fn announce(&mut self) {
        self.announced = true;
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.hold(key.to_vec(), Held::Put(value.to_vec()))
    }

    /// [`Writer::put`] of a key and value the caller hands over (no copies).
    pub fn put_owned(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.hold(key, Held::Put(value))
    }

    /// Stores `value` under `key`, which the caller knows holds nothing yet (a fresh id).
    /// The flush fails with `internal` if the key turns out to exist.
    pub fn put_new(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let bytes = key.len() + value.len() + HELD_OVERHEAD;
        self.held_tags.add(&key);
        let held_below = !self.below.is_empty() && self.below.contains_key(&key);
        // One descent of the held writes: a bulk load holds two new keys per record.
        match self.pending.entry(key) {
            Entry::Occupied(mut held) => *held.get_mut() = Held::Put(value),
            Entry::Vacant(slot) if held_below => _ = slot.insert(Held::Put(value)),
            Entry::Vacant(slot) => _ = slot.insert(Held::New(value)),
        }
        self.count_held(bytes)
    }

    /// Holds `count` writes at once (`Some` puts the value, `None` deletes the key; of
    /// writes to one key the last wins), as one call per write would. A transaction's
    /// bitmap chunks (~70,000 in an import chunk) are merged into the held writes in one
    /// pass instead of a tree descent each (that was 8% of building an import chunk); a
    /// short run, or a few writes into many held ones (a batch's query flushing its
    /// bitmaps), still go in one by one (see [`MERGE_MIN_WRITES`], [`MERGE_RATIO`]).
    /// `count` only chooses between the two.
    pub fn put_many(
        &mut self,
        count: usize,
        writes: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<()> {
        let mut bytes = 0;
        let tags = &mut self.held_tags;
        let held = writes.into_iter().map(|(key, value)| {
            tags.add(&key);
            bytes += key.len() + value.as_ref().map_or(0, Vec::len) + HELD_OVERHEAD;
            (key, value.map_or(Held::Delete, Held::Put))
        });
        if count >= MERGE_MIN_WRITES && count.saturating_mul(MERGE_RATIO) >= self.pending.len() {
            let mut run = Vec::with_capacity(count);
            run.extend(held);
            let mut run: HeldWrites = run.into_iter().collect();
            self.pending.append(&mut run);
        } else {
            self.pending.extend(held);
        }
        self.count_held(bytes)
    }

    /// Whether a write of `key` is held (by this writer or the pipeline's below it): one
    /// not applied to redb yet, or not committed yet.
    pub fn holds(&self, key: &[u8]) -> bool {
        self.pending.contains_key(key) || self.below.contains_key(key)
    }

    /// Removes `key` if present.
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.hold(key.to_vec(), Held::Delete)
    }

    /// Deletes every key that starts with `prefix` (stored or held).
    pub fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()> {
        let mut doomed = Vec::new();
        self.scan_prefix(prefix, |key, _| {
            doomed.push(key.to_vec());
            Ok(true)
        })?;
        doomed.iter().try_for_each(|key| self.delete(key))
    }

    fn hold(&mut self, key: Vec<u8>, held: Held) -> Result<()> {
        let bytes = key.len() + held.value().map_or(0, <[u8]>::len) + HELD_OVERHEAD;
        self.held_tags.add(&key);
        self.pending.insert(key, held);
        self.count_held(bytes)
    }

    /// Counts `bytes` more held; past [`FLUSH_BYTES`], applies the held writes.
    fn count_held(&mut self, bytes: usize) -> Result<()> {
        self.pending_bytes += bytes;
        if self.pending_bytes > FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Applies the held writes to redb in key order; a failure marks the transaction's
    /// storage failed. A pipeline's writer keeps holding them (its transaction is committed
    /// later, by the pipeline).
    pub fn flush(&mut self) -> Result<()> {
        let Base::Table(table) = &mut self.base else {
            return Ok(());
        };
        let held = std::mem::take(&mut self.pending);
        self.held_tags = HeldTags::of(&self.below);
        self.pending_bytes = 0;
        let applied = apply_writes(table, &held);
        self.storage_failed |= applied.is_err();
        applied
    }

    /// The writes this writer holds, for the pipeline to commit, and whether the
    /// transaction was announced.
    fn into_held(self) -> (HeldWrites, bool) {
        (self.pending, self.announced)
    }
}

/// Applies `writes` to `table` in key order; runs of new keys go in through a cursor.
fn apply_writes(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    writes: &HeldWrites,
) -> Result<()> {
    let mut held = writes.iter().peekable();
    while let Some((key, write)) = held.next() {
        match write {
            Held::Put(value) => {
                table
                    .insert(key.as_slice(), value.as_slice())
                    .map_err(|e| internal("insert", e))?;
            }
            Held::Delete => {
                table
                    .remove(key.as_slice())
                    .map_err(|e| internal("remove", e))?;
            }
            Held::New(value) => {
                let mut run = vec![(key.as_slice(), value.as_slice())];
                while let Some((k, Held::New(v))) = held.peek() {
                    run.push((k.as_slice(), v.as_slice()));
                    held.next();
                }
                insert_run(table, run)?;
            }
        }
    }
    Ok(())
}

/// Inserts new keys, ascending, through a cursor; moves the cursor only when the next key
/// belongs to another gap of the tree.
fn insert_run(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    run: Vec<(&[u8], &[u8])>,
) -> Result<()> {
    let mut entries = run.into_iter().peekable();
    while let Some((first, _)) = entries.peek() {
        let mut cursor = table
            .lower_bound_mut(Bound::Included(*first))
            .map_err(|e| internal("seek", e))?;
        let mut inserted = 0;
        while let Some((key, value)) = entries.peek() {
            match cursor.insert_before(key, value) {
                Ok(()) => {
                    inserted += 1;
                    entries.next();
                }
                Err(redb::CursorError::UnorderedKey) if inserted > 0 => break,
                Err(redb::CursorError::UnorderedKey) => {
                    return Err(Error::Internal(format!(
                        "storage: a new key is already stored ({} bytes)",
                        key.len()
                    )))
                }
                Err(e) => return Err(internal("ordered insert", e)),
            }
        }
        cursor.close().map_err(|e| internal("close cursor", e))?;
    }
    Ok(())
}

impl Kv for Writer<'_> {
    fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let first = key.first().copied();
        let held = match self.held_tags.may_hold(first, Some(first.unwrap_or(0))) {
            true => self.pending.get(key).or_else(|| self.below.get(key)),
            false => None,
        };
        match held {
            Some(held) => Ok(held.value().map(f)),
            None => match &self.base {
                Base::Table(table) => get_in(table, key, f),
                Base::Snapshot(table) => get_in(table, key, f),
            },
        }
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        match &self.base {
            Base::Table(table) => self.scan_over(table, start, end, reverse, f),
            Base::Snapshot(table) => self.scan_over(table, start, end, reverse, f),
        }
    }
}

impl Writer<'_> {
    /// Scans the held writes (this writer's over those below it) laid over `table`.
    fn scan_over<T: ReadableTable<&'static [u8], &'static [u8]>>(
        &self,
        table: &T,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        if !self.held_tags.may_hold(first_byte(start), last_byte(end)) {
            return scan_in(table, start, end, reverse, f);
        }
        guarded("range", || {
            let own = self.pending.range::<[u8], _>((start, end));
            let below = self.below.range::<[u8], _>((start, end));
            let stored = table
                .range::<&[u8]>((start, end))
                .map_err(|e| internal("range", e))?;
            if reverse {
                let held = HeldUnion::new(own.rev(), below.rev(), true);
                merge(held, stored.rev(), true, f)
            } else {
                merge(HeldUnion::new(own, below, false), stored, false, f)
            }
        })
    }
}

/// Two runs of held writes as one, in key order (descending if `reverse`); where both hold
/// a key, the upper one's write wins.
struct HeldUnion<'h, U, L>
where
    U: Iterator<Item = (&'h Vec<u8>, &'h Held)>,
    L: Iterator<Item = (&'h Vec<u8>, &'h Held)>,
{
    upper: std::iter::Peekable<U>,
    lower: std::iter::Peekable<L>,
    reverse: bool,
}

impl<'h, U, L> HeldUnion<'h, U, L>
where
    U: Iterator<Item = (&'h Vec<u8>, &'h Held)>,
    L: Iterator<Item = (&'h Vec<u8>, &'h Held)>,
{
    fn new(upper: U, lower: L, reverse: bool) -> Self {
        HeldUnion {
            upper: upper.peekable(),
            lower: lower.peekable(),
            reverse,
        }
    }
}

impl<'h, U, L> Iterator for HeldUnion<'h, U, L>
where
    U: Iterator<Item = (&'h Vec<u8>, &'h Held)>,
    L: Iterator<Item = (&'h Vec<u8>, &'h Held)>,
{
    type Item = (&'h Vec<u8>, &'h Held);

    fn next(&mut self) -> Option<Self::Item> {
        let take_upper = match (self.upper.peek(), self.lower.peek()) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((u, _)), Some((l, _))) if u == l => {
                self.lower.next();
                true
            }
            (Some((u, _)), Some((l, _))) => (u < l) != self.reverse,
        };
        if take_upper {
            self.upper.next()
        } else {
            self.lower.next()
        }
    }
}

/// Visits the union of held writes and stored entries in key order (descending if
/// `reverse`); a held write hides the stored entry of the same key, a held deletion hides it
/// altogether.
fn merge<'h, 's, H, S>(
    held: H,
    stored: S,
    reverse: bool,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<()>
where
    H: Iterator<Item = (&'h Vec<u8>, &'h Held)>,
    S: Iterator<
        Item = std::result::Result<
            (
                redb::AccessGuard<'s, &'static [u8]>,
                redb::AccessGuard<'s, &'static [u8]>,
            ),
            redb::StorageError,
        >,
    >,
{
    let mut held = held.peekable();
    let mut stored = stored.peekable();
    loop {
        if let Some(Err(_)) = stored.peek() {
            let err = stored.next().and_then(|e| e.err());
            return Err(internal(
                "range step",
                err.map_or_else(String::new, |e| e.to_string()),
            ));
        }
        let stored_key = match stored.peek() {
            Some(Ok((k, _))) => Some(k.value()),
            _ => None,
        };
        let held_key = held.peek().map(|(k, _)| k.as_slice());
        let take_held = match (held_key, stored_key) {
            (None, None) => return Ok(()),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(h), Some(s)) if h == s => {
                stored.next();
                true
            }
            (Some(h), Some(s)) => (h < s) != reverse,
        };
        let go_on = if take_held {
            match held
                .next()
                .and_then(|(key, write)| Some((key, write.value()?)))
            {
                Some((key, value)) => f(key, value)?,
                None => true,
            }
        } else {
            match stored.next() {
                Some(Ok((key, value))) => f(key.value(), value.value())?,
                _ => true,
            }
        };
        if !go_on {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_carries_over_ff() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn failed_write_keeps_nothing() {
        let store = Store::in_memory().unwrap();
        let out: Result<()> = store.write(Durability::Eventual, |w| {
            w.put(b"a", b"1")?;
            Err(Error::Conflict("stop".into()))
        });
        assert!(out.is_err());
        assert_eq!(store.read().unwrap().get(b"a").unwrap(), None);
        store
            .write(Durability::Eventual, |w| w.put(b"a", b"2"))
            .unwrap();
        assert_eq!(
            store.read().unwrap().get(b"a").unwrap(),
            Some(b"2".to_vec())
        );
    }

    #[test]
    fn only_announced_commits_change_the_readers_stamp() {
        let store = Store::in_memory().unwrap();
        let first = store.read().unwrap().stamp();
        assert!(first.is_some());
        store
            .write(Durability::Eventual, |w| w.put(b"a", b"1"))
            .unwrap();
        assert_eq!(store.read().unwrap().stamp(), first, "not announced");
        let refused: Result<()> = store.write(Durability::Eventual, |w| {
            w.announce();
            Err(Error::Conflict("stop".into()))
        });
        assert!(refused.is_err());
        assert_eq!(store.read().unwrap().stamp(), first, "nothing committed");
        store
            .write(Durability::Eventual, |w| {
                w.announce();
                w.put(b"b", b"2")
            })
            .unwrap();
        let second = store.read().unwrap().stamp();
        assert!(second.is_some() && second != first);
        // A snapshot begun while an announced commit is under way has no stamp.
        let under_way = store.announce_begin();
        assert_eq!(store.read().unwrap().stamp(), None);
        store.announce_end(under_way);
        let third = store.read().unwrap().stamp();
        assert!(third.is_some() && third != second);
    }

    #[test]
    fn an_announced_pipelined_commit_leaves_readers_without_a_stamp() {
        let store = Store::in_memory().unwrap();
        let mut steps = 0;
        store
            .write_pipelined(
                Durability::Eventual,
                |w| {
                    steps += 1;
                    if steps == 2 {
                        w.announce();
                    }
                    w.put(&[steps], b"x")?;
                    Ok(steps < 3)
                },
                || Ok(()),
            )
            .unwrap();
        assert_eq!(store.read().unwrap().stamp(), None);
        store
            .write(Durability::Eventual, |w| {
                w.announce();
                w.put(b"c", b"3")
            })
            .unwrap();
        assert!(store.read().unwrap().stamp().is_some());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Put(u8, u8),
        PutNew(u8, u8),
        Delete(u8),
        /// Puts (`Some`) and deletes (`None`) in one call, in any key order, repeats allowed.
        PutMany(Vec<(u8, Option<u8>)>),
        Flush,
        Commit,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k % 64, v)),
            6 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::PutNew(k % 64, v)),
            3 => any::<u8>().prop_map(|k| Op::Delete(k % 64)),
            // Short runs go in one by one, long ones are merged (MERGE_MIN_WRITES, MERGE_RATIO).
            2 => proptest::collection::vec((any::<u8>(), any::<Option<u8>>()), 0..40)
                .prop_map(|w| Op::PutMany(w.into_iter().map(|(k, v)| (k % 64, v)).collect())),
            1 => Just(Op::Flush),
            1 => Just(Op::Commit),
        ]
    }

    fn key(k: u8) -> Vec<u8> {
        // Two-byte keys with shared prefixes, so runs and gaps both occur.
        vec![k / 8, k % 8]
    }

    fn all(kv: &impl Kv, reverse: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        kv.scan(Bound::Unbounded, Bound::Unbounded, reverse, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
        out
    }

    proptest::proptest! {
        /// Reads inside a write transaction (held writes merged over stored entries, in both
        /// directions) and the state after commit always equal a BTreeMap model.
        #[test]
        fn held_writes_read_and_apply_like_a_map(ops in proptest::collection::vec(op(), 1..200)) {
            let store = Store::in_memory().unwrap();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for chunk in ops.split(|o| matches!(o, Op::Commit)) {
                store.write(Durability::Eventual, |w| {
                    for op in chunk {
                        match op {
                            Op::Put(k, v) => {
                                w.put(&key(*k), &[*v])?;
                                model.insert(key(*k), vec![*v]);
                            }
                            Op::PutNew(k, v) if !model.contains_key(&key(*k)) => {
                                w.put_new(key(*k), vec![*v])?;
                                model.insert(key(*k), vec![*v]);
                            }
                            Op::PutNew(..) => {}
                            Op::Delete(k) => {
                                w.delete(&key(*k))?;
                                model.remove(&key(*k));
                            }
                            Op::PutMany(writes) => {
                                let held = writes.iter().map(|(k, v)| (key(*k), v.map(|v| vec![v])));
                                w.put_many(writes.len(), held)?;
                                for (k, v) in writes {
                                    match v {
                                        Some(v) => model.insert(key(*k), vec![*v]),
                                        None => model.remove(&key(*k)),
                                    };
                                }
                            }
                            Op::Flush => w.flush()?,
                            Op::Commit => {}
                        }
                        let expected: Vec<_> = model.clone().into_iter().collect();
                        assert_eq!(all(&*w, false), expected);
                        let mut backwards = expected;
                        backwards.reverse();
                        assert_eq!(all(&*w, true), backwards);
                        let probe = key(op_key(op));
                        assert_eq!(w.get(&probe)?, model.get(&probe).cloned());
                        // A scan of one first byte: it skips the held writes when none
                        // start with that byte.
                        let first = [probe[0]];
                        let mut within = Vec::new();
                        w.scan_prefix(&first, |k, v| {
                            within.push((k.to_vec(), v.to_vec()));
                            Ok(true)
                        })?;
                        let expected: Vec<_> = (model.iter())
                            .filter(|(k, _)| k[0] == first[0])
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        assert_eq!(within, expected);
                    }
                    Ok(())
                })
                .unwrap();
                let expected: Vec<_> = model.clone().into_iter().collect();
                proptest::prop_assert_eq!(all(&store.read().unwrap(), false), expected);
            }
        }
    }

    #[test]
    fn held_tags_tell_which_first_bytes_may_be_held() {
        let mut writes = HeldWrites::new();
        for key in [&[][..], &[3, 1], &[3, 9], &[200, 0]] {
            writes.insert(key.to_vec(), Held::Delete);
        }
        let tags = HeldTags::of(&writes);
        assert!(
            tags.may_hold(Some(0), Some(0)),
            "the empty key counts as byte 0"
        );
        assert!(tags.may_hold(Some(3), Some(3)));
        assert!(!tags.may_hold(Some(4), Some(62)));
        assert!(
            tags.may_hold(Some(4), Some(63)),
            "bytes from 63 on share one bit"
        );
        assert!(tags.may_hold(Some(70), None));
        assert!(tags.may_hold(None, Some(2)));
        assert!(!tags.may_hold(Some(1), Some(2)));
        assert!(!HeldTags::of(&HeldWrites::new()).may_hold(None, None));
    }

    fn op_key(op: &Op) -> u8 {
        match op {
            Op::Put(k, _) | Op::PutNew(k, _) | Op::Delete(k) => *k,
            Op::PutMany(writes) => writes.first().map_or(0, |(k, _)| *k),
            _ => 0,
        }
    }
}
