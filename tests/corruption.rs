//! Corruption: bytes flipped in a closed database file are detected (an error on open or on
//! a read, a problem reported by `verify_integrity()`, or a damaged page found by
//! `verify_storage()`), or they were harmless (every answer is still the original one);
//! never a panic, never a silently wrong answer.

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use common::Rng;
use prismdb::{Database, ListRequest, ObjectType, Principal, QueryRequest, RecordInput};
use serde_json::{json, Value};
use uuid::Uuid;

const TEAM: Uuid = Uuid::from_u128(0xc0de);

fn admin() -> Principal {
    Principal::admin(TEAM, Uuid::from_u128(3))
}

/// Everything a reader could be told: every record of two types, a count and a query.
#[derive(Debug, PartialEq)]
struct Answers {
    records: BTreeMap<Uuid, Value>,
    counts: Vec<u64>,
    query: Vec<Uuid>,
}

fn answers(db: &Database) -> prismdb::Result<Answers> {
    let mut records = BTreeMap::new();
    let mut counts = Vec::new();
    for ty in [ObjectType::Contact, ObjectType::Deal] {
        let mut request = ListRequest::first(1000);
        loop {
            let page = db.list(&admin(), ty, &request)?;
            for row in page.rows {
                let full = db.get(&admin(), ty, row.id)?;
                records.insert(row.id, full.to_json());
            }
            match page.next_cursor {
                Some(cursor) => request.cursor = Some(cursor),
                None => break,
            }
        }
        counts.push(db.count(&admin(), ty)?);
    }
    let request: QueryRequest = serde_json::from_value(json!({
        "filter": {"$and": [{"stage": {"$in": ["won", "lost"]}}, {"amount": {"$gte": 300}}]},
        "sort": [{"property": "amount", "direction": "desc"}],
        "limit": 1000
    }))
    .unwrap();
    let query = db.query(&admin(), ObjectType::Deal, &request)?;
    let query = query.rows.iter().map(|r| r.id).collect();
    Ok(Answers {
        records,
        counts,
        query,
    })
}

fn build(path: &Path) -> Answers {
    let db = Database::open(path).unwrap();
    db.write_batch(&admin(), |b| {
        for i in 0..300 {
            let contact = json!({"name": format!("Person {i}"), "email": format!("p{i}@example.com"), "phone": format!("+1 555 {i:07}")});
            b.create(ObjectType::Contact, &RecordInput::from_properties(contact)?)?;
        }
        for i in 0..100 {
            let stage = ["lead", "won", "lost"][i % 3];
            let deal = json!({"name": format!("Deal {i}"), "amount": i * 10, "stage": stage});
            b.create(ObjectType::Deal, &RecordInput::from_properties(deal)?)?;
        }
        Ok(())
    })
    .unwrap();
    let expected = answers(&db).unwrap();
    drop(db);
    expected
}

/// What one flipped byte led to.
enum Outcome {
    Detected(String),
    Harmless,
}

fn examine(path: &Path, expected: &Answers) -> Outcome {
    let mut db = match Database::open(path) {
        Ok(db) => db,
        Err(e) => return Outcome::Detected(format!("open: {e}")),
    };
    let read = answers(&db);
    if let Err(e) = &read {
        return Outcome::Detected(format!("read: {e}"));
    }
    match db.verify_integrity() {
        Err(e) => return Outcome::Detected(format!("verify_integrity: {e}")),
        Ok(report) if !report.is_ok() => {
            return Outcome::Detected(format!("verify_integrity: {:?}", report.problems.first()))
        }
        Ok(_) => {}
    }
    let right = read.as_ref().is_ok_and(|found| found == expected);
    match db.verify_storage() {
        Err(e) => Outcome::Detected(format!("verify_storage: {e}")),
        Ok(false) if right => Outcome::Detected("verify_storage (answers still right)".into()),
        Ok(false) => Outcome::Detected("verify_storage (answers wrong until checked)".into()),
        Ok(true) if right => Outcome::Harmless,
        Ok(true) => panic!("a silently wrong answer that no check detects"),
    }
}

#[test]
fn flipped_bytes_are_detected_or_harmless_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.prismdb");
    let expected = build(&clean);
    let bytes = std::fs::read(&clean).unwrap();
    let damaged = dir.path().join("damaged.prismdb");
    let mut rng = Rng(0x853c_49e6_748f_ea9b);
    let mut detected_by: BTreeMap<String, usize> = BTreeMap::new();
    let mut harmless = 0;
    for trial in 0..200 {
        let seed = rng.next_u64();
        let mut copy = bytes.clone();
        let at = (seed % copy.len() as u64) as usize;
        copy[at] ^= 1 << (seed >> 61);
        std::fs::write(&damaged, &copy).unwrap();
        match catch_unwind(AssertUnwindSafe(|| examine(&damaged, &expected))) {
            Ok(Outcome::Detected(how)) => {
                let layer = how.split(':').next().unwrap_or("").to_owned();
                *detected_by.entry(layer).or_default() += 1;
            }
            Ok(Outcome::Harmless) => harmless += 1,
            Err(_) => panic!(
                "trial {trial}: flipping byte {at} of {} made prismdb panic",
                copy.len()
            ),
        }
    }
    eprintln!("detected by {detected_by:?}; {harmless} harmless");
    assert!(!detected_by.is_empty(), "no flip was detected");
}
