//! prismdb: an embedded storage engine for CRM records.
//!
//! A service links this crate and gets, in process, the operations of the Prism objects API
//! on contacts, organizations, identities, deals, actions, documents and events of many
//! teams: create, get, patch, soft delete, restore, duplicate, count, find and upsert by a
//! property value, and keyset-paginated lists, over one [redb] file.
//!
//! ```
//! use prismdb::{Database, ObjectType, Principal, RecordInput, ListRequest};
//! use serde_json::json;
//! use uuid::Uuid;
//!
//! let db = Database::in_memory()?;
//! let me = Principal::member(Uuid::new_v4(), Uuid::new_v4());
//! let input = RecordInput::from_properties(json!({"name": "Ada", "email": "ada@example.com"}))?;
//! let ada = db.create(&me, ObjectType::Contact, &input)?;
//! let found = db.find(&me, ObjectType::Contact, "email", "ADA@example.com")?;
//! assert_eq!(found.id, ada.id);
//! let page = db.list(&me, ObjectType::Contact, &ListRequest::first(50))?;
//! assert_eq!(page.rows.len(), 1);
//! # Ok::<(), prismdb::Error>(())
//! ```
//!
//! The layout of the code and of the file is described in `docs/architecture.md`.

#![warn(missing_docs)]

mod access;
mod bitmap;
mod bulk;
mod cache;
mod codec;
mod column;
mod cursor;
mod db;
mod error;
mod eval;
mod filter;
mod grant;
mod import;
mod index;
mod integrity;
mod keys;
mod model;
mod query;
mod record;
mod records;
mod schema;
mod schema_ops;
mod storage;
mod time_fmt;
mod trash;
mod txn;
mod walk;

pub use bulk::{BulkResponse, BulkSummary, BulkUpdateItem, ItemResult, ItemStatus, MAX_BULK_ITEMS};
pub use db::{Batch, Database, Options, Snapshot, FORMAT_VERSION};
pub use error::{Error, Result};
pub use grant::{Grant, Level};
pub use import::{
    ImportJob, ImportMode, ImportProgress, ImportRequest, JobStatus, RowResult,
    CHUNK_ROWS as IMPORT_CHUNK_ROWS, JOB_RETENTION_MICROS, SYNC_MAX_ROWS,
};
pub use integrity::IntegrityReport;
pub use model::{parse_id, ObjectType, Principal, Role};
pub use query::{Direction, QueryRequest, SortKey, MAX_SORT_KEYS};
pub use record::{ListRequest, Page, Properties, Record, RecordInput, DEFAULT_LIMIT, MAX_LIMIT};
pub use schema::{Catalog, Kind, OptionSpec, Property, PropertyChange, PropertySpec, SelectOption};
pub use storage::{Durability, Journaled, StorageBackend, StorageStats};

/// Decoders exposed for the fuzz targets in `fuzz/`: each must return an error, never
/// panic, on any input.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes arbitrary bytes as a stored record; returns whether they decoded. Also reads
    /// each of the first property numbers alone, and when the whole record decoded, checks
    /// that each such read gives the record's value.
    pub fn decode_record(bytes: &[u8]) -> bool {
        let whole = crate::codec::decode_record(bytes);
        for pid in 0..4 {
            let one = crate::codec::decode_value(bytes, pid);
            if let Ok(record) = &whole {
                let one = one.expect("a record that decodes whole decodes one value");
                assert_eq!(one.as_ref(), record.value(pid), "one value of a record");
            }
        }
        whole.is_ok()
    }

    /// Reads arbitrary bytes as writes, resizes, syncs and crashes (some with a damaged
    /// journal) of a journaled file in memory; panics if a read or a replay disagrees with
    /// the image of the writes (see `storage::journal`).
    pub fn journal_operations(bytes: &[u8]) {
        crate::storage::replay_check::run(bytes);
    }

    /// Decodes arbitrary bytes as a stored grant; returns whether they decoded (and then
    /// that they encode back to the same bytes).
    pub fn decode_grant(bytes: &[u8]) -> bool {
        match crate::grant::Grant::decode(bytes) {
            Ok(grant) => {
                assert_eq!(grant.encode(), bytes, "a decoded grant encodes back");
                true
            }
            Err(_) => false,
        }
    }

    /// Decodes arbitrary bytes as a stored bitmap row, as a chunk row and as a whole row;
    /// returns how many of the two decoded (and checks that each that did reads the same
    /// whole and chunk by chunk).
    pub fn decode_bitmap_row(bytes: &[u8]) -> usize {
        crate::bitmap::check_row_decoders(bytes)
    }

    /// Decodes arbitrary bytes as the stored rows of an import chunk; returns whether they
    /// decoded.
    pub fn decode_job_rows(bytes: &[u8]) -> bool {
        crate::import::decode_rows(bytes).is_ok()
    }

    /// Parses arbitrary JSON as a deal filter against the default catalogs; returns whether
    /// it parsed.
    pub fn parse_filter(filter: &serde_json::Value) -> bool {
        let team = uuid::Uuid::from_u128(1);
        let catalog = |ty| {
            Ok(std::sync::Arc::new(crate::schema::Catalog::default_for(
                team, ty,
            )))
        };
        crate::filter::parse(filter, crate::model::ObjectType::Deal, &catalog).is_ok()
    }

    /// Decodes arbitrary text as a cursor for `fingerprint`; returns whether it decoded.
    pub fn decode_cursor(text: &str, fingerprint: u64) -> bool {
        crate::cursor::Cursor::decode(text, fingerprint).is_ok()
    }

    /// A well-formed cursor for `request` (of `team` on `ty`) carrying arbitrary contents:
    /// what a forger who knows the fingerprint could hand in. A query must refuse it or
    /// page from it, never panic.
    pub fn forge_cursor(
        team: uuid::Uuid,
        ty: crate::model::ObjectType,
        request: &crate::query::QueryRequest,
        last_ord: u32,
        last_id: u128,
        sort_key: Vec<u8>,
    ) -> String {
        crate::cursor::Cursor {
            fingerprint: crate::query::fingerprint(team, ty, request),
            last_ord,
            last_id,
            sort_key,
        }
        .encode()
    }
}
