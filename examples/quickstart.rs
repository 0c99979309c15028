//! Creates a database in a temporary directory, writes a few CRM records, reads them back
//! by id, by unique value and page by page, and prints what it finds.

use prismdb::{Database, ListRequest, ObjectType, Principal, QueryRequest, RecordInput};
use serde_json::json;
use uuid::Uuid;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("crm.prismdb");
    let db = Database::open(&path)?;
    let me = Principal::member(Uuid::new_v4(), Uuid::new_v4());

    let acme = db.create(
        &me,
        ObjectType::Organization,
        &RecordInput::from_properties(json!({"name": "Acme", "domain": "acme.io"}))?,
    )?;
    for (name, email) in [
        ("Ada", "ada@acme.io"),
        ("Grace", "grace@acme.io"),
        ("Linus", "linus@acme.io"),
    ] {
        let input = json!({"name": name, "email": email, "organization": acme.id.to_string()});
        db.create(
            &me,
            ObjectType::Contact,
            &RecordInput::from_properties(input)?,
        )?;
    }

    let grace = db.find(&me, ObjectType::Contact, "email", "GRACE@acme.io")?;
    println!("find email=GRACE@acme.io -> {}", grace.to_json());

    let patch = RecordInput::from_properties(json!({"title": "Rear Admiral"}))?;
    let (grace, created) = db.upsert(&me, ObjectType::Contact, "email", "grace@acme.io", &patch)?;
    println!("upsert (created: {created}) -> {}", grace.to_json());

    let mut request = ListRequest {
        limit: Some(2),
        include_total: true,
        ..ListRequest::default()
    };
    loop {
        let page = db.list(&me, ObjectType::Contact, &request)?;
        println!("page -> {}", page.to_json());
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
    }
    println!("count -> {}", db.count(&me, ObjectType::Contact)?);

    let query: QueryRequest = serde_json::from_value(json!({
        "filter": {"$and": [{"organization.domain": {"$ends_with": ".io"}}, {"name": {"$contains": "a"}}]},
        "sort": [{"property": "name", "direction": "desc"}],
        "include_total": true,
        "properties": ["name", "email"]
    }))?;
    println!(
        "query -> {}",
        db.query(&me, ObjectType::Contact, &query)?.to_json()
    );
    let report = db.verify_integrity()?;
    println!(
        "integrity: {} records checked, ok = {}",
        report.records_checked,
        report.is_ok()
    );
    Ok(())
}
