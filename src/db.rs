//! The public entry point: [`Database`], its read [`Snapshot`]s and write [`Batch`]es.

use std::path::Path;
use std::sync::Arc;
use std::thread::{JoinHandle, ScopedJoinHandle};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

use crate::bulk::{self, BulkResponse, BulkUpdateItem};
use crate::error::{Error, Result};
use crate::grant::Grant;
use crate::import::{self, ImportJob, ImportProgress, ImportRequest};
use crate::integrity::{self, IntegrityReport};
use crate::keys;
use crate::model::{ObjectType, Principal};
use crate::query::QueryRequest;
use crate::record::{ListRequest, Page, Record, RecordInput};
use crate::schema::{Catalog, Property, PropertyChange, PropertySpec};
use crate::storage::{Durability, Kv, Store, Writer};
use crate::txn::{ReadView, Shared, Tx, View};
use crate::{records, schema_ops};

/// The file format this build writes. Format 2 files are read and stamped format 3 when
/// opened: format 3 only added whole rows for small reference bitmaps, which a format 2
/// build cannot read. Files of other formats are refused: format 1 kept the value index as
/// one key per value and record, which this build does not read.
pub const FORMAT_VERSION: u32 = 3;

/// The earlier format this build opens, stamping it [`FORMAT_VERSION`].
const UPGRADED_FORMAT: u32 = 2;
const IDENTITY: &[u8] = b"prismdb";

/// How a database is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// Durability of each commit (default [`Durability::Immediate`]).
    pub durability: Durability,
    /// Bytes of page cache (default 256 MiB).
    pub cache_bytes: usize,
    /// How long soft-deleted records stay in the trash before [`Database::purge_trash`]
    /// removes them (default 30 days).
    pub trash_retention: Duration,
    /// Whether the database runs its own worker thread for async import jobs (default
    /// `false`: then the caller runs [`Database::run_import_jobs`] when it likes). The
    /// worker resumes unfinished jobs at open and stops when the database is dropped.
    pub jobs: bool,
    /// Bytes of decoded bitmaps kept between reads (default 64 MiB; 0 keeps none): the
    /// bitmaps a query's conditions read, and principals' grant scopes. An entry serves
    /// the committed states in which its property's bitmaps (or the grant scopes) are
    /// unchanged: a write that changes a property's bitmaps makes that property's entries
    /// stale, and leaves the others.
    pub bitmap_cache_bytes: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            durability: Durability::Immediate,
            cache_bytes: 256 << 20,
            trash_retention: Duration::from_secs(30 * 24 * 3600),
            jobs: false,
            bitmap_cache_bytes: 64 << 20,
        }
    }
}

/// An open prismdb database: one file (or memory), shared by any number of threads.
///
/// Every operation takes the calling [`Principal`] and sees only its team's data. Reads run
/// on a consistent snapshot and never wait for writers; writes are serialized and each one
/// commits atomically (all of its record, index and bitmap changes, or none).
pub struct Database {
    core: Arc<Core>,
    /// The import job worker, when the database was opened with `jobs`.
    worker: Option<JoinHandle<()>>,
}

/// What the database and its job worker share.
struct Core {
    store: Store,
    shared: Shared,
    options: Options,
    /// Wakes the worker when a job is stored, or tells it to stop.
    signal: Signal,
}

/// A flag pair (work waiting, stop) with a condition variable, for the job worker.
#[derive(Default)]
struct Signal {
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Signal {
    fn notify(&self, stop: bool) {
        let mut state = self.state.lock();
        state.0 = true;
        state.1 |= stop;
        self.changed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.state.lock().1
    }

    /// Waits until notified or `timeout` passes; returns whether to stop.
    fn wait(&self, timeout: Duration) -> bool {
        let mut state = self.state.lock();
        if !state.0 && !state.1 {
            self.changed.wait_for(&mut state, timeout);
        }
        state.0 = false;
        state.1
    }
}

/// How often an idle worker looks for jobs anyway (a job stored by another process of
/// the same file, or one that failed to wake it).
const WORKER_POLL: Duration = Duration::from_secs(1);

impl Core {
    fn view(&self) -> Result<ReadView<'_>> {
        Ok(ReadView::new(self.store.read()?, &self.shared))
    }

    fn write<R>(
        &self,
        durability: Durability,
        body: impl FnOnce(&mut Tx<'_, '_>) -> Result<R>,
    ) -> Result<R> {
        let (result, new_teams) = self.store.write(durability, |writer: &mut Writer<'_>| {
            let mut tx = Tx::new(writer, &self.shared);
            let result = body(&mut tx)?;
            records::fold_grams(&mut tx)?;
            Ok((result, tx.finish()?))
        })?;
        self.shared.remember_teams(&new_teams);
        Ok(result)
    }

    fn write_one<R>(&self, body: impl FnOnce(&mut Tx<'_, '_>) -> Result<R>) -> Result<R> {
        self.write(self.options.durability, body)
    }

    /// See [`Database::run_import_jobs`]; stops early when the worker is told to stop.
    /// The worker passes no `progress`.
    fn run_import_jobs(
        &self,
        mut progress: Option<&mut dyn FnMut(&ImportProgress)>,
    ) -> Result<u64> {
        let mut chunks = 0;
        self.write_one(|tx| import::purge_expired(tx, tx.now))?;
        loop {
            let pending = import::pending(View::kv(&self.view()?))?;
            if pending.is_empty() || self.signal.stopped() {
                return Ok(chunks);
            }
            for (team, number, job_id) in pending {
                let ran = self.run_job(team, number, job_id, &mut progress);
                chunks += ran.chunks;
                if let Err(e) = ran.outcome {
                    // A chunk that cannot be applied stops its job with the reason, rather
                    // than being retried for ever.
                    self.write_one(|tx| import::fail(tx, number, job_id, &e))?;
                }
            }
        }
    }

    /// Applies the chunks of one job until it ends or the worker is told to stop, each
    /// chunk in its own transaction, pipelined: a chunk commits while the next is applied
    /// (see `Store::write_pipelined`), and a third, scoped thread reads and decodes the
    /// rows of the chunk after the one being applied. Reports progress after each chunk's
    /// commit.
    fn run_job(
        &self,
        team: Uuid,
        number: u32,
        job_id: Uuid,
        progress: &mut Option<&mut dyn FnMut(&ImportProgress)>,
    ) -> JobRun {
        let mut chunks = 0;
        let outcome = std::thread::scope(|scope| {
            let mut reading: Option<(u32, ScopedJoinHandle<'_, Result<Option<import::Rows>>>)> =
                None;
            self.store.write_pipelined(
                self.options.durability,
                |writer| {
                    let mut tx = Tx::new(writer, &self.shared);
                    let ahead = reading
                        .take()
                        .and_then(|(read, rows)| Some((read, rows_read(rows)?)));
                    if let Some(chunk) = import::next_chunk(tx.kv(), number, job_id)? {
                        let next = chunk + 1;
                        let read = scope.spawn(move || {
                            import::stored_rows(&self.store.read()?, number, job_id, next)
                        });
                        reading = Some((next, read));
                    }
                    let more = import::run_chunk(&mut tx, team, number, job_id, ahead)?;
                    records::fold_grams(&mut tx)?;
                    let new_teams = tx.finish()?;
                    debug_assert!(new_teams.is_empty(), "a stored job's team is numbered");
                    Ok(more && !self.signal.stopped())
                },
                || {
                    chunks += 1;
                    if let Some(progress) = progress.as_mut() {
                        if let Some(now) = import::progress(&self.store.read()?, number, job_id)? {
                            progress(&now);
                        }
                    }
                    Ok(())
                },
            )
        });
        JobRun { chunks, outcome }
    }
}

/// The rows a reading thread read, if they were stored and read. When not, the chunk
/// reads them itself (and fails its job if they are missing or damaged).
fn rows_read(reading: ScopedJoinHandle<'_, Result<Option<import::Rows>>>) -> Option<import::Rows> {
    reading.join().ok()?.ok()?
}

/// What [`Core::run_job`] did: the chunks it committed and how it ended.
struct JobRun {
    chunks: u64,
    outcome: Result<()>,
}

/// The job worker: runs import jobs until told to stop.
fn work(core: Arc<Core>) {
    loop {
        // An error here (storage failing) is retried at the next poll; jobs that fail on
        // their own are marked failed by `run_import_jobs`.
        let _ = core.run_import_jobs(None);
        if core.signal.wait(WORKER_POLL) {
            return;
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

impl Database {
    /// Opens the database file at `path`, creating it if it does not exist.
    ///
    /// Fails with `internal` if the file is not a prismdb database, was written by a newer
    /// format, or cannot be read.
    pub fn open(path: impl AsRef<Path>) -> Result<Database> {
        Database::open_with(path, Options::default())
    }

    /// Opens the database file at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: Options) -> Result<Database> {
        let store = Store::open(path.as_ref(), options.cache_bytes)?;
        Database::start(store, options)
    }

    /// Opens (or creates) a database over a storage backend of the caller's (tests inject
    /// faults through one; see `tests/faults.rs`), with `options` (`cache_bytes` is the page
    /// cache).
    ///
    /// Fails with `internal` if the backend's bytes are not a prismdb database or cannot be
    /// read.
    pub fn open_backend(
        backend: impl crate::storage::StorageBackend,
        options: Options,
    ) -> Result<Database> {
        let store = Store::open_backend(backend, options.cache_bytes)?;
        Database::start(store, options)
    }

    /// Creates a database that lives in memory and disappears when dropped (tests).
    pub fn in_memory() -> Result<Database> {
        Database::start(Store::in_memory()?, Options::default())
    }

    fn start(store: Store, options: Options) -> Result<Database> {
        store.write(Durability::Immediate, check_or_stamp_format)?;
        let core = Core {
            store,
            shared: Shared::new(options.bitmap_cache_bytes),
            options,
            signal: Signal::default(),
        };
        let mut db = Database {
            core: Arc::new(core),
            worker: None,
        };
        db.start_worker()?;
        Ok(db)
    }

    /// Starts the job worker if the options ask for one.
    fn start_worker(&mut self) -> Result<()> {
        if self.core.options.jobs && self.worker.is_none() {
            *self.core.signal.state.lock() = (true, false);
            let core = self.core.clone();
            let handle = std::thread::Builder::new()
                .name("prismdb-jobs".into())
                .spawn(move || work(core))
                .map_err(|e| Error::Internal(format!("cannot start the job worker: {e}")))?;
            self.worker = Some(handle);
        }
        Ok(())
    }

    /// Stops the job worker (after the chunk it is applying) and waits for it.
    fn stop_worker(&mut self) {
        if let Some(handle) = self.worker.take() {
            self.core.signal.notify(true);
            let _ = handle.join();
        }
    }

    /// The options the database was opened with.
    pub fn options(&self) -> &Options {
        &self.core.options
    }

    fn view(&self) -> Result<ReadView<'_>> {
        self.core.view()
    }

    fn write<R>(
        &self,
        durability: Durability,
        body: impl FnOnce(&mut Tx<'_, '_>) -> Result<R>,
    ) -> Result<R> {
        self.core.write(durability, body)
    }

    /// Opens a read snapshot: every read through it sees the same committed state.
    pub fn snapshot(&self) -> Result<Snapshot<'_>> {
        Ok(Snapshot { view: self.view()? })
    }

    /// Runs `body` with a [`Batch`] of `principal`: every operation in it commits together
    /// in one transaction, or (if `body` or any operation fails) none does.
    pub fn write_batch<R>(
        &self,
        principal: &Principal,
        body: impl FnOnce(&mut Batch<'_, '_, '_>) -> Result<R>,
    ) -> Result<R> {
        self.write_batch_with(principal, self.core.options.durability, body)
    }

    /// [`Database::write_batch`] with the durability of this one commit given.
    pub fn write_batch_with<R>(
        &self,
        principal: &Principal,
        durability: Durability,
        body: impl FnOnce(&mut Batch<'_, '_, '_>) -> Result<R>,
    ) -> Result<R> {
        self.write(durability, |tx| {
            let mut batch = Batch { tx, principal };
            body(&mut batch)
        })
    }

    fn write_one<R>(&self, body: impl FnOnce(&mut Tx<'_, '_>) -> Result<R>) -> Result<R> {
        self.core.write_one(body)
    }

    /// Creates a record of `ty` and returns it (with its new id).
    ///
    /// Errors: `unknown_property`, `invalid_value`, `read_only_property` naming the slug;
    /// `unique_violation`; `read_only_type` for events written by non-system principals.
    pub fn create(
        &self,
        principal: &Principal,
        ty: ObjectType,
        input: &RecordInput,
    ) -> Result<Record> {
        self.write_one(|tx| records::create(tx, principal, ty, input))
    }

    /// Returns the live record `id`, or `not_found`.
    pub fn get(&self, principal: &Principal, ty: ObjectType, id: Uuid) -> Result<Record> {
        records::get(&self.view()?, principal, ty, id)
    }

    /// Merges `input` into record `id` (`null` removes a property) and returns the record.
    pub fn patch(
        &self,
        principal: &Principal,
        ty: ObjectType,
        id: Uuid,
        input: &RecordInput,
    ) -> Result<Record> {
        self.write_one(|tx| records::patch(tx, principal, ty, id, input))
    }

    /// Soft-deletes record `id`: it leaves every read and moves to the trash.
    pub fn delete(&self, principal: &Principal, ty: ObjectType, id: Uuid) -> Result<()> {
        self.write_one(|tx| records::delete(tx, principal, ty, id))
    }

    /// Brings record `id` back from the trash; `unique_violation` if one of its unique
    /// values was taken meanwhile. A live record is returned unchanged.
    pub fn restore(&self, principal: &Principal, ty: ObjectType, id: Uuid) -> Result<Record> {
        self.write_one(|tx| records::restore(tx, principal, ty, id))
    }

    /// Creates a copy of record `id` without its unique properties and returns the copy.
    pub fn duplicate(&self, principal: &Principal, ty: ObjectType, id: Uuid) -> Result<Record> {
        self.write_one(|tx| records::duplicate(tx, principal, ty, id))
    }

    /// The number of live records of `ty` the principal may read.
    pub fn count(&self, principal: &Principal, ty: ObjectType) -> Result<u64> {
        records::count(&self.view()?, principal, ty)
    }

    /// Patches each item's record, each applied or refused on its own, all in one
    /// transaction (one fsync). Returns one result per item in input order (`invalid_id`
    /// with no id where the id is not a UUID) and the counts. Errors: `limit_exceeded` for
    /// more than 1,000 items; `internal` (and nothing written) if storage fails.
    pub fn bulk_update(
        &self,
        principal: &Principal,
        ty: ObjectType,
        items: &[BulkUpdateItem],
    ) -> Result<BulkResponse> {
        self.write_one(|tx| bulk::update(tx, principal, ty, items))
    }

    /// Soft-deletes each id's record, each applied or refused on its own, as
    /// [`Database::bulk_update`] does.
    pub fn bulk_delete(
        &self,
        principal: &Principal,
        ty: ObjectType,
        ids: &[String],
    ) -> Result<BulkResponse> {
        self.write_one(|tx| bulk::delete(tx, principal, ty, ids))
    }

    /// Imports rows (SPEC §3): sync (up to 1,000 rows, or when asked) applies them all
    /// in one transaction and returns the complete job; async stores the job and returns
    /// it at once, for [`Database::run_import_jobs`] to apply chunk by chunk. Errors:
    /// `invalid_request` (a malformed request, a dedupe key outside the value index),
    /// `unknown_property`, `limit_exceeded` (over 1,000 rows in sync mode),
    /// `read_only_type`; refused rows are reported in the job, not as errors.
    pub fn import(
        &self,
        principal: &Principal,
        ty: ObjectType,
        request: &ImportRequest,
    ) -> Result<ImportJob> {
        let (job_id, sync) = self.write_one(|tx| {
            let (job_id, number, sync) = import::start(tx, principal, ty, request)?;
            if sync {
                while import::run_chunk(tx, principal.team, number, job_id, None)? {}
            }
            Ok((job_id, sync))
        })?;
        if !sync {
            self.core.signal.notify(false);
        }
        self.import_status(principal, job_id)
    }

    /// The snapshot of import job `job_id`: `not_found` if there is none in the caller's
    /// team, it expired (24 hours after it finished), or the caller neither started it nor
    /// is an admin.
    pub fn import_status(&self, principal: &Principal, job_id: Uuid) -> Result<ImportJob> {
        import::status(&self.view()?, principal, job_id)
    }

    /// Applies the chunks of every processing import job, one transaction per chunk, until
    /// none is left, calling `progress` with the job's counters after each chunk commits
    /// (for a progress bar; `import_status` has its per-row results). While a job runs,
    /// scoped threads commit one chunk and read the next one's rows beside the caller's
    /// thread, which applies a chunk; they end with the job. Also deletes jobs that
    /// expired. Returns how many chunks it applied, or the first storage failure. A crash
    /// between chunks loses nothing: the next run resumes at the first chunk not
    /// committed.
    pub fn run_import_jobs(&self, mut progress: impl FnMut(&ImportProgress)) -> Result<u64> {
        self.core.run_import_jobs(Some(&mut progress))
    }

    /// The grant of deal, action, document or event `id` (the principal must be able to
    /// read it). Errors: `not_found` (absent, deleted or unreadable), `invalid_request`
    /// for types without grants.
    pub fn grant(&self, principal: &Principal, ty: ObjectType, id: Uuid) -> Result<Grant> {
        records::grant_get(&self.view()?, principal, ty, id)
    }

    /// Replaces the grant of record `id` and returns it; the principal needs the `a` level
    /// (or the admin or system role). Errors: `not_found`, `permission_denied`,
    /// `invalid_value` for a grant that gives nobody `a`, `invalid_request` for types
    /// without grants, `read_only_type` for events written by non-system principals.
    pub fn update_grant(
        &self,
        principal: &Principal,
        ty: ObjectType,
        id: Uuid,
        grant: &Grant,
    ) -> Result<Grant> {
        self.write_one(|tx| records::grant_update(tx, principal, ty, id, grant))
    }

    /// The one live record whose `slug` equals `value` (coerced to the property's kind):
    /// `not_found` if none, `multiple_matches` if several.
    pub fn find(
        &self,
        principal: &Principal,
        ty: ObjectType,
        slug: &str,
        value: &str,
    ) -> Result<Record> {
        records::find(&self.view()?, principal, ty, slug, value)
    }

    /// Patches the one live record whose `slug` equals `value`, or creates it with that
    /// value. Returns the record and whether it was created; `multiple_matches` if several.
    pub fn upsert(
        &self,
        principal: &Principal,
        ty: ObjectType,
        slug: &str,
        value: &str,
        input: &RecordInput,
    ) -> Result<(Record, bool)> {
        self.write_one(|tx| records::upsert(tx, principal, ty, slug, value, input))
    }

    /// One page of live records in id order.
    pub fn list(
        &self,
        principal: &Principal,
        ty: ObjectType,
        request: &ListRequest,
    ) -> Result<Page> {
        records::list(&self.view()?, principal, ty, request, false)
    }

    /// One page of the records that match a query (SPEC §4): filter, sort, keyset cursor,
    /// selection and optional total. Errors: `invalid_filter` with a JSON pointer to the
    /// offending node, `invalid_cursor`, `invalid_request` for a bad limit.
    pub fn query(
        &self,
        principal: &Principal,
        ty: ObjectType,
        request: &QueryRequest,
    ) -> Result<Page> {
        crate::query::query(&self.view()?, principal, ty, request)
    }

    /// One page of the trash (soft-deleted records) in id order.
    pub fn trash(
        &self,
        principal: &Principal,
        ty: ObjectType,
        request: &ListRequest,
    ) -> Result<Page> {
        records::list(&self.view()?, principal, ty, request, true)
    }

    /// The property catalog of `ty`.
    pub fn schema(&self, principal: &Principal, ty: ObjectType) -> Result<Catalog> {
        Ok((*crate::txn::View::catalog(&self.view()?, principal.team, ty)?).clone())
    }

    /// Adds a property (admin role); returns it with its engine-made option ids.
    pub fn add_property(
        &self,
        principal: &Principal,
        ty: ObjectType,
        spec: &PropertySpec,
    ) -> Result<Property> {
        self.write_one(|tx| schema_ops::add_property(tx, principal, ty, spec))
    }

    /// Changes a property's options, `unique` or `indexed` flag (admin role). Removing an
    /// option records hold is `conflict`; making it unique over duplicates is
    /// `unique_violation`.
    pub fn update_property(
        &self,
        principal: &Principal,
        ty: ObjectType,
        slug: &str,
        change: &PropertyChange,
    ) -> Result<Property> {
        self.write_one(|tx| schema_ops::update_property(tx, principal, ty, slug, change))
    }

    /// Removes a property (admin role): `conflict` while records hold values, unless
    /// `force`, which removes the values too.
    pub fn remove_property(
        &self,
        principal: &Principal,
        ty: ObjectType,
        slug: &str,
        force: bool,
    ) -> Result<()> {
        self.write_one(|tx| schema_ops::remove_property(tx, principal, ty, slug, force))
    }

    /// Rebuilds every ordinal map, bitmap, index entry and counter from the records and
    /// reports each disagreement.
    pub fn verify_integrity(&self) -> Result<IntegrityReport> {
        integrity::verify(&self.view()?)
    }

    /// Permanently removes the records that have been in the trash longer than the
    /// retention period; returns how many were removed.
    pub fn purge_trash(&self) -> Result<u64> {
        let retention =
            i64::try_from(self.core.options.trash_retention.as_micros()).unwrap_or(i64::MAX);
        self.write_one(|tx| crate::trash::purge(tx, tx.now.saturating_sub(retention)))
    }

    /// Where the bytes of the file go (data, structure, free space).
    pub fn storage_stats(&self) -> Result<crate::storage::StorageStats> {
        self.core.store.stats()
    }

    /// Makes every earlier commit durable, including those made with
    /// [`Durability::Eventual`]: one empty commit with an fsync.
    pub fn sync(&self) -> Result<()> {
        self.core.store.write(Durability::Immediate, |_| Ok(()))
    }

    /// Rewrites the file without its free pages; returns whether space was reclaimed.
    /// The job worker, if any, pauses while it runs.
    pub fn compact(&mut self) -> Result<bool> {
        self.exclusive("compact", Store::compact)
    }

    /// Reads every page of the file and verifies its checksum, the physical counterpart of
    /// [`Database::verify_integrity`] (which checks that indexes agree with records).
    /// Returns `Ok(false)` if a damaged page was found; the file is then rolled back to the
    /// newest commit whose pages all verify, and later commits are lost. Fails with
    /// `internal` on an I/O error or if the database is still shared. Reads every page:
    /// seconds per gigabyte. The job worker, if any, pauses while it runs.
    pub fn verify_storage(&mut self) -> Result<bool> {
        self.exclusive("verify storage", Store::check_pages)
    }

    /// Runs `work` on the store with the job worker stopped and no other handle to it.
    fn exclusive(&mut self, what: &str, work: fn(&mut Store) -> Result<bool>) -> Result<bool> {
        self.stop_worker();
        let outcome = match Arc::get_mut(&mut self.core) {
            Some(core) => work(&mut core.store),
            None => Err(Error::Internal(format!(
                "{what}: the database is still shared"
            ))),
        };
        self.start_worker()?;
        outcome
    }
}

fn check_or_stamp_format(writer: &mut Writer<'_>) -> Result<()> {
    let format_key = [keys::META, b'F'];
    let identity_key = [keys::META, b'I'];
    let identity = writer.get(&identity_key)?;
    let format = writer.get_with(&format_key, keys::read_u32)?.flatten();
    match (identity, format) {
        (Some(id), Some(format)) if id == IDENTITY => match format {
            FORMAT_VERSION => Ok(()),
            UPGRADED_FORMAT => writer.put(&format_key, &FORMAT_VERSION.to_be_bytes()),
            _ => Err(Error::Internal(format!(
                "the file has format {format}; this build reads formats {UPGRADED_FORMAT} \
                 and {FORMAT_VERSION}"
            ))),
        },
        (None, None) => {
            let mut empty = true;
            writer.scan_prefix(&[], |_, _| {
                empty = false;
                Ok(false)
            })?;
            if !empty {
                return Err(Error::Internal("the file is not a prismdb database".into()));
            }
            writer.put(&identity_key, IDENTITY)?;
            writer.put(&format_key, &FORMAT_VERSION.to_be_bytes())
        }
        _ => Err(Error::Internal("the file is not a prismdb database".into())),
    }
}

/// A consistent read-only view of the database at one commit.
pub struct Snapshot<'db> {
    view: ReadView<'db>,
}

impl Snapshot<'_> {
    /// [`Database::get`] on this snapshot.
    pub fn get(&self, principal: &Principal, ty: ObjectType, id: Uuid) -> Result<Record> {
        records::get(&self.view, principal, ty, id)
    }

    /// [`Database::count`] on this snapshot.
    pub fn count(&self, principal: &Principal, ty: ObjectType) -> Result<u64> {
        records::count(&self.view, principal, ty)
    }

    /// [`Database::grant`] on this snapshot.
    pub fn grant(&self, principal: &Principal, ty: ObjectType, id: Uuid) -> Result<Grant> {
        records::grant_get(&self.view, principal, ty, id)
    }

    /// [`Database::find`] on this snapshot.
    pub fn find(
        &self,
        principal: &Principal,
        ty: ObjectType,
        slug: &str,
        value: &str,
    ) -> Result<Record> {
        records::find(&self.view, principal, ty, slug, value)
    }

    /// [`Database::list`] on this snapshot.
    pub fn list(
        &self,
        principal: &Principal,
        ty: ObjectType,
        request: &ListRequest,
    ) -> Result<Page> {
        records::list(&self.view, principal, ty, request, false)
    }

    /// [`Database::query`] on this snapshot.
    pub fn query(
        &self,
        principal: &Principal,
        ty: ObjectType,
        request: &QueryRequest,
    ) -> Result<Page> {
        crate::query::query(&self.view, principal, ty, request)
    }

    /// [`Database::trash`] on this snapshot.
    pub fn trash(
        &self,
        principal: &Principal,
        ty: ObjectType,
        request: &ListRequest,
    ) -> Result<Page> {
        records::list(&self.view, principal, ty, request, true)
    }

    /// [`Database::schema`] on this snapshot.
    pub fn schema(&self, principal: &Principal, ty: ObjectType) -> Result<Catalog> {
        Ok((*crate::txn::View::catalog(&self.view, principal.team, ty)?).clone())
    }
}

/// Operations of one principal that commit together (see [`Database::write_batch`]).
/// Reads through the batch see its own earlier writes.
pub struct Batch<'a, 'w, 't> {
    tx: &'a mut Tx<'w, 't>,
    principal: &'a Principal,
}

impl Batch<'_, '_, '_> {
    /// [`Database::create`] in this batch.
    pub fn create(&mut self, ty: ObjectType, input: &RecordInput) -> Result<Record> {
        records::create(self.tx, self.principal, ty, input)
    }

    /// [`Database::create`] in this batch, returning only the new id (no record is built
    /// for the answer): for bulk loads.
    pub fn create_id(&mut self, ty: ObjectType, input: &RecordInput) -> Result<Uuid> {
        records::create_id(self.tx, self.principal, ty, input)
    }

    /// [`Database::get`] in this batch.
    pub fn get(&self, ty: ObjectType, id: Uuid) -> Result<Record> {
        records::get(&*self.tx, self.principal, ty, id)
    }

    /// [`Database::patch`] in this batch.
    pub fn patch(&mut self, ty: ObjectType, id: Uuid, input: &RecordInput) -> Result<Record> {
        records::patch(self.tx, self.principal, ty, id, input)
    }

    /// [`Database::delete`] in this batch.
    pub fn delete(&mut self, ty: ObjectType, id: Uuid) -> Result<()> {
        records::delete(self.tx, self.principal, ty, id)
    }

    /// [`Database::restore`] in this batch.
    pub fn restore(&mut self, ty: ObjectType, id: Uuid) -> Result<Record> {
        records::restore(self.tx, self.principal, ty, id)
    }

    /// [`Database::duplicate`] in this batch.
    pub fn duplicate(&mut self, ty: ObjectType, id: Uuid) -> Result<Record> {
        records::duplicate(self.tx, self.principal, ty, id)
    }

    /// [`Database::bulk_update`] in this batch.
    pub fn bulk_update(
        &mut self,
        ty: ObjectType,
        items: &[BulkUpdateItem],
    ) -> Result<BulkResponse> {
        bulk::update(self.tx, self.principal, ty, items)
    }

    /// [`Database::bulk_delete`] in this batch.
    pub fn bulk_delete(&mut self, ty: ObjectType, ids: &[String]) -> Result<BulkResponse> {
        bulk::delete(self.tx, self.principal, ty, ids)
    }

    /// [`Database::grant`] in this batch.
    pub fn grant(&self, ty: ObjectType, id: Uuid) -> Result<Grant> {
        records::grant_get(&*self.tx, self.principal, ty, id)
    }

    /// [`Database::update_grant`] in this batch.
    pub fn update_grant(&mut self, ty: ObjectType, id: Uuid, grant: &Grant) -> Result<Grant> {
        records::grant_update(self.tx, self.principal, ty, id, grant)
    }

    /// [`Database::upsert`] in this batch.
    pub fn upsert(
        &mut self,
        ty: ObjectType,
        slug: &str,
        value: &str,
        input: &RecordInput,
    ) -> Result<(Record, bool)> {
        records::upsert(self.tx, self.principal, ty, slug, value, input)
    }

    /// [`Database::find`] in this batch.
    pub fn find(&self, ty: ObjectType, slug: &str, value: &str) -> Result<Record> {
        records::find(&*self.tx, self.principal, ty, slug, value)
    }

    /// [`Database::count`] in this batch.
    pub fn count(&self, ty: ObjectType) -> Result<u64> {
        records::count(&*self.tx, self.principal, ty)
    }

    /// [`Database::query`] in this batch (sees the batch's own writes).
    pub fn query(&mut self, ty: ObjectType, request: &QueryRequest) -> Result<Page> {
        // Queries scan bitmap rows in ranges; the batch's held bitmap chunks go to the
        // writer first so that those scans see them.
        self.tx.flush_bitmaps()?;
        crate::query::query(&*self.tx, self.principal, ty, request)
    }

    /// [`Database::list`] in this batch.
    pub fn list(&self, ty: ObjectType, request: &ListRequest) -> Result<Page> {
        records::list(&*self.tx, self.principal, ty, request, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_format_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(Database::open(&path).unwrap());
        {
            let store = Store::open(&path, 1 << 20).unwrap();
            store
                .write(Durability::Immediate, |w| {
                    w.put(&[keys::META, b'F'], &(FORMAT_VERSION + 1).to_be_bytes())
                })
                .unwrap();
        }
        match Database::open(&path) {
            Err(Error::Internal(message)) => assert!(message.contains("format"), "{message}"),
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a newer format was opened"),
        }
    }

    #[test]
    fn a_format_2_file_opens_and_becomes_format_3_and_format_1_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let stamp = |format: u32| {
            let store = Store::open(&path, 1 << 20).unwrap();
            store
                .write(Durability::Immediate, |w| {
                    w.put(&[keys::META, b'F'], &format.to_be_bytes())
                })
                .unwrap();
        };
        let stamped = || {
            let store = Store::open(&path, 1 << 20).unwrap();
            let reader = store.read().unwrap();
            reader
                .get_with(&[keys::META, b'F'], keys::read_u32)
                .unwrap()
                .flatten()
        };
        drop(Database::open(&path).unwrap());
        stamp(2);
        drop(Database::open(&path).unwrap());
        assert_eq!(
            stamped(),
            Some(3),
            "opened and stamped with the format it now may hold"
        );
        stamp(1);
        assert!(Database::open(&path).is_err(), "format 1 is not read");
    }

    #[test]
    fn a_redb_file_of_another_program_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path, 1 << 20).unwrap();
            store
                .write(Durability::Immediate, |w| {
                    w.put(b"someone else's key", b"value")
                })
                .unwrap();
        }
        match Database::open(&path) {
            Err(Error::Internal(message)) => {
                assert!(message.contains("not a prismdb"), "{message}")
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a foreign database was opened"),
        }
    }
}
