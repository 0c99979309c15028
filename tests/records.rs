//! Integration tests of the single-record operations and their error paths.

mod common;

use common::{assert_consistent, contact, input, setup};
use prismdb::{Database, Error, ObjectType, Principal, RecordInput};
use serde_json::json;
use uuid::Uuid;

#[test]
fn create_then_get_returns_the_same_record() {
    let (db, me) = setup();
    let made = contact(
        &db,
        &me,
        json!({"name": "Ada", "email": "ada@x.io", "phone": "+1 555 0100"}),
    );
    let got = db.get(&me, ObjectType::Contact, made.id).unwrap();
    assert_eq!(made, got);
    assert_eq!(got.properties["name"], "Ada");
    assert_eq!(got.properties["email"], "ada@x.io");
    assert!(got.properties["created_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(got.to_json()["default"]["name"], "Ada");
    assert_consistent(&db);
}

#[test]
fn ids_are_uuid_v7_and_increase() {
    let (db, me) = setup();
    let ids: Vec<Uuid> = (0..50)
        .map(|i| contact(&db, &me, json!({"name": format!("n{i}")})).id)
        .collect();
    assert!(ids.iter().all(|id| id.get_version_num() == 7));
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn numbers_keep_their_kind() {
    let (db, me) = setup();
    let deal = db
        .create(
            &me,
            ObjectType::Deal,
            &input(json!({"name": "d", "amount": 12})),
        )
        .unwrap();
    assert_eq!(deal.properties["amount"], json!(12));
    assert!(deal.properties["amount"].is_i64());
    let deal = db
        .patch(
            &me,
            ObjectType::Deal,
            deal.id,
            &input(json!({"amount": 12.5})),
        )
        .unwrap();
    assert_eq!(deal.properties["amount"], json!(12.5));
}

#[test]
fn writes_name_the_slug_at_fault() {
    let (db, me) = setup();
    let cases = [
        (json!({"nickname": "x"}), "unknown_property", "nickname"),
        (json!({"email": "not-an-email"}), "invalid_value", "email"),
        (json!({"name": 3}), "invalid_value", "name"),
        (
            json!({"created_at": "2020-01-01T00:00:00Z"}),
            "read_only_property",
            "created_at",
        ),
        (
            json!({"organization": "not-a-uuid"}),
            "invalid_value",
            "organization",
        ),
        (
            json!({"organization": Uuid::new_v4().to_string()}),
            "invalid_value",
            "organization",
        ),
    ];
    for (props, code, slug) in cases {
        let err = db
            .create(&me, ObjectType::Contact, &input(props.clone()))
            .unwrap_err();
        assert_eq!(err.code(), code, "{props}");
        assert!(err.message().contains(slug), "{err} should name {slug}");
    }
    assert_eq!(
        db.count(&me, ObjectType::Contact).unwrap(),
        0,
        "nothing half-written"
    );
    assert_consistent(&db);
}

#[test]
fn select_takes_slug_or_uuid_and_reads_back_slug() {
    let (db, me) = setup();
    let schema = db.schema(&me, ObjectType::Deal).unwrap();
    let won = schema
        .require("stage")
        .unwrap()
        .options
        .iter()
        .find(|o| o.slug == "won")
        .unwrap()
        .id;
    let by_uuid = db
        .create(
            &me,
            ObjectType::Deal,
            &input(json!({"stage": won.to_string()})),
        )
        .unwrap();
    assert_eq!(by_uuid.properties["stage"], "won");
    let by_slug = db
        .create(&me, ObjectType::Deal, &input(json!({"stage": "lead"})))
        .unwrap();
    assert_eq!(by_slug.properties["stage"], "lead");
    let err = db
        .create(&me, ObjectType::Deal, &input(json!({"stage": "maybe"})))
        .unwrap_err();
    assert_eq!(err.code(), "invalid_value");
    assert!(err.message().contains("maybe"));
}

#[test]
fn patch_merges_and_null_removes() {
    let (db, me) = setup();
    let c = contact(&db, &me, json!({"name": "Ada", "title": "Countess"}));
    let p = db
        .patch(
            &me,
            ObjectType::Contact,
            c.id,
            &input(json!({"title": null, "phone": "555 1234"})),
        )
        .unwrap();
    assert_eq!(p.properties["name"], "Ada");
    assert_eq!(p.properties["phone"], "555 1234");
    assert!(!p.properties.contains_key("title"));
    assert_eq!(db.get(&me, ObjectType::Contact, c.id).unwrap(), p);
    assert_ne!(p.properties["updated_at"], c.properties["updated_at"]);
}

#[test]
fn a_failed_patch_changes_nothing() {
    let (db, me) = setup();
    let c = contact(&db, &me, json!({"name": "Ada"}));
    let err = db
        .patch(
            &me,
            ObjectType::Contact,
            c.id,
            &input(json!({"name": "Eve", "email": "bad"})),
        )
        .unwrap_err();
    assert_eq!(err.code(), "invalid_value");
    assert_eq!(db.get(&me, ObjectType::Contact, c.id).unwrap(), c);
}

#[test]
fn missing_records_are_not_found() {
    let (db, me) = setup();
    let ghost = Uuid::now_v7();
    assert_eq!(
        db.get(&me, ObjectType::Contact, ghost).unwrap_err().code(),
        "not_found"
    );
    assert_eq!(
        db.patch(&me, ObjectType::Contact, ghost, &input(json!({})))
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(
        db.delete(&me, ObjectType::Contact, ghost)
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(
        db.restore(&me, ObjectType::Contact, ghost)
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(
        db.duplicate(&me, ObjectType::Contact, ghost)
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(prismdb::parse_id("nope").unwrap_err().code(), "invalid_id");
}

#[test]
fn a_record_is_not_found_under_another_type() {
    let (db, me) = setup();
    let c = contact(&db, &me, json!({"name": "Ada"}));
    assert_eq!(
        db.get(&me, ObjectType::Organization, c.id)
            .unwrap_err()
            .code(),
        "not_found"
    );
}

#[test]
fn delete_hides_and_restore_brings_back() {
    let (db, me) = setup();
    let c = contact(&db, &me, json!({"name": "Ada", "email": "ada@x.io"}));
    db.delete(&me, ObjectType::Contact, c.id).unwrap();
    assert_eq!(
        db.get(&me, ObjectType::Contact, c.id).unwrap_err().code(),
        "not_found"
    );
    assert_eq!(db.count(&me, ObjectType::Contact).unwrap(), 0);
    assert_eq!(
        db.find(&me, ObjectType::Contact, "email", "ada@x.io")
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(
        db.delete(&me, ObjectType::Contact, c.id)
            .unwrap_err()
            .code(),
        "not_found"
    );
    let trash = db
        .trash(&me, ObjectType::Contact, &Default::default())
        .unwrap();
    assert_eq!(trash.rows.len(), 1);
    assert!(trash.rows[0].deleted_at.is_some());
    assert_consistent(&db);

    let back = db.restore(&me, ObjectType::Contact, c.id).unwrap();
    assert_eq!(back.properties["email"], "ada@x.io");
    assert_eq!(db.count(&me, ObjectType::Contact).unwrap(), 1);
    assert_eq!(
        db.find(&me, ObjectType::Contact, "email", "ada@x.io")
            .unwrap()
            .id,
        c.id
    );
    assert!(db
        .trash(&me, ObjectType::Contact, &Default::default())
        .unwrap()
        .rows
        .is_empty());
    assert_consistent(&db);
}

#[test]
fn restore_is_refused_when_a_unique_value_was_taken() {
    let (db, me) = setup();
    let first = contact(&db, &me, json!({"email": "ada@x.io"}));
    db.delete(&me, ObjectType::Contact, first.id).unwrap();
    contact(&db, &me, json!({"email": "ADA@x.io"}));
    let err = db.restore(&me, ObjectType::Contact, first.id).unwrap_err();
    assert_eq!(err.code(), "unique_violation");
    assert!(err.message().contains("email"));
    assert_consistent(&db);
}

#[test]
fn unique_values_are_enforced_case_insensitively_for_email() {
    let (db, me) = setup();
    let ada = contact(&db, &me, json!({"email": "ada@x.io"}));
    let err = db
        .create(
            &me,
            ObjectType::Contact,
            &input(json!({"email": "Ada@X.io"})),
        )
        .unwrap_err();
    assert_eq!(err.code(), "unique_violation");
    // The message names the property and value, never the holder (whom the caller may
    // not be allowed to see; see docs/decisions.md).
    assert!(err.message().contains("email"), "{err}");
    assert!(!err.message().contains(&ada.id.to_string()), "{err}");
    let bob = contact(&db, &me, json!({"email": "bob@x.io"}));
    let err = db
        .patch(
            &me,
            ObjectType::Contact,
            bob.id,
            &input(json!({"email": "ADA@x.io"})),
        )
        .unwrap_err();
    assert_eq!(err.code(), "unique_violation");
    // a record may keep (or re-set) its own value
    db.patch(
        &me,
        ObjectType::Contact,
        ada.id,
        &input(json!({"email": "ADA@x.io"})),
    )
    .unwrap();
    assert_consistent(&db);
}

#[test]
fn duplicate_leaves_unique_properties_out() {
    let (db, me) = setup();
    let c = contact(
        &db,
        &me,
        json!({"name": "Ada", "email": "ada@x.io", "title": "Countess"}),
    );
    let copy = db.duplicate(&me, ObjectType::Contact, c.id).unwrap();
    assert_ne!(copy.id, c.id);
    assert_eq!(copy.properties["name"], "Ada");
    assert_eq!(copy.properties["title"], "Countess");
    assert!(!copy.properties.contains_key("email"));
    assert_eq!(db.count(&me, ObjectType::Contact).unwrap(), 2);
    assert_consistent(&db);
}

#[test]
fn find_coerces_the_value_to_the_kind() {
    let (db, me) = setup();
    let d = db
        .create(
            &me,
            ObjectType::Deal,
            &input(json!({"name": "big", "amount": 1000, "stage": "won"})),
        )
        .unwrap();
    assert_eq!(
        db.find(&me, ObjectType::Deal, "amount", "1000").unwrap().id,
        d.id
    );
    assert_eq!(
        db.find(&me, ObjectType::Deal, "amount", "1000.0")
            .unwrap()
            .id,
        d.id
    );
    assert_eq!(
        db.find(&me, ObjectType::Deal, "stage", "won").unwrap().id,
        d.id
    );
    assert_eq!(
        db.find(&me, ObjectType::Deal, "name", "big").unwrap().id,
        d.id
    );
    assert_eq!(
        db.find(&me, ObjectType::Deal, "amount", "lots")
            .unwrap_err()
            .code(),
        "invalid_value"
    );
    assert_eq!(
        db.find(&me, ObjectType::Deal, "colour", "red")
            .unwrap_err()
            .code(),
        "unknown_property"
    );
    assert_eq!(
        db.find(&me, ObjectType::Deal, "amount", "999")
            .unwrap_err()
            .code(),
        "not_found"
    );
}

#[test]
fn find_reports_multiple_matches() {
    let (db, me) = setup();
    contact(&db, &me, json!({"name": "Sam"}));
    contact(&db, &me, json!({"name": "Sam"}));
    let err = db
        .find(&me, ObjectType::Contact, "name", "Sam")
        .unwrap_err();
    assert_eq!(err.code(), "multiple_matches");
    let err = db
        .upsert(
            &me,
            ObjectType::Contact,
            "name",
            "Sam",
            &input(json!({"title": "x"})),
        )
        .unwrap_err();
    assert_eq!(err.code(), "multiple_matches");
}

#[test]
fn upsert_creates_then_patches() {
    let (db, me) = setup();
    let (made, created) = db
        .upsert(
            &me,
            ObjectType::Contact,
            "email",
            "ada@x.io",
            &input(json!({"name": "Ada"})),
        )
        .unwrap();
    assert!(created);
    assert_eq!(made.properties["email"], "ada@x.io");
    let (same, created) = db
        .upsert(
            &me,
            ObjectType::Contact,
            "email",
            "ADA@x.io",
            &input(json!({"title": "Countess"})),
        )
        .unwrap();
    assert!(!created);
    assert_eq!(same.id, made.id);
    assert_eq!(same.properties["title"], "Countess");
    assert_eq!(db.count(&me, ObjectType::Contact).unwrap(), 1);
}

#[test]
fn events_are_written_only_by_the_system_principal() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    for who in [&me, &admin] {
        let err = db
            .create(who, ObjectType::Event, &input(json!({"name": "call"})))
            .unwrap_err();
        assert_eq!(err.code(), "read_only_type");
    }
    let system = Principal::system(me.team);
    let event = db
        .create(
            &system,
            ObjectType::Event,
            &input(json!({"name": "call", "starts_at": "2026-01-01T10:00:00+02:00"})),
        )
        .unwrap();
    assert_eq!(event.properties["starts_at"], "2026-01-01T08:00:00Z");
    assert_eq!(
        db.get(&me, ObjectType::Event, event.id).unwrap().id,
        event.id
    );
    let err = db
        .patch(
            &me,
            ObjectType::Event,
            event.id,
            &input(json!({"name": "x"})),
        )
        .unwrap_err();
    assert_eq!(err.code(), "read_only_type");
    assert_eq!(
        db.delete(&me, ObjectType::Event, event.id)
            .unwrap_err()
            .code(),
        "read_only_type"
    );
}

#[test]
fn teams_never_see_each_other() {
    let (db, me) = setup();
    let other = Principal::member(Uuid::new_v4(), Uuid::new_v4());
    let c = contact(&db, &me, json!({"name": "Ada", "email": "ada@x.io"}));
    assert_eq!(
        db.get(&other, ObjectType::Contact, c.id)
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(db.count(&other, ObjectType::Contact).unwrap(), 0);
    assert_eq!(
        db.find(&other, ObjectType::Contact, "email", "ada@x.io")
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert!(db
        .list(&other, ObjectType::Contact, &Default::default())
        .unwrap()
        .rows
        .is_empty());
    assert_eq!(
        db.patch(
            &other,
            ObjectType::Contact,
            c.id,
            &input(json!({"name": "x"}))
        )
        .unwrap_err()
        .code(),
        "not_found"
    );
    assert_eq!(
        db.delete(&other, ObjectType::Contact, c.id)
            .unwrap_err()
            .code(),
        "not_found"
    );
    // the other team may hold the same unique value
    contact(&db, &other, json!({"email": "ada@x.io"}));
    // and cannot reference a record of this team
    let err = db
        .create(
            &other,
            ObjectType::Contact,
            &input(json!({"organization": c.id.to_string()})),
        )
        .unwrap_err();
    assert_eq!(err.code(), "invalid_value");
    assert_consistent(&db);
}

#[test]
fn list_returns_opaque_list_member_and_system_fields() {
    let (db, me) = setup();
    let source = Uuid::new_v4();
    let body = json!({"default": {"name": "Ada"}, "list": {"anything": [1, 2]}, "source": source, "is_user_object": false});
    let c = db
        .create(
            &me,
            ObjectType::Contact,
            &RecordInput::from_json(body).unwrap(),
        )
        .unwrap();
    assert_eq!(c.list, Some(json!({"anything": [1, 2]})));
    assert_eq!(c.to_json()["list"], json!({"anything": [1, 2]}));
    let row = &db
        .list(&me, ObjectType::Contact, &Default::default())
        .unwrap()
        .rows[0];
    assert_eq!(row.source, Some(source));
    assert!(!row.is_user_object);
    let err = RecordInput::from_json(json!({"default": {}, "bogus": 1})).unwrap_err();
    assert_eq!(err.code(), "invalid_request");
}

#[test]
fn write_batches_are_all_or_nothing() {
    let (db, me) = setup();
    let result = db.write_batch(&me, |batch| {
        batch.create(ObjectType::Contact, &input(json!({"email": "a@x.io"})))?;
        assert_eq!(
            batch.count(ObjectType::Contact)?,
            1,
            "a batch reads its own writes"
        );
        batch.create(ObjectType::Contact, &input(json!({"email": "a@x.io"})))?;
        Ok(())
    });
    assert_eq!(result.unwrap_err().code(), "unique_violation");
    assert_eq!(db.count(&me, ObjectType::Contact).unwrap(), 0);
    assert_consistent(&db);

    let ids = db
        .write_batch(&me, |batch| {
            let org = batch.create(
                ObjectType::Organization,
                &input(json!({"name": "Acme", "domain": "acme.io"})),
            )?;
            let c = batch.create(
                ObjectType::Contact,
                &input(json!({"organization": org.id.to_string()})),
            )?;
            Ok((org.id, c.id))
        })
        .unwrap();
    assert_eq!(
        db.get(&me, ObjectType::Contact, ids.1).unwrap().properties["organization"],
        ids.0.to_string()
    );
    assert_consistent(&db);
}

#[test]
fn a_snapshot_keeps_its_state() {
    let (db, me) = setup();
    let c = contact(&db, &me, json!({"name": "Ada"}));
    let snapshot = db.snapshot().unwrap();
    db.patch(
        &me,
        ObjectType::Contact,
        c.id,
        &input(json!({"name": "Eve"})),
    )
    .unwrap();
    contact(&db, &me, json!({"name": "Bob"}));
    assert_eq!(
        snapshot
            .get(&me, ObjectType::Contact, c.id)
            .unwrap()
            .properties["name"],
        "Ada"
    );
    assert_eq!(snapshot.count(&me, ObjectType::Contact).unwrap(), 1);
    assert_eq!(db.count(&me, ObjectType::Contact).unwrap(), 2);
}

#[test]
fn purge_removes_expired_trash_only() {
    let dir = tempfile::tempdir().unwrap();
    let options = prismdb::Options {
        trash_retention: std::time::Duration::ZERO,
        ..Default::default()
    };
    let db = Database::open_with(dir.path().join("db"), options).unwrap();
    let me = Principal::member(Uuid::new_v4(), Uuid::new_v4());
    let a = contact(&db, &me, json!({"name": "a"}));
    contact(&db, &me, json!({"name": "b"}));
    db.delete(&me, ObjectType::Contact, a.id).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert_eq!(db.purge_trash().unwrap(), 1);
    assert_eq!(
        db.restore(&me, ObjectType::Contact, a.id)
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(db.count(&me, ObjectType::Contact).unwrap(), 1);
    assert_consistent(&db);
}

#[test]
fn the_file_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.prismdb");
    let me = Principal::member(Uuid::new_v4(), Uuid::new_v4());
    let id = {
        let db = Database::open(&path).unwrap();
        contact(&db, &me, json!({"name": "Ada", "email": "ada@x.io"})).id
    };
    let db = Database::open(&path).unwrap();
    assert_eq!(
        db.get(&me, ObjectType::Contact, id).unwrap().properties["name"],
        "Ada"
    );
    assert_eq!(
        db.find(&me, ObjectType::Contact, "email", "ada@x.io")
            .unwrap()
            .id,
        id
    );
    let next = contact(&db, &me, json!({"name": "Bob"}));
    assert!(next.id > id, "ids keep increasing across reopen");
    assert_consistent(&db);
}

#[test]
fn foreign_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db");
    std::fs::write(&path, b"hello, this is not a database file at all").unwrap();
    match Database::open(&path) {
        Err(Error::Internal(message)) => assert!(message.contains("not-a-db"), "{message}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a text file opened as a database"),
    }
}

#[test]
fn eventual_commits_survive_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let options = prismdb::Options {
        durability: prismdb::Durability::Eventual,
        ..Default::default()
    };
    let me = Principal::member(Uuid::new_v4(), Uuid::new_v4());
    let id = {
        let db = Database::open_with(&path, options.clone()).unwrap();
        contact(&db, &me, json!({"name": "Ada"})).id
    };
    let db = Database::open_with(&path, options).unwrap();
    assert_eq!(
        db.get(&me, ObjectType::Contact, id).unwrap().properties["name"],
        "Ada"
    );
}

/// A reference is checked against its target as the writing transaction sees it, whatever
/// earlier writes found (the ordinals of live targets are cached between transactions).
#[test]
fn references_follow_their_target_through_trash_restore_and_rollback() {
    let (db, me) = setup();
    let org = common::organization(&db, &me, json!({"name": "Acme"}));
    let to = |id: Uuid| input(json!({"organization": id.to_string()}));
    let refers = |db: &Database, id: Uuid| db.create(&me, ObjectType::Contact, &to(id));
    refers(&db, org.id).unwrap();
    refers(&db, org.id).unwrap();
    db.delete(&me, ObjectType::Organization, org.id).unwrap();
    assert_eq!(refers(&db, org.id).unwrap_err().code(), "invalid_value");
    db.restore(&me, ObjectType::Organization, org.id).unwrap();
    refers(&db, org.id).unwrap();

    // Within one batch: found live, then trashed, then refused; the batch rolls back.
    let err = db
        .write_batch(&me, |batch| {
            batch.create_id(ObjectType::Contact, &to(org.id))?;
            batch.delete(ObjectType::Organization, org.id)?;
            batch.create_id(ObjectType::Contact, &to(org.id))
        })
        .unwrap_err();
    assert_eq!(err.code(), "invalid_value");
    refers(&db, org.id).unwrap();

    // An organization made and referenced in a batch that rolls back is no target after it.
    let mut made = None;
    let rolled_back = db.write_batch(&me, |batch| {
        let id = batch.create_id(ObjectType::Organization, &input(json!({"name": "Gone"})))?;
        made = Some(id);
        batch.create_id(ObjectType::Contact, &to(id))?;
        Err::<(), _>(Error::InvalidRequest("roll back".into()))
    });
    assert!(rolled_back.is_err());
    let gone = made.expect("the batch made the organization");
    assert_eq!(refers(&db, gone).unwrap_err().code(), "invalid_value");
    assert_consistent(&db);
}
