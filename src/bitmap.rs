//! The bitmap module: roaring bitmaps of ordinals, stored in chunks of 4,096 ordinals.
//!
//! Each chunk is its own row, so a write rewrites one small row per bitmap it touches
//! instead of a whole bitmap (DESIGN.md: whole-bitmap rewrites cost 40% of write
//! throughput). A chunk is stored as a sorted array of 12-bit offsets while it holds at most
//! 64 ordinals (2 bytes each), else as a 512-byte bitset (the `chunk` submodule): a dense
//! chunk costs a single-record commit 512 bytes, where one roaring container of 65,536
//! ordinals would cost 8 KiB. Inside a write transaction, changed chunks are held in the
//! same two shapes in a [`BitmapBuffer`] and written once, in key order, when the
//! transaction ends.
//!
//! A bitmap whose writers ask for [`Layout::WholeWhileSmall`] (a reference's value bitmap:
//! the few records pointing at one target, spread over the whole ordinal range) is stored
//! as one *whole row* while it holds at most [`WHOLE_MAX`] ordinals: the key of chunk
//! number [`WHOLE_ROW`] (past every real chunk), holding the ordinals themselves. One row
//! per chunk was one row per record for such bitmaps: a million contacts referencing
//! 50,000 organizations kept a million rows for them, and a bulk load rewrote a leaf of
//! them for almost every record. A bitmap has either a whole row or chunk rows, never
//! both; every reader accepts either.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use roaring::RoaringBitmap;

use crate::cache::{Changed, Group};
use crate::error::Result;
use crate::keys::Scope;
use crate::storage::{prefix_end, Kv, Writer};

mod chunk;

use chunk::{damaged, for_each_offset, Chunk, ARRAY_TAG, BITSET_BYTES, BITSET_TAG, CHUNK_BITS};

/// The bits of an ordinal that are its offset in its chunk.
const OFFSET_MASK: u32 = (1 << CHUNK_BITS) - 1;

/// The chunk number in the key of a bitmap's whole row: no ordinal's chunk is this high,
/// and the row sorts after every chunk row of its bitmap.
pub(crate) const WHOLE_ROW: u32 = u32::MAX;

/// A bitmap laid out [`Layout::WholeWhileSmall`] is one row while it holds at most this many
/// ordinals (a row of at most 257 bytes, rewritten whole by each change). Small in unit
/// tests, so that the buffer's proptest crosses it often.
#[cfg(not(test))]
pub(crate) const WHOLE_MAX: usize = 64;
#[cfg(test)]
pub(crate) const WHOLE_MAX: usize = 8;

/// The first byte of a whole row's body; the ordinals follow, ascending, 4 bytes each
/// (big-endian).
const WHOLE_TAG: u8 = 2;

/// How a bitmap's rows are laid out; every writer of one bitmap asks for the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Layout {
    /// One row per chunk of 4,096 ordinals that holds any.
    Chunked,
    /// One whole row while the bitmap holds at most [`WHOLE_MAX`] ordinals, chunk rows once
    /// it has held more (it does not go back).
    WholeWhileSmall,
}

/// What the key of a bitmap row ends with.
enum RowKey {
    /// A chunk row, of this chunk number.
    Chunk(u32),
    /// The bitmap's whole row.
    Whole,
}

/// What the last 4 bytes of a bitmap row's key say; `None` for a key too short to hold a
/// chunk number, or a number no ordinal falls in (a damaged key, which must not size the
/// union's bitset).
fn row_in_key(key: &[u8]) -> Option<RowKey> {
    let tail: [u8; 4] = key.get(key.len().checked_sub(4)?..)?.try_into().ok()?;
    match u32::from_be_bytes(tail) {
        WHOLE_ROW => Some(RowKey::Whole),
        chunk if chunk <= u32::MAX >> CHUNK_BITS => Some(RowKey::Chunk(chunk)),
        _ => None,
    }
}

/// The body of a whole row holding `ords` (ascending, distinct).
fn encode_whole(ords: impl Iterator<Item = u32>) -> Vec<u8> {
    let mut out = vec![WHOLE_TAG];
    for ord in ords {
        out.extend_from_slice(&ord.to_be_bytes());
    }
    out
}

/// The ordinals of a whole row's body; an error naming what is wrong if it is not one
/// (unknown tag, a cut ordinal, ordinals out of order, more than [`WHOLE_MAX`]).
fn decode_whole(body: &[u8]) -> Result<Vec<u32>> {
    let Some((&WHOLE_TAG, ords)) = body.split_first() else {
        return Err(damaged("a whole row without its tag"));
    };
    if !ords.len().is_multiple_of(4) || ords.len() / 4 > WHOLE_MAX {
        return Err(damaged("a whole row of a bad length"));
    }
    let ords: Vec<u32> = ords
        .chunks_exact(4)
        .map(|four| u32::from_be_bytes(four.try_into().expect("4-byte slices")))
        .collect();
    if !ords.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err(damaged("a whole row's ordinals out of order"));
    }
    Ok(ords)
}

/// Ascending, distinct ordinals cut into chunks: (chunk number, chunk), in chunk order.
fn chunks_of_ords(ords: &[u32]) -> impl Iterator<Item = (u32, Chunk)> + '_ {
    ords.chunk_by(|a, b| chunk_of(*a) == chunk_of(*b))
        .map(|run| {
            let offsets: Vec<u16> = run.iter().map(|ord| (ord & OFFSET_MASK) as u16).collect();
            (chunk_of(run[0]), Chunk::sparse_or_dense(offsets))
        })
}

/// A whole row's ordinals cut into chunk bodies (array layout), in chunk order.
fn whole_as_chunks(body: &[u8]) -> Result<Vec<(u32, Vec<u8>)>> {
    let ords = decode_whole(body)?;
    Ok(chunks_of_ords(&ords)
        .map(|(number, chunk)| (number, chunk.encode()))
        .collect())
}

/// Calls `add` with the chunk number and body of each chunk a stored row holds: a chunk
/// row's one, or every chunk of a whole row.
fn each_chunk_of_row(
    key: &[u8],
    value: &[u8],
    add: &mut impl FnMut(u32, &[u8]) -> Result<()>,
) -> Result<()> {
    match row_in_key(key) {
        Some(RowKey::Chunk(chunk)) => add(chunk, value),
        Some(RowKey::Whole) => whole_as_chunks(value)?
            .iter()
            .try_for_each(|(chunk, body)| add(*chunk, body)),
        None => Err(damaged("bad chunk number in key")),
    }
}

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

/// Gathers the chunks of several bitmaps into one. Each row's body is set aside as it is
/// scanned; at the end, when the union's extent is known, every chunk the bitset reaches is
/// OR-ed straight into one bitset over ordinals from 0, each roaring container is built
/// once from it, and the sparse ordinals past it are sorted in. Reading a `$in` of three
/// city values bitmap by bitmap built ~2,000-ordinal array containers for each (one push
/// per ordinal) and merged them, a third of a filtered count; collecting every ordinal
/// before choosing where it goes then took five passes over them, 40% of the `$in`.
#[derive(Default)]
struct Union {
    /// Each row's chunk number and the end of its body in `bodies`.
    rows: Vec<(u32, usize)>,
    /// The rows' bodies, one after another.
    bodies: Vec<u8>,
    /// The chunk past the last dense one.
    dense_end: u32,
    /// How many ordinals the sparse rows hold.
    sparse_ords: usize,
}

impl Union {
    /// Sets aside stored chunk number `chunk`; an error if its body has no known layout.
    fn add(&mut self, chunk: u32, bytes: &[u8]) -> Result<()> {
        match bytes.split_first() {
            Some((&BITSET_TAG, bits)) if bits.len() == BITSET_BYTES => {
                self.dense_end = self.dense_end.max(chunk + 1);
            }
            Some((&ARRAY_TAG, offsets)) if offsets.len() % 2 == 0 => {
                self.sparse_ords += offsets.len() / 2;
            }
            _ => return Err(damaged("unknown layout")),
        }
        self.bodies.extend_from_slice(bytes);
        self.rows.push((chunk, self.bodies.len()));
        Ok(())
    }

    /// The union; an error naming what is wrong if a set-aside body is damaged.
    fn finish(self) -> Result<RoaringBitmap> {
        // The bitset reaches the last dense chunk, and every chunk when that costs no more
        // than four bytes per sparse ordinal.
        let last = self
            .rows
            .iter()
            .map(|(chunk, _)| chunk + 1)
            .max()
            .unwrap_or(0);
        let reach = match last as usize * BITSET_BYTES <= self.sparse_ords * 4 {
            true => last,
            false => self.dense_end,
        };
        let mut bits = vec![0u8; reach as usize * BITSET_BYTES];
        let mut beyond = Vec::new();
        let mut start = 0;
        for &(chunk, end) in &self.rows {
            let body = &self.bodies[start..end];
            start = end;
            if chunk < reach {
                let at = chunk as usize * BITSET_BYTES;
                Chunk::or_into(body, &mut bits[at..at + BITSET_BYTES])?;
            } else {
                let base = chunk << CHUNK_BITS;
                for_each_offset(&body[1..], |offset| beyond.push(base + offset))?;
            }
        }
        let window_bytes = BITSET_BYTES * CHUNKS_PER_WINDOW as usize;
        let mut full = RoaringBitmap::new();
        for (window, bytes) in bits.chunks(window_bytes).enumerate() {
            if bytes.iter().any(|byte| *byte != 0) {
                full |= RoaringBitmap::from_lsb0_bytes((window as u32) << 16, bytes);
            }
        }
        beyond.sort_unstable();
        beyond.dedup();
        full |= RoaringBitmap::from_sorted_iter(beyond).expect("sorted and deduplicated above");
        Ok(full)
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
    union.finish()
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
                each_chunk_of_row(key, value, &mut add)?;
            }
            Ok(true)
        },
    )
}

/// Calls `add` with the chunk number and body of each of the chunks `chunks` that the
/// stored bitmap `name` of `scope` holds, in order. The scan runs past the range to the
/// next row of the bitmap: that is its whole row, if it has one.
fn scan_chunk_range(
    kv: &impl Kv,
    scope: Scope,
    name: &[u8],
    chunks: &std::ops::Range<u32>,
    mut add: impl FnMut(u32, &[u8]) -> Result<()>,
) -> Result<()> {
    let prefix = scope.bitmap_prefix(name);
    let start = chunk_key(&prefix, chunks.start);
    let end = prefix_end(&prefix).unwrap_or_default();
    kv.scan(
        std::ops::Bound::Included(&start),
        std::ops::Bound::Excluded(&end),
        false,
        |key, value| {
            if !owns_row(&prefix, key) {
                return Ok(true); // a longer name that shares the prefix
            }
            match row_in_key(key) {
                Some(RowKey::Chunk(chunk)) if chunk < chunks.end => {
                    add(chunk, value).map(|()| true)
                }
                Some(RowKey::Chunk(_)) => Ok(false),
                Some(RowKey::Whole) => {
                    for (chunk, body) in whole_as_chunks(value)? {
                        if chunks.contains(&chunk) {
                            add(chunk, &body)?;
                        }
                    }
                    Ok(false)
                }
                None => Err(damaged("bad chunk number in key")),
            }
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
    let mut gather = Gather::new();
    scan_chunk_range(kv, scope, name, &chunks, |chunk, bytes| {
        gather.add(chunk, bytes)
    })?;
    Ok(gather.finish())
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
    scan_chunk_range(kv, scope, name, &chunks, |chunk, body| {
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

/// Decodes one stored bitmap row, a chunk row or a whole row (`key` ends with the chunk
/// number or [`WHOLE_ROW`]).
pub(crate) fn decode_row(key: &[u8], value: &[u8]) -> Result<RoaringBitmap> {
    match row_in_key(key) {
        Some(RowKey::Chunk(chunk)) => decode_chunk(chunk, value),
        Some(RowKey::Whole) => Ok(RoaringBitmap::from_sorted_iter(decode_whole(value)?)
            .expect("decode_whole checks the order")),
        None => Err(damaged("bad chunk number in key")),
    }
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
        let bits = decode_row(key, value)?;
        let name = key
            .get(start..key.len() - 4)
            .ok_or_else(|| damaged("bad chunk number in key"))?;
        *found.entry(name.to_vec()).or_default() |= bits;
        Ok(true)
    })?;
    Ok(found)
}

/// Decodes `body` as a chunk row and as a whole row, for the fuzz targets; checks that a
/// row that decodes gathers, chunk by chunk, into the same ordinals. Returns how many of the
/// two decoded.
pub(crate) fn check_row_decoders(body: &[u8]) -> usize {
    let mut decoded = 0;
    for tail in [3, WHOLE_ROW] {
        let key = tail.to_be_bytes();
        let Ok(bits) = decode_row(&key, body) else {
            continue;
        };
        let mut gather = Gather::new();
        each_chunk_of_row(&key, body, &mut |chunk, bytes| gather.add(chunk, bytes))
            .expect("a row that decodes splits into chunks that decode");
        assert_eq!(gather.finish(), bits, "a row gathered chunk by chunk");
        decoded += 1;
    }
    decoded
}

/// How many stored bitmaps of `scope` whose name starts with `name_prefix` have both a
/// whole row and chunk rows (none should: readers would take the union, but writers change
/// only one of the two).
pub(crate) fn count_mixed_layouts(kv: &impl Kv, scope: Scope, name_prefix: &[u8]) -> Result<usize> {
    let mut mixed = 0;
    let (mut name, mut chunks, mut whole) = (Vec::new(), false, false);
    kv.scan_prefix(&scope.bitmap_prefix(name_prefix), |key, _| {
        let this = &key[..key.len().saturating_sub(4)];
        if this != name.as_slice() {
            mixed += usize::from(chunks && whole);
            (name, chunks, whole) = (this.to_vec(), false, false);
        }
        match row_in_key(key) {
            Some(RowKey::Whole) => whole = true,
            Some(RowKey::Chunk(_)) => chunks = true,
            None => return Err(damaged("bad chunk number in key")),
        }
        Ok(true)
    })?;
    Ok(mixed + usize::from(chunks && whole))
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
///
/// A bitmap laid out [`Layout::WholeWhileSmall`] is looked up once, at the first settle
/// after its first change: stored as a whole row or as nothing, all of it is held from then
/// on (no chunk is read again), and the flush writes it whole again or, past
/// [`WHOLE_MAX`], as chunk rows; stored as chunk rows, it is changed like any other.
#[derive(Default)]
pub(crate) struct BitmapBuffer {
    /// Held chunks, by bitmap number (an empty map where none are held).
    dirty: Vec<BTreeMap<u32, Chunk>>,
    /// What is known of how each bitmap is stored, by bitmap number.
    kept: Vec<Kept>,
    /// Bitmaps laid out [`Layout::WholeWhileSmall`] changed and not looked up yet.
    unprobed: Vec<u32>,
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
    /// The scope and group of each numbered bitmap (for the bitmap cache).
    groups: Vec<(Scope, Group)>,
    /// The scopes and groups of the bitmaps dropped.
    dropped: Vec<(Scope, Group)>,
    /// The bitmap number and ordinal of each change, while there are at most
    /// [`NOTED_ORDS_MAX`] and no bitmap was dropped (`noted_past` says when not): the bitmap
    /// cache brings its entries up to date for these records alone.
    noted: Vec<(u32, u32)>,
    noted_past: bool,
}

/// The most bit changes a transaction lists for the bitmap cache, one by one; a
/// transaction with more notes its groups as changed without listing them.
const NOTED_ORDS_MAX: usize = 256;

/// What a [`BitmapBuffer`] knows of how one bitmap is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kept {
    /// Laid out [`Layout::Chunked`]: chunk rows, or nothing.
    Chunked,
    /// Laid out [`Layout::WholeWhileSmall`], not looked up since the last flush.
    Unprobed,
    /// Laid out [`Layout::WholeWhileSmall`] and queued for the look-up.
    Queued,
    /// Laid out [`Layout::WholeWhileSmall`] and stored as chunk rows.
    InChunks,
    /// Laid out [`Layout::WholeWhileSmall`] and held whole: stored as a whole row
    /// (`whole_row`) or as nothing.
    Held { whole_row: bool },
}

/// How one bitmap is stored, as a look-up found it.
#[derive(Debug, PartialEq)]
enum Probe {
    Nothing,
    Whole(Vec<u32>),
    Chunks,
}

/// At least this many bitmaps queued for a look-up at once are probed by an ordered scan
/// rather than a point read each (a bulk load of 10,000 contacts probes the reference
/// bitmaps of ~9,000 of 50,000 organizations, where one scan of all 50,000 rows cost less
/// than the point reads). Small in unit tests, so that their proptests scan.
#[cfg(not(test))]
const PROBE_SCAN_AT: usize = 1024;
#[cfg(test)]
const PROBE_SCAN_AT: usize = 2;

/// A probing scan passes at most this many rows that no queued bitmap owns before it seeks
/// to the next queued one (a new range read).
#[cfg(not(test))]
const PROBE_SKIP: usize = 32;
#[cfg(test)]
const PROBE_SKIP: usize = 2;

/// How each bitmap of `prefixes` (key prefixes, sorted and distinct) is stored, in order.
/// Many are read by ordered scans ([`scan_probes`]), the rest by [`probe`] each. Scans
/// need each bitmap's rows to end before the next one's begin, so a list where one prefix
/// starts another (never for references, whose names have one length) is probed one by
/// one.
///
/// Returns the error of the first read that fails, or of a damaged whole row.
fn probe_sorted(kv: &impl Kv, prefixes: &[&[u8]]) -> Result<Vec<Probe>> {
    let mut found = Vec::with_capacity(prefixes.len());
    let nested = prefixes.windows(2).any(|pair| pair[1].starts_with(pair[0]));
    if prefixes.len() >= PROBE_SCAN_AT && !nested {
        scan_probes(kv, prefixes, &mut found)?;
    }
    for prefix in &prefixes[found.len()..] {
        found.push(probe(kv, prefix)?);
    }
    Ok(found)
}

/// Probes `prefixes` (sorted, distinct) from the first not in `found` on, pushing each
/// outcome on `found`, by ordered scans: a scan runs until it has passed [`PROBE_SKIP`]
/// rows no prefix owns, then the next one starts at the next prefix. Stops early, leaving
/// the rest to point reads, once more than a quarter of the probes needed a scan of their
/// own (the rows between them are too many to pass).
fn scan_probes(kv: &impl Kv, prefixes: &[&[u8]], found: &mut Vec<Probe>) -> Result<()> {
    let Some(last) = prefixes.last() else {
        return Ok(());
    };
    let end_key = prefix_end(last);
    let end = match &end_key {
        Some(key) => std::ops::Bound::Excluded(key.as_slice()),
        None => std::ops::Bound::Unbounded,
    };
    let mut scans = 0;
    while found.len() < prefixes.len() {
        if scans >= 16 && scans * 4 > found.len() {
            return Ok(());
        }
        scans += 1;
        let before = found.len();
        let mut pending = Probe::Nothing;
        let mut passed = 0;
        let mut reached_end = true;
        kv.scan(
            std::ops::Bound::Included(prefixes[before]),
            end,
            false,
            |key, body| {
                while let Some(prefix) = prefixes.get(found.len()) {
                    if owns_row(prefix, key) {
                        if matches!(row_in_key(key), Some(RowKey::Whole)) {
                            pending = Probe::Whole(decode_whole(body)?);
                        } else if matches!(pending, Probe::Nothing) {
                            pending = Probe::Chunks;
                        }
                        passed = 0;
                        return Ok(true);
                    }
                    if !past_rows(prefix, key) {
                        passed += 1;
                        reached_end = passed <= PROBE_SKIP;
                        return Ok(reached_end);
                    }
                    found.push(std::mem::replace(&mut pending, Probe::Nothing));
                }
                Ok(false)
            },
        )?;
        if reached_end && found.len() < prefixes.len() {
            // The scan ran out of rows: the prefixes left have none past the pending one's.
            found.push(pending);
            found.resize_with(prefixes.len(), || Probe::Nothing);
        } else if !reached_end && found.len() == before {
            // Rows of longer names under this prefix: read it on its own.
            found.push(probe(kv, prefixes[before])?);
        }
    }
    Ok(())
}

/// Whether `key` is a row of the bitmap whose key prefix is `prefix` (a chunk or the whole
/// row), not of a longer name that starts the same.
fn owns_row(prefix: &[u8], key: &[u8]) -> bool {
    key.len() == prefix.len() + 4 && key.starts_with(prefix)
}

/// Whether `key` sorts after every row of the bitmap whose key prefix is `prefix`.
fn past_rows(prefix: &[u8], key: &[u8]) -> bool {
    let shared = prefix.len().min(key.len());
    match key[..shared].cmp(prefix) {
        std::cmp::Ordering::Equal if key.len() > prefix.len() => {
            key[prefix.len()..] > WHOLE_ROW.to_be_bytes()[..]
        }
        order => order == std::cmp::Ordering::Greater,
    }
}

/// Looks up how the bitmap whose key prefix is `prefix` is stored: a point read of its
/// whole row (most bitmaps laid out whole are stored whole, and a range read costs more),
/// else a range read for its first chunk row.
fn probe(kv: &impl Kv, prefix: &[u8]) -> Result<Probe> {
    if let Some(ords) = kv.get_with(&chunk_key(prefix, WHOLE_ROW), decode_whole)? {
        return Ok(Probe::Whole(ords?));
    }
    let end = prefix_end(prefix).unwrap_or_default();
    let mut found = Probe::Nothing;
    kv.scan(
        std::ops::Bound::Included(prefix),
        std::ops::Bound::Excluded(&end),
        false,
        |key, _| {
            if owns_row(prefix, key) {
                found = Probe::Chunks;
            }
            Ok(!owns_row(prefix, key)) // on past longer names that share the prefix
        },
    )?;
    Ok(found)
}

/// The rows a bitmap's held chunks are written as: (chunk number or [`WHOLE_ROW`], body, or
/// `None` to delete the row).
enum RowsOf {
    /// Each held chunk as its chunk row.
    Chunks(std::collections::btree_map::IntoIter<u32, Chunk>),
    /// Rows worked out for a bitmap held whole.
    Planned(std::vec::IntoIter<(u32, Option<Vec<u8>>)>),
}

impl RowsOf {
    /// How many rows are left.
    fn len(&self) -> usize {
        match self {
            RowsOf::Chunks(chunks) => chunks.len(),
            RowsOf::Planned(rows) => rows.len(),
        }
    }
}

impl Iterator for RowsOf {
    type Item = (u32, Option<Vec<u8>>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            RowsOf::Chunks(chunks) => chunks
                .next()
                .map(|(number, chunk)| (number, (!chunk.is_empty()).then(|| chunk.encode()))),
            RowsOf::Planned(rows) => rows.next(),
        }
    }
}

/// The rows of a bitmap held whole (`chunks` is all of it; `whole_row` says whether it is
/// stored as a whole row now): one whole row while it has at most [`WHOLE_MAX`] ordinals
/// (deleted when empty), else its chunk rows, the whole row deleted.
fn whole_rows(chunks: BTreeMap<u32, Chunk>, whole_row: bool) -> Vec<(u32, Option<Vec<u8>>)> {
    let count: usize = chunks.values().map(Chunk::len).sum();
    if count <= WHOLE_MAX {
        let mut ords = Vec::with_capacity(count);
        for (number, chunk) in &chunks {
            chunk.push_ords(number << CHUNK_BITS, &mut ords);
        }
        return match (ords.is_empty(), whole_row) {
            (false, _) => vec![(WHOLE_ROW, Some(encode_whole(ords.into_iter())))],
            (true, true) => vec![(WHOLE_ROW, None)],
            (true, false) => Vec::new(),
        };
    }
    let mut rows: Vec<(u32, Option<Vec<u8>>)> = chunks
        .into_iter()
        .filter(|(_, chunk)| !chunk.is_empty())
        .map(|(number, chunk)| (number, Some(chunk.encode())))
        .collect();
    if whole_row {
        rows.push((WHOLE_ROW, None));
    }
    rows
}

impl BitmapBuffer {
    /// Folds the logged changes into the held chunks, a bitmap and a chunk at a time: each
    /// bit takes the state of its last change.
    fn settle(&mut self, kv: &impl Kv) -> Result<()> {
        if self.logged.is_empty() {
            return Ok(());
        }
        self.probe_unprobed(kv)?;
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

    /// Looks up, in key order, how each bitmap queued for it is stored; one stored whole
    /// (or not at all) is held whole from then on.
    fn probe_unprobed(&mut self, kv: &impl Kv) -> Result<()> {
        let mut queued = std::mem::take(&mut self.unprobed);
        queued.sort_unstable_by(|a, b| self.numbers.name(*a).cmp(self.numbers.name(*b)));
        let prefixes: Vec<&[u8]> = queued.iter().map(|n| self.numbers.name(*n)).collect();
        let probes = probe_sorted(kv, &prefixes)?;
        for (number, found) in queued.into_iter().zip(probes) {
            let kept = match found {
                Probe::Chunks => Kept::InChunks,
                Probe::Nothing => Kept::Held { whole_row: false },
                Probe::Whole(ords) => {
                    // Nothing of this bitmap is held before its look-up.
                    self.dirty[number as usize].extend(chunks_of_ords(&ords));
                    Kept::Held { whole_row: true }
                }
            };
            self.kept[number as usize] = kept;
        }
        Ok(())
    }

    /// Reads into the held chunks every stale chunk not held yet, in key order (none of a
    /// bitmap held whole).
    fn read_stale(&mut self, kv: &impl Kv) -> Result<()> {
        let mut wanted: Vec<(&[u8], u32, u32)> = Vec::new();
        for stale in &self.stale {
            let number = (stale >> 32) as u32;
            let chunk = *stale as u32;
            let held_whole = matches!(self.kept[number as usize], Kept::Held { .. });
            if !held_whole && !self.dirty[number as usize].contains_key(&chunk) {
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

    /// The interned number of the bitmap whose key prefix is in `self.prefix`, laid out
    /// `layout`.
    fn number(&mut self, layout: Layout) -> u32 {
        let number = self.numbers.intern(&self.prefix);
        if number as usize == self.unsettled.len() {
            self.unsettled.push(false);
            self.dirty.push(BTreeMap::new());
            self.kept.push(match layout {
                Layout::Chunked => Kept::Chunked,
                Layout::WholeWhileSmall => Kept::Unprobed,
            });
        }
        number
    }

    /// Sets (`on`) or clears bit `ord` of bitmap `name`, laid out `layout`; `fresh` says its
    /// chunk holds no stored ordinal (so it need not be read). Only logged: clears are
    /// folded in with the sets, so a bulk update reads the chunks it changes once each, in
    /// key order, instead of one by one as each item cleared its old values' bits.
    pub fn change(
        &mut self,
        scope: Scope,
        name: &[u8],
        layout: Layout,
        ord: u32,
        on: bool,
        fresh: bool,
    ) {
        self.set_prefix(scope, name);
        let numbered = self.unsettled.len();
        let number = self.number(layout);
        if number as usize == numbered {
            self.groups.push((scope, Group::of(name)));
        }
        if !self.noted_past {
            self.note(number, ord);
        }
        let kept = &mut self.kept[number as usize];
        debug_assert_eq!(*kept == Kept::Chunked, layout == Layout::Chunked);
        if *kept == Kept::Unprobed {
            *kept = Kept::Queued;
            self.unprobed.push(number);
        }
        self.unsettled[number as usize] = true;
        self.logged.push((number, ord, on));
        if !fresh {
            self.stale
                .push(u64::from(number) << 32 | u64::from(chunk_of(ord)));
        }
    }

    /// Lists the change of bit `ord` of bitmap number `number` for the bitmap cache, or
    /// stops listing past [`NOTED_ORDS_MAX`].
    fn note(&mut self, number: u32, ord: u32) {
        if self.noted.len() < NOTED_ORDS_MAX {
            self.noted.push((number, ord));
        } else {
            self.stop_noting();
        }
    }

    fn stop_noting(&mut self) {
        self.noted_past = true;
        self.noted = Vec::new();
    }

    /// The groups of bitmaps changed or dropped, with their scopes, sorted and distinct,
    /// each with the ordinals whose bits changed in it (ascending) when they were listed.
    /// Called once, when the transaction ends.
    pub fn take_changes(&mut self) -> Vec<(Scope, Group, Changed)> {
        let mut groups = self.groups.clone();
        groups.append(&mut self.dropped);
        groups.sort_unstable();
        groups.dedup();
        let listed = !std::mem::take(&mut self.noted_past);
        let mut changes: Vec<(Scope, Group, Changed)> = groups
            .into_iter()
            .map(|(scope, group)| (scope, group, listed.then(Vec::new)))
            .collect();
        for (number, ord) in std::mem::take(&mut self.noted) {
            let (scope, group) = self.groups[number as usize];
            let at = changes.partition_point(|(s, g, _)| (*s, *g) < (scope, group));
            if let Some((_, _, Some(ords))) = changes.get_mut(at) {
                ords.push(ord);
            }
        }
        for (_, _, ords) in &mut changes {
            if let Some(ords) = ords {
                ords.sort_unstable();
                ords.dedup();
            }
        }
        changes
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
        self.dropped.push((scope, Group::of(name_prefix)));
        self.stop_noting();
        let prefix = scope.bitmap_prefix(name_prefix);
        for (number, held) in self.dirty.iter_mut().enumerate() {
            if self.numbers.name(number as u32).starts_with(&prefix) {
                held.clear();
                let kept = &mut self.kept[number];
                if *kept != Kept::Chunked {
                    *kept = Kept::Held { whole_row: false };
                }
            }
        }
        writer.delete_prefix(&prefix)
    }

    /// Writes every changed chunk in key order (an empty chunk is deleted) and empties the
    /// buffer.
    pub fn flush(&mut self, writer: &mut Writer<'_>) -> Result<()> {
        self.settle(writer)?;
        // Sorted as (name, number) pairs, small to move; the chunks are taken afterwards.
        let mut order: Vec<(&[u8], usize)> = (self.dirty.iter().enumerate())
            .filter(|(_, chunks)| !chunks.is_empty())
            .map(|(n, _)| (self.numbers.name(n as u32), n))
            .collect();
        order.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut count = 0;
        let mut held = Vec::with_capacity(order.len());
        for (prefix, n) in order {
            let chunks = std::mem::take(&mut self.dirty[n]);
            let rows = match self.kept[n] {
                Kept::Held { whole_row } => {
                    RowsOf::Planned(whole_rows(chunks, whole_row).into_iter())
                }
                _ => RowsOf::Chunks(chunks.into_iter()),
            };
            count += rows.len();
            held.push((prefix, rows));
        }
        for kept in &mut self.kept {
            if *kept != Kept::Chunked {
                *kept = Kept::Unprobed;
            }
        }
        let writes = held.into_iter().flat_map(|(prefix, rows)| {
            rows.map(move |(number, value)| (chunk_key(prefix, number), value))
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
        Set {
            name: u8,
            ord: u32,
        },
        Clear {
            name: u8,
            ord: u32,
        },
        Read {
            name: u8,
        },
        /// Writes the held chunks out mid-transaction ([`crate::txn::Tx::flush_bitmaps`]).
        Flush,
        /// Commits and starts the next transaction.
        Commit,
    }

    /// Bitmaps 0 and 1 are laid out in chunks, 2 and 3 whole while small.
    fn layout_of(name: u8) -> Layout {
        match name {
            0 | 1 => Layout::Chunked,
            _ => Layout::WholeWhileSmall,
        }
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
            40 => (name.clone(), ord.clone()).prop_map(|(name, ord)| BufferOp::Set { name, ord }),
            10 => (name.clone(), ord).prop_map(|(name, ord)| BufferOp::Clear { name, ord }),
            10 => name.prop_map(|name| BufferOp::Read { name }),
            1 => Just(BufferOp::Flush),
            2 => Just(BufferOp::Commit),
        ]
    }

    /// Every stored row of bitmap `name`: (chunk number or [`WHOLE_ROW`], ordinals).
    fn stored_rows(kv: &impl Kv, scope: Scope, name: u8) -> Vec<(u32, Vec<u32>)> {
        let mut rows = Vec::new();
        kv.scan_prefix(&scope.bitmap_prefix(&[name]), |key, value| {
            let number = u32::from_be_bytes(key[key.len() - 4..].try_into().unwrap());
            rows.push((number, decode_row(key, value).unwrap().iter().collect()));
            Ok(true)
        })
        .unwrap();
        rows
    }

    proptest::proptest! {
        /// Bits logged for fresh chunks, bits set in stored chunks, cleared bits, reads,
        /// flushes and commits in between all agree with a plain set per bitmap, in both
        /// layouts; a bitmap laid out whole while small is stored as one whole row of at
        /// most `WHOLE_MAX` ordinals or as chunk rows, never both.
        #[test]
        fn held_chunks_agree_with_a_model(
            stored in proptest::collection::vec((0u8..4, 0u32..4096), 0..40),
            ops in proptest::collection::vec(buffer_op(), 1..400),
        ) {
            use crate::model::ObjectType;
            use std::collections::BTreeSet;
            let scope = Scope { team: 1, ty: ObjectType::Contact };
            let store = crate::storage::Store::in_memory().unwrap();
            let mut model: BTreeMap<u8, BTreeSet<u32>> = BTreeMap::new();
            store.write(crate::storage::Durability::Immediate, |writer| {
                let mut buffer = BitmapBuffer::default();
                for (name, ord) in &stored {
                    buffer.change(scope, &[*name], layout_of(*name), *ord, true, false);
                    model.entry(*name).or_default().insert(*ord);
                }
                buffer.flush(writer)
            }).unwrap();
            // Chunk 0 holds stored bits; chunks 1 and 2 are fresh until the first flush.
            let mut fresh_past = Some(0);
            for segment in ops.split(|op| matches!(op, BufferOp::Commit)) {
                store.write(crate::storage::Durability::Immediate, |writer| {
                    let mut buffer = BitmapBuffer::default();
                    for op in segment {
                        let fresh = |ord: u32| fresh_past.is_some_and(|past| chunk_of(ord) > past);
                        match *op {
                            BufferOp::Set { name, ord } => {
                                buffer.change(scope, &[name], layout_of(name), ord, true, fresh(ord));
                                model.entry(name).or_default().insert(ord);
                            }
                            BufferOp::Clear { name, ord } => {
                                buffer.change(scope, &[name], layout_of(name), ord, false, fresh(ord));
                                model.entry(name).or_default().remove(&ord);
                            }
                            BufferOp::Read { name } => {
                                let held: Vec<u32> = buffer.read(writer, scope, &[name])?.iter().collect();
                                let want: Vec<u32> = model.get(&name).into_iter().flatten().copied().collect();
                                assert_eq!(held, want, "read of {name}");
                            }
                            BufferOp::Flush => {
                                buffer.flush(writer)?;
                                fresh_past = None;
                            }
                            BufferOp::Commit => unreachable!("split on"),
                        }
                    }
                    buffer.flush(writer)
                }).unwrap();
                fresh_past = None;
            }
            let reader = store.read().unwrap();
            for name in 0u8..4 {
                let stored: Vec<u32> = read(&reader, scope, &[name]).unwrap().iter().collect();
                let want: Vec<u32> = model.get(&name).into_iter().flatten().copied().collect();
                proptest::prop_assert_eq!(&stored, &want, "stored {}", name);
                let rows = stored_rows(&reader, scope, name);
                let whole: Vec<&(u32, Vec<u32>)> = rows.iter().filter(|(n, _)| *n == WHOLE_ROW).collect();
                if layout_of(name) == Layout::Chunked {
                    proptest::prop_assert!(whole.is_empty(), "a whole row of chunked {}", name);
                } else if let Some((_, ords)) = whole.first() {
                    proptest::prop_assert_eq!(rows.len(), 1, "whole row and chunk rows of {}", name);
                    proptest::prop_assert!(!ords.is_empty() && ords.len() <= WHOLE_MAX);
                } else if !stored.is_empty() && stored.len() <= WHOLE_MAX {
                    // In chunks only once it held more than fits a whole row.
                    let ever_big = ops.iter().filter(|op| matches!(op, BufferOp::Set { name: n, .. } if *n == name)).count()
                        + stored.len() > WHOLE_MAX;
                    proptest::prop_assert!(ever_big, "{} in chunks though it never outgrew a whole row", name);
                }
            }
        }
    }

    /// How a bitmap of the probe proptest is stored.
    #[derive(Clone, Debug)]
    enum Stored {
        Nothing,
        Whole(Vec<u32>),
        Chunks(Vec<u32>),
    }

    fn stored_as() -> impl proptest::strategy::Strategy<Value = Stored> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Stored::Nothing),
            proptest::collection::btree_set(0u32..1000, 1..4)
                .prop_map(|ords| Stored::Whole(ords.into_iter().collect())),
            proptest::collection::btree_set(0u32..6, 1..4)
                .prop_map(|chunks| Stored::Chunks(chunks.into_iter().collect())),
        ]
    }

    /// Stores `stored` and asserts that probing `asked` at once finds what probing each on
    /// its own finds.
    fn assert_probes_agree(
        stored: &BTreeMap<Vec<u8>, Stored>,
        asked: &std::collections::BTreeSet<Vec<u8>>,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let store = crate::storage::Store::in_memory().unwrap();
        store
            .write(crate::storage::Durability::Immediate, |writer| {
                for (name, how) in stored {
                    match how {
                        Stored::Nothing => {}
                        Stored::Whole(ords) => writer.put(
                            &chunk_key(name, WHOLE_ROW),
                            &encode_whole(ords.iter().copied()),
                        )?,
                        Stored::Chunks(chunks) => {
                            for chunk in chunks {
                                writer.put(&chunk_key(name, *chunk), &[ARRAY_TAG, 0, 0])?;
                            }
                        }
                    }
                }
                Ok(())
            })
            .unwrap();
        let reader = store.read().unwrap();
        let prefixes: Vec<&[u8]> = asked.iter().map(Vec::as_slice).collect();
        let each: Vec<Probe> = prefixes
            .iter()
            .map(|p| probe(&reader, p).unwrap())
            .collect();
        proptest::prop_assert_eq!(probe_sorted(&reader, &prefixes).unwrap(), each);
        Ok(())
    }

    proptest::proptest! {
        /// Probing many bitmaps at once (ordered scans that seek past runs of rows nobody
        /// asked for, and point reads past the scans' budget) finds what probing each on
        /// its own finds, also where names share a prefix with longer ones.
        #[test]
        fn probing_sorted_bitmaps_finds_what_each_probe_finds(
            stored in proptest::collection::btree_map(
                proptest::collection::vec(0u8..3, 1..5), stored_as(), 0..60),
            asked in proptest::collection::btree_set(proptest::collection::vec(0u8..3, 1..5), 0..40),
        ) {
            assert_probes_agree(&stored, &asked)?;
        }

        /// The same where the names asked for have one length (as references' do), so that
        /// they are scanned: stored names of other lengths lie between and under them.
        #[test]
        fn probing_sorted_names_of_one_length_finds_what_each_probe_finds(
            stored in proptest::collection::btree_map(
                proptest::collection::vec(0u8..6, 1..4), stored_as(), 0..80),
            asked in proptest::collection::btree_set(proptest::collection::vec(0u8..6, 2), 0..36),
        ) {
            assert_probes_agree(&stored, &asked)?;
        }
    }

    /// Every reader takes a whole row for the chunks it holds: whole reads, unions, spans,
    /// chunk ranges, intersections, rows one by one and reads by name.
    #[test]
    fn readers_take_whole_rows() {
        use crate::model::ObjectType;
        let scope = Scope {
            team: 1,
            ty: ObjectType::Contact,
        };
        let store = crate::storage::Store::in_memory().unwrap();
        let ords = [5u32, 4096 * 3 + 7, 4096 * 40 + 1, 4096 * 40 + 2];
        store
            .write(crate::storage::Durability::Immediate, |writer| {
                let mut buffer = BitmapBuffer::default();
                for ord in ords {
                    buffer.change(scope, &[9], Layout::WholeWhileSmall, ord, true, false);
                    buffer.change(scope, &[8], Layout::Chunked, ord + 1, true, false);
                }
                buffer.flush(writer)
            })
            .unwrap();
        let reader = store.read().unwrap();
        let whole: RoaringBitmap = ords.into_iter().collect();
        let shifted: RoaringBitmap = ords.iter().map(|o| o + 1).collect();
        assert_eq!(stored_rows(&reader, scope, 9).len(), 1, "one whole row");
        assert_eq!(stored_rows(&reader, scope, 9)[0].0, WHOLE_ROW);
        assert_eq!(read(&reader, scope, &[9]).unwrap(), whole);
        assert_eq!(
            read_union(&reader, scope, &[vec![8], vec![9]]).unwrap(),
            &whole | &shifted
        );
        assert_eq!(
            read_span(&reader, scope, &[8], &[10]).unwrap(),
            &whole | &shifted
        );
        let range = 3..41;
        let in_range: RoaringBitmap = whole
            .iter()
            .filter(|o| range.contains(&chunk_of(*o)))
            .collect();
        assert_eq!(
            read_chunks(&reader, scope, &[9], range.clone()).unwrap(),
            in_range
        );
        assert_eq!(
            read_chunks(&reader, scope, &[9], 41..50).unwrap(),
            RoaringBitmap::new()
        );
        let both = read_intersection(&reader, scope, &[vec![9], vec![9]], range).unwrap();
        assert_eq!(both, in_range);
        let named = read_named(&reader, scope, &[9]).unwrap();
        assert_eq!(named.get([9u8].as_slice()), Some(&whole));
        assert_eq!(count_mixed_layouts(&reader, scope, &[]).unwrap(), 0);
        drop(reader);
        store
            .write(crate::storage::Durability::Immediate, |writer| {
                let key = chunk_key(&scope.bitmap_prefix(&[9]), 2);
                writer.put(&key, &encode_chunk(2, &[4096 * 2].into_iter().collect()))
            })
            .unwrap();
        let reader = store.read().unwrap();
        assert_eq!(count_mixed_layouts(&reader, scope, &[]).unwrap(), 1);
    }

    #[test]
    fn damaged_whole_rows_are_errors() {
        let mut key = vec![7u8];
        key.extend_from_slice(&WHOLE_ROW.to_be_bytes());
        let too_many = encode_whole(0..WHOLE_MAX as u32 + 1);
        for body in [
            &[][..],
            &[WHOLE_TAG, 0, 0, 1][..],
            &[WHOLE_TAG, 0, 0, 0, 2, 0, 0, 0, 1][..],
            &[WHOLE_TAG, 0, 0, 0, 2, 0, 0, 0, 2][..],
            &[ARRAY_TAG, 0, 1][..],
            &too_many[..],
        ] {
            assert!(decode_row(&key, body).is_err(), "{body:?}");
            assert!(each_chunk_of_row(&key, body, &mut |_, _| Ok(())).is_err());
        }
        assert_eq!(
            decode_row(&key, &encode_whole([3, 9].into_iter())).unwrap(),
            [3u32, 9].into_iter().collect::<RoaringBitmap>()
        );
        let whole = encode_whole([3, 9, 4096 * 7].into_iter());
        assert_eq!(check_row_decoders(&whole), 1, "a whole row");
        assert_eq!(check_row_decoders(&[ARRAY_TAG, 0, 1]), 1, "a chunk row");
        assert_eq!(check_row_decoders(&[9]), 0);
    }

    #[test]
    fn chunks_round_trip_in_both_layouts() {
        for count in [0u32, 1, 64, 65, 200, 256, 257, 4000, 4096] {
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
            proptest::prop_assert_eq!(union.finish().unwrap(), expected);
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
                        buffer.change(scope, &[name as u8], Layout::Chunked, ord, true, true);
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
            let mut union = Union::default();
            let read = union.add(0, bytes).and_then(|()| union.finish());
            assert!(read.is_err(), "{bytes:?}");
        }
        assert!(matches!(
            row_in_key(&[0, 0, 0x0f, 0xff, 0xff]),
            Some(RowKey::Chunk(0xf_ffff))
        ));
        assert!(
            row_in_key(&[0, 0, 0x10, 0, 0]).is_none(),
            "past every ordinal"
        );
        assert!(matches!(
            row_in_key(&[0, 0xff, 0xff, 0xff, 0xff]),
            Some(RowKey::Whole)
        ));
        assert!(row_in_key(&[1, 2, 3]).is_none(), "too short");
    }
}
