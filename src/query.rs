//! The query module: SPEC §4 queries. The filter is parsed (`filter`), evaluated to a
//! bitmap of ordinals (`eval`), and the page is read in id order, by a walk of the first
//! sort key's bitmaps (`walk`) or by sorting every match's key; it is paged by a keyset
//! cursor and rendered like a list page. Lists and the trash are queries with no filter.

use std::collections::HashMap;

use roaring::RoaringBitmap;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::access;
use crate::bitmap;
use crate::codec::{StoredRecord, StoredValue};
use crate::cursor::{self, Cursor};
use crate::error::{Error, Result};
use crate::eval::{self, cost, Evaluator};
use crate::filter::{self, Field, Filter, Op};
use crate::grant::Level;
use crate::index;
use crate::keys::{self, Scope};
use crate::model::{ObjectType, Principal};
use crate::record::Page;
use crate::records::{self, decoded_at};
use crate::schema::{Catalog, Kind};
use crate::storage::{prefix_end, Kv};
use crate::txn::View;
use crate::walk::{self, Walk};

/// A query body (SPEC §4).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// The filter (default: every record).
    #[serde(default)]
    pub filter: Option<Value>,
    /// Up to 3 sort keys; `id` ascending always breaks ties.
    #[serde(default)]
    pub sort: Vec<SortKey>,
    /// Page size, 1..=1000 (default 50).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Whether to count every matching record.
    #[serde(default)]
    pub include_total: bool,
    /// Which properties each row carries (default all).
    #[serde(default)]
    pub properties: Option<Vec<String>>,
    /// Query the trash instead of the live records.
    #[serde(default)]
    pub deleted: bool,
}

/// One sort key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SortKey {
    /// A sortable property slug, `created_at`, `updated_at` or `id`.
    pub property: String,
    /// `asc` (default) or `desc`.
    #[serde(default)]
    pub direction: Direction,
}

/// A sort direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Smallest first.
    #[default]
    Asc,
    /// Largest first.
    Desc,
}

/// The most sort keys a query takes.
pub const MAX_SORT_KEYS: usize = 3;

/// What a sort key reads from a record.
#[derive(Clone, Copy)]
enum SortField {
    Prop(u16),
    CreatedAt,
    UpdatedAt,
}

struct Sorter {
    keys: Vec<(SortField, Kind, Direction)>,
}

/// Runs a query for `principal` on `ty`.
pub(crate) fn query(
    view: &impl View,
    principal: &Principal,
    ty: ObjectType,
    request: &QueryRequest,
) -> Result<Page> {
    let limit = crate::record::page_size(request.limit)?;
    let team = principal.team;
    let catalog = view.catalog(team, ty)?;
    let catalogs = |t: ObjectType| view.catalog(team, t);
    let filter = match &request.filter {
        Some(value) => filter::parse(value, ty, &catalogs)?,
        None => Filter::All,
    };
    let sorter = sorter(&catalog, &request.sort)?;
    let fingerprint = fingerprint(team, ty, request);
    let after = match &request.cursor {
        Some(text) => Some(Cursor::decode(text, fingerprint)?),
        None => None,
    };
    let selection = request.properties.as_deref();
    records::check_selection(&catalog, selection)?;
    let Some(scope) = view.scope(team, ty)? else {
        return Ok(Page {
            rows: Vec::new(),
            has_more: false,
            next_cursor: None,
            total: request.include_total.then_some(0),
        });
    };
    let eval = Evaluator {
        view,
        team,
        deleted: request.deleted,
        reader: principal,
    };
    let wanted = Wanted {
        after: after.as_ref(),
        limit,
        include_total: request.include_total,
    };
    let ((rows, has_more, last_key), total) =
        fetch(&eval, scope, &catalog, filter, &sorter, &wanted)?;
    let last = rows.last().map(|(id, record)| (*id, record.ord));
    let next_cursor = cursor::next_cursor(fingerprint, has_more, last, last_key);
    let rows = records::render_rows(view, team, &catalog, rows, selection)?;
    Ok(Page {
        rows,
        has_more,
        next_cursor,
        total,
    })
}

/// The hash a cursor carries of everything that defines the query.
pub(crate) fn fingerprint(team: Uuid, ty: ObjectType, request: &QueryRequest) -> u64 {
    cursor::fingerprint(&[
        team.as_bytes(),
        &[ty.code(), u8::from(request.deleted)],
        request
            .filter
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default()
            .as_bytes(),
        format!("{:?}", request.sort).as_bytes(),
    ])
}

/// What a page asks for besides the filter and sort.
struct Wanted<'c> {
    after: Option<&'c Cursor>,
    limit: usize,
    include_total: bool,
}

/// The rows of one page (plus `has_more` and the last row's sort key) and the total.
///
/// In id order without a total, conditions that only a record check answers are checked
/// while paging, so a page stops after `limit + 1` hits. When nothing else is left (a list,
/// or a filter of such conditions only), the page is one scan of the records in id order.
fn fetch<V: View>(
    eval: &Evaluator<'_, V>,
    scope: Scope,
    catalog: &Catalog,
    filter: Filter,
    sorter: &Sorter,
    wanted: &Wanted<'_>,
) -> Result<(Rows, Option<u64>)> {
    let view = eval.view;
    let lazy = sorter.keys.is_empty() && !wanted.include_total;
    let (filter, residual) = if lazy {
        split_residual(filter)
    } else {
        (filter, Vec::new())
    };
    let check = |record: &StoredRecord, targets: &mut HashMap<u128, bool>| -> Result<bool> {
        for (field, op) in &residual {
            if !eval.record_matches(field, op, record, targets)? {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let narrowable = residual
        .iter()
        .any(|(field, op)| eval.narrowable(field, op, catalog));
    let readable = access::readable(view, scope, eval.reader, Level::Read)?;
    let in_key_order = sorter.keys.is_empty() && matches!(filter, Filter::All);
    if in_key_order && !eval.deleted && !narrowable && readable.is_none() {
        let total = match wanted.include_total {
            true => Some(view.counters(scope)?.live),
            false => None,
        };
        let rows = page_by_scan(view.kv(), scope, wanted.after, wanted.limit, check)?;
        return Ok((rows, total));
    }
    let mut domain = match eval.deleted {
        true => std::sync::Arc::new(view.bitmap(scope, keys::TRASH)?),
        false => view.live(scope)?,
    };
    // The caller's grant scope is one AND: at the end of a plan that bitmaps answer alone
    // (intersections with the live records' bitmaps cost less than with a sparser
    // domain), else first, so that record checks see only readable records. At the end of
    // a page in id order it is not built at all: the total counts the intersection and the
    // page skips unreadable ordinals before reading records.
    let bitmaps_alone = !eval.deleted && eval::answered_by_bitmaps(&filter, catalog);
    let (grant_first, mut grant_last) = match readable {
        Some(readable) if bitmaps_alone => (None, Some(readable)),
        readable => (readable, None),
    };
    if let Some(readable) = grant_first {
        domain = std::sync::Arc::new(domain.as_ref() & readable.as_ref());
    }
    let evaluated;
    let matches: &RoaringBitmap = match (filter, &grant_last) {
        (Filter::All, None) => &domain,
        (filter, _) => {
            let mut found = eval.bitmap(&filter, scope, catalog, &domain)?;
            if !sorter.keys.is_empty() {
                if let Some(readable) = grant_last.take() {
                    found &= readable.as_ref();
                }
            }
            evaluated = found;
            &evaluated
        }
    };
    let total = wanted.include_total.then(|| match &grant_last {
        Some(readable) => matches.intersection_len(readable),
        None => matches.len(),
    });
    let (after, limit) = (wanted.after, wanted.limit);
    let rows = if sorter.keys.is_empty() {
        let narrow = |window: u32| -> Result<Option<RoaringBitmap>> {
            let mut narrowed: Option<RoaringBitmap> = None;
            for (field, op) in &residual {
                let chunks = bitmap::window_chunks(window);
                if let Some(found) = eval.prefilter(field, op, scope, catalog, chunks)? {
                    narrowed = Some(match narrowed {
                        Some(acc) => acc & found,
                        None => found,
                    });
                }
            }
            Ok(narrowed)
        };
        let readable = grant_last.as_deref();
        page_by_id(
            view.kv(),
            scope,
            (matches, readable),
            after,
            limit,
            narrow,
            check,
        )?
    } else if let Some(walk) =
        walk_plan(view, scope, catalog, sorter, matches, limit, eval.deleted)?
    {
        page_walk(
            view.kv(),
            scope,
            catalog,
            sorter,
            walk,
            matches,
            after,
            limit,
        )?
    } else {
        page_sorted(view.kv(), scope, catalog, sorter, matches, after, limit)?
    };
    Ok((rows, total))
}

/// A page of live records in id order read by one scan of the records from the cursor's
/// id, skipping the trash and records that fail `check`.
fn page_by_scan(
    kv: &impl Kv,
    scope: Scope,
    after: Option<&Cursor>,
    limit: usize,
    check: impl Fn(&StoredRecord, &mut HashMap<u128, bool>) -> Result<bool>,
) -> Result<Rows> {
    let prefix = scope.prefix(keys::RECORD);
    let start_key = after.map(|c| scope.record(c.last_id));
    let start = match &start_key {
        Some(key) => std::ops::Bound::Excluded(key.as_slice()),
        None => std::ops::Bound::Included(prefix.as_slice()),
    };
    let end_key = prefix_end(&prefix);
    let end = end_key
        .as_deref()
        .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
    let mut rows = Vec::with_capacity(limit + 1);
    let mut targets = HashMap::new();
    kv.scan(start, end, false, |key, value| {
        if !crate::codec::is_trashed(value)? {
            let record = crate::codec::decode_record(value)?;
            if check(&record, &mut targets)? {
                rows.extend(keys::trailing_id(key).map(|id| (id, record)));
            }
        }
        Ok(rows.len() <= limit)
    })?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, has_more, Vec::new()))
}

fn sorter(catalog: &Catalog, keys: &[SortKey]) -> Result<Sorter> {
    if keys.len() > MAX_SORT_KEYS {
        return Err(Error::InvalidFilter(format!(
            "/sort: at most {MAX_SORT_KEYS} sort keys"
        )));
    }
    let mut out = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let at = format!("/sort/{i}/property");
        let (field, kind) = match key.property.as_str() {
            "id" => break,
            "created_at" => (SortField::CreatedAt, Kind::Datetime),
            "updated_at" => (SortField::UpdatedAt, Kind::Datetime),
            slug => {
                let prop = catalog
                    .property(slug)
                    .ok_or_else(|| Error::InvalidFilter(format!("{at}: no property {slug:?}")))?;
                if matches!(prop.kind, Kind::Multiselect | Kind::Reference) {
                    return Err(Error::InvalidFilter(format!(
                        "{at}: {} properties are not sortable",
                        prop.kind.as_str()
                    )));
                }
                (SortField::Prop(prop.pid), prop.kind)
            }
        };
        out.push((field, kind, key.direction));
    }
    Ok(Sorter { keys: out })
}

impl Sorter {
    /// The record's sort key: per key, `0x00` + the ordered value (bytes inverted for
    /// `desc`) or `0x01` when missing, so missing values sort last either way.
    fn key(&self, catalog: &Catalog, record: &StoredRecord) -> Vec<u8> {
        let mut out = Vec::new();
        for (field, kind, direction) in &self.keys {
            let value = match field {
                SortField::Prop(pid) => record.value(*pid).cloned(),
                SortField::CreatedAt => Some(StoredValue::Time(record.created_at)),
                SortField::UpdatedAt => Some(StoredValue::Time(record.updated_at)),
            };
            let encoded = value.and_then(|v| sort_bytes(catalog, *field, *kind, &v));
            match encoded {
                Some(bytes) => {
                    out.push(0);
                    match direction {
                        Direction::Asc => out.extend_from_slice(&bytes),
                        Direction::Desc => out.extend(bytes.iter().map(|b| !b)),
                    }
                }
                None => out.push(1),
            }
        }
        out
    }
}

/// Order-preserving, prefix-free bytes of a sortable value.
fn sort_bytes(
    catalog: &Catalog,
    field: SortField,
    kind: Kind,
    value: &StoredValue,
) -> Option<Vec<u8>> {
    match (value, kind) {
        (StoredValue::Option(n), Kind::Select) => {
            let SortField::Prop(pid) = field else {
                return None;
            };
            let rank = catalog.by_pid(pid)?.option_rank(*n)? as u32;
            Some(rank.to_be_bytes().to_vec())
        }
        (StoredValue::Bool(b), _) => Some(vec![u8::from(*b)]),
        (StoredValue::Str(s), _) => Some(index::ordered_text(s)),
        (StoredValue::Int(i), _) => Some(index::number_form(*i as f64).to_vec()),
        (StoredValue::Float(f), _) => Some(index::number_form(*f).to_vec()),
        (StoredValue::Time(t), _) => Some(index::time_form(*t).to_vec()),
        _ => None,
    }
}

type Rows = (Vec<(u128, StoredRecord)>, bool, Vec<u8>);

/// Splits the conditions that only a record check answers off the top level of `filter`.
fn split_residual(filter: Filter) -> (Filter, Vec<(Field, Op)>) {
    let scan_only = |part: &Filter| matches!(part, Filter::Cond(..)) && cost(part) >= 4;
    match filter {
        Filter::And(parts) => {
            let (residual, rest): (Vec<Filter>, Vec<Filter>) =
                parts.into_iter().partition(scan_only);
            let residual = residual
                .into_iter()
                .filter_map(|part| match part {
                    Filter::Cond(field, op) => Some((field, op)),
                    _ => None,
                })
                .collect();
            let rest = if rest.is_empty() {
                Filter::All
            } else {
                Filter::And(rest)
            };
            (rest, residual)
        }
        Filter::Cond(field, op) if cost(&Filter::Cond(field.clone(), op.clone())) >= 4 => {
            (Filter::All, vec![(field, op)])
        }
        other => (other, Vec::new()),
    }
}

/// A page in id order: the matches after the cursor (those in `readable` too, when given:
/// the caller's grant scope), one 65,536-ordinal window at a time. `narrow` may give, per
/// window, a superset of the records that pass `check` (from trigram bitmaps), so that
/// only those are loaded and checked; a first page then reads the bitmaps of its first
/// windows only.
fn page_by_id(
    kv: &impl Kv,
    scope: Scope,
    (matches, readable): (&RoaringBitmap, Option<&RoaringBitmap>),
    after: Option<&Cursor>,
    limit: usize,
    narrow: impl Fn(u32) -> Result<Option<RoaringBitmap>>,
    check: impl Fn(&StoredRecord, &mut HashMap<u128, bool>) -> Result<bool>,
) -> Result<Rows> {
    let from = match after {
        Some(c) if c.last_ord == u32::MAX => return Ok((Vec::new(), false, Vec::new())),
        Some(c) => c.last_ord + 1,
        None => 0,
    };
    let mut rows = Vec::with_capacity(limit + 1);
    let mut targets = HashMap::new();
    let last = matches.max().unwrap_or(0);
    for window in (from >> 16)..=(last >> 16) {
        let span = (window << 16).max(from)..=(window << 16 | 0xffff);
        let narrowed = narrow(window)?;
        let candidates: Box<dyn Iterator<Item = u32>> = match &narrowed {
            Some(narrowed) => Box::new(narrowed.range(span).filter(|ord| matches.contains(*ord))),
            None => Box::new(matches.range(span)),
        };
        let candidates = candidates.filter(|ord| readable.is_none_or(|r| r.contains(*ord)));
        decoded_at(kv, scope, candidates, |_, id, record| {
            if check(&record, &mut targets)? {
                rows.push((id, record));
            }
            Ok(rows.len() <= limit)
        })?;
        if rows.len() > limit {
            break;
        }
    }
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, has_more, Vec::new()))
}

fn page_sorted(
    kv: &impl Kv,
    scope: Scope,
    catalog: &Catalog,
    sorter: &Sorter,
    matches: &RoaringBitmap,
    after: Option<&Cursor>,
    limit: usize,
) -> Result<Rows> {
    let key_of = |record: &StoredRecord| sorter.key(catalog, record);
    let mut keyed = walk::sorted_after(kv, scope, matches, &key_of, after)?;
    let has_more = keyed.len() > limit;
    keyed.truncate(limit);
    let last_key = keyed
        .last()
        .map(|(key, _, _)| key.clone())
        .unwrap_or_default();
    Ok((
        keyed
            .into_iter()
            .map(|(_, id, record)| (id, record))
            .collect(),
        has_more,
        last_key,
    ))
}

/// The walk a sorted page takes, if it pays: the first key's groups are stored in sort
/// order (see `walk`), the records are live, and the matches are many. Measured at 200,000
/// contacts: sorting loads every match (about 2.8 µs each); the walk reads the index until
/// the page is full, about `(limit + 1) · live / matches` records' worth at about 0.11 µs
/// each, so it pays when `matches² > (limit + 1) · live / 25` (640 matches for a 50-row
/// page of 200,000).
fn walk_plan(
    view: &impl View,
    scope: Scope,
    catalog: &Catalog,
    sorter: &Sorter,
    matches: &RoaringBitmap,
    limit: usize,
    deleted: bool,
) -> Result<Option<Walk>> {
    let Some(&(SortField::Prop(pid), _, direction)) = sorter.keys.first() else {
        return Ok(None);
    };
    let Some(prop) = catalog.by_pid(pid) else {
        return Ok(None);
    };
    let live = view.counters(scope)?.live;
    let found = matches.len();
    if deleted || found.saturating_mul(found).saturating_mul(25) <= (limit as u64 + 1) * live {
        return Ok(None);
    }
    Ok(Walk::for_key(prop, direction, sorter.keys.len() > 1))
}

/// A sorted page read by a walk (see `walk`); the cursor is the walk's starting bound.
#[allow(clippy::too_many_arguments)]
fn page_walk(
    kv: &impl Kv,
    scope: Scope,
    catalog: &Catalog,
    sorter: &Sorter,
    walk: Walk,
    matches: &RoaringBitmap,
    after: Option<&Cursor>,
    limit: usize,
) -> Result<Rows> {
    let key_of = |record: &StoredRecord| sorter.key(catalog, record);
    let (rows, has_more) = walk::page(kv, scope, &walk, matches, after, limit, &key_of)?;
    let last_key = rows
        .last()
        .map(|(_, record)| sorter.key(catalog, record))
        .unwrap_or_default();
    Ok((rows, has_more, last_key))
}
