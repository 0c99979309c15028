//! The eval module: a parsed [`Filter`] evaluated to a roaring bitmap of ordinals.
//!
//! Evaluation works on bitmaps wherever the storage has them: select, multiselect and
//! boolean conditions read value bitmaps; equality on indexed properties and references
//! reads their value index bitmaps; number and datetime ranges read range buckets;
//! substring conditions on searchable text narrow to their trigram candidates; dotted paths
//! evaluate the inner filter on the target type and map the matching targets back through
//! the reference index or the reference column; AND/OR/NOT are bitmap operations (NOT
//! relative to the domain). Everything else (system timestamps, properties outside the
//! value index, every condition of a trash query, since the value-derived bitmaps hold live
//! records only) is checked record by record over the candidate set.

use std::collections::HashMap;
use std::sync::Arc;

use roaring::RoaringBitmap;
use uuid::Uuid;

use crate::access;
use crate::bitmap;
use crate::codec::{decode_value, StoredRecord, StoredValue};
use crate::column;
use crate::error::{Error, Result};
use crate::filter::{Field, Filter, Op};
use crate::grant::Level;
use crate::index;
use crate::keys::{self, Scope};
use crate::model::Principal;
use crate::records::{self, load, ord_to_id};
use crate::schema::{Catalog, Kind};
use crate::storage::prefix_end;
use crate::txn::View;

/// A path reads the reference column (one pass over every record) instead of a reference
/// index bitmap per target when its targets are more than this fraction of the live
/// records. Measured at 200,000 contacts: a target's bitmap costs about 4 µs (a seek and
/// its chunks), the column about 5 ns per record.
const PATH_COLUMN_RATIO: u64 = 800;

/// A range is read from the bucket bitmaps unless the domain is smaller than this fraction
/// of the live records (then its records are checked one by one). Measured at 200,000
/// contacts: a record check costs about 2.5 µs, a range over half the bucket bitmaps about
/// 1.1 ms, so checking pays below about 1/400 of the live records.
const RANGE_SCAN_RATIO: u64 = 512;

/// The chunks that hold every ordinal of `domain`.
fn chunks_of(domain: &RoaringBitmap) -> std::ops::Range<u32> {
    0..domain.max().map_or(0, |last| bitmap::chunk_of(last) + 1)
}

/// A rough rank of how much a filter costs and how little it keeps, for ordering the parts
/// of an AND: bitmap lookups, then index lookups, then ranges and combinations, then scans.
pub(crate) fn cost(filter: &Filter) -> u8 {
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

/// Whether `filter` is answered from bitmaps and the value index alone on live records: no
/// condition of it checks the records of its domain one by one, so a larger domain costs
/// it nothing more (ranges read buckets over any domain this large or larger).
pub(crate) fn answered_by_bitmaps(filter: &Filter, catalog: &Catalog) -> bool {
    match filter {
        Filter::All => true,
        Filter::And(parts) | Filter::Or(parts) => {
            parts.iter().all(|part| answered_by_bitmaps(part, catalog))
        }
        Filter::Not(part) => answered_by_bitmaps(part, catalog),
        Filter::Cond(Field::Prop { pid, kind }, op) => {
            let range = matches!(op, Op::Gt(_) | Op::Gte(_) | Op::Lt(_) | Op::Lte(_));
            match kind {
                Kind::Select | Kind::Multiselect | Kind::Boolean => {
                    matches!(op, Op::Eq(_) | Op::In(_) | Op::HasAll(_) | Op::Exists(_))
                }
                _ if !catalog.by_pid(*pid).is_some_and(|p| p.in_value_index()) => false,
                Kind::Number | Kind::Datetime if range => true,
                _ => matches!(op, Op::Eq(_) | Op::In(_) | Op::Exists(_)),
            }
        }
        Filter::Cond(_, _) => false,
    }
}

/// Evaluates filters of one query.
pub(crate) struct Evaluator<'v, V: View> {
    /// What the query reads.
    pub view: &'v V,
    /// The team it reads for.
    pub team: Uuid,
    /// Whether it reads the trash.
    pub deleted: bool,
    /// Who reads: a path only looks at target records this principal may read.
    pub reader: &'v Principal,
}

impl<V: View> Evaluator<'_, V> {
    /// The ordinals in `domain` of the records that match `filter`.
    pub fn bitmap(
        &self,
        filter: &Filter,
        scope: Scope,
        catalog: &Catalog,
        domain: &RoaringBitmap,
    ) -> Result<RoaringBitmap> {
        Ok(match filter {
            Filter::All => domain.clone(),
            Filter::And(parts) => {
                // Cheap, selective parts first: each later part sees a smaller domain. A
                // part's result lies within the domain it is given, so it is the new one.
                let mut ordered: Vec<&Filter> = parts.iter().collect();
                ordered.sort_by_key(|part| cost(part));
                let mut acc = domain.clone();
                for part in ordered {
                    if acc.is_empty() {
                        break;
                    }
                    acc = self.bitmap(part, scope, catalog, &acc)?;
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
                Some(found) => match Arc::try_unwrap(found) {
                    Ok(own) => own & domain,
                    Err(shared) => shared.as_ref() & domain,
                },
                None => match self.prefilter(field, op, scope, catalog, chunks_of(domain))? {
                    Some(candidates) => self.scan(field, op, scope, &(candidates & domain))?,
                    None => self.scan(field, op, scope, domain)?,
                },
            },
        })
    }

    /// Whether [`Evaluator::prefilter`] has trigram bitmaps for this condition.
    pub fn narrowable(&self, field: &Field, op: &Op, catalog: &Catalog) -> bool {
        let Field::Prop { pid, .. } = field else {
            return false;
        };
        let (Op::Contains(needle) | Op::StartsWith(needle) | Op::EndsWith(needle)) = op else {
            return false;
        };
        !self.deleted && needle.len() >= 3 && catalog.by_pid(*pid).is_some_and(|p| p.searchable())
    }

    /// A superset of the live records that pass a substring condition on a searchable
    /// property, from its trigram bitmaps over chunks `chunks`, or `None` where there is
    /// none (other conditions, needles shorter than 3 bytes, trash queries).
    pub fn prefilter(
        &self,
        field: &Field,
        op: &Op,
        scope: Scope,
        catalog: &Catalog,
        chunks: std::ops::Range<u32>,
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

    /// A condition answered from bitmaps or the value index (a superset of its matches in
    /// `domain`, shared with the bitmap cache where it is one read), or `None` where only a
    /// scan can.
    fn leaf(
        &self,
        field: &Field,
        op: &Op,
        scope: Scope,
        catalog: &Catalog,
        domain: &RoaringBitmap,
    ) -> Result<Option<Arc<RoaringBitmap>>> {
        if self.deleted {
            return Ok(None);
        }
        match field {
            Field::Prop { pid, kind } => self.prop_leaf(*pid, *kind, op, scope, catalog, domain),
            Field::Path { via, target, inner } => {
                let Some(target_scope) = self.view.scope(self.team, *target)? else {
                    return Ok(Some(Arc::default()));
                };
                let target_catalog = self.view.catalog(self.team, *target)?;
                let mut target_domain = self.view.bitmap(target_scope, keys::LIVE)?;
                let readable = access::readable(self.view, target_scope, self.reader, Level::Read)?;
                if let Some(readable) = readable {
                    target_domain &= readable.as_ref();
                }
                let inner_filter = Filter::Cond((**inner).clone(), op.clone());
                let targets =
                    self.bitmap(&inner_filter, target_scope, &target_catalog, &target_domain)?;
                let Some(via_prop) = catalog.by_pid(*via) else {
                    return Ok(Some(Arc::default()));
                };
                let live = self.view.counters(scope)?.live;
                if targets.len() * PATH_COLUMN_RATIO > live {
                    let kv = self.view.kv();
                    let found = column::referencing(kv, scope, *via, &targets)?;
                    return Ok(Some(Arc::new(found)));
                }
                let mut ids = Vec::with_capacity(targets.len() as usize);
                for ord in &targets {
                    ids.push(StoredValue::Ref(ord_to_id(
                        self.view.kv(),
                        target_scope,
                        ord,
                    )?));
                }
                Ok(Some(Arc::new(self.index_exact(scope, via_prop, &ids)?)))
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
    ) -> Result<Option<Arc<RoaringBitmap>>> {
        let bitmap_kind = matches!(kind, Kind::Select | Kind::Multiselect | Kind::Boolean);
        if bitmap_kind {
            let one = |v: &StoredValue| -> Result<Arc<RoaringBitmap>> {
                match index::value_bitmap_name(pid, v) {
                    Some(name) => self.view.cached_bitmap(scope, &name),
                    None => Ok(Arc::default()),
                }
            };
            return Ok(match op {
                Op::Eq(v) => Some(one(v)?),
                Op::In(vs) => {
                    let names: Vec<Vec<u8>> = vs
                        .iter()
                        .filter_map(|v| index::value_bitmap_name(pid, v))
                        .collect();
                    Some(self.view.cached_union(scope, &names)?)
                }
                Op::HasAll(nums) => {
                    let mut acc = domain.clone();
                    for n in nums {
                        acc &= one(&StoredValue::Option(*n))?.as_ref();
                    }
                    Some(Arc::new(acc))
                }
                Op::Exists(present) => Some(self.exists(scope, pid, kind, *present, domain)?),
                _ => None,
            });
        }
        let Some(prop) = catalog.by_pid(pid).filter(|p| p.in_value_index()) else {
            return Ok(None);
        };
        let found = match (kind, op) {
            (Kind::Reference, Op::Eq(v)) => {
                Arc::new(self.index_exact(scope, prop, std::slice::from_ref(v))?)
            }
            (Kind::Reference, Op::In(vs)) => Arc::new(self.index_exact(scope, prop, vs)?),
            (_, Op::Exists(present)) => self.exists(scope, pid, kind, *present, domain)?,
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
                    return Ok(Some(Arc::default()));
                };
                let field = Field::Prop { pid, kind };
                let check = |candidates: &RoaringBitmap| self.scan(&field, op, scope, candidates);
                Arc::new(index::range(self.view, scope, prop, span, domain, check)?)
            }
            (_, Op::Eq(v)) => self.index_equal(scope, prop, std::slice::from_ref(v))?,
            (_, Op::In(vs)) => self.index_equal(scope, prop, vs)?,
            _ => return Ok(None),
        };
        Ok(Some(found))
    }

    /// The records of `domain` with (`present`) or without a value of property `pid`.
    fn exists(
        &self,
        scope: Scope,
        pid: u16,
        kind: Kind,
        present: bool,
        domain: &RoaringBitmap,
    ) -> Result<Arc<RoaringBitmap>> {
        let all = with_value(self.view, scope, pid, kind)?;
        Ok(match present {
            true => all,
            false => Arc::new(domain - all.as_ref()),
        })
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
    ) -> Result<Arc<RoaringBitmap>> {
        let kv = self.view.kv();
        let (exact, inexact): (Vec<&StoredValue>, Vec<&StoredValue>) =
            values.iter().partition(|value| index_form_is_exact(value));
        let names: Vec<Vec<u8>> = exact
            .into_iter()
            .filter_map(|value| index::candidates_name(prop, value))
            .collect();
        let exact_found = self.view.cached_union(scope, &names)?;
        if inexact.is_empty() {
            return Ok(exact_found);
        }
        let mut found = exact_found.as_ref().clone();
        for value in inexact {
            let candidates = index::candidates(self.view, scope, prop, value)?;
            records::records_at(kv, scope, candidates.iter(), |ord, _, bytes| {
                let holds = decode_value(bytes, prop.pid)?
                    .is_some_and(|stored| index::values_equal(prop.kind, &stored, value));
                if holds {
                    found.insert(ord);
                }
                Ok(true)
            })?;
        }
        Ok(Arc::new(found))
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
            records::records_at(kv, scope, domain.iter(), |ord, _, bytes| {
                if value_matches(*kind, decode_value(bytes, *pid)?.as_ref(), op) {
                    found.insert(ord);
                }
                Ok(true)
            })?;
        } else {
            records::decoded_at(kv, scope, domain.iter(), |_, _, record| check(record))?;
        }
        Ok(found)
    }

    /// Whether `record` passes the condition `op` on `field` (paths load their target,
    /// remembered in `targets`).
    pub fn record_matches(
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
                        Some(t) if t.is_live() && self.may_read(target_scope, *id, t.ord)? => {
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

impl<V: View> Evaluator<'_, V> {
    /// Whether the reader may read record `id` (ordinal `ord`) of `scope`.
    fn may_read(&self, scope: Scope, id: u128, ord: u32) -> Result<bool> {
        let id = Uuid::from_u128(id);
        match access::check_record(self.view, scope, self.reader, id, ord, Level::Read) {
            Ok(()) => Ok(true),
            Err(Error::NotFound(_) | Error::PermissionDenied(_)) => Ok(false),
            Err(other) => Err(other),
        }
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

/// The live records holding any value of property `pid` of `kind`, in one scan (see
/// [`value_span`]), through the bitmap cache.
pub(crate) fn with_value(
    view: &impl View,
    scope: Scope,
    pid: u16,
    kind: Kind,
) -> Result<Arc<RoaringBitmap>> {
    let (from, to) = value_span(pid, kind);
    view.cached_span(scope, pid, &from, &to)
}

/// The span of bitmap names whose union is the records holding any value of property
/// `pid` of `kind`: its value bitmaps (select, multiselect, boolean), its coarse range
/// buckets (numbers and datetimes in the value index), or its index bitmaps (the rest of
/// the value index).
pub(crate) fn value_span(pid: u16, kind: Kind) -> (Vec<u8>, Vec<u8>) {
    let whole = |prefix: Vec<u8>| {
        let end = prefix_end(&prefix).unwrap_or_default();
        (prefix, end)
    };
    match kind {
        Kind::Select | Kind::Multiselect | Kind::Boolean => whole(index::value_bitmap_prefix(pid)),
        _ if index::bucket_shifts(kind).is_some() => {
            (index::bucket_name(pid, 0, 0), index::bucket_name(pid, 1, 0))
        }
        _ => whole(index::index_prefix(pid)),
    }
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
