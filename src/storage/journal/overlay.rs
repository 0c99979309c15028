//! The writes a journaled file holds in memory until a checkpoint writes them to the file.
//!
//! Between checkpoints the journal has every write, so the main file need not: writing each
//! page there at once cost a system call and a page-cache copy per page (a durable create
//! writes about 43 pages, a bulk update of 1,000 contacts about 3,500), and redb rewrites
//! the same places again and again as it reuses freed pages. The [`Overlay`] keeps the
//! newest bytes of each range written since the last checkpoint; reads lay them over what
//! the file holds, and a checkpoint writes each range once, in file order.

use std::collections::BTreeMap;
use std::io;

use redb::StorageBackend;

/// Adjacent ranges are written back together, a write ending once it reaches this many bytes.
const WRITE_BACK_BYTES: usize = 1 << 20;

/// Buffers of ranges written back are kept for new ones up to this many bytes in all.
const SPARE_BYTES: usize = 32 << 20;

/// Byte ranges written since the last write-back, not overlapping, keyed by their offset.
#[derive(Debug, Default)]
pub(super) struct Overlay {
    ranges: BTreeMap<u64, Vec<u8>>,
    bytes: u64,
    /// Buffers of ranges written back, reused for new ones: freeing them after each
    /// checkpoint and allocating them again cost fresh, zeroed memory from the system
    /// (page faults were a third of a bulk update's time).
    spare: Vec<Vec<u8>>,
    /// The capacity of the spare buffers, in bytes.
    spare_bytes: usize,
}

impl Overlay {
    /// Bytes held.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Holds `data` as the newest bytes at `offset`. A held range the new one covers only in
    /// part is first written to `file`, so that the file holds its bytes outside the new one.
    ///
    /// Returns the error of that write; the overlay is then unchanged.
    pub(super) fn insert(
        &mut self,
        file: &impl StorageBackend,
        offset: u64,
        data: &[u8],
    ) -> io::Result<()> {
        if let Some(held) = self.ranges.get_mut(&offset) {
            if held.len() == data.len() {
                held.copy_from_slice(data);
                return Ok(());
            }
        }
        self.forget(file, offset, data.len() as u64)?;
        self.bytes += data.len() as u64;
        let mut buffer = match self.spare.pop() {
            Some(spare) if spare.capacity() >= data.len() => {
                self.spare_bytes -= spare.capacity();
                spare
            }
            Some(small) => {
                self.spare.push(small);
                Vec::new()
            }
            None => Vec::new(),
        };
        buffer.clear();
        buffer.extend_from_slice(data);
        self.ranges.insert(offset, buffer);
        Ok(())
    }

    /// Stops holding anything in `[offset, offset + len)`: ranges inside it are dropped, ranges
    /// that reach out of it are written to `file` and dropped (the caller is about to write
    /// the range itself).
    ///
    /// Returns the error of a write to `file`; the ranges written before it are dropped.
    pub(super) fn forget(
        &mut self,
        file: &impl StorageBackend,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        let end = offset + len;
        let starts: Vec<u64> = self
            .overlapping(offset, end)
            .map(|(start, _)| start)
            .collect();
        for start in starts {
            let held = &self.ranges[&start];
            let held_end = start + held.len() as u64;
            if start < offset || held_end > end {
                file.write(start, held)?;
            }
            self.bytes -= held.len() as u64;
            let held = self.ranges.remove(&start).expect("listed");
            self.keep_spare(held);
        }
        Ok(())
    }

    /// Fills `out` with the bytes at `offset`: what `file` holds, overlaid with the held
    /// ranges. Reads nothing from `file` when one held range covers `out`.
    ///
    /// Returns the error of the read from `file`.
    pub(super) fn read(
        &self,
        file: &impl StorageBackend,
        offset: u64,
        out: &mut [u8],
    ) -> io::Result<()> {
        let end = offset + out.len() as u64;
        let covered = self
            .overlapping(offset, end)
            .next()
            .is_some_and(|(start, held)| start <= offset && start + held.len() as u64 >= end);
        if !covered {
            file.read(offset, out)?;
        }
        for (start, held) in self.overlapping(offset, end) {
            let from = start.max(offset);
            let to = (start + held.len() as u64).min(end);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&held[(from - start) as usize..(to - start) as usize]);
        }
        Ok(())
    }

    /// Drops the held bytes at and past `len` (the file is being cut to `len`).
    pub(super) fn truncate(&mut self, len: u64) {
        for held in self.ranges.split_off(&len).into_values() {
            self.bytes -= held.len() as u64;
        }
        if let Some((start, held)) = self.ranges.iter_mut().next_back() {
            let keep = (len - start) as usize;
            if held.len() > keep {
                self.bytes -= (held.len() - keep) as u64;
                held.truncate(keep);
            }
        }
    }

    /// Writes every held range to `file` in offset order, adjacent ranges in one write (a
    /// range with no adjacent one is written from where it is held, not copied first), and
    /// holds nothing after.
    ///
    /// Returns the error of the first write that fails; everything stays held then, and a
    /// later write-back writes it again.
    pub(super) fn write_back(&mut self, file: &impl StorageBackend) -> io::Result<()> {
        let mut run: Vec<u8> = Vec::new();
        let mut run_start = 0;
        let mut ranges = self.ranges.iter().peekable();
        while let Some((&start, held)) = ranges.next() {
            let end = start + held.len() as u64;
            let next_adjacent = ranges.peek().is_some_and(|(&next, _)| next == end);
            if run.is_empty() && !next_adjacent {
                file.write(start, held)?;
                continue;
            }
            if run.is_empty() {
                run_start = start;
            }
            run.extend_from_slice(held);
            if !next_adjacent || run.len() >= WRITE_BACK_BYTES {
                file.write(run_start, &run)?;
                run.clear();
            }
        }
        for held in std::mem::take(&mut self.ranges).into_values() {
            self.keep_spare(held);
        }
        self.bytes = 0;
        Ok(())
    }

    /// Keeps `buffer` for a later range while the spare buffers stay under [`SPARE_BYTES`].
    fn keep_spare(&mut self, buffer: Vec<u8>) {
        if self.spare_bytes + buffer.capacity() <= SPARE_BYTES {
            self.spare_bytes += buffer.capacity();
            self.spare.push(buffer);
        }
    }

    /// The held ranges that overlap `[offset, end)`, in offset order.
    fn overlapping(&self, offset: u64, end: u64) -> impl Iterator<Item = (u64, &Vec<u8>)> {
        let before = self
            .ranges
            .range(..offset)
            .next_back()
            .filter(|(start, held)| **start + held.len() as u64 > offset);
        let inside = self.ranges.range(offset..end);
        before
            .into_iter()
            .chain(inside)
            .map(|(start, held)| (*start, held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use redb::backends::InMemoryBackend;

    /// One change to the pair (overlay in front of a file) and to the model (a plain image).
    #[derive(Debug, Clone)]
    enum Op {
        /// Held in the overlay.
        Hold(u64, Vec<u8>),
        /// Written past the overlay, the way a commit too large to journal is.
        WriteThrough(u64, Vec<u8>),
        SetLen(u64),
        WriteBack,
    }

    fn op() -> impl Strategy<Value = Op> {
        let bytes = |n| proptest::collection::vec(any::<u8>(), 1..n);
        prop_oneof![
            6 => (0u64..240, bytes(40)).prop_map(|(at, data)| Op::Hold(at, data)),
            2 => (0u64..240, bytes(40)).prop_map(|(at, data)| Op::WriteThrough(at, data)),
            1 => (0u64..280).prop_map(Op::SetLen),
            1 => Just(Op::WriteBack),
        ]
    }

    fn write_model(model: &mut Vec<u8>, at: u64, data: &[u8]) {
        let end = at as usize + data.len();
        if model.len() < end {
            model.resize(end, 0);
        }
        model[at as usize..end].copy_from_slice(data);
    }

    proptest! {
        /// Whatever mix of held writes, writes past the overlay, resizes and write-backs, a
        /// read of any range gives the model's bytes, and after a write-back the file alone
        /// does.
        #[test]
        fn reads_see_the_newest_bytes(ops in proptest::collection::vec(op(), 1..40), reads in proptest::collection::vec((0u64..280, 1usize..60), 8)) {
            let file = InMemoryBackend::new();
            let mut overlay = Overlay::default();
            let mut model: Vec<u8> = Vec::new();
            for op in ops {
                match op {
                    Op::Hold(at, data) | Op::WriteThrough(at, data) if at + data.len() as u64 > model.len() as u64 => {
                        // Writers grow the file before writing past its end.
                        let len = at + data.len() as u64;
                        file.set_len(len).unwrap();
                        model.resize(len as usize, 0);
                        prop_assert!(overlay.bytes() <= len);
                        write_model(&mut model, at, &data);
                        overlay.insert(&file, at, &data).unwrap();
                    }
                    Op::Hold(at, data) => {
                        write_model(&mut model, at, &data);
                        overlay.insert(&file, at, &data).unwrap();
                    }
                    Op::WriteThrough(at, data) => {
                        write_model(&mut model, at, &data);
                        overlay.forget(&file, at, data.len() as u64).unwrap();
                        file.write(at, &data).unwrap();
                    }
                    Op::SetLen(len) => {
                        overlay.truncate(len);
                        file.set_len(len).unwrap();
                        model.resize(len as usize, 0);
                    }
                    Op::WriteBack => overlay.write_back(&file).unwrap(),
                }
                let held: u64 = overlay.ranges.values().map(|held| held.len() as u64).sum();
                prop_assert_eq!(overlay.bytes(), held);
            }
            for (at, len) in reads {
                if (at as usize) + len > model.len() {
                    continue;
                }
                let mut out = vec![0u8; len];
                overlay.read(&file, at, &mut out).unwrap();
                prop_assert_eq!(&out[..], &model[at as usize..at as usize + len]);
            }
            overlay.write_back(&file).unwrap();
            prop_assert_eq!(overlay.bytes(), 0);
            let mut image = vec![0u8; file.len().unwrap() as usize];
            file.read(0, &mut image).unwrap();
            prop_assert_eq!(image, model);
        }
    }

    /// An in-memory file that counts the writes made to it.
    #[derive(Debug, Default)]
    struct Counted {
        file: InMemoryBackend,
        writes: std::sync::atomic::AtomicUsize,
    }

    impl StorageBackend for Counted {
        fn len(&self) -> io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.file.set_len(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            Ok(())
        }
        fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.file.write(offset, data)
        }
    }

    #[test]
    fn held_ranges_reach_the_file_at_the_write_back_adjacent_ones_in_one_write() {
        let file = Counted::default();
        file.set_len(300).unwrap();
        let mut overlay = Overlay::default();
        overlay.insert(&file, 100, &[2; 100]).unwrap();
        overlay.insert(&file, 0, &[1; 100]).unwrap();
        overlay.insert(&file, 250, &[3; 50]).unwrap();
        overlay.insert(&file, 250, &[4; 50]).unwrap();
        let writes = || file.writes.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(writes(), 0, "nothing written before the write-back");
        overlay.write_back(&file).unwrap();
        assert_eq!(writes(), 2);
        let mut out = [0u8; 300];
        file.read(0, &mut out).unwrap();
        assert_eq!(&out[..100], &[1; 100][..]);
        assert_eq!(&out[100..200], &[2; 100][..]);
        assert_eq!(&out[200..250], &[0; 50][..]);
        assert_eq!(&out[250..], &[4; 50][..]);
    }
}
