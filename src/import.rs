//! The import module: imports of many rows as jobs (SPEC §3), sync or async, with
//! per-row outcomes in the reference's `BulkCreateResponse` shape.
//!
//! A job is stored with its rows, in chunks of [`CHUNK_ROWS`]. Each chunk is applied in
//! one write transaction that also stores the chunk's results and advances the job's
//! counters, and deletes the chunk's rows: after a crash, the job resumes at the first
//! chunk not committed, and no row is applied twice. A sync import (up to
//! [`SYNC_MAX_ROWS`] rows) is stored and applied in one transaction and answered complete.
//! Async jobs are advanced by [`crate::Database::run_import_jobs`], which the database's own
//! worker calls when it was opened with jobs enabled. Jobs expire
//! [`JOB_RETENTION_MICROS`] after they finish.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::keys;
use crate::model::{ObjectType, Principal, Role};
use crate::record::RecordInput;
use crate::records;
use crate::storage::Kv;
use crate::time_fmt::format_rfc3339;
use crate::txn::{Tx, View};

/// The most rows a sync import takes; more (or `mode: "async"`) makes an async job.
pub const SYNC_MAX_ROWS: usize = 1000;
/// Rows applied per committed chunk of a job. Each commit rewrites every index leaf and
/// bitmap chunk its rows touch, and into a large table a chunk touches most of them, so
/// bigger chunks share that cost. Measured with 200,000 rows into 1,000,000 contacts (two
/// runs each): 10,000-row chunks 45.7–47.4 µs per row, 25,000-row chunks 37.2–37.6,
/// 50,000-row chunks 35.0–39.3, with the same peak memory (the page cache dominates it);
/// with 20,000 rows into 100,000 contacts, 1,000-row chunks ran at 9,600 rows/s and
/// 10,000-row chunks at 20,000. A crash loses at most one chunk's work.
pub const CHUNK_ROWS: usize = 25_000;
/// How long a finished job can still be read: 24 hours, in microseconds.
pub const JOB_RETENTION_MICROS: i64 = 24 * 3600 * 1_000_000;

/// How an import runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// Applied before the call returns (at most [`SYNC_MAX_ROWS`] rows).
    Sync,
    /// Stored as a job and applied in the background.
    Async,
}

/// An import: rows of property values, an optional dedupe key, an optional mode.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportRequest {
    /// Each row's property values, as a create takes them.
    pub rows: Vec<Map<String, Value>>,
    /// A unique or indexed property: a row whose value matches one live record updates it.
    pub dedupe_key: Option<String>,
    /// Sync or async; by default sync up to [`SYNC_MAX_ROWS`] rows, async above.
    pub mode: Option<ImportMode>,
}

impl ImportRequest {
    /// Reads the reference's body `{rows: [{…}], dedupe_key?, mode?: "sync"|"async"}`;
    /// anything else is `invalid_request` saying what.
    pub fn from_json(body: &Value) -> Result<ImportRequest> {
        let bad = |why: &str| Error::InvalidRequest(format!("import: {why}"));
        let object = body
            .as_object()
            .ok_or_else(|| bad("the body is an object"))?;
        let mut request = ImportRequest::default();
        for (key, value) in object {
            match key.as_str() {
                "rows" => {
                    let rows = value.as_array().ok_or_else(|| bad("rows is an array"))?;
                    for (i, row) in rows.iter().enumerate() {
                        let row = row
                            .as_object()
                            .ok_or_else(|| bad(&format!("rows[{i}] is an object")))?;
                        request.rows.push(row.clone());
                    }
                }
                "dedupe_key" if value.is_null() => {}
                "dedupe_key" => {
                    let slug = value.as_str().ok_or_else(|| bad("dedupe_key is a slug"))?;
                    request.dedupe_key = Some(slug.to_owned());
                }
                "mode" => {
                    request.mode = match value.as_str() {
                        Some("sync") => Some(ImportMode::Sync),
                        Some("async") => Some(ImportMode::Async),
                        None if value.is_null() => None,
                        _ => return Err(bad("mode is \"sync\" or \"async\"")),
                    }
                }
                other => return Err(bad(&format!("unknown key {other:?}"))),
            }
        }
        Ok(request)
    }
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    /// Rows remain to apply.
    Processing,
    /// Every row was applied or refused.
    Complete,
    /// The job stopped; its `error` says why.
    Failed,
}

impl JobStatus {
    /// The status in the API: `processing`, `complete` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Processing => "processing",
            JobStatus::Complete => "complete",
            JobStatus::Failed => "failed",
        }
    }
}

/// The outcome of one row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowResult {
    /// The record the row made or updated.
    pub id: Option<Uuid>,
    /// Whether the row made a new record.
    pub created: bool,
    /// Whether the row matched a live record through the dedupe key (and updated it).
    pub existing: bool,
    /// Why the row was refused: code and message.
    pub error: Option<(String, String)>,
}

/// A snapshot of a job: the reference's `BulkCreateResponse`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportJob {
    /// The job's id.
    pub job_id: Uuid,
    /// Where it is.
    pub status: JobStatus,
    /// Rows in the job.
    pub total: u64,
    /// Rows applied or refused so far.
    pub processed: u64,
    /// Rows applied.
    pub succeeded: u64,
    /// Rows refused.
    pub failed: u64,
    /// Per-row outcomes of the processed rows, in row order.
    pub results: Vec<RowResult>,
    /// When the job was made (RFC 3339).
    pub created_at: String,
    /// When it last moved.
    pub updated_at: String,
    /// When it expires: 24 hours after it finished.
    pub expires_at: Option<String>,
    /// Why a failed job stopped.
    pub error: Option<String>,
}

impl ImportJob {
    /// The reference's shape.
    pub fn to_json(&self) -> Value {
        let results: Vec<Value> = self
            .results
            .iter()
            .map(|r| {
                let mut row = json!({"id": r.id, "created": r.created, "existing": r.existing});
                if let Some((code, message)) = &r.error {
                    row["error"] = json!({"code": code, "message": message});
                }
                row
            })
            .collect();
        json!({
            "job_id": self.job_id,
            "status": self.status.as_str(),
            "total": self.total,
            "processed": self.processed,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "results": results,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "error": self.error,
        })
    }
}

/// How far a job is, as [`crate::Database::run_import_jobs`] reports it after each chunk:
/// the counters of an [`ImportJob`] without its per-row results (reading all of those back
/// after every chunk made a long job's progress reports quadratic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportProgress {
    /// The job's id.
    pub job_id: Uuid,
    /// Where it is.
    pub status: JobStatus,
    /// Rows in the job.
    pub total: u64,
    /// Rows applied or refused so far.
    pub processed: u64,
    /// Rows applied.
    pub succeeded: u64,
    /// Rows refused.
    pub failed: u64,
}

/// A job as stored: who runs it, on what, and how far it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredJob {
    ty: u8,
    user: u128,
    groups: Vec<u128>,
    role: u8,
    dedupe_key: Option<String>,
    status: JobStatus,
    total: u64,
    processed: u64,
    succeeded: u64,
    failed: u64,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    error: Option<String>,
}

impl StoredJob {
    fn principal(&self, team: Uuid) -> Principal {
        Principal {
            team,
            user: Uuid::from_u128(self.user),
            groups: self.groups.iter().map(|g| Uuid::from_u128(*g)).collect(),
            role: [Role::Member, Role::Admin, Role::System][usize::from(self.role.min(2))],
        }
    }

    fn object_type(&self) -> Result<ObjectType> {
        ObjectType::ALL
            .into_iter()
            .find(|ty| ty.code() == self.ty)
            .ok_or_else(|| damaged("unknown object type"))
    }

    fn finish(&mut self, now: i64, status: JobStatus) {
        self.status = status;
        self.finished_at = Some(now);
    }
}

fn damaged(why: &str) -> Error {
    Error::Internal(format!("stored import job is damaged: {why}"))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec(value).map_err(|e| Error::Internal(format!("cannot encode a job: {e}")))
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| damaged(&e.to_string()))
}

/// The first byte of a stored chunk of rows that is compressed: a byte MessagePack never
/// uses (and JSON never starts with). It is followed by the length of the chunk's
/// MessagePack (`u32`, little-endian) and an LZ4 block of it.
const COMPRESSED_ROWS: u8 = 0xc1;

/// An LZ4 block expands to at most about this many times its length (a match's length
/// grows by 255 per byte), so a larger length in a stored chunk is damage.
const LZ4_MAX_RATIO: usize = 255;

/// A chunk of rows as stored: their MessagePack, compressed. CRM rows repeat their property
/// names and many of their values, so the 35 MB of 200,000 contacts of the benchmark store
/// as 9 MB: storing them (before the import call returns) was 15% of the import's time,
/// almost all of it copying and paging in the bytes, and LZ4 costs about 0.35 µs per row
/// to pack and 0.12 µs to unpack. `scratch` is reused between chunks for the MessagePack.
fn encode_rows(rows: &[Map<String, Value>], scratch: &mut Vec<u8>) -> Result<Vec<u8>> {
    scratch.clear();
    rmp_serde::encode::write(scratch, rows)
        .map_err(|e| Error::Internal(format!("cannot encode import rows: {e}")))?;
    let packed = lz4_flex::block::compress_prepend_size(scratch);
    let mut stored = Vec::with_capacity(1 + packed.len());
    stored.push(COMPRESSED_ROWS);
    stored.extend_from_slice(&packed);
    Ok(stored)
}

/// The rows of a stored chunk: compressed MessagePack (see [`encode_rows`]), or as earlier
/// formats stored them, plain MessagePack or JSON (an array: `[`).
pub(crate) fn decode_rows(bytes: &[u8]) -> Result<Vec<Map<String, Value>>> {
    let rows = match bytes.first() {
        Some(&COMPRESSED_ROWS) => {
            let packed = unpack_rows(&bytes[1..])?;
            rmp_serde::from_slice(&packed).map_err(|e| e.to_string())
        }
        Some(b'[') => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        _ => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
    };
    rows.map_err(|e| damaged(&format!("rows: {e}")))
}

/// The MessagePack of a compressed chunk of rows: `packed` is its length and LZ4 block.
fn unpack_rows(packed: &[u8]) -> Result<Vec<u8>> {
    let (length, block) = packed
        .split_first_chunk::<4>()
        .ok_or_else(|| damaged("rows: the compressed length is cut off"))?;
    let length = u32::from_le_bytes(*length) as usize;
    if length > block.len().saturating_mul(LZ4_MAX_RATIO) {
        return Err(damaged(&format!(
            "rows: {} compressed bytes cannot hold {length}",
            block.len()
        )));
    }
    let unpacked = lz4_flex::block::decompress(block, length)
        .map_err(|e| damaged(&format!("rows: cannot decompress: {e}")))?;
    if unpacked.len() != length {
        return Err(damaged(&format!(
            "rows: decompressed {} bytes, expected {length}",
            unpacked.len()
        )));
    }
    Ok(unpacked)
}

/// Keys of one job: its row, and per chunk its rows and its results.
/// `tag, team, job id`: the job's key under `JOB`, or the prefix of its chunks under
/// `JOB_ROWS` and `JOB_RESULTS`.
fn job_prefix(tag: u8, team: u32, job: Uuid) -> Vec<u8> {
    let mut key = vec![tag];
    key.extend_from_slice(&team.to_be_bytes());
    key.extend_from_slice(job.as_bytes());
    key
}

fn job_key(team: u32, job: Uuid) -> Vec<u8> {
    job_prefix(keys::JOB, team, job)
}

fn part_key(tag: u8, team: u32, job: Uuid, chunk: u32) -> Vec<u8> {
    let mut key = job_prefix(tag, team, job);
    key.extend_from_slice(&chunk.to_be_bytes());
    key
}

/// Checks an import request and the caller's right to run it on `ty`.
fn check(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    request: &ImportRequest,
) -> Result<()> {
    crate::access::check_type_writable(principal, ty)?;
    if let Some(slug) = &request.dedupe_key {
        let catalog = tx.catalog(principal.team, ty)?;
        let prop = catalog.require(slug)?;
        if !prop.in_value_index() {
            return Err(Error::InvalidRequest(format!(
                "dedupe_key {slug:?} must be a unique or indexed property"
            )));
        }
    }
    if request.mode == Some(ImportMode::Sync) && request.rows.len() > SYNC_MAX_ROWS {
        return Err(Error::LimitExceeded(format!(
            "a sync import takes at most {SYNC_MAX_ROWS} rows, got {}; use mode \"async\"",
            request.rows.len()
        )));
    }
    Ok(())
}

/// Stores a new job for `request` (its rows in chunks) and returns its id and whether it
/// runs sync. Sync jobs are applied by the caller in the same transaction.
pub(crate) fn start(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    request: &ImportRequest,
) -> Result<(Uuid, u32, bool)> {
    check(tx, principal, ty, request)?;
    let sync = match request.mode {
        Some(mode) => mode == ImportMode::Sync,
        None => request.rows.len() <= SYNC_MAX_ROWS,
    };
    let scope = tx.scope_for_write(principal.team, ty)?;
    let job_id = Uuid::now_v7();
    let job = StoredJob {
        ty: ty.code(),
        user: principal.user.as_u128(),
        groups: principal.groups.iter().map(|g| g.as_u128()).collect(),
        role: principal.role as u8,
        dedupe_key: request.dedupe_key.clone(),
        status: JobStatus::Processing,
        total: request.rows.len() as u64,
        processed: 0,
        succeeded: 0,
        failed: 0,
        created_at: tx.now,
        updated_at: tx.now,
        finished_at: None,
        error: None,
    };
    let mut scratch = Vec::new();
    for (i, rows) in request.rows.chunks(CHUNK_ROWS).enumerate() {
        let stored = encode_rows(rows, &mut scratch)?;
        tx.writer().put_owned(
            part_key(keys::JOB_ROWS, scope.team, job_id, i as u32),
            stored,
        )?;
    }
    let mut job = job;
    if job.total == 0 {
        job.finish(tx.now, JobStatus::Complete);
    }
    tx.writer()
        .put(&job_key(scope.team, job_id), &encode(&job)?)?;
    Ok((job_id, scope.team, sync))
}

/// The rows of a stored job's chunk, decoded, while the job runs.
pub(crate) type Rows = Vec<Map<String, Value>>;

/// The number of the chunk job `job_id` (of team number `number`) applies next, if it is
/// still processing.
pub(crate) fn next_chunk(kv: &impl Kv, number: u32, job_id: Uuid) -> Result<Option<u32>> {
    stored_job(kv, number, job_id)?
        .filter(|job| job.status == JobStatus::Processing)
        .map(|job| chunk_at(&job))
        .transpose()
}

/// Job `job_id` of team number `number` as stored, if it is.
fn stored_job(kv: &impl Kv, number: u32, job_id: Uuid) -> Result<Option<StoredJob>> {
    kv.get_with(&job_key(number, job_id), decode::<StoredJob>)?
        .transpose()
}

fn chunk_at(job: &StoredJob) -> Result<u32> {
    u32::try_from(job.processed / CHUNK_ROWS as u64).map_err(|_| damaged("chunk"))
}

/// The stored rows of chunk `chunk` of job `job_id` (of team number `number`), if stored.
pub(crate) fn stored_rows(
    kv: &impl Kv,
    number: u32,
    job_id: Uuid,
    chunk: u32,
) -> Result<Option<Rows>> {
    let key = part_key(keys::JOB_ROWS, number, job_id, chunk);
    kv.get_with(&key, decode_rows)?.transpose()
}

/// Applies the next chunk of job `job_id` of team `team` (number `number`), if it is still
/// processing: the rows, their results and the job's counters, all in this transaction.
/// `ahead` may hold the chunk's rows, read beforehand (with the chunk's number); they are
/// read here otherwise. Returns whether rows remain.
pub(crate) fn run_chunk(
    tx: &mut Tx<'_, '_>,
    team: Uuid,
    number: u32,
    job_id: Uuid,
    ahead: Option<(u32, Rows)>,
) -> Result<bool> {
    let key = job_key(number, job_id);
    let Some(mut job) = stored_job(tx.kv(), number, job_id)? else {
        return Ok(false);
    };
    if job.status != JobStatus::Processing {
        return Ok(false);
    }
    let chunk = chunk_at(&job)?;
    let rows_key = part_key(keys::JOB_ROWS, number, job_id, chunk);
    let rows = match ahead {
        Some((read, rows)) if read == chunk => Some(rows),
        _ => stored_rows(tx.kv(), number, job_id, chunk)?,
    };
    let Some(rows) = rows else {
        job.error = Some(format!("the rows of chunk {chunk} are missing"));
        job.finish(tx.now, JobStatus::Failed);
        tx.writer().put(&key, &encode(&job)?)?;
        return Ok(false);
    };
    let principal = job.principal(team);
    let ty = job.object_type()?;
    let mut results = Vec::with_capacity(rows.len());
    let row_count = rows.len() as u64;
    for row in rows {
        let result = apply_row(tx, &principal, ty, job.dedupe_key.as_deref(), row)?;
        match result.error {
            None => job.succeeded += 1,
            Some(_) => job.failed += 1,
        }
        results.push(result);
    }
    job.processed += row_count;
    job.updated_at = tx.now;
    if job.processed >= job.total {
        job.finish(tx.now, JobStatus::Complete);
    }
    tx.writer().delete(&rows_key)?;
    tx.writer().put(
        &part_key(keys::JOB_RESULTS, number, job_id, chunk),
        &encode(&results)?,
    )?;
    tx.writer().put(&key, &encode(&job)?)?;
    Ok(job.status == JobStatus::Processing)
}

/// Applies one row: a create, or with a dedupe key whose value the row holds, a patch of
/// the one readable live record holding it. A refused row changes nothing; only a storage
/// failure is returned as an error.
fn apply_row(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    dedupe_key: Option<&str>,
    row: Map<String, Value>,
) -> Result<RowResult> {
    let outcome = (|| -> Result<(Uuid, bool)> {
        let wanted = dedupe_key
            .and_then(|slug| Some((slug, row.get(slug).filter(|v| !v.is_null())?.clone())));
        let input = RecordInput::new(row);
        if let Some((slug, value)) = wanted {
            match records::matches_of_value(&*tx, principal, ty, slug, &value)?.as_slice() {
                [] => {}
                [id] => {
                    return records::patch(tx, principal, ty, *id, &input).map(|r| (r.id, true))
                }
                _ => {
                    return Err(Error::MultipleMatches(format!(
                        "several {ty} records have {slug} = {value}"
                    )))
                }
            }
        }
        records::create_id(tx, principal, ty, &input).map(|id| (id, false))
    })();
    match outcome {
        Ok((id, existing)) => Ok(RowResult {
            id: Some(id),
            created: !existing,
            existing,
            error: None,
        }),
        Err(e @ Error::Internal(_)) => Err(e),
        Err(e) => Ok(RowResult {
            id: None,
            created: false,
            existing: false,
            error: Some((e.code().to_owned(), e.message().to_owned())),
        }),
    }
}

/// The snapshot of job `job_id` of the principal's team: `not_found` if there is none,
/// it expired, or the principal is not its owner (nor an admin).
pub(crate) fn status(view: &impl View, principal: &Principal, job_id: Uuid) -> Result<ImportJob> {
    let missing = || Error::NotFound(format!("no import job {job_id}"));
    let team = view.team(principal.team)?.ok_or_else(missing)?;
    let job = stored_job(view.kv(), team, job_id)?.ok_or_else(missing)?;
    let now = crate::time_fmt::now_micros();
    let expired = job
        .finished_at
        .is_some_and(|at| now - at > JOB_RETENTION_MICROS);
    let owner = job.user == principal.user.as_u128() || principal.is_admin();
    if expired || !owner {
        return Err(missing());
    }
    let mut results = Vec::with_capacity(job.processed as usize);
    let prefix = job_prefix(keys::JOB_RESULTS, team, job_id);
    view.kv().scan_prefix(&prefix, |_, value| {
        results.extend(decode::<Vec<RowResult>>(value)?);
        Ok(true)
    })?;
    Ok(ImportJob {
        job_id,
        status: job.status,
        total: job.total,
        processed: job.processed,
        succeeded: job.succeeded,
        failed: job.failed,
        results,
        created_at: format_rfc3339(job.created_at),
        updated_at: format_rfc3339(job.updated_at),
        expires_at: job
            .finished_at
            .map(|at| format_rfc3339(at + JOB_RETENTION_MICROS)),
        error: job.error,
    })
}

/// The progress of job `job_id` of team number `number`, if it is stored.
pub(crate) fn progress(kv: &impl Kv, number: u32, job_id: Uuid) -> Result<Option<ImportProgress>> {
    Ok(stored_job(kv, number, job_id)?.map(|job| ImportProgress {
        job_id,
        status: job.status,
        total: job.total,
        processed: job.processed,
        succeeded: job.succeeded,
        failed: job.failed,
    }))
}

/// Every job still processing: (team uuid, team number, job id), oldest first per team.
pub(crate) fn pending(kv: &impl Kv) -> Result<Vec<(Uuid, u32, Uuid)>> {
    let teams: std::collections::HashMap<u32, Uuid> =
        crate::integrity::teams(kv)?.into_iter().collect();
    let mut found = Vec::new();
    kv.scan_prefix(&[keys::JOB], |key, value| {
        let job: StoredJob = decode(value)?;
        let number = key.get(1..5).and_then(keys::read_u32);
        let id = key.get(5..21).and_then(|b| Uuid::from_slice(b).ok());
        if let (Some(number), Some(id), JobStatus::Processing) = (number, id, job.status) {
            if let Some(team) = teams.get(&number) {
                found.push((*team, number, id));
            }
        }
        Ok(true)
    })?;
    Ok(found)
}

/// Marks job `job_id` (of team number `number`) failed, saying why: `error`, the failure
/// of the chunk it stopped at.
pub(crate) fn fail(tx: &mut Tx<'_, '_>, number: u32, job_id: Uuid, error: &Error) -> Result<()> {
    let key = job_key(number, job_id);
    let Some(mut job) = stored_job(tx.kv(), number, job_id)? else {
        return Ok(());
    };
    job.error = Some(format!("stopped after {} rows: {error}", job.processed));
    job.updated_at = tx.now;
    job.finish(tx.now, JobStatus::Failed);
    tx.writer().put(&key, &encode(&job)?)
}

/// Deletes jobs that finished more than [`JOB_RETENTION_MICROS`] before `now`, with
/// their results. Returns how many.
pub(crate) fn purge_expired(tx: &mut Tx<'_, '_>, now: i64) -> Result<u64> {
    let mut doomed = Vec::new();
    tx.kv().scan_prefix(&[keys::JOB], |key, value| {
        let job: StoredJob = decode(value)?;
        if job
            .finished_at
            .is_some_and(|at| now - at > JOB_RETENTION_MICROS)
        {
            doomed.push(key.to_vec());
        }
        Ok(true)
    })?;
    for key in &doomed {
        tx.writer().delete(key)?;
        for tag in [keys::JOB_RESULTS, keys::JOB_ROWS] {
            let mut parts = key.clone();
            parts[0] = tag;
            tx.writer().delete_prefix(&parts)?;
        }
    }
    Ok(doomed.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Map<String, Value>> {
        let row = json!({"name": "Ada", "score": 12.5, "count": -3, "big": u64::MAX,
            "tags": ["a", "b"], "vip": true, "note": null, "nested": {"x": 1}});
        vec![row.as_object().cloned().unwrap(), Map::new()]
    }

    #[test]
    fn stored_rows_decode_in_every_format() {
        let rows = rows();
        let stored = encode_rows(&rows, &mut Vec::new()).unwrap();
        assert_eq!(stored[0], COMPRESSED_ROWS);
        assert_eq!(decode_rows(&stored).unwrap(), rows);
        let packed = rmp_serde::to_vec(&rows).unwrap();
        assert_eq!(decode_rows(&packed).unwrap(), rows);
        let first_format = serde_json::to_vec(&rows).unwrap();
        assert_eq!(decode_rows(&first_format).unwrap(), rows);
    }

    #[test]
    fn damaged_rows_are_an_error() {
        let packed = rmp_serde::to_vec(&rows()).unwrap();
        let stored = encode_rows(&rows(), &mut Vec::new()).unwrap();
        let mut claims_more = stored.clone();
        claims_more[1] += 1;
        let mut claims_huge = stored.clone();
        claims_huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let bad: [&[u8]; 8] = [
            &packed[..packed.len() / 2],
            b"[{\"a\": ",
            b"\xc1",
            b"",
            &stored[..stored.len() - 3],
            &stored[..3],
            &claims_more,
            &claims_huge,
        ];
        for bad in bad {
            let err = decode_rows(bad).unwrap_err();
            assert!(err.message().contains("rows"), "{err}");
        }
    }
}
