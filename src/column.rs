//! The column module: the reference column, a dense array per reference property holding
//! each live record's target ordinal, in blocks of 1,024 records.
//!
//! A path filter (`organization.industry = X`) finds its targets first. When they are few,
//! the reference index bitmaps of each target give the referencing records; when they are
//! many, a seek per target costs more than reading this column once: 4 bytes per record,
//! checked against a bitset of the targets. A slot holds `target ordinal + 1`, or 0 for a
//! record without a live reference (or not live itself). A block is stored without its
//! trailing empty slots, so the newest, partly filled block stays small.

use std::collections::{BTreeMap, HashMap};

use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::keys::Scope;
use crate::storage::{Kv, Writer};

/// Records per block: 2^BLOCK_BITS.
const BLOCK_BITS: u32 = 10;
const SLOTS: usize = 1 << BLOCK_BITS;

/// The block an ordinal falls in.
pub(crate) fn block_of(ord: u32) -> u32 {
    ord >> BLOCK_BITS
}

/// How many blocks the ordinals below `ord` span (the first block past them).
pub(crate) fn blocks_below(ord: u32) -> u32 {
    ord.div_ceil(1 << BLOCK_BITS)
}

fn damaged() -> Error {
    Error::Internal("stored reference column block is damaged".into())
}

fn decode_block(bytes: &[u8]) -> Result<Vec<u32>> {
    if !bytes.len().is_multiple_of(4) || bytes.len() > SLOTS * 4 {
        return Err(damaged());
    }
    let mut slots: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    slots.resize(SLOTS, 0);
    Ok(slots)
}

fn encode_block(slots: &[u32]) -> Vec<u8> {
    let used = slots.iter().rposition(|v| *v != 0).map_or(0, |at| at + 1);
    slots[..used].iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// The block number at the end of a column key.
fn block_in_key(key: &[u8]) -> Result<u32> {
    let tail = key.get(key.len().saturating_sub(4)..).ok_or_else(damaged)?;
    Ok(u32::from_be_bytes(tail.try_into().map_err(|_| damaged())?))
}

/// Calls `f` with (ordinal, slot value) for every non-empty slot of property `pid`.
fn each_slot(kv: &impl Kv, scope: Scope, pid: u16, mut f: impl FnMut(u32, u32)) -> Result<()> {
    kv.scan_prefix(&scope.column_prefix(pid), |key, value| {
        let base = block_in_key(key)? << BLOCK_BITS;
        if value.len() % 4 != 0 || value.len() > SLOTS * 4 {
            return Err(damaged());
        }
        for (i, slot) in value.chunks_exact(4).enumerate() {
            let slot = u32::from_be_bytes([slot[0], slot[1], slot[2], slot[3]]);
            if slot != 0 {
                f(base + i as u32, slot);
            }
        }
        Ok(true)
    })
}

/// The records whose reference `pid` points at one of the target ordinals `targets`.
pub(crate) fn referencing(
    kv: &impl Kv,
    scope: Scope,
    pid: u16,
    targets: &RoaringBitmap,
) -> Result<RoaringBitmap> {
    let Some(max) = targets.max() else {
        return Ok(RoaringBitmap::new());
    };
    let mut wanted = vec![0u64; max as usize / 64 + 1];
    for t in targets {
        wanted[t as usize / 64] |= 1 << (t % 64);
    }
    let mut found = Vec::new();
    each_slot(kv, scope, pid, |ord, slot| {
        let target = (slot - 1) as usize;
        if wanted
            .get(target / 64)
            .is_some_and(|w| w >> (target % 64) & 1 == 1)
        {
            found.push(ord);
        }
    })?;
    RoaringBitmap::from_sorted_iter(found).map_err(|_| damaged())
}

/// Every non-empty slot of property `pid`, by ordinal (for `verify_integrity`).
pub(crate) fn read_all(kv: &impl Kv, scope: Scope, pid: u16) -> Result<BTreeMap<u32, u32>> {
    let mut slots = BTreeMap::new();
    each_slot(kv, scope, pid, |ord, slot| {
        slots.insert(ord, slot);
    })?;
    Ok(slots)
}

/// Column blocks changed by the current write transaction, not yet written.
#[derive(Default)]
pub(crate) struct ColumnBuffer {
    dirty: HashMap<(Scope, u16), BTreeMap<u32, Vec<u32>>>,
}

impl ColumnBuffer {
    /// Sets the slot of `ord` in property `pid`'s column to `value`; `fresh` says its block
    /// holds no stored record, so it need not be read.
    pub fn set(
        &mut self,
        kv: &impl Kv,
        scope: Scope,
        pid: u16,
        ord: u32,
        value: u32,
        fresh: bool,
    ) -> Result<()> {
        let block = block_of(ord);
        let blocks = self.dirty.entry((scope, pid)).or_default();
        let slots = match blocks.entry(block) {
            std::collections::btree_map::Entry::Occupied(held) => held.into_mut(),
            std::collections::btree_map::Entry::Vacant(new) => {
                let stored = if fresh {
                    None
                } else {
                    kv.get_with(&scope.column(pid, block), decode_block)?
                        .transpose()?
                };
                new.insert(stored.unwrap_or_else(|| vec![0; SLOTS]))
            }
        };
        slots[ord as usize % SLOTS] = value;
        Ok(())
    }

    /// Deletes property `pid`'s column, stored or held.
    pub fn drop_property(&mut self, writer: &mut Writer<'_>, scope: Scope, pid: u16) -> Result<()> {
        self.dirty.remove(&(scope, pid));
        writer.delete_prefix(&scope.column_prefix(pid))
    }

    /// Writes every changed block (an empty block is deleted) and empties the buffer.
    pub fn flush(&mut self, writer: &mut Writer<'_>) -> Result<()> {
        let mut held: Vec<_> = std::mem::take(&mut self.dirty).into_iter().collect();
        held.sort_unstable_by_key(|(at, _)| *at);
        for ((scope, pid), blocks) in held {
            for (block, slots) in blocks {
                let bytes = encode_block(&slots);
                let key = scope.column(pid, block);
                if bytes.is_empty() {
                    writer.delete(&key)?;
                } else {
                    writer.put(&key, &bytes)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_without_trailing_empty_slots() {
        let mut slots = vec![0u32; SLOTS];
        slots[3] = 7;
        slots[500] = 1;
        let bytes = encode_block(&slots);
        assert_eq!(bytes.len(), 501 * 4);
        assert_eq!(decode_block(&bytes).unwrap(), slots);
        assert!(encode_block(&vec![0; SLOTS]).is_empty());
        assert!(decode_block(&[0, 0, 1]).is_err());
        assert!(decode_block(&vec![0; SLOTS * 4 + 4]).is_err());
    }
}
