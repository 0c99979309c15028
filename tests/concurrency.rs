//! Readers beside a writer: three reader threads query, count and page while a writer runs
//! random creates, patches, deletes, restores and bulk updates for a bounded time. Readers
//! never error and never see a torn state: within one snapshot, every count, every page
//! walk and every filtered query agree with each other and with a brute-force filter over
//! the records the snapshot lists; counts of a type that is only ever added to never go
//! down; a walk of pages in id order outside any snapshot never repeats or reorders a
//! record.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Rng;
use prismdb::{
    BulkUpdateItem, Database, ListRequest, ObjectType, Principal, PropertySpec, QueryRequest,
    RecordInput, Snapshot,
};
use serde_json::json;
use uuid::Uuid;

const TEAM: Uuid = Uuid::from_u128(0xc0c0);
const C: ObjectType = ObjectType::Contact;
const STATUSES: [&str; 3] = ["lead", "active", "churned"];

fn me() -> Principal {
    Principal::admin(TEAM, Uuid::from_u128(4))
}

fn contact(rng: &mut Rng, tag: u64) -> RecordInput {
    let status = STATUSES[rng.below(3)];
    let props = json!({"name": format!("c{tag}"), "status": status, "score": rng.below(100)});
    RecordInput::from_properties(props).unwrap()
}

/// A contact as a page shows it: status and score.
type Seen = (Option<String>, Option<i64>);

/// Every live contact of the snapshot, by walking its pages.
fn walk(snapshot: &Snapshot<'_>) -> BTreeMap<Uuid, Seen> {
    let mut out = BTreeMap::new();
    let mut request = ListRequest::first(97);
    loop {
        let page = snapshot.list(&me(), C, &request).expect("list");
        for row in &page.rows {
            let status = row
                .properties
                .get("status")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            let score = row.properties.get("score").and_then(|v| v.as_i64());
            assert!(
                out.insert(row.id, (status, score)).is_none(),
                "a page walk repeated {}",
                row.id
            );
        }
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => return out,
        }
    }
}

fn query_ids(snapshot: &Snapshot<'_>, filter: serde_json::Value) -> (Vec<Uuid>, u64) {
    let mut ids = Vec::new();
    let mut request: QueryRequest =
        serde_json::from_value(json!({"filter": filter, "limit": 1000, "include_total": true}))
            .unwrap();
    let mut total = None;
    loop {
        let page = snapshot.query(&me(), C, &request).expect("query");
        total.get_or_insert(page.total.expect("total"));
        ids.extend(page.rows.iter().map(|r| r.id));
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => return (ids, total.unwrap()),
        }
    }
}

/// One consistent look at the database; returns the organization count it saw.
fn read_once(db: &Database, rng: &mut Rng) -> u64 {
    let snapshot = db.snapshot().expect("snapshot");
    let records = walk(&snapshot);
    assert_eq!(
        snapshot.count(&me(), C).expect("count"),
        records.len() as u64,
        "count vs walk"
    );
    let status = STATUSES[rng.below(3)];
    let (ids, total) = query_ids(&snapshot, json!({"status": status}));
    let expected: Vec<Uuid> = records
        .iter()
        .filter(|(_, (s, _))| s.as_deref() == Some(status))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(ids, expected, "status = {status}: bitmap vs records");
    assert_eq!(total, expected.len() as u64);
    // A range reads spans of bucket and index bitmaps, cached and brought up to date
    // across the writer's commits by every reader.
    let least = rng.below(100) as i64;
    let (ids, total) = query_ids(&snapshot, json!({"score": {"$gte": least}}));
    let scored: Vec<Uuid> = records
        .iter()
        .filter(|(_, (_, score))| score.is_some_and(|s| s >= least))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(ids, scored, "score >= {least}: bitmap vs records");
    assert_eq!(total, scored.len() as u64);
    let (ids, _) = query_ids(&snapshot, json!({"$not": {"status": status}}));
    assert_eq!(
        ids.len() + expected.len(),
        records.len(),
        "NOT is relative to the live set"
    );
    if let Some((&id, _)) = records.iter().nth(rng.below(records.len())) {
        let record = snapshot.get(&me(), C, id).expect("a listed record reads");
        assert_eq!(
            record.properties.get("status").and_then(|v| v.as_str()),
            records[&id].0.as_deref()
        );
    }
    snapshot
        .count(&me(), ObjectType::Organization)
        .expect("count")
}

/// Pages in id order outside any snapshot: each page a new state.
fn walk_live(db: &Database) {
    let mut request = ListRequest::first(53);
    let mut last: Option<Uuid> = None;
    loop {
        let page = db.list(&me(), C, &request).expect("list");
        for row in &page.rows {
            assert!(
                last < Some(row.id),
                "pages went back: {last:?} then {}",
                row.id
            );
            last = Some(row.id);
        }
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => return,
        }
    }
}

fn write_for(db: &Database, until: Instant, done: &AtomicBool, writes: &AtomicU64) {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut live: Vec<Uuid> = Vec::new();
    let mut deleted: Vec<Uuid> = Vec::new();
    let mut tag = 0u64;
    while Instant::now() < until {
        tag += 1;
        match rng.below(10) {
            0..=2 => live.push(
                db.create(&me(), C, &contact(&mut rng, tag))
                    .expect("create")
                    .id,
            ),
            3..=4 if !live.is_empty() => {
                let id = live[rng.below(live.len())];
                db.patch(&me(), C, id, &contact(&mut rng, tag))
                    .expect("patch");
            }
            5 if !live.is_empty() => {
                let id = live.swap_remove(rng.below(live.len()));
                db.delete(&me(), C, id).expect("delete");
                deleted.push(id);
            }
            6 if !deleted.is_empty() => {
                let id = deleted.swap_remove(rng.below(deleted.len()));
                db.restore(&me(), C, id).expect("restore");
                live.push(id);
            }
            7 if live.len() > 5 => {
                let items: Vec<BulkUpdateItem> = (0..5)
                    .map(|_| BulkUpdateItem {
                        id: live[rng.below(live.len())].to_string(),
                        input: contact(&mut rng, tag),
                    })
                    .collect();
                db.bulk_update(&me(), C, &items).expect("bulk update");
            }
            _ => {
                let org = RecordInput::from_properties(json!({"name": format!("o{tag}")})).unwrap();
                db.create(&me(), ObjectType::Organization, &org)
                    .expect("organization");
            }
        }
        writes.fetch_add(1, Ordering::Relaxed);
    }
    done.store(true, Ordering::SeqCst);
}

#[test]
fn readers_never_see_a_torn_state_while_a_writer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("c.prismdb")).unwrap();
    let status = PropertySpec {
        slug: "status".into(),
        kind: "select".into(),
        options: Some(
            STATUSES
                .iter()
                .map(|s| prismdb::OptionSpec {
                    slug: (*s).into(),
                    label: None,
                })
                .collect(),
        ),
        ..PropertySpec::default()
    };
    db.add_property(&me(), C, &status).unwrap();
    let score = PropertySpec {
        slug: "score".into(),
        kind: "number".into(),
        ..PropertySpec::default()
    };
    db.add_property(&me(), C, &score).unwrap();
    let mut rng = Rng(7);
    db.write_batch(&me(), |b| {
        (0..400).try_for_each(|i| b.create(C, &contact(&mut rng, 1_000_000 + i)).map(|_| ()))
    })
    .unwrap();

    let until = Instant::now() + Duration::from_millis(2_500);
    let done = AtomicBool::new(false);
    let writes = AtomicU64::new(0);
    let reads = AtomicU64::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| write_for(&db, until, &done, &writes));
        for reader in 0..3u64 {
            let (db, done, reads) = (&db, &done, &reads);
            scope.spawn(move || {
                let mut rng = Rng(99 + reader);
                let mut organizations = 0;
                while !done.load(Ordering::SeqCst) {
                    let seen = read_once(db, &mut rng);
                    assert!(
                        seen >= organizations,
                        "organizations went from {organizations} to {seen}"
                    );
                    organizations = seen;
                    walk_live(db);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let (writes, reads) = (writes.into_inner(), reads.into_inner());
    eprintln!("{writes} writes, {reads} consistent reads");
    assert!(
        writes > 20 && reads > 3,
        "{writes} writes, {reads} reads: too little overlap"
    );
    let report = db.verify_integrity().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// The properties named `extra…` in a catalog.
fn extras(catalog: &prismdb::Catalog) -> usize {
    catalog
        .properties()
        .iter()
        .filter(|p| p.slug.starts_with("extra"))
        .count()
}

#[test]
fn a_snapshot_reads_the_catalog_of_its_own_state_while_properties_are_added() {
    const ADDED: u64 = 40;
    let db = Database::in_memory().unwrap();
    // The team exists before the readers start.
    db.create(
        &me(),
        C,
        &RecordInput::from_properties(json!({"name": "x"})).unwrap(),
    )
    .unwrap();
    let added = AtomicU64::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..ADDED {
                let spec = PropertySpec {
                    slug: format!("extra{i}"),
                    kind: "text".into(),
                    ..PropertySpec::default()
                };
                db.add_property(&me(), C, &spec).unwrap();
                added.fetch_add(1, Ordering::SeqCst);
            }
        });
        for _ in 0..2 {
            scope.spawn(|| {
                let mut last_seen = 0;
                while added.load(Ordering::SeqCst) < ADDED {
                    let before = added.load(Ordering::SeqCst) as usize;
                    let snapshot = db.snapshot().unwrap();
                    let after = added.load(Ordering::SeqCst) as usize;
                    // Later commits fill the shared cache before this snapshot asks.
                    std::thread::yield_now();
                    let seen = extras(&snapshot.schema(&me(), C).unwrap());
                    assert!(
                        (before..=after + 1).contains(&seen),
                        "a snapshot begun with {before}–{after} properties added sees {seen}"
                    );
                    assert!(seen >= last_seen, "{seen} after {last_seen}");
                    last_seen = seen;
                    // A fresh read right after sees at least as much.
                    assert!(extras(&db.schema(&me(), C).unwrap()) >= seen);
                }
            });
        }
    });
    assert_eq!(extras(&db.schema(&me(), C).unwrap()), ADDED as usize);
}
