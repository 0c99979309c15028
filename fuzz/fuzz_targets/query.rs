//! Any query body, and any cursor contents a forger could sign for it, gives a page or an
//! error: never a panic. The data covers every sort path: key sorts, walks of the value
//! index (numbers, text), of options and booleans, and the id-order paths.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prismdb::{
    Database, ObjectType, OptionSpec, Principal, PropertySpec, QueryRequest, RecordInput,
};
use serde_json::json;

const C: ObjectType = ObjectType::Contact;

fn spec(slug: &str, kind: &str, options: &[&str], search: bool) -> PropertySpec {
    PropertySpec {
        slug: slug.into(),
        kind: kind.into(),
        indexed: Some(true),
        search: Some(search),
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

fn database() -> &'static (Database, Principal) {
    static DB: OnceLock<(Database, Principal)> = OnceLock::new();
    DB.get_or_init(|| {
        let db = Database::in_memory().expect("in-memory database");
        let team = uuid::Uuid::from_u128(1);
        let admin = Principal::admin(team, uuid::Uuid::from_u128(2));
        for property in [
            spec("score", "number", &[], false),
            spec("city", "text", &[], true),
            spec("status", "select", &["a", "b", "c"], false),
            spec("vip", "boolean", &[], false),
        ] {
            db.add_property(&admin, C, &property).expect("schema");
        }
        for i in 0..300u32 {
            let mut props = json!({"name": format!("n{i}"), "city": format!("c{}", i % 7)});
            if i % 5 != 0 {
                props["score"] = json!(i % 13);
                props["status"] = json!(["a", "b", "c"][(i % 3) as usize]);
                props["vip"] = json!(i % 2 == 0);
            }
            let input = RecordInput::from_properties(props).expect("valid input");
            db.create(&admin, C, &input).expect("create");
        }
        (db, admin)
    })
}

fuzz_target!(|data: &[u8]| {
    let (db, me) = database();
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let Ok(mut request) = serde_json::from_slice::<QueryRequest>(&data[..split]) else {
        return;
    };
    let _ = db.query(me, C, &request);
    // The rest of the input: a forged cursor's ordinal, id and sort key.
    let rest = data.get(split + 1..).unwrap_or_default();
    if rest.len() >= 20 {
        let last_ord = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
        let last_id = u128::from_be_bytes(rest[4..20].try_into().expect("16 bytes"));
        let sort_key = rest[20..].to_vec();
        request.cursor = None;
        let cursor =
            prismdb::fuzzing::forge_cursor(me.team, C, &request, last_ord, last_id, sort_key);
        request.cursor = Some(cursor);
        let _ = db.query(me, C, &request);
    }
});
