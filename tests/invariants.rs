//! Property tests of the store's invariants: stable pagination under writes, uniqueness
//! under any sequence of writes (also from several threads), and integrity after any
//! sequence of operations.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use common::{input, setup};
use prismdb::{Database, ListRequest, ObjectType, Principal};
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

const C: ObjectType = ObjectType::Contact;

fn live_ids(db: &Database, me: &Principal) -> Vec<Uuid> {
    let mut request = ListRequest::first(1000);
    let mut ids = Vec::new();
    loop {
        let page = db.list(me, C, &request).unwrap();
        ids.extend(page.rows.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => return ids,
        }
    }
}

#[derive(Clone, Debug)]
enum Between {
    Create,
    Delete(usize),
    Restore(usize),
}

fn between() -> impl Strategy<Value = Between> {
    prop_oneof![
        2 => Just(Between::Create),
        2 => any::<usize>().prop_map(Between::Delete),
        1 => any::<usize>().prop_map(Between::Restore),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Walking all pages while creates, deletes and restores run between pages returns every
    /// record that was live throughout exactly once, in id order, and nothing twice.
    #[test]
    fn pagination_is_stable_under_writes(
        initial in 0usize..60,
        limit in 1u32..12,
        writes in prop::collection::vec(prop::collection::vec(between(), 0..4), 0..40),
    ) {
        let (db, me) = setup();
        let mut all: Vec<Uuid> = (0..initial)
            .map(|i| db.create(&me, C, &input(json!({"name": format!("c{i}")}))).unwrap().id)
            .collect();
        let mut touched: BTreeSet<Uuid> = BTreeSet::new();
        let before: BTreeSet<Uuid> = all.iter().copied().collect();
        let mut request = ListRequest::first(limit);
        let mut seen = Vec::new();
        let mut round = 0;
        loop {
            let page = db.list(&me, C, &request).unwrap();
            seen.extend(page.rows.iter().map(|r| r.id));
            let Some(cursor) = page.next_cursor else { break };
            request.cursor = Some(cursor);
            for op in writes.get(round).cloned().unwrap_or_default() {
                match op {
                    Between::Create => all.push(db.create(&me, C, &input(json!({"name": "new"}))).unwrap().id),
                    Between::Delete(i) if !all.is_empty() => {
                        let id = all[i % all.len()];
                        touched.insert(id);
                        let _ = db.delete(&me, C, id);
                    }
                    Between::Restore(i) if !all.is_empty() => {
                        let id = all[i % all.len()];
                        touched.insert(id);
                        let _ = db.restore(&me, C, id);
                    }
                    _ => {}
                }
            }
            round += 1;
        }
        prop_assert!(seen.windows(2).all(|w| w[0] < w[1]), "strictly increasing ids, none twice");
        let seen_set: BTreeSet<Uuid> = seen.iter().copied().collect();
        for id in before.difference(&touched) {
            prop_assert!(seen_set.contains(id), "record {id} live throughout was skipped");
        }
        let known: BTreeSet<Uuid> = all.iter().copied().collect();
        prop_assert!(seen_set.is_subset(&known));
    }
}

#[derive(Clone, Debug)]
enum UniqueOp {
    Create(u8),
    Upsert(u8, bool),
    Patch(usize, u8),
    Delete(usize),
    Restore(usize),
}

fn unique_op() -> impl Strategy<Value = UniqueOp> {
    prop_oneof![
        (0u8..6).prop_map(UniqueOp::Create),
        (0u8..6, any::<bool>()).prop_map(|(v, upper)| UniqueOp::Upsert(v, upper)),
        (any::<usize>(), 0u8..6).prop_map(|(i, v)| UniqueOp::Patch(i, v)),
        any::<usize>().prop_map(UniqueOp::Delete),
        any::<usize>().prop_map(UniqueOp::Restore),
    ]
}

fn email(v: u8, upper: bool) -> String {
    let text = format!("person{v}@example.com");
    if upper {
        text.to_uppercase()
    } else {
        text
    }
}

fn apply_unique_op(db: &Database, me: &Principal, ids: &mut Vec<Uuid>, op: &UniqueOp) {
    let pick = |i: &usize, ids: &Vec<Uuid>| (!ids.is_empty()).then(|| ids[i % ids.len()]);
    match op {
        UniqueOp::Create(v) => {
            if let Ok(r) = db.create(me, C, &input(json!({"email": email(*v, false)}))) {
                ids.push(r.id);
            }
        }
        UniqueOp::Upsert(v, upper) => {
            if let Ok((r, true)) = db.upsert(
                me,
                C,
                "email",
                &email(*v, *upper),
                &input(json!({"name": "u"})),
            ) {
                ids.push(r.id);
            }
        }
        UniqueOp::Patch(i, v) => {
            if let Some(id) = pick(i, ids) {
                let _ = db.patch(me, C, id, &input(json!({"email": email(*v, true)})));
            }
        }
        UniqueOp::Delete(i) => {
            if let Some(id) = pick(i, ids) {
                let _ = db.delete(me, C, id);
            }
        }
        UniqueOp::Restore(i) => {
            if let Some(id) = pick(i, ids) {
                let _ = db.restore(me, C, id);
            }
        }
    }
}

fn assert_no_duplicate_emails(db: &Database, me: &Principal) -> Result<(), TestCaseError> {
    let mut holders: HashMap<String, Uuid> = HashMap::new();
    let mut request = ListRequest::first(1000);
    loop {
        let page = db.list(me, C, &request).unwrap();
        for row in &page.rows {
            if let Some(email) = row.properties.get("email").and_then(|v| v.as_str()) {
                let previous = holders.insert(email.to_lowercase(), row.id);
                prop_assert!(
                    previous.is_none(),
                    "{email} held by {previous:?} and {}",
                    row.id
                );
            }
        }
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => return Ok(()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// No sequence of create, upsert, patch, delete and restore leaves two live records with
    /// the same e-mail (compared case-insensitively).
    #[test]
    fn unique_values_stay_unique(ops in prop::collection::vec(unique_op(), 1..60)) {
        let (db, me) = setup();
        let mut ids = Vec::new();
        for op in &ops {
            apply_unique_op(&db, &me, &mut ids, op);
            assert_no_duplicate_emails(&db, &me)?;
        }
        let report = db.verify_integrity().unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.problems);
    }

    /// The same from four threads at once.
    #[test]
    fn unique_values_stay_unique_across_threads(
        ops in prop::collection::vec(prop::collection::vec(unique_op(), 1..25), 4),
    ) {
        let (db, me) = setup();
        let db = Arc::new(db);
        let handles: Vec<_> = ops
            .into_iter()
            .map(|thread_ops| {
                let (db, me) = (db.clone(), me.clone());
                std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    for op in &thread_ops {
                        apply_unique_op(&db, &me, &mut ids, op);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_no_duplicate_emails(&db, &me)?;
        let report = db.verify_integrity().unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.problems);
    }
}

#[derive(Clone, Debug)]
enum Op {
    CreateOrg(u8),
    CreateContact(u8, Option<u8>, Option<usize>),
    Patch(usize, Option<u8>, Option<u8>),
    PatchOrg(usize, Option<usize>),
    Delete(usize, bool),
    Restore(usize),
    Duplicate(usize),
    Upsert(u8),
    CreateDeal(u8, i32),
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..8).prop_map(Op::CreateOrg),
        (
            0u8..8,
            prop::option::of(0u8..8),
            prop::option::of(any::<usize>())
        )
            .prop_map(|(n, e, o)| Op::CreateContact(n, e, o)),
        (
            any::<usize>(),
            prop::option::of(0u8..8),
            prop::option::of(0u8..8)
        )
            .prop_map(|(i, n, e)| Op::Patch(i, n, e)),
        (any::<usize>(), prop::option::of(any::<usize>())).prop_map(|(i, o)| Op::PatchOrg(i, o)),
        (any::<usize>(), any::<bool>()).prop_map(|(i, org)| Op::Delete(i, org)),
        any::<usize>().prop_map(Op::Restore),
        any::<usize>().prop_map(Op::Duplicate),
        (0u8..8).prop_map(Op::Upsert),
        (0u8..6, -5i32..5).prop_map(|(s, a)| Op::CreateDeal(s, a)),
        Just(Op::Purge),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// After any sequence of operations, every index, bitmap and counter agrees with the
    /// records, and count equals the number of listed records.
    #[test]
    fn integrity_holds_after_any_sequence(ops in prop::collection::vec(op(), 1..50)) {
        let dir = tempfile::tempdir().unwrap();
        let options = prismdb::Options {
            durability: prismdb::Durability::Eventual,
            trash_retention: std::time::Duration::ZERO,
            ..Default::default()
        };
        let db = Database::open_with(dir.path().join("db"), options).unwrap();
        let me = Principal::member(Uuid::new_v4(), Uuid::new_v4());
        let stages = ["lead", "qualified", "proposal", "negotiation", "won", "lost"];
        let mut contacts: Vec<Uuid> = Vec::new();
        let mut orgs: Vec<Uuid> = Vec::new();
        for op in &ops {
            let _ = match op {
                Op::CreateOrg(n) => db
                    .create(&me, ObjectType::Organization, &input(json!({"name": format!("o{n}"), "domain": format!("d{n}.io")})))
                    .map(|r| orgs.push(r.id)),
                Op::CreateContact(n, e, o) => {
                    let mut props = json!({"name": format!("c{n}")});
                    if let Some(e) = e { props["email"] = json!(format!("p{e}@x.io")); }
                    if let (Some(o), false) = (o, orgs.is_empty()) { props["organization"] = json!(orgs[o % orgs.len()].to_string()); }
                    db.create(&me, C, &input(props)).map(|r| contacts.push(r.id))
                }
                Op::Patch(i, n, e) if !contacts.is_empty() => {
                    let props = json!({"name": n.map(|n| format!("c{n}")), "email": e.map(|e| format!("P{e}@x.io"))});
                    db.patch(&me, C, contacts[i % contacts.len()], &input(props)).map(|_| ())
                }
                Op::PatchOrg(i, o) if !contacts.is_empty() => {
                    let org = o.filter(|_| !orgs.is_empty()).map(|o| orgs[o % orgs.len()].to_string());
                    db.patch(&me, C, contacts[i % contacts.len()], &input(json!({"organization": org}))).map(|_| ())
                }
                Op::Delete(i, false) if !contacts.is_empty() => db.delete(&me, C, contacts[i % contacts.len()]),
                Op::Delete(i, true) if !orgs.is_empty() => db.delete(&me, ObjectType::Organization, orgs[i % orgs.len()]),
                Op::Restore(i) if !contacts.is_empty() => db.restore(&me, C, contacts[i % contacts.len()]).map(|_| ()),
                Op::Duplicate(i) if !contacts.is_empty() => db.duplicate(&me, C, contacts[i % contacts.len()]).map(|r| contacts.push(r.id)),
                Op::Upsert(e) => db
                    .upsert(&me, C, "email", &format!("p{e}@x.io"), &input(json!({"title": "t"})))
                    .map(|(r, created)| if created { contacts.push(r.id) }),
                Op::CreateDeal(s, a) => db
                    .create(&me, ObjectType::Deal, &input(json!({"stage": stages[*s as usize], "amount": a})))
                    .map(|_| ()),
                Op::Purge => db.purge_trash().map(|_| ()),
                _ => Ok(()),
            };
        }
        let report = db.verify_integrity().unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.problems);
        prop_assert_eq!(db.count(&me, C).unwrap(), live_ids(&db, &me).len() as u64);
    }
}
