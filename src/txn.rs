//! Transaction views: what a read sees (a storage snapshot) and what a write sees (its own
//! pending changes on top), behind one [`View`] trait so each operation is written once.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;
use uuid::Uuid;

use crate::bitmap::{self, BitmapBuffer, Layout};
use crate::cache::{BitmapCache, Cached, Group};
use crate::codec;
use crate::column::{self, ColumnBuffer};
use crate::error::{Error, Result};
use crate::keys::{self, Scope};
use crate::model::ObjectType;
use crate::schema::Catalog;
use crate::storage::{Kv, Reader, Writer};
use crate::{index, records};

/// Caches shared by every transaction of one open database. Entries are only ever taken
/// from committed state, and catalogs are used only for a snapshot of the stamp they were
/// read at or after a check against the stored version, so a reader never sees a cache
/// newer or older than its own snapshot.
pub(crate) struct Shared {
    teams: RwLock<HashMap<Uuid, u32>>,
    /// Catalogs by team and type, each with the stamp of the snapshots it is known to be
    /// the catalog of (see [`View::stamp`]), if any.
    catalogs: Mutex<HashMap<(Uuid, ObjectType), StampedCatalog>>,
    /// The `name` of records, as pages show them for references, per state of their scope.
    names: IdCaches<serde_json::Value>,
    /// The ordinals of live records, per state of their scope: a write that references a
    /// record checks that it is live, and a bulk load of contacts checks an organization per
    /// contact (a B-tree read each, 4% of the load).
    live_ords: IdCaches<u32>,
    /// The live bitmap of each scope for the state with that mutation counter: every query
    /// starts from it, and decoding it is 80 µs at a million records.
    live: Mutex<HashMap<Scope, (u64, Arc<RoaringBitmap>)>>,
    /// Bitmaps read or derived from a committed state of a scope (a query condition's
    /// bitmaps, a principal's grant scope), by scope and key.
    bitmaps: BitmapCache,
}

/// A cached catalog with the stamp of the snapshots it is the catalog of, if known.
type StampedCatalog = (Arc<Catalog>, Option<u64>);

/// Values by record id read from one committed state of a scope: valid while the scope's
/// mutation counter and catalog version are what they were then (the state).
struct IdCache<V> {
    state: (u64, u64),
    values: HashMap<u128, V>,
}

/// [`IdCache`]s by scope, one state each, with at most [`ID_CACHE_MAX`] values in all.
struct IdCaches<V>(Mutex<ScopeCaches<V>>);

/// The [`IdCache`] of each scope and how many values they hold together.
struct ScopeCaches<V> {
    scopes: HashMap<Scope, IdCache<V>>,
    values: usize,
}

impl<V> Default for IdCaches<V> {
    fn default() -> Self {
        IdCaches(Mutex::new(ScopeCaches {
            scopes: HashMap::new(),
            values: 0,
        }))
    }
}

impl<V: Clone> IdCaches<V> {
    /// The cached values of `ids` in `scope` for `state` (`None` where missing), in order.
    fn get(&self, scope: Scope, state: (u64, u64), ids: &[u128]) -> Vec<Option<V>> {
        self.lookup(scope, state, |values| {
            ids.iter().map(|id| values?.get(id).cloned()).collect()
        })
    }

    /// The cached value of `id` in `scope` for `state`, if any.
    fn get_one(&self, scope: Scope, state: (u64, u64), id: u128) -> Option<V> {
        self.lookup(scope, state, |values| values?.get(&id).cloned())
    }

    /// Calls `f` with the values cached for `state` of `scope` (`None` if none are).
    fn lookup<R>(
        &self,
        scope: Scope,
        state: (u64, u64),
        f: impl FnOnce(Option<&HashMap<u128, V>>) -> R,
    ) -> R {
        let cache = self.0.lock();
        f(cache
            .scopes
            .get(&scope)
            .filter(|c| c.state == state)
            .map(|c| &c.values))
    }

    /// Remembers values read from the committed `state` of `scope`, replacing those of an
    /// older state (those of a newer one are kept, and `found` dropped).
    fn remember(
        &self,
        scope: Scope,
        state: (u64, u64),
        found: impl IntoIterator<Item = (u128, V)>,
    ) {
        let mut cache = self.0.lock();
        let cache = &mut *cache;
        if cache.values >= ID_CACHE_MAX
            || cache.scopes.len() >= NAME_CACHE_SCOPES && !cache.scopes.contains_key(&scope)
        {
            cache.scopes.clear();
            cache.values = 0;
        }
        let entry = cache.scopes.entry(scope).or_insert_with(|| IdCache {
            state,
            values: HashMap::new(),
        });
        if entry.state != state {
            if state.0 < entry.state.0 {
                return; // an older snapshot: keep the newer state's values
            }
            cache.values -= entry.values.len();
            *entry = IdCache {
                state,
                values: HashMap::new(),
            };
        }
        for (id, value) in found {
            if entry.values.len() >= NAME_CACHE_MAX || cache.values >= ID_CACHE_MAX {
                break;
            }
            if entry.values.insert(id, value).is_none() {
                cache.values += 1;
            }
        }
    }
}

/// The group of the live bitmap in the bitmap cache's tracking of changes.
const LIVE_GROUP: Group = Group::Kind(keys::LIVE[0]);

/// At most this many values (names, ordinals) are cached per scope.
const NAME_CACHE_MAX: usize = 262_144;
/// At most this many values of one kind are cached for all scopes together (then the cache
/// starts over): a million names or ordinals, tens of MB. Small in unit tests.
#[cfg(not(test))]
const ID_CACHE_MAX: usize = 1 << 20;
#[cfg(test)]
const ID_CACHE_MAX: usize = 64;
/// At most this many scopes have cached values of one kind; past it the cache starts over.
const NAME_CACHE_SCOPES: usize = 64;

impl Shared {
    /// Empty caches, with at most `bitmap_cache_bytes` of cached bitmaps.
    pub fn new(bitmap_cache_bytes: usize) -> Shared {
        Shared {
            teams: RwLock::default(),
            catalogs: Mutex::default(),
            names: IdCaches::default(),
            live_ords: IdCaches::default(),
            live: Mutex::default(),
            bitmaps: BitmapCache::new(bitmap_cache_bytes),
        }
    }

    /// Looks up the cached names of `ids` in `scope` for the state (`mutations`,
    /// `catalog_version`); returns the names found (in `ids` order, `None` where missing).
    pub fn cached_names(
        &self,
        scope: Scope,
        mutations: u64,
        catalog_version: u64,
        ids: &[u128],
    ) -> Vec<Option<serde_json::Value>> {
        self.names.get(scope, (mutations, catalog_version), ids)
    }

    /// Remembers names read from a committed state (`mutations`, `catalog_version`) of
    /// `scope`, replacing names of any other state.
    pub fn remember_names(
        &self,
        scope: Scope,
        mutations: u64,
        catalog_version: u64,
        found: impl IntoIterator<Item = (u128, serde_json::Value)>,
    ) {
        self.names
            .remember(scope, (mutations, catalog_version), found);
    }

    /// The cached live bitmap of `scope` for the state with counter `mutations`: the one
    /// held, if no commit between its state and that one changed the live bitmap (a patch
    /// leaves it; the bitmap cache tracks the changes, see [`BitmapCache::unchanged`]).
    fn cached_live(&self, scope: Scope, mutations: u64) -> Option<Arc<RoaringBitmap>> {
        match self.live.lock().get(&scope) {
            Some((at, live)) if self.bitmaps.unchanged(scope, LIVE_GROUP, *at, mutations) => {
                Some(live.clone())
            }
            _ => None,
        }
    }

    /// The cached live bitmap of `scope` of an earlier state than `mutations`, with the
    /// ordinals whose bits changed since, when the changes between are all listed.
    fn stale_live(&self, scope: Scope, mutations: u64) -> Option<(Arc<RoaringBitmap>, Vec<u32>)> {
        let (at, live) = self.live.lock().get(&scope).cloned()?;
        if at >= mutations {
            return None;
        }
        let changed = self
            .bitmaps
            .changes_between(scope, LIVE_GROUP, at, mutations)?;
        Some((live, changed))
    }

    /// Remembers the live bitmap of a committed state of `scope` (unless a newer state's
    /// is held).
    fn remember_live(&self, scope: Scope, mutations: u64, live: Arc<RoaringBitmap>) {
        let mut cache = self.live.lock();
        if cache.len() >= NAME_CACHE_SCOPES && !cache.contains_key(&scope) {
            cache.clear();
        }
        match cache.get(&scope) {
            Some((at, _)) if *at > mutations => {}
            _ => {
                cache.insert(scope, (mutations, live));
            }
        }
    }

    /// Remembers team numbers made by a transaction that has committed.
    pub fn remember_teams(&self, teams: &[(Uuid, u32)]) {
        if !teams.is_empty() {
            self.teams.write().extend(teams.iter().copied());
        }
    }
}

/// Per-(team, type) counters, stored in one small row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// The ordinal the next record gets.
    pub next_ord: u32,
    /// The largest id handed out (ids only grow, so ordinals follow id order).
    pub last_id: u128,
    /// Live records.
    pub live: u64,
    /// Records in the trash.
    pub trash: u64,
    /// Bumped by every transaction that changes a record or a bitmap of the scope (grants,
    /// indexing): caches of record contents and bitmaps are valid while it stays the same.
    pub mutations: u64,
}

impl Counters {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(44);
        out.extend_from_slice(&self.next_ord.to_be_bytes());
        out.extend_from_slice(&self.last_id.to_be_bytes());
        out.extend_from_slice(&self.live.to_be_bytes());
        out.extend_from_slice(&self.trash.to_be_bytes());
        out.extend_from_slice(&self.mutations.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Counters> {
        if bytes.len() != 44 {
            return Err(Error::Internal("stored counters are damaged".into()));
        }
        let part = |at: usize, len: usize| &bytes[at..at + len];
        Ok(Counters {
            next_ord: u32::from_be_bytes(part(0, 4).try_into().expect("4")),
            last_id: u128::from_be_bytes(part(4, 16).try_into().expect("16")),
            live: u64::from_be_bytes(part(20, 8).try_into().expect("8")),
            trash: u64::from_be_bytes(part(28, 8).try_into().expect("8")),
            mutations: u64::from_be_bytes(part(36, 8).try_into().expect("8")),
        })
    }
}

/// [`View::live_ord`] read from `kv`.
fn read_live_ord(kv: &impl Kv, scope: Scope, id: u128) -> Result<Option<u32>> {
    let live_ord = |bytes: &[u8]| -> Result<Option<u32>> {
        match codec::is_trashed(bytes)? {
            true => Ok(None),
            false => codec::record_ord(bytes).map(Some),
        }
    };
    Ok(kv
        .get_with(&scope.record(id), live_ord)?
        .and_then(|ord| ord.ok().flatten()))
}

/// Reads the stored counters of `scope` (zeros if none).
pub(crate) fn stored_counters(kv: &impl Kv, scope: Scope) -> Result<Counters> {
    kv.get_with(&scope.prefix(keys::COUNTERS), Counters::decode)?
        .transpose()
        .map(Option::unwrap_or_default)
}

fn team_key(team: Uuid) -> Vec<u8> {
    let mut key = vec![keys::TEAM];
    key.extend_from_slice(team.as_bytes());
    key
}

fn decode_catalog(bytes: &[u8]) -> Result<Catalog> {
    let body = bytes.get(8..).unwrap_or_default();
    rmp_serde::from_slice(body)
        .map_err(|e| Error::Internal(format!("stored schema catalog is damaged: {e}")))
}

fn catalog_version(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// The committed catalog of (`team`, `ty`) as `view`'s storage holds it: from the shared
/// cache when it was read at this view's stamp or its version is the stored one, else
/// decoded (and cached, with this view's stamp).
fn stored_catalog(view: &(impl View + ?Sized), team: Uuid, ty: ObjectType) -> Result<Arc<Catalog>> {
    // A snapshot with the stamp a cached catalog was read at holds the same catalog: only
    // announced commits change catalogs.
    let stamp = view.stamp();
    let cached = view.shared().catalogs.lock().get(&(team, ty)).cloned();
    if let Some((catalog, Some(at))) = &cached {
        if stamp == Some(*at) {
            return Ok(catalog.clone());
        }
    }
    let key = view
        .team(team)?
        .map(|number| Scope { team: number, ty }.prefix(keys::SCHEMA));
    let stored_version = match &key {
        Some(key) => view.kv().get_with(key, catalog_version)?,
        None => None,
    };
    let version = match stored_version {
        Some(Some(v)) => v,
        Some(None) => return Err(Error::Internal("stored schema catalog is damaged".into())),
        None => 0,
    };
    let remember = |catalog: &Arc<Catalog>| {
        view.shared()
            .catalogs
            .lock()
            .insert((team, ty), (catalog.clone(), stamp));
    };
    if let Some((catalog, _)) = cached.filter(|(c, _)| c.version == version) {
        // Checked: a snapshot's stamp is worth remembering with it; a write transaction
        // (no stamp) leaves the entry as it is.
        if stamp.is_some() {
            remember(&catalog);
        }
        return Ok(catalog);
    }
    let stored = match (&key, stored_version) {
        (Some(key), Some(_)) => view.kv().get_with(key, decode_catalog)?.transpose()?,
        _ => None,
    };
    let catalog = Arc::new(stored.unwrap_or_else(|| Catalog::default_for(team, ty)));
    remember(&catalog);
    Ok(catalog)
}

/// Everything an operation reads through: storage plus the transaction's pending state.
pub(crate) trait View {
    /// The storage it reads.
    type Store: Kv;

    /// The storage it reads.
    fn kv(&self) -> &Self::Store;

    /// The caches of the database.
    fn shared(&self) -> &Shared;

    /// The stamp of the committed state this view reads (see `storage::Reader::stamp`), if
    /// it is a snapshot and the stamp is certain: views with the same stamp read the same
    /// catalogs. `None` for write transactions.
    fn stamp(&self) -> Option<u64> {
        None
    }

    /// The counters of `scope` as this transaction sees them.
    fn counters(&self, scope: Scope) -> Result<Counters>;

    /// The bitmap `name` of `scope` as this transaction sees them.
    fn bitmap(&self, scope: Scope, name: &[u8]) -> Result<RoaringBitmap>;

    /// The union of bitmaps `names` of `scope` as this view sees them.
    fn bitmap_union(&self, scope: Scope, names: &[Vec<u8>]) -> Result<RoaringBitmap> {
        union_one_by_one(self, scope, names)
    }

    /// The live records of `scope`, shared rather than copied where a cache holds them.
    fn live(&self, scope: Scope) -> Result<Arc<RoaringBitmap>> {
        self.bitmap(scope, keys::LIVE).map(Arc::new)
    }

    /// A bitmap that `compute` derives from this state's bitmaps of `scope` in `group`,
    /// named by `key` (which must say everything the result depends on besides the stored
    /// state). Read views cache it for the committed states with the same bitmaps in
    /// `group`, and where `covers` says which bitmaps it is the union of, bring an entry
    /// of an earlier state up to date from the few records changed since (see
    /// `cache::Cached::Stale`); transactions compute it each time.
    fn derived(
        &self,
        scope: Scope,
        key: &[u8],
        group: Group,
        covers: Option<Covers<'_>>,
        compute: impl FnOnce() -> Result<RoaringBitmap>,
    ) -> Result<Arc<RoaringBitmap>> {
        let _ = (scope, key, group, covers);
        compute().map(Arc::new)
    }

    /// [`View::bitmap`] through the cache of [`View::derived`]: for the bitmaps a query's
    /// conditions read, which the same and similar queries read again.
    fn cached_bitmap(&self, scope: Scope, name: &[u8]) -> Result<Arc<RoaringBitmap>> {
        let key = [&[CACHED_ONE][..], name].concat();
        let covers = Some(Covers::One(name));
        self.derived(scope, &key, Group::of(name), covers, || {
            self.bitmap(scope, name)
        })
    }

    /// [`View::bitmap_union`] through the cache of [`View::derived`].
    fn cached_union(&self, scope: Scope, names: &[Vec<u8>]) -> Result<Arc<RoaringBitmap>> {
        let mut key = vec![CACHED_UNION];
        for name in names {
            write_counted(&mut key, name);
        }
        let group = Group::of_all(names.iter().map(Vec::as_slice));
        let covers = Some(Covers::Union(names));
        self.derived(scope, &key, group, covers, || {
            self.bitmap_union(scope, names)
        })
    }

    /// The union of the stored bitmaps whose names lie in `from..to` (see
    /// `bitmap::read_span`), all of them derived from property `pid`, through the cache of
    /// [`View::derived`].
    fn cached_span(
        &self,
        scope: Scope,
        pid: u16,
        from: &[u8],
        to: &[u8],
    ) -> Result<Arc<RoaringBitmap>> {
        let mut key = vec![CACHED_SPAN];
        write_counted(&mut key, from);
        key.extend_from_slice(to);
        let read = || bitmap::read_span(self.kv(), scope, from, to);
        let covers = Some(Covers::Span(from, to));
        self.derived(scope, &key, Group::Prop(pid), covers, read)
    }

    /// A catalog changed by this transaction and not yet stored, if any.
    fn pending_catalog(&self, team: Uuid, ty: ObjectType) -> Option<Arc<Catalog>>;

    /// Whether team numbers read here may be put in the shared cache (committed state only).
    fn may_cache(&self) -> bool;

    /// The ordinal of record `id` of `scope` if it is live; `None` when it is missing, in
    /// the trash or damaged (a damaged record is no record to reference).
    fn live_ord(&self, scope: Scope, id: u128) -> Result<Option<u32>> {
        read_live_ord(self.kv(), scope, id)
    }

    /// The number of `team`, or `None` if the team has never written anything.
    fn team(&self, team: Uuid) -> Result<Option<u32>> {
        if let Some(number) = self.shared().teams.read().get(&team) {
            return Ok(Some(*number));
        }
        let number = self
            .kv()
            .get_with(&team_key(team), keys::read_u32)?
            .flatten();
        if let (Some(n), true) = (number, self.may_cache()) {
            self.shared().teams.write().insert(team, n);
        }
        Ok(number)
    }

    /// The scope of (`team`, `ty`), or `None` if the team has no data.
    fn scope(&self, team: Uuid, ty: ObjectType) -> Result<Option<Scope>> {
        Ok(self.team(team)?.map(|team| Scope { team, ty }))
    }

    /// The catalog of (`team`, `ty`): stored, pending, or the default one.
    ///
    /// The shared cache is used as it is by a snapshot of the stamp its entry was read at
    /// (no commit between holds a catalog change, see [`View::stamp`]), and is otherwise
    /// checked against the version stored in this view, so the catalog returned is always
    /// the one of this view's own state. Versions of one (team, type) only grow and the
    /// cache only learns committed catalogs (a transaction's own changes stay pending in
    /// it), so equal versions mean equal catalogs.
    fn catalog(&self, team: Uuid, ty: ObjectType) -> Result<Arc<Catalog>> {
        if let Some(pending) = self.pending_catalog(team, ty) {
            return Ok(pending);
        }
        stored_catalog(self, team, ty)
    }
}

/// A read transaction with the database's caches.
pub(crate) struct ReadView<'db> {
    reader: Reader,
    shared: &'db Shared,
    /// Catalogs and counters already read through this snapshot, which cannot see them
    /// change: reading a catalog's version row and the counters row again on every call
    /// was a sixth of a find by value.
    seen: parking_lot::Mutex<Seen>,
}

/// Committed catalogs a view has read, by team and type.
type SeenCatalogs = Vec<((Uuid, ObjectType), Arc<Catalog>)>;

/// What a [`ReadView`] has read once.
#[derive(Default)]
struct Seen {
    catalogs: SeenCatalogs,
    /// The catalogs of `catalogs` whose team has a number, by scope.
    scoped: Vec<(Scope, Arc<Catalog>)>,
    counters: Vec<(Scope, Counters)>,
}

impl<'db> ReadView<'db> {
    /// Wraps a storage snapshot.
    pub fn new(reader: Reader, shared: &'db Shared) -> ReadView<'db> {
        ReadView {
            reader,
            shared,
            seen: parking_lot::Mutex::default(),
        }
    }

    /// `stale`, the union of the bitmaps of property `pid` that `covers` names as an
    /// earlier state held them, brought up to this view's state by looking at the records
    /// of `changed` alone (the only ones whose bits changed between): each is in it if it
    /// is live and its value puts it in a covered bitmap. `None` where the records cannot
    /// tell (the catalog not read through this view, a record unreadable, a span's bound
    /// inside a bitmap's keys): the caller reads the bitmaps again.
    fn brought_up_to_date(
        &self,
        scope: Scope,
        pid: u16,
        covers: Covers<'_>,
        stale: &RoaringBitmap,
        changed: &[u32],
    ) -> Option<RoaringBitmap> {
        if !covers.of_values() {
            return None;
        }
        let catalog = self.seen_catalog(scope)?;
        let prop = catalog.by_pid(pid);
        self.updated_from_records(scope, stale, changed, |ord, record| {
            let names = index::bitmaps_of_prop(pid, prop, record);
            let mut member = false;
            for name in names.iter() {
                member |= covers.covers(name, ord)?;
            }
            Some(member)
        })
    }

    /// `stale`, a bitmap of live records of `scope` at an earlier state, brought up to
    /// this view's state from the records of `changed` alone: each is in it if it is there,
    /// live, and `member` says so (`None`: it cannot tell). `None` if a record cannot be
    /// read or `member` cannot tell.
    fn updated_from_records(
        &self,
        scope: Scope,
        stale: &RoaringBitmap,
        changed: &[u32],
        member: impl Fn(u32, &codec::StoredRecord) -> Option<bool>,
    ) -> Option<RoaringBitmap> {
        let mut bitmap = stale.clone();
        for &ord in changed {
            let is_member = match records::load_at(&self.reader, scope, ord).ok()? {
                Some(record) if record.is_live() => member(ord, &record)?,
                _ => false,
            };
            match is_member {
                true => bitmap.insert(ord),
                false => bitmap.remove(ord),
            };
        }
        Some(bitmap)
    }

    /// The catalog of `scope` if this view has read it.
    fn seen_catalog(&self, scope: Scope) -> Option<Arc<Catalog>> {
        let seen = self.seen.lock();
        let found = seen.scoped.iter().find(|(s, _)| *s == scope);
        found.map(|(_, catalog)| catalog.clone())
    }
}

/// Which bitmaps of one property a cached bitmap is the union of, so that a read view can
/// tell, record by record, whether a changed record belongs in it.
#[derive(Clone, Copy)]
pub(crate) enum Covers<'n> {
    /// The bitmap of this name.
    One(&'n [u8]),
    /// The bitmaps of these names.
    Union(&'n [Vec<u8>]),
    /// Every bitmap whose keys lie in `from..to` (see `bitmap::read_span`).
    Span(&'n [u8], &'n [u8]),
}

impl Covers<'_> {
    /// Whether the bitmaps covered are all value, index or bucket bitmaps, whose members a
    /// record's values say (not trigram bitmaps, which may hold more).
    fn of_values(&self) -> bool {
        let of_values = |name: &[u8]| {
            matches!(
                name.first(),
                Some(&(keys::VALUE_BITMAP | keys::INDEX_BITMAP | keys::BUCKET_BITMAP))
            )
        };
        match self {
            Covers::One(name) => of_values(name),
            Covers::Union(names) => names.iter().all(|name| of_values(name)),
            Covers::Span(from, to) => of_values(from) && from.first() == to.first(),
        }
    }

    /// Whether bitmap `name` is covered, for the bit of `ord`; `None` when that depends on
    /// how the bitmap is stored (a span's bound falling between its chunk rows and its
    /// whole row).
    fn covers(&self, name: &[u8], ord: u32) -> Option<bool> {
        match self {
            Covers::One(one) => Some(name == *one),
            Covers::Union(names) => Some(names.iter().any(|n| n == name)),
            Covers::Span(from, to) => {
                let in_span = |row: u32| {
                    let key = [name, &row.to_be_bytes()[..]].concat();
                    *from <= key.as_slice() && key.as_slice() < *to
                };
                let as_chunk = in_span(bitmap::chunk_of(ord));
                (as_chunk == in_span(bitmap::WHOLE_ROW)).then_some(as_chunk)
            }
        }
    }
}

/// The first byte of a [`View::derived`] key of a cached read of one bitmap.
const CACHED_ONE: u8 = b'1';
/// The first byte of a [`View::derived`] key of a cached union of bitmaps.
const CACHED_UNION: u8 = b'u';
/// The first byte of a [`View::derived`] key of a cached span of bitmaps.
const CACHED_SPAN: u8 = b's';

/// Appends `bytes` to `key` after their length, so that the parts of a key cannot run
/// into each other.
fn write_counted(key: &mut Vec<u8>, bytes: &[u8]) {
    key.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    key.extend_from_slice(bytes);
}

/// The union of bitmaps `names` of `scope`, read one by one through `view`.
fn union_one_by_one(
    view: &(impl View + ?Sized),
    scope: Scope,
    names: &[Vec<u8>],
) -> Result<RoaringBitmap> {
    let mut union = RoaringBitmap::new();
    for name in names {
        union |= view.bitmap(scope, name)?;
    }
    Ok(union)
}

impl View for ReadView<'_> {
    type Store = Reader;

    fn kv(&self) -> &Reader {
        &self.reader
    }

    fn shared(&self) -> &Shared {
        self.shared
    }

    fn stamp(&self) -> Option<u64> {
        self.reader.stamp()
    }

    fn counters(&self, scope: Scope) -> Result<Counters> {
        if let Some((_, counters)) = self.seen.lock().counters.iter().find(|(s, _)| *s == scope) {
            return Ok(*counters);
        }
        let counters = stored_counters(&self.reader, scope)?;
        self.seen.lock().counters.push((scope, counters));
        Ok(counters)
    }

    fn bitmap(&self, scope: Scope, name: &[u8]) -> Result<RoaringBitmap> {
        if name == keys::LIVE {
            return Ok((*self.live(scope)?).clone());
        }
        bitmap::read(&self.reader, scope, name)
    }

    fn catalog(&self, team: Uuid, ty: ObjectType) -> Result<Arc<Catalog>> {
        let seen = self.seen.lock();
        if let Some((_, catalog)) = seen.catalogs.iter().find(|(key, _)| *key == (team, ty)) {
            return Ok(catalog.clone());
        }
        drop(seen);
        let catalog = stored_catalog(self, team, ty)?;
        let scope = self.scope(team, ty)?;
        let mut seen = self.seen.lock();
        seen.catalogs.push(((team, ty), catalog.clone()));
        if let Some(scope) = scope {
            seen.scoped.push((scope, catalog.clone()));
        }
        Ok(catalog)
    }

    fn bitmap_union(&self, scope: Scope, names: &[Vec<u8>]) -> Result<RoaringBitmap> {
        if names.iter().any(|name| name == keys::LIVE) {
            return union_one_by_one(self, scope, names); // the live bitmap is cached
        }
        bitmap::read_union(&self.reader, scope, names)
    }

    fn live(&self, scope: Scope) -> Result<Arc<RoaringBitmap>> {
        let mutations = self.counters(scope)?.mutations;
        if let Some(live) = self.shared.cached_live(scope, mutations) {
            return Ok(live);
        }
        let updated = self
            .shared
            .stale_live(scope, mutations)
            .and_then(|(stale, changed)| {
                self.updated_from_records(scope, &stale, &changed, |_, _| Some(true))
            });
        let live = Arc::new(match updated {
            Some(live) => live,
            None => bitmap::read(&self.reader, scope, keys::LIVE)?,
        });
        self.shared.remember_live(scope, mutations, live.clone());
        Ok(live)
    }

    fn derived(
        &self,
        scope: Scope,
        key: &[u8],
        group: Group,
        covers: Option<Covers<'_>>,
        compute: impl FnOnce() -> Result<RoaringBitmap>,
    ) -> Result<Arc<RoaringBitmap>> {
        let mutations = self.counters(scope)?.mutations;
        let updated = match self.shared.bitmaps.lookup(scope, key, mutations) {
            Cached::Hit(bitmap) => return Ok(bitmap),
            Cached::Stale { bitmap, changed } => match (group, covers) {
                (Group::Prop(pid), Some(covers)) => {
                    self.brought_up_to_date(scope, pid, covers, &bitmap, &changed)
                }
                _ => None,
            },
            Cached::Miss => None,
        };
        let bitmap = Arc::new(match updated {
            Some(bitmap) => bitmap,
            None => compute()?,
        });
        self.shared
            .bitmaps
            .insert(scope, key, group, mutations, bitmap.clone());
        Ok(bitmap)
    }

    fn pending_catalog(&self, _: Uuid, _: ObjectType) -> Option<Arc<Catalog>> {
        None
    }

    fn may_cache(&self) -> bool {
        true
    }
}

/// A write transaction: the storage writer plus changes held until the end (bitmap chunks,
/// counters, catalogs), so that many records written in one transaction touch each shared
/// row once.
pub(crate) struct Tx<'w, 't> {
    writer: &'w mut Writer<'t>,
    shared: &'w Shared,
    /// Held bitmap chunks; in a cell because reading one may first fold logged bits in.
    bitmaps: RefCell<BitmapBuffer>,
    columns: ColumnBuffer,
    /// Per scope, the stored next ordinal when the transaction began: chunks and blocks
    /// from there on hold only this transaction's records (see [`Tx::bitmap_set`]).
    stored_ends: HashMap<Scope, u32>,
    /// Whether held chunks and blocks were flushed mid-transaction (then every chunk and
    /// block is read before its first change).
    bitmaps_flushed: bool,
    /// Scopes whose pending trigram bitmap this transaction added to, with their catalog.
    gram_scopes: HashMap<Scope, (Arc<Catalog>, u64)>,
    counters: BTreeMap<Scope, Counters>,
    catalogs: HashMap<(Uuid, ObjectType), Arc<Catalog>>,
    /// Committed catalogs already read in this transaction: only the transaction itself can
    /// change them now (into `catalogs`), and an import read the catalog's version row once
    /// per row (3.5% of building a chunk).
    seen_catalogs: RefCell<SeenCatalogs>,
    /// Per scope read, its committed state (see [`Tx::committed_state`]).
    committed: RefCell<HashMap<Scope, Option<(u64, u64)>>>,
    new_teams: Vec<(Uuid, u32)>,
    /// The transaction's clock, epoch microseconds.
    pub now: i64,
}

impl<'w, 't> Tx<'w, 't> {
    /// Starts a transaction view over `writer`.
    pub fn new(writer: &'w mut Writer<'t>, shared: &'w Shared) -> Tx<'w, 't> {
        Tx {
            writer,
            shared,
            bitmaps: RefCell::default(),
            columns: ColumnBuffer::default(),
            stored_ends: HashMap::new(),
            bitmaps_flushed: false,
            gram_scopes: HashMap::new(),
            counters: BTreeMap::new(),
            catalogs: HashMap::new(),
            seen_catalogs: RefCell::default(),
            committed: RefCell::default(),
            new_teams: Vec::new(),
            now: crate::time_fmt::now_micros(),
        }
    }

    /// The storage writer.
    pub fn writer(&mut self) -> &mut Writer<'t> {
        self.writer
    }

    /// The scope of (`team`, `ty`), giving the team a number if it has none yet.
    pub fn scope_for_write(&mut self, team: Uuid, ty: ObjectType) -> Result<Scope> {
        if let Some(number) = self.team(team)? {
            return Ok(Scope { team: number, ty });
        }
        let counter_key = [keys::META, b'T'];
        let next = self
            .writer
            .get_with(&counter_key, keys::read_u32)?
            .flatten();
        let number = next.unwrap_or(0);
        let following = number
            .checked_add(1)
            .ok_or_else(|| Error::LimitExceeded("too many teams in one database".into()))?;
        self.writer.put(&counter_key, &following.to_be_bytes())?;
        self.writer.put(&team_key(team), &number.to_be_bytes())?;
        self.new_teams.push((team, number));
        Ok(Scope { team: number, ty })
    }

    /// Sets (`on`) or clears bit `ord` of bitmap `name` of `scope`, a bitmap laid out in
    /// chunks (all but references' value bitmaps, see [`Tx::bitmap_set_laid`]). A chunk past
    /// every stored record can only hold this transaction's new records, so its first bit
    /// is set without reading storage (a read per value and record was 15% of a bulk load).
    pub fn bitmap_set(&mut self, scope: Scope, name: &[u8], ord: u32, on: bool) -> Result<()> {
        self.bitmap_set_laid(scope, name, Layout::Chunked, ord, on)
    }

    /// [`Tx::bitmap_set`] of a bitmap laid out `layout` (every writer of one bitmap passes
    /// the same: [`crate::index::Names`] carries it).
    pub fn bitmap_set_laid(
        &mut self,
        scope: Scope,
        name: &[u8],
        layout: Layout,
        ord: u32,
        on: bool,
    ) -> Result<()> {
        let fresh = self.is_fresh(scope, ord)?;
        self.bitmaps
            .get_mut()
            .change(scope, name, layout, ord, on, fresh);
        Ok(())
    }

    /// Whether ordinal `ord` of `scope` lies in a bitmap chunk that only this
    /// transaction's records fall in (so changing its bits reads nothing).
    pub fn is_fresh(&mut self, scope: Scope, ord: u32) -> Result<bool> {
        Ok(!self.bitmaps_flushed
            && bitmap::chunk_of(ord) >= bitmap::chunks_below(self.stored_end(scope)?))
    }

    /// Marks the trigram bits of record `ord` of `scope` as pending (`catalog` is the
    /// scope's catalog, for the fold at the end of the transaction).
    pub fn gram_pending(&mut self, scope: Scope, catalog: &Catalog, ord: u32) -> Result<()> {
        self.gram_scopes
            .entry(scope)
            .or_insert_with(|| (Arc::new(catalog.clone()), 0))
            .1 += 1;
        self.bitmap_set(scope, keys::GRAM_PENDING, ord, true)
    }

    /// How many records this transaction marked as pending in `scope` so far.
    pub fn grams_pended(&self, scope: Scope) -> u64 {
        self.gram_scopes.get(&scope).map_or(0, |(_, count)| *count)
    }

    /// The scopes whose pending trigram bitmap grew in this transaction, with catalogs.
    pub fn take_gram_scopes(&mut self) -> Vec<(Scope, Arc<Catalog>)> {
        self.gram_scopes
            .drain()
            .map(|(scope, (catalog, _))| (scope, catalog))
            .collect()
    }

    /// The stored next ordinal of `scope` when the transaction began.
    fn stored_end(&mut self, scope: Scope) -> Result<u32> {
        if let Some(end) = self.stored_ends.get(&scope) {
            return Ok(*end);
        }
        let end = stored_counters(&*self.writer, scope)?.next_ord;
        self.stored_ends.insert(scope, end);
        Ok(end)
    }

    /// Sets the slot of `ord` in the reference column of property `pid` of `scope` to
    /// `value` (target ordinal + 1, or 0). Blocks past every stored record need no read.
    pub fn column_set(&mut self, scope: Scope, pid: u16, ord: u32, value: u32) -> Result<()> {
        let fresh = !self.bitmaps_flushed
            && column::block_of(ord) >= column::blocks_below(self.stored_end(scope)?);
        self.columns
            .set(&*self.writer, scope, pid, ord, value, fresh)
    }

    /// Deletes the reference column of property `pid` of `scope`.
    pub fn column_drop(&mut self, scope: Scope, pid: u16) -> Result<()> {
        self.columns.drop_property(self.writer, scope, pid)
    }

    /// Writes the held bitmap chunks and column blocks to the writer, so that range scans
    /// of the writer see them. From then on every chunk and block is read before its first
    /// change.
    pub fn flush_bitmaps(&mut self) -> Result<()> {
        self.bitmaps_flushed = true;
        self.columns.flush(self.writer)?;
        self.bitmaps.get_mut().flush(self.writer)
    }

    /// Deletes every bitmap of `scope` whose name starts with `name_prefix`.
    pub fn bitmap_drop(&mut self, scope: Scope, name_prefix: &[u8]) -> Result<()> {
        self.bitmaps
            .get_mut()
            .drop_prefix(self.writer, scope, name_prefix)
    }

    /// Replaces the counters of `scope` (written when the transaction ends) and marks the
    /// scope's records as changed.
    pub fn set_counters(&mut self, scope: Scope, mut counters: Counters) {
        counters.mutations += 1;
        self.counters.insert(scope, counters);
    }

    /// The state of `scope` as committed (its mutation counter, and 0), if this transaction
    /// reads the scope's records as committed: neither it nor the transaction of the
    /// pipeline below it has changed them (a change of a record sets the scope's counters).
    /// Read once per transaction.
    fn committed_state(&self, scope: Scope) -> Result<Option<(u64, u64)>> {
        if self.counters.contains_key(&scope) {
            return Ok(None);
        }
        if let Some(known) = self.committed.borrow().get(&scope) {
            return Ok(*known);
        }
        let state = match self.writer.holds(&scope.prefix(keys::COUNTERS)) {
            true => None,
            false => Some((stored_counters(&*self.writer, scope)?.mutations, 0)),
        };
        self.committed.borrow_mut().insert(scope, state);
        Ok(state)
    }

    /// Marks the records or bitmaps of `scope` as changed: a new state for the caches of
    /// committed states (record names, live ordinals, bitmaps).
    pub fn touch(&mut self, scope: Scope) -> Result<()> {
        let counters = self.counters(scope)?;
        self.set_counters(scope, counters);
        Ok(())
    }

    /// Stores a changed catalog of `scope` and makes it visible to this transaction.
    pub fn put_catalog(&mut self, team: Uuid, scope: Scope, catalog: Catalog) -> Result<()> {
        let mut bytes = catalog.version.to_be_bytes().to_vec();
        rmp_serde::encode::write(&mut bytes, &catalog)
            .map_err(|e| Error::Internal(format!("cannot encode catalog: {e}")))?;
        self.writer.put(&scope.prefix(keys::SCHEMA), &bytes)?;
        self.writer.announce();
        self.catalogs.insert((team, scope.ty), Arc::new(catalog));
        Ok(())
    }

    /// Writes the held changes; returns the teams this transaction numbered, for the cache
    /// once the commit has succeeded.
    pub fn finish(mut self) -> Result<Vec<(Uuid, u32)>> {
        self.bitmaps.get_mut().flush(self.writer)?;
        self.columns.flush(self.writer)?;
        self.note_bitmap_changes()?;
        for (scope, counters) in std::mem::take(&mut self.counters) {
            self.writer
                .put(&scope.prefix(keys::COUNTERS), &counters.encode())?;
        }
        Ok(self.new_teams)
    }
}

impl Tx<'_, '_> {
    /// Tells the bitmap cache, before the commit, which groups of bitmaps of each scope
    /// this transaction changed and the counter of the state it makes; a scope whose
    /// bitmaps changed gets a new state even where no record did.
    fn note_bitmap_changes(&mut self) -> Result<()> {
        let changes = self.bitmaps.get_mut().take_changes();
        for (scope, _, _) in &changes {
            if !self.counters.contains_key(scope) {
                self.touch(*scope)?;
            }
        }
        let mut changes = changes.into_iter().peekable();
        while let Some((scope, group, ords)) = changes.next() {
            let mut groups = vec![(group, ords)];
            while let Some((_, group, ords)) = changes.next_if(|change| change.0 == scope) {
                groups.push((group, ords));
            }
            let mutations = self.counters[&scope].mutations;
            self.shared.bitmaps.note_changes(scope, groups, mutations);
        }
        Ok(())
    }
}

impl<'t> View for Tx<'_, 't> {
    type Store = Writer<'t>;

    fn kv(&self) -> &Writer<'t> {
        self.writer
    }

    fn shared(&self) -> &Shared {
        self.shared
    }

    fn counters(&self, scope: Scope) -> Result<Counters> {
        match self.counters.get(&scope) {
            Some(c) => Ok(*c),
            None => stored_counters(&*self.writer, scope),
        }
    }

    fn bitmap(&self, scope: Scope, name: &[u8]) -> Result<RoaringBitmap> {
        self.bitmaps.borrow_mut().read(&*self.writer, scope, name)
    }

    fn pending_catalog(&self, team: Uuid, ty: ObjectType) -> Option<Arc<Catalog>> {
        self.catalogs.get(&(team, ty)).cloned()
    }

    fn catalog(&self, team: Uuid, ty: ObjectType) -> Result<Arc<Catalog>> {
        if let Some(pending) = self.pending_catalog(team, ty) {
            return Ok(pending);
        }
        let seen = self.seen_catalogs.borrow();
        if let Some((_, catalog)) = seen.iter().find(|(key, _)| *key == (team, ty)) {
            return Ok(catalog.clone());
        }
        drop(seen);
        let catalog = stored_catalog(self, team, ty)?;
        self.seen_catalogs
            .borrow_mut()
            .push(((team, ty), catalog.clone()));
        Ok(catalog)
    }

    fn may_cache(&self) -> bool {
        false
    }

    /// [`View::live_ord`], from the shared cache where this transaction reads the scope as
    /// committed (and remembered there when read).
    fn live_ord(&self, scope: Scope, id: u128) -> Result<Option<u32>> {
        let Some(state) = self.committed_state(scope)? else {
            return read_live_ord(self.kv(), scope, id);
        };
        if let Some(ord) = self.shared.live_ords.get_one(scope, state, id) {
            return Ok(Some(ord));
        }
        let ord = read_live_ord(self.kv(), scope, id)?;
        if let Some(ord) = ord {
            self.shared.live_ords.remember(scope, state, [(id, ord)]);
        }
        Ok(ord)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached union says which bitmap names hold its records: exactly its names, or the
    /// keys of its span; a span whose bound falls between a bitmap's chunk rows and its
    /// whole row cannot say, and trigram bitmaps are never brought up to date.
    #[test]
    fn covered_names_are_the_union_or_the_span_of_keys() {
        let name = |last: u8| vec![keys::INDEX_BITMAP, 0, 7, last];
        let (a, b) = (name(1), name(2));
        assert_eq!(Covers::One(&a).covers(&a, 5), Some(true));
        assert_eq!(Covers::One(&a).covers(&b, 5), Some(false));
        let both = [a.clone(), b.clone()];
        assert_eq!(Covers::Union(&both).covers(&b, 5), Some(true));
        assert_eq!(Covers::Union(&both).covers(&name(3), 5), Some(false));
        let (from, to) = (name(1), name(3));
        let span = Covers::Span(&from, &to);
        assert_eq!(span.covers(&a, 5), Some(true));
        assert_eq!(span.covers(&b, 70_000), Some(true));
        assert_eq!(span.covers(&name(3), 5), Some(false));
        assert_eq!(span.covers(&name(0), 5), Some(false));
        let inside = [a.as_slice(), &[0, 0, 0, 9]].concat();
        let ambiguous = Covers::Span(&from, &inside);
        assert_eq!(ambiguous.covers(&a, 5), None, "chunk row in, whole row out");
        assert!(span.of_values() && Covers::Union(&both).of_values());
        let gram = [keys::GRAM_BITMAP, 0, 7, b'a', b'b', b'c'];
        assert!(!Covers::One(&gram).of_values());
        let across = [keys::BUCKET_BITMAP];
        assert!(
            !Covers::Span(&from, &across).of_values(),
            "two kinds of bitmaps"
        );
    }

    #[test]
    fn id_caches_keep_one_state_per_scope_and_a_bounded_number_of_values() {
        let caches = IdCaches::<u32>::default();
        let scope = |team| Scope {
            team,
            ty: ObjectType::Contact,
        };
        let values = |ids: std::ops::Range<u128>| ids.map(|id| (id, id as u32));
        caches.remember(scope(1), (1, 0), values(0..40));
        caches.remember(scope(2), (1, 0), values(0..40));
        assert_eq!(caches.get_one(scope(1), (1, 0), 5), Some(5));
        assert_eq!(caches.get_one(scope(1), (2, 0), 5), None, "another state");
        // 40 + 24 values fill the bound: the rest of scope 2's are not kept.
        assert_eq!(caches.get_one(scope(2), (1, 0), 23), Some(23));
        assert_eq!(caches.get_one(scope(2), (1, 0), 24), None);
        // Full: the next values start the cache over.
        caches.remember(scope(3), (1, 0), values(7..8));
        assert_eq!(caches.get_one(scope(1), (1, 0), 5), None);
        assert_eq!(caches.get_one(scope(3), (1, 0), 7), Some(7));
        // A newer state replaces a scope's values; an older one's are dropped.
        caches.remember(scope(3), (2, 0), values(8..9));
        assert_eq!(caches.get(scope(3), (2, 0), &[7, 8]), vec![None, Some(8)]);
        caches.remember(scope(3), (1, 0), values(9..10));
        assert_eq!(caches.get_one(scope(3), (1, 0), 9), None);
        assert_eq!(caches.get_one(scope(3), (2, 0), 8), Some(8));
        // Replaced values are no longer counted: 63 more fit after the one held.
        caches.remember(scope(3), (3, 0), values(0..63));
        assert_eq!(caches.get_one(scope(3), (3, 0), 62), Some(62));
    }
}
