//! Integration tests of the schema catalog and its operations.

mod common;

use common::{assert_consistent, contact, input, setup};
use prismdb::{Kind, ObjectType, OptionSpec, Principal, PropertyChange, PropertySpec};
use serde_json::json;

fn spec(slug: &str, kind: &str) -> PropertySpec {
    PropertySpec {
        slug: slug.into(),
        kind: kind.into(),
        ..Default::default()
    }
}

fn options(slugs: &[&str]) -> Vec<OptionSpec> {
    slugs
        .iter()
        .map(|s| OptionSpec {
            slug: (*s).into(),
            label: None,
        })
        .collect()
}

#[test]
fn default_catalogs_hold_what_the_spec_lists() {
    let (db, me) = setup();
    let expect = [
        (
            ObjectType::Contact,
            vec![
                ("name", Kind::Text),
                ("email", Kind::Email),
                ("phone", Kind::Phone),
                ("title", Kind::Text),
                ("organization", Kind::Reference),
            ],
        ),
        (
            ObjectType::Organization,
            vec![("name", Kind::Text), ("domain", Kind::Text)],
        ),
        (
            ObjectType::Identity,
            vec![("name", Kind::Text), ("email", Kind::Email)],
        ),
        (
            ObjectType::Deal,
            vec![
                ("name", Kind::Text),
                ("amount", Kind::Number),
                ("stage", Kind::Select),
                ("organization", Kind::Reference),
            ],
        ),
        (
            ObjectType::Action,
            vec![
                ("name", Kind::Text),
                ("due_at", Kind::Datetime),
                ("done", Kind::Boolean),
            ],
        ),
        (
            ObjectType::Document,
            vec![("name", Kind::Text), ("url", Kind::Url)],
        ),
        (
            ObjectType::Event,
            vec![
                ("name", Kind::Text),
                ("starts_at", Kind::Datetime),
                ("ends_at", Kind::Datetime),
            ],
        ),
    ];
    for (ty, props) in expect {
        let catalog = db.schema(&me, ty).unwrap();
        let found: Vec<(&str, Kind)> = catalog
            .properties()
            .iter()
            .map(|p| (p.slug.as_str(), p.kind))
            .collect();
        assert_eq!(found, props, "{ty}");
    }
    let contact = db.schema(&me, ObjectType::Contact).unwrap();
    assert!(contact.require("email").unwrap().unique);
    assert_eq!(
        contact.require("organization").unwrap().target,
        Some(ObjectType::Organization)
    );
    assert!(
        db.schema(&me, ObjectType::Organization)
            .unwrap()
            .require("domain")
            .unwrap()
            .unique
    );
}

#[test]
fn schema_changes_need_the_admin_role() {
    let (db, me) = setup();
    let err = db
        .add_property(&me, ObjectType::Contact, &spec("city", "text"))
        .unwrap_err();
    assert_eq!(err.code(), "permission_denied");
    let err = db
        .remove_property(&me, ObjectType::Contact, "title", false)
        .unwrap_err();
    assert_eq!(err.code(), "permission_denied");
}

#[test]
fn added_properties_are_usable_at_once() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    let mut tags = spec("tags", "multiselect");
    tags.options = Some(options(&["vip", "churn_risk", "partner"]));
    let added = db.add_property(&admin, ObjectType::Contact, &tags).unwrap();
    assert_eq!(added.options.len(), 3);
    let ids: std::collections::HashSet<_> = added.options.iter().map(|o| o.id).collect();
    assert_eq!(ids.len(), 3, "engine-made option ids are distinct");
    let partner = added.options[2].id.to_string();
    let c = contact(&db, &me, json!({"tags": [partner, "vip", "vip"]}));
    assert_eq!(
        c.properties["tags"],
        json!(["vip", "partner"]),
        "catalog order, no repeats"
    );
    assert_eq!(
        db.find(&me, ObjectType::Contact, "tags", "partner")
            .unwrap()
            .id,
        c.id
    );
    let err = db
        .add_property(&admin, ObjectType::Contact, &spec("tags", "text"))
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
    for (slug, kind, code) in [
        ("Bad", "text", "invalid_value"),
        ("x", "colour", "invalid_value"),
        ("updated_at", "text", "read_only_property"),
    ] {
        assert_eq!(
            db.add_property(&admin, ObjectType::Contact, &spec(slug, kind))
                .unwrap_err()
                .code(),
            code
        );
    }
    let mut reference = spec("manager", "reference");
    assert_eq!(
        db.add_property(&admin, ObjectType::Contact, &reference)
            .unwrap_err()
            .code(),
        "invalid_value"
    );
    reference.target = Some("contact".into());
    db.add_property(&admin, ObjectType::Contact, &reference)
        .unwrap();
}

#[test]
fn options_are_renamed_added_and_removed_safely() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    let deal = db
        .create(&me, ObjectType::Deal, &input(json!({"stage": "won"})))
        .unwrap();
    let stage = db
        .schema(&me, ObjectType::Deal)
        .unwrap()
        .require("stage")
        .unwrap()
        .clone();
    let won_id = stage.options.iter().find(|o| o.slug == "won").unwrap().id;

    let change = PropertyChange {
        rename_options: [("won".to_string(), "closed_won".to_string())].into(),
        add_options: options(&["on_hold"]),
        remove_options: vec!["lead".into()],
        ..Default::default()
    };
    let stage = db
        .update_property(&admin, ObjectType::Deal, "stage", &change)
        .unwrap();
    let won = stage
        .options
        .iter()
        .find(|o| o.slug == "closed_won")
        .unwrap();
    assert_eq!(won.id, won_id, "a rename keeps the option id");
    assert!(stage.options.iter().all(|o| o.slug != "lead"));
    assert_eq!(stage.options.last().unwrap().slug, "on_hold");
    assert_eq!(
        db.get(&me, ObjectType::Deal, deal.id).unwrap().properties["stage"],
        "closed_won"
    );

    let remove_used = PropertyChange {
        remove_options: vec!["closed_won".into()],
        ..Default::default()
    };
    let err = db
        .update_property(&admin, ObjectType::Deal, "stage", &remove_used)
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
    assert!(err.message().contains("closed_won"));
    let unknown = PropertyChange {
        remove_options: vec!["nope".into()],
        ..Default::default()
    };
    assert_eq!(
        db.update_property(&admin, ObjectType::Deal, "stage", &unknown)
            .unwrap_err()
            .code(),
        "invalid_value"
    );
    assert_consistent(&db);
}

#[test]
fn marking_unique_is_refused_over_duplicates() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    let a = contact(&db, &me, json!({"title": "CEO"}));
    contact(&db, &me, json!({"title": "CEO"}));
    let make_unique = PropertyChange {
        unique: Some(true),
        ..Default::default()
    };
    let err = db
        .update_property(&admin, ObjectType::Contact, "title", &make_unique)
        .unwrap_err();
    assert_eq!(err.code(), "unique_violation");
    assert!(err.message().contains("CEO"));
    assert!(
        !db.schema(&me, ObjectType::Contact)
            .unwrap()
            .require("title")
            .unwrap()
            .unique
    );

    db.patch(
        &me,
        ObjectType::Contact,
        a.id,
        &input(json!({"title": "CTO"})),
    )
    .unwrap();
    let title = db
        .update_property(&admin, ObjectType::Contact, "title", &make_unique)
        .unwrap();
    assert!(title.unique && title.indexed);
    assert_eq!(
        db.find(&me, ObjectType::Contact, "title", "CTO")
            .unwrap()
            .id,
        a.id
    );
    let err = db
        .create(&me, ObjectType::Contact, &input(json!({"title": "CTO"})))
        .unwrap_err();
    assert_eq!(err.code(), "unique_violation");
    assert_consistent(&db);

    let plain = PropertyChange {
        unique: Some(false),
        indexed: Some(false),
        ..Default::default()
    };
    db.update_property(&admin, ObjectType::Contact, "title", &plain)
        .unwrap();
    contact(&db, &me, json!({"title": "CTO"}));
    assert_consistent(&db);
}

#[test]
fn removing_a_property_is_refused_while_values_exist() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    let c = contact(&db, &me, json!({"name": "Ada", "phone": "555 0100"}));
    let err = db
        .remove_property(&admin, ObjectType::Contact, "phone", false)
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
    assert!(err.message().contains("phone"));
    db.remove_property(&admin, ObjectType::Contact, "title", false)
        .unwrap();
    db.remove_property(&admin, ObjectType::Contact, "phone", true)
        .unwrap();
    let got = db.get(&me, ObjectType::Contact, c.id).unwrap();
    assert!(!got.properties.contains_key("phone"));
    assert_eq!(
        db.patch(
            &me,
            ObjectType::Contact,
            c.id,
            &input(json!({"phone": "1"}))
        )
        .unwrap_err()
        .code(),
        "unknown_property"
    );
    assert_eq!(
        db.remove_property(&admin, ObjectType::Contact, "phone", true)
            .unwrap_err()
            .code(),
        "unknown_property"
    );
    assert_consistent(&db);

    // a re-added property of the same slug starts empty
    let mut phone = spec("phone", "phone");
    phone.indexed = Some(true);
    db.add_property(&admin, ObjectType::Contact, &phone)
        .unwrap();
    assert!(!db
        .get(&me, ObjectType::Contact, c.id)
        .unwrap()
        .properties
        .contains_key("phone"));
    assert_consistent(&db);
}

#[test]
fn property_json_has_the_api_shape() {
    let (db, me) = setup();
    let stage = db
        .schema(&me, ObjectType::Deal)
        .unwrap()
        .require("stage")
        .unwrap()
        .to_json();
    assert_eq!(stage["kind"], "select");
    assert_eq!(stage["options"][0]["slug"], "lead");
    assert!(stage["options"][0]["id"].as_str().unwrap().len() == 36);
    let org = db
        .schema(&me, ObjectType::Deal)
        .unwrap()
        .require("organization")
        .unwrap()
        .to_json();
    assert_eq!(org["target"], "organization");
}

#[test]
fn force_removing_a_select_clears_its_bitmaps() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    let mut tags = spec("tags", "multiselect");
    tags.options = Some(options(&["a", "b"]));
    db.add_property(&admin, ObjectType::Contact, &tags).unwrap();
    let c = contact(&db, &me, json!({"tags": ["a", "b"]}));
    contact(&db, &me, json!({"tags": ["b"]}));
    db.patch(
        &me,
        ObjectType::Contact,
        c.id,
        &input(json!({"tags": ["a"]})),
    )
    .unwrap();
    assert_consistent(&db);
    db.remove_property(&admin, ObjectType::Contact, "tags", true)
        .unwrap();
    assert_consistent(&db);
}

#[test]
fn substring_search_is_switched_on_and_off_for_text_only() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    let refused = PropertySpec {
        search: Some(true),
        ..spec("score", "number")
    };
    let err = db
        .add_property(&admin, ObjectType::Contact, &refused)
        .unwrap_err();
    assert_eq!(err.code(), "invalid_value");
    assert!(err.message().contains("score"), "{err}");
    for i in 0..40 {
        db.create(
            &me,
            ObjectType::Contact,
            &input(json!({"name": format!("Ada {i}")})),
        )
        .unwrap();
    }
    let contains = |needle: &str| {
        let request = prismdb::QueryRequest {
            filter: Some(json!({"name": {"$contains": needle}})),
            include_total: true,
            ..Default::default()
        };
        db.query(&me, ObjectType::Contact, &request).unwrap().total
    };
    assert_eq!(contains("ada 1"), Some(11));
    for search in [true, false, true] {
        let change = PropertyChange {
            search: Some(search),
            ..Default::default()
        };
        let name = db
            .update_property(&admin, ObjectType::Contact, "name", &change)
            .unwrap();
        assert_eq!(name.search, search);
        assert_eq!(name.to_json()["search"], search);
        assert_eq!(contains("ada 1"), Some(11), "search {search}");
        assert_eq!(contains("DA 39"), Some(1), "search {search}");
        assert_consistent(&db);
    }
}

#[test]
fn a_snapshot_reads_its_own_catalog_after_schema_changes() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    let c = contact(&db, &me, json!({"name": "Ada"}));
    // The shared cache learns the first catalog, then a snapshot begins on it.
    db.get(&me, ObjectType::Contact, c.id).unwrap();
    let before = db.snapshot().unwrap();
    let nickname = PropertySpec {
        indexed: Some(true),
        ..spec("nickname", "text")
    };
    db.add_property(&admin, ObjectType::Contact, &nickname)
        .unwrap();
    db.patch(
        &me,
        ObjectType::Contact,
        c.id,
        &input(json!({"nickname": "A"})),
    )
    .unwrap();
    // A read after the change puts the new catalog in the cache.
    assert_eq!(
        db.get(&me, ObjectType::Contact, c.id).unwrap().properties["nickname"],
        "A"
    );
    let old = before.get(&me, ObjectType::Contact, c.id).unwrap();
    assert!(
        old.properties.get("nickname").is_none(),
        "the snapshot's catalog has no nickname: {old:?}"
    );
    assert_eq!(
        before
            .find(&me, ObjectType::Contact, "nickname", "A")
            .unwrap_err()
            .code(),
        "unknown_property",
        "unknown to the snapshot's catalog"
    );
    // And a read after the snapshot's still sees the new catalog.
    assert_eq!(
        db.find(&me, ObjectType::Contact, "nickname", "A")
            .unwrap()
            .id,
        c.id
    );
}
