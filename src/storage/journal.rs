//! A write-ahead journal under redb: durable commits become one sequential append.
//!
//! redb commits by writing every page the transaction dirtied in place and syncing the
//! file. A bulk update of 1,000 contacts dirties about 3,500 pages spread over the whole
//! file, and on this project's machine syncing 3,500 random pages takes about 90 ms, where
//! appending the same bytes to one file and syncing it takes about 25 ms (docs/decisions.md
//! has the measurement). [`Journaled`] is a storage backend that wraps the main file's
//! backend and a journal file's:
//!
//! - `write` keeps the bytes in memory twice: as a frame for the journal, and in the
//!   overlay (`overlay::Overlay`), whose newest bytes of each range `read` lays over what
//!   the main file holds;
//! - `sync_data` appends the frames kept since the last sync and a sync frame to the
//!   journal, and syncs the journal only: the commit is durable when the journal is;
//! - once the journal or the overlay passes [`CHECKPOINT_BYTES`], the overlay is written to
//!   the main file in file order, the main file is synced and the journal starts over under
//!   a new epoch (a checkpoint), so a place redb rewrites in many commits is written and
//!   synced once for all of them;
//! - on open, the frames up to the last sync frame are written to the main file again, in
//!   order, the main file is synced and the journal starts over.
//!
//! So the pair behaves like one file whose `sync_data` makes every earlier write durable:
//! after a crash the main file holds what the last sync held, plus any subset of the writes
//! made after it, which is what redb already expects of a file.
//!
//! The journal holds every write since the last checkpoint, in order. Replaying it over a
//! main file that already holds those writes (a process crash, or a crash during a
//! checkpoint) changes nothing that was synced.
//!
//! A commit past [`COMMIT_JOURNAL_BYTES`] (a bulk load's) is not journaled past it: its
//! writes go to the main file (held, then written in offset order, as at a checkpoint) and
//! its sync syncs the main file.
//!
//! Layout, little-endian. The journal starts with a header: magic `PRSMJRN2`, the epoch
//! (`u64`) and a CRC-32 of both. Each frame is a 40-byte head — kind (`u8`), the number of
//! zero bytes that follow the data in the write (3 bytes: redb's pages end in free space,
//! about a third of what a durable create writes), data length (`u32`), epoch (`u64`),
//! sequence number within the epoch (`u64`), position (`u64`: the offset written, or the new
//! length), CRC-32 of the head's first 32 bytes and the data (`u32`), 4 bytes of zero —
//! followed by the data. A frame whose epoch, sequence number or CRC is wrong ends the
//! journal. Journals of the first format (`PRSMJRN1`, whose zero counts are all zero) are
//! replayed the same way.

use std::fmt;
use std::io;

use parking_lot::{Mutex, RwLock};
use redb::StorageBackend;

use overlay::Overlay;

mod overlay;
pub(crate) mod replay_check;

/// Once the journal or the writes held for the main file reach this many bytes, the next
/// write or sync checkpoints.
pub const CHECKPOINT_BYTES: u64 = 32 << 20;

/// A commit that writes more than this is not journaled past it: its sync syncs the main
/// file instead (a checkpoint). Such a commit's pages are mostly new ones, not rewritten by
/// the next commits, so journaling them would only write them twice; a bulk load of 10,000
/// contacts writes about 100 MB per commit.
pub const COMMIT_JOURNAL_BYTES: u64 = 16 << 20;

/// The journal file grows by this much at a time.
const GROW_BYTES: u64 = 4 << 20;

const MAGIC: &[u8; 8] = b"PRSMJRN2";
/// The magic of journals whose frames kept their trailing zeros; replayed the same way (their
/// zero counts are all zero).
const MAGIC_V1: &[u8; 8] = b"PRSMJRN1";
/// The most trailing zeros one frame head can count (three bytes).
const MAX_ELIDED_ZEROS: usize = (1 << 24) - 1;
const HEADER_LEN: u64 = 20;
const FRAME_HEAD_LEN: usize = 40;

const KIND_WRITE: u8 = 1;
const KIND_SET_LEN: u8 = 2;
const KIND_SYNC: u8 = 3;

/// A storage backend that journals the writes made to `main` in `journal`; see the module
/// documentation.
pub struct Journaled<M, J> {
    main: M,
    journal: J,
    state: Mutex<JournalState>,
    /// The writes since the last checkpoint, which `main` may not have yet.
    overlay: RwLock<Overlay>,
    /// The journal size at which the next write or sync checkpoints.
    checkpoint_bytes: u64,
    /// The bytes of frames after which a commit stops being journaled.
    commit_journal_bytes: u64,
    /// Held for the life of the backend (an exclusive lock on the journal file when the
    /// pair is two files), so a second process cannot replay the journal under the first.
    _lock: Option<std::fs::File>,
}

/// Where the journal stands.
struct JournalState {
    epoch: u64,
    /// The sequence number of the next frame.
    next_seq: u64,
    /// Bytes of the journal written so far (header and frames appended).
    appended: u64,
    /// Frames not appended yet.
    pending: Vec<u8>,
    /// The journal's length (it grows ahead of the frames; the rest is zeros).
    capacity: u64,
    /// Bytes of frames since the last sync frame.
    unsynced: u64,
    /// Whether the writes since the last sync went past [`COMMIT_JOURNAL_BYTES`] and are
    /// no longer journaled (the next sync checkpoints).
    bypassed: bool,
}

impl<M, J> fmt::Debug for Journaled<M, J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journaled").finish_non_exhaustive()
    }
}

impl<M: StorageBackend, J: StorageBackend> Journaled<M, J> {
    /// Opens the pair: replays the journal's synced frames into `main`, syncs `main` and
    /// starts the journal over.
    ///
    /// Returns the error of the first read, write or sync that fails; `main` then holds
    /// what it held before or a part of the replay, and the journal is unchanged, so the
    /// next open replays it again.
    pub fn open(main: M, journal: J) -> io::Result<Self> {
        Self::open_locked(main, journal, None)
    }

    pub(super) fn open_locked(
        main: M,
        journal: J,
        lock: Option<std::fs::File>,
    ) -> io::Result<Self> {
        let epoch = replay(&main, &journal)?;
        if journal.len()? < HEADER_LEN {
            journal.set_len(HEADER_LEN)?;
        }
        let state = JournalState {
            epoch,
            next_seq: 0,
            appended: HEADER_LEN,
            pending: Vec::new(),
            capacity: journal.len()?.max(HEADER_LEN),
            unsynced: 0,
            bypassed: false,
        };
        let backend = Journaled {
            main,
            journal,
            state: Mutex::new(state),
            overlay: RwLock::new(Overlay::default()),
            checkpoint_bytes: CHECKPOINT_BYTES,
            commit_journal_bytes: COMMIT_JOURNAL_BYTES,
            _lock: lock,
        };
        backend.restart(&mut backend.state.lock(), epoch)?;
        Ok(backend)
    }

    /// Checkpoints once the journal holds `bytes` (default `CHECKPOINT_BYTES`); tests use
    /// small sizes to checkpoint often.
    pub fn checkpoint_every(mut self, bytes: u64) -> Self {
        self.checkpoint_bytes = bytes.max(HEADER_LEN + 1);
        self
    }

    /// Stops journaling a commit once it wrote `bytes` (default `COMMIT_JOURNAL_BYTES`).
    pub fn journal_commits_up_to(mut self, bytes: u64) -> Self {
        self.commit_journal_bytes = bytes;
        self
    }

    /// Writes the held writes to `main`, syncs it and starts the journal over under the next
    /// epoch.
    fn checkpoint(&self, state: &mut JournalState) -> io::Result<()> {
        self.overlay.write().write_back(&self.main)?;
        self.main.sync_data()?;
        let epoch = state.epoch.wrapping_add(1);
        self.restart(state, epoch)
    }

    /// Writes a fresh header for `epoch` and syncs it. Only called when `main` holds
    /// everything the journal did. The old frames stay where they are (their epoch ends the
    /// new journal at them) and are overwritten by the new ones: overwriting blocks the
    /// file already has and syncing them is about half the cost of appending new ones.
    fn restart(&self, state: &mut JournalState, epoch: u64) -> io::Result<()> {
        self.journal.write(0, &header(epoch))?;
        self.journal.sync_data()?;
        state.epoch = epoch;
        state.next_seq = 0;
        state.appended = HEADER_LEN;
        state.pending.clear();
        state.unsynced = 0;
        state.bypassed = false;
        Ok(())
    }

    /// Adds a frame to the pending ones, which stay in memory until the next sync appends
    /// them (so writes that no sync follows, under `Durability::Eventual`, cost a copy and
    /// no write to the journal file). Past
    /// [`COMMIT_JOURNAL_BYTES`] since the last sync, drops the pending frames instead and
    /// journals nothing until the next sync, which then checkpoints: the journal's synced
    /// frames stay a prefix of the writes, which is all that replay needs.
    fn log(
        &self,
        state: &mut JournalState,
        kind: u8,
        position: u64,
        data: &[u8],
    ) -> io::Result<()> {
        if state.bypassed {
            return Ok(());
        }
        state.unsynced += (FRAME_HEAD_LEN + data.len()) as u64;
        if state.unsynced > self.commit_journal_bytes {
            state.bypassed = true;
            state.pending.clear();
            return Ok(());
        }
        push_frame(state, kind, position, data);
        let journaled = state.appended + state.pending.len() as u64;
        // Frames leave trailing zeros out, so the held writes can outgrow the journal.
        if journaled.max(self.overlay.read().bytes()) >= self.checkpoint_bytes {
            self.checkpoint(state)?;
        }
        Ok(())
    }

    /// Appends the pending frames to the journal (not synced).
    fn append(&self, state: &mut JournalState) -> io::Result<()> {
        if state.pending.is_empty() {
            return Ok(());
        }
        let end = state.appended + state.pending.len() as u64;
        if end > state.capacity {
            // Grown a piece at a time, not at every append.
            let capacity = end.next_multiple_of(GROW_BYTES);
            self.journal.set_len(capacity)?;
            state.capacity = capacity;
        }
        self.journal.write(state.appended, &state.pending)?;
        state.appended += state.pending.len() as u64;
        state.pending.clear();
        Ok(())
    }
}

impl<M: StorageBackend, J: StorageBackend> StorageBackend for Journaled<M, J> {
    fn len(&self) -> io::Result<u64> {
        self.main.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.overlay.read().read(&self.main, offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        self.overlay.write().truncate(len);
        self.main.set_len(len)?;
        self.log(&mut state, KIND_SET_LEN, len, &[])
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.bypassed {
            return self.checkpoint(&mut state);
        }
        push_frame(&mut state, KIND_SYNC, 0, &[]);
        self.append(&mut state)?;
        self.journal.sync_data()?;
        state.unsynced = 0;
        if state.appended >= self.checkpoint_bytes {
            self.checkpoint(&mut state)?;
        }
        Ok(())
    }

    /// Holds the write in memory (see `overlay::Overlay`) and journals it. Once the commit
    /// is past `COMMIT_JOURNAL_BYTES` it is not journaled, and the held writes go to `main`
    /// (in offset order, adjacent ones in one write) whenever they reach the checkpoint
    /// size: a bulk commit's ~25,000 pages are ~1,000 writes instead of one each.
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        {
            let mut overlay = self.overlay.write();
            overlay.insert(&self.main, offset, data)?;
            if state.bypassed && overlay.bytes() >= self.checkpoint_bytes {
                overlay.write_back(&self.main)?;
            }
        }
        self.log(&mut state, KIND_WRITE, offset, data)
    }

    /// Checkpoints and cuts the journal to its header (so a clean close leaves nothing to
    /// replay and no space taken), then closes both.
    fn close(&self) -> io::Result<()> {
        let checkpointed = self.checkpoint(&mut self.state.lock()).and_then(|()| {
            self.journal.set_len(HEADER_LEN)?;
            self.journal.sync_data()
        });
        let main = self.main.close();
        let journal = self.journal.close();
        checkpointed.and(main).and(journal)
    }

    fn try_lock_range(&self, start: Bound, end: Bound) -> Result<bool, redb::BackendError> {
        self.main.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound, end: Bound) -> Result<bool, redb::BackendError> {
        self.main.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound, end: Bound) -> Result<(), redb::BackendError> {
        self.main.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound, end: Bound) -> Result<(), redb::BackendError> {
        self.main.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound, end: Bound) -> Result<(), redb::BackendError> {
        self.main.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound, end: Bound) -> Result<bool, redb::BackendError> {
        self.main.query_lock_range(start, end)
    }
}

type Bound = std::ops::Bound<u64>;

fn header(epoch: u64) -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&epoch.to_le_bytes());
    let crc = crc32fast::hash(&out[..16]);
    out[16..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The epoch of a journal header, or `None` when it is not one (missing, torn, foreign).
fn parse_header(bytes: &[u8]) -> Option<u64> {
    let valid = bytes.len() == HEADER_LEN as usize
        && (&bytes[..8] == MAGIC || &bytes[..8] == MAGIC_V1)
        && crc32fast::hash(&bytes[..16]).to_le_bytes() == bytes[16..20];
    valid.then(|| u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")))
}

fn push_frame(state: &mut JournalState, kind: u8, position: u64, data: &[u8]) {
    let zeros = trailing_zeros(data).min(MAX_ELIDED_ZEROS);
    let data = &data[..data.len() - zeros];
    let start = state.pending.len();
    let pending = &mut state.pending;
    let zeros = (zeros as u32).to_le_bytes();
    pending.extend_from_slice(&[kind, zeros[0], zeros[1], zeros[2]]);
    pending.extend_from_slice(&(data.len() as u32).to_le_bytes());
    pending.extend_from_slice(&state.epoch.to_le_bytes());
    pending.extend_from_slice(&state.next_seq.to_le_bytes());
    pending.extend_from_slice(&position.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&pending[start..start + 32]);
    crc.update(data);
    pending.extend_from_slice(&crc.finalize().to_le_bytes());
    pending.extend_from_slice(&[0; 4]);
    pending.extend_from_slice(data);
    state.next_seq += 1;
}

/// How many zero bytes `data` ends with.
fn trailing_zeros(data: &[u8]) -> usize {
    let mut end = data.len();
    while end >= 8 && data[end - 8..end] == [0; 8] {
        end -= 8;
    }
    while end > 0 && data[end - 1] == 0 {
        end -= 1;
    }
    data.len() - end
}

/// One frame read back from the journal.
struct Frame {
    kind: u8,
    position: u64,
    /// The bytes written, trailing zeros included.
    data: Vec<u8>,
    /// The bytes the frame takes in the journal.
    journal_len: u64,
}

/// Reads the frame at `at` of epoch `epoch` and number `seq`; `None` at the journal's end
/// (nothing more, a torn frame, or one of an older epoch).
fn read_frame(
    journal: &impl StorageBackend,
    len: u64,
    at: u64,
    epoch: u64,
    seq: u64,
) -> io::Result<Option<Frame>> {
    if at + FRAME_HEAD_LEN as u64 > len {
        return Ok(None);
    }
    let mut head = [0u8; FRAME_HEAD_LEN];
    journal.read(at, &mut head)?;
    let field = |range: std::ops::Range<usize>| {
        u64::from_le_bytes(head[range].try_into().expect("8 bytes"))
    };
    let data_len = u64::from(u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")));
    let known_kind = matches!(head[0], KIND_WRITE | KIND_SET_LEN | KIND_SYNC);
    if !known_kind
        || field(8..16) != epoch
        || field(16..24) != seq
        || at + FRAME_HEAD_LEN as u64 + data_len > len
    {
        return Ok(None);
    }
    let mut data = vec![0u8; data_len as usize];
    journal.read(at + FRAME_HEAD_LEN as u64, &mut data)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[..32]);
    crc.update(&data);
    if crc.finalize().to_le_bytes() != head[32..36] {
        return Ok(None);
    }
    let zeros = u32::from_le_bytes([head[1], head[2], head[3], 0]);
    data.resize(data.len() + zeros as usize, 0);
    Ok(Some(Frame {
        kind: head[0],
        position: field(24..32),
        data,
        journal_len: FRAME_HEAD_LEN as u64 + data_len,
    }))
}

/// Writes the journal's frames up to its last sync frame into `main`, in order, and syncs
/// `main`. Returns the epoch the journal should start over with.
fn replay(main: &impl StorageBackend, journal: &impl StorageBackend) -> io::Result<u64> {
    let len = journal.len()?;
    let mut head = [0u8; HEADER_LEN as usize];
    let epoch = if len >= HEADER_LEN {
        journal.read(0, &mut head)?;
        parse_header(&head)
    } else {
        None
    };
    let Some(epoch) = epoch else {
        // No journal, or a header torn while starting over: `main` was synced before it.
        // Frames of any earlier epoch may still follow, so the new one must differ from
        // all of them: the clock's nanoseconds.
        return Ok(fresh_epoch());
    };
    let synced_end = last_sync_end(journal, len, epoch)?;
    let (mut at, mut seq) = (HEADER_LEN, 0);
    while at < synced_end {
        let frame = read_frame(journal, len, at, epoch, seq)?
            .ok_or_else(|| io::Error::other("journal: a frame changed while it was replayed"))?;
        match frame.kind {
            KIND_WRITE => {
                // A resize after the last sync may have cut `main` short of a synced
                // write; writing past the end extends a file, but not every backend.
                let end = frame.position + frame.data.len() as u64;
                if main.len()? < end {
                    main.set_len(end)?;
                }
                main.write(frame.position, &frame.data)?
            }
            KIND_SET_LEN => main.set_len(frame.position)?,
            _ => {}
        }
        at += frame.journal_len;
        seq += 1;
    }
    if synced_end > HEADER_LEN {
        main.sync_data()?;
    }
    Ok(epoch.wrapping_add(1))
}

/// An epoch no earlier journal of this file used: epochs start from the clock and only grow.
fn fresh_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |since| since.as_nanos() as u64)
}

/// The journal offset just past its last sync frame (the header's end when it has none).
fn last_sync_end(journal: &impl StorageBackend, len: u64, epoch: u64) -> io::Result<u64> {
    let (mut at, mut seq, mut synced_end) = (HEADER_LEN, 0, HEADER_LEN);
    while let Some(frame) = read_frame(journal, len, at, epoch, seq)? {
        at += frame.journal_len;
        seq += 1;
        if frame.kind == KIND_SYNC {
            synced_end = at;
        }
    }
    Ok(synced_end)
}

#[cfg(test)]
mod tests {
    use super::replay_check::{contents, copy};
    use super::*;
    use redb::backends::InMemoryBackend;

    fn pair() -> Journaled<InMemoryBackend, InMemoryBackend> {
        Journaled::open(InMemoryBackend::new(), InMemoryBackend::new()).unwrap()
    }

    #[test]
    fn synced_writes_are_replayed_into_a_main_file_that_lost_them() {
        let backend = pair();
        backend.set_len(8192).unwrap();
        backend.write(0, &[1; 4096]).unwrap();
        backend.write(4096, &[2; 100]).unwrap();
        backend.sync_data().unwrap();
        backend.write(0, &[3; 10]).unwrap(); // not synced
        let stale_main = InMemoryBackend::new(); // the main file lost everything unsynced
        let reopened = Journaled::open(stale_main, copy(&backend.journal)).unwrap();
        let bytes = contents(&reopened);
        assert_eq!(bytes.len(), 8192);
        assert_eq!(&bytes[..4096], &[1; 4096][..]);
        assert_eq!(&bytes[4096..4196], &[2; 100][..]);
        assert!(bytes[4196..].iter().all(|b| *b == 0));
        let state = reopened.state.lock();
        assert_eq!(state.appended, HEADER_LEN, "started over");
        assert_eq!(
            state.epoch,
            backend.state.lock().epoch + 1,
            "under the next epoch"
        );
    }

    #[test]
    fn writes_reach_the_main_file_at_the_checkpoint_and_reads_see_them_before() {
        let backend = pair();
        backend.set_len(8192).unwrap();
        backend.write(0, &[1; 4096]).unwrap();
        backend.sync_data().unwrap();
        backend.write(4096, &[2; 4096]).unwrap();
        assert_eq!(contents(&backend.main), vec![0; 8192], "held, not written");
        let mut expected = vec![1; 4096];
        expected.extend_from_slice(&[2; 4096]);
        assert_eq!(contents(&backend), expected);
        backend.checkpoint(&mut backend.state.lock()).unwrap();
        assert_eq!(contents(&backend.main), expected);
        assert_eq!(backend.overlay.read().bytes(), 0);
    }

    #[test]
    fn trailing_zeros_are_left_out_of_the_journal_and_replayed() {
        let backend = pair();
        backend.set_len(4096).unwrap();
        let mut page = vec![0u8; 4096];
        page[..10].copy_from_slice(&[5; 10]);
        backend.write(0, &page).unwrap();
        backend.sync_data().unwrap();
        let frames = 3 * FRAME_HEAD_LEN as u64 + 10; // resize, write, sync
        assert_eq!(backend.state.lock().appended, HEADER_LEN + frames);
        let stale_main = InMemoryBackend::new();
        stale_main.set_len(4096).unwrap();
        stale_main.write(0, &[9; 4096]).unwrap();
        let reopened = Journaled::open(stale_main, copy(&backend.journal)).unwrap();
        assert_eq!(contents(&reopened), page);
    }

    #[test]
    fn a_journal_of_the_first_format_is_replayed() {
        let backend = pair();
        backend.set_len(64).unwrap();
        backend.write(0, &[3; 64]).unwrap();
        backend.sync_data().unwrap();
        let journal = copy(&backend.journal);
        // The first format differs only in its magic (its frames elided no zeros).
        let mut old_header = header(backend.state.lock().epoch);
        old_header[..8].copy_from_slice(MAGIC_V1);
        let crc = crc32fast::hash(&old_header[..16]);
        old_header[16..].copy_from_slice(&crc.to_le_bytes());
        journal.write(0, &old_header).unwrap();
        let reopened = Journaled::open(InMemoryBackend::new(), journal).unwrap();
        assert_eq!(contents(&reopened), vec![3; 64]);
    }

    #[test]
    fn a_torn_frame_ends_the_journal_and_unsynced_frames_are_not_replayed() {
        let backend = pair();
        backend.set_len(64).unwrap();
        backend.write(0, &[1; 64]).unwrap();
        backend.sync_data().unwrap();
        let synced = backend.state.lock().appended;
        backend.write(0, &[2; 64]).unwrap();
        backend.sync_data().unwrap();
        let journal = copy(&backend.journal);
        // Tear the second sync's frames: flip a byte of the second write's data.
        let mut byte = [0u8];
        journal.read(synced + 45, &mut byte).unwrap();
        journal.write(synced + 45, &[byte[0] ^ 1]).unwrap();
        let reopened = Journaled::open(InMemoryBackend::new(), journal).unwrap();
        assert_eq!(contents(&reopened), vec![1; 64]);

        let unsynced = pair();
        unsynced.set_len(16).unwrap();
        unsynced.sync_data().unwrap();
        unsynced.write(0, &[7; 16]).unwrap();
        unsynced.append(&mut unsynced.state.lock()).unwrap();
        let reopened = Journaled::open(InMemoryBackend::new(), copy(&unsynced.journal)).unwrap();
        assert_eq!(contents(&reopened), vec![0; 16]);
    }

    #[test]
    fn replay_follows_resizes_in_order() {
        let backend = pair();
        backend.set_len(100).unwrap();
        backend.write(0, &[9; 100]).unwrap();
        backend.set_len(10).unwrap();
        backend.set_len(50).unwrap();
        backend.sync_data().unwrap();
        let reopened = Journaled::open(InMemoryBackend::new(), copy(&backend.journal)).unwrap();
        let mut expected = vec![9; 10];
        expected.resize(50, 0);
        assert_eq!(contents(&reopened), expected);
    }

    #[test]
    fn frames_of_an_older_epoch_are_not_replayed_after_a_checkpoint() {
        let backend = pair();
        backend.set_len(32).unwrap();
        backend.write(0, &[1; 32]).unwrap();
        backend.sync_data().unwrap();
        let old_journal =
            contents(&backend.journal)[..backend.state.lock().appended as usize].to_vec();
        backend.checkpoint(&mut backend.state.lock()).unwrap();
        // A journal whose new header landed but whose old frames were not cut off.
        let journal = copy(&backend.journal);
        journal.set_len(old_journal.len() as u64).unwrap();
        journal
            .write(HEADER_LEN, &old_journal[HEADER_LEN as usize..])
            .unwrap();
        let main = InMemoryBackend::new();
        main.set_len(32).unwrap();
        main.write(0, &[5; 32]).unwrap();
        let reopened = Journaled::open(main, journal).unwrap();
        assert_eq!(
            contents(&reopened),
            vec![5; 32],
            "main is what the checkpoint synced"
        );
    }

    #[test]
    fn a_journal_past_the_threshold_checkpoints_and_starts_over() {
        let backend = pair().checkpoint_every(64 << 10);
        let page = vec![4u8; 4096];
        backend.set_len(40 * 4096).unwrap();
        for i in 0..40 {
            backend.write(i * 4096, &page).unwrap();
            backend.sync_data().unwrap();
        }
        let journal_len = backend.state.lock().appended;
        assert!(journal_len < 64 << 10, "journal {journal_len} bytes");
        assert!(
            backend.state.lock().epoch > 2,
            "checkpointed at least twice"
        );
        let reopened = Journaled::open(copy(&backend.main), copy(&backend.journal)).unwrap();
        assert_eq!(contents(&reopened), vec![4; 40 * 4096]);
    }

    #[test]
    fn a_commit_past_the_journal_limit_is_synced_in_the_main_file() {
        let backend = pair().journal_commits_up_to(16 << 10);
        backend.set_len(16 * 4096).unwrap();
        backend.write(0, &[1; 4096]).unwrap();
        backend.sync_data().unwrap();
        let epoch = backend.state.lock().epoch;
        for i in 0..16 {
            backend.write(i * 4096, &[2; 4096]).unwrap();
        }
        assert!(backend.state.lock().bypassed);
        let journal_before_sync = copy(&backend.journal);
        backend.sync_data().unwrap();
        let state = backend.state.lock();
        assert!(!state.bypassed);
        assert_eq!(
            (state.epoch, state.appended),
            (epoch + 1, HEADER_LEN),
            "checkpointed"
        );
        // A crash before that sync: the journal replays the first commit only.
        let main = copy(&backend.main);
        let reopened = Journaled::open(main, journal_before_sync).unwrap();
        assert_eq!(&contents(&reopened)[..4096], &[1; 4096][..]);
    }

    #[test]
    fn a_foreign_or_missing_header_replays_nothing() {
        let journal = InMemoryBackend::new();
        journal.set_len(64).unwrap();
        journal.write(0, b"not a journal header at all").unwrap();
        let main = InMemoryBackend::new();
        main.set_len(4).unwrap();
        main.write(0, &[1, 2, 3, 4]).unwrap();
        let reopened = Journaled::open(main, journal).unwrap();
        assert_eq!(contents(&reopened), vec![1, 2, 3, 4]);
    }
}
