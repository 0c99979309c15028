//! Helpers shared by the integration tests.
#![allow(dead_code)]

use prismdb::{Database, ObjectType, Principal, Record, RecordInput};
use serde_json::Value;
use uuid::Uuid;

/// A fresh in-memory database and a member of a fresh team.
pub fn setup() -> (Database, Principal) {
    let db = Database::in_memory().expect("in-memory database");
    (db, Principal::member(Uuid::new_v4(), Uuid::new_v4()))
}

/// Input with these properties.
pub fn input(properties: Value) -> RecordInput {
    RecordInput::from_properties(properties).expect("an object")
}

/// Creates a contact with these properties.
pub fn contact(db: &Database, who: &Principal, properties: Value) -> Record {
    db.create(who, ObjectType::Contact, &input(properties))
        .expect("create contact")
}

/// Asserts the database is consistent.
pub fn assert_consistent(db: &Database) {
    let report = db.verify_integrity().expect("verify runs");
    assert!(report.is_ok(), "integrity problems: {:?}", report.problems);
}
