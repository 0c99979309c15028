//! Record operations: create, get, patch, delete, restore, duplicate, find, upsert, count
//! and list (live records and the trash), each written once over a [`View`] (reads) or a
//! [`Tx`] (writes) so the database, its snapshots and its write batches share them.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use roaring::RoaringBitmap;
use serde_json::{json, Map, Value};
use uuid::{NoContext, Timestamp, Uuid};

use crate::access;
use crate::bitmap::Layout;
use crate::codec::{
    decode_record, decode_value, encode_record, is_trashed, record_ord, StoredRecord, StoredValue,
};
use crate::error::{Error, Result};
use crate::grant::{Grant, Level};
use crate::index;
use crate::keys::{self, Scope};
use crate::model::{ObjectType, Principal};
use crate::record::{ListRequest, Page, Properties, Record, RecordInput};
use crate::schema::{Catalog, Kind, Property, SYSTEM_FIELDS};
use crate::storage::{prefix_end, Kv};
use crate::time_fmt;
use crate::txn::{Tx, View};

/// Calls `f` with every stored record (live and trashed) of `scope`.
pub(crate) fn each_record(
    kv: &impl Kv,
    scope: Scope,
    mut f: impl FnMut(u128, StoredRecord) -> Result<bool>,
) -> Result<()> {
    kv.scan_prefix(
        &scope.prefix(keys::RECORD),
        |key, value| match keys::trailing_id(key) {
            Some(id) => f(id, decode_record(value)?),
            None => Ok(true),
        },
    )
}

/// How far ahead (in ordinals) the next wanted record may lie for [`records_at`] to read on
/// through the records in between rather than seek again: reading past a record costs a
/// step and a header read, a seek two tree descents.
const SCAN_GAP: u32 = 8;

/// Calls `f` with the ordinal, id and stored bytes (see `codec`) of each of `ords`
/// (ascending, all of stored records), until `f` returns `Ok(false)`. Ids are handed out in ordinal order (see
/// [`next_id`]), so records in ordinal order are in key order: a run of near ordinals is
/// one short scan of the records, with one ordinal-to-id lookup at its start. An ordinal
/// with no record is an `internal` error.
pub(crate) fn records_at(
    kv: &impl Kv,
    scope: Scope,
    ords: impl Iterator<Item = u32>,
    mut f: impl FnMut(u32, u128, &[u8]) -> Result<bool>,
) -> Result<()> {
    let missing = |ord: u32| Error::Internal(format!("ordinal {ord} points at a missing record"));
    let scope_end = prefix_end(&scope.prefix(keys::RECORD));
    let mut ords = ords.peekable();
    let mut go_on = true;
    while let Some(first) = ords.next().filter(|_| go_on) {
        let start = scope.record(ord_to_id(kv, scope, first)?);
        if ords
            .peek()
            .is_none_or(|next| *next <= first || *next - first > SCAN_GAP)
        {
            // A lone ordinal: one lookup is cheaper than opening a scan.
            let id = keys::trailing_id(&start).ok_or_else(|| missing(first))?;
            go_on = kv
                .get_with(&start, |bytes| f(first, id, bytes))?
                .ok_or_else(|| missing(first))??;
            continue;
        }
        let end = scope_end
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let mut wanted = Some(first);
        kv.scan(
            Bound::Included(start.as_slice()),
            end,
            false,
            |key, value| {
                let Some(want) = wanted else {
                    return Ok(false);
                };
                let ord = record_ord(value)?;
                if ord < want {
                    return Ok(true);
                }
                if ord > want {
                    return Err(missing(want));
                }
                let id = keys::trailing_id(key).ok_or_else(|| missing(want))?;
                go_on = f(ord, id, value)?;
                wanted = ords.next_if(|next| *next > ord && *next - ord <= SCAN_GAP);
                Ok(go_on && wanted.is_some())
            },
        )?;
        if let Some(want) = wanted.filter(|_| go_on) {
            return Err(missing(want));
        }
    }
    Ok(())
}

/// [`records_at`] with each record decoded.
pub(crate) fn decoded_at(
    kv: &impl Kv,
    scope: Scope,
    ords: impl Iterator<Item = u32>,
    mut f: impl FnMut(u32, u128, StoredRecord) -> Result<bool>,
) -> Result<()> {
    records_at(kv, scope, ords, |ord, id, bytes| {
        f(ord, id, decode_record(bytes)?)
    })
}

/// Reads the stored record `id` of `scope`, live or not.
pub(crate) fn load(kv: &impl Kv, scope: Scope, id: u128) -> Result<Option<StoredRecord>> {
    kv.get_with(&scope.record(id), decode_record)?.transpose()
}

fn not_found(ty: ObjectType, id: Uuid) -> Error {
    Error::NotFound(format!("no {ty} {id}"))
}

/// The live record `id` of the principal's team, if its grant lets the principal act at
/// `need`: `not_found` if it is absent, deleted or unreadable to the principal,
/// `permission_denied` if readable but not at `need`.
fn load_live(
    view: &impl View,
    principal: &Principal,
    ty: ObjectType,
    id: Uuid,
    need: Level,
) -> Result<(Scope, StoredRecord)> {
    let scope = view
        .scope(principal.team, ty)?
        .ok_or_else(|| not_found(ty, id))?;
    match load(view.kv(), scope, id.as_u128())? {
        Some(record) if record.is_live() => {
            access::check_record(view, scope, principal, id, record.ord, need)?;
            Ok((scope, record))
        }
        _ => Err(not_found(ty, id)),
    }
}

/// How a reference value is shown.
#[derive(Clone, Copy)]
enum RefStyle<'a> {
    /// As the target's id (single-record reads).
    Id,
    /// As `{id, properties: {name}}`, with names fetched for the page.
    Nested(&'a RefNames),
}

/// Checks a `properties` selection against the catalog (system fields allowed).
pub(crate) fn check_selection(catalog: &Catalog, selection: Option<&[String]>) -> Result<()> {
    for slug in selection.unwrap_or_default() {
        if !matches!(slug.as_str(), "created_at" | "updated_at") {
            catalog.require(slug)?;
        }
    }
    Ok(())
}

/// How many formatted times a render remembers.
const FORMATTED_TIMES: usize = 4;

/// The properties a render shows, each with its slug shared by every row rendered with it
/// (a page's rows then copy no slug: allocating a slug per property and row was a tenth of
/// a substring query's first page).
struct Shown<'a> {
    /// The shown properties, by number.
    props: Vec<(u16, &'a Property, Arc<str>)>,
    /// The `created_at` and `updated_at` slugs, when shown.
    times: Vec<(Arc<str>, bool)>,
    /// The last times formatted, with their text: the records one transaction wrote (a
    /// batch, an import chunk) share their times, so a page formats each once.
    formatted: std::cell::RefCell<Vec<(i64, String)>>,
}

impl<'a> Shown<'a> {
    fn new(catalog: &'a Catalog, selection: Option<&[String]>) -> Shown<'a> {
        let wanted = |slug: &str| selection.is_none_or(|s| s.iter().any(|w| w == slug));
        let props = catalog
            .properties()
            .iter()
            .zip(catalog.shared_slugs())
            .filter(|(prop, _)| wanted(&prop.slug))
            .map(|(prop, slug)| (prop.pid, prop, slug.clone()))
            .collect();
        let times = [("created_at", true), ("updated_at", false)]
            .into_iter()
            .filter(|(slug, _)| wanted(slug))
            .map(|(slug, created)| (Arc::from(slug), created))
            .collect();
        Shown {
            props,
            times,
            formatted: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// `micros` as RFC 3339 text (see [`time_fmt::format_rfc3339`]).
    fn time_text(&self, micros: i64) -> String {
        let mut formatted = self.formatted.borrow_mut();
        if let Some((_, text)) = formatted.iter().find(|(at, _)| *at == micros) {
            return text.clone();
        }
        let text = time_fmt::format_rfc3339(micros);
        if formatted.len() == FORMATTED_TIMES {
            formatted.remove(0);
        }
        formatted.push((micros, text.clone()));
        text
    }

    fn property(&self, pid: u16) -> Option<(&'a Property, &Arc<str>)> {
        self.props
            .iter()
            .find(|(number, ..)| *number == pid)
            .map(|(_, prop, slug)| (*prop, slug))
    }
}

fn render(shown: &Shown<'_>, id: u128, record: StoredRecord, refs: RefStyle<'_>) -> Record {
    let mut properties = Properties::with_capacity(record.props.len() + 2);
    for (pid, value) in record.props {
        let Some((prop, slug)) = shown.property(pid) else {
            continue;
        };
        let value = match (refs, value) {
            (RefStyle::Nested(names), StoredValue::Ref(target)) => json!({
                "id": Uuid::from_u128(target),
                "properties": {"name": names.get(target).cloned().unwrap_or(Value::Null)},
            }),
            (_, value) => prop.json_of_owned(value),
        };
        properties.push(slug.clone(), value);
    }
    for (slug, created) in &shown.times {
        let micros = if *created {
            record.created_at
        } else {
            record.updated_at
        };
        properties.push(slug.clone(), Value::String(shown.time_text(micros)));
    }
    Record {
        id: Uuid::from_u128(id),
        properties,
        list: record
            .list
            .as_deref()
            .and_then(|l| serde_json::from_str(l).ok()),
        source: record.source.map(Uuid::from_u128),
        is_user_object: record.is_user_object,
        deleted_at: record.deleted_at.map(time_fmt::format_rfc3339),
    }
}

/// Renders one record with every property, references as ids.
fn render_full(catalog: &Catalog, id: u128, record: StoredRecord) -> Record {
    render(&Shown::new(catalog, None), id, record, RefStyle::Id)
}

/// Renders one record for a single-record read.
fn render_one(
    view: &impl View,
    team: Uuid,
    ty: ObjectType,
    id: u128,
    record: StoredRecord,
) -> Result<Record> {
    let catalog = view.catalog(team, ty)?;
    Ok(render_full(&catalog, id, record))
}

/// Renders the rows of a page, with the names of the records they reference.
pub(crate) fn render_rows(
    view: &impl View,
    team: Uuid,
    catalog: &Catalog,
    rows: Vec<(u128, StoredRecord)>,
    selection: Option<&[String]>,
) -> Result<Vec<Record>> {
    let names = reference_names(view, team, catalog, &rows, selection)?;
    let shown = Shown::new(catalog, selection);
    Ok(rows
        .into_iter()
        .map(|(id, record)| render(&shown, id, record, RefStyle::Nested(&names)))
        .collect())
}

/// Fetches the `name` of every record the rows reference through a selected property.
fn reference_names(
    view: &impl View,
    team: Uuid,
    catalog: &Catalog,
    rows: &[(u128, StoredRecord)],
    selection: Option<&[String]>,
) -> Result<RefNames> {
    let mut names = Vec::new();
    let refs = catalog
        .properties()
        .iter()
        .filter(|p| p.kind == Kind::Reference && selection.is_none_or(|s| s.contains(&p.slug)));
    for prop in refs {
        let Some(target) = prop.target else { continue };
        let target_catalog = view.catalog(team, target)?;
        let Some(scope) = view.scope(team, target)? else {
            continue;
        };
        let Some(name_prop) = target_catalog.property("name") else {
            continue;
        };
        let mut targets: Vec<u128> = rows
            .iter()
            .filter_map(|(_, row)| match row.value(prop.pid) {
                Some(StoredValue::Ref(id)) => Some(*id),
                _ => None,
            })
            .collect();
        // In key order: neighbouring lookups share pages.
        targets.sort_unstable();
        targets.dedup();
        // Names are cached per state of the target scope (see `Shared::cached_names`).
        let state = (view.counters(scope)?.mutations, target_catalog.version);
        let cached = match view.may_cache() {
            true => view
                .shared()
                .cached_names(scope, state.0, state.1, &targets),
            false => vec![None; targets.len()],
        };
        let mut fetched = Vec::new();
        for (id, cached) in targets.into_iter().zip(cached) {
            let name = match cached {
                Some(name) => name,
                None => {
                    let name = view
                        .kv()
                        .get_with(&scope.record(id), |bytes| match is_trashed(bytes) {
                            Ok(false) => decode_value(bytes, name_prop.pid),
                            Ok(true) => Ok(None),
                            Err(e) => Err(e),
                        })?
                        .transpose()?
                        .flatten()
                        .map_or(Value::Null, |v| name_prop.to_json_value(&v));
                    fetched.push((id, name.clone()));
                    name
                }
            };
            names.push((id, name));
        }
        if view.may_cache() && !fetched.is_empty() {
            view.shared()
                .remember_names(scope, state.0, state.1, fetched);
        }
    }
    names.sort_unstable_by_key(|(id, _)| *id);
    Ok(RefNames(names))
}

/// The names of the records a page references, sorted by id.
struct RefNames(Vec<(u128, Value)>);

impl RefNames {
    fn get(&self, id: u128) -> Option<&Value> {
        let at = self.0.binary_search_by_key(&id, |(i, _)| *i).ok()?;
        Some(&self.0[at].1)
    }
}

/// get: the live record `id`, or `not_found`.
pub(crate) fn get(
    view: &impl View,
    principal: &Principal,
    ty: ObjectType,
    id: Uuid,
) -> Result<Record> {
    let (_, record) = load_live(view, principal, ty, id, Level::Read)?;
    render_one(view, principal.team, ty, id.as_u128(), record)
}

/// count: the number of live records of `ty` the principal can read.
pub(crate) fn count(view: &impl View, principal: &Principal, ty: ObjectType) -> Result<u64> {
    let Some(scope) = view.scope(principal.team, ty)? else {
        return Ok(0);
    };
    match access::readable(view, scope, principal, Level::Read)? {
        Some(allowed) => Ok(view.live(scope)?.intersection_len(&allowed)),
        None => Ok(view.counters(scope)?.live),
    }
}

/// The stored value a find by `slug` = `text` looks for (the text coerced to the kind).
fn coerce(prop: &Property, text: &str) -> Result<StoredValue> {
    let as_json = match prop.kind {
        Kind::Number => serde_json::from_str::<serde_json::Number>(text.trim())
            .map(Value::Number)
            .map_err(|_| {
                Error::InvalidValue(format!(
                    "property {:?} is a number; {text:?} is not one",
                    prop.slug
                ))
            })?,
        Kind::Boolean => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                return Err(Error::InvalidValue(format!(
                    "property {:?} is a boolean; {text:?} is neither true nor false",
                    prop.slug
                )))
            }
        },
        Kind::Multiselect => {
            let option = prop.option_by_text(text).ok_or_else(|| {
                Error::InvalidValue(format!("property {:?} has no option {text:?}", prop.slug))
            })?;
            return Ok(StoredValue::Option(option.num));
        }
        _ => Value::String(text.to_owned()),
    };
    prop.to_stored(&as_json)
}

/// Live records whose `prop` equals `wanted`; stops after `max` matches.
fn matching_records(
    view: &impl View,
    scope: Scope,
    prop: &Property,
    wanted: &StoredValue,
    max: usize,
    allowed: Option<&RoaringBitmap>,
) -> Result<Vec<(u128, StoredRecord)>> {
    let hit = |record: &StoredRecord| {
        record.is_live()
            && allowed.is_none_or(|a| a.contains(record.ord))
            && record
                .value(prop.pid)
                .is_some_and(|v| index::values_equal(prop.kind, v, wanted))
    };
    let kv = view.kv();
    let mut found = Vec::new();
    if prop.in_value_index() {
        for ord in &index::candidates(view, scope, prop, wanted)? {
            let id = ord_to_id(kv, scope, ord)?;
            if let Some(record) = load(kv, scope, id)? {
                if hit(&record) {
                    found.push((id, record));
                    if found.len() >= max {
                        break;
                    }
                }
            }
        }
        return Ok(found);
    }
    each_record(kv, scope, |id, record| {
        if hit(&record) {
            found.push((id, record));
        }
        Ok(found.len() < max)
    })?;
    Ok(found)
}

/// The live records whose `slug` equals `text` (at most 2: enough to tell "several").
fn find_matches(
    view: &impl View,
    principal: &Principal,
    ty: ObjectType,
    slug: &str,
    text: &str,
) -> Result<(Vec<(u128, StoredRecord)>, StoredValue)> {
    let catalog = view.catalog(principal.team, ty)?;
    let prop = catalog.require(slug)?;
    let wanted = coerce(prop, text)?;
    Ok((
        readable_matches(view, principal, ty, prop, &wanted)?,
        wanted,
    ))
}

/// Up to two live records of `ty` that the principal may read whose `prop` equals
/// `wanted`.
fn readable_matches(
    view: &impl View,
    principal: &Principal,
    ty: ObjectType,
    prop: &Property,
    wanted: &StoredValue,
) -> Result<Vec<(u128, StoredRecord)>> {
    match view.scope(principal.team, ty)? {
        Some(scope) => {
            let allowed = access::readable(view, scope, principal, Level::Read)?;
            matching_records(view, scope, prop, wanted, 2, allowed.as_deref())
        }
        None => Ok(Vec::new()),
    }
}

/// The ids of up to two live records of `ty` the principal may read whose `slug` holds
/// the JSON `value` (checked against the property as a write would be).
pub(crate) fn matches_of_value(
    view: &impl View,
    principal: &Principal,
    ty: ObjectType,
    slug: &str,
    value: &Value,
) -> Result<Vec<Uuid>> {
    let catalog = view.catalog(principal.team, ty)?;
    let prop = catalog.require(slug)?;
    let wanted = prop.to_stored(value)?;
    let found = readable_matches(view, principal, ty, prop, &wanted)?;
    Ok(found
        .into_iter()
        .map(|(id, _)| Uuid::from_u128(id))
        .collect())
}

/// find: the one live record whose `slug` equals `text`.
pub(crate) fn find(
    view: &impl View,
    principal: &Principal,
    ty: ObjectType,
    slug: &str,
    text: &str,
) -> Result<Record> {
    let (mut found, _) = find_matches(view, principal, ty, slug, text)?;
    match found.len() {
        0 => Err(Error::NotFound(format!("no {ty} with {slug} = {text:?}"))),
        1 => {
            let (id, record) = found.pop().expect("one match");
            render_one(view, principal.team, ty, id, record)
        }
        _ => Err(Error::MultipleMatches(format!(
            "several {ty} records have {slug} = {text:?}"
        ))),
    }
}

/// list (and the trash, with `trash`): a query with no filter, in id order.
pub(crate) fn list(
    view: &impl View,
    principal: &Principal,
    ty: ObjectType,
    request: &ListRequest,
    trash: bool,
) -> Result<Page> {
    let query = crate::query::QueryRequest {
        filter: None,
        sort: Vec::new(),
        limit: request.limit,
        cursor: request.cursor.clone(),
        include_total: request.include_total,
        properties: request.properties.clone(),
        deleted: trash,
    };
    crate::query::query(view, principal, ty, &query)
}

/// The id of the record with ordinal `ord`.
pub(crate) fn ord_to_id(kv: &impl Kv, scope: Scope, ord: u32) -> Result<u128> {
    ord_id(kv, scope, ord)?.ok_or_else(|| Error::Internal(format!("ordinal {ord} has no id")))
}

/// The record with ordinal `ord`, or `None` if there is none (purged).
pub(crate) fn load_at(kv: &impl Kv, scope: Scope, ord: u32) -> Result<Option<StoredRecord>> {
    match ord_id(kv, scope, ord)? {
        Some(id) => load(kv, scope, id),
        None => Ok(None),
    }
}

/// The id of the record with ordinal `ord`, or `None` if there is none (purged).
fn ord_id(kv: &impl Kv, scope: Scope, ord: u32) -> Result<Option<u128>> {
    Ok(kv
        .get_with(&scope.ord(ord), |v| {
            v.try_into().ok().map(u128::from_be_bytes)
        })?
        .flatten())
}

// ---------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------

/// A fresh UUIDv7 for `now`, greater than every id handed out before in the scope.
fn next_id(last: u128, now_micros: i64) -> u128 {
    let micros = u64::try_from(now_micros).unwrap_or(0);
    let stamp = Timestamp::from_unix(
        NoContext,
        micros / 1_000_000,
        ((micros % 1_000_000) * 1_000) as u32,
    );
    let candidate = Uuid::new_v7(stamp).as_u128();
    candidate.max(last.saturating_add(1))
}

/// Applies written property values to `record`: validates each (slug, kind, option,
/// reference target), `null` removes. Returns nothing on error and leaves `record` partly
/// changed, so callers work on a copy.
fn apply_values(
    view: &impl View,
    team: Uuid,
    catalog: &Catalog,
    record: &mut StoredRecord,
    values: &Map<String, Value>,
) -> Result<TargetSlots> {
    let mut slots = TargetSlots::new();
    for (slug, value) in values {
        if SYSTEM_FIELDS.contains(&slug.as_str()) {
            return Err(Error::ReadOnlyProperty(format!(
                "{slug:?} is a system field"
            )));
        }
        let prop = catalog.require(slug)?;
        if value.is_null() {
            record.set(prop.pid, None);
            continue;
        }
        let stored = prop.to_stored(value)?;
        if let (StoredValue::Ref(target_id), Some(target)) = (&stored, prop.target) {
            slots.push((
                prop.pid,
                check_reference(view, team, prop, target, *target_id)?,
            ));
        }
        // An empty multiselect holds nothing: stored as absent, so `$exists` agrees with
        // the option bitmaps.
        let empty = matches!(&stored, StoredValue::Options(nums) if nums.is_empty());
        record.set(prop.pid, (!empty).then_some(stored));
    }
    Ok(slots)
}

/// The reference column slots (target ordinal + 1) of the references [`apply_values`]
/// checked, by property number: a new record's links use them instead of reading each
/// target's record a second time (that read was 4.7% of building an import chunk).
type TargetSlots = Vec<(u16, u32)>;

/// The reference column slot of live record `id` of type `target`, which property `prop`
/// references; `invalid_value` when there is no such live record.
fn check_reference(
    view: &impl View,
    team: Uuid,
    prop: &Property,
    target: ObjectType,
    id: u128,
) -> Result<u32> {
    let ord = match view.scope(team, target)? {
        Some(scope) => view.live_ord(scope, id)?,
        None => None,
    };
    match ord {
        Some(ord) => Ok(ord + 1),
        None => Err(Error::InvalidValue(format!(
            "property {:?} references {target} {}, which does not exist",
            prop.slug,
            Uuid::from_u128(id)
        ))),
    }
}

/// Refuses `record` (id `id`) if another live record holds one of its unique values.
/// Values it already held as `before` (a live record being patched) are not looked up
/// again: every write keeps unique values unique, so nobody else can hold them.
fn check_unique(
    view: &impl View,
    scope: Scope,
    catalog: &Catalog,
    id: u128,
    record: &StoredRecord,
    before: Option<&StoredRecord>,
) -> Result<()> {
    for (pid, value) in &record.props {
        let Some(prop) = catalog.by_pid(*pid).filter(|p| p.unique) else {
            continue;
        };
        if before.is_some_and(|old| old.value(*pid) == Some(value)) {
            continue;
        }
        let holders = matching_records(view, scope, prop, value, 2, None)?;
        // The message does not name the holder: the caller may not be allowed to read it.
        if holders.iter().any(|(other, _)| *other != id) {
            return Err(Error::UniqueViolation(format!(
                "{} {} is already held by another {}",
                prop.slug,
                prop.to_json_value(value),
                scope.ty
            )));
        }
    }
    Ok(())
}

fn store(tx: &mut Tx<'_, '_>, scope: Scope, id: u128, record: &StoredRecord) -> Result<()> {
    let bytes = encode_record(record)?;
    tx.writer().put(&scope.record(id), &bytes)
}

/// Writes a new record: id, ordinal, record, index entries, live bit, counters.
fn insert_new(
    tx: &mut Tx<'_, '_>,
    scope: Scope,
    catalog: &Catalog,
    mut record: StoredRecord,
    grant: Option<&Grant>,
    slots: &[(u16, u32)],
) -> Result<u128> {
    let mut counters = tx.counters(scope)?;
    let id = next_id(counters.last_id, tx.now);
    check_unique(tx, scope, catalog, id, &record, None)?;
    record.ord = counters.next_ord;
    counters.next_ord = counters.next_ord.checked_add(1).ok_or_else(|| {
        Error::LimitExceeded(format!("{} holds the most records a type can", scope.ty))
    })?;
    counters.last_id = id;
    counters.live += 1;
    let bytes = encode_record(&record)?;
    tx.writer().put_new(scope.record(id), bytes)?;
    tx.writer()
        .put_new(scope.ord(record.ord), id.to_be_bytes().to_vec())?;
    link(tx, scope, catalog, &record, Link::Live(slots))?;
    if let Some(grant) = grant {
        access::write_grant(tx, scope, record.ord, grant)?;
    }
    tx.set_counters(scope, counters);
    Ok(id)
}

/// How [`link`] changes a record's bits.
enum Link<'a> {
    /// Adds them; the slice holds column slots of its references already looked up.
    Live(&'a [(u16, u32)]),
    /// Removes them.
    Gone,
}

/// Adds or removes a record's bits in every bitmap derived from live records (the value
/// bitmaps, the value index, the range buckets and the live bitmap) and its reference
/// column slots.
fn link(
    tx: &mut Tx<'_, '_>,
    scope: Scope,
    catalog: &Catalog,
    record: &StoredRecord,
    how: Link<'_>,
) -> Result<()> {
    let live = matches!(how, Link::Live(_));
    for (name, layout) in index::bitmaps_of(catalog, record).iter_laid() {
        tx.bitmap_set_laid(scope, name, layout, record.ord, live)?;
    }
    if live {
        add_grams(tx, scope, catalog, record, |_| true)?;
    }
    for (pid, value) in &record.props {
        if let StoredValue::Ref(target) = value {
            let slot = match how {
                Link::Live(known) => match known.iter().find(|(p, _)| p == pid) {
                    Some((_, slot)) => *slot,
                    None => column_slot(tx, scope, catalog, *pid, *target)?,
                },
                Link::Gone => 0,
            };
            tx.column_set(scope, *pid, record.ord, slot)?;
        }
    }
    tx.bitmap_set(scope, keys::LIVE, record.ord, live)
}

/// Pending trigram bits are folded into the trigram bitmaps when a transaction ends with at
/// least this many pending records. A pending record costs a substring query a record
/// check; a fold costs a row per (trigram, chunk) of the pending records.
const GRAM_FOLD_AT: u64 = 64;

/// Adds `record` to the trigram bitmaps of its searchable properties that `changed` picks.
/// A record in a chunk only this transaction wrote (a bulk load) gets its bits at once;
/// any other is marked pending and folded in later (a write then changes one row instead
/// of one per trigram, as PostgreSQL's GIN pending list does), unless the transaction has
/// already marked enough records to fold them at its end: then it gets its bits at once
/// too, rather than being read back for the fold. Trigram bitmaps only gain bits: a
/// superset is enough, since every candidate is checked on its record.
fn add_grams(
    tx: &mut Tx<'_, '_>,
    scope: Scope,
    catalog: &Catalog,
    record: &StoredRecord,
    changed: impl Fn(u16) -> bool,
) -> Result<()> {
    let names = index::record_gram_names(catalog, record, changed);
    if names.is_empty() {
        return Ok(());
    }
    if !tx.is_fresh(scope, record.ord)? && tx.grams_pended(scope) < GRAM_FOLD_AT {
        return tx.gram_pending(scope, catalog, record.ord);
    }
    for name in names.iter() {
        tx.bitmap_set(scope, name, record.ord, true)?;
    }
    Ok(())
}

/// Folds the pending trigram bits of every scope this transaction marked, where at least
/// [`GRAM_FOLD_AT`] records are pending: sets their trigram bits from the records as they
/// are now and empties the pending bitmap.
pub(crate) fn fold_grams(tx: &mut Tx<'_, '_>) -> Result<()> {
    for (scope, catalog) in tx.take_gram_scopes() {
        let pending = tx.bitmap(scope, keys::GRAM_PENDING)?;
        if pending.len() < GRAM_FOLD_AT {
            continue;
        }
        for ord in &pending {
            let Some(id) = ord_id(tx.kv(), scope, ord)? else {
                continue; // purged since
            };
            let Some(record) = load(tx.kv(), scope, id)?.filter(StoredRecord::is_live) else {
                continue;
            };
            for name in index::record_gram_names(&catalog, &record, |_| true).iter() {
                tx.bitmap_set(scope, name, ord, true)?;
            }
        }
        tx.bitmap_drop(scope, keys::GRAM_PENDING)?;
    }
    Ok(())
}

/// The reference column slot of a reference from property `pid` to record `target`: its
/// ordinal + 1, or 0 when the target is gone.
fn column_slot(
    tx: &Tx<'_, '_>,
    scope: Scope,
    catalog: &Catalog,
    pid: u16,
    target: u128,
) -> Result<u32> {
    Ok(target_slot(tx.kv(), scope, catalog, pid, target)?.unwrap_or(0))
}

/// The target ordinal + 1 of a reference from property `pid` to record `target`, or `None`
/// when the property or the target record is gone.
pub(crate) fn target_slot(
    kv: &impl Kv,
    scope: Scope,
    catalog: &Catalog,
    pid: u16,
    target: u128,
) -> Result<Option<u32>> {
    let Some(ty) = catalog.by_pid(pid).and_then(|p| p.target) else {
        return Ok(None);
    };
    let target_scope = Scope {
        team: scope.team,
        ty,
    };
    kv.get_with(&target_scope.record(target), record_ord)?
        .transpose()
        .map(|ord| ord.map(|ord| ord + 1))
}

/// The live record `id` of a type with grants, checked for `need`.
fn granted(
    view: &impl View,
    principal: &Principal,
    ty: ObjectType,
    id: Uuid,
    need: Level,
) -> Result<(Scope, StoredRecord)> {
    if !ty.has_grants() {
        return Err(Error::InvalidRequest(format!(
            "{ty} records carry no grant (only deal, action, document and event do)"
        )));
    }
    load_live(view, principal, ty, id, need)
}

/// grant get: the grant of live record `id`, which the principal must be able to read.
pub(crate) fn grant_get(
    view: &impl View,
    principal: &Principal,
    ty: ObjectType,
    id: Uuid,
) -> Result<Grant> {
    let (scope, record) = granted(view, principal, ty, id, Level::Read)?;
    Ok(access::load_grant(view.kv(), scope, record.ord)?.unwrap_or_default())
}

/// grant update: replaces the grant of live record `id` (the principal needs `a`) and
/// returns it. A grant that gives nobody `a` is `invalid_value`.
pub(crate) fn grant_update(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    id: Uuid,
    grant: &Grant,
) -> Result<Grant> {
    access::check_type_writable(principal, ty)?;
    let (scope, record) = granted(tx, principal, ty, id, Level::Admin)?;
    let grant = access::new_grant(principal, ty, Some(grant))?.unwrap_or_default();
    access::write_grant(tx, scope, record.ord, &grant)?;
    tx.touch(scope)?;
    Ok(grant)
}

/// create: validates `input`, assigns an id and returns the new record.
pub(crate) fn create(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    input: &RecordInput,
) -> Result<Record> {
    let (scope, catalog, record, slots) = validated_new(tx, principal, ty, input)?;
    let grant = access::new_grant(principal, ty, input.grant.as_ref())?;
    let id = insert_new(tx, scope, &catalog, record.clone(), grant.as_ref(), &slots)?;
    Ok(render_full(&catalog, id, record))
}

/// create without building the returned record: for bulk loads that need only the id.
pub(crate) fn create_id(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    input: &RecordInput,
) -> Result<Uuid> {
    let (scope, catalog, record, slots) = validated_new(tx, principal, ty, input)?;
    let grant = access::new_grant(principal, ty, input.grant.as_ref())?;
    insert_new(tx, scope, &catalog, record, grant.as_ref(), &slots).map(Uuid::from_u128)
}

/// The stored form of a new record written with `input`, checked against the catalog, and
/// the column slots of its references.
fn validated_new(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    input: &RecordInput,
) -> Result<(Scope, Arc<Catalog>, StoredRecord, TargetSlots)> {
    access::check_type_writable(principal, ty)?;
    let scope = tx.scope_for_write(principal.team, ty)?;
    let catalog = tx.catalog(principal.team, ty)?;
    let mut record = StoredRecord {
        ord: 0,
        created_at: tx.now,
        updated_at: tx.now,
        deleted_at: None,
        source: input.source.map(|s| s.as_u128()),
        is_user_object: input.is_user_object.unwrap_or(true),
        list: input.list.as_ref().map(Value::to_string),
        props: Vec::with_capacity(input.default.len()),
    };
    let slots = apply_values(tx, principal.team, &catalog, &mut record, &input.default)?;
    Ok((scope, catalog, record, slots))
}

/// Moves a record's bits from the value, index and bucket bitmaps of `old` to those of
/// `new`.
fn reindex(
    tx: &mut Tx<'_, '_>,
    scope: Scope,
    catalog: &Catalog,
    old: &StoredRecord,
    new: &StoredRecord,
) -> Result<()> {
    let (old_names, new_names) = (
        index::bitmaps_of(catalog, old),
        index::bitmaps_of(catalog, new),
    );
    let before: BTreeSet<(&[u8], Layout)> = old_names.iter_laid().collect();
    let after: BTreeSet<(&[u8], Layout)> = new_names.iter_laid().collect();
    for (gone, layout) in before.difference(&after) {
        tx.bitmap_set_laid(scope, gone, *layout, new.ord, false)?;
    }
    for (added, layout) in after.difference(&before) {
        tx.bitmap_set_laid(scope, added, *layout, new.ord, true)?;
    }
    add_grams(tx, scope, catalog, new, |pid| {
        old.value(pid) != new.value(pid)
    })?;
    let references = catalog
        .properties()
        .iter()
        .filter(|p| p.kind == Kind::Reference);
    for prop in references {
        let now = new.value(prop.pid);
        if old.value(prop.pid) != now {
            let slot = match now {
                Some(StoredValue::Ref(target)) => {
                    column_slot(tx, scope, catalog, prop.pid, *target)?
                }
                _ => 0,
            };
            tx.column_set(scope, prop.pid, new.ord, slot)?;
        }
    }
    Ok(())
}

/// patch: merges `input` into the live record `id` (null removes) and returns it.
pub(crate) fn patch(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    id: Uuid,
    input: &RecordInput,
) -> Result<Record> {
    access::check_type_writable(principal, ty)?;
    let (scope, old) = load_live(tx, principal, ty, id, Level::Write)?;
    let catalog = tx.catalog(principal.team, ty)?;
    let mut record = old.clone();
    apply_values(tx, principal.team, &catalog, &mut record, &input.default)?;
    if let Some(list) = &input.list {
        record.list = Some(list.to_string());
    }
    if let Some(source) = input.source {
        record.source = Some(source.as_u128());
    }
    if let Some(flag) = input.is_user_object {
        record.is_user_object = flag;
    }
    record.updated_at = tx.now;
    let id = id.as_u128();
    check_unique(tx, scope, &catalog, id, &record, Some(&old))?;
    reindex(tx, scope, &catalog, &old, &record)?;
    tx.touch(scope)?;
    store(tx, scope, id, &record)?;
    Ok(render_full(&catalog, id, record))
}

/// delete: moves the live record `id` to the trash.
pub(crate) fn delete(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    id: Uuid,
) -> Result<()> {
    access::check_type_writable(principal, ty)?;
    let (scope, mut record) = load_live(tx, principal, ty, id, Level::Admin)?;
    let catalog = tx.catalog(principal.team, ty)?;
    let id = id.as_u128();
    link(tx, scope, &catalog, &record, Link::Gone)?;
    tx.bitmap_set(scope, keys::TRASH, record.ord, true)?;
    let mut counters = tx.counters(scope)?;
    counters.live -= 1;
    counters.trash += 1;
    tx.set_counters(scope, counters);
    record.deleted_at = Some(tx.now);
    store(tx, scope, id, &record)
}

/// restore: brings record `id` back from the trash (a live record is returned as it is).
pub(crate) fn restore(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    id: Uuid,
) -> Result<Record> {
    access::check_type_writable(principal, ty)?;
    let scope = tx
        .scope(principal.team, ty)?
        .ok_or_else(|| not_found(ty, id))?;
    let uid = id.as_u128();
    let mut record = load(tx.kv(), scope, uid)?.ok_or_else(|| not_found(ty, id))?;
    access::check_record(tx, scope, principal, id, record.ord, Level::Admin)?;
    let catalog = tx.catalog(principal.team, ty)?;
    if record.is_live() {
        return Ok(render_full(&catalog, uid, record));
    }
    check_unique(tx, scope, &catalog, uid, &record, None)?;
    link(tx, scope, &catalog, &record, Link::Live(&[]))?;
    tx.bitmap_set(scope, keys::TRASH, record.ord, false)?;
    let mut counters = tx.counters(scope)?;
    counters.live += 1;
    counters.trash -= 1;
    tx.set_counters(scope, counters);
    record.deleted_at = None;
    record.updated_at = tx.now;
    store(tx, scope, uid, &record)?;
    Ok(render_full(&catalog, uid, record))
}

/// duplicate: a new record with the properties of `id` except the unique ones.
pub(crate) fn duplicate(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    id: Uuid,
) -> Result<Record> {
    access::check_type_writable(principal, ty)?;
    let (scope, original) = load_live(tx, principal, ty, id, Level::Read)?;
    let catalog = tx.catalog(principal.team, ty)?;
    let grant = match access::load_grant(tx.kv(), scope, original.ord)? {
        Some(mut grant) if ty.has_grants() => {
            grant.users.insert(principal.user, Level::Admin);
            Some(grant)
        }
        _ => access::new_grant(principal, ty, None)?,
    };
    let mut copy = original.clone();
    copy.props
        .retain(|(pid, _)| catalog.by_pid(*pid).is_some_and(|p| !p.unique));
    copy.created_at = tx.now;
    copy.updated_at = tx.now;
    let new_id = insert_new(tx, scope, &catalog, copy.clone(), grant.as_ref(), &[])?;
    Ok(render_full(&catalog, new_id, copy))
}

/// upsert: patches the one live record whose `slug` equals `text`, or creates one with that
/// value (filled in when the body does not set `slug`). Returns the record and whether it
/// was created.
pub(crate) fn upsert(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    slug: &str,
    text: &str,
    input: &RecordInput,
) -> Result<(Record, bool)> {
    access::check_type_writable(principal, ty)?;
    let (found, wanted) = find_matches(tx, principal, ty, slug, text)?;
    match found.as_slice() {
        [] => {
            let mut input = input.clone();
            if !input.default.contains_key(slug) {
                let catalog = tx.catalog(principal.team, ty)?;
                let prop = catalog.require(slug)?;
                let value = match (&wanted, prop.kind) {
                    (StoredValue::Option(_), Kind::Multiselect) => {
                        Value::Array(vec![prop.to_json_value(&wanted)])
                    }
                    _ => prop.to_json_value(&wanted),
                };
                input.default.insert(slug.to_owned(), value);
            }
            Ok((create(tx, principal, ty, &input)?, true))
        }
        [(id, _)] => Ok((
            patch(tx, principal, ty, Uuid::from_u128(*id), input)?,
            false,
        )),
        _ => Err(Error::MultipleMatches(format!(
            "several {ty} records have {slug} = {text:?}"
        ))),
    }
}
