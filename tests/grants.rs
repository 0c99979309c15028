//! Grants and access scopes (SPEC §6): every operation, as an owner, a group member, a plain
//! member, an admin and a member of another team; and a property test against a
//! brute-force check of the stored grants.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{assert_consistent, input};
use prismdb::{
    Database, Direction, Error, Grant, Level, ListRequest, ObjectType, Options, Principal,
    QueryRequest, RecordInput, SortKey,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

const D: ObjectType = ObjectType::Deal;

/// The people of the rule tests.
struct Cast {
    owner: Principal,
    grouped: Principal,
    member: Principal,
    admin: Principal,
    stranger: Principal,
    group: Uuid,
}

fn cast() -> Cast {
    let team = Uuid::new_v4();
    let group = Uuid::new_v4();
    Cast {
        owner: Principal::member(team, Uuid::new_v4()),
        grouped: Principal::member(team, Uuid::new_v4()).with_groups(vec![group]),
        member: Principal::member(team, Uuid::new_v4()),
        admin: Principal::admin(team, Uuid::new_v4()),
        stranger: Principal::member(Uuid::new_v4(), Uuid::new_v4()),
        group,
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

fn deal_with(db: &Database, who: &Principal, name: &str, grant: Option<Grant>) -> Uuid {
    let input = RecordInput {
        grant,
        ..input(json!({"name": name, "amount": 10}))
    };
    db.create(who, D, &input).unwrap().id
}

/// `{team: r, group: w, owner: a}` and a private one `{owner: a}`.
fn two_deals(db: &Database, c: &Cast) -> (Uuid, Uuid) {
    let shared = Grant {
        team: Some(Level::Read),
        groups: BTreeMap::from([(c.group, Level::Write)]),
        users: BTreeMap::from([(c.owner.user, Level::Admin)]),
    };
    let private = Grant {
        users: BTreeMap::from([(c.owner.user, Level::Admin)]),
        ..Grant::default()
    };
    (
        deal_with(db, &c.owner, "shared", Some(shared)),
        deal_with(db, &c.owner, "private", Some(private)),
    )
}

/// Every page of `request` as `who` sees it, concatenated.
fn all_pages(db: &Database, who: &Principal, mut request: QueryRequest) -> Vec<Uuid> {
    let mut ids = Vec::new();
    loop {
        let page = db.query(who, D, &request).unwrap();
        ids.extend(page.rows.iter().map(|r| r.id));
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => return ids,
        }
    }
}

fn visible(db: &Database, who: &Principal) -> Vec<Uuid> {
    let page = db.list(who, D, &ListRequest::first(100)).unwrap();
    page.rows.iter().map(|r| r.id).collect()
}

#[test]
fn reads_see_only_what_the_grant_allows() {
    let db = Database::in_memory().unwrap();
    let c = cast();
    let (shared, private) = two_deals(&db, &c);
    for (who, sees_private) in [(&c.owner, true), (&c.admin, true)] {
        assert_eq!(visible(&db, who), vec![shared, private]);
        assert_eq!(db.count(who, D).unwrap(), 2);
        assert_eq!(code(db.get(who, D, private)), "ok", "{sees_private}");
    }
    for who in [&c.grouped, &c.member] {
        assert_eq!(visible(&db, who), vec![shared]);
        assert_eq!(db.count(who, D).unwrap(), 1);
        assert_eq!(code(db.get(who, D, shared)), "ok");
        assert_eq!(code(db.get(who, D, private)), "not_found");
        assert_eq!(code(db.find(who, D, "name", "shared")), "ok");
        assert_eq!(code(db.find(who, D, "name", "private")), "not_found");
        assert_eq!(code(db.grant(who, D, private)), "not_found");
        let query = QueryRequest {
            filter: Some(json!({"amount": {"$gte": 0}})),
            include_total: true,
            ..Default::default()
        };
        let page = db.query(who, D, &query).unwrap();
        assert_eq!(page.total, Some(1));
        assert_eq!(page.rows.len(), 1);
    }
    // Another team sees nothing: not a record, not a count, not whether an id exists.
    assert!(visible(&db, &c.stranger).is_empty());
    assert_eq!(db.count(&c.stranger, D).unwrap(), 0);
    for id in [shared, private] {
        assert_eq!(code(db.get(&c.stranger, D, id)), "not_found");
        assert_eq!(code(db.grant(&c.stranger, D, id)), "not_found");
        let patched = db.patch(&c.stranger, D, id, &input(json!({"name": "x"})));
        assert_eq!(code(patched), "not_found");
        assert_eq!(code(db.delete(&c.stranger, D, id)), "not_found");
        assert_eq!(code(db.restore(&c.stranger, D, id)), "not_found");
        assert_eq!(code(db.duplicate(&c.stranger, D, id)), "not_found");
        let open = Grant::default_for(c.stranger.user);
        assert_eq!(
            code(db.update_grant(&c.stranger, D, id, &open)),
            "not_found"
        );
    }
    let trash = db.trash(&c.stranger, D, &ListRequest::first(10)).unwrap();
    assert!(trash.rows.is_empty());
    // A member cannot copy what it cannot read either.
    assert_eq!(code(db.duplicate(&c.member, D, private)), "not_found");
    assert_eq!(code(db.find(&c.stranger, D, "name", "shared")), "not_found");
    assert_consistent(&db);
}

#[test]
fn changes_need_write_and_deletes_need_admin() {
    let db = Database::in_memory().unwrap();
    let c = cast();
    let (shared, private) = two_deals(&db, &c);
    let rename = |who: &Principal, id| db.patch(who, D, id, &input(json!({"name": "renamed"})));
    assert_eq!(code(rename(&c.member, shared)), "permission_denied");
    assert_eq!(code(rename(&c.member, private)), "not_found");
    assert_eq!(code(rename(&c.grouped, shared)), "ok");
    assert_eq!(code(rename(&c.admin, private)), "ok");
    // Delete, restore and grant changes need `a`.
    assert_eq!(code(db.delete(&c.grouped, D, shared)), "permission_denied");
    assert_eq!(code(db.delete(&c.member, D, shared)), "permission_denied");
    assert_eq!(code(db.delete(&c.owner, D, shared)), "ok");
    assert_eq!(code(db.restore(&c.member, D, shared)), "permission_denied");
    assert_eq!(code(db.restore(&c.member, D, private)), "not_found");
    assert_eq!(code(db.restore(&c.owner, D, shared)), "ok");
    let open = Grant {
        team: Some(Level::Admin),
        ..Grant::default()
    };
    assert_eq!(
        code(db.update_grant(&c.grouped, D, shared, &open)),
        "permission_denied"
    );
    assert_eq!(
        code(db.update_grant(&c.member, D, private, &open)),
        "not_found"
    );
    assert_eq!(code(db.update_grant(&c.owner, D, private, &open)), "ok");
    // Now every member is admin of the formerly private deal.
    assert_eq!(visible(&db, &c.member), vec![shared, private]);
    assert_eq!(code(db.delete(&c.member, D, private)), "ok");
    // The trash shows only what the caller may read.
    let trash = db.trash(&c.grouped, D, &ListRequest::first(10)).unwrap();
    assert_eq!(trash.rows.len(), 1);
    assert_consistent(&db);
}

#[test]
fn grants_are_validated() {
    let db = Database::in_memory().unwrap();
    let c = cast();
    let (shared, _) = two_deals(&db, &c);
    let nobody_admin = Grant {
        team: Some(Level::Write),
        ..Grant::default()
    };
    let err = db
        .update_grant(&c.owner, D, shared, &nobody_admin)
        .unwrap_err();
    assert_eq!(err.code(), "invalid_value");
    assert!(err.to_string().contains("\"a\""), "{err}");
    let refused = RecordInput {
        grant: Some(nobody_admin),
        ..input(json!({"name": "n"}))
    };
    assert_eq!(code(db.create(&c.owner, D, &refused)), "invalid_value");
    // Contacts carry no grant.
    let contact = db
        .create(&c.member, ObjectType::Contact, &input(json!({"name": "c"})))
        .unwrap();
    assert_eq!(
        code(db.grant(&c.member, ObjectType::Contact, contact.id)),
        "invalid_request"
    );
    let with_grant = RecordInput {
        grant: Some(Grant::default_for(c.member.user)),
        ..input(json!({"name": "c"}))
    };
    assert_eq!(
        code(db.create(&c.member, ObjectType::Contact, &with_grant)),
        "invalid_value"
    );
    // The JSON shape refuses another team's key.
    let other_team = json!({"team_id": {Uuid::new_v4().to_string(): "a"}});
    let err = Grant::from_json(c.owner.team, &other_team).unwrap_err();
    assert_eq!(err.code(), "invalid_value");
    assert_consistent(&db);
}

#[test]
fn new_records_get_the_default_grant_and_copies_keep_theirs() {
    let db = Database::in_memory().unwrap();
    let c = cast();
    let made = deal_with(&db, &c.owner, "d", None);
    let grant = db.grant(&c.member, D, made).unwrap();
    assert_eq!(grant, Grant::default_for(c.owner.user));
    let shape = grant.to_json(c.owner.team);
    assert_eq!(shape["team_id"], json!({c.owner.team.to_string(): "w"}));
    assert_eq!(shape["user_id"], json!([{c.owner.user.to_string(): "a"}]));
    // The default lets every member write but only the creator delete.
    let rename = input(json!({"name": "e"}));
    assert_eq!(code(db.patch(&c.member, D, made, &rename)), "ok");
    assert_eq!(code(db.delete(&c.member, D, made)), "permission_denied");
    // A copy keeps the grant and makes the duplicating user admin.
    let copy = db.duplicate(&c.member, D, made).unwrap();
    let copied = db.grant(&c.member, D, copy.id).unwrap();
    assert_eq!(copied.team, Some(Level::Write));
    assert_eq!(copied.users[&c.owner.user], Level::Admin);
    assert_eq!(copied.users[&c.member.user], Level::Admin);
    assert_eq!(code(db.delete(&c.member, D, copy.id)), "ok");
    assert_consistent(&db);
}

#[test]
fn events_are_written_only_by_the_system_and_read_through_grants() {
    let db = Database::in_memory().unwrap();
    let c = cast();
    let event = input(json!({"name": "kickoff"}));
    let refused = db.create(&c.admin, ObjectType::Event, &event);
    assert_eq!(code(refused), "read_only_type");
    let system = Principal::system(c.owner.team);
    let private = RecordInput {
        grant: Some(Grant {
            users: BTreeMap::from([(c.owner.user, Level::Admin)]),
            ..Grant::default()
        }),
        ..event
    };
    let made = db.create(&system, ObjectType::Event, &private).unwrap();
    assert_eq!(code(db.get(&c.owner, ObjectType::Event, made.id)), "ok");
    assert_eq!(
        code(db.get(&c.member, ObjectType::Event, made.id)),
        "not_found"
    );
    assert_eq!(db.count(&c.member, ObjectType::Event).unwrap(), 0);
    let open = Grant::default_for(c.member.user);
    let by_owner = db.update_grant(&c.owner, ObjectType::Event, made.id, &open);
    assert_eq!(code(by_owner), "read_only_type");
    let by_system = db.update_grant(&system, ObjectType::Event, made.id, &open);
    assert_eq!(code(by_system), "ok");
    assert_eq!(db.count(&c.member, ObjectType::Event).unwrap(), 1);
    assert_consistent(&db);
}

#[test]
fn upsert_and_paths_see_only_readable_records() {
    let db = Database::in_memory().unwrap();
    let c = cast();
    let (_, private) = two_deals(&db, &c);
    // The member cannot see the private deal, so an upsert by its name makes a new one.
    let (made, created) = db
        .upsert(
            &c.member,
            D,
            "name",
            "private",
            &input(json!({"amount": 3})),
        )
        .unwrap();
    assert!(created);
    assert_ne!(made.id, private);
    // Upserting onto a record the caller may only read is refused.
    let (_, created) = db
        .upsert(
            &c.grouped,
            D,
            "name",
            "shared",
            &input(json!({"amount": 4})),
        )
        .unwrap();
    assert!(!created);
    let refused = db.upsert(&c.member, D, "name", "shared", &input(json!({"amount": 5})));
    assert_eq!(code(refused), "permission_denied");
    // An action referencing the private deal: a path filter through it matches only for
    // those who may read the deal.
    let admin = &c.admin;
    let spec = prismdb::PropertySpec {
        slug: "deal".into(),
        kind: "reference".into(),
        target: Some("deal".into()),
        ..Default::default()
    };
    db.add_property(admin, ObjectType::Action, &spec).unwrap();
    let open_action = RecordInput {
        grant: Some(Grant {
            team: Some(Level::Admin),
            ..Grant::default()
        }),
        ..input(json!({"name": "call", "deal": private.to_string()}))
    };
    db.create(admin, ObjectType::Action, &open_action).unwrap();
    let through = QueryRequest {
        filter: Some(json!({"deal.name": "private"})),
        include_total: true,
        ..Default::default()
    };
    let total = |who: &Principal| db.query(who, ObjectType::Action, &through).unwrap().total;
    assert_eq!(total(&c.owner), Some(1));
    assert_eq!(total(&c.member), Some(0));
    assert_consistent(&db);
}

#[test]
fn purged_records_leave_no_grant_behind() {
    let options = Options {
        trash_retention: Duration::ZERO,
        ..Options::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_with(dir.path().join("db"), options).unwrap();
    let c = cast();
    let (shared, private) = two_deals(&db, &c);
    db.delete(&c.owner, D, shared).unwrap();
    db.delete(&c.owner, D, private).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(db.purge_trash().unwrap(), 2);
    assert_consistent(&db);
    assert_eq!(db.count(&c.owner, D).unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// Property test: random grants and principals against the stored grants, checked by hand.
// ---------------------------------------------------------------------------------------

/// A drawn grant: the team's level, and (pool index, level) entries of groups and users
/// (levels 1 `r`, 2 `w`, 3 `a`).
type Drawn = (Option<u8>, Vec<(usize, u8)>, Vec<(usize, u8)>);

/// A grant drawn from small pools of groups and users (index 0 of the users is the owner).
fn arb_grant() -> impl Strategy<Value = Drawn> {
    let level = 1u8..=3;
    (
        proptest::option::of(level.clone()),
        proptest::collection::vec((0usize..3, level.clone()), 0..3),
        proptest::collection::vec((0usize..4, level), 0..3),
    )
}

fn level(byte: u8) -> Level {
    [Level::Read, Level::Write, Level::Admin][usize::from(byte - 1)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For random grants and principals, list, query, count and find return exactly the
    /// records a brute-force check of the grants allows, and get/patch/delete answer
    /// `ok`, `permission_denied` or `not_found` as the caller's level says.
    #[test]
    fn operations_agree_with_the_stored_grants(
        grants in proptest::collection::vec(arb_grant(), 1..20),
        amounts in proptest::collection::vec(0i64..5, 20),
        caller_groups in proptest::collection::vec(0usize..3, 0..3),
        caller_user in 0usize..5,
        updates in proptest::collection::vec((0usize..20, arb_grant()), 0..4),
    ) {
        let db = Database::in_memory().unwrap();
        let team = Uuid::new_v4();
        let groups: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let users: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        let owner = Principal::member(team, users[0]);
        let build = |(team_level, gs, us): &Drawn| {
            let mut grant = Grant {
                team: team_level.map(level),
                groups: gs.iter().map(|(g, l)| (groups[*g], level(*l))).collect(),
                users: us.iter().map(|(u, l)| (users[*u], level(*l))).collect(),
            };
            grant.users.insert(users[0], Level::Admin); // someone must hold `a`
            grant
        };
        let mut model: Vec<(Uuid, Grant, i64)> = Vec::new();
        for (i, drawn) in grants.iter().enumerate() {
            let grant = build(drawn);
            let input = RecordInput {
                grant: Some(grant.clone()),
                ..input(json!({"name": format!("d{i}"), "amount": amounts[i]}))
            };
            let id = db.create(&owner, D, &input).unwrap().id;
            model.push((id, grant, amounts[i]));
        }
        let caller = Principal::member(team, users[caller_user])
            .with_groups(caller_groups.iter().map(|g| groups[*g]).collect());
        // Read once before the updates, so that a cached grant scope must not go stale.
        let before = model.iter().filter(|(_, g, _)| g.level_of(&caller).is_some()).count();
        prop_assert_eq!(db.count(&caller, D).unwrap(), before as u64);
        for (at, drawn) in &updates {
            if let Some((id, grant, _)) = model.get_mut(*at) {
                *grant = build(drawn);
                db.update_grant(&owner, D, *id, grant).unwrap();
            }
        }
        let allowed = |grant: &Grant| grant.level_of(&caller);
        // Queries, counts and finds.
        let readable: Vec<Uuid> = model.iter().filter(|(_, g, _)| allowed(g).is_some()).map(|(id, _, _)| *id).collect();
        prop_assert_eq!(db.count(&caller, D).unwrap(), readable.len() as u64);
        let listed: Vec<Uuid> = db.list(&caller, D, &ListRequest::first(100)).unwrap().rows.iter().map(|r| r.id).collect();
        prop_assert_eq!(&listed, &readable);
        let query = QueryRequest {
            filter: Some(json!({"amount": {"$gte": 2}})),
            include_total: true,
            limit: Some(3),
            ..Default::default()
        };
        let mut got = Vec::new();
        let mut request = query.clone();
        loop {
            let page = db.query(&caller, D, &request).unwrap();
            got.extend(page.rows.iter().map(|r| r.id));
            match page.next_cursor {
                Some(cursor) => request.cursor = Some(cursor),
                None => break,
            }
        }
        let want: Vec<Uuid> = model.iter().filter(|(_, g, a)| allowed(g).is_some() && *a >= 2).map(|(id, _, _)| *id).collect();
        prop_assert_eq!(got, want.clone());
        prop_assert_eq!(db.query(&caller, D, &query).unwrap().total, Some(want.len() as u64));
        // The grant scope is applied last to bitmap plans (built for sorted pages, counted
        // and skipped over for pages in id order) and first to plans that check records.
        let by_amount = vec![SortKey { property: "amount".into(), direction: Direction::Desc }];
        let sorted = QueryRequest { sort: by_amount, ..query.clone() };
        let mut want_sorted: Vec<(Uuid, i64)> = model.iter().filter(|(_, g, a)| allowed(g).is_some() && *a >= 2).map(|(id, _, a)| (*id, *a)).collect();
        want_sorted.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        let want_sorted: Vec<Uuid> = want_sorted.into_iter().map(|(id, _)| id).collect();
        prop_assert_eq!(all_pages(&db, &caller, sorted), want_sorted);
        let checked = QueryRequest { filter: Some(json!({"name": {"$ends_with": "1"}})), ..query.clone() };
        let want_checked: Vec<Uuid> = model.iter().enumerate().filter(|(i, (_, g, _))| allowed(g).is_some() && i.to_string().ends_with('1')).map(|(_, (id, _, _))| *id).collect();
        prop_assert_eq!(all_pages(&db, &caller, checked), want_checked);
        for (i, (id, grant, _)) in model.iter().enumerate() {
            let found = db.find(&caller, D, "name", &format!("d{i}"));
            let expected_get = if allowed(grant).is_some() { "ok" } else { "not_found" };
            prop_assert_eq!(code(found), expected_get);
            prop_assert_eq!(code(db.get(&caller, D, *id)), expected_get);
            let expected_patch = match allowed(grant) {
                None => "not_found",
                Some(l) if l < Level::Write => "permission_denied",
                Some(_) => "ok",
            };
            let patched = db.patch(&caller, D, *id, &input(json!({"amount": Value::Null})));
            prop_assert_eq!(code(patched), expected_patch);
        }
        prop_assert!(db.verify_integrity().unwrap().is_ok());
    }
}
