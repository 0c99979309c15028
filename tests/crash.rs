//! Crash safety: a child process writes durably and reports each acknowledged write; the
//! parent kills it with SIGKILL at a random moment, reopens the file and checks that every
//! acknowledged write is there and that every index agrees with the records.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use prismdb::{Database, ObjectType, Principal, RecordInput};
use serde_json::json;
use uuid::Uuid;

const CHILD_ENV: &str = "PRISMDB_CRASH_CHILD";
/// Set to `eventual` to make the child write without fsync and call `sync()` before
/// acknowledging.
const MODE_ENV: &str = "PRISMDB_CRASH_MODE";
const TEAM: Uuid = Uuid::from_u128(0x7eab);

fn member() -> Principal {
    Principal::member(TEAM, Uuid::from_u128(1))
}

/// Child mode (only when the parent sets `PRISMDB_CRASH_CHILD`): creates contacts and
/// patches earlier ones with a growing counter, printing `ACK <id> <counter>` after each
/// commit returns.
#[test]
fn child_process_writes() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let eventual = std::env::var(MODE_ENV).is_ok_and(|m| m == "eventual");
    let options = prismdb::Options {
        durability: if eventual {
            prismdb::Durability::Eventual
        } else {
            prismdb::Durability::Immediate
        },
        ..Default::default()
    };
    let db = Database::open_with(&path, options).expect("child opens the database");
    let me = member();
    let mut out = std::io::stdout().lock();
    let mut ids: Vec<Uuid> = Vec::new();
    for step in 0u64..100_000 {
        let value = json!({"name": format!("n{step}"), "title": format!("{step:012}")});
        let input = RecordInput::from_properties(value).expect("object");
        let id = if step % 3 == 2 && !ids.is_empty() {
            let id = ids[(step as usize * 7) % ids.len()];
            db.patch(&me, ObjectType::Contact, id, &input)
                .expect("patch")
                .id
        } else {
            let id = db
                .create(&me, ObjectType::Contact, &input)
                .expect("create")
                .id;
            ids.push(id);
            id
        };
        if eventual {
            db.sync().expect("sync");
        }
        writeln!(out, "ACK {id} {step}").expect("stdout");
        out.flush().expect("stdout");
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_err() {
        kill_and_check("immediate");
    }
}

#[test]
fn synced_eventual_writes_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_err() {
        kill_and_check("eventual");
    }
}

fn kill_and_check(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.prismdb");
    // Expected state: id → the last acknowledged counter written to it.
    let mut acknowledged: HashMap<Uuid, u64> = HashMap::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let stop_after = 5 + (seed % 150) as usize;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_process_writes",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, &path)
            .env(MODE_ENV, mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < stop_after {
            let Some(Ok(line)) = lines.next() else { break };
            let Some(rest) = line.strip_prefix("ACK ") else {
                continue;
            };
            let (id, step) = rest.split_once(' ').unwrap();
            acknowledged.insert(id.parse().unwrap(), step.parse().unwrap());
            seen += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(seen > 0, "round {round}: the child acknowledged nothing");

        let db = Database::open(&path).unwrap();
        let me = member();
        for (id, step) in &acknowledged {
            let record = db
                .get(&me, ObjectType::Contact, *id)
                .unwrap_or_else(|e| panic!("round {round}: acknowledged {id} lost: {e}"));
            let stored: u64 = record.properties["title"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                stored >= *step,
                "round {round}: {id} went back from {step} to {stored}"
            );
        }
        let report = db.verify_integrity().unwrap();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);
        // Writes the child made but had not acknowledged may be there too; none other.
        assert!(db.count(&me, ObjectType::Contact).unwrap() >= acknowledged.len() as u64);
    }
}

/// A database file is open once: a second open (here in the same process) is refused with
/// an error saying so, and succeeds once the first is closed; a clean close leaves its
/// journal with nothing to replay.
#[test]
fn a_second_open_of_the_same_file_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let first = Database::open(&path).expect("first open");
    let second = Database::open(&path)
        .err()
        .expect("a second open is refused");
    assert!(second.to_string().contains("already open"), "{second}");
    drop(first);
    Database::open(&path).expect("open after the first closed");
    let journal = std::fs::metadata(dir.path().join("db.redb-wal")).expect("the journal");
    assert!(
        journal.len() <= 20,
        "a closed database's journal is its header only"
    );
}
