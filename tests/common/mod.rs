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

/// Creates an organization with these properties.
pub fn organization(db: &Database, who: &Principal, properties: Value) -> Record {
    db.create(who, ObjectType::Organization, &input(properties))
        .expect("create organization")
}

/// Asserts the database is consistent.
pub fn assert_consistent(db: &Database) {
    let report = db.verify_integrity().expect("verify runs");
    assert!(report.is_ok(), "integrity problems: {:?}", report.problems);
}

/// A small xorshift generator: deterministic test data and choices, not quality.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}
