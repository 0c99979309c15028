//! The bitmap module: roaring bitmaps of ordinals, stored in chunks of 65,536 ordinals.
//!
//! Each chunk is its own row (one roaring container), so a write rewrites at most one small
//! row per bitmap it touches instead of a whole bitmap (DESIGN.md: whole-bitmap rewrites
//! cost 40% of write throughput). Inside a write transaction, changed chunks are kept in a
//! [`BitmapBuffer`] and written once, in key order, when the transaction ends.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::keys::Scope;
use crate::storage::{Kv, Writer};

/// The chunk an ordinal falls in.
fn chunk_of(ord: u32) -> u16 {
    (ord >> 16) as u16
}

fn decode_chunk(bytes: &[u8]) -> Result<RoaringBitmap> {
    RoaringBitmap::deserialize_from(bytes)
        .map_err(|e| Error::Internal(format!("stored bitmap chunk is damaged: {e}")))
}

fn encode_chunk(bitmap: &RoaringBitmap) -> Vec<u8> {
    let mut out = Vec::with_capacity(bitmap.serialized_size());
    bitmap
        .serialize_into(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

/// Reads the whole bitmap `name` of `scope` as stored.
pub(crate) fn read(kv: &impl Kv, scope: Scope, name: &[u8]) -> Result<RoaringBitmap> {
    let prefix = scope.bitmap_prefix(name);
    let mut full = RoaringBitmap::new();
    kv.scan_prefix(&prefix, |key, value| {
        if key.len() != prefix.len() + 2 {
            return Ok(true);
        }
        full |= decode_chunk(value)?;
        Ok(true)
    })?;
    Ok(full)
}

/// Chunks changed by the current write transaction, not yet written.
#[derive(Default)]
pub(crate) struct BitmapBuffer {
    dirty: BTreeMap<Vec<u8>, RoaringBitmap>,
}

impl BitmapBuffer {
    fn chunk_mut(&mut self, kv: &impl Kv, key: Vec<u8>) -> Result<&mut RoaringBitmap> {
        if !self.dirty.contains_key(&key) {
            let stored = kv.get_with(&key, decode_chunk)?.transpose()?;
            self.dirty.insert(key.clone(), stored.unwrap_or_default());
        }
        Ok(self.dirty.get_mut(&key).expect("inserted above"))
    }

    /// Sets bit `ord` of bitmap `name`.
    pub fn insert(&mut self, kv: &impl Kv, scope: Scope, name: &[u8], ord: u32) -> Result<()> {
        let key = scope.bitmap_chunk(name, chunk_of(ord));
        self.chunk_mut(kv, key)?.insert(ord);
        Ok(())
    }

    /// Clears bit `ord` of bitmap `name`.
    pub fn remove(&mut self, kv: &impl Kv, scope: Scope, name: &[u8], ord: u32) -> Result<()> {
        let key = scope.bitmap_chunk(name, chunk_of(ord));
        self.chunk_mut(kv, key)?.remove(ord);
        Ok(())
    }

    /// Reads the whole bitmap `name` as this transaction sees it.
    pub fn read(&self, kv: &impl Kv, scope: Scope, name: &[u8]) -> Result<RoaringBitmap> {
        let prefix = scope.bitmap_prefix(name);
        let mut full = read(kv, scope, name)?;
        for (key, chunk) in self.dirty.range(prefix.clone()..) {
            if !key.starts_with(&prefix) {
                break;
            }
            if key.len() != prefix.len() + 2 {
                continue;
            }
            let high = u32::from(u16::from_be_bytes([key[key.len() - 2], key[key.len() - 1]]));
            full.remove_range((high << 16)..=((high << 16) | 0xffff));
            full |= chunk;
        }
        Ok(full)
    }

    /// Writes every changed chunk (an empty chunk is deleted) and empties the buffer.
    pub fn flush(&mut self, writer: &mut Writer<'_>) -> Result<()> {
        for (key, chunk) in std::mem::take(&mut self.dirty) {
            if chunk.is_empty() {
                writer.delete(&key)?;
            } else {
                writer.put(&key, &encode_chunk(&chunk))?;
            }
        }
        Ok(())
    }
}
