//! The decoded-bitmap cache: bitmaps read or derived from committed states, shared by the
//! snapshots of one open database and bounded by the bytes they hold.
//!
//! An entry is tagged with the mutation counter of its scope's state (every transaction
//! that changes a record of the scope bumps it), so a snapshot only takes an entry read from
//! the very state it sees. When the entries outgrow the bound, the least recently used go
//! until a quarter of the bound is free, so that evicting is rare and cheap.

use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;
use roaring::RoaringBitmap;

use crate::keys::Scope;

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
    /// What the entries hold together, by [`Entry::bytes`].
    bytes: usize,
    /// Counts uses, to rank entries by their last one.
    clock: u64,
}

struct Entry {
    /// The scope's mutation counter of the state the bitmap was read from.
    mutations: u64,
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
                bytes: 0,
                clock: 0,
            }),
        }
    }

    /// The bitmap `key` of `scope` cached for the state with counter `mutations`, if any.
    /// An entry of an older state is dropped on the way: no snapshot taken from now on
    /// can use it.
    pub fn get(&self, scope: Scope, key: &[u8], mutations: u64) -> Option<Arc<RoaringBitmap>> {
        if self.max_bytes == 0 {
            return None;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.clock += 1;
        let slot = (scope, key.to_vec());
        let entry = inner.map.get_mut(&slot)?;
        if entry.mutations == mutations {
            entry.used = inner.clock;
            return Some(entry.bitmap.clone());
        }
        if entry.mutations < mutations {
            inner.bytes -= entry.bytes;
            inner.map.remove(&slot);
        }
        None
    }

    /// Remembers `bitmap` as `key` of `scope` in the committed state with counter
    /// `mutations`, unless an entry of a newer state is held or the bitmap alone would
    /// take more than a quarter of the bound.
    pub fn insert(&self, scope: Scope, key: &[u8], mutations: u64, bitmap: Arc<RoaringBitmap>) {
        let bytes = bitmap.serialized_size() + key.len() + ENTRY_OVERHEAD;
        if bytes > self.max_bytes / 4 {
            return;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.clock += 1;
        let used = inner.clock;
        let slot = (scope, key.to_vec());
        if let Some(held) = inner.map.get(&slot) {
            if held.mutations > mutations {
                return;
            }
            inner.bytes -= held.bytes;
        }
        inner.bytes += bytes;
        let entry = Entry {
            mutations,
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

    /// An entry serves only its own state; a newer state's read drops it, an older one's
    /// neither replaces nor drops it.
    #[test]
    fn entries_serve_only_the_state_they_were_read_from() {
        let cache = BitmapCache::new(1 << 20);
        cache.insert(scope(1), b"k", 5, bitmap_of(0..10));
        assert_eq!(cache.get(scope(1), b"k", 5).unwrap().len(), 10);
        assert!(cache.get(scope(2), b"k", 5).is_none(), "another scope");
        assert!(cache.get(scope(1), b"j", 5).is_none(), "another key");
        assert!(cache.get(scope(1), b"k", 4).is_none(), "an older state");
        cache.insert(scope(1), b"k", 4, bitmap_of(0..3));
        assert_eq!(cache.get(scope(1), b"k", 5).unwrap().len(), 10, "kept");
        assert!(cache.get(scope(1), b"k", 6).is_none(), "a newer state");
        assert!(
            cache.get(scope(1), b"k", 5).is_none(),
            "dropped by the newer read"
        );
        assert_eq!(cache.bytes(), 0);
        cache.insert(scope(1), b"k", 6, bitmap_of(0..4));
        cache.insert(scope(1), b"k", 7, bitmap_of(0..7));
        assert_eq!(cache.get(scope(1), b"k", 7).unwrap().len(), 7, "replaced");
        let one = bitmap_of(0..7).serialized_size() + 1 + ENTRY_OVERHEAD;
        assert_eq!(cache.bytes(), one, "the replaced entry is uncounted");
    }

    /// Past the bound, the least recently used entries go first, down to three quarters of
    /// it; a bitmap larger than a quarter of the bound is not kept at all.
    #[test]
    fn the_least_recently_used_entries_go_past_the_bound() {
        let each = bitmap_of(0..100).serialized_size() + 1 + ENTRY_OVERHEAD;
        let cache = BitmapCache::new(10 * each);
        for key in 0..10u8 {
            cache.insert(scope(1), &[key], 1, bitmap_of(0..100));
        }
        assert_eq!(cache.bytes(), 10 * each);
        // Use the first two again: then 2, 3, … are the least recently used. Eleven
        // entries down to at most seven and a half drops four.
        assert!(cache.get(scope(1), &[0], 1).is_some());
        assert!(cache.get(scope(1), &[1], 1).is_some());
        cache.insert(scope(1), &[10], 1, bitmap_of(0..100));
        assert!(cache.bytes() <= 10 * each - 10 * each / 4);
        for key in [0u8, 1, 6, 7, 8, 9, 10] {
            assert!(cache.get(scope(1), &[key], 1).is_some(), "{key} kept");
        }
        for key in 2..=5u8 {
            assert!(cache.get(scope(1), &[key], 1).is_none(), "{key} evicted");
        }
        let held = cache.bytes();
        cache.insert(scope(1), b"big", 1, bitmap_of(0..100_000));
        assert!(cache.get(scope(1), b"big", 1).is_none());
        assert_eq!(cache.bytes(), held);
        let off = BitmapCache::new(0);
        off.insert(scope(1), b"k", 1, bitmap_of(0..1));
        assert!(off.get(scope(1), b"k", 1).is_none());
    }
}
