//! A driver for the journal's fuzz target and proptest: arbitrary bytes become writes,
//! resizes, syncs and crashes of a [`Journaled`] pair over in-memory files, checked against
//! a plain image of the file.

use std::io;

use redb::backends::InMemoryBackend;
use redb::StorageBackend;

use super::Journaled;

/// The file never grows past this, so that any input stays small.
const MAX_LEN: usize = 1 << 14;

type Pair = Journaled<InMemoryBackend, InMemoryBackend>;

/// What the pair must hold: the image of every write so far, and what a crash may lose.
struct Model {
    image: Vec<u8>,
    /// The image at the last sync.
    synced: Vec<u8>,
    /// Bytes written since the last sync (a crash may keep or lose each).
    dirty: Vec<bool>,
    /// Whether the length changed since the last sync.
    resized: bool,
}

impl Model {
    fn new(image: Vec<u8>) -> Self {
        let dirty = vec![false; image.len()];
        Model {
            synced: image.clone(),
            image,
            dirty,
            resized: false,
        }
    }

    fn write(&mut self, offset: usize, data: &[u8]) {
        self.image[offset..offset + data.len()].copy_from_slice(data);
        self.dirty[offset..offset + data.len()].fill(true);
    }

    fn set_len(&mut self, len: usize) {
        self.image.resize(len, 0);
        self.dirty.resize(len, true);
        self.resized = true;
    }

    fn sync(&mut self) {
        self.synced = self.image.clone();
        self.dirty = vec![false; self.image.len()];
        self.resized = false;
    }

    /// Panics unless `reopened` is what a crash after the last sync may leave: the synced
    /// bytes wherever nothing was written since, and the synced length unless a resize came
    /// after it.
    fn check_recovered(&self, reopened: &[u8]) {
        if !self.resized {
            assert_eq!(reopened.len(), self.synced.len(), "length after replay");
        }
        let bytes = reopened.iter().zip(&self.synced).zip(&self.dirty);
        for (at, ((got, synced), dirty)) in bytes.enumerate() {
            if !dirty {
                assert_eq!(got, synced, "byte {at} after replay");
            }
        }
    }
}

/// Reads arbitrary bytes as operations on a journaled pair and checks every read and every
/// replay against the model. Panics on a disagreement; returns nothing otherwise.
pub(crate) fn run(input: &[u8]) {
    let mut bytes = input.iter().copied();
    let mut next = move || bytes.next();
    let (Some(every), Some(limit)) = (next(), next()) else {
        return;
    };
    let checkpoint_every = 256 + u64::from(every) * 64;
    let commit_limit = if limit < 128 {
        u64::MAX
    } else {
        u64::from(limit) * 32
    };
    let open = |main, journal| -> io::Result<Pair> {
        Ok(Journaled::open(main, journal)?
            .checkpoint_every(checkpoint_every)
            .journal_commits_up_to(commit_limit))
    };
    let mut pair = open(InMemoryBackend::new(), InMemoryBackend::new()).expect("opens");
    let mut model = Model::new(Vec::new());
    while let Some(op) = next() {
        match op % 8 {
            0..=3 => {
                let (Some(at), Some(len), Some(fill), Some(zeros)) =
                    (next(), next(), next(), next())
                else {
                    return;
                };
                let offset = usize::from(at) * 64;
                let len = 1 + usize::from(len) * 2;
                let zeros = usize::from(zeros) % len;
                let mut data = vec![fill | 1; len];
                data[len - zeros..].fill(0);
                if offset + len > model.image.len() {
                    pair.set_len((offset + len) as u64).expect("grows");
                    model.set_len(offset + len);
                }
                pair.write(offset as u64, &data).expect("writes");
                model.write(offset, &data);
            }
            4 => {
                let Some(len) = next() else { return };
                let len = (usize::from(len) * 64).min(MAX_LEN);
                pair.set_len(len as u64).expect("resizes");
                model.set_len(len);
            }
            5 | 6 => {
                pair.sync_data().expect("syncs");
                model.sync();
            }
            _ => {
                let damage = next().zip(next());
                let (main, journal) = (copy(&pair.main), copy(&pair.journal));
                if let Some((at, flip)) = damage.filter(|(_, flip)| *flip != 0) {
                    // A damaged journal may lose synced commits; it must not panic.
                    damage_byte(&journal, usize::from(at) * 7, flip);
                    let _ = open(main, journal).map(|reopened| contents(&reopened));
                    continue;
                }
                pair = open(main, journal).expect("reopens");
                let image = contents(&pair);
                model.check_recovered(&image);
                model = Model::new(image);
            }
        }
        assert_eq!(contents(&pair), model.image, "read through the journal");
    }
}

/// A backend's bytes.
pub(super) fn contents(backend: &impl StorageBackend) -> Vec<u8> {
    let mut out = vec![0u8; backend.len().expect("len") as usize];
    backend.read(0, &mut out).expect("reads");
    out
}

/// A backend's bytes in a new in-memory backend.
pub(super) fn copy(backend: &impl StorageBackend) -> InMemoryBackend {
    let bytes = contents(backend);
    let out = InMemoryBackend::new();
    out.set_len(bytes.len() as u64).expect("sized");
    out.write(0, &bytes).expect("copied");
    out
}

fn damage_byte(backend: &InMemoryBackend, at: usize, flip: u8) {
    let len = backend.len().expect("len") as usize;
    if len == 0 {
        return;
    }
    let at = (at % len) as u64;
    let mut byte = [0u8];
    backend.read(at, &mut byte).expect("reads");
    backend.write(at, &[byte[0] ^ flip]).expect("writes");
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Random operation streams: reads always give the image, and a crash at any point
        /// replays to what the last sync held (see `run`).
        #[test]
        fn journal_reads_and_replays_agree_with_the_image(input in proptest::collection::vec(any::<u8>(), 0..400)) {
            super::run(&input);
        }
    }
}
