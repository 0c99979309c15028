//! The cursor module: opaque keyset cursors for stable pagination.
//!
//! A cursor is base64url (no padding) of:
//! `version (1) | fingerprint (8) | last ordinal (4) | last id (16) | sort key length (2) |
//! sort key | crc32 (4)`. The fingerprint is a hash of everything that defines the query
//! (team, type, trash or not, filter, sort), so a cursor handed to another query is refused;
//! the CRC makes any altered byte an `invalid_cursor` rather than a silently wrong page.
//! Decoding is total: every input yields a cursor or `invalid_cursor`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{Error, Result};

const VERSION: u8 = 1;
const FIXED_LEN: usize = 1 + 8 + 4 + 16 + 2 + 4;
/// Cursors longer than this are refused before decoding.
const MAX_TEXT_LEN: usize = 4096;

/// The position after the last row of a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Hash of the query the cursor belongs to.
    pub fingerprint: u64,
    /// Ordinal of the last row returned.
    pub last_ord: u32,
    /// Id of the last row returned.
    pub last_id: u128,
    /// Memcomparable sort key of the last row (empty for id order).
    pub sort_key: Vec<u8>,
}

impl Cursor {
    /// Encodes the cursor as URL-safe text.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(FIXED_LEN + self.sort_key.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.fingerprint.to_be_bytes());
        bytes.extend_from_slice(&self.last_ord.to_be_bytes());
        bytes.extend_from_slice(&self.last_id.to_be_bytes());
        let key_len = u16::try_from(self.sort_key.len()).unwrap_or(u16::MAX);
        bytes.extend_from_slice(&key_len.to_be_bytes());
        bytes.extend_from_slice(&self.sort_key[..usize::from(key_len)]);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes `text`, which must be a cursor made for the query with `fingerprint`.
    pub fn decode(text: &str, fingerprint: u64) -> Result<Cursor> {
        let bad = |why: &str| Error::InvalidCursor(format!("cursor {}: {why}", clip(text)));
        if text.len() > MAX_TEXT_LEN {
            return Err(bad("too long"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad("not base64url"))?;
        if bytes.len() < FIXED_LEN {
            return Err(bad("too short"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body).to_be_bytes() != crc {
            return Err(bad("checksum mismatch (altered or truncated)"));
        }
        if body[0] != VERSION {
            return Err(bad("unknown version"));
        }
        let fixed = |at: usize, len: usize| &body[at..at + len];
        let found = u64::from_be_bytes(fixed(1, 8).try_into().expect("8 bytes"));
        if found != fingerprint {
            return Err(bad("made for another query"));
        }
        let last_ord = u32::from_be_bytes(fixed(9, 4).try_into().expect("4 bytes"));
        let last_id = u128::from_be_bytes(fixed(13, 16).try_into().expect("16 bytes"));
        let key_len = usize::from(u16::from_be_bytes(
            fixed(29, 2).try_into().expect("2 bytes"),
        ));
        let sort_key = body.get(31..).filter(|k| k.len() == key_len);
        let sort_key = sort_key.ok_or_else(|| bad("sort key length mismatch"))?;
        Ok(Cursor {
            fingerprint,
            last_ord,
            last_id,
            sort_key: sort_key.to_vec(),
        })
    }
}

fn clip(text: &str) -> String {
    let cut = (0..=text.len().min(24))
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    if cut < text.len() {
        format!("{:?}…", &text[..cut])
    } else {
        format!("{text:?}")
    }
}

/// The `next_cursor` of a page: the position after its last row `(id, ordinal)` when more
/// rows follow, else `None`.
pub(crate) fn next_cursor(
    fingerprint: u64,
    has_more: bool,
    last: Option<(u128, u32)>,
    sort_key: Vec<u8>,
) -> Option<String> {
    match (has_more, last) {
        (true, Some((last_id, last_ord))) => Some(
            Cursor {
                fingerprint,
                last_ord,
                last_id,
                sort_key,
            }
            .encode(),
        ),
        _ => None,
    }
}

/// FNV-1a over the parts that define a query; stable across releases and platforms
/// (std's hasher is not), which cursors handed out by a server need.
pub(crate) fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in (part.len() as u64).to_be_bytes().iter().chain(part.iter()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cursor {
        Cursor {
            fingerprint: 42,
            last_ord: 7,
            last_id: 99,
            sort_key: vec![1, 2, 3],
        }
    }

    #[test]
    fn round_trips() {
        let text = sample().encode();
        assert_eq!(Cursor::decode(&text, 42).unwrap(), sample());
    }

    #[test]
    fn other_query_is_refused() {
        let text = sample().encode();
        assert!(matches!(
            Cursor::decode(&text, 43),
            Err(Error::InvalidCursor(_))
        ));
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let mut bytes = URL_SAFE_NO_PAD.decode(sample().encode()).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                bytes[i] ^= 1 << bit;
                let text = URL_SAFE_NO_PAD.encode(&bytes);
                assert!(Cursor::decode(&text, 42).is_err(), "byte {i} bit {bit}");
                bytes[i] ^= 1 << bit;
            }
        }
    }
}
