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
    for (step, op) in model::decode(data).iter().take(40).enumerate() {
        harness.apply(op);
        if step % 8 == 7 {
            harness.check_reads(step as u8);
        }
    }
    harness.check_reads(0);
    let report = harness.db.verify_integrity().expect("verify runs");
    assert!(report.is_ok(), "{:?}", report.problems);
});
