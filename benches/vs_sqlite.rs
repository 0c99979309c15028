//! prismdb beside SQLite on the same data, in the same process and run.
//!
//! Loads N contacts (default 1,000,000; `PRISMDB_BENCH_RECORDS` overrides) referencing
//! 50,000 organizations into prismdb and into SQLite (rusqlite, bundled, WAL, real columns
//! with the indexes a competent engineer would add, tags in a join table), runs each
//! operation in both, checks that both give the same answer, prints a table and writes
//! `target/vs_sqlite.json` as `[{"op", "prismdb_us", "sqlite_us", "ratio"}]` (median µs per
//! operation; ratio = SQLite time / prismdb time, higher is better).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use mimalloc::MiMalloc;
use prismdb::{
    BulkUpdateItem, Database, Direction, Durability, Grant, ImportMode, ImportRequest, Level,
    ListRequest, ObjectType, OptionSpec, Options, Page, Principal, PropertyChange, PropertySpec,
    QueryRequest, RecordInput, SortKey, IMPORT_CHUNK_ROWS,
};
use rusqlite::{params, Connection};
use serde_json::{json, Map, Value};
use uuid::Uuid;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const C: ObjectType = ObjectType::Contact;
const STATUSES: [&str; 6] = ["new", "active", "engaged", "dormant", "churned", "won"];
const BATCH: usize = 10_000;
const CACHE_BYTES: usize = 1 << 30;

/// A small deterministic generator (SplitMix64), so both engines get the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One generated contact.
struct Contact {
    name: String,
    email: String,
    phone: String,
    city: String,
    status: usize,
    score: i64,
    tags: Vec<usize>,
    organization: usize,
    is_vip: bool,
}

fn make_contact(rng: &mut Rng, i: usize, orgs: usize) -> Contact {
    // Skewed cities: the square of a uniform draw favours low numbers.
    let draw = rng.below(1000) as f64 / 1000.0;
    let city = (draw * draw * 200.0) as usize;
    let tag_count = rng.below(5) as usize;
    let mut tags: Vec<usize> = (0..tag_count).map(|_| rng.below(30) as usize).collect();
    tags.sort_unstable();
    tags.dedup();
    Contact {
        name: format!("Person {i}"),
        email: format!("person{i}@example{}.com", i % 97),
        phone: format!("+1 555 {:07}", rng.below(10_000_000)),
        city: format!("city{city}"),
        status: rng.below(6) as usize,
        score: rng.below(1000) as i64,
        tags,
        organization: rng.below(orgs as u64) as usize,
        is_vip: rng.below(10) == 0,
    }
}

fn contact_json(c: &Contact, org_ids: &[Uuid]) -> Value {
    json!({
        "name": c.name, "email": c.email, "phone": c.phone, "city": c.city,
        "status": STATUSES[c.status], "score": c.score,
        "tags": c.tags.iter().map(|t| format!("tag{t}")).collect::<Vec<_>>(),
        "organization": org_ids[c.organization].to_string(), "is_vip": c.is_vip,
    })
}

fn spec(slug: &str, kind: &str, options: Option<Vec<String>>) -> PropertySpec {
    PropertySpec {
        slug: slug.into(),
        kind: kind.into(),
        options: options.map(|o| {
            o.into_iter()
                .map(|slug| OptionSpec { slug, label: None })
                .collect()
        }),
        ..Default::default()
    }
}

fn prepare_prismdb_schema(db: &Database, admin: &Principal) {
    // The name keeps trigram bitmaps (`search`) for the substring row; SQLite has no index
    // that serves LIKE '%…%'. Writes that change a name pay for it (patch, create).
    let name = PropertyChange {
        search: Some(true),
        ..PropertyChange::default()
    };
    db.update_property(admin, C, "name", &name).unwrap();
    // Indexed, as SQLite's city column is.
    let city = PropertySpec {
        indexed: Some(true),
        ..spec("city", "text", None)
    };
    db.add_property(admin, C, &city).unwrap();
    db.add_property(
        admin,
        C,
        &spec(
            "status",
            "select",
            Some(STATUSES.iter().map(|s| s.to_string()).collect()),
        ),
    )
    .unwrap();
    db.add_property(admin, C, &spec("score", "number", None))
        .unwrap();
    db.add_property(
        admin,
        C,
        &spec(
            "tags",
            "multiselect",
            Some((0..30).map(|t| format!("tag{t}")).collect()),
        ),
    )
    .unwrap();
    db.add_property(admin, C, &spec("is_vip", "boolean", None))
        .unwrap();
    let industries = (0..INDUSTRIES).map(|i| format!("ind{i}")).collect();
    db.add_property(
        admin,
        ObjectType::Organization,
        &spec("industry", "select", Some(industries)),
    )
    .unwrap();
}

/// Organizations' industries: a select of this many options.
const INDUSTRIES: usize = 20;

const SQLITE_SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE organizations (
        rowid INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, name TEXT, domain TEXT UNIQUE,
        industry INTEGER, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        deleted_at INTEGER);
    CREATE INDEX organizations_industry ON organizations(industry);
    CREATE TABLE contacts (
        rowid INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, name TEXT,
        email TEXT COLLATE NOCASE UNIQUE, phone TEXT, city TEXT, status INTEGER, score INTEGER,
        organization BLOB, is_vip INTEGER, created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL, deleted_at INTEGER);
    CREATE INDEX contacts_phone ON contacts(phone);
    CREATE INDEX contacts_city ON contacts(city);
    CREATE INDEX contacts_status ON contacts(status);
    CREATE INDEX contacts_score ON contacts(score);
    CREATE INDEX contacts_created ON contacts(created_at);
    CREATE INDEX contacts_org ON contacts(organization);
    CREATE TABLE contact_tags (contact INTEGER NOT NULL, tag INTEGER NOT NULL,
        PRIMARY KEY (contact, tag)) WITHOUT ROWID;
    CREATE INDEX contact_tags_tag ON contact_tags(tag, contact);
";

fn open_sqlite(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "cache_size", -((CACHE_BYTES / 1024) as i64))
        .unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn sqlite_insert_contact(tx: &rusqlite::Transaction<'_>, id: Uuid, c: &Contact, org_ids: &[Uuid]) {
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO contacts (id, name, email, phone, city, status, score, organization, is_vip, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        )
        .unwrap();
    let org = org_ids[c.organization];
    let exists: bool = tx
        .prepare_cached("SELECT 1 FROM organizations WHERE id = ?1 AND deleted_at IS NULL")
        .unwrap()
        .exists(params![org.as_bytes()])
        .unwrap();
    assert!(exists);
    insert
        .execute(params![
            id.as_bytes(),
            c.name,
            c.email,
            c.phone,
            c.city,
            c.status as i64,
            c.score,
            org.as_bytes(),
            c.is_vip,
            now_micros()
        ])
        .unwrap();
    let rowid = tx.last_insert_rowid();
    let mut tag = tx
        .prepare_cached("INSERT INTO contact_tags (contact, tag) VALUES (?1, ?2)")
        .unwrap();
    for t in &c.tags {
        tag.execute(params![rowid, *t as i64]).unwrap();
    }
}

const SQLITE_ROW: &str =
    "SELECT c.rowid, c.id, c.name, c.email, c.phone, c.city, c.status, c.score,
    c.organization, o.name, c.is_vip, c.created_at, c.updated_at,
    (SELECT group_concat(tag) FROM contact_tags t WHERE t.contact = c.rowid)
    FROM contacts c LEFT JOIN organizations o ON o.id = c.organization";

/// A SQLite row turned into the same shape prismdb returns: (id, properties).
fn sqlite_row(row: &rusqlite::Row<'_>, nested_org: bool) -> (Uuid, Map<String, Value>) {
    let id = Uuid::from_slice(&row.get::<_, Vec<u8>>(1).unwrap()).unwrap();
    let mut props = Map::new();
    props.insert("name".into(), json!(row.get::<_, String>(2).unwrap()));
    props.insert("email".into(), json!(row.get::<_, String>(3).unwrap()));
    props.insert("phone".into(), json!(row.get::<_, String>(4).unwrap()));
    props.insert("city".into(), json!(row.get::<_, String>(5).unwrap()));
    props.insert(
        "status".into(),
        json!(STATUSES[row.get::<_, i64>(6).unwrap() as usize]),
    );
    props.insert("score".into(), json!(row.get::<_, i64>(7).unwrap()));
    let org = Uuid::from_slice(&row.get::<_, Vec<u8>>(8).unwrap()).unwrap();
    let org_value = if nested_org {
        json!({"id": org, "properties": {"name": row.get::<_, Option<String>>(9).unwrap()}})
    } else {
        json!(org.to_string())
    };
    props.insert("organization".into(), org_value);
    props.insert("is_vip".into(), json!(row.get::<_, bool>(10).unwrap()));
    props.insert("created_at".into(), json!(row.get::<_, i64>(11).unwrap()));
    props.insert("updated_at".into(), json!(row.get::<_, i64>(12).unwrap()));
    let tags: Option<String> = row.get(13).unwrap();
    let mut tags: Vec<usize> = tags
        .iter()
        .flat_map(|t| t.split(','))
        .map(|t| t.parse().unwrap())
        .collect();
    tags.sort_unstable();
    // prismdb stores an empty multiselect as no value; show SQLite's rows the same way.
    if !tags.is_empty() {
        props.insert(
            "tags".into(),
            json!(tags.iter().map(|t| format!("tag{t}")).collect::<Vec<_>>()),
        );
    }
    (id, props)
}

/// Median of per-operation times (µs), measured in groups so the clock's cost vanishes.
/// A row timing the same work in both engines: median of 20 runs each.
fn timed_pair(op: &'static str, mut ours: impl FnMut(), mut theirs: impl FnMut()) -> Row {
    Row {
        op,
        prismdb_us: median_us(20, 1, |_| ours()),
        sqlite_us: median_us(20, 1, |_| theirs()),
    }
}

fn median_us(ops: usize, group: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut samples = Vec::new();
    let mut i = 0;
    while i < ops {
        let n = group.min(ops - i);
        let start = Instant::now();
        for k in i..i + n {
            f(k);
        }
        samples.push(start.elapsed().as_secs_f64() * 1e6 / n as f64);
        i += n;
    }
    median(samples)
}

/// The median of `samples`.
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

struct Row {
    op: &'static str,
    prismdb_us: f64,
    sqlite_us: f64,
}

fn file_bytes(paths: &[&Path]) -> u64 {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("PRISMDB_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let org_count = 50_000.min(n.max(10) / 2).max(1);
    // On disk (not tmpfs), under target/ unless PRISMDB_BENCH_DIR says otherwise; the
    // directory may not exist yet when target/ lives elsewhere (CARGO_TARGET_DIR).
    let parent = std::env::var("PRISMDB_BENCH_DIR").unwrap_or_else(|_| "target".into());
    std::fs::create_dir_all(&parent).unwrap();
    let dir = tempfile::tempdir_in(parent).unwrap();
    let prism_path = dir.path().join("bench.prismdb");
    let sqlite_path = dir.path().join("bench.sqlite");
    let options = Options {
        cache_bytes: CACHE_BYTES,
        ..Options::default()
    };
    let mut db = Database::open_with(&prism_path, options).unwrap();
    let team = Uuid::new_v4();
    let admin = Principal::admin(team, Uuid::new_v4());
    let me = Principal::member(team, Uuid::new_v4());
    prepare_prismdb_schema(&db, &admin);
    let sqlite = open_sqlite(&sqlite_path);
    sqlite.execute_batch(SQLITE_SCHEMA).unwrap();
    let mut rows = Vec::new();
    eprintln!("vs_sqlite: {n} contacts, {org_count} organizations");

    // Organizations (not timed): the same ids in both.
    let mut org_ids = Vec::with_capacity(org_count);
    for chunk_start in (0..org_count).step_by(BATCH) {
        let chunk_end = (chunk_start + BATCH).min(org_count);
        db.write_batch(&me, |batch| {
            for i in chunk_start..chunk_end {
                let input = json!({"name": format!("Org {i}"), "domain": format!("org{i}.example"), "industry": format!("ind{}", i % INDUSTRIES)});
                org_ids.push(
                    batch
                        .create(
                            ObjectType::Organization,
                            &RecordInput::from_properties(input)?,
                        )?
                        .id,
                );
            }
            Ok(())
        })
        .unwrap();
    }
    {
        let mut sqlite = open_sqlite(&sqlite_path);
        let tx = sqlite.transaction().unwrap();
        for (i, id) in org_ids.iter().enumerate() {
            tx.execute(
                "INSERT INTO organizations (id, name, domain, industry, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![id.as_bytes(), format!("Org {i}"), format!("org{i}.example"), (i % INDUSTRIES) as i64, now_micros()],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    // Bulk load: 10,000 creates per write batch / transaction. The engines take turns, a
    // batch each, so that both load while the shared machine is in the same state (one
    // engine's whole load, then the other's, put minutes between them); each batch is
    // timed on its own and the times summed.
    let mut rng = Rng(42);
    let contacts: Vec<Contact> = (0..n)
        .map(|i| make_contact(&mut rng, i, org_count))
        .collect();
    let mut ids = Vec::with_capacity(n);
    let mut sqlite_rw = open_sqlite(&sqlite_path);
    sqlite_rw
        .pragma_update(None, "synchronous", "FULL")
        .unwrap();
    let (mut prism_secs, mut sqlite_secs) = (0.0, 0.0);
    for chunk in contacts.chunks(BATCH) {
        let first = ids.len();
        let start = Instant::now();
        db.write_batch(&me, |batch| {
            for c in chunk {
                let input = RecordInput::from_properties(contact_json(c, &org_ids))?;
                ids.push(batch.create_id(C, &input)?);
            }
            Ok(())
        })
        .unwrap();
        prism_secs += start.elapsed().as_secs_f64();
        let start = Instant::now();
        let tx = sqlite_rw.transaction().unwrap();
        for (c, id) in chunk.iter().zip(&ids[first..]) {
            sqlite_insert_contact(&tx, *id, c, &org_ids);
        }
        tx.commit().unwrap();
        sqlite_secs += start.elapsed().as_secs_f64();
    }
    let prism_load = prism_secs * 1e6 / n as f64;
    let sqlite_load = sqlite_secs * 1e6 / n as f64;
    rows.push(Row {
        op: "bulk load (per record, 10k/batch)",
        prismdb_us: prism_load,
        sqlite_us: sqlite_load,
    });
    eprintln!("loaded: prismdb {prism_load:.2} µs/record, sqlite {sqlite_load:.2} µs/record");

    // On-disk size after load (SQLite checkpointed into its main file).
    sqlite_rw
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let sqlite_wal = sqlite_path.with_extension("sqlite-wal");
    let prism_bytes = file_bytes(&[&prism_path]) as f64;
    let sqlite_bytes = file_bytes(&[&sqlite_path, &sqlite_wal]) as f64;
    rows.push(Row {
        op: "on-disk size after load (MB)",
        prismdb_us: prism_bytes / 1e6,
        sqlite_us: sqlite_bytes / 1e6,
    });
    eprintln!(
        "prismdb storage after load: {:?}",
        db.storage_stats().unwrap()
    );

    // Compaction (prismdb) beside VACUUM (SQLite): both rewrite the file without free space.
    let start = Instant::now();
    db.compact().unwrap();
    let prism_compact = start.elapsed().as_secs_f64() * 1e6;
    eprintln!(
        "prismdb storage after compact: {:?}",
        db.storage_stats().unwrap()
    );
    let start = Instant::now();
    sqlite_rw
        .execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let sqlite_vacuum = start.elapsed().as_secs_f64() * 1e6;
    rows.push(Row {
        op: "compact() / VACUUM (total)",
        prismdb_us: prism_compact,
        sqlite_us: sqlite_vacuum,
    });
    let prism_bytes = file_bytes(&[&prism_path]) as f64;
    let sqlite_bytes = file_bytes(&[&sqlite_path, &sqlite_wal]) as f64;
    rows.push(Row {
        op: "on-disk size after compact()/VACUUM (MB)",
        prismdb_us: prism_bytes / 1e6,
        sqlite_us: sqlite_bytes / 1e6,
    });

    let mut pick = Rng(7);
    let sample: Vec<usize> = (0..20_000.min(n * 4))
        .map(|_| pick.below(n as u64) as usize)
        .collect();

    // get by id
    for &i in sample.iter().take(100) {
        let ours = db.get(&me, C, ids[i]).unwrap();
        let theirs = sqlite_rw
            .query_row(
                &format!("{SQLITE_ROW} WHERE c.id = ?1 AND c.deleted_at IS NULL"),
                params![ids[i].as_bytes()],
                |r| Ok(sqlite_row(r, false)),
            )
            .unwrap();
        assert_eq!(ours.properties["email"], theirs.1["email"]);
        assert_eq!(ours.properties.get("tags"), theirs.1.get("tags"));
        assert_eq!(ours.properties["organization"], theirs.1["organization"]);
    }
    let p = median_us(sample.len(), 100, |k| {
        std::hint::black_box(db.get(&me, C, ids[sample[k]]).unwrap());
    });
    let mut get_stmt = sqlite_rw
        .prepare_cached(&format!(
            "{SQLITE_ROW} WHERE c.id = ?1 AND c.deleted_at IS NULL"
        ))
        .unwrap();
    let s = median_us(sample.len(), 100, |k| {
        std::hint::black_box(
            get_stmt
                .query_row(params![ids[sample[k]].as_bytes()], |r| {
                    Ok(sqlite_row(r, false))
                })
                .unwrap(),
        );
    });
    drop(get_stmt);
    rows.push(Row {
        op: "get by id",
        prismdb_us: p,
        sqlite_us: s,
    });

    // find by unique email (case-insensitive in both)
    for &i in sample.iter().take(100) {
        let email = contacts[i].email.to_uppercase();
        assert_eq!(db.find(&me, C, "email", &email).unwrap().id, ids[i]);
    }
    let p = median_us(sample.len(), 100, |k| {
        std::hint::black_box(
            db.find(&me, C, "email", &contacts[sample[k]].email)
                .unwrap(),
        );
    });
    let mut find_stmt = sqlite_rw
        .prepare_cached(&format!(
            "{SQLITE_ROW} WHERE c.email = ?1 AND c.deleted_at IS NULL"
        ))
        .unwrap();
    let s = median_us(sample.len(), 100, |k| {
        let (id, _) = find_stmt
            .query_row(params![contacts[sample[k]].email], |r| {
                Ok(sqlite_row(r, false))
            })
            .unwrap();
        assert_eq!(id, ids[sample[k]]);
    });
    drop(find_stmt);
    rows.push(Row {
        op: "find by unique email",
        prismdb_us: p,
        sqlite_us: s,
    });

    // count
    let ours = db.count(&me, C).unwrap();
    let theirs: i64 = sqlite_rw
        .query_row(
            "SELECT count(*) FROM contacts WHERE deleted_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ours, theirs as u64);
    let p = median_us(2000, 100, |_| {
        std::hint::black_box(db.count(&me, C).unwrap());
    });
    let s = median_us(20, 1, |_| {
        let c: i64 = sqlite_rw
            .query_row(
                "SELECT count(*) FROM contacts WHERE deleted_at IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        std::hint::black_box(c);
    });
    rows.push(Row {
        op: "count",
        prismdb_us: p,
        sqlite_us: s,
    });

    // list page by id (50 rows) from positions spread over the table
    let positions: Vec<usize> = (0..200)
        .map(|_| pick.below(n.saturating_sub(60).max(1) as u64) as usize)
        .collect();
    let cursors = page_cursors(&db, &me, &ids, &positions);
    let p = median_us(positions.len(), 10, |k| {
        let request = ListRequest {
            cursor: cursors[k].clone(),
            ..ListRequest::first(50)
        };
        std::hint::black_box(db.list(&me, C, &request).unwrap());
    });
    let mut page_stmt = sqlite_rw
        .prepare_cached(&format!(
            "{SQLITE_ROW} WHERE c.id > ?1 AND c.deleted_at IS NULL ORDER BY c.id LIMIT ?2"
        ))
        .unwrap();
    let s = median_us(positions.len(), 10, |k| {
        let after = positions[k]
            .checked_sub(1)
            .map(|i| ids[i].as_bytes().to_vec())
            .unwrap_or_default();
        let page: Vec<_> = page_stmt
            .query_map(params![after, 51], |r| Ok(sqlite_row(r, true)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        std::hint::black_box(page);
    });
    rows.push(Row {
        op: "list page by id (50 rows)",
        prismdb_us: p,
        sqlite_us: s,
    });

    // walk all pages (1,000 rows each)
    let start = Instant::now();
    let mut request = ListRequest::first(1000);
    let mut walked = Vec::with_capacity(n);
    loop {
        let page = db.list(&me, C, &request).unwrap();
        walked.extend(
            page.rows
                .iter()
                .map(|r| (r.id, r.properties["email"].clone())),
        );
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => break,
        }
    }
    let p = start.elapsed().as_secs_f64() * 1e6;
    let start = Instant::now();
    let mut after: Vec<u8> = Vec::new();
    let mut sqlite_walked = 0usize;
    loop {
        let page: Vec<_> = page_stmt
            .query_map(params![after, 1001], |r| Ok(sqlite_row(r, true)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let take = page.len().min(1000);
        for (k, (id, props)) in page.iter().take(take).enumerate() {
            assert_eq!(walked[sqlite_walked + k].0, *id);
            assert_eq!(walked[sqlite_walked + k].1, props["email"]);
        }
        sqlite_walked += take;
        if page.len() <= 1000 {
            break;
        }
        after = page[999].0.as_bytes().to_vec();
    }
    assert_eq!(sqlite_walked, walked.len());
    let s = start.elapsed().as_secs_f64() * 1e6;
    drop(page_stmt);
    rows.push(Row {
        op: "walk all pages (1,000 rows each; total)",
        prismdb_us: p,
        sqlite_us: s,
    });

    query_rows(&db, &me, &sqlite_rw, &mut rows);
    grant_rows(&db, &sqlite_rw, me.team, n, &mut rows);

    // patch (no fsync in either: prismdb Eventual, SQLite WAL synchronous=NORMAL)
    sqlite_rw
        .pragma_update(None, "synchronous", "NORMAL")
        .unwrap();
    let p = median_us(2000, 50, |k| {
        let i = sample[k];
        let input = RecordInput::from_properties(
            json!({"name": format!("Renamed {k}"), "score": k as i64 % 1000}),
        )
        .unwrap();
        db.write_batch_with(&me, Durability::Eventual, |b| b.patch(C, ids[i], &input))
            .unwrap();
    });
    let s = median_us(2000, 50, |k| {
        let i = sample[k];
        let changed = sqlite_rw
            .prepare_cached("UPDATE contacts SET name = ?1, score = ?2, updated_at = ?3 WHERE id = ?4 AND deleted_at IS NULL")
            .unwrap()
            .execute(params![format!("Renamed {k}"), k as i64 % 1000, now_micros(), ids[i].as_bytes()])
            .unwrap();
        assert_eq!(changed, 1);
    });
    rows.push(Row {
        op: "patch (no fsync)",
        prismdb_us: p,
        sqlite_us: s,
    });

    // durable single create (prismdb Immediate, SQLite synchronous=FULL)
    sqlite_rw
        .pragma_update(None, "synchronous", "FULL")
        .unwrap();
    let extra: Vec<Contact> = (0..200)
        .map(|i| make_contact(&mut rng, n + i, org_count))
        .collect();
    let mut new_ids = Vec::new();
    let p = median_us(extra.len(), 10, |k| {
        new_ids.push(
            db.create(
                &me,
                C,
                &RecordInput::from_properties(contact_json(&extra[k], &org_ids)).unwrap(),
            )
            .unwrap()
            .id,
        );
    });
    let s = median_us(extra.len(), 10, |k| {
        let tx = sqlite_rw.transaction().unwrap();
        sqlite_insert_contact(&tx, new_ids[k], &extra[k], &org_ids);
        tx.commit().unwrap();
    });
    rows.push(Row {
        op: "durable single create",
        prismdb_us: p,
        sqlite_us: s,
    });

    import_rows(
        &db,
        &me,
        &sqlite_rw,
        &mut rng,
        (n, org_count),
        &org_ids,
        &ids,
        &mut rows,
    );

    report(&rows, n);
}

/// The import and bulk rows (issue 5), both durable: an async import job of n/5 new
/// contacts beside SQLite inserting the same rows in transactions of the job's chunk size, and a bulk update of 1,000 contacts beside one SQLite transaction of 1,000
/// updates.
#[allow(clippy::too_many_arguments)]
fn import_rows(
    db: &Database,
    me: &Principal,
    sqlite: &Connection,
    rng: &mut Rng,
    (n, org_count): (usize, usize),
    org_ids: &[Uuid],
    ids: &[Uuid],
    rows: &mut Vec<Row>,
) {
    let count = (n / 5).max(1000);
    let first = n + 1000;
    let contacts: Vec<Contact> = (first..first + count)
        .map(|i| make_contact(rng, i, org_count))
        .collect();
    let request = ImportRequest {
        rows: contacts
            .iter()
            .map(|c| contact_json(c, org_ids).as_object().cloned().unwrap())
            .collect(),
        mode: Some(ImportMode::Async),
        ..ImportRequest::default()
    };
    let start = Instant::now();
    let job = db.import(me, C, &request).unwrap();
    db.run_import_jobs(|_| {}).unwrap();
    let prism = start.elapsed().as_secs_f64() * 1e6 / count as f64;
    let job = db.import_status(me, job.job_id).unwrap();
    assert_eq!(job.succeeded, count as u64, "import");
    let new_ids: Vec<Uuid> = job.results.iter().map(|r| r.id.unwrap()).collect();
    let start = Instant::now();
    for (chunk, chunk_ids) in contacts
        .chunks(IMPORT_CHUNK_ROWS)
        .zip(new_ids.chunks(IMPORT_CHUNK_ROWS))
    {
        let tx = sqlite.unchecked_transaction().unwrap();
        for (c, id) in chunk.iter().zip(chunk_ids) {
            sqlite_insert_contact(&tx, *id, c, org_ids);
        }
        tx.commit().unwrap();
    }
    let theirs = start.elapsed().as_secs_f64() * 1e6 / count as f64;
    eprintln!(
        "import: {count} rows, prismdb {:.0} rows/s, SQLite {:.0} rows/s",
        1e6 / prism,
        1e6 / theirs
    );
    rows.push(Row {
        op: "import (async job; SQLite in transactions of the job's chunk size; per row)",
        prismdb_us: prism,
        sqlite_us: theirs,
    });
    // Bulk update of 1,000 contacts: name and score, one transaction each call. The engines
    // take turns, a call each (round k updates the same contacts in both).
    let (mut ours_round, mut their_round) = (0, 0);
    let (p, s) = alternating_medians(
        7,
        || {
            let k = ours_round;
            ours_round += 1;
            let items: Vec<BulkUpdateItem> = (0..1000)
                .map(|j| BulkUpdateItem {
                    id: ids[(k * 1000 + j * 97) % ids.len()].to_string(),
                    input: RecordInput::from_properties(
                        json!({"name": format!("Bulk {k} {j}"), "score": (j % 1000) as i64}),
                    )
                    .unwrap(),
                })
                .collect();
            let response = db.bulk_update(me, C, &items).unwrap();
            assert_eq!(response.summary.succeeded, 1000);
        },
        || {
            let k = their_round;
            their_round += 1;
            let tx = sqlite.unchecked_transaction().unwrap();
            for j in 0..1000 {
                let id = ids[(k * 1000 + j * 97) % ids.len()];
                let changed = tx
                    .prepare_cached("UPDATE contacts SET name = ?1, score = ?2, updated_at = ?3 WHERE id = ?4 AND deleted_at IS NULL")
                    .unwrap()
                    .execute(params![format!("Bulk {k} {j}"), (j % 1000) as i64, now_micros(), id.as_bytes()])
                    .unwrap();
                assert_eq!(changed, 1);
            }
            tx.commit().unwrap();
        },
    );
    rows.push(Row {
        op: "bulk update of 1,000 contacts (one call / transaction)",
        prismdb_us: p,
        sqlite_us: s,
    });
}

/// Deals for the grant rows: a select of this many stages.
const STAGES: usize = 6;
/// Groups a deal's grant names (two each, with `r` or `w`); the reader is in three.
const GRANT_GROUPS: usize = 20;
/// Users who own deals (each owner has `a` on its deals); the reader is one of them.
const GRANT_USERS: usize = 50;

/// The grant rows (issue 4): a filtered count over deals as a member who may read about 30%
/// of them (through two of the deal's groups and its owner), beside the same query as an
/// admin (no grant AND) and beside SQLite joining a grant table.
fn grant_rows(db: &Database, sqlite: &Connection, team: Uuid, n: usize, rows: &mut Vec<Row>) {
    let deals = (n / 10).max(100);
    let groups: Vec<Uuid> = (0..GRANT_GROUPS)
        .map(|i| Uuid::from_u128(1000 + i as u128))
        .collect();
    let users: Vec<Uuid> = (0..GRANT_USERS)
        .map(|i| Uuid::from_u128(2000 + i as u128))
        .collect();
    let admin = Principal::admin(team, users[0]);
    let stages: Vec<String> = (0..STAGES).map(|i| format!("s{i}")).collect();
    db.add_property(
        &admin,
        ObjectType::Deal,
        &spec("phase", "select", Some(stages)),
    )
    .unwrap();
    sqlite
        .execute_batch(
            "CREATE TABLE deals (rowid INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, name TEXT,
                 amount INTEGER, phase INTEGER, deleted_at INTEGER);
             CREATE INDEX deals_phase ON deals(phase);
             CREATE INDEX deals_amount ON deals(amount);
             CREATE TABLE deal_grants (deal INTEGER NOT NULL, kind INTEGER NOT NULL,
                 principal BLOB NOT NULL, level INTEGER NOT NULL,
                 PRIMARY KEY (deal, kind, principal)) WITHOUT ROWID;
             CREATE INDEX deal_grants_principal ON deal_grants(kind, principal, level, deal);",
        )
        .unwrap();
    let mut rng = Rng(7);
    let mut made = Vec::with_capacity(deals);
    for start in (0..deals).step_by(BATCH) {
        db.write_batch(&admin, |batch| {
            for i in start..(start + BATCH).min(deals) {
                let (g1, g2) = (rng.below(GRANT_GROUPS as u64), rng.below(GRANT_GROUPS as u64));
                let owner = users[rng.below(GRANT_USERS as u64) as usize];
                let mut grant = Grant::default();
                grant.groups.insert(groups[g1 as usize], Level::Read);
                grant.groups.insert(groups[g2 as usize], Level::Write);
                grant.users.insert(owner, Level::Admin);
                let amount = rng.below(10_000) as i64;
                let phase = rng.below(STAGES as u64) as usize;
                let input = RecordInput {
                    grant: Some(grant.clone()),
                    ..RecordInput::from_properties(
                        json!({"name": format!("Deal {i}"), "amount": amount, "phase": format!("s{phase}")}),
                    )?
                };
                let id = batch.create_id(ObjectType::Deal, &input)?;
                made.push((id, amount, phase, grant));
            }
            Ok(())
        })
        .unwrap();
    }
    let tx = sqlite.unchecked_transaction().unwrap();
    {
        let mut deal = tx
            .prepare_cached(
                "INSERT INTO deals (rowid, id, name, amount, phase) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .unwrap();
        let mut entry = tx
            .prepare_cached("INSERT OR REPLACE INTO deal_grants (deal, kind, principal, level) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        for (i, (id, amount, phase, grant)) in made.iter().enumerate() {
            let rowid = i as i64 + 1;
            deal.execute(params![
                rowid,
                id.as_bytes(),
                format!("Deal {i}"),
                amount,
                *phase as i64
            ])
            .unwrap();
            for (group, level) in &grant.groups {
                entry
                    .execute(params![rowid, 1, group.as_bytes(), *level as i64])
                    .unwrap();
            }
            for (user, level) in &grant.users {
                entry
                    .execute(params![rowid, 2, user.as_bytes(), *level as i64])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    let reader = Principal::member(team, users[1]).with_groups(groups[..3].to_vec());
    let filter = json!({"phase": "s2", "amount": {"$gte": 5000}});
    let request = QueryRequest {
        filter: Some(filter),
        limit: Some(1),
        include_total: true,
        ..QueryRequest::default()
    };
    let sql = "SELECT count(*) FROM deals d WHERE d.deleted_at IS NULL AND d.phase = 2 AND d.amount >= 5000
        AND d.rowid IN (SELECT deal FROM deal_grants WHERE (kind = 1 AND principal IN (?1, ?2, ?3)) OR (kind = 2 AND principal = ?4))";
    let sqlite_count = || -> u64 {
        sqlite
            .prepare_cached(sql)
            .unwrap()
            .query_row(
                params![
                    groups[0].as_bytes(),
                    groups[1].as_bytes(),
                    groups[2].as_bytes(),
                    users[1].as_bytes()
                ],
                |r| r.get::<_, i64>(0),
            )
            .unwrap() as u64
    };
    let ours = |who: &Principal| db.query(who, ObjectType::Deal, &request).unwrap().total;
    let readable = db.count(&reader, ObjectType::Deal).unwrap();
    eprintln!(
        "grants: {deals} deals, the reader may read {readable} ({:.0}%)",
        100.0 * readable as f64 / deals as f64
    );
    assert_eq!(ours(&reader), Some(sqlite_count()), "grant count");
    rows.push(timed_pair(
        "grants: deals phase = X AND amount >= 5000 (count) as a member reading ~30%",
        || {
            std::hint::black_box(ours(&reader));
        },
        || {
            std::hint::black_box(sqlite_count());
        },
    ));
    // Member and admin take turns, a query each, so that both see the machine in the same
    // state: this row compares two ~1 ms queries within 1.2×, and one block of twenty after
    // the other put a shared machine's swings between them (0.68× in one run, 0.92–0.95×
    // in the three around it).
    let (member, admin) = alternating_medians(
        100,
        || {
            std::hint::black_box(ours(&reader));
        },
        || {
            std::hint::black_box(ours(&admin));
        },
    );
    rows.push(Row {
        op: "grants: the same count as an admin (ratio = admin / member)",
        prismdb_us: member,
        sqlite_us: admin,
    });
}

/// Runs `a` and `b` in turns, `ops` times each, and returns the median µs of each.
fn alternating_medians(ops: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let (mut a_samples, mut b_samples) = (Vec::with_capacity(ops), Vec::with_capacity(ops));
    for _ in 0..ops {
        let start = Instant::now();
        a();
        a_samples.push(start.elapsed().as_secs_f64() * 1e6);
        let start = Instant::now();
        b();
        b_samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    (median(a_samples), median(b_samples))
}

/// The query rows (issue 3): each runs in both engines and must return the same answer.
fn query_rows(db: &Database, me: &Principal, sqlite: &Connection, rows: &mut Vec<Row>) {
    let filtered = json!({"status": "active", "score": {"$gte": 500}, "city": {"$in": ["city1", "city2", "city3"]}});
    let filtered_sql = "c.deleted_at IS NULL AND c.status = 1 AND c.score >= 500 AND c.city IN ('city1', 'city2', 'city3')";
    let tags = json!({"tags": {"$in": ["tag3", "tag7"]}});
    // (`EXISTS (… t.tag IN (3, 7))` counted a contact once per matching tag with the bundled
    // SQLite here: 2,577 instead of 2,499 on 20,000 contacts; the IN-subquery form is right.)
    let tags_sql = "c.deleted_at IS NULL AND c.rowid IN (SELECT contact FROM contact_tags WHERE tag IN (3, 7))";
    let son = json!({"name": {"$contains": "son 12"}});
    let son_sql = "c.deleted_at IS NULL AND c.name LIKE '%son 12%'";
    let path = json!({"organization.industry": "ind3"});
    let path_sql = "c.deleted_at IS NULL AND c.organization IN (SELECT id FROM organizations WHERE industry = 3 AND deleted_at IS NULL)";
    // Sorted by score: created_at is the commit time in prismdb (one value per 10,000-record
    // batch), so the two engines' created_at columns differ.
    let by_score_desc = vec![SortKey {
        property: "score".into(),
        direction: Direction::Desc,
    }];
    let q = Queries { db, me, sqlite };

    rows.push(q.count_row(
        "query: status = X AND score >= 500 AND city IN 3 (count)",
        &filtered,
        filtered_sql,
    ));
    rows.push(q.page_row(
        "query: same filter, first page by score desc",
        &filtered,
        &by_score_desc,
        filtered_sql,
        "c.score DESC, c.id",
    ));
    rows.push(q.count_row("query: tags has any of 2 (count)", &tags, tags_sql));
    rows.push(q.page_row(
        "query: tags has any of 2 (first page by id)",
        &tags,
        &[],
        tags_sql,
        "c.id",
    ));
    rows.push(q.page_row(
        "query: name contains \"son 12\" (first page by id)",
        &son,
        &[],
        son_sql,
        "c.id",
    ));
    rows.push(q.count_row("query: organization.industry = X (count)", &path, path_sql));
    rows.push(q.page_row(
        "query: organization.industry = X (first page by id)",
        &path,
        &[],
        path_sql,
        "c.id",
    ));

    // The filtered page by score desc with include_total: SQLite runs the page and a count.
    let with_total = q.request(&filtered, &by_score_desc, true);
    let page = q.ours(&with_total);
    assert_eq!(page.total, Some(q.sqlite_count(filtered_sql)));
    let ids: Vec<Uuid> = page.rows.iter().map(|r| r.id).collect();
    assert_eq!(ids, q.sqlite_page(filtered_sql, "c.score DESC, c.id"));
    rows.push(timed_pair(
        "query: same filter, first page by score desc, with include_total",
        || {
            std::hint::black_box(q.ours(&with_total));
        },
        || {
            std::hint::black_box(q.sqlite_page(filtered_sql, "c.score DESC, c.id"));
            std::hint::black_box(q.sqlite_count(filtered_sql));
        },
    ));

    deep_sorted_page(db, me, sqlite, rows);
    rows.push(q.count_after_write_row(
        "query: the filtered count right after a patch of one contact's status, city and score (its cached bitmaps stale)",
        &filtered,
        filtered_sql,
    ));
    rows.push(q.count_after_create_row(
        "query: the filtered count right after a create of one contact (its cached bitmaps and the live bitmap stale)",
        &filtered,
        filtered_sql,
    ));
}

/// The same query asked of both engines: a prismdb filter and the SQLite `WHERE` clause
/// that means the same.
struct Queries<'a> {
    db: &'a Database,
    me: &'a Principal,
    sqlite: &'a Connection,
}

impl Queries<'_> {
    fn request(&self, filter: &Value, sort: &[SortKey], total: bool) -> QueryRequest {
        QueryRequest {
            filter: Some(filter.clone()),
            sort: sort.to_vec(),
            limit: Some(50),
            include_total: total,
            ..QueryRequest::default()
        }
    }

    fn ours(&self, request: &QueryRequest) -> Page {
        self.db.query(self.me, C, request).unwrap()
    }

    fn sqlite_count(&self, filter: &str) -> u64 {
        let sql = format!("SELECT count(*) FROM contacts c WHERE {filter}");
        self.sqlite
            .prepare_cached(&sql)
            .unwrap()
            .query_row([], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    }

    fn sqlite_page(&self, filter: &str, order: &str) -> Vec<Uuid> {
        let sql = format!("{SQLITE_ROW} WHERE {filter} ORDER BY {order} LIMIT 51");
        let mut stmt = self.sqlite.prepare_cached(&sql).unwrap();
        let page: Vec<Uuid> = stmt
            .query_map([], |r| Ok(sqlite_row(r, true).0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        page.into_iter().take(50).collect()
    }

    /// A count in both engines, checked equal, then timed.
    fn count_row(&self, op: &'static str, filter: &Value, sql: &str) -> Row {
        let request = self.request(filter, &[], true);
        assert_eq!(
            self.ours(&request).total,
            Some(self.sqlite_count(sql)),
            "{op}"
        );
        timed_pair(
            op,
            || {
                std::hint::black_box(self.ours(&request));
            },
            || {
                std::hint::black_box(self.sqlite_count(sql));
            },
        )
    }

    /// A count in both engines, each call right after an untimed patch of one contact's
    /// status, city and score in both. The patch changes bitmaps of all three properties
    /// the count reads, so every cached one is stale: prismdb brings them up to date from
    /// the patched record (median of 20 each).
    fn count_after_write_row(&self, op: &'static str, filter: &Value, sql: &str) -> Row {
        let first = self.db.list(self.me, C, &ListRequest::first(20)).unwrap();
        self.count_after_each(op, filter, sql, |k| {
            let row = &first.rows[k % first.rows.len()];
            let (status, city, score) = (
                k % STATUSES.len(),
                format!("city{}", k % 4),
                (k * 37) % 1000,
            );
            let props = json!({"status": STATUSES[status], "city": city, "score": score});
            let input = RecordInput::from_properties(props).unwrap();
            self.db
                .write_batch_with(self.me, Durability::Eventual, |b| {
                    b.patch(C, row.id, &input)
                })
                .unwrap();
            self.sqlite
                .execute(
                    "UPDATE contacts SET status = ?1, city = ?2, score = ?3 WHERE id = ?4",
                    params![status as i64, city, score as i64, row.id.as_bytes()],
                )
                .unwrap();
        })
    }

    /// [`Queries::count_after_write_row`] with a create of one contact (status, city and
    /// score set, in the filter's values half the time) before each count.
    fn count_after_create_row(&self, op: &'static str, filter: &Value, sql: &str) -> Row {
        self.count_after_each(op, filter, sql, |k| {
            let (status, city, score) = (k % 2, format!("city{}", 1 + k % 4), (k * 53) % 1000);
            let (name, email) = (format!("Created {k}"), format!("created{k}@example.com"));
            let props = json!({"name": name, "email": email, "status": STATUSES[status], "city": city, "score": score});
            let input = RecordInput::from_properties(props).unwrap();
            let created = self
                .db
                .write_batch_with(self.me, Durability::Eventual, |b| b.create(C, &input))
                .unwrap();
            self.sqlite
                .execute(
                    "INSERT INTO contacts (id, name, email, city, status, score, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                    params![created.id.as_bytes(), name, email, city, status as i64, score as i64, now_micros()],
                )
                .unwrap();
        })
    }

    /// The filtered count (a first page with its total in prismdb) timed in both engines
    /// right after each of 20 writes that `write` makes to both; the medians.
    fn count_after_each(
        &self,
        op: &'static str,
        filter: &Value,
        sql: &str,
        mut write: impl FnMut(usize),
    ) -> Row {
        let request = self.request(filter, &[], true);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for k in 0..20 {
            write(k);
            let start = Instant::now();
            let total = self.ours(&request).total;
            ours.push(start.elapsed().as_secs_f64() * 1e6);
            let start = Instant::now();
            let count = self.sqlite_count(sql);
            theirs.push(start.elapsed().as_secs_f64() * 1e6);
            assert_eq!(total, Some(count), "{op}");
        }
        Row {
            op,
            prismdb_us: median(ours),
            sqlite_us: median(theirs),
        }
    }

    /// A first page in both engines, checked to hold the same ids, then timed.
    fn page_row(
        &self,
        op: &'static str,
        filter: &Value,
        sort: &[SortKey],
        sql: &str,
        order: &str,
    ) -> Row {
        let request = self.request(filter, sort, false);
        let ids: Vec<Uuid> = self.ours(&request).rows.iter().map(|r| r.id).collect();
        assert_eq!(ids, self.sqlite_page(sql, order), "{op}");
        timed_pair(
            op,
            || {
                std::hint::black_box(self.ours(&request));
            },
            || {
                std::hint::black_box(self.sqlite_page(sql, order));
            },
        )
    }
}

/// A page 90% of the way through every contact sorted by score desc: prismdb resumes from a
/// cursor handed out by the page before, SQLite from the same (score, id) keyset bound.
fn deep_sorted_page(db: &Database, me: &Principal, sqlite: &Connection, rows: &mut Vec<Row>) {
    let sorted = |cursor: Option<String>, limit: u32| QueryRequest {
        sort: vec![SortKey {
            property: "score".into(),
            direction: Direction::Desc,
        }],
        limit: Some(limit),
        cursor,
        ..QueryRequest::default()
    };
    let live = db.count(me, C).unwrap() as usize;
    let mut cursor = None;
    let mut seen = 0;
    let mut last = None;
    while seen < live * 9 / 10 {
        let step = (live * 9 / 10 - seen).min(1000) as u32;
        let page = db.query(me, C, &sorted(cursor, step)).unwrap();
        seen += page.rows.len();
        last = page.rows.last().map(|r| {
            let score = r.properties.get("score").and_then(Value::as_i64).unwrap();
            (score, r.id)
        });
        cursor = page.next_cursor;
    }
    let (score, id) = last.expect("a non-empty walk");
    let deep = sorted(cursor, 50);
    let bound = format!(
        "c.deleted_at IS NULL AND (c.score < {score} OR (c.score = {score} AND c.id > X'{}'))",
        id.simple()
    );
    let sql = format!("{SQLITE_ROW} WHERE {bound} ORDER BY c.score DESC, c.id LIMIT 51");
    let sqlite_deep = || -> Vec<Uuid> {
        let mut stmt = sqlite.prepare_cached(&sql).unwrap();
        let page: Vec<Uuid> = stmt
            .query_map([], |r| Ok(sqlite_row(r, true).0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        page.into_iter().take(50).collect()
    };
    let ours = db.query(me, C, &deep).unwrap();
    assert_eq!(
        ours.rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        sqlite_deep()
    );
    rows.push(timed_pair(
        "query: page at 90% of all contacts by score desc (cursor)",
        || {
            std::hint::black_box(db.query(me, C, &deep).unwrap());
        },
        || {
            std::hint::black_box(sqlite_deep());
        },
    ));
}

/// The cursor that starts a page at each position (None for position 0).
fn page_cursors(
    db: &Database,
    me: &Principal,
    ids: &[Uuid],
    positions: &[usize],
) -> Vec<Option<String>> {
    let wanted: BTreeMap<usize, ()> = positions.iter().map(|p| (*p, ())).collect();
    let mut by_position = BTreeMap::new();
    let mut request = ListRequest::first(1);
    let mut position = 0;
    // Cursors are only handed out by pages, so walk single rows up to each wanted position.
    // To keep this cheap, walk with pages that end exactly before each wanted position.
    for &target in wanted.keys() {
        if target == 0 {
            by_position.insert(0, None);
            continue;
        }
        while position < target {
            let step = (target - position).min(1000) as u32;
            request.limit = Some(step);
            let page = db.list(me, C, &request).unwrap();
            position += page.rows.len();
            assert_eq!(page.rows.last().unwrap().id, ids[position - 1]);
            request.cursor = page.next_cursor;
        }
        by_position.insert(target, request.cursor.clone());
    }
    positions.iter().map(|p| by_position[p].clone()).collect()
}

fn report(rows: &[Row], n: usize) {
    println!("\nprismdb vs SQLite, {n} contacts (median µs per operation; ratio = SQLite / prismdb, higher is better)\n");
    println!("| operation | prismdb | SQLite | ratio |");
    println!("|---|---:|---:|---:|");
    let mut json_rows = Vec::new();
    for row in rows {
        let ratio = row.sqlite_us / row.prismdb_us;
        println!(
            "| {} | {:.2} | {:.2} | {:.2}× |",
            row.op, row.prismdb_us, row.sqlite_us, ratio
        );
        json_rows.push(json!({"op": row.op, "prismdb_us": row.prismdb_us, "sqlite_us": row.sqlite_us, "ratio": ratio}));
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("vs_sqlite.json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, serde_json::to_string_pretty(&json_rows).unwrap()).unwrap();
    println!("\nwritten to {}", out.display());
}
