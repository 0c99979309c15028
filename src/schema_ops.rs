//! Schema operations that touch data: add a property, change its options or flags, remove
//! it. Each runs in one write transaction, checks the data first, and changes nothing when
//! it refuses.

use std::collections::HashMap;

use uuid::Uuid;

use crate::access;
use crate::codec::{encode_record, StoredValue};
use crate::error::{Error, Result};
use crate::index;
use crate::keys::Scope;
use crate::model::{ObjectType, Principal};
use crate::records::each_record;
use crate::schema::{Catalog, Property, PropertyChange, PropertySpec};
use crate::storage::Kv;
use crate::txn::{Tx, View};

/// add property: returns the new property as stored.
pub(crate) fn add_property(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    spec: &PropertySpec,
) -> Result<Property> {
    access::check_schema_admin(principal, ty)?;
    let scope = tx.scope_for_write(principal.team, ty)?;
    let mut catalog = (*tx.catalog(principal.team, ty)?).clone();
    let property = catalog.add(spec, |_| Uuid::new_v4())?.clone();
    tx.put_catalog(principal.team, scope, catalog)?;
    Ok(property)
}

/// update property: options, `unique` and `indexed`; returns the property as stored.
pub(crate) fn update_property(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    slug: &str,
    change: &PropertyChange,
) -> Result<Property> {
    access::check_schema_admin(principal, ty)?;
    let scope = tx.scope_for_write(principal.team, ty)?;
    let mut catalog = (*tx.catalog(principal.team, ty)?).clone();
    let before = catalog.require(slug)?.clone();
    catalog.change_options(
        slug,
        change,
        |_| Uuid::new_v4(),
        |prop, num| option_in_use(tx.kv(), scope, prop.pid, num),
    )?;
    let unique = change.unique.unwrap_or(before.unique);
    let indexed = change.indexed.unwrap_or(before.indexed);
    let search = change.search.unwrap_or(before.search);
    catalog.set_flags(slug, unique, indexed, search)?;
    let after = catalog.require(slug)?.clone();
    if after.unique && !before.unique {
        check_no_duplicates(tx.kv(), scope, &after)?;
    }
    let indexing = |p: &Property| (p.in_value_index(), p.searchable());
    if indexing(&before) != indexing(&after) {
        drop_index(tx, scope, after.pid)?;
        if after.in_value_index() || after.searchable() {
            build_entries(tx, scope, &catalog, after.pid)?;
        }
        // The scope's bitmaps changed: a new state, for the caches of committed states.
        tx.touch(scope)?;
    }
    tx.put_catalog(principal.team, scope, catalog)?;
    Ok(after)
}

fn option_in_use(kv: &impl Kv, scope: Scope, pid: u16, num: u32) -> Result<bool> {
    let mut used = false;
    each_record(kv, scope, |_, record| {
        used = match record.value(pid) {
            Some(StoredValue::Option(n)) => *n == num,
            Some(StoredValue::Options(ns)) => ns.contains(&num),
            _ => false,
        };
        Ok(!used)
    })?;
    Ok(used)
}

/// The value as uniqueness compares it (e-mail folded, numbers as f64 bits, full text).
fn unique_form(prop: &Property, value: &StoredValue) -> String {
    match value {
        StoredValue::Str(s) if prop.kind == crate::schema::Kind::Email => s.to_lowercase(),
        StoredValue::Str(s) => s.clone(),
        StoredValue::Int(i) => (*i as f64).to_bits().to_string(),
        StoredValue::Float(f) => f.to_bits().to_string(),
        other => format!("{other:?}"),
    }
}

fn check_no_duplicates(kv: &impl Kv, scope: Scope, prop: &Property) -> Result<()> {
    let mut seen: HashMap<String, u128> = HashMap::new();
    let mut clash = None;
    each_record(kv, scope, |id, record| {
        let Some(value) = record.value(prop.pid).filter(|_| record.is_live()) else {
            return Ok(true);
        };
        if let Some(first) = seen.insert(unique_form(prop, value), id) {
            clash = Some((first, id, prop.to_json_value(value)));
            return Ok(false);
        }
        Ok(true)
    })?;
    match clash {
        Some((a, b, value)) => Err(Error::UniqueViolation(format!(
            "{} {value} is held by {} {} and {}",
            prop.slug,
            scope.ty,
            Uuid::from_u128(a),
            Uuid::from_u128(b)
        ))),
        None => Ok(()),
    }
}

/// Adds every live record holding property `pid` to its value index, bucket and trigram
/// bitmaps.
fn build_entries(tx: &mut Tx<'_, '_>, scope: Scope, catalog: &Catalog, pid: u16) -> Result<()> {
    let prop = catalog.by_pid(pid).expect("property just checked").clone();
    let mut entries = Vec::new();
    each_record(tx.kv(), scope, |_, record| {
        if let (true, Some(value)) = (record.is_live(), record.value(pid)) {
            let mut names = index::Names::default();
            index::index_names(&prop, value, &mut names);
            index::gram_names(&prop, value, &mut names);
            for (name, layout) in names.iter_laid() {
                entries.push((name.to_vec(), layout, record.ord));
            }
        }
        Ok(true)
    })?;
    for (name, layout, ord) in entries {
        tx.bitmap_set_laid(scope, &name, layout, ord, true)?;
    }
    Ok(())
}

/// Deletes the value index, bucket and trigram bitmaps of property `pid`.
fn drop_index(tx: &mut Tx<'_, '_>, scope: Scope, pid: u16) -> Result<()> {
    let [_, index, buckets, grams] = index::property_prefixes(pid);
    for prefix in [index, buckets, grams] {
        tx.bitmap_drop(scope, &prefix)?;
    }
    Ok(())
}

/// remove property: refused (`conflict`) while records hold values, unless `force`, which
/// removes the values from every record first.
pub(crate) fn remove_property(
    tx: &mut Tx<'_, '_>,
    principal: &Principal,
    ty: ObjectType,
    slug: &str,
    force: bool,
) -> Result<()> {
    access::check_schema_admin(principal, ty)?;
    let scope = tx.scope_for_write(principal.team, ty)?;
    let mut catalog = (*tx.catalog(principal.team, ty)?).clone();
    let prop = catalog.require(slug)?.clone();
    let mut holders = Vec::new();
    each_record(tx.kv(), scope, |id, record| {
        if record.value(prop.pid).is_some() {
            holders.push((id, record));
        }
        Ok(true)
    })?;
    if !holders.is_empty() && !force {
        return Err(Error::Conflict(format!(
            "property {slug:?} still holds values on {} records; remove it with force to drop them",
            holders.len()
        )));
    }
    for prefix in index::property_prefixes(prop.pid) {
        tx.bitmap_drop(scope, &prefix)?;
    }
    tx.column_drop(scope, prop.pid)?;
    for (id, mut record) in holders {
        record.set(prop.pid, None);
        record.updated_at = tx.now;
        tx.writer()
            .put(&scope.record(id), &encode_record(&record)?)?;
    }
    tx.touch(scope)?;
    catalog.remove(slug)?;
    tx.put_catalog(principal.team, scope, catalog)
}
