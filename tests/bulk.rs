//! Partial-success bulk update and bulk delete: per-item outcomes in input order, one
//! transaction, a failing item never blocks the others and changes nothing itself.

mod common;

use std::collections::BTreeMap;

use common::{assert_consistent, contact, input, setup};
use prismdb::{
    BulkUpdateItem, Database, Grant, ItemStatus, Level, ObjectType, Principal, RecordInput,
    MAX_BULK_ITEMS,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

const C: ObjectType = ObjectType::Contact;

fn item(id: impl ToString, properties: Value) -> BulkUpdateItem {
    BulkUpdateItem {
        id: id.to_string(),
        input: input(properties),
    }
}

fn codes(response: &prismdb::BulkResponse) -> Vec<String> {
    response
        .results
        .iter()
        .map(|r| match &r.error {
            None => "ok".to_owned(),
            Some((code, _)) => code.clone(),
        })
        .collect()
}

#[test]
fn each_update_item_is_applied_or_refused_on_its_own() {
    let (db, me) = setup();
    let ada = contact(&db, &me, json!({"name": "Ada", "email": "ada@x.io"}));
    let bob = contact(&db, &me, json!({"name": "Bob", "email": "bob@x.io"}));
    let items = vec![
        item(ada.id, json!({"name": "Ada L."})),
        item("not-a-uuid", json!({"name": "x"})),
        item(Uuid::now_v7(), json!({"name": "nobody"})),
        item(bob.id, json!({"nope": 1})),
        item(bob.id, json!({"email": "ada@x.io"})),
        item(bob.id, json!({"name": "Bob B."})),
    ];
    let response = db.bulk_update(&me, C, &items).unwrap();
    assert_eq!(
        codes(&response),
        [
            "ok",
            "invalid_id",
            "not_found",
            "unknown_property",
            "unique_violation",
            "ok"
        ]
    );
    assert_eq!(response.results[1].id, None);
    assert_eq!(response.results[1].status, ItemStatus::Error);
    assert_eq!(response.results[0].status, ItemStatus::Ok);
    assert_eq!(response.results[0].id, Some(ada.id));
    let updated = response.results[5].record.as_ref().unwrap();
    assert_eq!(updated.properties.get("name"), Some(&json!("Bob B.")));
    assert_eq!(
        (
            response.summary.total,
            response.summary.succeeded,
            response.summary.failed
        ),
        (6, 2, 4)
    );
    // The refused items changed nothing: Bob kept his e-mail.
    let bob_now = db.get(&me, C, bob.id).unwrap();
    assert_eq!(bob_now.properties.get("email"), Some(&json!("bob@x.io")));
    assert_eq!(bob_now.properties.get("name"), Some(&json!("Bob B.")));
    let shape = response.to_json();
    assert_eq!(
        shape["summary"],
        json!({"total": 6, "succeeded": 2, "failed": 4})
    );
    assert_eq!(shape["results"][1]["id"], Value::Null);
    assert_eq!(shape["results"][1]["status"], "error");
    assert_eq!(shape["results"][1]["error"]["code"], "invalid_id");
    assert_eq!(shape["results"][5]["record"]["default"]["name"], "Bob B.");
    assert_consistent(&db);
}

#[test]
fn bulk_delete_reports_each_id() {
    let (db, me) = setup();
    let other_team = Principal::member(Uuid::new_v4(), Uuid::new_v4());
    let ada = contact(&db, &me, json!({"name": "Ada"}));
    let theirs = contact(&db, &other_team, json!({"name": "Theirs"}));
    let ids = vec![
        ada.id.to_string(),
        ada.id.to_string(),
        "".to_owned(),
        theirs.id.to_string(),
    ];
    let response = db.bulk_delete(&me, C, &ids).unwrap();
    assert_eq!(
        codes(&response),
        ["ok", "not_found", "invalid_id", "not_found"]
    );
    assert!(response.results.iter().all(|r| r.record.is_none()));
    assert_eq!(db.count(&me, C).unwrap(), 0);
    assert_eq!(db.count(&other_team, C).unwrap(), 1);
    assert_consistent(&db);
}

#[test]
fn more_than_the_limit_is_refused_whole() {
    let (db, me) = setup();
    let ada = contact(&db, &me, json!({"name": "Ada"}));
    let items = vec![item(ada.id, json!({"name": "x"})); MAX_BULK_ITEMS + 1];
    let err = db.bulk_update(&me, C, &items).unwrap_err();
    assert_eq!(err.code(), "limit_exceeded");
    let ids = vec![ada.id.to_string(); MAX_BULK_ITEMS + 1];
    assert_eq!(
        db.bulk_delete(&me, C, &ids).unwrap_err().code(),
        "limit_exceeded"
    );
    assert_eq!(
        db.get(&me, C, ada.id).unwrap().properties.get("name"),
        Some(&json!("Ada"))
    );
    // Exactly the limit is fine.
    let items = vec![item(ada.id, json!({"name": "y"})); MAX_BULK_ITEMS];
    assert_eq!(
        db.bulk_update(&me, C, &items).unwrap().summary.succeeded,
        MAX_BULK_ITEMS
    );
}

#[test]
fn bulk_calls_respect_grants() {
    let db = Database::in_memory().unwrap();
    let team = Uuid::new_v4();
    let owner = Principal::member(team, Uuid::new_v4());
    let reader = Principal::member(team, Uuid::new_v4());
    let make = |team_level: Option<Level>| {
        let grant = Grant {
            team: team_level,
            groups: BTreeMap::new(),
            users: BTreeMap::from([(owner.user, Level::Admin)]),
        };
        let input = RecordInput {
            grant: Some(grant),
            ..input(json!({"name": "d"}))
        };
        db.create(&owner, ObjectType::Deal, &input).unwrap().id
    };
    let (readable, writable, hidden) = (
        make(Some(Level::Read)),
        make(Some(Level::Write)),
        make(None),
    );
    let items: Vec<BulkUpdateItem> = [readable, writable, hidden]
        .iter()
        .map(|id| item(id, json!({"amount": 1})))
        .collect();
    let response = db.bulk_update(&reader, ObjectType::Deal, &items).unwrap();
    assert_eq!(codes(&response), ["permission_denied", "ok", "not_found"]);
    let ids: Vec<String> = [readable, writable, hidden]
        .iter()
        .map(Uuid::to_string)
        .collect();
    let response = db.bulk_delete(&reader, ObjectType::Deal, &ids).unwrap();
    assert_eq!(
        codes(&response),
        ["permission_denied", "permission_denied", "not_found"]
    );
    assert_eq!(
        db.bulk_delete(&owner, ObjectType::Deal, &ids)
            .unwrap()
            .summary
            .succeeded,
        3
    );
    assert_consistent(&db);
}

// ---------------------------------------------------------------------------------------
// Property test: random batches against a model.
// ---------------------------------------------------------------------------------------

/// One drawn bulk item: which record (an index into the made ones, or a stranger), and
/// what to write.
#[derive(Clone, Debug)]
enum Drawn {
    Rename(usize, u8),
    Email(usize, u8),
    BadId,
    Unknown,
    BadProperty(usize),
    Delete(usize),
}

fn drawn() -> impl Strategy<Value = Drawn> {
    prop_oneof![
        3 => (0usize..6, any::<u8>()).prop_map(|(i, n)| Drawn::Rename(i, n)),
        3 => (0usize..6, 0u8..8).prop_map(|(i, n)| Drawn::Email(i, n)),
        1 => Just(Drawn::BadId),
        1 => Just(Drawn::Unknown),
        1 => (0usize..6).prop_map(Drawn::BadProperty),
        1 => (0usize..6).prop_map(Drawn::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random batches of valid, invalid and duplicate items give the per-item outcomes and
    /// the final records that applying the items one by one to a model gives.
    #[test]
    fn batches_agree_with_a_model(items in proptest::collection::vec(drawn(), 1..30)) {
        let (db, me) = setup();
        // The model: per record, its e-mail (unique) and name, or None once deleted.
        let mut model: Vec<Option<(String, String)>> = Vec::new();
        let mut ids = Vec::new();
        for i in 0..6 {
            let (email, name) = (format!("p{i}@x.io"), format!("n{i}"));
            ids.push(contact(&db, &me, json!({"name": name, "email": email})).id);
            model.push(Some((email, name)));
        }
        let mut updates = Vec::new();
        let mut expected = Vec::new();
        // Deletes go in a second call, so split the draw.
        let mut deletes = Vec::new();
        for d in &items {
            match d {
                Drawn::Rename(i, n) => {
                    updates.push(item(ids[*i], json!({"name": format!("r{n}")})));
                    expected.push(match &mut model[*i] {
                        Some(m) => { m.1 = format!("r{n}"); "ok" }
                        None => "not_found",
                    });
                }
                Drawn::Email(i, n) => {
                    let email = format!("p{n}@x.io");
                    updates.push(item(ids[*i], json!({"email": email})));
                    let taken = model.iter().enumerate().any(|(j, m)| j != *i && m.as_ref().is_some_and(|m| m.0 == email));
                    expected.push(match (&mut model[*i], taken) {
                        (None, _) => "not_found",
                        (Some(_), true) => "unique_violation",
                        (Some(m), false) => { m.0 = email; "ok" }
                    });
                }
                Drawn::BadId => {
                    updates.push(item("x", json!({"name": "n"})));
                    expected.push("invalid_id");
                }
                Drawn::Unknown => {
                    updates.push(item(Uuid::now_v7(), json!({"name": "n"})));
                    expected.push("not_found");
                }
                Drawn::BadProperty(i) => {
                    updates.push(item(ids[*i], json!({"nope": 1})));
                    expected.push(if model[*i].is_some() { "unknown_property" } else { "not_found" });
                }
                Drawn::Delete(i) => deletes.push(*i),
            }
        }
        let response = db.bulk_update(&me, C, &updates).unwrap();
        prop_assert_eq!(codes(&response), expected.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let ok = expected.iter().filter(|c| **c == "ok").count();
        prop_assert_eq!(response.summary.succeeded, ok);
        prop_assert_eq!(response.summary.failed, expected.len() - ok);
        let delete_ids: Vec<String> = deletes.iter().map(|i| ids[*i].to_string()).collect();
        let mut expected_deletes = Vec::new();
        for i in &deletes {
            expected_deletes.push(if model[*i].take().is_some() { "ok" } else { "not_found" });
        }
        if !delete_ids.is_empty() {
            let response = db.bulk_delete(&me, C, &delete_ids).unwrap();
            prop_assert_eq!(codes(&response), expected_deletes.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        for (i, m) in model.iter().enumerate() {
            match (m, db.get(&me, C, ids[i])) {
                (Some((email, name)), Ok(record)) => {
                    prop_assert_eq!(record.properties.get("email"), Some(&json!(email)));
                    prop_assert_eq!(record.properties.get("name"), Some(&json!(name)));
                }
                (None, Err(e)) => prop_assert_eq!(e.code(), "not_found"),
                (m, got) => prop_assert!(false, "record {i}: model {m:?}, got {got:?}"),
            }
        }
        prop_assert!(db.verify_integrity().unwrap().is_ok());
    }
}
