//! The public shapes of records, record input, pages and list requests.

use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result};

/// What a create, patch or upsert writes: the reference's `{default: {…}, list}` plus the
/// optional `source` and `is_user_object` system fields.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordInput {
    /// Property values keyed by slug; `null` means absent (create) or remove (patch).
    #[serde(default)]
    pub default: Map<String, Value>,
    /// The reference's opaque `list` member: stored as written, never interpreted.
    #[serde(default)]
    pub list: Option<Value>,
    /// The integration that wrote the record.
    #[serde(default)]
    pub source: Option<Uuid>,
    /// Whether a person made the record (default `true` on create).
    #[serde(default)]
    pub is_user_object: Option<bool>,
    /// The grant of a new deal, action, document or event (library only; over HTTP a grant
    /// is set with its own route). `None` gives the default: the team may write, the
    /// creator is admin. Ignored by patch.
    #[serde(skip)]
    pub grant: Option<crate::grant::Grant>,
}

impl RecordInput {
    /// Input with these property values and nothing else.
    pub fn new(default: Map<String, Value>) -> RecordInput {
        RecordInput {
            default,
            ..RecordInput::default()
        }
    }

    /// Input from a JSON object of property values, e.g. `json!({"name": "Ada"})`;
    /// anything but an object is `invalid_request`.
    pub fn from_properties(properties: Value) -> Result<RecordInput> {
        match properties {
            Value::Object(map) => Ok(RecordInput::new(map)),
            other => Err(Error::InvalidRequest(format!(
                "record properties must be a JSON object, got {}",
                crate::schema::short_json(&other)
            ))),
        }
    }

    /// Parses a request body `{default: {…}, list?, source?, is_user_object?}`; a
    /// malformed body is `invalid_request` saying what is wrong.
    pub fn from_json(body: Value) -> Result<RecordInput> {
        serde_json::from_value(body).map_err(|e| Error::InvalidRequest(format!("record body: {e}")))
    }
}

/// The property values of a record as reads return them: slug → JSON value, in catalog
/// order, each slug once. Indexing with a slug that is absent gives `Value::Null`, like a
/// `serde_json` map.
///
/// A vector of pairs rather than a map: rows are built in catalog order with no repeats, and
/// a page of 1,000 rows spent a fifth of its time hashing keys into maps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Properties(Vec<(Arc<str>, Value)>);

static NULL: Value = Value::Null;

impl Properties {
    /// The value of `slug`, if the record has one.
    pub fn get(&self, slug: &str) -> Option<&Value> {
        self.0.iter().find(|(s, _)| &**s == slug).map(|(_, v)| v)
    }

    /// Whether the record has a value for `slug`.
    pub fn contains_key(&self, slug: &str) -> bool {
        self.get(slug).is_some()
    }

    /// The slugs, in catalog order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(s, _)| &**s)
    }

    /// (slug, value) pairs, in catalog order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(s, v)| (&**s, v))
    }

    /// How many properties the record has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the record has no properties.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The properties as a JSON object.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(slug, value)| (slug.to_string(), value.clone()))
                .collect::<Map<String, Value>>(),
        )
    }

    pub(crate) fn with_capacity(capacity: usize) -> Properties {
        Properties(Vec::with_capacity(capacity))
    }

    /// Appends a property; the caller guarantees the slug is not present yet. Slugs are
    /// shared between the rows of a page.
    pub(crate) fn push(&mut self, slug: Arc<str>, value: Value) {
        self.0.push((slug, value));
    }
}

impl std::ops::Index<&str> for Properties {
    type Output = Value;

    fn index(&self, slug: &str) -> &Value {
        self.get(slug).unwrap_or(&NULL)
    }
}

impl Serialize for Properties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (slug, value) in &self.0 {
            map.serialize_entry(&**slug, value)?;
        }
        map.end()
    }
}

/// A record as reads return it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The record's UUIDv7 id.
    pub id: Uuid,
    /// Property values keyed by slug, with `created_at` and `updated_at` (selected ones
    /// only, on pages that asked for a selection).
    pub properties: Properties,
    /// The reference's opaque `list` member, if one was written.
    pub list: Option<Value>,
    /// The integration that wrote the record.
    pub source: Option<Uuid>,
    /// Whether a person made the record.
    pub is_user_object: bool,
    /// When the record was soft-deleted (RFC 3339), if it is in the trash.
    pub deleted_at: Option<String>,
}

impl Record {
    /// The reference's read shape: `{id, default, list}`.
    pub fn to_json(&self) -> Value {
        let mut out = json!({"id": self.id, "default": self.properties.to_json()});
        if let Some(list) = &self.list {
            out["list"] = list.clone();
        }
        out
    }

    /// The reference's page-row shape: `{id, is_user_object, properties, source}`.
    pub fn to_row_json(&self) -> Value {
        json!({
            "id": self.id,
            "is_user_object": self.is_user_object,
            "properties": self.properties.to_json(),
            "source": self.source,
        })
    }
}

/// One page of a list, the trash or a query.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The rows, in the query's order.
    pub rows: Vec<Record>,
    /// Whether more rows follow (exact: the engine read one row past the page).
    pub has_more: bool,
    /// The cursor of the next page; `None` when `has_more` is false.
    pub next_cursor: Option<String>,
    /// The number of matching records, when the request asked for it.
    pub total: Option<u64>,
}

impl Page {
    /// The reference's page shape: `{data, has_more, next_cursor, total?}`.
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "data": self.rows.iter().map(Record::to_row_json).collect::<Vec<_>>(),
            "has_more": self.has_more,
            "next_cursor": self.next_cursor,
        });
        if let Some(total) = self.total {
            out["total"] = json!(total);
        }
        out
    }
}

/// The largest page a list or query returns.
pub const MAX_LIMIT: u32 = 1000;
/// The page size when a request gives none.
pub const DEFAULT_LIMIT: u32 = 50;

/// A request for one page of records in id order.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ListRequest {
    /// Page size, 1..=1000 (default 50).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Whether to count all matching records.
    #[serde(default)]
    pub include_total: bool,
    /// Which properties each row carries (default all).
    #[serde(default)]
    pub properties: Option<Vec<String>>,
}

impl ListRequest {
    /// A request for the first page of `limit` rows.
    pub fn first(limit: u32) -> ListRequest {
        ListRequest {
            limit: Some(limit),
            ..ListRequest::default()
        }
    }
}

/// The page size a request's `limit` asks for (default 50), or `invalid_request` naming a
/// limit outside 1..=1000. Lists and queries share it.
pub(crate) fn page_size(limit: Option<u32>) -> Result<usize> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit as usize)
    } else {
        Err(Error::InvalidRequest(format!(
            "limit {limit} is outside 1..={MAX_LIMIT}"
        )))
    }
}
