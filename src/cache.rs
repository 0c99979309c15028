//! The decoded-bitmap cache: bitmaps read or derived from committed states, shared by the
//! snapshots of one open database and bounded by the bytes they hold.
//!
//! An entry is tagged with the mutation counter of its scope's state (every transaction
//! that changes a record or a bitmap of the scope bumps it) and with the [`Group`] of
//! bitmaps it was read from. Each write transaction notes, before it commits, the groups
//! whose bitmaps it changed and the counter of the state it makes. An entry read at state
//! `e` serves a snapshot at state `r` when the group's last noted change is no later than
//! both: then no commit between the two states changed the group, so both hold the same
//! bitmaps. A patch of one property leaves the entries of the others in place.
//!
//! A transaction that changes the bits of a few records also notes those records'
//! ordinals, and the cache keeps the latest [`HISTORY_LEN`] such notes of each group. An
//! entry whose group changed since it was read, by notes that all list their ordinals, is
//! handed out as [`Cached::Stale`] with the ordinals changed between its state and the
//! reader's: the reader brings it up to date by looking at those records alone (see
//! `txn::ReadView`), instead of reading every bitmap again. So a count right after a
//! patch of one record costs a record read more than a cached count, not a full read of
//! its conditions.
//!
//! When the entries outgrow the bound, the least recently used go until a quarter of the
//! bound is free, so that evicting is rare and cheap.

use std::collections::VecDeque;
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

/// How many of the latest noted changes of each group the cache keeps.
pub(crate) const HISTORY_LEN: usize = 32;

/// The most the histories hold together, counted as one per change plus one per ordinal
/// listed (a few MB); past it every history forgets what it holds. A database of many
/// teams notes changes in many groups.
const HISTORY_MAX_UNITS: usize = 1 << 18;

/// The most changed ordinals a stale entry is handed out with; past them it is read again
/// (bringing it up to date reads a record per ordinal).
pub(crate) const REFRESH_MAX_ORDS: usize = 64;

/// What one transaction changed in one group of bitmaps: the ordinals whose bits it
/// changed, or `None` when it did not list them (too many, or a bitmap dropped whole).
pub(crate) type Changed = Option<Vec<u32>>;

/// What the cache holds for a key, as [`BitmapCache::lookup`] finds it.
pub(crate) enum Cached {
    /// The bitmap of the reader's state.
    Hit(Arc<RoaringBitmap>),
    /// A bitmap of an earlier state; between it and the reader's, only the bits of
    /// `changed` (ascending) may differ.
    Stale {
        /// The bitmap as it was read.
        bitmap: Arc<RoaringBitmap>,
        /// The ordinals whose bits the commits in between changed.
        changed: Vec<u32>,
    },
    /// Nothing usable.
    Miss,
}

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
    /// The latest noted changes of each group of a scope (but [`Group::Any`]).
    history: HashMap<(Scope, Group), History>,
    /// What the histories hold together, in [`HISTORY_MAX_UNITS`]' units.
    history_units: usize,
    /// What the entries hold together, by [`Entry::bytes`].
    bytes: usize,
    /// Counts uses, to rank entries by their last one.
    clock: u64,
}

/// The latest changes noted for one group, oldest first, at most [`HISTORY_LEN`].
#[derive(Default)]
struct History {
    changes: VecDeque<(u64, Changed)>,
    /// The latest counter among the changes dropped to keep the bound (0 when none).
    forgotten: u64,
}

/// What one noted change takes of [`HISTORY_MAX_UNITS`].
fn units(changed: &Changed) -> usize {
    1 + changed.as_ref().map_or(0, Vec::len)
}

impl History {
    /// Keeps the change of the state with counter `mutations` (dropping the oldest past
    /// [`HISTORY_LEN`]); returns the units kept and the units dropped.
    fn push(&mut self, mutations: u64, changed: Changed) -> (usize, usize) {
        let listed = changed.filter(|ords| ords.len() <= REFRESH_MAX_ORDS);
        let kept = units(&listed);
        self.changes.push_back((mutations, listed));
        let mut dropped = 0;
        if self.changes.len() > HISTORY_LEN {
            if let Some((at, changed)) = self.changes.pop_front() {
                self.forgotten = self.forgotten.max(at);
                dropped = units(&changed);
            }
        }
        (kept, dropped)
    }

    /// Forgets every change held.
    fn forget_all(&mut self) {
        let latest = self.changes.iter().map(|(at, _)| *at).max().unwrap_or(0);
        self.forgotten = self.forgotten.max(latest);
        self.changes = VecDeque::new();
    }

    /// The ordinals changed by the states after `since` up to `upto`, ascending; `None` if
    /// a change among them was not listed or is forgotten, or they are too many.
    fn changed_between(&self, since: u64, upto: u64) -> Option<Vec<u32>> {
        if self.forgotten > since {
            return None;
        }
        let mut ords = Vec::new();
        for (at, changed) in &self.changes {
            if *at > since && *at <= upto {
                ords.extend_from_slice(changed.as_deref()?);
            }
        }
        ords.sort_unstable();
        ords.dedup();
        (ords.len() <= REFRESH_MAX_ORDS).then_some(ords)
    }
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
                history: HashMap::new(),
                history_units: 0,
                bytes: 0,
                clock: 0,
            }),
        }
    }

    /// The bitmap `key` of `scope` cached for a state with the same bitmaps as the one
    /// with counter `mutations`, if any.
    #[cfg(test)]
    pub fn get(&self, scope: Scope, key: &[u8], mutations: u64) -> Option<Arc<RoaringBitmap>> {
        match self.lookup(scope, key, mutations) {
            Cached::Hit(bitmap) => Some(bitmap),
            _ => None,
        }
    }

    /// What is cached as `key` of `scope` for the state with counter `mutations`: a hit
    /// when the entry's group has not changed between its state and that one, a stale
    /// entry when it has, in a property's group, by a few listed ordinals only (and the
    /// entry is the older of the two), else a miss. An entry that no snapshot can use or
    /// bring up to date any more is dropped on the way.
    pub fn lookup(&self, scope: Scope, key: &[u8], mutations: u64) -> Cached {
        if self.max_bytes == 0 {
            return Cached::Miss;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.clock += 1;
        let slot = (scope, key.to_vec());
        let Some(entry) = inner.map.get_mut(&slot) else {
            return Cached::Miss;
        };
        entry.used = inner.clock;
        let (read_at, group, bitmap) = (entry.mutations, entry.group, entry.bitmap.clone());
        let changed = inner.last_change(scope, group);
        if changed <= read_at.min(mutations) {
            return Cached::Hit(bitmap);
        }
        if read_at < mutations && matches!(group, Group::Prop(_)) {
            if let Some(changed) = inner.changed_between(scope, group, read_at, mutations) {
                return Cached::Stale { bitmap, changed };
            }
        }
        if changed > read_at {
            let entry = inner.map.remove(&slot).expect("found above");
            inner.bytes -= entry.bytes;
        }
        Cached::Miss
    }

    /// Whether no noted change of `group` of `scope` lies between the states with counters
    /// `read_at` and `mutations` (or comes after both): then a bitmap of the group read at
    /// one serves the other. Tracked whatever the bound, also with the cache off.
    pub fn unchanged(&self, scope: Scope, group: Group, read_at: u64, mutations: u64) -> bool {
        self.inner.lock().last_change(scope, group) <= read_at.min(mutations)
    }

    /// Notes that the state with counter `mutations` of `scope`, about to be committed,
    /// changes the bitmaps of each group of `changes`, with the ordinals it lists. Called
    /// before the commit can be seen, so that no snapshot of that state or a later one
    /// takes an entry read before it as it is.
    pub fn note_changes(&self, scope: Scope, changes: Vec<(Group, Changed)>, mutations: u64) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        for (group, changed) in changes {
            let at = inner.changed.entry((scope, group)).or_insert(0);
            *at = (*at).max(mutations);
            if group != Group::Any {
                let history = inner.history.entry((scope, group)).or_default();
                let (kept, dropped) = history.push(mutations, changed);
                inner.history_units = inner.history_units + kept - dropped;
            }
        }
        if inner.history_units > HISTORY_MAX_UNITS {
            inner.history.values_mut().for_each(History::forget_all);
            inner.history_units = 0;
        }
        let latest = inner.latest.entry(scope).or_insert(0);
        *latest = (*latest).max(mutations);
    }

    /// The ordinals whose bits in `group` of `scope` the states after `since` up to `upto`
    /// changed, ascending, if every change between is listed in the history (and no
    /// change of any group came between).
    pub fn changes_between(
        &self,
        scope: Scope,
        group: Group,
        since: u64,
        upto: u64,
    ) -> Option<Vec<u32>> {
        self.inner.lock().changed_between(scope, group, since, upto)
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

    /// The ordinals whose bits in `group` of `scope` the states after `since` up to `upto`
    /// changed; `None` unless no change of any group came between and every change between
    /// is listed in the history.
    fn changed_between(
        &self,
        scope: Scope,
        group: Group,
        since: u64,
        upto: u64,
    ) -> Option<Vec<u32>> {
        let any = self.changed.get(&(scope, Group::Any)).copied().unwrap_or(0);
        if any > since {
            return None;
        }
        self.history
            .get(&(scope, group))?
            .changed_between(since, upto)
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
        cache.note_changes(scope(1), vec![(STATUS, None)], 6);
        cache.note_changes(scope(2), vec![(SCORE, None)], 7);
        assert!(
            cache.get(scope(1), b"k", 7).is_some(),
            "other groups and scopes changed"
        );
        cache.note_changes(scope(1), vec![(SCORE, None)], 8);
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
        cache.note_changes(scope(1), vec![(Group::Any, None)], 10);
        assert!(cache.get(scope(1), b"k", 10).is_none(), "any group changed");
        cache.insert(scope(1), b"all", Group::Any, 10, bitmap_of(0..2));
        cache.note_changes(scope(1), vec![(STATUS, None)], 11);
        assert!(
            cache.get(scope(1), b"all", 11).is_none(),
            "read from every group"
        );
    }

    fn stale_ords(cached: Cached) -> Option<Vec<u32>> {
        match cached {
            Cached::Stale { changed, .. } => Some(changed),
            _ => None,
        }
    }

    /// An entry of a property's group that changes with listed ordinals since is handed
    /// out stale, with the ordinals changed up to the reader's state; an unlisted change,
    /// a change of any group, a forgotten one or too many ordinals make it a miss.
    #[test]
    fn entries_changed_by_listed_ordinals_are_handed_out_stale() {
        let cache = BitmapCache::new(1 << 20);
        cache.insert(scope(1), b"k", SCORE, 5, bitmap_of(0..10));
        cache.note_changes(scope(1), vec![(SCORE, Some(vec![3, 12]))], 6);
        cache.note_changes(scope(1), vec![(SCORE, Some(vec![12, 1]))], 7);
        let at = |m| stale_ords(cache.lookup(scope(1), b"k", m));
        assert_eq!(
            at(6),
            Some(vec![3, 12]),
            "the changes up to the reader's state"
        );
        assert_eq!(at(9), Some(vec![1, 3, 12]), "sorted and distinct");
        assert!(cache.get(scope(1), b"k", 7).is_none(), "never a hit");
        cache.insert(scope(1), b"k", SCORE, 7, bitmap_of(0..2));
        assert_eq!(cache.get(scope(1), b"k", 7).unwrap().len(), 2, "replaced");

        cache.note_changes(scope(1), vec![(SCORE, None)], 8);
        assert!(
            stale_ords(cache.lookup(scope(1), b"k", 8)).is_none(),
            "unlisted"
        );
        cache.insert(scope(1), b"k", SCORE, 8, bitmap_of(0..3));
        cache.note_changes(scope(1), vec![(Group::Any, None)], 9);
        cache.note_changes(scope(1), vec![(SCORE, Some(vec![1]))], 10);
        assert!(
            stale_ords(cache.lookup(scope(1), b"k", 10)).is_none(),
            "any group"
        );

        cache.insert(scope(1), b"k", SCORE, 10, bitmap_of(0..3));
        let many: Vec<u32> = (0..=REFRESH_MAX_ORDS as u32).collect();
        cache.note_changes(scope(1), vec![(SCORE, Some(many))], 11);
        assert!(
            stale_ords(cache.lookup(scope(1), b"k", 11)).is_none(),
            "too many"
        );

        cache.insert(scope(1), b"k", SCORE, 11, bitmap_of(0..3));
        cache.insert(scope(1), b"s", STATUS, 11, bitmap_of(0..3));
        for m in 12..12 + HISTORY_LEN as u64 {
            cache.note_changes(scope(1), vec![(SCORE, Some(vec![m as u32]))], m);
        }
        let last = 11 + HISTORY_LEN as u64;
        assert_eq!(
            at(last).map(|ords| ords.len()),
            Some(HISTORY_LEN),
            "all kept"
        );
        cache.note_changes(scope(1), vec![(SCORE, Some(vec![0]))], last + 1);
        assert!(
            at(last + 1).is_none(),
            "the first change after it is forgotten"
        );
        assert!(
            cache.get(scope(1), b"s", last + 1).is_some(),
            "another group"
        );

        let live = Group::Kind(0);
        cache.insert(scope(1), b"l", live, 20, bitmap_of(0..3));
        cache.note_changes(scope(1), vec![(live, Some(vec![1]))], 21);
        assert!(
            stale_ords(cache.lookup(scope(1), b"l", 21)).is_none(),
            "only properties' entries are handed out stale"
        );
        assert_eq!(
            cache.changes_between(scope(1), live, 20, 21),
            Some(vec![1]),
            "the live bitmap's changes are listed for its own cache"
        );
    }

    /// Past their bound together, the histories forget every change they hold, and what
    /// was noted before cannot be listed any more; later changes can.
    #[test]
    fn the_histories_forget_everything_past_their_bound() {
        let cache = BitmapCache::new(1 << 20);
        cache.note_changes(scope(1), vec![(SCORE, Some(vec![1]))], 2);
        assert_eq!(cache.changes_between(scope(1), SCORE, 1, 2), Some(vec![1]));
        let ords: Vec<u32> = (0..REFRESH_MAX_ORDS as u32).collect();
        let per_note = 1 + ords.len();
        for n in 0..=HISTORY_MAX_UNITS / per_note {
            let group = Group::Prop(10 + (n % 1000) as u16);
            cache.note_changes(scope(2), vec![(group, Some(ords.clone()))], 3 + n as u64);
        }
        assert_eq!(
            cache.changes_between(scope(1), SCORE, 1, 2),
            None,
            "forgotten"
        );
        cache.note_changes(scope(1), vec![(SCORE, Some(vec![7]))], 3);
        assert_eq!(cache.changes_between(scope(1), SCORE, 2, 3), Some(vec![7]));
        assert_eq!(cache.changes_between(scope(1), SCORE, 1, 3), None);
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
