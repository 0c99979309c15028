//! Criterion micro-benchmarks of single operations on a database of 10,000 contacts:
//! get, find by unique value, durable create, patch and one list page.

use criterion::{criterion_group, criterion_main, Criterion};
use prismdb::{Database, Durability, ListRequest, ObjectType, Principal, RecordInput};
use serde_json::json;
use uuid::Uuid;

const C: ObjectType = ObjectType::Contact;
const RECORDS: usize = 10_000;

fn input(i: usize) -> RecordInput {
    RecordInput::from_properties(json!({
        "name": format!("Person {i}"),
        "email": format!("person{i}@example.com"),
        "phone": format!("+1 555 {i:07}"),
        "title": "Engineer",
    }))
    .expect("an object")
}

fn loaded() -> (tempfile::TempDir, Database, Principal, Vec<Uuid>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::open(dir.path().join("ops.prismdb")).expect("open");
    let me = Principal::member(Uuid::new_v4(), Uuid::new_v4());
    let ids = db
        .write_batch(&me, |batch| {
            (0..RECORDS)
                .map(|i| Ok(batch.create(C, &input(i))?.id))
                .collect::<prismdb::Result<Vec<_>>>()
        })
        .expect("load");
    (dir, db, me, ids)
}

fn operations(c: &mut Criterion) {
    let (_dir, db, me, ids) = loaded();
    let mut k = 0usize;
    let mut next = move || {
        k = (k + 7919) % RECORDS;
        k
    };
    c.bench_function("get", |b| {
        b.iter(|| db.get(&me, C, ids[next()]).expect("get"))
    });
    c.bench_function("find by unique email", |b| {
        b.iter(|| {
            db.find(&me, C, "email", &format!("person{}@example.com", next()))
                .expect("find")
        })
    });
    c.bench_function("patch (eventual)", |b| {
        let change = RecordInput::from_properties(json!({"title": "Manager"})).expect("object");
        b.iter(|| {
            db.write_batch_with(&me, Durability::Eventual, |t| {
                t.patch(C, ids[next()], &change)
            })
            .expect("patch")
        })
    });
    c.bench_function("list page of 50", |b| {
        b.iter(|| db.list(&me, C, &ListRequest::first(50)).expect("list"))
    });
    let mut made = RECORDS;
    c.bench_function("create (durable)", |b| {
        b.iter(|| {
            made += 1;
            db.create(&me, C, &input(made)).expect("create")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = operations
}
criterion_main!(benches);
