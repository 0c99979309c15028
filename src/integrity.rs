//! `verify_integrity`: rebuilds every derived structure from the records and reports each
//! disagreement with what is stored (like SQLite's `PRAGMA integrity_check`).

use std::collections::{BTreeMap, HashMap};

use roaring::RoaringBitmap;
use uuid::Uuid;

use crate::bitmap;
use crate::codec::decode_record;
use crate::column;
use crate::error::Result;
use crate::grant::Grant;
use crate::index;
use crate::keys::{self, Scope};
use crate::model::ObjectType;
use crate::storage::Kv;
use crate::txn::{stored_counters, View};

/// What `verify_integrity` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Records read and checked.
    pub records_checked: u64,
    /// One line per disagreement; empty when the database is consistent.
    pub problems: Vec<String>,
}

impl IntegrityReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Every (team number, team id) in the file.
pub(crate) fn teams(kv: &impl Kv) -> Result<Vec<(u32, Uuid)>> {
    let mut found = Vec::new();
    kv.scan_prefix(&[keys::TEAM], |key, value| {
        let id = Uuid::from_slice(&key[1..]).ok();
        if let (Some(id), Some(number)) = (id, keys::read_u32(value)) {
            found.push((number, id));
        }
        Ok(true)
    })?;
    Ok(found)
}

/// Checks the whole database as `view` sees it.
pub(crate) fn verify(view: &impl View) -> Result<IntegrityReport> {
    let mut report = IntegrityReport::default();
    for (number, team) in teams(view.kv())? {
        for ty in ObjectType::ALL {
            verify_scope(view, team, Scope { team: number, ty }, &mut report)?;
        }
    }
    Ok(report)
}

/// What the records of one scope say the derived structures must hold.
#[derive(Default)]
struct Expected {
    ords: BTreeMap<u32, u128>,
    live: RoaringBitmap,
    trash: RoaringBitmap,
    /// Reference column slots by (property, ordinal): the target's ordinal + 1, or `None`
    /// where the target record is gone (any stored slot is then accepted).
    columns: BTreeMap<(u16, u32), Option<u32>>,
    /// Trigram bitmaps by name: each must hold at least these records (or they are pending).
    grams: BTreeMap<Vec<u8>, RoaringBitmap>,
    /// Value, index and bucket bitmaps by name.
    value_bitmaps: BTreeMap<Vec<u8>, RoaringBitmap>,
    unique_seen: HashMap<(u16, Vec<u8>), u128>,
    max_id: u128,
}

fn verify_scope(
    view: &impl View,
    team: Uuid,
    scope: Scope,
    report: &mut IntegrityReport,
) -> Result<()> {
    let kv = view.kv();
    let catalog = view.catalog(team, scope.ty)?;
    let mut expected = Expected::default();
    let mut problems = Vec::new();
    kv.scan_prefix(&scope.prefix(keys::RECORD), |key, value| {
        report.records_checked += 1;
        let Some(id) = keys::trailing_id(key).filter(|_| key.len() == 6 + 16) else {
            problems.push(format!("{}: malformed record key", scope.ty));
            return Ok(true);
        };
        let record = match decode_record(value) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{} {}: {e}", scope.ty, Uuid::from_u128(id)));
                return Ok(true);
            }
        };
        expected.max_id = expected.max_id.max(id);
        if let Some(other) = expected.ords.insert(record.ord, id) {
            problems.push(format!(
                "{} ordinal {} is used by {} and {}",
                scope.ty,
                record.ord,
                Uuid::from_u128(other),
                Uuid::from_u128(id)
            ));
        }
        if !record.is_live() {
            expected.trash.insert(record.ord);
            return Ok(true);
        }
        expected.live.insert(record.ord);
        for (pid, value) in &record.props {
            let has_target = catalog.by_pid(*pid).is_some_and(|p| p.target.is_some());
            if let (crate::codec::StoredValue::Ref(target), true) = (value, has_target) {
                let slot = crate::records::target_slot(kv, scope, &catalog, *pid, *target)?;
                expected.columns.insert((*pid, record.ord), slot);
            }
        }
        for name in index::record_gram_names(&catalog, &record, |_| true).iter() {
            expected.grams.entry(name.to_vec()).or_default().insert(record.ord);
        }
        for name in index::bitmaps_of(&catalog, &record).iter() {
            expected.value_bitmaps.entry(name.to_vec()).or_default().insert(record.ord);
        }
        for (pid, value) in &record.props {
            let Some(prop) = catalog.by_pid(*pid).filter(|p| p.unique) else {
                continue;
            };
            let form = match index::encode(prop, value) {
                Some(form) if !matches!(value, crate::codec::StoredValue::Str(s) if s.len() > index::MAX_INDEXED_TEXT) => form,
                _ => continue,
            };
            if let Some(other) = expected.unique_seen.insert((*pid, form), id) {
                problems.push(format!(
                    "{} {} {} is held by {} and {}",
                    scope.ty,
                    prop.slug,
                    prop.to_json_value(value),
                    Uuid::from_u128(other),
                    Uuid::from_u128(id)
                ));
            }
        }
        Ok(true)
    })?;
    compare_ords(kv, scope, &expected, &mut problems)?;
    compare_bitmaps(view, scope, &expected, &mut problems)?;
    compare_counters(kv, scope, &expected, &mut problems)?;
    compare_columns(kv, scope, &catalog, &expected, &mut problems)?;
    compare_grants(kv, scope, &expected, &mut problems)?;
    report.problems.extend(problems);
    Ok(())
}

fn compare_ords(
    kv: &impl Kv,
    scope: Scope,
    expected: &Expected,
    problems: &mut Vec<String>,
) -> Result<()> {
    let mut stored = BTreeMap::new();
    kv.scan_prefix(&scope.prefix(keys::ORD), |key, value| {
        let ord = keys::read_u32(&key[6..]);
        let id = value.try_into().ok().map(u128::from_be_bytes);
        match (ord, id) {
            (Some(ord), Some(id)) => {
                stored.insert(ord, id);
            }
            _ => problems.push(format!("{}: malformed ordinal entry", scope.ty)),
        }
        Ok(true)
    })?;
    if stored != expected.ords {
        let missing = expected
            .ords
            .iter()
            .filter(|(o, i)| stored.get(o) != Some(i))
            .count();
        let extra = stored
            .iter()
            .filter(|(o, i)| expected.ords.get(o) != Some(i))
            .count();
        problems.push(format!(
            "{}: ordinal map disagrees with records ({missing} missing or wrong, {extra} extra)",
            scope.ty
        ));
    }
    Ok(())
}

/// Every record of a type with grants has a decodable grant that gives someone `a`, no
/// grant row is left without its record, and the scope bitmaps are exactly what the stored
/// grants say.
fn compare_grants(
    kv: &impl Kv,
    scope: Scope,
    expected: &Expected,
    problems: &mut Vec<String>,
) -> Result<()> {
    let mut wanted: BTreeMap<Vec<u8>, RoaringBitmap> = BTreeMap::new();
    let mut granted = RoaringBitmap::new();
    kv.scan_prefix(&scope.prefix(keys::GRANT), |key, value| {
        let Some(ord) = key.get(6..).and_then(keys::read_u32) else {
            problems.push(format!("{}: malformed grant key", scope.ty));
            return Ok(true);
        };
        granted.insert(ord);
        match Grant::decode(value) {
            Ok(grant) if grant.has_admin() => {
                for name in grant.scope_names() {
                    wanted.entry(name).or_default().insert(ord);
                }
            }
            Ok(_) => problems.push(format!("{} ordinal {ord}: a grant without \"a\"", scope.ty)),
            Err(e) => problems.push(format!("{} ordinal {ord}: {e}", scope.ty)),
        }
        Ok(true)
    })?;
    let records: RoaringBitmap = expected.ords.keys().copied().collect();
    let should_have = if scope.ty.has_grants() {
        records
    } else {
        RoaringBitmap::new()
    };
    if granted != should_have {
        problems.push(format!(
            "{}: {} records lack a grant, {} grants lack a record or should not exist",
            scope.ty,
            (&should_have - &granted).len(),
            (&granted - &should_have).len()
        ));
    }
    let stored = bitmap::read_named(kv, scope, &[keys::SCOPE_BITMAP])?;
    if stored != wanted {
        let differing = wanted
            .keys()
            .chain(stored.keys())
            .filter(|name| stored.get(*name) != wanted.get(*name))
            .count();
        problems.push(format!(
            "{}: {differing} grant scope bitmaps disagree with the stored grants",
            scope.ty
        ));
    }
    Ok(())
}

fn compare_bitmaps(
    view: &impl View,
    scope: Scope,
    expected: &Expected,
    problems: &mut Vec<String>,
) -> Result<()> {
    let mut stored_values = BTreeMap::new();
    for kind in [keys::VALUE_BITMAP, keys::INDEX_BITMAP, keys::BUCKET_BITMAP] {
        stored_values.append(&mut bitmap::read_named(view.kv(), scope, &[kind])?);
    }
    if stored_values != expected.value_bitmaps {
        let differing = expected
            .value_bitmaps
            .keys()
            .chain(stored_values.keys())
            .filter(|name| stored_values.get(*name) != expected.value_bitmaps.get(*name))
            .count();
        problems.push(format!(
            "{}: {differing} value, index or bucket bitmaps disagree with the records",
            scope.ty
        ));
    }
    let mixed = bitmap::count_mixed_layouts(view.kv(), scope, &[keys::INDEX_BITMAP])?;
    if mixed > 0 {
        problems.push(format!(
            "{}: {mixed} index bitmaps are stored both whole and in chunks",
            scope.ty
        ));
    }
    let pending = bitmap::read(view.kv(), scope, keys::GRAM_PENDING)?;
    let stored_grams = bitmap::read_named(view.kv(), scope, &[keys::GRAM_BITMAP])?;
    let missing = expected
        .grams
        .iter()
        .filter(|(name, want)| {
            let held = stored_grams.get(*name).cloned().unwrap_or_default();
            !(*want - &pending).is_subset(&held)
        })
        .count();
    if missing > 0 {
        problems.push(format!(
            "{}: {missing} trigram bitmaps miss records that are not pending",
            scope.ty
        ));
    }
    for (name, label, want) in [
        (keys::LIVE, "live", &expected.live),
        (keys::TRASH, "trash", &expected.trash),
    ] {
        let stored = bitmap::read(view.kv(), scope, name)?;
        if &stored != want {
            problems.push(format!(
                "{}: {label} bitmap holds {} records, the records say {} ({} differ)",
                scope.ty,
                stored.len(),
                want.len(),
                (&stored ^ want).len()
            ));
        }
    }
    Ok(())
}

fn compare_columns(
    kv: &impl Kv,
    scope: Scope,
    catalog: &crate::schema::Catalog,
    expected: &Expected,
    problems: &mut Vec<String>,
) -> Result<()> {
    let references = catalog
        .properties()
        .iter()
        .filter(|p| p.kind == crate::schema::Kind::Reference);
    for prop in references {
        let stored = column::read_all(kv, scope, prop.pid)?;
        let wanted = expected
            .columns
            .range((prop.pid, 0)..=(prop.pid, u32::MAX))
            .map(|((_, ord), slot)| (*ord, *slot));
        let mut differing = 0;
        let mut seen = 0;
        for (ord, slot) in wanted {
            match (stored.get(&ord), slot) {
                (Some(_), None) => seen += 1,
                (Some(held), Some(want)) if *held == want => seen += 1,
                (None, None) => {}
                _ => differing += 1,
            }
        }
        differing += stored.len() - seen;
        if differing > 0 {
            problems.push(format!(
                "{}: reference column of {} disagrees with the records at {differing} records",
                scope.ty, prop.slug
            ));
        }
    }
    Ok(())
}

fn compare_counters(
    kv: &impl Kv,
    scope: Scope,
    expected: &Expected,
    problems: &mut Vec<String>,
) -> Result<()> {
    let counters = stored_counters(kv, scope)?;
    let max_ord = expected.ords.keys().next_back().copied();
    let checks = [
        (counters.live == expected.live.len(), "live count"),
        (counters.trash == expected.trash.len(), "trash count"),
        (
            max_ord.is_none_or(|m| counters.next_ord > m),
            "next ordinal",
        ),
        (counters.last_id >= expected.max_id, "last id"),
    ];
    for (ok, what) in checks {
        if !ok {
            problems.push(format!(
                "{}: stored {what} disagrees with records",
                scope.ty
            ));
        }
    }
    Ok(())
}
