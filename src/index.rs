//! The index module: the value index that serves find, upsert and uniqueness.
//!
//! An entry is the key `(scope, property number, ordered value, ordinal)` with an empty
//! value, for every live record and every property in the value index. The record's 4-byte
//! ordinal stands in for its 16-byte id (the ordinal map gives the id back), which keeps
//! entries short, and a range of entries is directly a set of bitmap positions.
//!
//! Values are encoded so that byte order is value order: numbers as order-preserving `f64`
//! (ints and floats compare numerically) and datetimes as `i64` microseconds, both with the
//! `memcomparable` crate; text with [`ordered_text`] (e-mail lowercased). Text longer than
//! [`MAX_INDEXED_TEXT`] bytes is indexed by its prefix, so every lookup re-checks the value
//! on the record itself.

use std::sync::Arc;

use roaring::RoaringBitmap;

use crate::bitmap::{self, Layout};
use crate::codec::{StoredRecord, StoredValue};
use crate::error::Result;
use crate::keys::{self, Scope};
use crate::schema::{Catalog, Kind, Property};
use crate::storage::{self, Kv};
use crate::txn::View;

/// Text values are indexed by at most this many leading bytes.
pub(crate) const MAX_INDEXED_TEXT: usize = 256;

/// The index form of `value` for property `prop`, or `None` for values the index does not
/// hold (select, multiselect, boolean: those have value bitmaps).
pub(crate) fn encode(prop: &Property, value: &StoredValue) -> Option<Vec<u8>> {
    let mut form = Vec::new();
    write_encoded(&mut form, prop, value).then_some(form)
}

/// Appends the index form of `value` for property `prop` to `out` ([`encode`]); returns
/// `false` (appending nothing) for values the index does not hold.
fn write_encoded(out: &mut Vec<u8>, prop: &Property, value: &StoredValue) -> bool {
    match value {
        StoredValue::Str(text) => {
            let folded;
            let text = if prop.kind == Kind::Email && needs_folding(text) {
                folded = text.to_lowercase();
                folded.as_str()
            } else {
                text.as_str()
            };
            let cut = (0..=MAX_INDEXED_TEXT.min(text.len()))
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            write_ordered_text(out, &text[..cut]);
        }
        StoredValue::Ref(id) => out.extend_from_slice(&id.to_be_bytes()),
        other => match ordered_key(other) {
            Some(key) => out.extend_from_slice(&key.to_be_bytes()),
            None => return false,
        },
    }
    true
}

/// Whether lowercasing `text` may change it (it holds an uppercase or a non-ASCII letter).
fn needs_folding(text: &str) -> bool {
    text.bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
}

/// Encodes text so that byte order is text order and no encoding is a prefix of another:
/// each 0x00 byte becomes 0x00 0xff and the end is marked by 0x00 0x00 (the escaping of
/// FoundationDB's tuple layer). Two bytes of overhead, where the `memcomparable` crate's
/// 8-byte groups cost one byte in eight plus up to eight of padding: on a million contacts'
/// e-mail and phone entries that was 13 MB of the file.
pub(crate) fn ordered_text(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    write_ordered_text(&mut out, text);
    out
}

/// Appends [`ordered_text`]'s encoding of `text` to `out`.
fn write_ordered_text(out: &mut Vec<u8>, text: &str) {
    for byte in text.bytes() {
        out.push(byte);
        if byte == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// The text [`ordered_text`] encoded at the start of `bytes` (anything after its end marker
/// is ignored), or `None` if `bytes` do not start with such an encoding of UTF-8 text.
pub(crate) fn decode_ordered_text(bytes: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match (bytes.get(at)?, bytes.get(at + 1)) {
            (0, Some(0)) => return String::from_utf8(out).ok(),
            (0, Some(0xff)) => {
                out.push(0);
                at += 2;
            }
            (0, _) => return None,
            (byte, _) => {
                out.push(*byte);
                at += 1;
            }
        }
    }
}

/// Whether a stored value of a property of `kind` is the value `wanted`, for find,
/// uniqueness and query equality: e-mail ignores case, numbers compare numerically, a
/// multiselect holds the option.
pub(crate) fn values_equal(kind: Kind, stored: &StoredValue, wanted: &StoredValue) -> bool {
    match (stored, wanted) {
        (StoredValue::Str(a), StoredValue::Str(b)) if kind == Kind::Email => {
            a.to_lowercase() == b.to_lowercase()
        }
        (StoredValue::Int(a), StoredValue::Int(b)) => a == b,
        (
            StoredValue::Int(_) | StoredValue::Float(_),
            StoredValue::Int(_) | StoredValue::Float(_),
        ) => as_f64(stored) == as_f64(wanted),
        (StoredValue::Options(held), StoredValue::Option(n)) => held.contains(n),
        _ => stored == wanted,
    }
}

/// A number's value as `f64` (NaN for anything else).
pub(crate) fn as_f64(value: &StoredValue) -> f64 {
    match value {
        StoredValue::Int(i) => *i as f64,
        StoredValue::Float(f) => *f,
        _ => f64::NAN,
    }
}

/// Bucket levels of the range bitmaps of number and datetime properties: (coarse, fine)
/// right shifts of the value's 64-bit ordered key ([`ordered_key`]). A number's key is
/// its `f64` bits made order-preserving, so a coarse bucket is one power of two and a fine
/// bucket a sixteenth of one; a datetime's key is its microseconds, so a coarse bucket
/// spans about 51 days and a fine one about 38 hours.
pub(crate) fn bucket_shifts(kind: Kind) -> Option<(u32, u32)> {
    match kind {
        Kind::Number => Some((52, 48)),
        Kind::Datetime => Some((42, 37)),
        _ => None,
    }
}

/// The 64-bit ordered key of a number or datetime value: its index form read as a
/// big-endian integer, so key order is value order.
pub(crate) fn ordered_key(value: &StoredValue) -> Option<u64> {
    let bytes = match value {
        StoredValue::Int(i) => number_form(*i as f64),
        StoredValue::Float(f) => number_form(*f),
        StoredValue::Time(t) => time_form(*t),
        _ => return None,
    };
    Some(u64::from_be_bytes(bytes))
}

/// The order-preserving 8 bytes of a number, from the `memcomparable` crate (-0.0 is
/// 0.0, as comparisons treat it).
pub(crate) fn number_form(value: f64) -> [u8; 8] {
    let value = if value == 0.0 { 0.0 } else { value };
    eight_bytes(memcomparable::to_vec(&value))
}

/// The order-preserving 8 bytes of a datetime in microseconds.
pub(crate) fn time_form(micros: i64) -> [u8; 8] {
    eight_bytes(memcomparable::to_vec(&micros))
}

fn eight_bytes(encoded: std::result::Result<Vec<u8>, memcomparable::Error>) -> [u8; 8] {
    // memcomparable writes every f64 and i64 as exactly 8 bytes and cannot fail on them.
    encoded
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .unwrap_or([0; 8])
}

/// Bitmap names written one after another into one buffer. A record belongs in a few
/// dozen bitmaps; building each name as a vector of its own (grown two or three times) was
/// a sixth of creating a record in an import (callgrind, 25,000 contacts: 406 of 2,400
/// million instructions).
///
/// Each name comes with the layout of its bitmap's rows ([`Layout`]), which every writer of
/// that bitmap must ask for.
#[derive(Debug, Default)]
pub(crate) struct Names {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    layouts: Vec<Layout>,
}

impl Names {
    /// No names yet, with room for about `count` of them.
    pub fn with_capacity(count: usize) -> Names {
        Names {
            bytes: Vec::with_capacity(count * 16),
            ends: Vec::with_capacity(count),
            layouts: Vec::with_capacity(count),
        }
    }

    /// The names, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.iter_laid().map(|(name, _)| name)
    }

    /// The names with their bitmaps' layouts, in the order written.
    pub fn iter_laid(&self) -> impl Iterator<Item = (&[u8], Layout)> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .zip(self.layouts.iter().copied())
            .map(|((start, end), layout)| (&self.bytes[start..end], layout))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Appends the name of a bitmap laid out [`Layout::Chunked`] that `write` appends to
    /// the buffer; `write` returning `false` means there is none, and whatever it appended
    /// is dropped.
    fn push(&mut self, write: impl FnOnce(&mut Vec<u8>) -> bool) {
        self.push_laid(Layout::Chunked, write);
    }

    /// [`Names::push`] of a bitmap laid out `layout`.
    fn push_laid(&mut self, layout: Layout, write: impl FnOnce(&mut Vec<u8>) -> bool) {
        let start = self.bytes.len();
        if write(&mut self.bytes) {
            self.ends.push(self.bytes.len());
            self.layouts.push(layout);
        } else {
            self.bytes.truncate(start);
        }
    }
}

/// The layout of the value index bitmaps of property `prop`. A reference's value bitmap
/// holds the few records pointing at one target, spread over the whole ordinal range: one
/// whole row while it is small ([`Layout::WholeWhileSmall`]), not a row per record's chunk.
/// Other values are either held by one record each (e-mail, phone: a chunk row is as
/// small, and needs no look-up before a write) or by many (a city).
pub(crate) fn index_layout(prop: &Property) -> Layout {
    match prop.kind {
        Kind::Reference => Layout::WholeWhileSmall,
        _ => Layout::Chunked,
    }
}

/// Appends the start of every bitmap name of one kind (`tag`) of property `pid`.
fn write_prefix(out: &mut Vec<u8>, tag: u8, pid: u16) {
    out.push(tag);
    out.extend_from_slice(&pid.to_be_bytes());
}

/// A name that `write` appends to an empty vector.
fn name_of(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut name = Vec::with_capacity(16);
    write(&mut name);
    name
}

/// The name of the value index bitmap of property `pid` and index form `encoded`:
/// `[3, pid, encoded]`.
pub(crate) fn index_name(pid: u16, encoded: &[u8]) -> Vec<u8> {
    name_of(|out| {
        write_prefix(out, keys::INDEX_BITMAP, pid);
        out.extend_from_slice(encoded);
    })
}

/// The prefix of every value index bitmap name of property `pid`.
pub(crate) fn index_prefix(pid: u16) -> Vec<u8> {
    name_of(|out| write_prefix(out, keys::INDEX_BITMAP, pid))
}

/// The name of the range bucket bitmap `bucket` at `level` (0 coarse, 1 fine) of property
/// `pid`: `[4, pid, level, bucket (8)]`.
pub(crate) fn bucket_name(pid: u16, level: u8, bucket: u64) -> Vec<u8> {
    name_of(|out| write_bucket_name(out, pid, level, bucket))
}

fn write_bucket_name(out: &mut Vec<u8>, pid: u16, level: u8, bucket: u64) {
    write_prefix(out, keys::BUCKET_BITMAP, pid);
    out.push(level);
    out.extend_from_slice(&bucket.to_be_bytes());
}

/// The prefix of every range bucket bitmap name of property `pid`.
pub(crate) fn bucket_prefix(pid: u16) -> Vec<u8> {
    name_of(|out| write_prefix(out, keys::BUCKET_BITMAP, pid))
}

/// The prefixes of every bitmap name derived from property `pid`'s values: value, index,
/// bucket and trigram bitmaps.
pub(crate) fn property_prefixes(pid: u16) -> [Vec<u8>; 4] {
    [
        value_bitmap_prefix(pid),
        index_prefix(pid),
        bucket_prefix(pid),
        gram_prefix(pid),
    ]
}

/// The prefix of every trigram bitmap name of property `pid`.
pub(crate) fn gram_prefix(pid: u16) -> Vec<u8> {
    name_of(|out| write_prefix(out, keys::GRAM_BITMAP, pid))
}

/// The distinct byte trigrams of `text` (already lowercased), in byte order. Substring
/// filters are case-insensitive, so texts and needles are lowercased before; byte
/// trigrams of UTF-8 keep "every trigram of the needle is in the text" true of every
/// substring match, whatever the script.
pub(crate) fn trigrams(text: &str) -> Vec<[u8; 3]> {
    let mut grams: Vec<[u8; 3]> = text
        .as_bytes()
        .windows(3)
        .map(|w| [w[0], w[1], w[2]])
        .collect();
    grams.sort_unstable();
    grams.dedup();
    grams
}

/// The name of the trigram bitmap `gram` of property `pid`.
pub(crate) fn gram_name(pid: u16, gram: [u8; 3]) -> Vec<u8> {
    name_of(|out| write_gram_name(out, pid, gram))
}

fn write_gram_name(out: &mut Vec<u8>, pid: u16, gram: [u8; 3]) {
    write_prefix(out, keys::GRAM_BITMAP, pid);
    out.extend_from_slice(&gram);
}

/// A superset of the records of `scope` whose searchable property `pid` holds `needle`
/// (lowercased) as a substring, among ordinals in chunks `chunks`: the intersection of the
/// needle's trigram bitmaps, plus the records whose trigrams are pending. `None` when the
/// needle is shorter than a trigram.
pub(crate) fn gram_candidates(
    kv: &impl Kv,
    scope: Scope,
    pid: u16,
    needle: &str,
    chunks: std::ops::Range<u32>,
) -> Result<Option<RoaringBitmap>> {
    let grams = trigrams(needle);
    if grams.is_empty() {
        return Ok(None);
    }
    let names: Vec<Vec<u8>> = grams.into_iter().map(|gram| gram_name(pid, gram)).collect();
    let found = bitmap::read_intersection(kv, scope, &names, chunks.clone())?;
    Ok(Some(
        found | bitmap::read_chunks(kv, scope, keys::GRAM_PENDING, chunks)?,
    ))
}

/// Appends the names of the index and bucket bitmaps that hold a record whose property
/// `prop` holds `value` (none when `prop` is not in the value index). Trigram bitmaps are
/// kept apart (see [`gram_names`]): they may hold more than the records, never less.
pub(crate) fn index_names(prop: &Property, value: &StoredValue, names: &mut Names) {
    if !prop.in_value_index() {
        return;
    }
    let mut indexed = false;
    names.push_laid(index_layout(prop), |out| {
        write_prefix(out, keys::INDEX_BITMAP, prop.pid);
        indexed = write_encoded(out, prop, value);
        indexed
    });
    if let (true, Some((coarse, fine)), Some(key)) =
        (indexed, bucket_shifts(prop.kind), ordered_key(value))
    {
        for (level, shift) in [(0, coarse), (1, fine)] {
            names.push(|out| {
                write_bucket_name(out, prop.pid, level, key >> shift);
                true
            });
        }
    }
}

/// The trigram bitmaps `record` belongs in, for its properties that `pick` selects.
pub(crate) fn record_gram_names(
    catalog: &Catalog,
    record: &StoredRecord,
    pick: impl Fn(u16) -> bool,
) -> Names {
    let mut names = Names::with_capacity(16);
    for (pid, value) in &record.props {
        if let Some(prop) = catalog.by_pid(*pid).filter(|p| pick(p.pid)) {
            gram_names(prop, value, &mut names);
        }
    }
    names
}

/// Appends the trigram bitmaps a record whose searchable property `prop` holds `value`
/// belongs in.
pub(crate) fn gram_names(prop: &Property, value: &StoredValue, names: &mut Names) {
    let (true, StoredValue::Str(text)) = (prop.searchable(), value) else {
        return;
    };
    let grams = if needs_folding(text) {
        trigrams(&text.to_lowercase())
    } else {
        trigrams(text)
    };
    for gram in grams {
        names.push(|out| {
            write_gram_name(out, prop.pid, gram);
            true
        });
    }
}

/// The name of the value bitmap of property `pid` holding `value`, for the kinds that have
/// value bitmaps: `[2, pid, option number | boolean]`.
pub(crate) fn value_bitmap_name(pid: u16, value: &StoredValue) -> Option<Vec<u8>> {
    let mut name = Vec::with_capacity(8);
    write_value_bitmap_name(&mut name, pid, value).then_some(name)
}

/// Appends [`value_bitmap_name`] to `out`; returns `false` for a value without one (and
/// then what it appended is to be dropped).
fn write_value_bitmap_name(out: &mut Vec<u8>, pid: u16, value: &StoredValue) -> bool {
    write_prefix(out, keys::VALUE_BITMAP, pid);
    match value {
        StoredValue::Option(n) => out.extend_from_slice(&n.to_be_bytes()),
        StoredValue::Bool(b) => out.push(u8::from(*b)),
        _ => return false,
    }
    true
}

/// The prefix of every value bitmap name of property `pid`.
pub(crate) fn value_bitmap_prefix(pid: u16) -> Vec<u8> {
    name_of(|out| write_prefix(out, keys::VALUE_BITMAP, pid))
}

/// Every bitmap a live `record` is a member of, besides the live bitmap: option and
/// boolean value bitmaps, and the value index and range bucket bitmaps of the properties
/// `catalog` puts in the value index.
pub(crate) fn bitmaps_of(catalog: &Catalog, record: &StoredRecord) -> Names {
    // About three names per property (a value's index bitmap and two range buckets).
    let mut names = Names::with_capacity(3 * record.props.len());
    for (pid, value) in &record.props {
        value_names(*pid, value, || catalog.by_pid(*pid), &mut names);
    }
    names
}

/// The bitmaps of property `pid` that a live `record` is a member of: those of
/// [`bitmaps_of`] that derive from `pid` (`prop` is its entry in the catalog, if any).
pub(crate) fn bitmaps_of_prop(pid: u16, prop: Option<&Property>, record: &StoredRecord) -> Names {
    let mut names = Names::with_capacity(3);
    for (_, value) in record.props.iter().filter(|(p, _)| *p == pid) {
        value_names(pid, value, || prop, &mut names);
    }
    names
}

/// Appends the names of the bitmaps that a record holding `value` in property `pid` is a
/// member of; `prop` finds the property in the catalog (index bitmaps are only of
/// properties it has).
fn value_names<'c>(
    pid: u16,
    value: &StoredValue,
    prop: impl FnOnce() -> Option<&'c Property>,
    names: &mut Names,
) {
    match value {
        StoredValue::Options(nums) => {
            for n in nums {
                names.push(|out| write_value_bitmap_name(out, pid, &StoredValue::Option(*n)));
            }
        }
        StoredValue::Option(_) | StoredValue::Bool(_) => {
            names.push(|out| write_value_bitmap_name(out, pid, value));
        }
        other => {
            if let Some(prop) = prop() {
                index_names(prop, other, names);
            }
        }
    }
}

/// The name of the index bitmap holding the records whose index form for `prop` equals
/// `value`'s; `None` when the value has no index form.
pub(crate) fn candidates_name(prop: &Property, value: &StoredValue) -> Option<Vec<u8>> {
    encode(prop, value).map(|encoded| index_name(prop.pid, &encoded))
}

/// The ordinals of live records whose index form for `prop` equals `value`'s: candidates
/// that the caller confirms against the record (prefix-indexed text, float collisions).
pub(crate) fn candidates(
    view: &impl View,
    scope: Scope,
    prop: &Property,
    value: &StoredValue,
) -> Result<RoaringBitmap> {
    match candidates_name(prop, value) {
        Some(name) => view.bitmap(scope, &name),
        None => Ok(RoaringBitmap::new()),
    }
}

/// An inclusive interval of ordered keys ([`ordered_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeySpan {
    /// The smallest key in the interval.
    pub lo: u64,
    /// The largest key in the interval.
    pub hi: u64,
}

/// The live records whose number or datetime property `prop` has an ordered key in `span`,
/// exactly within `domain` and possibly some outside it (the caller intersects the result
/// with `domain`, once). Whole buckets come from the range bucket bitmaps (coarse where a
/// coarse bucket fits, fine elsewhere); the at most two fine buckets the span cuts through
/// are resolved by `check` (which confirms records one by one) when few of their records
/// are in `domain`, else by reading the value index over the cut part.
pub(crate) fn range(
    view: &impl View,
    scope: Scope,
    prop: &Property,
    span: KeySpan,
    domain: &RoaringBitmap,
    check: impl Fn(&RoaringBitmap) -> Result<RoaringBitmap>,
) -> Result<RoaringBitmap> {
    let Some((coarse, fine)) = bucket_shifts(prop.kind) else {
        return Ok(RoaringBitmap::new());
    };
    let bucket_start = |f: u64| f << fine;
    let bucket_end = |f: u64| bucket_start(f) | ((1u64 << fine) - 1);
    let (first, last) = (span.lo >> fine, span.hi >> fine);
    let mut found = RoaringBitmap::new();
    let mut edges = Vec::new();
    let mut whole_from = first;
    let mut whole_to = last;
    if span.lo != bucket_start(first) || (first == last && span.hi != bucket_end(last)) {
        edges.push((first, span.lo, span.hi.min(bucket_end(first))));
        whole_from = first + 1;
    }
    if last > first && span.hi != bucket_end(last) {
        edges.push((last, bucket_start(last), span.hi));
        whole_to = last - 1;
    }
    if first == last && !edges.is_empty() {
        whole_to = first;
    }
    if whole_from <= whole_to {
        found = whole_buckets(view, scope, prop.pid, coarse - fine, whole_from, whole_to)?;
    }
    for (bucket, from, to) in edges {
        let in_bucket = view.cached_bitmap(scope, &bucket_name(prop.pid, 1, bucket))?;
        let candidates = in_bucket.as_ref() & domain;
        if candidates.len() * EDGE_CHECK_RATIO < in_bucket.len() {
            found |= check(&candidates)?;
        } else {
            let bucket = (bucket_start(bucket), bucket_end(bucket));
            found |= edge_span(view, scope, prop.pid, &candidates, bucket, (from, to))?;
        }
    }
    Ok(found)
}

/// The records of a range's cut fine bucket are checked one by one only when fewer than
/// this fraction of the bucket's records are in the domain; otherwise the bucket's values
/// inside (or outside) the range are read. At 1,000,000 contacts a check costs ~3 µs, and
/// reading the values of a bucket of 16,000 records ~100 µs: `status AND city IN 3 AND
/// score >= 500` checked its ~190 candidates (~0.55 ms) at the ratio 4 it had; at this
/// one it ran in 1.33–1.67 ms against 1.49–2.21 ms (five alternating runs each), and its
/// first page by score in 2.81–2.95 ms against 3.27–3.37.
const EDGE_CHECK_RATIO: u64 = 400;

/// The union of fine buckets `from..=to` of `pid`, read as coarse buckets where a whole
/// coarse bucket fits.
fn whole_buckets(
    view: &impl View,
    scope: Scope,
    pid: u16,
    ratio_bits: u32,
    from: u64,
    to: u64,
) -> Result<RoaringBitmap> {
    let per_coarse = 1u64 << ratio_bits;
    let coarse_from = from.div_ceil(per_coarse);
    let coarse_to_excl = (to + 1) / per_coarse;
    let span = |level: u8, a: u64, b_excl: u64| -> Result<Arc<RoaringBitmap>> {
        if a >= b_excl {
            return Ok(Arc::default());
        }
        let (first, end) = (bucket_name(pid, level, a), bucket_name(pid, level, b_excl));
        view.cached_span(scope, pid, &first, &end)
    };
    if coarse_from >= coarse_to_excl {
        return Ok(span(1, from, to + 1)?.as_ref().clone());
    }
    let mut found = span(0, coarse_from, coarse_to_excl)?.as_ref().clone();
    found |= span(1, from, coarse_from * per_coarse)?.as_ref();
    found |= span(1, coarse_to_excl * per_coarse, to + 1)?.as_ref();
    Ok(found)
}

/// The records of `candidates` (records of the fine bucket `start..=end`) whose index form
/// of `pid` lies in `from..=to`: read from the value index, or as the candidates less those
/// outside the span when that reads fewer values. Within a bucket, index forms are linear
/// in the value, so the narrower span of forms has the fewer values to read (each value's
/// bitmap is a row per chunk it has records in: for `score >= 500` over a million
/// contacts, the span 500–511 was 12 values and ~2,900 rows, its complement 4 values).
fn edge_span(
    view: &impl View,
    scope: Scope,
    pid: u16,
    candidates: &RoaringBitmap,
    (start, end): (u64, u64),
    (from, to): (u64, u64),
) -> Result<RoaringBitmap> {
    if to - from <= (from - start) + (end - to) {
        return Ok(index_span(view, scope, pid, from, to)?.as_ref() & candidates);
    }
    let mut found = candidates.clone();
    if from > start {
        found -= index_span(view, scope, pid, start, from - 1)?.as_ref();
    }
    if to < end {
        found -= index_span(view, scope, pid, to + 1, end)?.as_ref();
    }
    Ok(found)
}

/// The records whose 8-byte index form of `pid` lies in `from..=to`, from the value index.
fn index_span(
    view: &impl View,
    scope: Scope,
    pid: u16,
    from: u64,
    to: u64,
) -> Result<Arc<RoaringBitmap>> {
    let start = index_name(pid, &from.to_be_bytes());
    let end = match to.checked_add(1) {
        Some(next) => index_name(pid, &next.to_be_bytes()),
        None => storage::prefix_end(&index_prefix(pid)).unwrap_or_default(),
    };
    view.cached_span(scope, pid, &start, &end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn property(kind: Kind, pid: u16, search: bool) -> Property {
        Property {
            slug: format!("p{pid}"),
            kind,
            unique: false,
            indexed: true,
            search,
            options: Vec::new(),
            target: None,
            pid,
            next_option: 0,
        }
    }

    /// The names written into one buffer are the names the readers build one at a time
    /// (queries find bitmaps by the latter, writes make them with the former).
    #[test]
    fn names_in_one_buffer_are_the_names_built_one_by_one() {
        let (email, text) = (
            property(Kind::Email, 3, false),
            property(Kind::Text, 4, true),
        );
        let (number, time) = (
            property(Kind::Number, 5, false),
            property(Kind::Datetime, 6, false),
        );
        let str = |s: &str| StoredValue::Str(s.to_owned());
        let cases = [
            (&email, str("Ada@Example.COM")),
            (&email, str("ada@example.com")),
            (&text, str("Ünïcode NAME")),
            (&text, str("plain name")),
            (&number, StoredValue::Float(12.5)),
            (&number, StoredValue::Int(-3)),
            (&time, StoredValue::Time(1_700_000_000_000_000)),
        ];
        for (prop, value) in &cases {
            let mut names = Names::default();
            index_names(prop, value, &mut names);
            gram_names(prop, value, &mut names);
            let mut expected = vec![index_name(prop.pid, &encode(prop, value).unwrap())];
            if let (Some((coarse, fine)), Some(key)) =
                (bucket_shifts(prop.kind), ordered_key(value))
            {
                expected.push(bucket_name(prop.pid, 0, key >> coarse));
                expected.push(bucket_name(prop.pid, 1, key >> fine));
            }
            if let (true, StoredValue::Str(s)) = (prop.searchable(), value) {
                let grams = trigrams(&s.to_lowercase());
                expected.extend(grams.into_iter().map(|g| gram_name(prop.pid, g)));
            }
            let written: Vec<Vec<u8>> = names.iter().map(<[u8]>::to_vec).collect();
            assert_eq!(written, expected, "{value:?}");
        }
        assert_eq!(
            encode(&email, &cases[0].1),
            encode(&email, &cases[1].1),
            "e-mail folds case"
        );
        let flag = value_bitmap_name(7, &StoredValue::Bool(true)).unwrap();
        assert_eq!(flag, [keys::VALUE_BITMAP, 0, 7, 1]);
        assert_eq!(value_bitmap_name(7, &str("x")), None);
    }

    proptest! {
        /// Ordered keys sort numbers numerically (ints and floats mixed) and datetimes
        /// chronologically.
        #[test]
        fn ordered_keys_keep_value_order(a in proptest::num::f64::NORMAL | proptest::num::f64::ZERO, b in -1e6f64..1e6, t in any::<i64>(), u in any::<i64>()) {
            let (ka, kb) = (ordered_key(&StoredValue::Float(a)), ordered_key(&StoredValue::Float(b)));
            prop_assert_eq!(ka.cmp(&kb), a.partial_cmp(&b).unwrap());
            let (kt, ku) = (ordered_key(&StoredValue::Time(t)), ordered_key(&StoredValue::Time(u)));
            prop_assert_eq!(kt.cmp(&ku), t.cmp(&u));
            let int = (b as i64).clamp(-(1 << 52), 1 << 52);
            prop_assert_eq!(ordered_key(&StoredValue::Int(int)), ordered_key(&StoredValue::Float(int as f64)));
        }

        /// Byte order of encodings is the order of the texts, and no encoding is a proper
        /// prefix of another (so a prefix scan for one value finds only that value).
        #[test]
        fn ordered_text_keeps_order_and_is_prefix_free(a in "[\\x00-\\x02a-c\\u{ff}]{0,6}", b in "[\\x00-\\x02a-c\\u{ff}]{0,6}") {
            let (ea, eb) = (ordered_text(&a), ordered_text(&b));
            prop_assert_eq!(decode_ordered_text(&[ea.as_slice(), b"rest"].concat()), Some(a.clone()));
            prop_assert_eq!(ea.cmp(&eb), a.as_bytes().cmp(b.as_bytes()));
            if a != b {
                prop_assert!(!eb.starts_with(&ea) && !ea.starts_with(&eb));
            }
        }
    }
}
