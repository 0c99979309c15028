//! Operation sequences: any bytes decode into creates, patches, deletes, restores,
//! duplicates, grant changes, bulk calls, upserts and imports by the principals of two teams
//! (`tests/model`), applied to an in-memory database and to the plain model; every outcome
//! and every read must agree, and the indexes must agree with the records at the end.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/model/mod.rs"]
mod model;

fuzz_target!(|data: &[u8]| {
    let db = prismdb::Database::in_memory().expect("in-memory database");
    let mut harness = model::Harness {
        db,
        path: None,
        model: model::Model::default(),
    };
    // Every operation's outcome is compared as it is applied; every read once at the end
    // (reads after each step are the proptest's job: they cost most of a run).
    let ops = model::decode(data);
    for op in ops.iter().take(40) {
        harness.apply(op);
    }
    harness.check_reads(ops.len() as u8);
    let report = harness.db.verify_integrity().expect("verify runs");
    assert!(report.is_ok(), "{:?}", report.problems);
});
