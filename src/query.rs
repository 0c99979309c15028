//! The query module: SPEC §4 queries — a parsed [`Filter`] evaluated to a roaring bitmap of
//! ordinals, sorted, paged by a keyset cursor and rendered like a list page.
//!
//! Evaluation works on bitmaps wherever the storage has them: select, multiselect and
//! boolean conditions read value bitmaps; number and datetime conditions scan the value
//! index into bitmaps; equality on indexed properties and references looks values up in the
//! value index;
//! dotted paths evaluate the inner filter on the target type and map the matching targets
//! back through the reference index; AND/OR/NOT are bitmap operations (NOT relative to
//! the live records). Everything else (substring operators, system timestamps, properties
//! outside the value index, and every condition of a trash query, since the bitmaps and the
//! index hold live records only) is checked record by record over the candidate set.

use std::collections::HashMap;

use roaring::RoaringBitmap;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::bitmap;
use crate::codec::{StoredRecord, StoredValue};
use crate::column;
use crate::cursor::{self, Cursor};
use crate::error::{Error, Result};
use crate::filter::{self, Field, Filter, Op};
use crate::index;
use crate::keys::{self, Scope};
use crate::model::{ObjectType, Principal};
use crate::record::Page;
use crate::records::{self, load, ord_to_id};
use crate::schema::{Catalog, Kind, Property};
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
    let in_key_order = sorter.keys.is_empty() && matches!(filter, Filter::All);
    if in_key_order && !eval.deleted && !narrowable {
        let total = match wanted.include_total {
            true => Some(view.counters(scope)?.live),
            false => None,
        };
        let rows = page_by_scan(view.kv(), scope, wanted.after, wanted.limit, check)?;
        return Ok((rows, total));
    }
    let domain = match eval.deleted {
        true => std::sync::Arc::new(view.bitmap(scope, keys::TRASH)?),
        false => view.live(scope)?,
    };
    let evaluated;
    let matches: &RoaringBitmap = match filter {
        Filter::All => &domain,
        filter => {
            evaluated = eval.bitmap(&filter, scope, catalog, &domain)?;
            &evaluated
        }
    };
    let total = wanted.include_total.then(|| matches.len());
    let (after, limit) = (wanted.after, wanted.limit);
    let rows = if sorter.keys.is_empty() {
        let narrow = |window: u32| -> Result<Option<RoaringBitmap>> {
            let mut narrowed: Option<RoaringBitmap> = None;
            for (field, op) in &residual {
                let chunks = Some(bitmap::window_chunks(window));
                if let Some(found) = eval.prefilter(field, op, scope, catalog, chunks)? {
                    narrowed = Some(match narrowed {
                        Some(acc) => acc & found,
                        None => found,
                    });
                }
            }
            Ok(narrowed)
        };
        page_by_id(view.kv(), scope, matches, after, limit, narrow, check)?
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

/// A page in id order: the matches after the cursor, one 65,536-ordinal window at a time.
/// `narrow` may give, per window, a superset of the records that pass `check` (from
/// trigram bitmaps), so that only those are loaded and checked; a first page then reads
/// the bitmaps of its first windows only.
fn page_by_id(
    kv: &impl Kv,
    scope: Scope,
    matches: &RoaringBitmap,
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
    'windows: for window in (from >> 16)..=(last >> 16) {
        let span = (window << 16).max(from)..=(window << 16 | 0xffff);
        let narrowed = narrow(window)?;
        let candidates: Box<dyn Iterator<Item = u32>> = match &narrowed {
            Some(narrowed) => Box::new(narrowed.range(span).filter(|ord| matches.contains(*ord))),
            None => Box::new(matches.range(span)),
        };
        for ord in candidates {
            let id = ord_to_id(kv, scope, ord)?;
            let record = load(kv, scope, id)?.ok_or_else(|| {
                Error::Internal(format!("ordinal {ord} points at a missing record"))
            })?;
            if check(&record, &mut targets)? {
                rows.push((id, record));
                if rows.len() > limit {
                    break 'windows;
                }
            }
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
    let mut keyed = Vec::with_capacity(matches.len() as usize);
    for ord in matches {
        let id = ord_to_id(kv, scope, ord)?;
        let record = load(kv, scope, id)?
            .ok_or_else(|| Error::Internal(format!("ordinal {ord} points at a missing record")))?;
        keyed.push((sorter.key(catalog, &record), id, record));
    }
    keyed.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    // The cursor is a bound: the page starts at the first key past it.
    let start = after.map_or(0, |c| {
        keyed.partition_point(|(key, id, _)| {
            (key.as_slice(), *id) <= (c.sort_key.as_slice(), c.last_id)
        })
    });
    keyed.drain(..start);
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

/// A path reads the reference column (one pass over every record) instead of a reference
/// index bitmap per target when its targets are more than this fraction of the live
/// records. Measured at 200,000 contacts: a target's bitmap costs about 4 µs (a seek and
/// its chunks), the column about 5 ns per record.
const PATH_COLUMN_RATIO: u64 = 800;

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

/// A range is read from the bucket bitmaps unless the domain is smaller than this fraction
/// of the live records (then its records are checked one by one). Measured at 200,000
/// contacts: a record check costs about 2.5 µs, a range over half the bucket bitmaps about
/// 1.1 ms, so checking pays below about 1/400 of the live records.
const RANGE_SCAN_RATIO: u64 = 512;

/// A rough rank of how much a filter costs and how little it keeps, for ordering the parts
/// of an AND: bitmap lookups, then index lookups, then ranges and combinations, then scans.
fn cost(filter: &Filter) -> u8 {
    match filter {
        Filter::Cond(Field::Prop { kind, .. }, op) => match (kind, op) {
            (Kind::Select | Kind::Multiselect | Kind::Boolean, _) => 0,
            (_, Op::Eq(_) | Op::In(_)) => 1,
            (_, Op::Gt(_) | Op::Gte(_) | Op::Lt(_) | Op::Lte(_) | Op::Exists(_)) => 2,
            _ => 4,
        },
        Filter::Cond(Field::Path { .. }, _) => 3,
        Filter::Cond(_, _) => 4,
        Filter::All => 0,
        Filter::And(_) | Filter::Or(_) | Filter::Not(_) => 3,
    }
}

/// Evaluates filters of one query.
struct Evaluator<'v, V: View> {
    view: &'v V,
    team: Uuid,
    deleted: bool,
}

impl<V: View> Evaluator<'_, V> {
    /// The ordinals in `domain` of the records that match `filter`.
    fn bitmap(
        &self,
        filter: &Filter,
        scope: Scope,
        catalog: &Catalog,
        domain: &RoaringBitmap,
    ) -> Result<RoaringBitmap> {
        Ok(match filter {
            Filter::All => domain.clone(),
            Filter::And(parts) => {
                // Cheap, selective parts first: each later part sees a smaller domain.
                let mut ordered: Vec<&Filter> = parts.iter().collect();
                ordered.sort_by_key(|part| cost(part));
                let mut acc = domain.clone();
                for part in ordered {
                    if acc.is_empty() {
                        break;
                    }
                    acc &= self.bitmap(part, scope, catalog, &acc)?;
                }
                acc
            }
            Filter::Or(parts) => {
                let mut acc = RoaringBitmap::new();
                for part in parts {
                    acc |= self.bitmap(part, scope, catalog, domain)?;
                }
                acc
            }
            Filter::Not(part) => domain - self.bitmap(part, scope, catalog, domain)?,
            Filter::Cond(field, op) => match self.leaf(field, op, scope, catalog, domain)? {
                Some(found) => found & domain,
                None => match self.prefilter(field, op, scope, catalog, None)? {
                    Some(candidates) => self.scan(field, op, scope, &(candidates & domain))?,
                    None => self.scan(field, op, scope, domain)?,
                },
            },
        })
    }

    /// Whether [`Evaluator::prefilter`] has trigram bitmaps for this condition.
    fn narrowable(&self, field: &Field, op: &Op, catalog: &Catalog) -> bool {
        let Field::Prop { pid, .. } = field else {
            return false;
        };
        let (Op::Contains(needle) | Op::StartsWith(needle) | Op::EndsWith(needle)) = op else {
            return false;
        };
        !self.deleted && needle.len() >= 3 && catalog.by_pid(*pid).is_some_and(|p| p.searchable())
    }

    /// A superset of the live records that pass a substring condition on a searchable
    /// property, from its trigram bitmaps (over chunks `chunks`, or all), or `None` where
    /// there is none (other conditions, needles shorter than 3 bytes, trash queries).
    fn prefilter(
        &self,
        field: &Field,
        op: &Op,
        scope: Scope,
        catalog: &Catalog,
        chunks: Option<std::ops::Range<u32>>,
    ) -> Result<Option<RoaringBitmap>> {
        if !self.narrowable(field, op, catalog) {
            return Ok(None);
        }
        let (Field::Prop { pid, .. }, Op::Contains(n) | Op::StartsWith(n) | Op::EndsWith(n)) =
            (field, op)
        else {
            return Ok(None);
        };
        index::gram_candidates(self.view.kv(), scope, *pid, n, chunks)
    }

    /// A condition answered from bitmaps or the value index, or `None` where only a scan can.
    fn leaf(
        &self,
        field: &Field,
        op: &Op,
        scope: Scope,
        catalog: &Catalog,
        domain: &RoaringBitmap,
    ) -> Result<Option<RoaringBitmap>> {
        if self.deleted {
            return Ok(None);
        }
        match field {
            Field::Prop { pid, kind } => self.prop_leaf(*pid, *kind, op, scope, catalog, domain),
            Field::Path { via, target, inner } => {
                let Some(target_scope) = self.view.scope(self.team, *target)? else {
                    return Ok(Some(RoaringBitmap::new()));
                };
                let target_catalog = self.view.catalog(self.team, *target)?;
                let target_domain = self.view.bitmap(target_scope, keys::LIVE)?;
                let inner_filter = Filter::Cond((**inner).clone(), op.clone());
                let targets =
                    self.bitmap(&inner_filter, target_scope, &target_catalog, &target_domain)?;
                let Some(via_prop) = catalog.by_pid(*via) else {
                    return Ok(Some(RoaringBitmap::new()));
                };
                let live = self.view.counters(scope)?.live;
                if targets.len() * PATH_COLUMN_RATIO > live {
                    let kv = self.view.kv();
                    return Ok(Some(column::referencing(kv, scope, *via, &targets)?));
                }
                let mut ids = Vec::with_capacity(targets.len() as usize);
                for ord in &targets {
                    ids.push(StoredValue::Ref(ord_to_id(
                        self.view.kv(),
                        target_scope,
                        ord,
                    )?));
                }
                Ok(Some(self.index_exact(scope, via_prop, &ids)?))
            }
            Field::CreatedAt | Field::UpdatedAt => Ok(None),
        }
    }

    fn prop_leaf(
        &self,
        pid: u16,
        kind: Kind,
        op: &Op,
        scope: Scope,
        catalog: &Catalog,
        domain: &RoaringBitmap,
    ) -> Result<Option<RoaringBitmap>> {
        let bitmap_kind = matches!(kind, Kind::Select | Kind::Multiselect | Kind::Boolean);
        if bitmap_kind {
            let one = |v: &StoredValue| -> Result<RoaringBitmap> {
                match index::value_bitmap_name(pid, v) {
                    Some(name) => self.view.bitmap(scope, &name),
                    None => Ok(RoaringBitmap::new()),
                }
            };
            return Ok(match op {
                Op::Eq(v) => Some(one(v)?),
                Op::In(vs) => Some(
                    vs.iter()
                        .map(one)
                        .collect::<Result<Vec<_>>>()?
                        .into_iter()
                        .fold(RoaringBitmap::new(), |a, b| a | b),
                ),
                Op::HasAll(nums) => {
                    let mut acc = domain.clone();
                    for n in nums {
                        acc &= one(&StoredValue::Option(*n))?;
                    }
                    Some(acc)
                }
                Op::Exists(present) => {
                    let all = self.all_values(pid, scope)?;
                    Some(if *present { all } else { domain - all })
                }
                _ => None,
            });
        }
        let Some(prop) = catalog.by_pid(pid).filter(|p| p.in_value_index()) else {
            return Ok(None);
        };
        match (kind, op) {
            (Kind::Reference, Op::Eq(v)) => Ok(Some(self.index_exact(
                scope,
                prop,
                std::slice::from_ref(v),
            )?)),
            (Kind::Reference, Op::In(vs)) => Ok(Some(self.index_exact(scope, prop, vs)?)),
            (_, Op::Exists(present)) => {
                let all = with_value(self.view.kv(), scope, prop)?;
                Ok(Some(if *present { all } else { domain - all }))
            }
            (Kind::Number | Kind::Datetime, Op::Gt(v) | Op::Gte(v) | Op::Lt(v) | Op::Lte(v)) => {
                // Over a small domain, checking its records beats reading a wide range.
                let live = self.view.counters(scope)?.live;
                if domain.len() * RANGE_SCAN_RATIO < live {
                    return Ok(None);
                }
                let Some(bound) = index::ordered_key(v) else {
                    return Ok(None);
                };
                let Some(span) = key_span(op, bound) else {
                    return Ok(Some(RoaringBitmap::new()));
                };
                let field = Field::Prop { pid, kind };
                let check = |candidates: &RoaringBitmap| self.scan(&field, op, scope, candidates);
                let found = index::range(self.view.kv(), scope, prop, span, domain, check)?;
                Ok(Some(found))
            }
            (_, Op::Eq(v)) => Ok(Some(self.index_equal(
                scope,
                prop,
                std::slice::from_ref(v),
            )?)),
            (_, Op::In(vs)) => Ok(Some(self.index_equal(scope, prop, vs)?)),
            _ => Ok(None),
        }
    }

    /// Records holding any value of bitmap-kind property `pid`.
    fn all_values(&self, pid: u16, scope: Scope) -> Result<RoaringBitmap> {
        let named =
            crate::bitmap::read_named(self.view.kv(), scope, &index::value_bitmap_prefix(pid))?;
        Ok(named.into_values().fold(RoaringBitmap::new(), |a, b| a | b))
    }

    /// Records whose `prop` equals one of `values`, for kinds whose index form is exact
    /// (references): the index alone answers.
    fn index_exact(
        &self,
        scope: Scope,
        prop: &crate::schema::Property,
        values: &[StoredValue],
    ) -> Result<RoaringBitmap> {
        // Many small bitmaps (one per target of a path): OR-ing each into the result
        // re-merged its arrays every time; collecting and sorting once is linear.
        let mut ords = Vec::new();
        for value in values {
            ords.extend(index::candidates(self.view, scope, prop, value)?);
        }
        ords.sort_unstable();
        ords.dedup();
        Ok(RoaringBitmap::from_sorted_iter(ords).expect("sorted and deduplicated above"))
    }

    /// Records whose `prop` equals one of `values`, found in the value index and confirmed
    /// on the record.
    fn index_equal(
        &self,
        scope: Scope,
        prop: &crate::schema::Property,
        values: &[StoredValue],
    ) -> Result<RoaringBitmap> {
        let kv = self.view.kv();
        let mut found = RoaringBitmap::new();
        for value in values {
            let candidates = index::candidates(self.view, scope, prop, value)?;
            if index_form_is_exact(value) {
                found |= candidates;
                continue;
            }
            for ord in &candidates {
                let id = ord_to_id(kv, scope, ord)?;
                let holds = load(kv, scope, id)?
                    .and_then(|r| r.value(prop.pid).cloned())
                    .is_some_and(|stored| index::values_equal(prop.kind, &stored, value));
                if holds {
                    found.insert(ord);
                }
            }
        }
        Ok(found)
    }

    /// A condition checked record by record over `domain`.
    fn scan(
        &self,
        field: &Field,
        op: &Op,
        scope: Scope,
        domain: &RoaringBitmap,
    ) -> Result<RoaringBitmap> {
        let kv = self.view.kv();
        let mut targets: HashMap<u128, bool> = HashMap::new();
        let mut found = RoaringBitmap::new();
        let mut check = |record: StoredRecord| -> Result<bool> {
            if domain.contains(record.ord)
                && self.record_matches(field, op, &record, &mut targets)?
            {
                found.insert(record.ord);
            }
            Ok(true)
        };
        if domain.len() * 8 >= self.view.counters(scope)?.next_ord as u64 {
            // A large share of the type: one pass over the records in key order beats a
            // lookup per ordinal.
            records::each_record(kv, scope, |_, record| check(record))?;
        } else if let Field::Prop { pid, kind } = field {
            // One property: decode only its value.
            for ord in domain {
                let id = ord_to_id(kv, scope, ord)?;
                let stored = kv.get_with(&scope.record(id), |bytes| {
                    crate::codec::decode_value(bytes, *pid)
                })?;
                let Some(value) = stored.transpose()? else {
                    continue; // no such record
                };
                if value_matches(*kind, value.as_ref(), op) {
                    found.insert(ord);
                }
            }
        } else {
            for ord in domain {
                let id = ord_to_id(kv, scope, ord)?;
                if let Some(record) = load(kv, scope, id)? {
                    check(record)?;
                }
            }
        }
        Ok(found)
    }

    fn record_matches(
        &self,
        field: &Field,
        op: &Op,
        record: &StoredRecord,
        targets: &mut HashMap<u128, bool>,
    ) -> Result<bool> {
        let time;
        let (value, kind) = match field {
            Field::Prop { pid, kind } => (record.value(*pid), *kind),
            Field::CreatedAt => {
                time = StoredValue::Time(record.created_at);
                (Some(&time), Kind::Datetime)
            }
            Field::UpdatedAt => {
                time = StoredValue::Time(record.updated_at);
                (Some(&time), Kind::Datetime)
            }
            Field::Path { via, target, inner } => {
                let Some(StoredValue::Ref(id)) = record.value(*via) else {
                    return Ok(false);
                };
                if let Some(known) = targets.get(id) {
                    return Ok(*known);
                }
                let hit = match self.view.scope(self.team, *target)? {
                    Some(target_scope) => match load(self.view.kv(), target_scope, *id)? {
                        Some(t) if t.is_live() => {
                            self.record_matches(inner, op, &t, &mut HashMap::new())?
                        }
                        _ => false,
                    },
                    None => false,
                };
                targets.insert(*id, hit);
                return Ok(hit);
            }
        };
        Ok(value_matches(kind, value, op))
    }
}

/// Whether a stored value (or its absence) satisfies `op` (SPEC §4 semantics).
pub(crate) fn value_matches(kind: Kind, value: Option<&StoredValue>, op: &Op) -> bool {
    let Some(value) = value else {
        return matches!(op, Op::Exists(false));
    };
    match op {
        Op::Exists(present) => *present,
        Op::Eq(wanted) => index::values_equal(kind, value, wanted),
        Op::In(wanted) => wanted.iter().any(|w| index::values_equal(kind, value, w)),
        Op::HasAll(nums) => {
            matches!(value, StoredValue::Options(held) if nums.iter().all(|n| held.contains(n)))
        }
        Op::Gt(b) => compare(kind, value, b).is_some_and(|o| o.is_gt()),
        Op::Gte(b) => compare(kind, value, b).is_some_and(|o| o.is_ge()),
        Op::Lt(b) => compare(kind, value, b).is_some_and(|o| o.is_lt()),
        Op::Lte(b) => compare(kind, value, b).is_some_and(|o| o.is_le()),
        Op::Contains(needle) => text_holds(value, needle, TextOp::Contains),
        Op::StartsWith(needle) => text_holds(value, needle, TextOp::StartsWith),
        Op::EndsWith(needle) => text_holds(value, needle, TextOp::EndsWith),
    }
}

#[derive(Clone, Copy)]
enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// Whether text `value`, lowercased, contains / starts with / ends with `needle` (already
/// lowercased). ASCII text is compared without building its lowercase copy.
fn text_holds(value: &StoredValue, needle: &str, op: TextOp) -> bool {
    let StoredValue::Str(text) = value else {
        return false;
    };
    if text.is_ascii() {
        let (hay, needle) = (text.as_bytes(), needle.as_bytes());
        let fits = hay.len() >= needle.len();
        return match op {
            TextOp::Contains => {
                needle.is_empty()
                    || hay
                        .windows(needle.len())
                        .any(|w| w.eq_ignore_ascii_case(needle))
            }
            TextOp::StartsWith => fits && hay[..needle.len()].eq_ignore_ascii_case(needle),
            TextOp::EndsWith => {
                fits && hay[hay.len() - needle.len()..].eq_ignore_ascii_case(needle)
            }
        };
    }
    let lower = text.to_lowercase();
    match op {
        TextOp::Contains => lower.contains(needle),
        TextOp::StartsWith => lower.starts_with(needle),
        TextOp::EndsWith => lower.ends_with(needle),
    }
}

/// Whether a value's index form identifies it exactly, so that index matches need no
/// check on the record: text shorter than the indexed prefix, integers that `f64` holds
/// exactly, and everything else the index encodes losslessly.
fn index_form_is_exact(value: &StoredValue) -> bool {
    const EXACT_INT: i64 = 1 << 53;
    match value {
        StoredValue::Str(s) => s.len() < index::MAX_INDEXED_TEXT,
        StoredValue::Int(i) => i.unsigned_abs() < EXACT_INT as u64,
        _ => true,
    }
}

/// Order of a stored value against a bound: numbers as `f64` (ints and floats mixed, as the
/// value index orders them), datetimes as instants, text in UTF-8 byte order (e-mail
/// lowercased).
fn compare(kind: Kind, stored: &StoredValue, bound: &StoredValue) -> Option<std::cmp::Ordering> {
    match (stored, bound) {
        (
            StoredValue::Int(_) | StoredValue::Float(_),
            StoredValue::Int(_) | StoredValue::Float(_),
        ) => index::as_f64(stored).partial_cmp(&index::as_f64(bound)),
        (StoredValue::Time(a), StoredValue::Time(b)) => Some(a.cmp(b)),
        (StoredValue::Str(a), StoredValue::Str(b)) if kind == Kind::Email => {
            Some(a.to_lowercase().as_bytes().cmp(b.to_lowercase().as_bytes()))
        }
        (StoredValue::Str(a), StoredValue::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        _ => None,
    }
}

/// The inclusive interval of ordered keys a range operator keeps around `bound`, or `None`
/// when it keeps nothing.
fn key_span(op: &Op, bound: u64) -> Option<index::KeySpan> {
    let (lo, hi) = match op {
        Op::Gt(_) => (bound.checked_add(1)?, u64::MAX),
        Op::Gte(_) => (bound, u64::MAX),
        Op::Lt(_) => (0, bound.checked_sub(1)?),
        Op::Lte(_) => (0, bound),
        _ => return None,
    };
    Some(index::KeySpan { lo, hi })
}

/// The live records holding any value of `prop` (which is in the value index): the union
/// of its coarse range buckets for numbers and datetimes, of its index bitmaps otherwise.
pub(crate) fn with_value(kv: &impl Kv, scope: Scope, prop: &Property) -> Result<RoaringBitmap> {
    let (from, to) = if index::bucket_shifts(prop.kind).is_some() {
        (
            index::bucket_name(prop.pid, 0, 0),
            index::bucket_name(prop.pid, 1, 0),
        )
    } else {
        let prefix = index::index_prefix(prop.pid);
        let end = prefix_end(&prefix).unwrap_or_default();
        (prefix, end)
    };
    bitmap::read_span(kv, scope, &from, &to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The ASCII shortcut of substring checks agrees with lowercasing the whole text.
        #[test]
        fn text_checks_agree_with_lowercasing(text in "[aAbB\u{c9}\u{e9}\u{212a}k ]{0,8}", needle in "[abk\u{e9} ]{0,3}") {
            let value = StoredValue::Str(text.clone());
            let lower = text.to_lowercase();
            prop_assert_eq!(text_holds(&value, &needle, TextOp::Contains), lower.contains(&needle));
            prop_assert_eq!(text_holds(&value, &needle, TextOp::StartsWith), lower.starts_with(&needle));
            prop_assert_eq!(text_holds(&value, &needle, TextOp::EndsWith), lower.ends_with(&needle));
        }
    }
}
