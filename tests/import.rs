//! Imports: sync and async jobs, per-row outcomes, dedupe keys, and jobs that resume after
//! a restart without applying a row twice.

mod common;

use common::{assert_consistent, contact, setup};
use prismdb::{
    Database, ImportJob, ImportMode, ImportRequest, JobStatus, ObjectType, Principal, PropertySpec,
    RecordInput, IMPORT_CHUNK_ROWS as CHUNK,
};
use serde_json::{json, Map, Value};
use uuid::Uuid;

const C: ObjectType = ObjectType::Contact;

fn rows(values: Vec<Value>) -> Vec<Map<String, Value>> {
    values
        .into_iter()
        .map(|v| v.as_object().cloned().expect("an object"))
        .collect()
}

fn codes(job: &ImportJob) -> Vec<&str> {
    job.results
        .iter()
        .map(|r| r.error.as_ref().map_or("ok", |(code, _)| code.as_str()))
        .collect()
}

fn people(n: usize) -> Vec<Map<String, Value>> {
    rows(
        (0..n)
            .map(|i| json!({"name": format!("P{i}"), "email": format!("p{i}@x.io")}))
            .collect(),
    )
}

#[test]
fn a_sync_import_reports_every_row() {
    let (db, me) = setup();
    contact(&db, &me, json!({"name": "Taken", "email": "taken@x.io"}));
    let request = ImportRequest {
        rows: rows(vec![
            json!({"name": "A", "email": "a@x.io"}),
            json!({"nope": 1}),
            json!({"name": "B", "email": "taken@x.io"}),
            json!({"name": "C", "email": "a@x.io"}),
            json!({"name": "D"}),
        ]),
        ..ImportRequest::default()
    };
    let job = db.import(&me, C, &request).unwrap();
    assert_eq!(job.status, JobStatus::Complete);
    assert_eq!(
        (job.total, job.processed, job.succeeded, job.failed),
        (5, 5, 2, 3)
    );
    assert_eq!(
        codes(&job),
        [
            "ok",
            "unknown_property",
            "unique_violation",
            "unique_violation",
            "ok"
        ]
    );
    assert!(job.results[0].created && !job.results[0].existing);
    assert_eq!(job.results[1].id, None);
    assert_eq!(db.count(&me, C).unwrap(), 3);
    assert_eq!(db.import_status(&me, job.job_id).unwrap(), job);
    let shape = job.to_json();
    assert_eq!(shape["status"], "complete");
    assert_eq!(shape["results"][2]["error"]["code"], "unique_violation");
    assert!(shape["expires_at"].is_string());
    assert_consistent(&db);
}

#[test]
fn a_dedupe_key_updates_what_it_matches() {
    let (db, me) = setup();
    let ada = contact(&db, &me, json!({"name": "Ada", "email": "ada@x.io"}));
    let request = ImportRequest {
        rows: rows(vec![
            json!({"email": "ADA@x.io", "title": "Countess"}),
            json!({"email": "new@x.io", "name": "New"}),
            json!({"email": "new@x.io", "title": "Later"}),
            json!({"name": "No key"}),
        ]),
        dedupe_key: Some("email".into()),
        mode: Some(ImportMode::Sync),
    };
    let job = db.import(&me, C, &request).unwrap();
    assert_eq!(codes(&job), ["ok", "ok", "ok", "ok"]);
    assert!(job.results[0].existing && job.results[0].id == Some(ada.id));
    assert!(job.results[1].created);
    // The later row updates the record the earlier one made.
    assert!(job.results[2].existing);
    assert_eq!(job.results[2].id, job.results[1].id);
    let new = db.get(&me, C, job.results[1].id.unwrap()).unwrap();
    assert_eq!(new.properties.get("title"), Some(&json!("Later")));
    assert_eq!(new.properties.get("name"), Some(&json!("New")));
    assert_eq!(
        db.get(&me, C, ada.id).unwrap().properties.get("title"),
        Some(&json!("Countess"))
    );
    assert_eq!(db.count(&me, C).unwrap(), 3);
    assert_consistent(&db);
}

#[test]
fn ambiguous_keys_and_bad_requests_are_refused() {
    let (db, me) = setup();
    let admin = Principal::admin(me.team, me.user);
    let city = PropertySpec {
        slug: "city".into(),
        kind: "text".into(),
        indexed: Some(true),
        ..Default::default()
    };
    db.add_property(&admin, C, &city).unwrap();
    contact(&db, &me, json!({"name": "A", "city": "Oslo"}));
    contact(&db, &me, json!({"name": "B", "city": "Oslo"}));
    let by_city = ImportRequest {
        rows: rows(vec![json!({"city": "Oslo", "name": "C"})]),
        dedupe_key: Some("city".into()),
        mode: None,
    };
    let job = db.import(&me, C, &by_city).unwrap();
    assert_eq!(codes(&job), ["multiple_matches"]);
    let by_name = ImportRequest {
        dedupe_key: Some("name".into()),
        ..by_city.clone()
    };
    assert_eq!(
        db.import(&me, C, &by_name).unwrap_err().code(),
        "invalid_request"
    );
    let too_many = ImportRequest {
        rows: people(1001),
        mode: Some(ImportMode::Sync),
        ..ImportRequest::default()
    };
    assert_eq!(
        db.import(&me, C, &too_many).unwrap_err().code(),
        "limit_exceeded"
    );
    let events = ImportRequest {
        rows: rows(vec![json!({"name": "E"})]),
        ..ImportRequest::default()
    };
    let refused = db.import(&me, ObjectType::Event, &events).unwrap_err();
    assert_eq!(refused.code(), "read_only_type");
    for body in [
        json!([]),
        json!({"rows": [1]}),
        json!({"rows": [], "mode": "later"}),
        json!({"x": 1}),
    ] {
        let err = ImportRequest::from_json(&body).unwrap_err();
        assert_eq!(err.code(), "invalid_request", "{body}");
    }
    let parsed = ImportRequest::from_json(
        &json!({"rows": [{"name": "x"}], "dedupe_key": "email", "mode": "async"}),
    )
    .unwrap();
    assert_eq!(parsed.mode, Some(ImportMode::Async));
    assert_eq!(db.count(&me, C).unwrap(), 2);
    // Another team cannot read the job.
    let stranger = Principal::member(Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(
        db.import_status(&stranger, job.job_id).unwrap_err().code(),
        "not_found"
    );
    let colleague = Principal::member(me.team, Uuid::new_v4());
    assert_eq!(
        db.import_status(&colleague, job.job_id).unwrap_err().code(),
        "not_found"
    );
}

#[test]
fn an_async_job_runs_in_chunks_and_reports_progress() {
    let (db, me) = setup();
    let total = 2 * CHUNK + CHUNK / 2;
    let request = ImportRequest {
        rows: people(total),
        ..ImportRequest::default()
    };
    let job = db.import(&me, C, &request).unwrap();
    assert_eq!(job.status, JobStatus::Processing);
    assert_eq!((job.total, job.processed), (total as u64, 0));
    assert!(job.expires_at.is_none());
    assert_eq!(db.count(&me, C).unwrap(), 0);
    let mut seen = Vec::new();
    let chunks = db.run_import_jobs(|j| seen.push(*j)).unwrap();
    assert_eq!(chunks, 3);
    let processed: Vec<u64> = seen.iter().map(|p| p.processed).collect();
    assert_eq!(processed, [CHUNK as u64, 2 * CHUNK as u64, total as u64]);
    assert!(seen
        .iter()
        .all(|p| p.job_id == job.job_id && p.total == total as u64));
    assert!(seen
        .iter()
        .all(|p| p.succeeded == p.processed && p.failed == 0));
    let statuses: Vec<JobStatus> = seen.iter().map(|p| p.status).collect();
    assert_eq!(
        statuses,
        [
            JobStatus::Processing,
            JobStatus::Processing,
            JobStatus::Complete
        ]
    );
    let done = db.import_status(&me, job.job_id).unwrap();
    assert_eq!(done.status, JobStatus::Complete);
    assert_eq!((done.succeeded, done.failed), (total as u64, 0));
    assert_eq!(done.results.len(), total);
    assert_eq!(db.count(&me, C).unwrap(), total as u64);
    assert_eq!(db.run_import_jobs(|_| {}).unwrap(), 0);
    // A finished job expires a day after it finished.
    let parse = |text: &str| {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let expires = parse(done.expires_at.as_deref().unwrap());
    assert_eq!(expires - parse(&done.updated_at), time::Duration::hours(24));
    assert_consistent(&db);
}

#[test]
fn a_job_resumes_after_a_restart_without_applying_a_row_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let me = Principal::member(Uuid::new_v4(), Uuid::new_v4());
    let job_id = {
        let db = Database::open(&path).unwrap();
        let request = ImportRequest {
            rows: people(3 * CHUNK + CHUNK / 2),
            mode: Some(ImportMode::Async),
            ..ImportRequest::default()
        };
        let job = db.import(&me, C, &request).unwrap();
        // Stop after the first chunk: the progress callback panics, as a crash would.
        let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            db.run_import_jobs(|_| panic!("stop after one chunk"))
                .unwrap();
        }));
        assert!(stopped.is_err());
        let processed = db.import_status(&me, job.job_id).unwrap().processed;
        assert_eq!(processed, CHUNK as u64);
        job.job_id
    };
    let db = Database::open(&path).unwrap();
    assert_eq!(db.count(&me, C).unwrap(), CHUNK as u64);
    assert_eq!(db.run_import_jobs(|_| {}).unwrap(), 3);
    let done = db.import_status(&me, job_id).unwrap();
    assert_eq!(done.status, JobStatus::Complete);
    let total = (3 * CHUNK + CHUNK / 2) as u64;
    assert_eq!(
        (done.processed, done.succeeded, done.failed),
        (total, total, 0)
    );
    assert_eq!(db.count(&me, C).unwrap(), total);
    assert_consistent(&db);
}

/// Opens `path` with the database's own job worker.
fn open_with_worker(path: &std::path::Path) -> Database {
    let options = prismdb::Options {
        jobs: true,
        ..Default::default()
    };
    Database::open_with(path, options).unwrap()
}

/// Waits (up to a minute) until job `id` is no longer processing.
fn wait_for(db: &Database, me: &Principal, id: Uuid) -> ImportJob {
    for _ in 0..600 {
        let job = db.import_status(me, id).unwrap();
        if job.status != JobStatus::Processing {
            return job;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("job {id} did not finish within a minute");
}

#[test]
fn the_worker_runs_async_jobs_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_with_worker(&dir.path().join("db"));
    let me = Principal::member(Uuid::new_v4(), Uuid::new_v4());
    let request = ImportRequest {
        rows: people(2500),
        mode: Some(ImportMode::Async),
        ..ImportRequest::default()
    };
    let job = db.import(&me, C, &request).unwrap();
    let done = wait_for(&db, &me, job.job_id);
    assert_eq!((done.status, done.succeeded), (JobStatus::Complete, 2500));
    assert_eq!(db.count(&me, C).unwrap(), 2500);
    // The worker stops with the database (dropping must not hang).
    drop(db);
}

const CHILD_ENV: &str = "PRISMDB_IMPORT_CHILD";

/// Child mode (only when the parent sets `PRISMDB_IMPORT_CHILD`): opens the database with
/// its job worker, which resumes the stored job, and waits to be killed.
#[test]
fn child_runs_import_jobs() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let _db = open_with_worker(std::path::Path::new(&path));
    println!("READY");
    std::thread::sleep(std::time::Duration::from_secs(600));
}

/// A 200,000-row async import runs in a child that is killed with SIGKILL at random
/// moments, 20 times; after each reopen the job's counters agree with the records (no row
/// applied twice, none lost) and the indexes agree with the records; then it finishes.
#[test]
fn an_import_killed_20_times_applies_every_row_once() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("import.prismdb");
    let me = Principal::member(Uuid::from_u128(0x1a), Uuid::from_u128(0x1b));
    let job_id = {
        let db = Database::open(&path).unwrap();
        let request = ImportRequest {
            rows: people(200_000),
            mode: Some(ImportMode::Async),
            ..ImportRequest::default()
        };
        db.import(&me, C, &request).unwrap().job_id
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut progressed = Vec::new();
    for round in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_runs_import_jobs",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("READY") {
            line.clear();
            if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20 + seed % 300));
        child.kill().unwrap();
        child.wait().unwrap();
        let db = Database::open(&path).unwrap();
        let job = db.import_status(&me, job_id).unwrap();
        assert_eq!(
            job.failed, 0,
            "round {round}: a row was refused (applied twice?)"
        );
        let whole = job.processed.is_multiple_of(CHUNK as u64) || job.processed == job.total;
        assert!(whole, "round {round}: a chunk was half applied");
        assert_eq!(
            db.count(&me, C).unwrap(),
            job.processed,
            "round {round}: the records and the job's counters disagree"
        );
        assert_consistent(&db);
        progressed.push(job.processed);
    }
    eprintln!("processed after each kill: {progressed:?}");
    assert!(progressed.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        progressed.iter().any(|p| *p < 200_000),
        "every kill came after the job finished: nothing was resumed"
    );
    let db = Database::open(&path).unwrap();
    db.run_import_jobs(|_| {}).unwrap();
    let done = db.import_status(&me, job_id).unwrap();
    assert_eq!(
        (done.status, done.succeeded, done.failed),
        (JobStatus::Complete, 200_000, 0)
    );
    assert_eq!(db.count(&me, C).unwrap(), 200_000);
    assert_consistent(&db);
}

#[test]
fn import_rows_go_through_the_callers_grants() {
    let db = Database::in_memory().unwrap();
    let team = Uuid::new_v4();
    let owner = Principal::member(team, Uuid::new_v4());
    let member = Principal::member(team, Uuid::new_v4());
    let admin = Principal::admin(team, Uuid::new_v4());
    let code = PropertySpec {
        slug: "code".into(),
        kind: "text".into(),
        unique: Some(true),
        ..Default::default()
    };
    db.add_property(&admin, ObjectType::Deal, &code).unwrap();
    let deal = |code: &str, team_level: Option<prismdb::Level>| {
        let grant = prismdb::Grant {
            team: team_level,
            users: [(owner.user, prismdb::Level::Admin)].into(),
            ..Default::default()
        };
        let input = prismdb::RecordInput {
            grant: Some(grant),
            ..common::input(json!({"name": code, "code": code}))
        };
        db.create(&owner, ObjectType::Deal, &input).unwrap().id
    };
    let hidden = deal("hidden", None);
    let readable = deal("readable", Some(prismdb::Level::Read));
    let request = ImportRequest {
        rows: rows(vec![
            json!({"code": "readable", "amount": 1}),
            json!({"code": "fresh", "amount": 2}),
            json!({"code": "hidden", "amount": 3}),
        ]),
        dedupe_key: Some("code".into()),
        mode: None,
    };
    let job = db.import(&member, ObjectType::Deal, &request).unwrap();
    // Readable but not writable: refused. A hidden record's unique value cannot be taken
    // (uniqueness is team-wide) but the row does not learn which record holds it.
    assert_eq!(codes(&job), ["permission_denied", "ok", "unique_violation"]);
    let message = &job.results[2].error.as_ref().unwrap().1;
    assert!(!message.contains(&hidden.to_string()), "{message}");
    let untouched = db.get(&member, ObjectType::Deal, readable).unwrap();
    assert!(untouched.properties.get("amount").is_none());
    // What the member imported is the member's: it may delete it.
    let made = job.results[1].id.unwrap();
    db.delete(&member, ObjectType::Deal, made).unwrap();
    assert_consistent(&db);
}

mod model {
    use super::*;
    use proptest::prelude::*;

    /// A drawn row: an e-mail from a small pool (or none), and whether it is invalid.
    fn row() -> impl Strategy<Value = (Option<u8>, bool)> {
        (proptest::option::of(0u8..6), proptest::bool::weighted(0.15))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Random rows with and without a dedupe key give the per-row outcomes and the
        /// records that applying them one by one to a model gives.
        #[test]
        fn import_rows_agree_with_a_model(
            existing in proptest::collection::vec(0u8..6, 0..4),
            drawn in proptest::collection::vec(row(), 1..25),
            dedupe in any::<bool>(),
        ) {
            let (db, me) = setup();
            let mut held: std::collections::BTreeSet<u8> = Default::default();
            for e in existing {
                if held.insert(e) {
                    contact(&db, &me, json!({"email": format!("e{e}@x.io")}));
                }
            }
            let mut expected = Vec::new();
            let mut made = held.len() as u64;
            let mut values = Vec::new();
            for (email, invalid) in &drawn {
                let mut row = json!({"name": "n"});
                if let Some(e) = email {
                    row["email"] = json!(format!("e{e}@x.io"));
                }
                if *invalid {
                    row["nope"] = json!(1);
                }
                values.push(row);
                let outcome = match (email, dedupe, *invalid) {
                    (_, _, true) => "unknown_property",
                    (Some(e), true, false) if held.contains(e) => "ok",
                    (Some(e), false, false) if held.contains(e) => "unique_violation",
                    (Some(e), _, false) => { held.insert(*e); made += 1; "ok" }
                    (None, _, false) => { made += 1; "ok" }
                };
                expected.push(outcome);
            }
            let request = ImportRequest {
                rows: rows(values),
                dedupe_key: dedupe.then(|| "email".to_owned()),
                mode: None,
            };
            let job = db.import(&me, C, &request).unwrap();
            prop_assert_eq!(codes(&job), expected);
            prop_assert_eq!(db.count(&me, C).unwrap(), made);
            prop_assert!(db.verify_integrity().unwrap().is_ok());
        }
    }
}

/// A progress callback that writes gets a `conflict` (the job holds the writers' turn)
/// instead of waiting for ever, and the job still finishes.
#[test]
fn a_write_from_the_progress_callback_is_refused_not_deadlocked() {
    let db = Database::in_memory().unwrap();
    let me = Principal::member(Uuid::new_v4(), Uuid::new_v4());
    let request = ImportRequest {
        rows: people(CHUNK + 10),
        mode: Some(ImportMode::Async),
        ..ImportRequest::default()
    };
    let job = db.import(&me, C, &request).unwrap();
    let mut refused = Vec::new();
    db.run_import_jobs(|_| {
        let input = RecordInput::from_properties(json!({"name": "from the callback"})).unwrap();
        refused.push(db.create(&me, C, &input).unwrap_err().code().to_owned());
    })
    .unwrap();
    assert_eq!(refused, ["conflict", "conflict"]);
    let done = db.import_status(&me, job.job_id).unwrap();
    assert_eq!(done.status, JobStatus::Complete);
    assert_eq!(db.count(&me, C).unwrap(), (CHUNK + 10) as u64);
    // Once the job has ended, writes go through again.
    let input = RecordInput::from_properties(json!({"name": "after"})).unwrap();
    db.create(&me, C, &input).unwrap();
}
