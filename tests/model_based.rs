//! Model-based test: random sequences of operations (creates, patches, deletes, restores,
//! duplicates, grant changes, bulk updates and deletes, upserts, imports, close and reopen)
//! by the admins and members of two teams, applied to the database and to a plain
//! in-memory model (`tests/model`); after every operation every read of every principal is
//! compared with the model. proptest shrinks a failure to its shortest sequence.

mod model;

use model::{decode, Harness, Model};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_database_behaves_like_the_model(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.prismdb");
        let mut harness = Harness { db: prismdb::Database::open(&path).unwrap(), path: Some(path), model: Model::default() };
        for (step, op) in decode(&bytes).iter().enumerate() {
            harness.apply(op);
            harness.check_reads(step as u8);
        }
        let report = harness.db.verify_integrity().unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.problems);
    }
}
