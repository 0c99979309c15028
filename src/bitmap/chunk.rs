//! One chunk of a bitmap: the ordinals of a 4,096-ordinal span, as stored and as held by a
//! write transaction.
//!
//! Stored, a chunk is a tag byte and either a sorted array of 12-bit offsets (while it
//! holds at most [`ARRAY_MAX`] ordinals, 2 bytes each) or a 512-byte little-endian bitset.
//! Held in a write buffer, it is a [`Chunk`]: the same two shapes in memory, so that
//! reading, changing and writing a dense chunk copies 512 bytes instead of visiting each
//! ordinal (building a roaring bitmap for each dense chunk a patch touched, and encoding
//! it again run by run, was two fifths of a single patch's time).

use roaring::RoaringBitmap;

use crate::error::{Error, Result};

/// Ordinals per chunk: 2^CHUNK_BITS.
pub(crate) const CHUNK_BITS: u32 = 12;
/// Bytes of a dense chunk's bitset.
pub(crate) const BITSET_BYTES: usize = 1 << (CHUNK_BITS - 3);
/// A chunk with at most this many ordinals is stored as an array of offsets (at most a
/// quarter of a bitset's bytes). Past it, reading the bitset (one OR of 512 bytes) costs
/// less than decoding the offsets one by one: at the equal-size limit of 256 offsets, a
/// filtered count over a million contacts spent a fifth of its instructions decoding
/// arrays of 64 to 256 offsets (city values, fine range buckets); at this one it runs in
/// 15% fewer, for ~5 MB more of a 458 MB file.
pub(crate) const ARRAY_MAX: usize = BITSET_BYTES / 8;
pub(crate) const ARRAY_TAG: u8 = 0;
pub(crate) const BITSET_TAG: u8 = 1;
/// 64-bit words of a dense chunk's bitset.
const WORDS: usize = BITSET_BYTES / 8;

pub(crate) fn damaged(why: &str) -> Error {
    Error::Internal(format!("stored bitmap chunk is damaged: {why}"))
}

/// Calls `each` with every offset of an array chunk's body, in order; an error if the body
/// is not strictly ascending 12-bit offsets.
pub(crate) fn for_each_offset(offsets: &[u8], mut each: impl FnMut(u32)) -> Result<()> {
    if !offsets.len().is_multiple_of(2) {
        return Err(damaged("odd length"));
    }
    let mut previous = None;
    for pair in offsets.chunks_exact(2) {
        let offset = u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        if offset >> CHUNK_BITS != 0 || previous.is_some_and(|p| p >= offset) {
            return Err(damaged("offsets out of range or order"));
        }
        each(offset);
        previous = Some(offset);
    }
    Ok(())
}

/// The ordinals of one chunk, as offsets from its first ordinal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Sorted, distinct offsets; at most [`ARRAY_MAX`] of them.
    Sparse(Vec<u16>),
    /// A bitset: bit `o % 64` of word `o / 64` is offset `o`.
    Dense(Box<[u64; WORDS]>),
}

impl Default for Chunk {
    fn default() -> Chunk {
        Chunk::Sparse(Vec::new())
    }
}

impl Chunk {
    /// Decodes a stored chunk body; an error naming what is wrong if it is not one.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Chunk> {
        match bytes.split_first() {
            Some((&BITSET_TAG, bits)) if bits.len() == BITSET_BYTES => {
                let mut words = Box::new([0u64; WORDS]);
                for (word, bytes) in words.iter_mut().zip(bits.chunks_exact(8)) {
                    *word = u64::from_le_bytes(bytes.try_into().expect("8-byte slices"));
                }
                Ok(Chunk::Dense(words))
            }
            Some((&ARRAY_TAG, body)) => {
                let mut offsets = Vec::with_capacity(body.len() / 2);
                for_each_offset(body, |offset| offsets.push(offset as u16))?;
                Ok(Chunk::sparse_or_dense(offsets))
            }
            _ => Err(damaged("unknown layout")),
        }
    }

    /// ORs the ordinals of stored chunk body `body` into `bits` (the chunk's 512-byte
    /// little-endian bitset); an error naming what is wrong if `body` is not a chunk.
    pub(crate) fn or_into(body: &[u8], bits: &mut [u8]) -> Result<()> {
        match body.split_first() {
            Some((&BITSET_TAG, stored)) if stored.len() == BITSET_BYTES => {
                bits.iter_mut()
                    .zip(stored)
                    .for_each(|(into, from)| *into |= from);
                Ok(())
            }
            Some((&ARRAY_TAG, offsets)) => for_each_offset(offsets, |offset| {
                bits[offset as usize / 8] |= 1 << (offset % 8);
            }),
            _ => Err(damaged("unknown layout")),
        }
    }

    /// The stored body of this chunk: an array of offsets while it holds at most
    /// [`ARRAY_MAX`] ordinals, else the bitset.
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Chunk::Sparse(offsets) if offsets.len() <= ARRAY_MAX => {
                array_body(offsets.iter().copied(), offsets.len())
            }
            Chunk::Sparse(offsets) => Chunk::Dense(bits_of(offsets)).encode(),
            Chunk::Dense(words) => {
                let count = self.len();
                if count <= ARRAY_MAX {
                    return array_body(offsets_of(words), count);
                }
                let mut out = Vec::with_capacity(1 + BITSET_BYTES);
                out.push(BITSET_TAG);
                for word in words.iter() {
                    out.extend_from_slice(&word.to_le_bytes());
                }
                out
            }
        }
    }

    /// Whether the chunk holds no ordinal.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Chunk::Sparse(offsets) => offsets.is_empty(),
            Chunk::Dense(words) => words.iter().all(|w| *w == 0),
        }
    }

    /// How many ordinals the chunk holds.
    pub(crate) fn len(&self) -> usize {
        match self {
            Chunk::Sparse(offsets) => offsets.len(),
            Chunk::Dense(words) => words.iter().map(|w| w.count_ones() as usize).sum(),
        }
    }

    /// Appends the chunk's ordinals, ascending, for a chunk whose first ordinal is `base`.
    pub(crate) fn push_ords(&self, base: u32, out: &mut Vec<u32>) {
        match self {
            Chunk::Sparse(offsets) => out.extend(offsets.iter().map(|o| base + u32::from(*o))),
            Chunk::Dense(words) => out.extend(offsets_of(words).map(|o| base + u32::from(o))),
        }
    }

    /// Adds offsets `sets` and removes offsets `clears` (each sorted; no offset in both).
    pub(crate) fn apply(&mut self, sets: &[u16], clears: &[u16]) {
        match self {
            Chunk::Sparse(offsets) if offsets.is_empty() && clears.is_empty() => {
                *self = Chunk::sparse_or_dense(sets.to_vec());
            }
            Chunk::Sparse(offsets) => {
                let merged = merge(offsets, sets, clears);
                *self = Chunk::sparse_or_dense(merged);
            }
            Chunk::Dense(words) => {
                for offset in sets {
                    words[usize::from(offset >> 6)] |= 1 << (offset & 63);
                }
                for offset in clears {
                    words[usize::from(offset >> 6)] &= !(1 << (offset & 63));
                }
            }
        }
    }

    /// The chunk's ordinals as a bitmap, for a chunk whose first ordinal is `base`.
    pub(crate) fn to_bitmap(&self, base: u32) -> RoaringBitmap {
        match self {
            Chunk::Sparse(offsets) => {
                RoaringBitmap::from_sorted_iter(offsets.iter().map(|o| base + u32::from(*o)))
                    .expect("held offsets are sorted and distinct")
            }
            Chunk::Dense(words) => {
                let mut bytes = [0u8; BITSET_BYTES];
                for (into, word) in bytes.chunks_exact_mut(8).zip(words.iter()) {
                    into.copy_from_slice(&word.to_le_bytes());
                }
                RoaringBitmap::from_lsb0_bytes(base, &bytes)
            }
        }
    }

    /// Sorted distinct `offsets` as a chunk: sparse while there are few enough.
    pub(crate) fn sparse_or_dense(offsets: Vec<u16>) -> Chunk {
        match offsets.len() <= ARRAY_MAX {
            true => Chunk::Sparse(offsets),
            false => Chunk::Dense(bits_of(&offsets)),
        }
    }
}

/// An array body of `count` offsets.
fn array_body(offsets: impl Iterator<Item = u16>, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 2 * count);
    out.push(ARRAY_TAG);
    for offset in offsets {
        out.extend_from_slice(&offset.to_be_bytes());
    }
    out
}

/// The bitset of `offsets` (each below 4,096).
fn bits_of(offsets: &[u16]) -> Box<[u64; WORDS]> {
    let mut words = Box::new([0u64; WORDS]);
    for offset in offsets {
        words[usize::from(offset >> 6)] |= 1 << (offset & 63);
    }
    words
}

/// The offsets of the bits set in `words`, in order.
fn offsets_of(words: &[u64; WORDS]) -> impl Iterator<Item = u16> + '_ {
    words.iter().enumerate().flat_map(|(at, word)| {
        let mut rest = *word;
        std::iter::from_fn(move || {
            let bit = rest.trailing_zeros();
            (bit < 64).then(|| {
                rest &= rest - 1;
                (at as u16) << 6 | bit as u16
            })
        })
    })
}

/// `held` with `sets` added and `clears` removed, all three sorted and distinct.
fn merge(held: &[u16], sets: &[u16], clears: &[u16]) -> Vec<u16> {
    let mut out = Vec::with_capacity(held.len() + sets.len());
    let (mut h, mut s) = (0, 0);
    while h < held.len() || s < sets.len() {
        let next = match (held.get(h), sets.get(s)) {
            (Some(a), Some(b)) if a == b => {
                h += 1;
                s += 1;
                *a
            }
            (Some(a), Some(b)) if a < b => {
                h += 1;
                *a
            }
            (Some(a), None) => {
                h += 1;
                *a
            }
            (_, Some(b)) => {
                s += 1;
                *b
            }
            (None, None) => unreachable!("the loop runs while either has offsets"),
        };
        out.push(next);
    }
    if !clears.is_empty() {
        let mut cleared = clears.iter().peekable();
        out.retain(|offset| {
            while cleared.next_if(|c| *c < offset).is_some() {}
            cleared.peek() != Some(&offset)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn offsets() -> impl Strategy<Value = BTreeSet<u16>> {
        prop_oneof![
            proptest::collection::btree_set(0u16..4096, 0..300),
            proptest::collection::btree_set(0u16..4096, 200..4096),
            (0u16..4096, 0u16..4096)
                .prop_map(|(a, b)| (a.min(b)..=a.max(b)).collect::<BTreeSet<u16>>()),
        ]
    }

    fn chunk_of(set: &BTreeSet<u16>, dense: bool) -> Chunk {
        let offsets: Vec<u16> = set.iter().copied().collect();
        match dense {
            true => Chunk::Dense(bits_of(&offsets)),
            false => Chunk::sparse_or_dense(offsets),
        }
    }

    fn members(chunk: &Chunk) -> Vec<u32> {
        chunk.to_bitmap(0).iter().collect()
    }

    proptest! {
        /// Applying sets and clears to a chunk, in either shape, agrees with a set; the
        /// result round trips through its stored body in the layout its size calls for.
        #[test]
        fn changes_and_round_trips_agree_with_a_set(
            held in offsets(),
            dense in any::<bool>(),
            sets in offsets(),
            clears in offsets(),
        ) {
            let clears: BTreeSet<u16> = clears.difference(&sets).copied().collect();
            let mut chunk = chunk_of(&held, dense);
            let sets_sorted: Vec<u16> = sets.iter().copied().collect();
            let clears_sorted: Vec<u16> = clears.iter().copied().collect();
            chunk.apply(&sets_sorted, &clears_sorted);
            let want: BTreeSet<u16> = held.union(&sets).copied().filter(|o| !clears.contains(o)).collect();
            let want_ords: Vec<u32> = want.iter().map(|o| u32::from(*o)).collect();
            prop_assert_eq!(members(&chunk), want_ords.clone());
            prop_assert_eq!(chunk.is_empty(), want.is_empty());
            let body = chunk.encode();
            let layout = if want.len() <= ARRAY_MAX { ARRAY_TAG } else { BITSET_TAG };
            prop_assert_eq!(body[0], layout);
            prop_assert!(body.len() <= 1 + BITSET_BYTES);
            let back = Chunk::decode(&body).unwrap();
            prop_assert_eq!(members(&back), want_ords);
            prop_assert_eq!(back.to_bitmap(4096 * 5).min(), want.first().map(|o| 4096 * 5 + u32::from(*o)));
        }
    }

    #[test]
    fn a_sparse_chunk_turns_dense_past_the_array_limit() {
        let mut chunk = Chunk::default();
        let first: Vec<u16> = (0..ARRAY_MAX as u16).map(|o| o * 2).collect();
        chunk.apply(&first, &[]);
        assert!(matches!(chunk, Chunk::Sparse(_)));
        chunk.apply(&[1], &[]);
        assert!(matches!(chunk, Chunk::Dense(_)));
        assert_eq!(chunk.encode()[0], BITSET_TAG);
        chunk.apply(&[], &[1]);
        let body = chunk.encode();
        assert_eq!(body[0], ARRAY_TAG, "few enough again: stored as an array");
        assert_eq!(body.len(), 1 + 2 * ARRAY_MAX);
        assert_eq!(members(&Chunk::decode(&body).unwrap()).len(), ARRAY_MAX);
    }
}
