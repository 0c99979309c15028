//! The bulk module: partial-success bulk update and bulk delete (SPEC §3), in the
//! reference's response shape (`{results: [{id, status, error, record}], summary}`).
//!
//! All items of one call run in one write transaction, in input order, and commit together
//! (one fsync). An item that fails is reported and changes nothing: every check an item
//! can fail (id, access, values, uniqueness) runs before it writes. Only a storage failure
//! (`internal`) fails the whole call, and then nothing of it is written.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{parse_id, ObjectType, Principal};
use crate::record::{Record, RecordInput};
use crate::records;
use crate::txn::Tx;

/// The most items one bulk call takes; more is `limit_exceeded`.
pub const MAX_BULK_ITEMS: usize = 1000;

/// One item of a bulk update: the record's id as the caller wrote it, and what to write.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BulkUpdateItem {
    /// The record's id; text that is not a UUID fails this item with `invalid_id`.
    pub id: String,
    /// The values to merge into the record, as a patch takes them.
    pub input: RecordInput,
}

/// Whether one item of a bulk call was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemStatus {
    /// Applied.
    Ok,
    /// Refused; the item's `error` says why.
    Error,
}

/// The outcome of one item of a bulk call.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemResult {
    /// The item's id, or `None` where it could not be parsed.
    pub id: Option<Uuid>,
    /// Whether the item was applied.
    pub status: ItemStatus,
    /// Why it was refused: the error code and message.
    pub error: Option<(String, String)>,
    /// The record after an applied update (bulk delete returns none).
    pub record: Option<Record>,
}

/// Counts of a bulk call's items.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkSummary {
    /// Items in the call.
    pub total: usize,
    /// Items applied.
    pub succeeded: usize,
    /// Items refused.
    pub failed: usize,
}

/// What a bulk call answers: one result per item, in input order, and the counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BulkResponse {
    /// Per-item outcomes, in input order.
    pub results: Vec<ItemResult>,
    /// Counts of the outcomes.
    pub summary: BulkSummary,
}

impl BulkResponse {
    /// The reference's shape: `{results: [{id, status, error?, record?}], summary: {total,
    /// succeeded, failed}}`.
    pub fn to_json(&self) -> Value {
        let results: Vec<Value> = self.results.iter().map(ItemResult::to_json).collect();
        json!({
            "results": results,
            "summary": {
                "total": self.summary.total,
                "succeeded": self.summary.succeeded,
                "failed": self.summary.failed,
            },
        })
    }

    fn push(&mut self, id: Option<Uuid>, outcome: Result<Option<Record>>) -> Result<()> {
        let (status, error, record) = match outcome {
            Ok(record) => (ItemStatus::Ok, None, record),
            // A storage failure is not the item's fault: the whole call fails.
            Err(e @ Error::Internal(_)) => return Err(e),
            Err(e) => (
                ItemStatus::Error,
                Some((e.code().to_owned(), e.message().to_owned())),
                None,
            ),
        };
        self.summary.total += 1;
        match status {
            ItemStatus::Ok => self.summary.succeeded += 1,
            ItemStatus::Error => self.summary.failed += 1,
        }
        self.results.push(ItemResult {
            id,
            status,
            error,
            record,
        });
        Ok(())
    }
}

impl ItemResult {
    /// The reference's item shape.
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "id": self.id,
            "status": match self.status {
                ItemStatus::Ok => "ok",
                ItemStatus::Error => "error",
            },
        });
        if let Some((code, message)) = &self.error {
            out["error"] = json!({"code": code, "message": message});
        }
        if let Some(record) = &self.record {
            out["record"] = record.to_json();
        }
        out
    }
}

/// Refuses calls of more than [`MAX_BULK_ITEMS`] items.
fn check_size(items: usize) -> Result<()> {
    if items > MAX_BULK_ITEMS {
        return Err(Error::LimitExceeded(format!(
            "a bulk call takes at most {MAX_BULK_ITEMS} items, got {items}"
        )));
    }
    Ok(())
}

/// Applies `apply` to each item (whose id text `id_of` gives), in order, collecting each
/// outcome; an id that is not a UUID fails its item with `invalid_id`.
fn each<T>(
    items: &[T],
    id_of: impl Fn(&T) -> &str,
    mut apply: impl FnMut(Uuid, &T) -> Result<Option<Record>>,
) -> Result<BulkResponse> {
    check_size(items.len())?;
    let mut response = BulkResponse::default();
    for item in items {
        match parse_id(id_of(item)) {
            Ok(id) => response.push(Some(id), apply(id, item))?,
            Err(e) => response.push(None, Err(e))?,
        }
    }
    Ok(response)
}

/// bulk update: patches each item's record, each applied or refused on its own.
pub(crate) fn update(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    items: &[BulkUpdateItem],
) -> Result<BulkResponse> {
    each(
        items,
        |item| &item.id,
        |id, item| records::patch(tx, principal, ty, id, &item.input).map(Some),
    )
}

/// bulk delete: soft-deletes each id's record, each applied or refused on its own.
pub(crate) fn delete(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    ids: &[String],
) -> Result<BulkResponse> {
    each(ids, String::as_str, |id, _| {
        records::delete(tx, principal, ty, id).map(|()| None)
    })
}
