//! The decoded-bitmap cache: bitmaps read or derived from committed states, shared by the
//! snapshots of one open database and bounded by the bytes they hold.
//!
//! An entry is tagged with the mutation counter of its scope's state (every transaction
//! that changes a record or a bitmap of the scope bumps it) and with the [`Group`] of
//! bitmaps it was read from. Each write transaction notes, before it commits, the groups
//! whose bitmaps it changed and the counter of the state it makes. An entry read at state
//! `e` serves a snapshot at state `r` when the group's last noted change is no later than
//! both: then no commit between the two states changed the group, so both hold the same
//! bitmaps. A patch of one property leaves the entries of the others in place. When the
//! entries outgrow the bound, the least recently used go until a quarter of the bound is
//! free, so that evicting is rare and cheap.

use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;
use roaring::RoaringBitmap;

use crate::keys::{self, Scope};

/// What a cached bitmap was read from, and what a write changed: the bitmaps derived from
/// one property's values (value, index, range bucket and trigram bitmaps), the bitmaps of
/// one other kind (live, trash, pending trigrams, grant scopes), or any bitmaps at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Group {
    /// The bitmaps of property number `pid`.
    Prop(u16),
    /// The bitmaps whose names start with this byte (not a property's kind).
    Kind(u8),
    /// Any bitmap of the scope.
    Any,
}

impl Group {
    /// The group of bitmap `name`, or of every bitmap whose name starts with `name`.
    pub fn of(name: &[u8]) -> Group {
        let by_property = [
            keys::VALUE_BITMAP,
            keys::INDEX_BITMAP,
            keys::BUCKET_BITMAP,
            keys::GRAM_BITMAP,
        ];
        match name {
            [kind, hi, lo, ..] if by_property.contains(kind) => {
                Group::Prop(u16::from_be_bytes([*hi, *lo]))
            }
            [kind, ..] if !by_property.contains(kind) => Group::Kind(*kind),
            _ => Group::Any,
        }
    }

    /// The group of all of `names`: theirs when they share one, else [`Group::Any`].
    pub fn of_all<'n>(mut names: impl Iterator<Item = &'n [u8]>) -> Group {
        let first = names.next().map_or(Group::Any, Group::of);
        match names.all(|name| Group::of(name) == first) {
            true => first,
            false => Group::Any,
        }
    }
}

/// What an entry costs besides its bitmap's serialized size: the map slot, the key's
/// allocation, the `Arc`.
const ENTRY_OVERHEAD: usize = 128;

/// Bitmaps by scope and key, each for one committed state of its scope.
pub(crate) struct BitmapCache {
    /// The most bytes the entries may hold together; 0 turns the cache off.
    max_bytes: usize,
    inner: Mutex<Entries>,
}

struct Entries {
    map: HashMap<(Scope, Vec<u8>), Entry>,
    /// The counter of the latest state noted as changing each group of a scope (for
    /// [`Group::Any`]: a change noted for no particular group).
    changed: HashMap<(Scope, Group), u64>,
    /// The counter of the latest state noted as changing anything in each scope.
    latest: HashMap<Scope, u64>,
    /// What the entries hold together, by [`Entry::bytes`].
    bytes: usize,
    /// Counts uses, to rank entries by their last one.
    clock: u64,
}

struct Entry {
    /// The scope's mutation counter of the state the bitmap was read from.
    mutations: u64,
    /// What it was read from.
    group: Group,
    bitmap: Arc<RoaringBitmap>,
    /// What the entry is counted as holding.
    bytes: usize,
    /// The clock at its last use.
    used: u64,
}

impl BitmapCache {
    /// A cache holding at most `max_bytes` (none at all when 0).
    pub fn new(max_bytes: usize) -> BitmapCache {
        BitmapCache {
            max_bytes,
            inner: Mutex::new(Entries {
                map: HashMap::new(),
                changed: HashMap::new(),
                latest: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
        }
    }

    /// The bitmap `key` of `scope` cached for a state with the same bitmaps as the one
    /// with counter `mutations`, if any. An entry that no snapshot can use any more (its
    /// group changed after it was read) is dropped on the way.
    pub fn get(&self, scope: Scope, key: &[u8], mutations: u64) -> Option<Arc<RoaringBitmap>> {
        if self.max_bytes == 0 {
            return None;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.clock += 1;
        let slot = (scope, key.to_vec());
        let entry = inner.map.get(&slot)?;
        let changed = inner.last_change(scope, entry.group);
        if changed <= entry.mutations.min(mutations) {
            let entry = inner.map.get_mut(&slot).expect("found above");
            entry.used = inner.clock;
            return Some(entry.bitmap.clone());
        }
        if changed > entry.mutations {
            inner.bytes -= entry.bytes;
            inner.map.remove(&slot);
        }
        None
    }

    /// Notes that the state with counter `mutations` of `scope`, about to be committed,
    /// changes the bitmaps of `groups`. Called before the commit can be seen, so that no
    /// snapshot of that state or a later one takes an entry read before it.
    pub fn note_changes(&self, scope: Scope, groups: &[Group], mutations: u64) {
        let mut inner = self.inner.lock();
        for group in groups {
            let at = inner.changed.entry((scope, *group)).or_insert(0);
            *at = (*at).max(mutations);
        }
        let latest = inner.latest.entry(scope).or_insert(0);
        *latest = (*latest).max(mutations);
    }

    /// Remembers `bitmap`, read from `group`, as `key` of `scope` in the committed state
    /// with counter `mutations`; unless it was read before the group's last noted change,
    /// a usable entry is held already, or the bitmap alone would take more than a quarter
    /// of the bound.
    pub fn insert(
        &self,
        scope: Scope,
        key: &[u8],
        group: Group,
        mutations: u64,
        bitmap: Arc<RoaringBitmap>,
    ) {
        let bytes = bitmap.serialized_size() + key.len() + ENTRY_OVERHEAD;
        if bytes > self.max_bytes / 4 {
            return;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.clock += 1;
        let used = inner.clock;
        if inner.last_change(scope, group) > mutations {
            return; // read before the group's last change: no snapshot can use it any more
        }
        let slot = (scope, key.to_vec());
        if let Some(held) = inner.map.get(&slot) {
            if inner.last_change(scope, held.group) <= held.mutations {
                return; // the held entry serves the same snapshots
            }
            inner.bytes -= held.bytes;
        }
        inner.bytes += bytes;
        let entry = Entry {
            mutations,
            group,
            bitmap,
            bytes,
            used,
        };
        inner.map.insert(slot, entry);
        if inner.bytes > self.max_bytes {
            inner.evict_to(self.max_bytes - self.max_bytes / 4);
        }
    }

    /// The bytes the entries are counted as holding.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

impl Entries {
    /// The counter of the latest state noted as changing `group` of `scope` (0 if none).
    fn last_change(&self, scope: Scope, group: Group) -> u64 {
        let noted = |group: Group| self.changed.get(&(scope, group)).copied().unwrap_or(0);
        match group {
            Group::Any => self.latest.get(&scope).copied().unwrap_or(0),
            group => noted(group).max(noted(Group::Any)),
        }
    }

    /// Drops the least recently used entries until they hold at most `target` bytes.
    fn evict_to(&mut self, target: usize) {
        let mut by_use: Vec<(u64, usize)> = self.map.values().map(|e| (e.used, e.bytes)).collect();
        by_use.sort_unstable();
        let mut freed = 0;
        let mut last_dropped = 0;
        for (used, bytes) in by_use {
            if self.bytes - freed <= target {
                break;
            }
            freed += bytes;
            last_dropped = used;
        }
        self.map.retain(|_, entry| entry.used > last_dropped);
        self.bytes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectType;

    fn scope(team: u32) -> Scope {
        Scope {
            team,
            ty: ObjectType::Contact,
        }
    }

    fn bitmap_of(range: std::ops::Range<u32>) -> Arc<RoaringBitmap> {
        Arc::new(range.collect())
    }

    const SCORE: Group = Group::Prop(3);
    const STATUS: Group = Group::Prop(4);

    /// An entry serves every state from the last noted change of its group on: a change
    /// of another group leaves it, a change of its own (or of any group) ends it, and a
    /// snapshot older than that change is not served either.
    #[test]
    fn entries_serve_the_states_since_their_group_last_changed() {
        let cache = BitmapCache::new(1 << 20);
        cache.insert(scope(1), b"k", SCORE, 5, bitmap_of(0..10));
        assert_eq!(cache.get(scope(1), b"k", 5).unwrap().len(), 10);
        assert!(cache.get(scope(2), b"k", 5).is_none(), "another scope");
        assert!(cache.get(scope(1), b"j", 5).is_none(), "another key");
        assert!(
            cache.get(scope(1), b"k", 9).is_some(),
            "no change noted since"
        );
        cache.note_changes(scope(1), &[STATUS], 6);
        cache.note_changes(scope(2), &[SCORE], 7);
        assert!(
            cache.get(scope(1), b"k", 7).is_some(),
            "other groups and scopes changed"
        );
        cache.note_changes(scope(1), &[SCORE], 8);
        assert!(
            cache.get(scope(1), b"k", 7).is_none(),
            "read before the change"
        );
        assert!(cache.get(scope(1), b"k", 8).is_none());
        assert_eq!(cache.bytes(), 0, "dropped: nothing can use it any more");
        cache.insert(scope(1), b"k", SCORE, 7, bitmap_of(0..3));
        assert!(
            cache.get(scope(1), b"k", 8).is_none(),
            "read before the change: not kept"
        );
        cache.insert(scope(1), b"k", SCORE, 8, bitmap_of(0..4));
        assert_eq!(cache.get(scope(1), b"k", 9).unwrap().len(), 4);
        assert!(cache.get(scope(1), b"k", 7).is_none(), "an older snapshot");
        cache.insert(scope(1), b"k", SCORE, 9, bitmap_of(0..5));
        assert_eq!(
            cache.get(scope(1), b"k", 9).unwrap().len(),
            4,
            "the held one serves"
        );
        let one = bitmap_of(0..4).serialized_size() + 1 + ENTRY_OVERHEAD;
        assert_eq!(cache.bytes(), one);
        cache.note_changes(scope(1), &[Group::Any], 10);
        assert!(cache.get(scope(1), b"k", 10).is_none(), "any group changed");
        cache.insert(scope(1), b"all", Group::Any, 10, bitmap_of(0..2));
        cache.note_changes(scope(1), &[STATUS], 11);
        assert!(
            cache.get(scope(1), b"all", 11).is_none(),
            "read from every group"
        );
    }

    /// Bitmap names map to the property they derive from, or to their kind.
    #[test]
    fn names_belong_to_their_property_or_kind() {
        assert_eq!(Group::of(&[keys::INDEX_BITMAP, 0, 3, 9, 9]), SCORE);
        assert_eq!(Group::of(&[keys::BUCKET_BITMAP, 0, 3, 1]), SCORE);
        assert_eq!(Group::of(&[keys::VALUE_BITMAP, 0, 4]), STATUS);
        assert_eq!(Group::of(keys::LIVE), Group::Kind(0));
        assert_eq!(
            Group::of(&[keys::SCOPE_BITMAP, 1, 2, 3]),
            Group::Kind(keys::SCOPE_BITMAP)
        );
        assert_eq!(
            Group::of(&[keys::INDEX_BITMAP]),
            Group::Any,
            "every index bitmap"
        );
        assert_eq!(Group::of(&[]), Group::Any);
        let names: [&[u8]; 2] = [
            &[keys::VALUE_BITMAP, 0, 4, 1],
            &[keys::VALUE_BITMAP, 0, 4, 2],
        ];
        assert_eq!(Group::of_all(names.into_iter()), STATUS);
        let mixed: [&[u8]; 2] = [
            &[keys::VALUE_BITMAP, 0, 4, 1],
            &[keys::VALUE_BITMAP, 0, 5, 1],
        ];
        assert_eq!(Group::of_all(mixed.into_iter()), Group::Any);
        assert_eq!(Group::of_all(std::iter::empty()), Group::Any);
    }

    /// Past the bound, the least recently used entries go first, down to three quarters of
    /// it; a bitmap larger than a quarter of the bound is not kept at all.
    #[test]
    fn the_least_recently_used_entries_go_past_the_bound() {
        let each = bitmap_of(0..100).serialized_size() + 1 + ENTRY_OVERHEAD;
        let cache = BitmapCache::new(10 * each);
        for key in 0..10u8 {
            cache.insert(scope(1), &[key], SCORE, 1, bitmap_of(0..100));
        }
        assert_eq!(cache.bytes(), 10 * each);
        // Use the first two again: then 2, 3, … are the least recently used. Eleven
        // entries down to at most seven and a half drops four.
        assert!(cache.get(scope(1), &[0], 1).is_some());
        assert!(cache.get(scope(1), &[1], 1).is_some());
        cache.insert(scope(1), &[10], SCORE, 1, bitmap_of(0..100));
        assert!(cache.bytes() <= 10 * each - 10 * each / 4);
        for key in [0u8, 1, 6, 7, 8, 9, 10] {
            assert!(cache.get(scope(1), &[key], 1).is_some(), "{key} kept");
        }
        for key in 2..=5u8 {
            assert!(cache.get(scope(1), &[key], 1).is_none(), "{key} evicted");
        }
        let held = cache.bytes();
        cache.insert(scope(1), b"big", SCORE, 1, bitmap_of(0..100_000));
        assert!(cache.get(scope(1), b"big", 1).is_none());
        assert_eq!(cache.bytes(), held);
        let off = BitmapCache::new(0);
        off.insert(scope(1), b"k", SCORE, 1, bitmap_of(0..1));
        assert!(off.get(scope(1), b"k", 1).is_none());
    }
}
