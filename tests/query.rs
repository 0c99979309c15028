//! The query engine against a brute-force oracle: random data, random filters (nested
//! and/or/not, every operator, a dotted path) and random sorts; the engine's pages,
//! concatenated, must equal the oracle's sorted result for several page sizes.

mod common;

use std::cmp::Ordering;
use std::collections::HashMap;

use common::{input, setup};
use prismdb::{
    Database, Direction, ObjectType, OptionSpec, Principal, PropertySpec, QueryRequest, SortKey,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use uuid::Uuid;

const C: ObjectType = ObjectType::Contact;
const STATUSES: [&str; 3] = ["a", "b", "c"];

fn spec(slug: &str, kind: &str, options: &[&str]) -> PropertySpec {
    PropertySpec {
        slug: slug.into(),
        kind: kind.into(),
        options: (!options.is_empty()).then(|| {
            options
                .iter()
                .map(|o| OptionSpec {
                    slug: (*o).into(),
                    label: None,
                })
                .collect()
        }),
        ..Default::default()
    }
}

#[derive(Clone, Debug)]
struct Row {
    score: Option<f64>,
    status: Option<usize>,
    tags: Vec<usize>,
    vip: Option<bool>,
    city: Option<String>,
    email: Option<usize>,
    org: Option<usize>,
    seen: Option<usize>,
    deleted: bool,
}

/// Instants of the `seen` datetime property: far apart and close together, so that range
/// bounds fall on whole and cut buckets.
const INSTANTS: [&str; 6] = [
    "1969-07-20T20:17:40Z",
    "1999-12-31T23:59:59Z",
    "2020-01-01T00:00:00Z",
    "2020-01-01T01:00:00Z",
    "2024-02-29T12:00:00Z",
    "2100-01-01T00:00:00Z",
];

fn row() -> impl Strategy<Value = Row> {
    (
        prop::option::of(prop_oneof![
            (-3i64..4).prop_map(|i| i as f64),
            (-3i64..4).prop_map(|i| i as f64 + 0.5),
            (-3000i64..3000).prop_map(|i| i as f64),
        ]),
        prop::option::of(0usize..3),
        prop::collection::vec(0usize..3, 0..3),
        prop::option::of(any::<bool>()),
        prop::option::of("[abAB]{0,5}"),
        prop::option::of(0usize..1000),
        prop::option::of(0usize..3),
        (
            prop::option::of(0usize..INSTANTS.len()),
            prop::bool::weighted(0.2),
        ),
    )
        .prop_map(
            |(score, status, tags, vip, city, email, org, (seen, deleted))| Row {
                score,
                status,
                tags,
                vip,
                city,
                email,
                org,
                seen,
                deleted,
            },
        )
}

/// Builds a database from rows; returns it, the principal and the org ids.
fn load(rows: &[Row]) -> (Database, Principal) {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    db.add_property(&admin, C, &spec("score", "number", &[]))
        .unwrap();
    db.add_property(&admin, C, &spec("status", "select", &STATUSES))
        .unwrap();
    db.add_property(&admin, C, &spec("tags", "multiselect", &["x", "y", "z"]))
        .unwrap();
    db.add_property(&admin, C, &spec("vip", "boolean", &[]))
        .unwrap();
    // Searchable: substring conditions on it read trigram bitmaps; indexed: sorted pages
    // by it may walk its value index.
    let city = PropertySpec {
        search: Some(true),
        indexed: Some(true),
        ..spec("city", "text", &[])
    };
    db.add_property(&admin, C, &city).unwrap();
    db.add_property(&admin, C, &spec("seen", "datetime", &[]))
        .unwrap();
    db.add_property(
        &admin,
        ObjectType::Organization,
        &spec("industry", "select", &["i0", "i1"]),
    )
    .unwrap();
    let orgs: Vec<Uuid> = (0..3)
        .map(|i| {
            let props = json!({"name": format!("Org{i}"), "industry": format!("i{}", i % 2)});
            db.create(&me, ObjectType::Organization, &input(props))
                .unwrap()
                .id
        })
        .collect();
    let mut used_emails = std::collections::HashSet::new();
    for row in rows {
        let mut props = Map::new();
        if let Some(s) = row.score {
            props.insert(
                "score".into(),
                if s.fract() == 0.0 {
                    json!(s as i64)
                } else {
                    json!(s)
                },
            );
        }
        if let Some(s) = row.status {
            props.insert("status".into(), json!(STATUSES[s]));
        }
        if !row.tags.is_empty() {
            props.insert(
                "tags".into(),
                json!(row
                    .tags
                    .iter()
                    .map(|t| ["x", "y", "z"][*t])
                    .collect::<Vec<_>>()),
            );
        }
        if let Some(v) = row.vip {
            props.insert("vip".into(), json!(v));
        }
        if let Some(c) = &row.city {
            props.insert("city".into(), json!(c));
        }
        if let Some(e) = row.email.filter(|e| used_emails.insert(*e)) {
            props.insert("email".into(), json!(format!("P{e}@x.io")));
        }
        if let Some(at) = row.seen {
            props.insert("seen".into(), json!(INSTANTS[at]));
        }
        if let Some(o) = row.org {
            props.insert("organization".into(), json!(orgs[o].to_string()));
        }
        let id = db.create(&me, C, &input(Value::Object(props))).unwrap().id;
        if row.deleted {
            db.delete(&me, C, id).unwrap();
        }
    }
    (db, me)
}

fn leaf() -> impl Strategy<Value = Value> {
    let num = prop_oneof![
        (-3i64..4).prop_map(|i| json!(i)),
        (-3i64..4).prop_map(|i| json!(i as f64 + 0.5)),
        (-3000i64..3000).prop_map(|i| json!(i)),
    ];
    let range_op = prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte"]);
    // "ORG<i>" stands for the id of organization i (see `with_org_ids`).
    let org = (0usize..3).prop_map(|i| json!(format!("ORG{i}")));
    let status = (0usize..3).prop_map(|s| json!(STATUSES[s]));
    let tag = (0usize..3).prop_map(|t| json!(["x", "y", "z"][t]));
    prop_oneof![
        (prop::sample::select(vec!["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]), num.clone()).prop_map(|(op, n)| json!({"score": {op: n}})),
        prop::collection::vec(num, 1..3).prop_map(|ns| json!({"score": {"$in": ns}})),
        any::<bool>().prop_map(|b| json!({"score": {"$exists": b}})),
        Just(json!({"score": null})),
        status.clone().prop_map(|s| json!({"status": s})),
        prop::collection::vec(status.clone(), 1..3).prop_map(|ss| json!({"status": {"$nin": ss}})),
        prop::collection::vec(status, 1..3).prop_map(|ss| json!({"status": {"$in": ss}})),
        tag.clone().prop_map(|t| json!({"tags": {"$contains": t}})),
        prop::collection::vec(tag.clone(), 1..3).prop_map(|ts| json!({"tags": {"$in": ts}})),
        prop::collection::vec(tag, 1..3).prop_map(|ts| json!({"tags": {"$all": ts}})),
        any::<bool>().prop_map(|b| json!({"tags": {"$exists": b}})),
        any::<bool>().prop_map(|b| json!({"vip": b})),
        (prop::sample::select(vec!["$contains", "$starts_with", "$ends_with", "$eq", "$gt", "$lte"]), "[aAb]{0,4}").prop_map(|(op, t)| json!({"city": {op: t}})),
        (0usize..1000).prop_map(|e| json!({"email": format!("p{e}@X.io")})),
        (0usize..2).prop_map(|i| json!({"organization.industry": format!("i{i}")})),
        org.clone().prop_map(|o| json!({"organization": o})),
        prop::collection::vec(org, 1..3).prop_map(|os| json!({"organization": {"$in": os}})),
        any::<bool>().prop_map(|b| json!({"organization": {"$exists": b}})),
        (range_op, 0usize..INSTANTS.len()).prop_map(|(op, at)| json!({"seen": {op: INSTANTS[at]}})),
        (0usize..INSTANTS.len()).prop_map(|at| json!({"seen": INSTANTS[at]})),
        (0usize..3).prop_map(|i| json!({"organization.name": {"$ends_with": format!("{i}")}})),
        any::<bool>().prop_map(|b| json!({"created_at": {"$lt": if b { "2000-01-01T00:00:00Z" } else { "2999-01-01T00:00:00Z" }}})),
    ]
}

fn filter() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(|fs| json!({"$and": fs})),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|fs| json!({"$or": fs})),
            inner.prop_map(|f| json!({"$not": f})),
        ]
    })
}

fn sort() -> impl Strategy<Value = Vec<SortKey>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                "score",
                "status",
                "city",
                "vip",
                "created_at",
                "seen",
                "score",
            ]),
            any::<bool>(),
        )
            .prop_map(|(p, desc)| SortKey {
                property: p.into(),
                direction: if desc {
                    Direction::Desc
                } else {
                    Direction::Asc
                },
            }),
        0..3,
    )
}

// ---------------------------------------------------------------------------------------
// The oracle: SPEC §4 semantics on the JSON that reads return.
// ---------------------------------------------------------------------------------------

struct World {
    orgs: HashMap<String, Map<String, Value>>,
}

fn eval(world: &World, filter: &Value, record: &Map<String, Value>) -> bool {
    filter
        .as_object()
        .unwrap()
        .iter()
        .all(|(key, value)| match key.as_str() {
            "$and" => value
                .as_array()
                .unwrap()
                .iter()
                .all(|f| eval(world, f, record)),
            "$or" => value
                .as_array()
                .unwrap()
                .iter()
                .any(|f| eval(world, f, record)),
            "$not" => !eval(world, value, record),
            field => condition(world, field, value, record),
        })
}

fn condition(world: &World, field: &str, value: &Value, record: &Map<String, Value>) -> bool {
    if let Some((via, rest)) = field.split_once('.') {
        let Some(target) = record
            .get(via)
            .and_then(Value::as_str)
            .and_then(|id| world.orgs.get(id))
        else {
            return false;
        };
        return condition(world, rest, value, target);
    }
    let held = record.get(field);
    match value {
        Value::Object(ops) => ops
            .iter()
            .all(|(op, operand)| apply(field, held, op, operand)),
        shorthand => apply(field, held, "$eq", shorthand),
    }
}

fn equal(field: &str, held: &Value, wanted: &Value) -> bool {
    match (held, wanted) {
        (Value::Array(items), w) => items.contains(w),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) if field == "email" => {
            a.to_lowercase() == b.to_lowercase()
        }
        (a, b) => a == b,
    }
}

fn order(held: &Value, bound: &Value) -> Option<Ordering> {
    match (held, bound) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        _ => None,
    }
}

fn apply(field: &str, held: Option<&Value>, op: &str, operand: &Value) -> bool {
    let text = |h: Option<&Value>| h.and_then(Value::as_str).map(str::to_lowercase);
    let needle = || operand.as_str().unwrap_or_default().to_lowercase();
    match op {
        "$eq" if operand.is_null() => held.is_none(),
        "$eq" => held.is_some_and(|h| equal(field, h, operand)),
        "$ne" => !apply(field, held, "$eq", operand),
        "$in" => operand
            .as_array()
            .unwrap()
            .iter()
            .any(|w| apply(field, held, "$eq", w)),
        "$nin" => !apply(field, held, "$in", operand),
        "$all" => operand
            .as_array()
            .unwrap()
            .iter()
            .all(|w| apply(field, held, "$eq", w)),
        "$exists" => held.is_some() == operand.as_bool().unwrap(),
        "$contains" if field == "tags" => apply(field, held, "$eq", operand),
        "$contains" => text(held).is_some_and(|t| t.contains(&needle())),
        "$starts_with" => text(held).is_some_and(|t| t.starts_with(&needle())),
        "$ends_with" => text(held).is_some_and(|t| t.ends_with(&needle())),
        "$lt" if field == "created_at" => operand.as_str().unwrap() > "2500",
        "$gt" => held
            .and_then(|h| order(h, operand))
            .is_some_and(Ordering::is_gt),
        "$gte" => held
            .and_then(|h| order(h, operand))
            .is_some_and(Ordering::is_ge),
        "$lt" => held
            .and_then(|h| order(h, operand))
            .is_some_and(Ordering::is_lt),
        "$lte" => held
            .and_then(|h| order(h, operand))
            .is_some_and(Ordering::is_le),
        other => panic!("oracle does not know {other}"),
    }
}

fn sort_cmp(
    keys: &[SortKey],
    a: &(Uuid, Map<String, Value>),
    b: &(Uuid, Map<String, Value>),
) -> Ordering {
    for key in keys {
        let rank = |v: &Value| -> Value {
            match (key.property.as_str(), v) {
                ("status", Value::String(s)) => {
                    json!(STATUSES.iter().position(|x| x == s).unwrap())
                }
                ("vip", Value::Bool(b)) => json!(u8::from(*b)),
                _ => v.clone(),
            }
        };
        let (x, y) = (
            a.1.get(&key.property).map(rank),
            b.1.get(&key.property).map(rank),
        );
        let ord = match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let o = order(&x, &y).unwrap_or(Ordering::Equal);
                if key.direction == Direction::Desc {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.0.cmp(&b.0)
}

/// `filter` with every "ORG<i>" replaced by the id of organization i.
fn with_org_ids(filter: &Value, orgs: &[Uuid]) -> Value {
    match filter {
        Value::String(s) => match s.strip_prefix("ORG").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => json!(orgs[i].to_string()),
            None => filter.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| with_org_ids(v, orgs)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), with_org_ids(v, orgs)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn all_pages(db: &Database, me: &Principal, mut request: QueryRequest) -> (Vec<Uuid>, Option<u64>) {
    let mut ids = Vec::new();
    let mut total = None;
    for _ in 0..10_000 {
        let page = db.query(me, C, &request).unwrap();
        total = total.or(page.total);
        ids.extend(page.rows.iter().map(|r| r.id));
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => return (ids, total),
        }
    }
    panic!("a walk of pages did not end");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn query_pages_equal_the_oracle(
        rows in prop::collection::vec(row(), 0..30),
        filter in filter(),
        keys in sort(),
        deleted in prop::bool::weighted(0.25),
        with_total in any::<bool>(),
    ) {
        let (db, me) = load(&rows);
        // Everything the oracle needs, read back through the public API.
        let everything = QueryRequest { limit: Some(1000), deleted, ..Default::default() };
        let records: Vec<(Uuid, Map<String, Value>)> = db
            .query(&me, C, &everything)
            .unwrap()
            .rows
            .into_iter()
            .map(|r| {
                let mut props: Map<String, Value> = r.properties.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
                if let Some(org) = props.get("organization").and_then(|o| o.get("id")).cloned() {
                    props.insert("organization".into(), org);
                }
                // RFC 3339 with a fixed-width fraction, so that text order is time order.
                if let Some(Value::String(at)) = props.get_mut("created_at") {
                    if !at.contains('.') {
                        *at = at.replace('Z', ".000000Z");
                    }
                }
                (r.id, props)
            })
            .collect();
        let orgs = db.query(&me, ObjectType::Organization, &QueryRequest { limit: Some(10), ..Default::default() }).unwrap();
        let world = World {
            orgs: orgs.rows.iter().map(|r| (r.id.to_string(), r.properties.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())).collect(),
        };
        let filter = with_org_ids(&filter, &orgs.rows.iter().map(|r| r.id).collect::<Vec<_>>());
        let mut expected: Vec<_> = records.iter().filter(|(_, r)| eval(&world, &filter, r)).cloned().collect();
        expected.sort_by(|a, b| sort_cmp(&keys, a, b));
        let expected: Vec<Uuid> = expected.into_iter().map(|(id, _)| id).collect();
        for limit in [1u32, 3, 7, 50] {
            let request = QueryRequest {
                filter: Some(filter.clone()),
                sort: keys.clone(),
                limit: Some(limit),
                include_total: with_total,
                deleted,
                ..Default::default()
            };
            let (ids, total) = all_pages(&db, &me, request);
            prop_assert_eq!(&ids, &expected, "limit {}", limit);
            prop_assert_eq!(total, with_total.then_some(expected.len() as u64));
        }
    }
}

#[test]
fn bad_queries_name_what_is_wrong() {
    let (db, me) = setup();
    let cases = [
        (
            json!({"filter": {"nope": 1}}),
            "invalid_filter",
            "/filter/nope",
        ),
        (
            json!({"sort": [{"property": "organization"}]}),
            "invalid_filter",
            "/sort/0/property",
        ),
        (
            json!({"sort": [{"property": "x"}]}),
            "invalid_filter",
            "/sort/0/property",
        ),
        (json!({"limit": 0}), "invalid_request", "limit"),
        (json!({"cursor": "AAAA"}), "invalid_cursor", "cursor"),
    ];
    for (body, code, fragment) in cases {
        let request: QueryRequest = serde_json::from_value(body.clone()).unwrap();
        let err = db.query(&me, C, &request).unwrap_err();
        assert_eq!(err.code(), code, "{body}");
        assert!(
            err.message().contains(fragment),
            "{err} should mention {fragment}"
        );
    }
}

#[test]
fn a_cursor_belongs_to_its_query() {
    let (db, me) = setup();
    for i in 0..5 {
        db.create(&me, C, &input(json!({"name": format!("n{i}")})))
            .unwrap();
    }
    let request = QueryRequest {
        limit: Some(2),
        filter: Some(json!({"name": {"$starts_with": "n"}})),
        ..Default::default()
    };
    let cursor = db.query(&me, C, &request).unwrap().next_cursor.unwrap();
    let other = QueryRequest {
        limit: Some(2),
        filter: Some(json!({"name": {"$starts_with": "m"}})),
        cursor: Some(cursor),
        ..Default::default()
    };
    assert_eq!(
        db.query(&me, C, &other).unwrap_err().code(),
        "invalid_cursor"
    );
}

#[test]
fn substring_pages_without_a_total_match_those_with_one() {
    let (db, me) = setup();
    for i in 0..120 {
        db.create(
            &me,
            C,
            &input(
                json!({"name": format!("Person {i}"), "title": if i % 3 == 0 { "x" } else { "y" }}),
            ),
        )
        .unwrap();
    }
    for filter in [
        json!({"name": {"$contains": "son 1"}}),
        json!({"name": {"$ends_with": "7"}, "title": "x"}),
        json!({"$and": [{"created_at": {"$gt": "2000-01-01T00:00:00Z"}}, {"name": {"$starts_with": "PERSON 2"}}]}),
    ] {
        let walk = |include_total: bool| {
            let request = QueryRequest {
                filter: Some(filter.clone()),
                limit: Some(4),
                include_total,
                ..Default::default()
            };
            all_pages(&db, &me, request).0
        };
        let lazy = walk(false);
        assert!(!lazy.is_empty(), "{filter}");
        assert_eq!(lazy, walk(true), "{filter}");
        let names: Vec<String> = lazy
            .iter()
            .map(|id| {
                db.get(&me, C, *id).unwrap().properties["name"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
            })
            .collect();
        assert!(
            names.iter().all(|n| n.contains("son")),
            "{filter}: {names:?}"
        );
    }
}

#[derive(Clone, Debug)]
enum Write {
    Create(i64),
    Delete(usize),
    Rename(usize),
    Rescore(usize, i64),
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        (-5i64..5).prop_map(Write::Create),
        any::<usize>().prop_map(Write::Delete),
        any::<usize>().prop_map(Write::Rename),
        (any::<usize>(), -5i64..5).prop_map(|(i, s)| Write::Rescore(i, s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// SPEC §4: walking a sorted query while writers insert, patch and delete returns every
    /// record that matched and kept its sort key throughout exactly once, in order.
    #[test]
    fn sorted_pages_are_stable_under_writes(
        scores in prop::collection::vec(prop::option::of(-5i64..5), 0..40),
        limit in 1u32..8,
        desc in any::<bool>(),
        writes in prop::collection::vec(prop::collection::vec(write(), 0..4), 0..30),
    ) {
        let (db, me) = setup();
        let admin = Principal::admin(me.team, me.user);
        db.add_property(&admin, C, &spec("score", "number", &[])).unwrap();
        let create = |score: Option<i64>| db.create(&me, C, &input(json!({"name": "n", "score": score}))).unwrap().id;
        let mut all: Vec<(Uuid, Option<i64>)> = scores.iter().map(|s| (create(*s), *s)).collect();
        let initial = all.clone();
        let mut unstable = std::collections::HashSet::new();
        let direction = if desc { Direction::Desc } else { Direction::Asc };
        let mut request = QueryRequest {
            filter: Some(json!({"name": "n"})),
            sort: vec![SortKey { property: "score".into(), direction }],
            limit: Some(limit),
            ..Default::default()
        };
        let mut seen = Vec::new();
        let mut round = 0;
        loop {
            prop_assert!(round < 1_000, "the walk does not end");
            let page = db.query(&me, C, &request).unwrap();
            seen.extend(page.rows.iter().map(|r| r.id));
            let Some(cursor) = page.next_cursor else { break };
            request.cursor = Some(cursor);
            for w in writes.get(round).cloned().unwrap_or_default() {
                match w {
                    Write::Create(s) => all.push((create(Some(s)), Some(s))),
                    Write::Delete(i) if !all.is_empty() => {
                        let id = all[i % all.len()].0;
                        unstable.insert(id);
                        let _ = db.delete(&me, C, id);
                    }
                    Write::Rename(i) if !all.is_empty() => {
                        let _ = db.patch(&me, C, all[i % all.len()].0, &input(json!({"title": "t"})));
                    }
                    Write::Rescore(i, s) if !all.is_empty() => {
                        let id = all[i % all.len()].0;
                        unstable.insert(id);
                        let _ = db.patch(&me, C, id, &input(json!({"score": s})));
                    }
                    _ => {}
                }
            }
            round += 1;
        }
        let mut stable: Vec<(Uuid, Option<i64>)> = initial.into_iter().filter(|(id, _)| !unstable.contains(id)).collect();
        stable.sort_by(|a, b| {
            let by_score = match (a.1, b.1) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => if desc { y.cmp(&x) } else { x.cmp(&y) },
            };
            by_score.then(a.0.cmp(&b.0))
        });
        let stable_ids: Vec<Uuid> = stable.iter().map(|(id, _)| *id).collect();
        let seen_stable: Vec<Uuid> = seen.iter().copied().filter(|id| stable_ids.contains(id)).collect();
        prop_assert_eq!(seen_stable, stable_ids, "stable records exactly once, in order");
    }
}

/// A path filter gives the same records whether it reads a reference bitmap per target (few
/// targets) or the reference column (many), also after references move and records go.
#[test]
fn path_filters_agree_on_both_plans() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    db.add_property(
        &admin,
        ObjectType::Organization,
        &spec("industry", "select", &["i0", "i1", "i2"]),
    )
    .unwrap();
    let orgs: Vec<Uuid> = (0..3)
        .map(|i| {
            let props = json!({"name": format!("Org{i}"), "industry": format!("i{i}")});
            db.create(&me, ObjectType::Organization, &input(props))
                .unwrap()
                .id
        })
        .collect();
    let contacts: Vec<Uuid> = (0..1200)
        .map(|i| {
            let mut props = json!({"name": format!("c{i}")});
            if i % 7 != 0 {
                props["organization"] = json!(orgs[i % 3].to_string());
            }
            db.create(&me, C, &input(props)).unwrap().id
        })
        .collect();
    for (i, id) in contacts.iter().enumerate().step_by(11) {
        let moved = json!({"organization": orgs[(i + 1) % 3].to_string()});
        db.patch(&me, C, *id, &input(moved)).unwrap();
    }
    for id in contacts.iter().step_by(13) {
        db.delete(&me, C, *id).unwrap();
    }
    db.delete(&me, ObjectType::Organization, orgs[2]).unwrap();
    let everything = QueryRequest {
        limit: Some(1000),
        ..Default::default()
    };
    let mut live = Vec::new();
    let mut request = everything.clone();
    loop {
        let page = db.query(&me, C, &request).unwrap();
        live.extend(page.rows.iter().map(|r| {
            let org = r
                .properties
                .get("organization")
                .and_then(|o| o.get("id"))
                .cloned();
            (
                r.id,
                org.and_then(|o| o.as_str().and_then(|s| s.parse::<Uuid>().ok())),
            )
        }));
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => break,
        }
    }
    // One target (1 × 800 < 1,109 live contacts): bitmaps; every industry: the column.
    for filter in [
        json!({"organization.industry": "i0"}),
        json!({"organization.industry": {"$in": ["i0", "i1", "i2"]}}),
        json!({"organization.name": {"$starts_with": "org"}}),
    ] {
        let wanted: Vec<usize> = match filter["organization.industry"].as_str() {
            Some("i0") => vec![0],
            _ => vec![0, 1],
        };
        let expected: Vec<Uuid> = live
            .iter()
            .filter(|(_, org)| org.is_some_and(|o| wanted.iter().any(|w| orgs[*w] == o)))
            .map(|(id, _)| *id)
            .collect();
        let request = QueryRequest {
            filter: Some(filter.clone()),
            limit: Some(1000),
            include_total: true,
            ..Default::default()
        };
        let (ids, total) = all_pages(&db, &me, request);
        assert_eq!(ids, expected, "{filter}");
        assert_eq!(total, Some(expected.len() as u64), "{filter}");
    }
    assert!(db.verify_integrity().unwrap().is_ok());
}

/// Substring filters on indexed text find records whose trigram bits are pending (written
/// one at a time), folded (past the fold threshold), stale (renamed) or restored.
#[test]
fn substring_filters_see_pending_and_folded_trigrams() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    let city = PropertySpec {
        search: Some(true),
        ..spec("city", "text", &[])
    };
    db.add_property(&admin, C, &city).unwrap();
    let words = ["Amsterdam", "Rotterdam", "Berlin", "Bern", "Paris"];
    let ids: Vec<Uuid> = (0..300)
        .map(|i| {
            let props = json!({"city": format!("{} {i}", words[i % words.len()])});
            db.create(&me, C, &input(props)).unwrap().id
        })
        .collect();
    let check = |phase: &str| {
        for needle in ["dam", "ERL", "bern", "ris 2", "rdam 1", "zzz"] {
            for op in ["$contains", "$starts_with", "$ends_with"] {
                let filter = json!({"city": {op: needle}});
                let mut expected = Vec::new();
                let mut request = QueryRequest {
                    limit: Some(1000),
                    ..Default::default()
                };
                loop {
                    let page = db.query(&me, C, &request).unwrap();
                    for row in &page.rows {
                        let text = row.properties.get("city").and_then(Value::as_str);
                        let lower = text.map(str::to_lowercase).unwrap_or_default();
                        let needle = needle.to_lowercase();
                        let hit = text.is_some()
                            && match op {
                                "$contains" => lower.contains(&needle),
                                "$starts_with" => lower.starts_with(&needle),
                                _ => lower.ends_with(&needle),
                            };
                        if hit {
                            expected.push(row.id);
                        }
                    }
                    match page.next_cursor {
                        Some(c) => request.cursor = Some(c),
                        None => break,
                    }
                }
                for with_total in [false, true] {
                    let request = QueryRequest {
                        filter: Some(filter.clone()),
                        limit: Some(7),
                        include_total: with_total,
                        ..Default::default()
                    };
                    let (got, _) = all_pages(&db, &me, request);
                    assert_eq!(got, expected, "{phase}: {filter}");
                }
            }
        }
        let report = db.verify_integrity().unwrap();
        assert!(report.is_ok(), "{phase}: {:?}", report.problems);
    };
    check("created one by one");
    for (i, id) in ids.iter().enumerate().step_by(3) {
        let props = json!({"city": format!("{} {i}", words[(i + 2) % words.len()])});
        db.patch(&me, C, *id, &input(props)).unwrap();
    }
    check("renamed");
    // One batch renaming more records than the fold threshold: the first ones are marked
    // pending, the later ones get their trigram bits at once, and the batch folds.
    db.write_batch(&me, |batch| {
        for (i, id) in ids.iter().enumerate().skip(1).step_by(2) {
            let props = json!({"city": format!("{} {i}", words[(i + 1) % words.len()])});
            batch.patch(C, *id, &input(props))?;
        }
        Ok(())
    })
    .unwrap();
    check("renamed in one batch");
    for id in ids.iter().step_by(4) {
        db.delete(&me, C, *id).unwrap();
    }
    for id in ids.iter().step_by(8) {
        db.restore(&me, C, *id).unwrap();
    }
    check("deleted and restored");
}

/// Sorting by indexed text walks its value index; values longer than the index's 256 bytes
/// share an index entry and are ordered by their full text; pages with a cursor continue
/// exactly where the last one ended.
#[test]
fn sorted_walks_order_long_text_by_the_whole_value() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    let city = PropertySpec {
        indexed: Some(true),
        ..spec("city", "text", &[])
    };
    db.add_property(&admin, C, &city).unwrap();
    let long = "x".repeat(300);
    let mut made = Vec::new();
    for i in 0..120usize {
        let city = match i % 4 {
            0 => format!("{long}{}", (i * 7) % 10),
            1 => format!("b{}", i % 5),
            2 => long.clone(),
            _ => String::new(),
        };
        let mut props = json!({"name": format!("n{i}")});
        if i % 4 != 3 {
            props["city"] = json!(city);
        }
        let id = db.create(&me, C, &input(props)).unwrap().id;
        made.push((id, (i % 4 != 3).then_some(city)));
    }
    for direction in [Direction::Asc, Direction::Desc] {
        let mut expected = made.clone();
        expected.sort_by(|a, b| match (&a.1, &b.1) {
            (Some(x), Some(y)) => {
                let o = x.as_bytes().cmp(y.as_bytes());
                let o = if direction == Direction::Desc {
                    o.reverse()
                } else {
                    o
                };
                o.then(a.0.cmp(&b.0))
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.0.cmp(&b.0),
        });
        let expected: Vec<Uuid> = expected.into_iter().map(|(id, _)| id).collect();
        let request = QueryRequest {
            sort: vec![SortKey {
                property: "city".into(),
                direction,
            }],
            limit: Some(7),
            ..Default::default()
        };
        let (ids, _) = all_pages(&db, &me, request);
        assert_eq!(ids, expected, "{direction:?}");
    }
}

/// The number of contacts matching `filter` (the query's total), as `principal`.
fn total_of(db: &Database, principal: &Principal, filter: Value) -> u64 {
    let request = QueryRequest {
        filter: Some(filter),
        include_total: true,
        limit: Some(1),
        ..QueryRequest::default()
    };
    db.query(principal, C, &request).unwrap().total.unwrap()
}

/// Number ranges read whole range buckets and, at their ends, part of a fine bucket: either
/// the values inside the range or the bucket less the values outside it. With every value
/// from 0 to 1,199 present (fine buckets of 8 to 64 values), every end inside a bucket,
/// near its start or its end, and ranges with both ends in one bucket, count what a scan
/// counts.
#[test]
fn number_ranges_count_every_value_once_wherever_they_end() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    db.add_property(&admin, C, &spec("score", "number", &[]))
        .unwrap();
    let scores: Vec<f64> = (0..1200).map(f64::from).chain([511.5, 1023.25]).collect();
    db.write_batch(&admin, |batch| {
        scores
            .iter()
            .try_for_each(|s| batch.create(C, &input(json!({"score": s}))).map(|_| ()))
    })
    .unwrap();
    let count = |filter: Value| total_of(&db, &admin, filter);
    let bounds = [
        0.0, 1.0, 255.0, 497.0, 500.0, 508.0, 511.0, 511.5, 512.0, 1000.0, 1020.0,
    ];
    for &at in &bounds {
        let scan = |keep: &dyn Fn(f64) -> bool| scores.iter().filter(|s| keep(**s)).count() as u64;
        assert_eq!(
            count(json!({"score": {"$gte": at}})),
            scan(&|s| s >= at),
            ">= {at}"
        );
        assert_eq!(
            count(json!({"score": {"$gt": at}})),
            scan(&|s| s > at),
            "> {at}"
        );
        assert_eq!(
            count(json!({"score": {"$lte": at}})),
            scan(&|s| s <= at),
            "<= {at}"
        );
        assert_eq!(
            count(json!({"score": {"$lt": at}})),
            scan(&|s| s < at),
            "< {at}"
        );
    }
    for (low, high) in [
        (497.0, 510.0),
        (500.0, 503.0),
        (1001.0, 1022.0),
        (496.0, 511.5),
    ] {
        let filter = json!({"score": {"$gte": low, "$lte": high}});
        let scan = scores.iter().filter(|s| (low..=high).contains(*s)).count() as u64;
        assert_eq!(count(filter), scan, "{low} to {high}");
    }
}

/// A range cutting a fine bucket that holds many records, ANDed with a condition few of
/// them meet: the few are checked one by one (reading the bucket's values would cost
/// more), and count what a scan counts.
#[test]
fn a_cut_bucket_with_few_candidates_counts_like_a_scan() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    db.add_property(&admin, C, &spec("score", "number", &[]))
        .unwrap();
    db.add_property(&admin, C, &spec("flag", "select", &["x", "y"]))
        .unwrap();
    // 4,000 records in one fine bucket (1,024 to 1,031); every 500th flagged x: enough
    // that the range is read from the index, few enough to be checked there one by one.
    let rows: Vec<(f64, &str)> = (0..4000)
        .map(|i| {
            (
                f64::from(1024 + i % 8),
                if i % 500 == 0 { "x" } else { "y" },
            )
        })
        .collect();
    db.write_batch(&admin, |batch| {
        rows.iter().try_for_each(|(score, flag)| {
            batch
                .create(C, &input(json!({"score": score, "flag": flag})))
                .map(|_| ())
        })
    })
    .unwrap();
    for at in [1024.0, 1025.0, 1027.5, 1028.0, 1031.0] {
        let total = total_of(&db, &admin, json!({"flag": "x", "score": {"$gte": at}}));
        let scan = rows.iter().filter(|(s, f)| *f == "x" && *s >= at).count() as u64;
        assert_eq!(total, scan, ">= {at}");
    }
}

/// A write in [`cached_condition_bitmaps_follow_every_write`].
#[derive(Clone, Debug)]
enum Change {
    Create(Option<i64>, usize, u8),
    Rescore(usize, Option<i64>),
    Restatus(usize, usize),
    /// Sets the tags to those of the mask's bits (x, y, z).
    Retag(usize, u8),
    Delete(usize),
    Restore(usize),
    /// Drops the score from the value index, or builds it again.
    ToggleIndex,
}

fn change() -> impl Strategy<Value = Change> {
    let score = prop::option::weighted(0.8, -5i64..5);
    prop_oneof![
        (score.clone(), 0..3usize, 0..8u8).prop_map(|(s, st, t)| Change::Create(s, st, t)),
        (any::<usize>(), score).prop_map(|(i, s)| Change::Rescore(i, s)),
        (any::<usize>(), 0..3usize).prop_map(|(i, st)| Change::Restatus(i, st)),
        (any::<usize>(), 0..8u8).prop_map(|(i, t)| Change::Retag(i, t)),
        any::<usize>().prop_map(Change::Delete),
        any::<usize>().prop_map(Change::Restore),
        Just(Change::ToggleIndex),
    ]
}

/// A contact of the model: id, score, status, live, tags (bits of x, y, z).
type Held = (Uuid, Option<i64>, usize, bool, u8);

/// The tags of mask `tags` as a property value (`null` for none).
fn tags_value(tags: u8) -> Value {
    let names: Vec<&str> = ["x", "y", "z"]
        .into_iter()
        .enumerate()
        .filter(|(bit, _)| tags & (1 << bit) != 0)
        .map(|(_, name)| name)
        .collect();
    match names.is_empty() {
        true => Value::Null,
        false => json!(names),
    }
}

/// The filters [`cached_condition_bitmaps_follow_every_write`] asks, each with what it
/// means for a contact of the model.
#[allow(clippy::type_complexity)]
fn cached_filters() -> Vec<(Value, Box<dyn Fn(&Held) -> bool>)> {
    let score = |h: &Held| h.1;
    vec![
        (
            json!({"score": {"$gte": 2}}),
            Box::new(move |h| score(h).is_some_and(|s| s >= 2)),
        ),
        (
            json!({"score": {"$lt": -1}}),
            Box::new(move |h| score(h).is_some_and(|s| s < -1)),
        ),
        (
            json!({"score": {"$exists": true}}),
            Box::new(move |h| score(h).is_some()),
        ),
        (
            json!({"score": {"$exists": false}}),
            Box::new(move |h| score(h).is_none()),
        ),
        (json!({"status": "a"}), Box::new(|h| h.2 == 0)),
        (
            json!({"status": {"$in": ["a", "c"]}}),
            Box::new(|h| h.2 != 1),
        ),
        (
            json!({"status": "b", "score": {"$gte": -1, "$lte": 3}}),
            Box::new(move |h| h.2 == 1 && score(h).is_some_and(|s| (-1..=3).contains(&s))),
        ),
        (json!({"$not": {"status": "c"}}), Box::new(|h| h.2 != 2)),
        (
            json!({"tags": {"$in": ["x", "y"]}}),
            Box::new(|h| h.4 & 0b011 != 0),
        ),
        (
            json!({"tags": {"$all": ["x", "z"]}}),
            Box::new(|h| h.4 & 0b101 == 0b101),
        ),
        (
            json!({"tags": {"$contains": "y"}}),
            Box::new(|h| h.4 & 0b010 != 0),
        ),
    ]
}

/// Checks every filter of [`cached_filters`] through `query` against `model`.
fn check_cached_filters(
    query: &dyn Fn(&QueryRequest) -> prismdb::Page,
    model: &[Held],
    when: &str,
) -> Result<(), TestCaseError> {
    for (filter, holds) in cached_filters() {
        let request = QueryRequest {
            filter: Some(filter.clone()),
            limit: Some(1000),
            include_total: true,
            ..QueryRequest::default()
        };
        let page = query(&request);
        let mut expected: Vec<Uuid> = model
            .iter()
            .filter(|h| h.3 && holds(h))
            .map(|h| h.0)
            .collect();
        expected.sort();
        let ids: Vec<Uuid> = page.rows.iter().map(|r| r.id).collect();
        prop_assert_eq!(&ids, &expected, "{}: {}", when, filter);
        prop_assert_eq!(
            page.total,
            Some(expected.len() as u64),
            "{}: {}",
            when,
            filter
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A query's conditions read their bitmaps through a cache shared by the snapshots of
    /// one database, kept across writes that leave the property's bitmaps alone. After
    /// every kind of write (a score, a status or the tags alone, records created, trashed
    /// and restored, the score's indexing) each filter finds what the model holds, asked
    /// twice (the first time bringing the cached bitmaps of the property written up to date
    /// from the record changed, the second time from the cache); and a snapshot taken
    /// before the write, asked after the new state is cached, still finds what it held.
    #[test]
    fn cached_condition_bitmaps_follow_every_write(
        seed in prop::collection::vec((prop::option::of(-5i64..5), 0..3usize, 0..8u8), 0..12),
        changes in prop::collection::vec(change(), 1..20),
    ) {
        let (db, me) = setup();
        let admin = Principal::admin(me.team, me.user);
        db.add_property(&admin, C, &spec("score", "number", &[])).unwrap();
        db.add_property(&admin, C, &spec("status", "select", &STATUSES)).unwrap();
        db.add_property(&admin, C, &spec("tags", "multiselect", &["x", "y", "z"])).unwrap();
        let create = |score: Option<i64>, status: usize, tags: u8| -> Held {
            let props = json!({"score": score, "status": STATUSES[status], "tags": tags_value(tags)});
            (db.create(&me, C, &input(props)).unwrap().id, score, status, true, tags)
        };
        let mut model: Vec<Held> = seed.iter().map(|(s, st, t)| create(*s, *st, *t)).collect();
        let mut indexed = true;
        let now = |r: &QueryRequest| db.query(&me, C, r).unwrap();
        for change in changes {
            check_cached_filters(&now, &model, "before")?;
            let snapshot = db.snapshot().unwrap();
            let before = model.clone();
            let n = model.len().max(1);
            let live = |i: usize| model.get(i % n).map(|h| h.3);
            match change {
                Change::Create(s, st, t) => model.push(create(s, st, t)),
                Change::Rescore(i, s) if live(i) == Some(true) => {
                    db.patch(&me, C, model[i % n].0, &input(json!({"score": s}))).unwrap();
                    model[i % n].1 = s;
                }
                Change::Restatus(i, st) if live(i) == Some(true) => {
                    let props = json!({"status": STATUSES[st]});
                    db.patch(&me, C, model[i % n].0, &input(props)).unwrap();
                    model[i % n].2 = st;
                }
                Change::Retag(i, t) if live(i) == Some(true) => {
                    db.patch(&me, C, model[i % n].0, &input(json!({"tags": tags_value(t)}))).unwrap();
                    model[i % n].4 = t;
                }
                Change::Delete(i) if live(i) == Some(true) => {
                    db.delete(&me, C, model[i % n].0).unwrap();
                    model[i % n].3 = false;
                }
                Change::Restore(i) if live(i) == Some(false) => {
                    db.restore(&me, C, model[i % n].0).unwrap();
                    model[i % n].3 = true;
                }
                Change::ToggleIndex => {
                    indexed = !indexed;
                    let change = prismdb::PropertyChange { indexed: Some(indexed), ..Default::default() };
                    db.update_property(&admin, C, "score", &change).unwrap();
                }
                _ => {}
            }
            check_cached_filters(&now, &model, "after")?;
            check_cached_filters(&now, &model, "after, again")?;
            let then = |r: &QueryRequest| snapshot.query(&me, C, r).unwrap();
            check_cached_filters(&then, &before, "the snapshot before")?;
        }
    }
}
