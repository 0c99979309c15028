//! Any request body given to create, patch or upsert, or as a grant, is applied whole or
//! refused with an error; it never panics and never leaves the database inconsistent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prismdb::{Database, Grant, ObjectType, Principal, RecordInput};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let db = Database::in_memory().expect("in-memory database");
    let me = Principal::member(uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
    if let Ok(grant) = Grant::from_json(me.team, &body) {
        let deal = db
            .create(&me, ObjectType::Deal, &RecordInput::default())
            .expect("an empty deal");
        if db
            .update_grant(&me, ObjectType::Deal, deal.id, &grant)
            .is_ok()
        {
            // Read back as an admin: the new grant may leave `me` without access.
            let admin = Principal::admin(me.team, me.user);
            let stored = db
                .grant(&admin, ObjectType::Deal, deal.id)
                .expect("grant reads");
            assert_eq!(stored, grant);
            assert_eq!(
                Grant::from_json(me.team, &grant.to_json(me.team)).ok(),
                Some(grant)
            );
        }
    }
    let Ok(input) = RecordInput::from_json(body) else {
        let report = db.verify_integrity().expect("verify runs");
        assert!(report.is_ok(), "{:?}", report.problems);
        return;
    };
    for ty in [ObjectType::Contact, ObjectType::Deal, ObjectType::Action] {
        if let Ok(record) = db.create(&me, ty, &input) {
            let _ = db.patch(&me, ty, record.id, &input);
            let _ = db.upsert(&me, ty, "name", "x", &input);
        }
    }
    let report = db.verify_integrity().expect("verify runs");
    assert!(report.is_ok(), "{:?}", report.problems);
});
