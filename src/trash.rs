//! Purging the trash: records soft-deleted before a cutoff are removed for good.

use crate::access;
use crate::error::Result;
use crate::keys::{self, Scope};
use crate::model::ObjectType;
use crate::records::{load, ord_to_id};
use crate::storage::Kv;
use crate::txn::{Tx, View};

/// Removes every trashed record (of every team and type) deleted before `cutoff` (epoch
/// microseconds): the record, its ordinal entry, its grant and scope bits, and its trash
/// bit. Returns how many.
pub(crate) fn purge(tx: &mut Tx<'_, '_>, cutoff: i64) -> Result<u64> {
    let mut teams = Vec::new();
    tx.kv().scan_prefix(&[keys::TEAM], |_, value| {
        teams.extend(keys::read_u32(value));
        Ok(true)
    })?;
    let mut purged = 0;
    for team in teams {
        for ty in ObjectType::ALL {
            purged += purge_scope(tx, Scope { team, ty }, cutoff)?;
        }
    }
    Ok(purged)
}

fn purge_scope(tx: &mut Tx<'_, '_>, scope: Scope, cutoff: i64) -> Result<u64> {
    let trash = tx.bitmap(scope, keys::TRASH)?;
    let mut purged = 0;
    for ord in &trash {
        let id = ord_to_id(tx.kv(), scope, ord)?;
        let expired = load(tx.kv(), scope, id)?
            .and_then(|r| r.deleted_at)
            .is_some_and(|at| at < cutoff);
        if !expired {
            continue;
        }
        tx.writer().delete(&scope.record(id))?;
        tx.writer().delete(&scope.ord(ord))?;
        access::drop_grant(tx, scope, ord)?;
        tx.bitmap_set(scope, keys::TRASH, ord, false)?;
        purged += 1;
    }
    if purged > 0 {
        let mut counters = tx.counters(scope)?;
        counters.trash -= purged;
        tx.set_counters(scope, counters);
    }
    Ok(purged)
}
