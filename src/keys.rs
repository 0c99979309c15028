//! The keys module: the byte layout of every logical table inside the one storage table.
//!
//! All integers are big-endian so that byte order is numeric order. Teams are interned to a
//! `u32` and property slugs to a `u16`, which keeps keys short (DESIGN.md measured 16-byte
//! team ids and slug strings making the file 1.8–3.5× larger).
//!
//! | tag | key | value |
//! |---|---|---|
//! | `META` | tag, name | format version, file identity, team counter |
//! | `TEAM` | tag, team uuid (16) | team number `u32` |
//! | `SCHEMA` | tag, team (4), type (1) | catalog version `u64`, MessagePack catalog |
//! | `COUNTERS` | tag, team, type | next ordinal, last id, live and trash counts |
//! | `RECORD` | tag, team, type, id (16) | stored record (see `codec`) |
//! | `ORD` | tag, team, type, ordinal (4) | id (16) |
//! | `BITMAP` | tag, team, type, bitmap name, chunk (4) | that chunk's 4,096 ordinals |
//! | `COLUMN` | tag, team, type, property (2), block (4) | 1,024 target ordinals + 1 (see `column`) |
//! | `GRANT` | tag, team, type, ordinal (4) | the record's grant (see `grant`) |
//! | `JOB` | tag, team, job id (16) | an import job: owner, counters, status (see `import`) |
//! | `JOB_ROWS` | tag, team, job id, chunk (4) | the chunk's rows, MessagePack (JSON in the first format), until applied |
//! | `JOB_RESULTS` | tag, team, job id, chunk (4) | the chunk's per-row results |
//!
//! Bitmap names: `[0]` live records, `[1]` the trash, and for the live records holding one
//! value of one property:
//! - `[2, property (2), value]`: value bitmaps of select, multiselect and boolean properties
//!   (option number `u32` or boolean `u8`);
//! - `[3, property (2), ordered value]`: the value index, one bitmap per value of each
//!   property in it (see `index`); its keys sort by value, then chunk, so scanning them
//!   walks the records in value order;
//! - `[4, property (2), level, bucket (8)]`: range buckets of number and datetime
//!   properties in the value index (see `index::bucket_shifts`);
//! - `[5, property (2), trigram (3)]`: a superset of the records whose lowercased text
//!   holds those three bytes, for indexed text properties (see `index::trigrams`);
//! - `[6]`: records whose trigram bits may be missing (written since the last fold).
//! - `[7, entry kind, id (16), level]`: grant scopes, the records whose grant gives one
//!   entry exactly one level (kind 0 the record's team, with a nil id; 1 a group; 2 a
//!   user; levels 1 `r`, 2 `w`, 3 `a`); see `access`.
//!
//! (Tag `0x07` held the value index as one key per record and value before it became
//! bitmaps; it is not used.)

use crate::model::ObjectType;

/// Tag of the metadata rows.
pub(crate) const META: u8 = 0x01;
/// Tag of the team interning rows.
pub(crate) const TEAM: u8 = 0x02;
/// Tag of the schema catalogs.
pub(crate) const SCHEMA: u8 = 0x03;
/// Tag of the per-(team, type) counters.
pub(crate) const COUNTERS: u8 = 0x04;
/// Tag of the records.
pub(crate) const RECORD: u8 = 0x05;
/// Tag of the ordinal → id map.
pub(crate) const ORD: u8 = 0x06;
/// Tag of the bitmap chunks.
pub(crate) const BITMAP: u8 = 0x08;
/// Tag of the reference column blocks.
pub(crate) const COLUMN: u8 = 0x09;
/// Tag of the per-record grants.
pub(crate) const GRANT: u8 = 0x0A;
/// Tag of the import jobs.
pub(crate) const JOB: u8 = 0x0B;
/// Tag of the rows of import jobs not applied yet, by chunk.
pub(crate) const JOB_ROWS: u8 = 0x0C;
/// Tag of the per-row results of import jobs, by chunk.
pub(crate) const JOB_RESULTS: u8 = 0x0D;

/// Bitmap name of the live records.
pub(crate) const LIVE: &[u8] = &[0];
/// Bitmap name of the records in the trash.
pub(crate) const TRASH: &[u8] = &[1];
/// Bitmap name of the records whose trigram bits are pending (see `records::fold_grams`).
pub(crate) const GRAM_PENDING: &[u8] = &[6];
/// First byte of the name of a value bitmap (live records holding one value of one
/// select, multiselect or boolean property).
pub(crate) const VALUE_BITMAP: u8 = 2;
/// First byte of the name of a value index bitmap.
pub(crate) const INDEX_BITMAP: u8 = 3;
/// First byte of the name of a range bucket bitmap.
pub(crate) const BUCKET_BITMAP: u8 = 4;
/// First byte of the name of a trigram bitmap.
pub(crate) const GRAM_BITMAP: u8 = 5;
/// First byte of the name of a grant scope bitmap.
pub(crate) const SCOPE_BITMAP: u8 = 7;

/// One (team, type): the unit that ordinals, catalogs and bitmaps belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Scope {
    /// The interned team number.
    pub team: u32,
    /// The object type.
    pub ty: ObjectType,
}

impl Scope {
    /// `tag, team, type`: the prefix of every key of this scope in table `tag`.
    pub fn prefix(self, tag: u8) -> Vec<u8> {
        let mut key = Vec::with_capacity(48);
        key.push(tag);
        key.extend_from_slice(&self.team.to_be_bytes());
        key.push(self.ty.code());
        key
    }

    /// The key of the record `id`.
    pub fn record(self, id: u128) -> Vec<u8> {
        let mut key = self.prefix(RECORD);
        key.extend_from_slice(&id.to_be_bytes());
        key
    }

    /// The key of the ordinal map entry of `ord`.
    pub fn ord(self, ord: u32) -> Vec<u8> {
        let mut key = self.prefix(ORD);
        key.extend_from_slice(&ord.to_be_bytes());
        key
    }

    /// The key of the grant of the record with ordinal `ord`.
    pub fn grant(self, ord: u32) -> Vec<u8> {
        let mut key = self.prefix(GRANT);
        key.extend_from_slice(&ord.to_be_bytes());
        key
    }

    /// The prefix of every block of the reference column of property `pid`.
    pub fn column_prefix(self, pid: u16) -> Vec<u8> {
        let mut key = self.prefix(COLUMN);
        key.extend_from_slice(&pid.to_be_bytes());
        key
    }

    /// The key of block `block` of the reference column of property `pid`.
    pub fn column(self, pid: u16, block: u32) -> Vec<u8> {
        let mut key = self.column_prefix(pid);
        key.extend_from_slice(&block.to_be_bytes());
        key
    }

    /// The prefix of all chunks of bitmap `name`.
    pub fn bitmap_prefix(self, name: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(8 + name.len());
        self.write_bitmap_prefix(name, &mut key);
        key
    }

    /// Appends the prefix of all chunks of bitmap `name` to `key`.
    pub fn write_bitmap_prefix(self, name: &[u8], key: &mut Vec<u8>) {
        key.push(BITMAP);
        key.extend_from_slice(&self.team.to_be_bytes());
        key.push(self.ty.code());
        key.extend_from_slice(name);
    }
}

/// Reads a big-endian u128 from the last 16 bytes of `key`, if it is long enough.
pub(crate) fn trailing_id(key: &[u8]) -> Option<u128> {
    let tail = key.len().checked_sub(16).map(|at| &key[at..])?;
    Some(u128::from_be_bytes(tail.try_into().ok()?))
}

/// Reads a big-endian u32 from `bytes`, which must be exactly 4 long.
pub(crate) fn read_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}
