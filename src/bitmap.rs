//! The bitmap module: roaring bitmaps of ordinals, stored in chunks of 4,096 ordinals.
//!
//! Each chunk is its own row, so a write rewrites one small row per bitmap it touches
//! instead of a whole bitmap (DESIGN.md: whole-bitmap rewrites cost 40% of write
//! throughput). A chunk is stored as a sorted array of 12-bit offsets while it holds at most
//! 256 ordinals (2 bytes each), else as a 512-byte bitset (the `chunk` submodule): a dense
//! chunk costs a single-record commit 512 bytes, where one roaring container of 65,536
//! ordinals would cost 8 KiB. Inside a write transaction, changed chunks are held in the
//! same two shapes in a [`BitmapBuffer`] and written once, in key order, when the
//! transaction ends.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use roaring::RoaringBitmap;

use crate::error::Result;
use crate::keys::Scope;
use crate::storage::{prefix_end, Kv, Writer};

mod chunk;

use chunk::{damaged, for_each_offset, Chunk, ARRAY_TAG, BITSET_BYTES, BITSET_TAG, CHUNK_BITS};

/// The bits of an ordinal that are its offset in its chunk.
const OFFSET_MASK: u32 = (1 << CHUNK_BITS) - 1;

/// The chunk an ordinal falls in.
pub(crate) fn chunk_of(ord: u32) -> u32 {
    ord >> CHUNK_BITS
}

/// How many chunks the ordinals below `ord` span (the first chunk past them).
pub(crate) fn chunks_below(ord: u32) -> u32 {
    ord.div_ceil(1 << CHUNK_BITS)
}

/// Decodes chunk number `chunk` into a bitmap of the ordinals it holds.
fn decode_chunk(chunk: u32, bytes: &[u8]) -> Result<RoaringBitmap> {
    Ok(Chunk::decode(bytes)?.to_bitmap(chunk << CHUNK_BITS))
}

/// Chunks per 65,536-ordinal roaring container.
const CHUNKS_PER_WINDOW: u32 = 1 << (16 - CHUNK_BITS);

/// A window with at least this many ordinals from sparse chunks is built as a bitset.
const SPARSE_WINDOW_MAX: usize = 1024;

/// Gathers stored chunks into one bitmap. Dense chunks (bitsets) of one roaring container
/// (16 chunks) are OR-ed into one 8 KiB bitset that becomes a container once; sparse chunks
/// (offset arrays) are collected as ordinals and added in one go. Decoding each chunk into
/// its own bitmap and OR-ing those was 70% of a filtered count; turning a whole 8 KiB window
/// into a container for a chunk of a few ordinals made sparse reads (reference lookups,
/// unique values) slow.
struct Gather {
    full: RoaringBitmap,
    window: Option<u32>,
    /// The current window's dense chunks; allocated on the first dense chunk.
    bits: Vec<u8>,
    dense: bool,
    /// The current window's ordinals from sparse chunks.
    window_ords: Vec<u32>,
    /// Ordinals of windows without a dense chunk.
    sparse: Vec<u32>,
}

impl Gather {
    fn new() -> Gather {
        Gather {
            full: RoaringBitmap::new(),
            window: None,
            bits: Vec::new(),
            dense: false,
            window_ords: Vec::new(),
            sparse: Vec::new(),
        }
    }

    /// Adds the ordinals of stored chunk number `chunk`.
    fn add(&mut self, chunk: u32, bytes: &[u8]) -> Result<()> {
        let window = chunk / CHUNKS_PER_WINDOW;
        if self.window != Some(window) {
            self.flush_window();
            self.window = Some(window);
        }
        match bytes.split_first() {
            Some((&BITSET_TAG, _)) => {
                if self.bits.is_empty() {
                    self.bits = vec![0; BITSET_BYTES * CHUNKS_PER_WINDOW as usize];
                }
                let at = (chunk % CHUNKS_PER_WINDOW) as usize * BITSET_BYTES;
                Chunk::or_into(bytes, &mut self.bits[at..at + BITSET_BYTES])?;
                self.dense = true;
                Ok(())
            }
            Some((&ARRAY_TAG, offsets)) => {
                let base = chunk << CHUNK_BITS;
                for_each_offset(offsets, |offset| self.window_ords.push(base + offset))
            }
            _ => Err(damaged("unknown layout")),
        }
    }

    /// Ends the current window: with a dense chunk, its sparse ordinals join the bitset and
    /// the window becomes one container; without, they wait for [`Gather::finish`].
    fn flush_window(&mut self) {
        let Some(window) = self.window.take() else {
            return;
        };
        // Many sparse ordinals in one window also go through the bitset: building a
        // container from a bitset beats pushing thousands of ordinals one by one.
        if !self.dense && self.window_ords.len() < SPARSE_WINDOW_MAX {
            self.sparse.append(&mut self.window_ords);
            return;
        }
        if self.bits.is_empty() {
            self.bits = vec![0; BITSET_BYTES * CHUNKS_PER_WINDOW as usize];
        }
        let base = window << 16;
        for ord in self.window_ords.drain(..) {
            let offset = (ord - base) as usize;
            self.bits[offset / 8] |= 1 << (offset % 8);
        }
        self.full |= RoaringBitmap::from_lsb0_bytes(base, &self.bits);
        self.bits.fill(0);
        self.dense = false;
    }

    fn finish(mut self) -> RoaringBitmap {
        self.flush_window();
        if !self.sparse.is_empty() {
            // One name's chunks arrive in order; a span of several names may repeat or
            // reorder ordinals.
            if !self.sparse.windows(2).all(|w| w[0] < w[1]) {
                self.sparse.sort_unstable();
                self.sparse.dedup();
            }
            self.full |= RoaringBitmap::from_sorted_iter(self.sparse)
                .expect("ordinals sorted and deduplicated above");
        }
        self.full
    }
}

/// Gathers the chunks of several bitmaps into one: dense chunks are OR-ed into one bitset
/// over every ordinal up to the last dense chunk, sparse ones collected as ordinals, and
/// each roaring container is built once from the union. Reading a `$in` of three city
/// values bitmap by bitmap built ~2,000-ordinal array containers for each (one push per
/// ordinal) and merged them, a third of a filtered count.
#[derive(Default)]
struct Union {
    /// Bits of dense chunks, from ordinal 0; grown to the last dense chunk seen.
    bits: Vec<u8>,
    /// Ordinals of sparse chunks.
    ords: Vec<u32>,
}

impl Union {
    /// Adds the ordinals of stored chunk number `chunk`.
    /// A dense chunk grows the bitset to cover it; a sparse one goes into the bitset when
    /// it already covers the chunk, else into the ordinals.
    fn add(&mut self, chunk: u32, bytes: &[u8]) -> Result<()> {
        let at = chunk as usize * BITSET_BYTES;
        if bytes.first() == Some(&BITSET_TAG) && self.bits.len() < at + BITSET_BYTES {
            self.bits.resize(at + BITSET_BYTES, 0);
        }
        match self.bits.get_mut(at..at + BITSET_BYTES) {
            Some(bits) => Chunk::or_into(bytes, bits),
            None => match bytes.split_first() {
                Some((&ARRAY_TAG, offsets)) => {
                    let base = chunk << CHUNK_BITS;
                    for_each_offset(offsets, |offset| self.ords.push(base + offset))
                }
                _ => Err(damaged("unknown layout")),
            },
        }
    }

    fn finish(mut self) -> RoaringBitmap {
        // Many sparse ordinals go through the bitset too (when it needs no more than four
        // bytes per ordinal): sorting them and adding them one by one was slower than the
        // per-bitmap reads this replaces.
        let last = self.ords.iter().max().map_or(0, |ord| *ord as usize);
        if last / 8 >= self.bits.len() && last / 8 <= self.ords.len() * 4 {
            self.bits
                .resize((last / 8 + 1).next_multiple_of(BITSET_BYTES), 0);
        }
        let covered = (self.bits.len() * 8) as u64;
        let (in_bits, beyond): (Vec<u32>, Vec<u32>) =
            self.ords.iter().partition(|ord| u64::from(**ord) < covered);
        for ord in in_bits {
            self.bits[ord as usize / 8] |= 1 << (ord % 8);
        }
        let window_bytes = BITSET_BYTES * CHUNKS_PER_WINDOW as usize;
        let mut full = RoaringBitmap::new();
        for (window, bytes) in self.bits.chunks(window_bytes).enumerate() {
            if bytes.iter().any(|byte| *byte != 0) {
                full |= RoaringBitmap::from_lsb0_bytes((window as u32) << 16, bytes);
            }
        }
        let mut beyond = beyond;
        beyond.sort_unstable();
        beyond.dedup();
        full |= RoaringBitmap::from_sorted_iter(beyond).expect("sorted and deduplicated above");
        full
    }
}

/// The union of the stored bitmaps `names` of `scope`, each read in one scan, gathered
/// together (see [`Union`]).
pub(crate) fn read_union(kv: &impl Kv, scope: Scope, names: &[Vec<u8>]) -> Result<RoaringBitmap> {
    let mut union = Union::default();
    for name in names {
        let prefix = scope.bitmap_prefix(name);
        let end = prefix_end(&prefix).unwrap_or_default();
        scan_chunks(kv, &prefix, &end, Some(prefix.len()), |chunk, bytes| {
            union.add(chunk, bytes)
        })?;
    }
    Ok(union.finish())
}

/// The chunk number at the end of a chunk key; `None` for a key too short to hold one, or
/// a number no ordinal falls in (a damaged key, which must not size the union's bitset).
fn chunk_in_key(key: &[u8]) -> Option<u32> {
    key.get(key.len().checked_sub(4)?..)
        .and_then(|tail| tail.try_into().ok())
        .map(u32::from_be_bytes)
        .filter(|chunk| *chunk <= u32::MAX >> CHUNK_BITS)
}

/// Reads the whole bitmap `name` of `scope` as stored.
pub(crate) fn read(kv: &impl Kv, scope: Scope, name: &[u8]) -> Result<RoaringBitmap> {
    let prefix = scope.bitmap_prefix(name);
    let end = prefix_end(&prefix).unwrap_or_default();
    gather_range(kv, &prefix, &end, Some(prefix.len()))
}

/// The union of every stored bitmap of `scope` whose name lies in `from..to` (byte order),
/// read in one scan.
pub(crate) fn read_span(
    kv: &impl Kv,
    scope: Scope,
    from: &[u8],
    to: &[u8],
) -> Result<RoaringBitmap> {
    let (start, end) = (scope.bitmap_prefix(from), scope.bitmap_prefix(to));
    gather_range(kv, &start, &end, None)
}

/// Gathers every chunk row with `start <= key < end`; with `name_len`, only the rows of
/// the bitmap whose key prefix is that long (not of longer names that share it).
fn gather_range(
    kv: &impl Kv,
    start: &[u8],
    end: &[u8],
    name_len: Option<usize>,
) -> Result<RoaringBitmap> {
    let mut gather = Gather::new();
    scan_chunks(kv, start, end, name_len, |chunk, bytes| {
        gather.add(chunk, bytes)
    })?;
    Ok(gather.finish())
}

/// Calls `add` with the chunk number and body of every chunk row with `start <= key <
/// end` (with `name_len`, only of the bitmap whose key prefix is that long), in key order.
fn scan_chunks(
    kv: &impl Kv,
    start: &[u8],
    end: &[u8],
    name_len: Option<usize>,
    mut add: impl FnMut(u32, &[u8]) -> Result<()>,
) -> Result<()> {
    kv.scan(
        std::ops::Bound::Included(start),
        std::ops::Bound::Excluded(end),
        false,
        |key, value| {
            if name_len.is_none_or(|len| key.len() == len + 4) {
                let chunk = chunk_in_key(key).ok_or_else(|| damaged("bad chunk number in key"))?;
                add(chunk, value)?;
            }
            Ok(true)
        },
    )
}

/// Reads the chunks numbered `chunks` of bitmap `name` of `scope`, in one scan.
pub(crate) fn read_chunks(
    kv: &impl Kv,
    scope: Scope,
    name: &[u8],
    chunks: std::ops::Range<u32>,
) -> Result<RoaringBitmap> {
    let (name_len, start, end) = chunk_span(scope, name, &chunks);
    gather_range(kv, &start, &end, Some(name_len))
}

/// The key prefix length of bitmap `name` of `scope`, and the keys of its chunks
/// `chunks.start` and `chunks.end`.
fn chunk_span(
    scope: Scope,
    name: &[u8],
    chunks: &std::ops::Range<u32>,
) -> (usize, Vec<u8>, Vec<u8>) {
    let prefix = scope.bitmap_prefix(name);
    let (start, end) = (
        chunk_key(&prefix, chunks.start),
        chunk_key(&prefix, chunks.end),
    );
    (prefix.len(), start, end)
}

/// The key of chunk `chunk` of the bitmap whose key prefix is `prefix`.
fn chunk_key(prefix: &[u8], chunk: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 4);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&chunk.to_be_bytes());
    key
}

/// The intersection of the stored bitmaps `names` of `scope` over chunks `chunks`: each
/// read into a bitset over those chunks and AND-ed into the first, the roaring bitmap built
/// once at the end; stops early once nothing is left. (Building a roaring bitmap per
/// trigram of a substring needle, an 8 KiB window each, and AND-ing those was a quarter of
/// a substring query's first page.)
pub(crate) fn read_intersection(
    kv: &impl Kv,
    scope: Scope,
    names: &[Vec<u8>],
    chunks: std::ops::Range<u32>,
) -> Result<RoaringBitmap> {
    let bytes = (chunks.end.saturating_sub(chunks.start) as usize) * BITSET_BYTES;
    let (mut both, mut next) = (vec![0u8; bytes], vec![0u8; bytes]);
    for (at, name) in names.iter().enumerate() {
        let into = if at == 0 { &mut both } else { &mut next };
        into.fill(0);
        read_bits(kv, scope, name, chunks.clone(), into)?;
        if at > 0 {
            both.iter_mut().zip(&next).for_each(|(b, n)| *b &= n);
        }
        if both.iter().all(|byte| *byte == 0) {
            return Ok(RoaringBitmap::new());
        }
    }
    Ok(match names.is_empty() {
        true => RoaringBitmap::new(),
        false => RoaringBitmap::from_lsb0_bytes(chunks.start << CHUNK_BITS, &both),
    })
}

/// ORs the chunks `chunks` of stored bitmap `name` into `bits`, a bitset whose first bit
/// is the first ordinal of chunk `chunks.start`.
fn read_bits(
    kv: &impl Kv,
    scope: Scope,
    name: &[u8],
    chunks: std::ops::Range<u32>,
    bits: &mut [u8],
) -> Result<()> {
    let (name_len, start, end) = chunk_span(scope, name, &chunks);
    scan_chunks(kv, &start, &end, Some(name_len), |chunk, body| {
        let at = (chunk.wrapping_sub(chunks.start) as usize).saturating_mul(BITSET_BYTES);
        let into = bits
            .get_mut(at..at.saturating_add(BITSET_BYTES))
            .ok_or_else(|| damaged("chunk outside the range read"))?;
        Chunk::or_into(body, into)
    })
}

/// The chunk numbers of the 65,536-ordinal window `window` (one roaring container).
pub(crate) fn window_chunks(window: u32) -> std::ops::Range<u32> {
    window * CHUNKS_PER_WINDOW..(window + 1) * CHUNKS_PER_WINDOW
}

/// Decodes one stored chunk row (`key` ends with the chunk number).
pub(crate) fn decode_row(key: &[u8], value: &[u8]) -> Result<RoaringBitmap> {
    let chunk = chunk_in_key(key).ok_or_else(|| damaged("bad chunk number in key"))?;
    decode_chunk(chunk, value)
}

/// Reads every stored bitmap of `scope` whose name starts with `name_prefix`, by name.
pub(crate) fn read_named(
    kv: &impl Kv,
    scope: Scope,
    name_prefix: &[u8],
) -> Result<BTreeMap<Vec<u8>, RoaringBitmap>> {
    let start = scope.bitmap_prefix(&[]).len();
    let mut found: BTreeMap<Vec<u8>, RoaringBitmap> = BTreeMap::new();
    kv.scan_prefix(&scope.bitmap_prefix(name_prefix), |key, value| {
        let chunk = chunk_in_key(key).ok_or_else(|| damaged("bad chunk number in key"))?;
        let name = key
            .get(start..key.len() - 4)
            .ok_or_else(|| damaged("bad chunk number in key"))?;
        *found.entry(name.to_vec()).or_default() |= decode_chunk(chunk, value)?;
        Ok(true)
    })?;
    Ok(found)
}

/// The stored chunk `chunk` of the bitmap whose key prefix is `prefix` (empty if none).
fn read_chunk(kv: &impl Kv, prefix: &[u8], chunk: u32) -> Result<Chunk> {
    Ok(kv
        .get_with(&chunk_key(prefix, chunk), Chunk::decode)?
        .transpose()?
        .unwrap_or_default())
}

/// The changes of `logged` grouped by bitmap number (of `bitmaps`), each group in the
/// order made: returns where each number's group starts (and the end, last) and the
/// groups' (ordinal, set) changes. A counting sort: sorting the whole log was a twentieth
/// of a bulk load's instructions.
fn group_by_bitmap(logged: &[(u32, u32, bool)], bitmaps: usize) -> (Vec<usize>, Vec<(u32, bool)>) {
    let mut starts = vec![0; bitmaps + 1];
    for &(number, _, _) in logged {
        starts[number as usize + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut next = starts.clone();
    let mut grouped = vec![(0, false); logged.len()];
    for &(number, ord, on) in logged {
        let at = &mut next[number as usize];
        grouped[*at] = (ord, on);
        *at += 1;
    }
    (starts, grouped)
}

/// Byte strings numbered in the order first seen. Each is stored once: the table holds the
/// numbers and compares through `names` (a map from strings to numbers beside the list
/// stored each string twice: two allocations per new bitmap, and a batch of 10,000
/// contacts makes ~33,000 new ones).
#[derive(Default)]
struct Interner {
    names: Vec<Vec<u8>>,
    table: hashbrown::HashTable<u32>,
    state: hashbrown::DefaultHashBuilder,
}

impl Interner {
    /// The number of `name`, if it was interned.
    fn get(&self, name: &[u8]) -> Option<u32> {
        let hash = self.state.hash_one(name);
        let names = &self.names;
        self.table
            .find(hash, |n| names[*n as usize] == name)
            .copied()
    }

    /// The number of `name`, interning it first when it is new.
    fn intern(&mut self, name: &[u8]) -> u32 {
        let hash = self.state.hash_one(name);
        let (names, state) = (&mut self.names, &self.state);
        let entry = self.table.entry(
            hash,
            |n| names[*n as usize] == name,
            |n| state.hash_one(names[*n as usize].as_slice()),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(found) => *found.get(),
            hashbrown::hash_table::Entry::Vacant(slot) => {
                let number = names.len() as u32;
                names.push(name.to_vec());
                slot.insert(number);
                number
            }
        }
    }

    /// The string numbered `number`.
    fn name(&self, number: u32) -> &[u8] {
        &self.names[number as usize]
    }
}

/// Chunks changed by the current write transaction, not yet written.
///
/// Setting or clearing a bit only logs it: the bitmap's key is interned to a number and
/// `(number, ordinal, set)` pushed onto a list. Before anything reads the buffer or writes
/// it out, the list is grouped by bitmap (keeping the order made) and folded into the held
/// chunks a bitmap at a time, each bit taking the state of its last change; a chunk that
/// may hold stored bits (below the stored records' end) is read from storage then, once,
/// in key order. Setting ~30 bits per new record straight into ~35,000 held bitmaps,
/// with a storage read at each first touch, was cache-miss bound and a fifth of a bulk load.
///
/// Held chunks are kept per bitmap (by its interned number), by chunk number. Keyed by the
/// bitmap's key prefix in a hash map, they cost a hash and a probe into a table of ~100,000
/// bitmaps (most of them one value of a unique property) per bitmap at each settle: a
/// third of the settle's time in a bulk load.
#[derive(Default)]
pub(crate) struct BitmapBuffer {
    /// Held chunks, by bitmap number (an empty map where none are held).
    dirty: Vec<BTreeMap<u32, Chunk>>,
    /// The key prefixes of logged bitmaps, numbered.
    numbers: Interner,
    /// Bit changes not yet folded in, in the order made: (bitmap number, ordinal, set).
    logged: Vec<(u32, u32, bool)>,
    /// Chunks of logged bits that may hold stored bits: bitmap number << 32 | chunk.
    stale: Vec<u64>,
    /// Per bitmap number, whether `logged` holds bits of it.
    unsettled: Vec<bool>,
    /// Scratch space for the key prefix of the bitmap being changed.
    prefix: Vec<u8>,
}

impl BitmapBuffer {
    /// Folds the logged changes into the held chunks, a bitmap and a chunk at a time: each
    /// bit takes the state of its last change.
    fn settle(&mut self, kv: &impl Kv) -> Result<()> {
        if self.logged.is_empty() {
            return Ok(());
        }
        self.read_stale(kv)?;
        let (starts, mut grouped) = group_by_bitmap(&self.logged, self.dirty.len());
        let (mut sets, mut clears) = (Vec::new(), Vec::new());
        for (number, bounds) in starts.windows(2).enumerate() {
            let changes = &mut grouped[bounds[0]..bounds[1]];
            if changes.is_empty() {
                continue;
            }
            if !changes.is_sorted_by(|a, b| a.0 < b.0) {
                // Stable: the changes of one bit stay in the order made.
                changes.sort_by_key(|(ord, _)| *ord);
            }
            let chunks = &mut self.dirty[number];
            for run in changes.chunk_by(|a, b| chunk_of(a.0) == chunk_of(b.0)) {
                sets.clear();
                clears.clear();
                for same_bit in run.chunk_by(|a, b| a.0 == b.0) {
                    let (ord, on) = same_bit[same_bit.len() - 1];
                    let offset = (ord & OFFSET_MASK) as u16;
                    if on {
                        sets.push(offset);
                    } else {
                        clears.push(offset);
                    }
                }
                let held = chunks.entry(chunk_of(run[0].0)).or_default();
                held.apply(&sets, &clears);
            }
        }
        self.logged.clear();
        self.unsettled.iter_mut().for_each(|flag| *flag = false);
        Ok(())
    }

    /// Reads into the held chunks every stale chunk not held yet, in key order.
    fn read_stale(&mut self, kv: &impl Kv) -> Result<()> {
        let mut wanted: Vec<(&[u8], u32, u32)> = Vec::new();
        for stale in &self.stale {
            let number = (stale >> 32) as u32;
            let chunk = *stale as u32;
            if !self.dirty[number as usize].contains_key(&chunk) {
                wanted.push((self.numbers.name(number), chunk, number));
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        for (name, chunk, number) in wanted {
            let stored = read_chunk(kv, name, chunk)?;
            self.dirty[number as usize].insert(chunk, stored);
        }
        self.stale.clear();
        Ok(())
    }

    /// Whether bits of the bitmap at `prefix` are logged and not folded in yet.
    fn is_unsettled(&self, prefix: &[u8]) -> bool {
        self.numbers
            .get(prefix)
            .is_some_and(|number| self.unsettled[number as usize])
    }

    /// Puts the key prefix of bitmap `name` of `scope` into the scratch buffer.
    fn set_prefix(&mut self, scope: Scope, name: &[u8]) {
        self.prefix.clear();
        scope.write_bitmap_prefix(name, &mut self.prefix);
    }

    /// The interned number of the bitmap whose key prefix is in `self.prefix`.
    fn number(&mut self) -> u32 {
        let number = self.numbers.intern(&self.prefix);
        if number as usize == self.unsettled.len() {
            self.unsettled.push(false);
            self.dirty.push(BTreeMap::new());
        }
        number
    }

    /// Sets (`on`) or clears bit `ord` of bitmap `name`; `fresh` says its chunk holds no
    /// stored ordinal (so it need not be read). Only logged: clears are folded in with the
    /// sets, so a bulk update reads the chunks it changes once each, in key order, instead
    /// of one by one as each item cleared its old values' bits.
    pub fn change(&mut self, scope: Scope, name: &[u8], ord: u32, on: bool, fresh: bool) {
        self.set_prefix(scope, name);
        let number = self.number();
        self.unsettled[number as usize] = true;
        self.logged.push((number, ord, on));
        if !fresh {
            self.stale
                .push(u64::from(number) << 32 | u64::from(chunk_of(ord)));
        }
    }

    /// Reads the whole bitmap `name` as this transaction sees it.
    pub fn read(&mut self, kv: &impl Kv, scope: Scope, name: &[u8]) -> Result<RoaringBitmap> {
        let prefix = scope.bitmap_prefix(name);
        if self.is_unsettled(&prefix) {
            self.settle(kv)?;
        }
        let mut full = read(kv, scope, name)?;
        let held = self.numbers.get(&prefix).map(|n| &self.dirty[n as usize]);
        for (number, chunk) in held.into_iter().flatten() {
            let base = number << CHUNK_BITS;
            full.remove_range(base..=(base | OFFSET_MASK));
            full |= chunk.to_bitmap(base);
        }
        Ok(full)
    }

    /// Deletes every bitmap of `scope` whose name starts with `name_prefix`, stored or held.
    pub fn drop_prefix(
        &mut self,
        writer: &mut Writer<'_>,
        scope: Scope,
        name_prefix: &[u8],
    ) -> Result<()> {
        self.settle(writer)?;
        let prefix = scope.bitmap_prefix(name_prefix);
        for (number, held) in self.dirty.iter_mut().enumerate() {
            if self.numbers.name(number as u32).starts_with(&prefix) {
                held.clear();
            }
        }
        writer.delete_prefix(&prefix)
    }

    /// Writes every changed chunk in key order (an empty chunk is deleted) and empties the
    /// buffer.
    pub fn flush(&mut self, writer: &mut Writer<'_>) -> Result<()> {
        self.settle(writer)?;
        let mut held: Vec<(&[u8], BTreeMap<u32, Chunk>)> = self
            .dirty
            .iter_mut()
            .enumerate()
            .filter(|(_, chunks)| !chunks.is_empty())
            .map(|(n, chunks)| (self.numbers.name(n as u32), std::mem::take(chunks)))
            .collect();
        held.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let count = held.iter().map(|(_, chunks)| chunks.len()).sum();
        let writes = held.into_iter().flat_map(|(prefix, chunks)| {
            chunks.into_iter().map(move |(number, chunk)| {
                let value = (!chunk.is_empty()).then(|| chunk.encode());
                (chunk_key(prefix, number), value)
            })
        });
        writer.put_many(count, writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored body of the ordinals of `bitmap` (all in chunk number `chunk`).
    fn encode_chunk(chunk: u32, bitmap: &RoaringBitmap) -> Vec<u8> {
        let base = chunk << CHUNK_BITS;
        let offsets: Vec<u16> = bitmap.iter().map(|ord| (ord - base) as u16).collect();
        let mut held = Chunk::default();
        held.apply(&offsets, &[]);
        held.encode()
    }

    /// One change or read of a [`BitmapBuffer`] in the proptest below.
    #[derive(Clone, Debug)]
    enum BufferOp {
        Set { name: u8, ord: u32 },
        Clear { name: u8, ord: u32 },
        Read { name: u8 },
    }

    fn buffer_op() -> impl proptest::strategy::Strategy<Value = BufferOp> {
        use proptest::prelude::*;
        let name = 0u8..4;
        // Half of the ordinals from a few per chunk, so that bits change several times.
        let ord = prop_oneof![
            0u32..3 * 4096,
            (0u32..3, 0u32..8).prop_map(|(chunk, offset)| chunk * 4096 + offset),
        ];
        prop_oneof![
            4 => (name.clone(), ord.clone()).prop_map(|(name, ord)| BufferOp::Set { name, ord }),
            1 => (name.clone(), ord).prop_map(|(name, ord)| BufferOp::Clear { name, ord }),
            1 => name.prop_map(|name| BufferOp::Read { name }),
        ]
    }

    proptest::proptest! {
        /// Bits logged for fresh chunks, bits set in stored chunks, cleared bits and reads
        /// in between all agree with a plain set per bitmap, before and after the flush.
        #[test]
        fn held_chunks_agree_with_a_model(
            stored in proptest::collection::vec((0u8..4, 0u32..4096), 0..40),
            ops in proptest::collection::vec(buffer_op(), 1..300),
        ) {
            use crate::model::ObjectType;
            use std::collections::BTreeSet;
            let scope = Scope { team: 1, ty: ObjectType::Contact };
            let store = crate::storage::Store::in_memory().unwrap();
            let mut model: BTreeMap<u8, BTreeSet<u32>> = BTreeMap::new();
            store.write(crate::storage::Durability::Immediate, |writer| {
                let mut buffer = BitmapBuffer::default();
                for (name, ord) in &stored {
                    buffer.change(scope, &[*name], *ord, true, false);
                    model.entry(*name).or_default().insert(*ord);
                }
                buffer.flush(writer)
            }).unwrap();
            store.write(crate::storage::Durability::Immediate, |writer| {
                let mut buffer = BitmapBuffer::default();
                for op in &ops {
                    match *op {
                        BufferOp::Set { name, ord } => {
                            // Chunk 0 holds stored bits; chunks 1 and 2 are fresh.
                            buffer.change(scope, &[name], ord, true, chunk_of(ord) > 0);
                            model.entry(name).or_default().insert(ord);
                        }
                        BufferOp::Clear { name, ord } => {
                            buffer.change(scope, &[name], ord, false, chunk_of(ord) > 0);
                            model.entry(name).or_default().remove(&ord);
                        }
                        BufferOp::Read { name } => {
                            let held: Vec<u32> = buffer.read(writer, scope, &[name])?.iter().collect();
                            let want: Vec<u32> = model.get(&name).into_iter().flatten().copied().collect();
                            assert_eq!(held, want, "read of {name}");
                        }
                    }
                }
                buffer.flush(writer)
            }).unwrap();
            let reader = store.read().unwrap();
            for name in 0u8..4 {
                let stored: Vec<u32> = read(&reader, scope, &[name]).unwrap().iter().collect();
                let want: Vec<u32> = model.get(&name).into_iter().flatten().copied().collect();
                proptest::prop_assert_eq!(stored, want, "stored {}", name);
            }
        }
    }

    #[test]
    fn chunks_round_trip_in_both_layouts() {
        for count in [0u32, 1, 200, 256, 257, 4000, 4096] {
            let chunk = 7;
            let base = chunk << CHUNK_BITS;
            let bitmap: RoaringBitmap = (0..count)
                .map(|i| base + (i * 4096 / count.max(1)))
                .collect();
            let bytes = encode_chunk(chunk, &bitmap);
            assert_eq!(decode_chunk(chunk, &bytes).unwrap(), bitmap, "{count}");
            assert!(bytes.len() <= 1 + BITSET_BYTES);
            let mut gather = Gather::new();
            gather.add(chunk, &bytes).unwrap();
            gather
                .add(chunk + 1, &encode_chunk(chunk + 1, &RoaringBitmap::new()))
                .unwrap();
            assert_eq!(gather.finish(), bitmap, "{count}");
        }
    }

    proptest::proptest! {
        /// Chunks made of runs (of any length, at any bit and byte offset) round trip.
        #[test]
        fn chunks_of_runs_round_trip(runs in proptest::collection::vec((0u32..4096, 1u32..700), 0..40)) {
            let chunk = 3;
            let base = chunk << CHUNK_BITS;
            let mut bitmap = RoaringBitmap::new();
            for (start, len) in runs {
                bitmap.insert_range(base + start..base + (start + len).min(4096));
            }
            let bytes = encode_chunk(chunk, &bitmap);
            proptest::prop_assert_eq!(decode_chunk(chunk, &bytes).unwrap(), bitmap);
        }
    }

    /// A bitmap over a few windows, with sparse and dense chunks.
    fn mixed_bitmap() -> impl proptest::strategy::Strategy<Value = RoaringBitmap> {
        use proptest::strategy::Strategy;
        let chunk = (0u32..40, 0u32..4096, 1u32..4096, 1u32..64);
        proptest::collection::vec(chunk, 0..6).prop_map(|chunks| {
            let mut bitmap = RoaringBitmap::new();
            for (chunk, start, len, step) in chunks {
                let base = chunk << CHUNK_BITS;
                let end = (start + len).min(4096);
                bitmap.extend((start..end).step_by(step as usize).map(|o| base + o));
            }
            bitmap
        })
    }

    proptest::proptest! {
        /// The union reader gives the OR of the bitmaps, whatever their layouts and order.
        #[test]
        fn a_union_of_stored_chunks_is_the_or_of_the_bitmaps(bitmaps in proptest::collection::vec(mixed_bitmap(), 0..5)) {
            let mut union = Union::default();
            let mut expected = RoaringBitmap::new();
            for bitmap in &bitmaps {
                expected |= bitmap;
                for chunk in 0..40u32 {
                    let base = chunk << CHUNK_BITS;
                    let mut part = bitmap.clone();
                    part.remove_range(..base);
                    part.remove_range(base + (1 << CHUNK_BITS)..);
                    if !part.is_empty() {
                        union.add(chunk, &encode_chunk(chunk, &part)).unwrap();
                    }
                }
            }
            proptest::prop_assert_eq!(union.finish(), expected);
        }
    }

    proptest::proptest! {
        /// Reading an intersection over a chunk range gives the AND of the stored bitmaps
        /// within that range, whatever their layouts.
        #[test]
        fn an_intersection_of_stored_bitmaps_is_the_and_within_the_range(
            bitmaps in proptest::collection::vec(mixed_bitmap(), 0..4),
            from in 0u32..40,
            span in 0u32..45,
        ) {
            use crate::model::ObjectType;
            let scope = Scope { team: 1, ty: ObjectType::Contact };
            let store = crate::storage::Store::in_memory().unwrap();
            store.write(crate::storage::Durability::Immediate, |writer| {
                let mut buffer = BitmapBuffer::default();
                for (name, bitmap) in bitmaps.iter().enumerate() {
                    for ord in bitmap {
                        buffer.change(scope, &[name as u8], ord, true, true);
                    }
                }
                buffer.flush(writer)
            }).unwrap();
            let names: Vec<Vec<u8>> = (0..bitmaps.len() as u8).map(|n| vec![n]).collect();
            let chunks = from..from + span;
            let found = read_intersection(&store.read().unwrap(), scope, &names, chunks.clone()).unwrap();
            let mut expected = bitmaps.iter().skip(1).fold(bitmaps.first().cloned().unwrap_or_default(), |acc, b| acc & b);
            expected.remove_range(..chunks.start << CHUNK_BITS);
            expected.remove_range(chunks.end << CHUNK_BITS..);
            proptest::prop_assert_eq!(found, expected);
        }
    }

    #[test]
    fn gathering_chunks_of_several_bitmaps_unions_them() {
        let sparse: RoaringBitmap = [5, 9, 4100].into_iter().collect();
        let overlapping: RoaringBitmap = [1, 9].into_iter().collect();
        let dense: RoaringBitmap = (0..4096).step_by(3).collect();
        let mut gather = Gather::new();
        for (chunk, bits) in [(0, &sparse), (1, &sparse), (0, &overlapping), (0, &dense)] {
            let part: RoaringBitmap = bits.iter().filter(|o| o >> CHUNK_BITS == chunk).collect();
            gather.add(chunk, &encode_chunk(chunk, &part)).unwrap();
        }
        assert_eq!(gather.finish(), &(&sparse | &overlapping) | &dense);
    }

    #[test]
    fn a_window_of_many_sparse_chunks_gathers_whole() {
        // 16 array chunks of 200 ordinals: past SPARSE_WINDOW_MAX, built as a bitset.
        let all: RoaringBitmap = (0..16u32)
            .flat_map(|chunk| (0..200).map(move |i| (chunk << CHUNK_BITS) + i * 7))
            .collect();
        let mut gather = Gather::new();
        for chunk in 0..16 {
            let part: RoaringBitmap = all.iter().filter(|o| o >> CHUNK_BITS == chunk).collect();
            gather.add(chunk, &encode_chunk(chunk, &part)).unwrap();
        }
        gather
            .add(16, &encode_chunk(16, &[65_540].into_iter().collect()))
            .unwrap();
        let mut expected = all.clone();
        expected.insert(65_540);
        assert_eq!(gather.finish(), expected);
    }

    #[test]
    fn damaged_chunks_are_errors() {
        for bytes in [
            &[][..],
            &[9, 1, 2],
            &[ARRAY_TAG, 1],
            &[ARRAY_TAG, 0x10, 0],
            &[ARRAY_TAG, 0, 2, 0, 1],
            &[BITSET_TAG, 0],
        ] {
            assert!(decode_chunk(0, bytes).is_err(), "{bytes:?}");
            assert!(Gather::new().add(0, bytes).is_err(), "{bytes:?}");
            assert!(Union::default().add(0, bytes).is_err(), "{bytes:?}");
        }
        assert_eq!(chunk_in_key(&[0, 0, 0x0f, 0xff, 0xff]), Some(0xf_ffff));
        assert_eq!(
            chunk_in_key(&[0, 0, 0x10, 0, 0]),
            None,
            "past every ordinal"
        );
        assert_eq!(chunk_in_key(&[1, 2, 3]), None, "too short");
    }
}
