//! The storage module: the only place that talks to redb.
//!
//! prismdb keeps every logical table (records, ordinals, value index, bitmaps, schema, …)
//! inside one redb table of byte keys and byte values; the first byte of each key is the
//! logical table's tag (see [`crate::keys`]). One physical table means a write transaction
//! touches one B-tree, so a single-record write copies as few pages as possible.
//!
//! The rest of the crate sees three things: [`Store`] (open, begin a read, run a write),
//! [`Reader`] / [`Writer`] and the [`Kv`] trait that both implement, so that read logic
//! runs unchanged inside a write transaction and sees that transaction's own writes.

use std::ops::Bound;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{Error, Result};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("prism");

/// How a commit reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Fsync on every commit: when the call returns, the write survives a crash (default).
    #[default]
    Immediate,
    /// No fsync per commit: a crash may lose the latest commits, never corrupts the file,
    /// and never leaves half of a commit. Like SQLite's WAL with `synchronous=NORMAL`.
    Eventual,
}

/// Where the bytes of the file go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Bytes in allocated pages.
    pub allocated_bytes: u64,
    /// Bytes of keys and values stored.
    pub stored_bytes: u64,
    /// Bytes of B-tree structure (page headers, offsets, branch pages).
    pub metadata_bytes: u64,
    /// Bytes allocated but holding nothing (partly filled and free pages).
    pub fragmented_bytes: u64,
    /// Height of the B-tree.
    pub tree_height: u32,
}

/// An open redb database holding prismdb's one table.
pub(crate) struct Store {
    db: redb::Database,
}

fn internal(context: &str, err: impl std::fmt::Display) -> Error {
    Error::Internal(format!("storage: {context}: {err}"))
}

impl Store {
    /// Opens (or creates) the file at `path` with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Store> {
        let db = redb::Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| internal(&format!("cannot open {}", path.display()), e))?;
        Self::with_table(db)
    }

    /// Creates a store that lives in memory only (tests, scratch work).
    pub fn in_memory() -> Result<Store> {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| internal("cannot create in-memory database", e))?;
        Self::with_table(db)
    }

    fn with_table(db: redb::Database) -> Result<Store> {
        let txn = db.begin_write().map_err(|e| internal("begin", e))?;
        txn.open_table(TABLE)
            .map_err(|e| internal("open table", e))?;
        txn.commit().map_err(|e| internal("commit", e))?;
        Ok(Store { db })
    }

    /// Begins a read transaction: a consistent snapshot that later commits do not change.
    pub fn read(&self) -> Result<Reader> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| internal("begin read", e))?;
        let table = txn
            .open_table(TABLE)
            .map_err(|e| internal("open table", e))?;
        Ok(Reader { table })
    }

    /// Runs `body` in one write transaction and commits it if `body` returns `Ok`.
    ///
    /// If `body` fails, nothing it wrote is kept. Writers are serialized: a second caller
    /// waits until the first has committed or rolled back.
    pub fn write<R>(
        &self,
        durability: Durability,
        body: impl FnOnce(&mut Writer<'_>) -> Result<R>,
    ) -> Result<R> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| internal("begin write", e))?;
        let level = match durability {
            Durability::Immediate => redb::Durability::Immediate,
            Durability::Eventual => redb::Durability::None,
        };
        txn.set_durability(level)
            .map_err(|e| internal("set durability", e))?;
        let outcome = {
            let table = txn
                .open_table(TABLE)
                .map_err(|e| internal("open table", e))?;
            let mut writer = Writer { table };
            body(&mut writer)
        };
        match outcome {
            Ok(value) => {
                txn.commit().map_err(|e| internal("commit", e))?;
                Ok(value)
            }
            Err(err) => {
                txn.abort().map_err(|e| internal("abort", e))?;
                Err(err)
            }
        }
    }

    /// Page-level statistics of the file: what is data, what is free.
    pub fn stats(&self) -> Result<StorageStats> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| internal("begin write", e))?;
        let stats = txn.stats().map_err(|e| internal("stats", e))?;
        txn.abort().map_err(|e| internal("abort", e))?;
        Ok(StorageStats {
            allocated_bytes: stats.allocated_pages() * stats.page_size() as u64,
            stored_bytes: stats.stored_bytes(),
            metadata_bytes: stats.metadata_bytes(),
            fragmented_bytes: stats.fragmented_bytes(),
            tree_height: stats.tree_height(),
        })
    }

    /// Rewrites the file to drop free pages; returns whether anything was reclaimed.
    pub fn compact(&mut self) -> Result<bool> {
        self.db.compact().map_err(|e| internal("compact", e))
    }
}

/// Ordered byte-keyed access shared by readers and writers.
pub(crate) trait Kv {
    /// Calls `f` with the value stored under `key`, if any.
    fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>>;

    /// Calls `f` on each entry with `start <= key < end` (or `>`/`>=` per the bounds), in key
    /// order (reverse order if `reverse`), until `f` returns `Ok(false)` or an error.
    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()>;

    /// Returns a copy of the value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with(key, |v| v.to_vec())
    }

    /// Calls `f` on each entry whose key starts with `prefix`, in key order.
    fn scan_prefix(
        &self,
        prefix: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let end = prefix_end(prefix);
        let upper = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        self.scan(Bound::Included(prefix), upper, false, f)
    }
}

/// The smallest key greater than every key that starts with `prefix`, or `None` if there is
/// none (the prefix is all 0xff).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn get_in<T: ReadableTable<&'static [u8], &'static [u8]>, R>(
    table: &T,
    key: &[u8],
    f: impl FnOnce(&[u8]) -> R,
) -> Result<Option<R>> {
    let guard = table.get(key).map_err(|e| internal("get", e))?;
    Ok(guard.map(|g| f(g.value())))
}

fn scan_in<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    reverse: bool,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<()> {
    let range = table
        .range::<&[u8]>((start, end))
        .map_err(|e| internal("range", e))?;
    let mut visit = |entry: std::result::Result<_, redb::StorageError>| -> Result<bool> {
        let (k, v): (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>) =
            entry.map_err(|e| internal("range step", e))?;
        f(k.value(), v.value())
    };
    if reverse {
        for entry in range.rev() {
            if !visit(entry)? {
                break;
            }
        }
    } else {
        for entry in range {
            if !visit(entry)? {
                break;
            }
        }
    }
    Ok(())
}

/// A read transaction: every read sees the state of one commit.
pub(crate) struct Reader {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl Kv for Reader {
    fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        get_in(&self.table, key, f)
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        scan_in(&self.table, start, end, reverse, f)
    }
}

/// The open table of a write transaction. Reads see the transaction's own writes.
pub(crate) struct Writer<'txn> {
    table: redb::Table<'txn, &'static [u8], &'static [u8]>,
}

impl Writer<'_> {
    /// Stores `value` under `key`, replacing what was there.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.table
            .insert(key, value)
            .map_err(|e| internal("insert", e))?;
        Ok(())
    }

    /// Removes `key`; returns whether it was present.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool> {
        let old = self.table.remove(key).map_err(|e| internal("remove", e))?;
        Ok(old.is_some())
    }
}

impl Kv for Writer<'_> {
    fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        get_in(&self.table, key, f)
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        scan_in(&self.table, start, end, reverse, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_carries_over_ff() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn failed_write_keeps_nothing() {
        let store = Store::in_memory().unwrap();
        let out: Result<()> = store.write(Durability::Eventual, |w| {
            w.put(b"a", b"1")?;
            Err(Error::Conflict("stop".into()))
        });
        assert!(out.is_err());
        assert_eq!(store.read().unwrap().get(b"a").unwrap(), None);
        store
            .write(Durability::Eventual, |w| w.put(b"a", b"2"))
            .unwrap();
        assert_eq!(
            store.read().unwrap().get(b"a").unwrap(),
            Some(b"2".to_vec())
        );
    }
}
