//! The offline commands: `load` (demo data), `query` (one page as a table or JSON) and
//! `check` (verify_integrity).

use prismdb::{Direction, ObjectType, Options, Principal, QueryRequest, SortKey};
use serde_json::Value;
use uuid::Uuid;

use crate::api::PageResponse;
use crate::{serve, CheckArgs, LoadArgs, QueryArgs};

/// `prismdb load`: demo data for `--team` into `--data`.
pub fn load(args: LoadArgs) -> Result<(), String> {
    let db = serve::open(&args.data, Options::default())?;
    crate::demo::load(&db, args.team, args.contacts)
}

/// `prismdb query`: one page of a query, run as the team's admin.
pub fn query(args: QueryArgs) -> Result<(), String> {
    let db = serve::open(&args.data, Options::default())?;
    let ty: ObjectType = args.ty.parse().map_err(|e: prismdb::Error| e.to_string())?;
    let filter = match &args.filter {
        Some(text) => Some(serde_json::from_str(text).map_err(|e| format!("--filter: {e}"))?),
        None => None,
    };
    let request = QueryRequest {
        filter,
        sort: parse_sort(args.sort.as_deref())?,
        limit: Some(args.limit),
        properties: args.properties.as_deref().map(split_list),
        include_total: true,
        ..QueryRequest::default()
    };
    let admin = Principal::admin(args.team, Uuid::nil());
    let page = db.query(&admin, ty, &request).map_err(|e| e.to_string())?;
    let page = PageResponse::from(page);
    if args.json {
        let text = serde_json::to_string_pretty(&page).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", table(&page));
    }
    Ok(())
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_sort(text: Option<&str>) -> Result<Vec<SortKey>, String> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    split_list(text)
        .into_iter()
        .map(|key| {
            let (property, direction) = match key.split_once(':') {
                None | Some((_, "asc")) => (
                    key.split(':').next().unwrap_or("").to_owned(),
                    Direction::Asc,
                ),
                Some((slug, "desc")) => (slug.to_owned(), Direction::Desc),
                Some((_, other)) => {
                    return Err(format!(
                        "--sort {key:?}: direction {other:?} is not asc or desc"
                    ))
                }
            };
            Ok(SortKey {
                property,
                direction,
            })
        })
        .collect()
}

/// The page as an aligned text table: the id, then every property any row has, in the
/// order first seen; then a line with the total.
fn table(page: &PageResponse) -> String {
    let mut columns: Vec<String> = Vec::new();
    for row in &page.data {
        for slug in row.properties.keys() {
            if !columns.contains(slug) {
                columns.push(slug.clone());
            }
        }
    }
    let mut rows: Vec<Vec<String>> = vec![std::iter::once("id".to_owned())
        .chain(columns.iter().cloned())
        .collect()];
    for row in &page.data {
        let cells = columns.iter().map(|slug| cell(row.properties.get(slug)));
        rows.push(std::iter::once(row.id.to_string()).chain(cells).collect());
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(text, width)| format!("{text:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let total = page
        .total
        .map(|t| t.to_string())
        .unwrap_or_else(|| "?".into());
    out.push_str(&format!(
        "({} rows of {total}; has_more: {})\n",
        page.data.len(),
        page.has_more
    ));
    out
}

/// A value as a table cell: strings bare, references by their target's name, the rest as
/// JSON; cells are cut at 40 characters.
fn cell(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(reference)) => reference
            .get("properties")
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| Value::Object(reference.clone()).to_string()),
        Some(other) => other.to_string(),
    };
    if text.chars().count() > 40 {
        text.chars().take(39).chain(['…']).collect()
    } else {
        text
    }
}

/// `prismdb check`: every page's checksum (verify_storage), then that every index agrees
/// with the records (verify_integrity); fails listing the problems found.
pub fn check(args: CheckArgs) -> Result<(), String> {
    let mut db = serve::open(&args.data, Options::default())?;
    if !db.verify_storage().map_err(|e| e.to_string())? {
        return Err(
            "damaged pages: the file was rolled back to its newest intact commit; \
                    run check again to verify what remains"
                .into(),
        );
    }
    let report = db.verify_integrity().map_err(|e| e.to_string())?;
    if report.is_ok() {
        println!(
            "ok: {} records checked, no problems",
            report.records_checked
        );
        return Ok(());
    }
    for problem in &report.problems {
        println!("{problem}");
    }
    Err(format!("{} problems found", report.problems.len()))
}
