//! Schema changes: any bytes decode into a sequence of property additions, changes
//! (unique, indexed, search, options added, renamed, removed) and removals (forced or not),
//! interleaved with records that use the properties. A change either applies whole or is
//! refused leaving the catalog as it was; nothing panics; every record stays readable;
//! the indexes always agree with the records.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prismdb::{
    Database, ListRequest, ObjectType, OptionSpec, Principal, PropertyChange, PropertySpec,
    RecordInput,
};
use serde_json::{json, Value};

const KINDS: [&str; 10] = [
    "text",
    "email",
    "url",
    "phone",
    "number",
    "boolean",
    "datetime",
    "select",
    "multiselect",
    "reference",
];
const SLUGS: [&str; 4] = ["p0", "p1", "p2", "name"];
const OPTIONS: [&str; 4] = ["a", "b", "c", "d"];

fn value(kind_byte: u8, pick: u8) -> Value {
    match kind_byte % 12 {
        0 => json!(format!("text {pick}")),
        1 => json!(format!("u{}@example.com", pick % 3)),
        2 => json!(format!("https://x.io/{pick}")),
        3 => json!(format!("+1 555 {pick:07}")),
        4 => json!(pick as i64 - 100),
        5 => json!(pick % 2 == 0),
        6 => json!(format!("2026-01-{:02}T00:00:00Z", 1 + pick % 28)),
        7 => json!(OPTIONS[pick as usize % 4]),
        8 => json!([OPTIONS[pick as usize % 4], OPTIONS[(pick as usize + 1) % 4]]),
        9 => Value::Null,
        10 => json!(pick as f64 / 3.0),
        _ => json!({"nested": pick}),
    }
}

fn options(byte: u8) -> Vec<OptionSpec> {
    (0..1 + byte as usize % 4)
        .map(|i| OptionSpec {
            slug: OPTIONS[i].into(),
            label: None,
        })
        .collect()
}

fn step(db: &Database, admin: &Principal, b: &[u8]) {
    let ty = ObjectType::Contact;
    let slug = SLUGS[b[1] as usize % SLUGS.len()];
    let before = db.schema(admin, ty).expect("schema reads");
    let changed = match b[0] % 5 {
        0 => {
            let spec = PropertySpec {
                slug: slug.into(),
                kind: KINDS[b[2] as usize % KINDS.len()].into(),
                unique: Some(b[3] & 1 == 1),
                indexed: Some(b[3] & 2 == 2),
                search: Some(b[3] & 4 == 4),
                options: (b[3] & 8 == 8).then(|| options(b[2])),
                target: (b[3] & 16 == 16).then(|| "organization".into()),
            };
            db.add_property(admin, ty, &spec).map(|_| ())
        }
        1 => {
            let mut change = PropertyChange {
                unique: (b[2] & 3 != 0).then_some(b[2] & 1 == 1),
                indexed: (b[2] & 12 != 0).then_some(b[2] & 4 == 4),
                search: (b[2] & 48 != 0).then_some(b[2] & 16 == 16),
                ..PropertyChange::default()
            };
            match b[3] % 4 {
                0 => change.add_options = options(b[3] / 4),
                1 => {
                    change.rename_options.insert(
                        OPTIONS[b[3] as usize / 4 % 4].into(),
                        format!("r{}", b[3] % 7),
                    );
                }
                2 => change.remove_options = vec![OPTIONS[b[3] as usize / 4 % 4].into()],
                _ => {}
            }
            db.update_property(admin, ty, slug, &change).map(|_| ())
        }
        2 => db.remove_property(admin, ty, slug, b[2] & 1 == 1),
        _ => {
            let mut props = serde_json::Map::new();
            props.insert(slug.into(), value(b[2], b[3]));
            props.insert(SLUGS[b[3] as usize % SLUGS.len()].into(), value(b[3], b[2]));
            db.create(admin, ty, &RecordInput::new(props)).map(|_| ())
        }
    };
    if changed.is_err() {
        assert_eq!(
            db.schema(admin, ty).expect("schema reads"),
            before,
            "a refused change left a trace"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let db = Database::in_memory().expect("in-memory database");
    let admin = Principal::admin(uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
    for chunk in data.chunks_exact(4).take(40) {
        step(&db, &admin, chunk);
    }
    let mut request = ListRequest::first(100);
    loop {
        let page = db
            .list(&admin, ObjectType::Contact, &request)
            .expect("every record reads");
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
    }
    let report = db.verify_integrity().expect("verify runs");
    assert!(report.is_ok(), "{:?}", report.problems);
});
