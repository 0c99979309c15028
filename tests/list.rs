//! Integration tests of list and trash pagination.

mod common;

use common::{contact, input, setup};
use prismdb::{ListRequest, ObjectType, Page, Principal};
use serde_json::json;

fn walk(db: &prismdb::Database, me: &Principal, ty: ObjectType, limit: u32) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut request = ListRequest::first(limit);
    loop {
        let page = db.list(me, ty, &request).unwrap();
        let next = page.next_cursor.clone();
        pages.push(page);
        match next {
            Some(cursor) => request.cursor = Some(cursor),
            None => return pages,
        }
    }
}

#[test]
fn pages_cover_every_record_once_in_id_order() {
    let (db, me) = setup();
    let ids: Vec<_> = (0..23)
        .map(|i| contact(&db, &me, json!({"name": format!("c{i}")})).id)
        .collect();
    for limit in [1, 5, 23, 50] {
        let pages = walk(&db, &me, ObjectType::Contact, limit);
        let seen: Vec<_> = pages
            .iter()
            .flat_map(|p| p.rows.iter().map(|r| r.id))
            .collect();
        assert_eq!(seen, ids, "limit {limit}");
        assert!(pages.iter().all(|p| p.rows.len() <= limit as usize));
        let last = pages.last().unwrap();
        assert!(!last.has_more && last.next_cursor.is_none());
        assert!(pages[..pages.len() - 1]
            .iter()
            .all(|p| p.has_more && p.rows.len() == limit as usize));
    }
}

#[test]
fn has_more_is_exact_at_the_boundary() {
    let (db, me) = setup();
    for i in 0..10 {
        contact(&db, &me, json!({"name": format!("c{i}")}));
    }
    let page = db
        .list(&me, ObjectType::Contact, &ListRequest::first(10))
        .unwrap();
    assert_eq!(page.rows.len(), 10);
    assert!(!page.has_more);
    assert_eq!(page.next_cursor, None);
}

#[test]
fn totals_are_opt_in() {
    let (db, me) = setup();
    for i in 0..7 {
        contact(&db, &me, json!({"name": format!("c{i}")}));
    }
    let page = db
        .list(&me, ObjectType::Contact, &ListRequest::first(2))
        .unwrap();
    assert_eq!(page.total, None);
    assert!(page.to_json().get("total").is_none());
    let request = ListRequest {
        include_total: true,
        ..ListRequest::first(2)
    };
    let page = db.list(&me, ObjectType::Contact, &request).unwrap();
    assert_eq!(page.total, Some(7));
    assert_eq!(page.to_json()["total"], 7);
}

#[test]
fn limits_outside_the_range_are_invalid_requests() {
    let (db, me) = setup();
    for limit in [0, 1001] {
        let err = db
            .list(&me, ObjectType::Contact, &ListRequest::first(limit))
            .unwrap_err();
        assert_eq!(err.code(), "invalid_request");
        assert!(err.message().contains(&limit.to_string()));
    }
    db.list(&me, ObjectType::Contact, &ListRequest::first(1000))
        .unwrap();
}

#[test]
fn cursors_from_elsewhere_or_altered_are_refused() {
    let (db, me) = setup();
    for i in 0..3 {
        contact(&db, &me, json!({"name": format!("c{i}")}));
        db.create(
            &me,
            ObjectType::Organization,
            &input(json!({"name": format!("o{i}")})),
        )
        .unwrap();
    }
    let cursor = db
        .list(&me, ObjectType::Contact, &ListRequest::first(1))
        .unwrap()
        .next_cursor
        .unwrap();
    let reuse = |ty, text: String| {
        let request = ListRequest {
            cursor: Some(text),
            ..ListRequest::first(1)
        };
        db.list(&me, ty, &request)
    };
    assert!(reuse(ObjectType::Contact, cursor.clone()).is_ok());
    assert_eq!(
        reuse(ObjectType::Organization, cursor.clone())
            .unwrap_err()
            .code(),
        "invalid_cursor"
    );
    let trash = ListRequest {
        cursor: Some(cursor.clone()),
        ..ListRequest::first(1)
    };
    assert_eq!(
        db.trash(&me, ObjectType::Contact, &trash)
            .unwrap_err()
            .code(),
        "invalid_cursor"
    );
    let other_team = Principal::member(uuid::Uuid::new_v4(), me.user);
    let request = ListRequest {
        cursor: Some(cursor.clone()),
        ..ListRequest::first(1)
    };
    assert_eq!(
        db.list(&other_team, ObjectType::Contact, &request)
            .unwrap_err()
            .code(),
        "invalid_cursor"
    );
    for garbage in [
        "",
        "!!!",
        "AAAA",
        &cursor[..cursor.len() - 1],
        &format!("{cursor}A"),
    ] {
        assert_eq!(
            reuse(ObjectType::Contact, garbage.to_string())
                .unwrap_err()
                .code(),
            "invalid_cursor",
            "{garbage}"
        );
    }
    let mut flipped = cursor.into_bytes();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        reuse(ObjectType::Contact, String::from_utf8(flipped).unwrap())
            .unwrap_err()
            .code(),
        "invalid_cursor"
    );
}

#[test]
fn selection_limits_the_properties_of_each_row() {
    let (db, me) = setup();
    let org = common::organization(&db, &me, json!({"name": "Acme", "domain": "acme.io"}));
    contact(
        &db,
        &me,
        json!({"name": "Ada", "email": "ada@acme.io", "organization": org.id.to_string()}),
    );
    let request = ListRequest {
        properties: Some(vec!["email".into(), "organization".into()]),
        ..ListRequest::first(10)
    };
    let row = &db.list(&me, ObjectType::Contact, &request).unwrap().rows[0];
    let keys: Vec<_> = row.properties.keys().collect();
    assert_eq!(keys, vec!["email", "organization"]);
    assert_eq!(
        row.properties["organization"],
        json!({"id": org.id, "properties": {"name": "Acme"}})
    );
    let bad = ListRequest {
        properties: Some(vec!["nope".into()]),
        ..ListRequest::first(10)
    };
    assert_eq!(
        db.list(&me, ObjectType::Contact, &bad).unwrap_err().code(),
        "unknown_property"
    );
}

#[test]
fn the_trash_pages_the_same_way() {
    let (db, me) = setup();
    let ids: Vec<_> = (0..9)
        .map(|i| contact(&db, &me, json!({"name": format!("c{i}")})).id)
        .collect();
    for id in ids.iter().step_by(2) {
        db.delete(&me, ObjectType::Contact, *id).unwrap();
    }
    let mut request = ListRequest {
        include_total: true,
        ..ListRequest::first(2)
    };
    let mut seen = Vec::new();
    loop {
        let page = db.trash(&me, ObjectType::Contact, &request).unwrap();
        assert_eq!(page.total, Some(5));
        seen.extend(page.rows.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<_> = ids.iter().step_by(2).copied().collect();
    assert_eq!(seen, expected);
}

#[test]
fn trash_and_counts_span_many_bitmap_chunks() {
    let (db, me) = setup();
    let ids = db
        .write_batch(&me, |batch| {
            (0..9_000)
                .map(|i| {
                    batch.create_id(
                        ObjectType::Contact,
                        &input(json!({"name": format!("c{i}")})),
                    )
                })
                .collect::<prismdb::Result<Vec<_>>>()
        })
        .unwrap();
    let doomed: Vec<_> = ids.iter().copied().step_by(7).collect();
    db.write_batch(&me, |batch| {
        doomed
            .iter()
            .try_for_each(|id| batch.delete(ObjectType::Contact, *id))
    })
    .unwrap();
    common::assert_consistent(&db);
    assert_eq!(
        db.count(&me, ObjectType::Contact).unwrap(),
        (ids.len() - doomed.len()) as u64
    );
    let mut request = ListRequest::first(1000);
    let mut trashed = Vec::new();
    loop {
        let page = db.trash(&me, ObjectType::Contact, &request).unwrap();
        trashed.extend(page.rows.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(trashed, doomed);
    let first = db.get(&me, ObjectType::Contact, ids[1]).unwrap();
    assert_eq!(
        first.properties["name"], "c1",
        "create_id stores the record like create"
    );
    db.restore(&me, ObjectType::Contact, doomed[1000]).unwrap();
    common::assert_consistent(&db);
}

#[test]
fn referenced_names_follow_renames_and_deletes() {
    let (db, me) = setup();
    let org = common::organization(&db, &me, json!({"name": "Acme"}));
    contact(
        &db,
        &me,
        json!({"name": "Ada", "organization": org.id.to_string()}),
    );
    let name_on_page = |db: &prismdb::Database| {
        db.list(&me, ObjectType::Contact, &ListRequest::first(10))
            .unwrap()
            .rows[0]
            .properties["organization"]["properties"]["name"]
            .clone()
    };
    assert_eq!(name_on_page(&db), "Acme");
    let snapshot = db.snapshot().unwrap();
    db.patch(
        &me,
        ObjectType::Organization,
        org.id,
        &input(json!({"name": "Acme Corp"})),
    )
    .unwrap();
    assert_eq!(name_on_page(&db), "Acme Corp");
    let old = snapshot
        .list(&me, ObjectType::Contact, &ListRequest::first(10))
        .unwrap();
    assert_eq!(
        old.rows[0].properties["organization"]["properties"]["name"], "Acme",
        "a snapshot keeps its names"
    );
    assert_eq!(name_on_page(&db), "Acme Corp");
    db.delete(&me, ObjectType::Organization, org.id).unwrap();
    assert_eq!(name_on_page(&db), serde_json::Value::Null);
}
