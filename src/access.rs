//! The access module: who may do what (SPEC §6).
//!
//! Contacts, organizations and identities are open to every member of their team. Deals,
//! actions, documents and events carry a grant (see `grant`), stored per record under its
//! ordinal, and mirrored in scope bitmaps: one per (entry, level), holding the records
//! whose grant gives that entry exactly that level. What a principal may read is the union
//! of the scope bitmaps of its team entry, its groups and its user at the needed level or
//! above, which every list, query, count and find ANDs into its domain. Single-record
//! operations read the record's grant row (one lookup). `admin` and `system` roles skip
//! grants.

use std::sync::Arc;

use roaring::RoaringBitmap;
use uuid::Uuid;

use crate::cache::Group;
use crate::error::{Error, Result};
use crate::grant::{scope_name, EntryKind, Grant, Level};
use crate::keys::{self, Scope};
use crate::model::{ObjectType, Principal, Role};
use crate::storage::Kv;
use crate::txn::{Tx, View};

/// Whether grants do not apply to `principal` on records of `ty`.
fn bypasses(principal: &Principal, ty: ObjectType) -> bool {
    principal.is_admin() || !ty.has_grants()
}

/// The records of `scope` whose grant gives `principal` at least `need`, or `None` when
/// grants do not apply (admin and system roles, types without grants).
pub(crate) fn readable(
    view: &impl View,
    scope: Scope,
    principal: &Principal,
    need: Level,
) -> Result<Option<Arc<RoaringBitmap>>> {
    if bypasses(principal, scope.ty) {
        return Ok(None);
    }
    let mut groups = principal.groups.clone();
    groups.sort_unstable();
    groups.dedup();
    let entries: Vec<(EntryKind, Uuid)> = std::iter::once((EntryKind::Team, Uuid::nil()))
        .chain(groups.iter().map(|g| (EntryKind::Group, *g)))
        .chain(std::iter::once((EntryKind::User, principal.user)))
        .collect();
    // The cache key: the level and every entry, which is all the result depends on.
    let mut key = vec![b'g', need as u8];
    for (kind, id) in &entries {
        key.push(*kind as u8);
        key.extend_from_slice(id.as_bytes());
    }
    let group = Group::Kind(keys::SCOPE_BITMAP);
    let allowed = view.derived(scope, &key, group, None, || {
        let mut allowed = RoaringBitmap::new();
        for (kind, id) in &entries {
            for level in Level::ALL.into_iter().filter(|l| *l >= need) {
                allowed |= view.bitmap(scope, &scope_name(*kind, *id, level))?;
            }
        }
        Ok(allowed)
    })?;
    Ok(Some(allowed))
}

/// The stored grant of record `ord` of `scope`, if it has one.
pub(crate) fn load_grant(kv: &impl Kv, scope: Scope, ord: u32) -> Result<Option<Grant>> {
    kv.get_with(&scope.grant(ord), Grant::decode)?.transpose()
}

/// Checks that `principal` may act at level `need` on record `id` (ordinal `ord`) of
/// `scope`: `not_found` if its grant does not let the principal read it (so that nobody
/// learns it exists), `permission_denied` if it may read but not act at `need`.
pub(crate) fn check_record(
    view: &impl View,
    scope: Scope,
    principal: &Principal,
    id: Uuid,
    ord: u32,
    need: Level,
) -> Result<()> {
    if bypasses(principal, scope.ty) {
        return Ok(());
    }
    let grant = load_grant(view.kv(), scope, ord)?.unwrap_or_default();
    match grant.level_of(principal) {
        None => Err(Error::NotFound(format!("no {} {id}", scope.ty))),
        Some(level) if level < need => Err(Error::PermissionDenied(format!(
            "{} {id}: this needs the {:?} level of its grant, the caller has {:?}",
            scope.ty,
            need.as_str(),
            level.as_str()
        ))),
        Some(_) => Ok(()),
    }
}

/// Stores `grant` as the grant of record `ord` of `scope` and moves the record's bits from
/// the scope bitmaps of its old grant (if any) to those of the new one.
pub(crate) fn write_grant(
    tx: &mut Tx<'_, '_>,
    scope: Scope,
    ord: u32,
    grant: &Grant,
) -> Result<()> {
    let old = load_grant(tx.kv(), scope, ord)?;
    let before = old.map(|g| g.scope_names()).unwrap_or_default();
    let after = grant.scope_names();
    for name in before.iter().filter(|n| !after.contains(n)) {
        tx.bitmap_set(scope, name, ord, false)?;
    }
    for name in after.iter().filter(|n| !before.contains(n)) {
        tx.bitmap_set(scope, name, ord, true)?;
    }
    tx.writer().put(&scope.grant(ord), &grant.encode())
}

/// Removes the grant of record `ord` of `scope` and its scope bits (a purge).
pub(crate) fn drop_grant(tx: &mut Tx<'_, '_>, scope: Scope, ord: u32) -> Result<()> {
    if let Some(old) = load_grant(tx.kv(), scope, ord)? {
        for name in old.scope_names() {
            tx.bitmap_set(scope, &name, ord, false)?;
        }
        tx.writer().delete(&scope.grant(ord))?;
    }
    Ok(())
}

/// The grant a new record of `ty` made by `principal` gets: `given` (checked) or the
/// default. `None` for types without grants; giving one there is `invalid_value`.
pub(crate) fn new_grant(
    principal: &Principal,
    ty: ObjectType,
    given: Option<&Grant>,
) -> Result<Option<Grant>> {
    match (ty.has_grants(), given) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(Error::InvalidValue(format!("{ty} records carry no grant"))),
        (true, Some(grant)) => {
            grant.check_has_admin()?;
            Ok(Some(grant.clone()))
        }
        (true, None) => Ok(Some(Grant::default_for(principal.user))),
    }
}

/// Refuses writes to `event` by anyone but the system principal (`read_only_type`).
pub(crate) fn check_type_writable(principal: &Principal, ty: ObjectType) -> Result<()> {
    if ty == ObjectType::Event && principal.role != Role::System {
        return Err(Error::ReadOnlyType(format!(
            "{ty} records are written only by the system principal"
        )));
    }
    Ok(())
}

/// Refuses schema changes by principals without the admin (or system) role.
pub(crate) fn check_schema_admin(principal: &Principal, ty: ObjectType) -> Result<()> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "changing the {ty} schema needs the admin role"
        )))
    }
}
