//! Storage faults, injected under the database through a storage backend of our own: an
//! in-memory disk that fails `write`, `set_len` or `sync_data` after a countdown (tearing the
//! failed write in half), and that keeps a "durable" image which only moves on
//! `sync_data`, so a power cut can be simulated by reopening that image.
//!
//! After a fault the database refuses every later write until it is reopened; reopened
//! from what was written (a process crash) or from what was synced (a power cut), it holds
//! exactly the acknowledged writes (plus, at most, the one write whose commit failed, whole
//! or not at all), and `verify_integrity()` is clean.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

mod common;

use common::Rng;
use prismdb::{
    Database, Durability, Error, Journaled, ListRequest, ObjectType, Options, Principal,
    RecordInput, StorageBackend,
};
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, Default)]
struct Disk {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// The writes (offset, bytes) and resizes (length, no bytes) since the last sync.
    unsynced: Vec<(u64, Option<Vec<u8>>)>,
    /// Writes, resizes and syncs left before the disk fails (`None`: never).
    countdown: Option<u64>,
    failed: bool,
}

/// The faulty disk; clones share it.
#[derive(Clone, Debug, Default)]
struct Faulty(Arc<Mutex<Disk>>);

impl Faulty {
    fn over(image: Vec<u8>) -> Faulty {
        let disk = Disk {
            durable: image.clone(),
            live: image,
            ..Disk::default()
        };
        Faulty(Arc::new(Mutex::new(disk)))
    }

    /// Fails the `countdown`-th next write, resize or sync, and everything after it.
    fn arm(&self, countdown: u64) {
        self.0.lock().unwrap().countdown = Some(countdown);
    }

    fn live(&self) -> Vec<u8> {
        self.0.lock().unwrap().live.clone()
    }

    fn durable(&self) -> Vec<u8> {
        self.0.lock().unwrap().durable.clone()
    }

    /// What a power cut may leave: the synced image with some of the later writes and
    /// resizes (each kept or lost by `rng`, in order), as a kernel's writeback may.
    fn power_cut(&self, rng: &mut Rng) -> Vec<u8> {
        let disk = self.0.lock().unwrap();
        let mut image = disk.durable.clone();
        for (at, change) in &disk.unsynced {
            if rng.below(2) == 0 {
                continue;
            }
            match change {
                Some(bytes) => put(&mut image, *at, bytes),
                None => image.resize(*at as usize, 0),
            }
        }
        image
    }
}

/// Counts one mutating call down; `Err` once the disk has failed.
fn tick(disk: &mut Disk) -> io::Result<()> {
    match disk.countdown {
        _ if disk.failed => Err(io::Error::other("injected: the disk failed earlier")),
        Some(0) => {
            disk.failed = true;
            Err(io::Error::other("injected I/O error"))
        }
        Some(n) => {
            disk.countdown = Some(n - 1);
            Ok(())
        }
        None => Ok(()),
    }
}

fn put(live: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    if live.len() < start + data.len() {
        live.resize(start + data.len(), 0);
    }
    live[start..start + data.len()].copy_from_slice(data);
}

impl StorageBackend for Faulty {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.lock().unwrap().live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let disk = self.0.lock().unwrap();
        let start = offset as usize;
        let bytes = disk
            .live
            .get(start..start + out.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut disk = self.0.lock().unwrap();
        tick(&mut disk)?;
        disk.live.resize(len as usize, 0);
        disk.unsynced.push((len, None));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut disk = self.0.lock().unwrap();
        tick(&mut disk)?;
        disk.durable = disk.live.clone();
        disk.unsynced.clear();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut disk = self.0.lock().unwrap();
        if let Err(e) = tick(&mut disk) {
            // A torn write: the first half reached the disk.
            let half = &data[..data.len() / 2];
            put(&mut disk.live, offset, half);
            disk.unsynced.push((offset, Some(half.to_vec())));
            return Err(e);
        }
        put(&mut disk.live, offset, data);
        disk.unsynced.push((offset, Some(data.to_vec())));
        Ok(())
    }
}

const TEAM: Uuid = Uuid::from_u128(0xfa17);

fn me() -> Principal {
    Principal::member(TEAM, Uuid::from_u128(1))
}

/// The records a database holds: id → name.
type Names = BTreeMap<Uuid, String>;

#[derive(Clone, Debug)]
enum Op {
    Create(String),
    Patch(Uuid, String),
    Delete(Uuid),
}

/// The `step`-th operation of a run: mostly creates, some patches and deletes.
fn op(step: u64, model: &Names) -> Op {
    let ids: Vec<Uuid> = model.keys().copied().collect();
    match step % 4 {
        _ if ids.is_empty() => Op::Create(format!("n{step}")),
        2 => Op::Patch(ids[(step as usize * 7) % ids.len()], format!("p{step}")),
        3 if step % 8 == 3 => Op::Delete(ids[(step as usize * 5) % ids.len()]),
        _ => Op::Create(format!("n{step}")),
    }
}

fn apply(db: &Database, op: &Op) -> prismdb::Result<Option<Uuid>> {
    let c = ObjectType::Contact;
    let input = |name: &str| {
        RecordInput::from_properties(json!({"name": name, "email": format!("{name}@example.com")}))
    };
    match op {
        Op::Create(name) => Ok(Some(db.create(&me(), c, &input(name)?)?.id)),
        Op::Patch(id, name) => db.patch(&me(), c, *id, &input(name)?).map(|_| None),
        Op::Delete(id) => db.delete(&me(), c, *id).map(|_| None),
    }
}

fn model_after(model: &Names, op: &Op, created: Option<Uuid>) -> Names {
    let mut next = model.clone();
    match op {
        Op::Create(name) => {
            next.insert(created.expect("a create's id"), name.clone());
        }
        Op::Patch(id, name) => {
            next.insert(*id, name.clone());
        }
        Op::Delete(id) => {
            next.remove(id);
        }
    }
    next
}

fn names(db: &Database) -> Names {
    let mut names = Names::new();
    let mut request = ListRequest::first(1000);
    loop {
        let page = db.list(&me(), ObjectType::Contact, &request).expect("list");
        for row in &page.rows {
            names.insert(row.id, row.properties["name"].as_str().unwrap().to_owned());
        }
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => return names,
        }
    }
}

/// Whether `found` is the acknowledged state, or that state plus the failed operation
/// applied whole.
fn acceptable(found: &Names, acked: &Names, failed: Option<&Op>) -> bool {
    if found == acked {
        return true;
    }
    match failed {
        Some(Op::Create(name)) => {
            let extra: Vec<&Uuid> = found.keys().filter(|id| !acked.contains_key(id)).collect();
            extra.len() == 1
                && found[extra[0]] == *name
                && &model_after(acked, &Op::Create(name.clone()), Some(*extra[0])) == found
        }
        Some(other) => &model_after(acked, other, None) == found,
        None => false,
    }
}

/// How a test stores its database: on one faulty disk, or through prismdb's journal on two
/// (the main file and the journal, as `Database::open` does with files).
#[derive(Clone, Debug)]
struct Disks {
    main: Faulty,
    journal: Option<Faulty>,
    /// Past this many bytes a commit is synced in the main file instead of the journal.
    commit_journal_bytes: u64,
}

/// The journal checkpoints after this many bytes, so that runs of a few dozen writes
/// checkpoint several times.
const CHECKPOINT_BYTES: u64 = 256 << 10;

/// A limit on journaled commits that makes most of a run's commits bypass the journal (a
/// create writes about 20 to 40 KiB).
const SMALL_COMMIT_JOURNAL_BYTES: u64 = 20 << 10;

impl Disks {
    fn plain() -> Disks {
        Disks {
            main: Faulty::default(),
            journal: None,
            commit_journal_bytes: 0,
        }
    }

    fn journaled(commit_journal_bytes: u64) -> Disks {
        Disks {
            main: Faulty::default(),
            journal: Some(Faulty::default()),
            commit_journal_bytes,
        }
    }

    /// Disks like these holding these images (the journal's only when there is one).
    fn over(&self, main: Vec<u8>, journal: Option<Vec<u8>>) -> Disks {
        Disks {
            main: Faulty::over(main),
            journal: journal.map(Faulty::over),
            commit_journal_bytes: self.commit_journal_bytes,
        }
    }

    fn open(&self, options: Options) -> prismdb::Result<Database> {
        match &self.journal {
            None => Database::open_backend(self.main.clone(), options),
            Some(journal) => {
                let backend = Journaled::open(self.main.clone(), journal.clone())
                    .map_err(|e| Error::Internal(format!("journal: {e}")))?
                    .checkpoint_every(CHECKPOINT_BYTES)
                    .journal_commits_up_to(self.commit_journal_bytes);
                Database::open_backend(backend, options)
            }
        }
    }

    /// Fails the `countdown`-th next mutating call: of the main disk for even countdowns,
    /// of the journal's for odd ones when there is a journal.
    fn arm(&self, countdown: u64) {
        match &self.journal {
            Some(journal) if countdown % 2 == 1 => journal.arm(countdown / 2),
            Some(_) => self.main.arm(countdown / 2),
            None => self.main.arm(countdown),
        }
    }

    /// What a process crash leaves: everything written.
    fn crashed(&self) -> Disks {
        self.over(self.main.live(), self.journal.as_ref().map(Faulty::live))
    }

    /// What a power cut leaves: what was synced, plus some of what was not (`rng` picks).
    fn power_cut(&self, rng: &mut Rng) -> Disks {
        let journal = self.journal.as_ref().map(|j| j.power_cut(rng));
        self.over(self.main.power_cut(rng), journal)
    }

    /// What a power cut leaves when none of the unsynced writes reached the disk.
    fn power_cut_clean(&self) -> Disks {
        self.over(
            self.main.durable(),
            self.journal.as_ref().map(Faulty::durable),
        )
    }
}

fn reopen_and_check(disks: Disks, acked: &Names, failed: Option<&Op>, what: &str) {
    let db = disks
        .open(Options::default())
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let report = db.verify_integrity().expect("verify");
    assert!(report.is_ok(), "{what}: {:?}", report.problems);
    let found = names(&db);
    assert!(
        acceptable(&found, acked, failed),
        "{what}: found {found:?}\nacknowledged {acked:?}\nfailed op {failed:?}"
    );
}

/// Seeds `disks` with a few records, then fails them `countdown` calls into a run of
/// writes; returns whether the fault struck before the run ended.
fn run_with_fault(disks: Disks, countdown: u64, seed: u64) -> bool {
    let db = disks.open(Options::default()).expect("open");
    let mut acked = Names::new();
    for step in 0..5 {
        let op = op(step, &acked);
        let id = apply(&db, &op).expect("seed");
        acked = model_after(&acked, &op, id);
    }
    disks.arm(countdown);
    let mut failed = None;
    for step in 5..40 {
        let op = op(step, &acked);
        match apply(&db, &op) {
            Ok(id) => acked = model_after(&acked, &op, id),
            Err(error) => {
                assert!(matches!(error, Error::Internal(_)), "{error:?}");
                failed = Some(op);
                break;
            }
        }
    }
    if failed.is_some() {
        let refused = apply(&db, &Op::Create("after".into())).expect_err("writes after a fault");
        assert!(refused.to_string().contains("reopen"), "{refused}");
    }
    drop(db);
    let what = format!("countdown {countdown}");
    let failed = failed.as_ref();
    reopen_and_check(
        disks.crashed(),
        &acked,
        failed,
        &format!("{what}, process crash"),
    );
    reopen_and_check(
        disks.power_cut_clean(),
        &acked,
        failed,
        &format!("{what}, power cut"),
    );
    let mut rng = Rng(seed * 0x9E37_79B9 + 1);
    for cut in 0..3 {
        let what = format!("{what}, power cut {cut} with some unsynced writes kept");
        reopen_and_check(disks.power_cut(&mut rng), &acked, failed, &what);
    }
    failed.is_some()
}

#[test]
fn a_failed_write_refuses_later_writes_and_reopens_to_the_acknowledged_state() {
    let struck = (0..150)
        .filter(|&countdown| run_with_fault(Disks::plain(), countdown, countdown))
        .count();
    assert!(struck >= 100, "the fault struck in {struck} of 150 runs");
}

/// The same through the journal (`Database::open`'s layout), with faults on either file
/// (countdown parity), checkpoints every few writes, and commits synced through the journal
/// or, past a small limit, in the main file (every other pair of countdowns).
#[test]
fn a_journaled_database_reopens_to_the_acknowledged_state_after_any_fault() {
    // `PRISMDB_FAULT_RUNS=2000` for a long run: the countdowns come round again (a run
    // has about 200 calls to fail), with other power cuts each time.
    let runs = std::env::var("PRISMDB_FAULT_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(200u64);
    let struck = (0..runs)
        .filter(|&run| {
            let countdown = run % 200;
            let limit = match countdown / 2 % 2 {
                0 => u64::MAX,
                _ => SMALL_COMMIT_JOURNAL_BYTES,
            };
            run_with_fault(Disks::journaled(limit), countdown, run)
        })
        .count();
    assert!(
        struck as u64 >= runs / 2,
        "the fault struck in {struck} of {runs} runs"
    );
}

#[test]
fn a_power_cut_keeps_what_was_synced_under_eventual_durability() {
    let disks = Disks::journaled(u64::MAX);
    let options = Options {
        durability: Durability::Eventual,
        ..Options::default()
    };
    let db = disks.open(options).expect("open");
    let mut acked = Names::new();
    let mut synced = Names::new();
    for step in 0..60 {
        let op = op(step, &acked);
        let id = apply(&db, &op).expect("write");
        acked = model_after(&acked, &op, id);
        if step % 10 == 9 {
            db.sync().expect("sync");
            synced = acked.clone();
        }
        if step % 7 == 0 {
            reopen_and_check(
                disks.power_cut_clean(),
                &synced,
                None,
                &format!("power cut at step {step}"),
            );
        }
    }
    drop(db);
    reopen_and_check(disks.crashed(), &acked, None, "process exit");
}
