//! The wire shapes of the HTTP API: every request body the server parses and every
//! response body it writes is one of these types. The OpenAPI document is derived from
//! them (utoipa), and the handlers serialize them, so the document and the server cannot
//! drift apart.

use std::collections::BTreeMap;

use prismdb::{ImportJob, ItemStatus, JobStatus, Page, Record};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// `{code, message}` of a failure.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// The error code of SPEC §5, e.g. `unique_violation`.
    pub code: String,
    /// What was wrong, naming the slug, id, value or position at fault.
    pub message: String,
}

/// Every failure's body: `{error: {code, message}}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    /// The failure.
    pub error: ErrorDetail,
}

/// A create, patch or upsert body: `{default: {slug: value}, list?, source?,
/// is_user_object?}`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    /// Property values keyed by slug; on patch, `null` removes a property.
    #[serde(default)]
    #[schema(value_type = Object, additional_properties)]
    pub default: Map<String, Value>,
    /// The reference's opaque `list` member: any JSON value, stored as written.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub list: Option<Value>,
    /// The integration that wrote the record.
    #[serde(default)]
    pub source: Option<Uuid>,
    /// Whether a person made the record (default true).
    #[serde(default)]
    pub is_user_object: Option<bool>,
}

impl RecordBody {
    /// The library's input for this body.
    pub fn into_input(self) -> prismdb::RecordInput {
        prismdb::RecordInput {
            default: self.default,
            list: self.list,
            source: self.source,
            is_user_object: self.is_user_object,
            grant: None,
        }
    }
}

/// A record as get, create, patch, upsert, duplicate and restore return it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordResponse {
    /// The record's id (UUIDv7).
    pub id: Uuid,
    /// Property values keyed by slug, with `created_at` and `updated_at`.
    #[schema(value_type = Object, additional_properties)]
    pub default: Map<String, Value>,
    /// The opaque `list` member (any JSON value), when one was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub list: Option<Value>,
}

impl From<Record> for RecordResponse {
    fn from(record: Record) -> RecordResponse {
        RecordResponse {
            id: record.id,
            default: properties_map(&record),
            list: record.list,
        }
    }
}

fn properties_map(record: &Record) -> Map<String, Value> {
    record
        .properties
        .iter()
        .map(|(slug, value)| (slug.to_owned(), value.clone()))
        .collect()
}

/// One row of a page.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PageRow {
    /// The record's id.
    pub id: Uuid,
    /// Whether a person made the record.
    pub is_user_object: bool,
    /// The selected properties; a reference is `{id, properties: {name}}` of its target.
    #[schema(value_type = Object, additional_properties)]
    pub properties: Map<String, Value>,
    /// The integration that wrote the record.
    pub source: Option<Uuid>,
}

/// A page of list, query or the trash.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PageResponse {
    /// The rows, in the query's order.
    pub data: Vec<PageRow>,
    /// Whether more rows follow (exact).
    pub has_more: bool,
    /// The next page's cursor; null on the last page.
    pub next_cursor: Option<String>,
    /// The number of matching records, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

impl From<Page> for PageResponse {
    fn from(page: Page) -> PageResponse {
        let data = page
            .rows
            .iter()
            .map(|record| PageRow {
                id: record.id,
                is_user_object: record.is_user_object,
                properties: properties_map(record),
                source: record.source,
            })
            .collect();
        PageResponse {
            data,
            has_more: page.has_more,
            next_cursor: page.next_cursor,
            total: page.total,
        }
    }
}

/// The query string of list: `?limit&cursor&include_total&properties=a,b`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1..=1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Whether to count every record.
    pub include_total: Option<bool>,
    /// Comma-separated slugs each row carries (default all).
    pub properties: Option<String>,
}

impl ListParams {
    /// The library's request for these parameters.
    pub fn into_request(self) -> prismdb::ListRequest {
        prismdb::ListRequest {
            limit: self.limit,
            cursor: self.cursor,
            include_total: self.include_total.unwrap_or(false),
            properties: self.properties.map(|list| split_slugs(&list)),
        }
    }
}

fn split_slugs(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|slug| !slug.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `?force=true` of property removal.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForceParams {
    /// Remove the property even though records hold values for it.
    pub force: Option<bool>,
}

/// A sort direction.
#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortDirection {
    /// Smallest first.
    #[default]
    Asc,
    /// Largest first.
    Desc,
}

/// One sort key of a query.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SortBody {
    /// A sortable slug, `created_at`, `updated_at` or `id`.
    pub property: String,
    /// `asc` (default) or `desc`.
    #[serde(default)]
    pub direction: SortDirection,
}

/// The body of `POST /query` (SPEC §4).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// The filter: `{slug: value}`, `{slug: {$op: value}}`, `$and`, `$or`, `$not`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// Up to 3 sort keys; `id` ascending breaks ties.
    #[serde(default)]
    #[schema(max_items = 3)]
    pub sort: Vec<SortBody>,
    /// Page size, 1..=1000 (default 50).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Whether to count every matching record.
    #[serde(default)]
    pub include_total: bool,
    /// The properties each row carries (default all).
    #[serde(default)]
    pub properties: Option<Vec<String>>,
    /// Page through the trash instead of the live records.
    #[serde(default)]
    pub deleted: bool,
}

impl QueryBody {
    /// The library's request for this body.
    pub fn into_request(self) -> prismdb::QueryRequest {
        let sort = self
            .sort
            .into_iter()
            .map(|key| prismdb::SortKey {
                property: key.property,
                direction: match key.direction {
                    SortDirection::Asc => prismdb::Direction::Asc,
                    SortDirection::Desc => prismdb::Direction::Desc,
                },
            })
            .collect();
        prismdb::QueryRequest {
            filter: self.filter,
            sort,
            limit: self.limit,
            cursor: self.cursor,
            include_total: self.include_total,
            properties: self.properties,
            deleted: self.deleted,
        }
    }
}

/// `{total}` of count.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CountResponse {
    /// Live records of the type the caller can read.
    pub total: u64,
}

/// How an import runs.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportModeBody {
    /// Applied before the call returns (at most 1,000 rows).
    Sync,
    /// Stored as a job and applied by the server's worker.
    Async,
}

/// The body of `POST /import`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// Each row's property values, as a create takes them.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
    /// A unique or indexed slug: a row matching one live record updates it.
    #[serde(default)]
    pub dedupe_key: Option<String>,
    /// `sync` (up to 1,000 rows) or `async`; by default sync up to 1,000 rows.
    #[serde(default)]
    pub mode: Option<ImportModeBody>,
}

impl ImportBody {
    /// The library's request for this body.
    pub fn into_request(self) -> prismdb::ImportRequest {
        prismdb::ImportRequest {
            rows: self.rows,
            dedupe_key: self.dedupe_key,
            mode: self.mode.map(|mode| match mode {
                ImportModeBody::Sync => prismdb::ImportMode::Sync,
                ImportModeBody::Async => prismdb::ImportMode::Async,
            }),
        }
    }
}

/// Where an import job is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatusBody {
    /// Rows remain to apply.
    Processing,
    /// Every row was applied or refused.
    Complete,
    /// The job stopped; `error` says why.
    Failed,
}

/// The outcome of one import row.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RowResultBody {
    /// The record the row made or updated.
    pub id: Option<Uuid>,
    /// Whether the row made a new record.
    pub created: bool,
    /// Whether the row matched a live record through the dedupe key.
    pub existing: bool,
    /// Why the row was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// An import job's snapshot, as the import call and `GET /imports/{jobId}` return it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportJobResponse {
    /// The job's id.
    pub job_id: Uuid,
    /// Where the job is.
    pub status: JobStatusBody,
    /// Rows in the import.
    pub total: u64,
    /// Rows attempted so far.
    pub processed: u64,
    /// Rows applied.
    pub succeeded: u64,
    /// Rows refused.
    pub failed: u64,
    /// Per-row outcomes in row order: complete once the job is.
    pub results: Vec<RowResultBody>,
    /// When the job was made (RFC 3339).
    pub created_at: String,
    /// When it last moved.
    pub updated_at: String,
    /// When it stops being readable: 24 hours after it finished.
    pub expires_at: Option<String>,
    /// Why a failed job stopped.
    pub error: Option<ErrorDetail>,
}

fn error_detail((code, message): (String, String)) -> ErrorDetail {
    ErrorDetail { code, message }
}

impl From<ImportJob> for ImportJobResponse {
    fn from(job: ImportJob) -> ImportJobResponse {
        let status = match job.status {
            JobStatus::Processing => JobStatusBody::Processing,
            JobStatus::Complete => JobStatusBody::Complete,
            JobStatus::Failed => JobStatusBody::Failed,
        };
        let results = job
            .results
            .into_iter()
            .map(|row| RowResultBody {
                id: row.id,
                created: row.created,
                existing: row.existing,
                error: row.error.map(error_detail),
            })
            .collect();
        ImportJobResponse {
            job_id: job.job_id,
            status,
            total: job.total,
            processed: job.processed,
            succeeded: job.succeeded,
            failed: job.failed,
            results,
            created_at: job.created_at,
            updated_at: job.updated_at,
            expires_at: job.expires_at,
            error: job.error.map(|message| ErrorDetail {
                code: "internal".into(),
                message,
            }),
        }
    }
}

/// One item of a bulk update.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkUpdateItemBody {
    /// The record's id. Any JSON value is taken: anything but a UUID string fails only
    /// this item, with `invalid_id` and a null `id` in its result.
    #[schema(value_type = serde_json::Value)]
    pub id: Value,
    /// The values to merge in, as a patch takes them.
    #[serde(default)]
    #[schema(value_type = Object, additional_properties)]
    pub default: Map<String, Value>,
}

/// The body of `POST /batch/update`: at most 1,000 items.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkUpdateBody {
    /// The items, applied or refused each on its own.
    pub items: Vec<BulkUpdateItemBody>,
}

impl BulkUpdateBody {
    /// The library's items for this body.
    pub fn into_items(self) -> Vec<prismdb::BulkUpdateItem> {
        self.items
            .into_iter()
            .map(|item| prismdb::BulkUpdateItem {
                id: id_text(&item.id),
                input: prismdb::RecordInput::new(item.default),
            })
            .collect()
    }
}

/// An id as the caller wrote it: a string as is, anything else as its JSON text (which
/// never parses as a UUID, so the item fails with `invalid_id`).
fn id_text(id: &Value) -> String {
    match id {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The body of `POST /batch/delete`: at most 1,000 ids.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkDeleteBody {
    /// The records to delete. Any JSON values are taken: anything but a UUID string fails
    /// only its item, with `invalid_id` and a null `id` in its result.
    #[schema(value_type = Vec<serde_json::Value>)]
    pub ids: Vec<Value>,
}

impl BulkDeleteBody {
    /// The ids as text.
    pub fn into_ids(self) -> Vec<String> {
        self.ids.iter().map(id_text).collect()
    }
}

/// Whether one bulk item was applied.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatusBody {
    /// Applied.
    Ok,
    /// Refused; `error` says why.
    Error,
}

/// The outcome of one bulk item.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemResultBody {
    /// The item's id, or null where it could not be parsed.
    pub id: Option<Uuid>,
    /// Whether it was applied.
    pub status: ItemStatusBody,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// The record after an applied update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordResponse>,
}

/// Counts of a bulk call's items.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkSummaryBody {
    /// Items in the call.
    pub total: usize,
    /// Items applied.
    pub succeeded: usize,
    /// Items refused.
    pub failed: usize,
}

/// A bulk call's answer: 200 even when items fail.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkResponseBody {
    /// One result per item, in input order.
    pub results: Vec<ItemResultBody>,
    /// Counts of the outcomes.
    pub summary: BulkSummaryBody,
}

impl From<prismdb::BulkResponse> for BulkResponseBody {
    fn from(response: prismdb::BulkResponse) -> BulkResponseBody {
        let results = response
            .results
            .into_iter()
            .map(|item| ItemResultBody {
                id: item.id,
                status: match item.status {
                    ItemStatus::Ok => ItemStatusBody::Ok,
                    ItemStatus::Error => ItemStatusBody::Error,
                },
                error: item.error.map(error_detail),
                record: item.record.map(RecordResponse::from),
            })
            .collect();
        BulkResponseBody {
            results,
            summary: BulkSummaryBody {
                total: response.summary.total,
                succeeded: response.summary.succeeded,
                failed: response.summary.failed,
            },
        }
    }
}

/// An access level: `r` read, `w` write (and read), `a` admin (also delete, restore and
/// change the grant).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
pub enum LevelBody {
    /// Read.
    #[serde(rename = "r")]
    Read,
    /// Write and read.
    #[serde(rename = "w")]
    Write,
    /// Admin.
    #[serde(rename = "a")]
    Admin,
}

/// A record's grant (SPEC §6): `{team_id: {team: level}, team_group_id: [{group: level}],
/// user_id: [{user: level}]}`. PUT replaces the whole grant.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// The team's level, keyed by the team's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<BTreeMap<String, LevelBody>>,
    /// Groups' levels, one `{group: level}` per entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_group_id: Option<Vec<BTreeMap<String, LevelBody>>>,
    /// Users' levels, one `{user: level}` per entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Vec<BTreeMap<String, LevelBody>>>,
}

impl GrantBody {
    /// The grant as JSON, for the library's parser (which checks ids, the team and that
    /// someone keeps `a`).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The body of a grant the library wrote as JSON.
    pub fn from_value(value: Value) -> Result<GrantBody, serde_json::Error> {
        serde_json::from_value(value)
    }
}

/// An option of a new select or multiselect property.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionBody {
    /// The option's slug.
    pub slug: String,
    /// Its label (default: the slug).
    #[serde(default)]
    pub label: Option<String>,
}

impl OptionBody {
    fn into_spec(self) -> prismdb::OptionSpec {
        prismdb::OptionSpec {
            slug: self.slug,
            label: self.label,
        }
    }
}

/// The kinds of property (SPEC §2): a string enum listed from the library's
/// [`prismdb::Kind::ALL`], so the document follows the library.
pub struct KindName;

impl utoipa::PartialSchema for KindName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names = prismdb::Kind::ALL.map(prismdb::Kind::as_str);
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(names))
            .description(Some("The kind of a property."))
            .into()
    }
}

impl ToSchema for KindName {}

/// The body of `POST /properties`: a new property.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PropertyBody {
    /// `[a-z][a-z0-9_]{0,63}`.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub slug: String,
    /// text, email, url, phone, number, boolean, datetime, select, multiselect or
    /// reference.
    #[schema(value_type = KindName)]
    pub kind: String,
    /// Values must be unique among live records.
    #[serde(default)]
    pub unique: Option<bool>,
    /// Keep the property in the value index (default by kind).
    #[serde(default)]
    pub indexed: Option<bool>,
    /// Keep trigram bitmaps for substring filters (text only).
    #[serde(default)]
    pub search: Option<bool>,
    /// The options of a select or multiselect.
    #[serde(default)]
    pub options: Option<Vec<OptionBody>>,
    /// The target type of a reference.
    #[serde(default)]
    pub target: Option<String>,
}

impl PropertyBody {
    /// The library's spec for this body.
    pub fn into_spec(self) -> prismdb::PropertySpec {
        prismdb::PropertySpec {
            slug: self.slug,
            kind: self.kind,
            unique: self.unique,
            indexed: self.indexed,
            search: self.search,
            options: self
                .options
                .map(|options| options.into_iter().map(OptionBody::into_spec).collect()),
            target: self.target,
        }
    }
}

/// The body of `PATCH /properties/{slug}`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PropertyPatchBody {
    /// Make the property unique (refused if live records share a value) or not.
    #[serde(default)]
    pub unique: Option<bool>,
    /// Keep it in the value index or not.
    #[serde(default)]
    pub indexed: Option<bool>,
    /// Keep trigram bitmaps for it or not (text only).
    #[serde(default)]
    pub search: Option<bool>,
    /// Options to append.
    #[serde(default)]
    pub add_options: Vec<OptionBody>,
    /// Options to rename, old slug → new slug.
    #[serde(default)]
    pub rename_options: BTreeMap<String, String>,
    /// Options to remove (refused while a record holds them).
    #[serde(default)]
    pub remove_options: Vec<String>,
}

impl PropertyPatchBody {
    /// The library's change for this body.
    pub fn into_change(self) -> prismdb::PropertyChange {
        prismdb::PropertyChange {
            unique: self.unique,
            indexed: self.indexed,
            search: self.search,
            add_options: self
                .add_options
                .into_iter()
                .map(OptionBody::into_spec)
                .collect(),
            rename_options: self.rename_options,
            remove_options: self.remove_options,
        }
    }
}

/// An option of a select or multiselect property.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OptionResponse {
    /// The option's id, made by the engine.
    pub id: Uuid,
    /// Its slug (what reads return).
    pub slug: String,
    /// Its label.
    pub label: String,
}

/// A property of a type's catalog.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PropertyResponse {
    /// The slug.
    pub slug: String,
    /// The kind.
    pub kind: String,
    /// Whether values are unique among live records.
    pub unique: bool,
    /// Whether the value index holds it.
    pub indexed: bool,
    /// Whether it has trigram bitmaps.
    pub search: bool,
    /// The options of a select or multiselect, in catalog order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<OptionResponse>>,
    /// The target type of a reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl PropertyResponse {
    /// The wire shape of a library property (read through its JSON form, which this
    /// type mirrors; a mismatch is a bug the server tests catch).
    pub fn from_property(property: &prismdb::Property) -> Result<PropertyResponse, String> {
        serde_json::from_value(property.to_json()).map_err(|e| format!("property shape: {e}"))
    }
}
