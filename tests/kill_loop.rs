//! The kill -9 loop: a child process runs a random mix of creates, patches, deletes,
//! upserts, bulk updates, bulk deletes and imports, announcing each operation's intended
//! effects before it and acknowledging it after it returns; the parent kills it at random
//! moments, reopens the file and checks that every acknowledged write is there, that the
//! one operation in flight is either wholly applied or not at all, and that
//! `verify_integrity()` is clean.
//!
//! 10 kills by default; `PRISMDB_KILLS=100 cargo test --release --test kill_loop` for the
//! long run.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::Rng;
use prismdb::{
    BulkUpdateItem, Database, ImportMode, ImportRequest, ItemStatus, ListRequest, ObjectType,
    Principal, RecordInput,
};
use serde_json::{json, Map, Value};
use uuid::Uuid;

const CHILD_ENV: &str = "PRISMDB_KILL_LOOP_CHILD";
const SEED_ENV: &str = "PRISMDB_KILL_LOOP_SEED";
const TEAM: Uuid = Uuid::from_u128(0x4b11);
const C: ObjectType = ObjectType::Contact;

fn me() -> Principal {
    Principal::member(TEAM, Uuid::from_u128(2))
}

/// A live record as the child tracks it.
#[derive(Clone)]
struct Live {
    name: String,
    email: String,
}

/// Every live contact: id → (name, email).
fn live_records(db: &Database) -> BTreeMap<Uuid, Live> {
    let mut out = BTreeMap::new();
    let mut request = ListRequest::first(1000);
    loop {
        let page = db.list(&me(), C, &request).expect("list");
        for row in &page.rows {
            let text = |slug: &str| row.properties[slug].as_str().unwrap_or("").to_owned();
            out.insert(
                row.id,
                Live {
                    name: text("name"),
                    email: text("email"),
                },
            );
        }
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => return out,
        }
    }
}

fn props(name: &str, email: &str) -> Map<String, Value> {
    let value = json!({"name": name, "email": email});
    value.as_object().unwrap().clone()
}

/// What the child says before an operation: the effects it will have if it commits.
struct Announce<'a> {
    out: std::io::StdoutLock<'a>,
}

impl Announce<'_> {
    fn line(&mut self, text: &str) {
        writeln!(self.out, "{text}").unwrap();
        self.out.flush().unwrap();
    }
}

/// Picks `n` distinct live ids.
fn pick(rng: &mut Rng, live: &BTreeMap<Uuid, Live>, n: usize) -> Vec<Uuid> {
    let ids: Vec<Uuid> = live.keys().copied().collect();
    let mut chosen: Vec<Uuid> = Vec::new();
    for _ in 0..n * 3 {
        let id = ids[rng.below(ids.len())];
        if !chosen.contains(&id) && chosen.len() < n {
            chosen.push(id);
        }
    }
    chosen
}

/// Child mode: runs operations until killed.
#[test]
fn child_runs_operations() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    let db = Database::open(&path).expect("child opens the database");
    let mut live = live_records(&db);
    let mut rng = Rng(seed | 1);
    let mut say = Announce {
        out: std::io::stdout().lock(),
    };
    // The test harness's "test child_runs_operations ... " has no line end yet.
    say.line("");
    for step in 0..100_000u64 {
        let tag = format!("{seed}-{step}");
        let choice = if live.len() < 4 { 0 } else { rng.below(100) };
        say.line("TRY");
        let created: Vec<(Uuid, Live)> = match choice {
            0..=29 => {
                let l = Live {
                    name: format!("n{tag}"),
                    email: format!("e{tag}@x.io"),
                };
                say.line(&format!("E NEW {}", l.name));
                let input = RecordInput::new(props(&l.name, &l.email));
                vec![(db.create(&me(), C, &input).expect("create").id, l)]
            }
            30..=49 => {
                let id = pick(&mut rng, &live, 1)[0];
                let name = format!("p{tag}");
                say.line(&format!("E SET {id} {name}"));
                db.patch(
                    &me(),
                    C,
                    id,
                    &RecordInput::new(props(&name, &live[&id].email)),
                )
                .expect("patch");
                live.get_mut(&id).unwrap().name = name;
                vec![]
            }
            50..=59 => {
                let id = pick(&mut rng, &live, 1)[0];
                say.line(&format!("E DEL {id}"));
                db.delete(&me(), C, id).expect("delete");
                live.remove(&id);
                vec![]
            }
            60..=74 => {
                let name = format!("u{tag}");
                if rng.below(2) == 0 {
                    let id = pick(&mut rng, &live, 1)[0];
                    say.line(&format!("E SET {id} {name}"));
                    let email = live[&id].email.clone();
                    let input = RecordInput::new(props(&name, &email));
                    let (record, made) = db
                        .upsert(&me(), C, "email", &email, &input)
                        .expect("upsert");
                    assert!(!made && record.id == id);
                    live.get_mut(&id).unwrap().name = name;
                    vec![]
                } else {
                    let l = Live {
                        name,
                        email: format!("e{tag}@x.io"),
                    };
                    say.line(&format!("E NEW {}", l.name));
                    let input = RecordInput::new(props(&l.name, &l.email));
                    let (record, made) = db
                        .upsert(&me(), C, "email", &l.email, &input)
                        .expect("upsert");
                    assert!(made);
                    vec![(record.id, l)]
                }
            }
            75..=84 => {
                let ids = pick(&mut rng, &live, 3);
                let mut items = Vec::new();
                for (k, id) in ids.iter().enumerate() {
                    let name = format!("b{tag}-{k}");
                    say.line(&format!("E SET {id} {name}"));
                    items.push(BulkUpdateItem {
                        id: id.to_string(),
                        input: RecordInput::new(props(&name, &live[id].email)),
                    });
                }
                items.push(BulkUpdateItem {
                    id: Uuid::now_v7().to_string(),
                    input: RecordInput::default(),
                });
                let response = db.bulk_update(&me(), C, &items).expect("bulk update");
                assert_eq!(response.summary.succeeded, ids.len());
                assert_eq!(response.results.last().unwrap().status, ItemStatus::Error);
                for (item, id) in items.iter().zip(&ids) {
                    live.get_mut(id).unwrap().name =
                        item.input.default["name"].as_str().unwrap().to_owned();
                }
                vec![]
            }
            85..=89 => {
                let ids = pick(&mut rng, &live, 2);
                for id in &ids {
                    say.line(&format!("E DEL {id}"));
                }
                let text: Vec<String> = ids.iter().map(Uuid::to_string).collect();
                let response = db.bulk_delete(&me(), C, &text).expect("bulk delete");
                assert_eq!(response.summary.succeeded, ids.len());
                ids.iter().for_each(|id| {
                    live.remove(id);
                });
                vec![]
            }
            _ => {
                let existing = pick(&mut rng, &live, 2);
                let mut rows = Vec::new();
                for (k, id) in existing.iter().enumerate() {
                    let name = format!("i{tag}-{k}");
                    say.line(&format!("E SET {id} {name}"));
                    rows.push(props(&name, &live[id].email));
                }
                let fresh: Vec<Live> = (0..2)
                    .map(|k| Live {
                        name: format!("j{tag}-{k}"),
                        email: format!("j{tag}-{k}@x.io"),
                    })
                    .collect();
                for l in &fresh {
                    say.line(&format!("E NEW {}", l.name));
                    rows.push(props(&l.name, &l.email));
                }
                let request = ImportRequest {
                    rows,
                    dedupe_key: Some("email".into()),
                    mode: Some(ImportMode::Sync),
                };
                let job = db.import(&me(), C, &request).expect("import");
                assert_eq!(job.succeeded, request.rows.len() as u64, "{job:?}");
                for (k, id) in existing.iter().enumerate() {
                    assert_eq!(job.results[k].id, Some(*id));
                    live.get_mut(id).unwrap().name =
                        request.rows[k]["name"].as_str().unwrap().to_owned();
                }
                job.results[existing.len()..]
                    .iter()
                    .zip(fresh)
                    .map(|(row, l)| (row.id.unwrap(), l))
                    .collect()
            }
        };
        let ids: Vec<String> = created.iter().map(|(id, _)| id.to_string()).collect();
        say.line(format!("ACK {}", ids.join(" ")).trim_end());
        live.extend(created);
    }
}

/// One announced effect of an operation.
#[derive(Clone, Debug)]
enum Effect {
    Set(Uuid, String),
    Del(Uuid),
    New(String),
}

type Names = BTreeMap<Uuid, String>;

/// `acked` with `effects` applied, the new records taking `new_ids` in order.
fn applied(acked: &Names, effects: &[Effect], new_ids: &[Uuid]) -> Names {
    let mut next = acked.clone();
    let mut ids = new_ids.iter();
    for effect in effects {
        match effect {
            Effect::Set(id, name) => {
                next.insert(*id, name.clone());
            }
            Effect::Del(id) => {
                next.remove(id);
            }
            Effect::New(name) => {
                next.insert(*ids.next().expect("an id per new record"), name.clone());
            }
        }
    }
    next
}

/// Whether `found` is `acked`, or `acked` with every effect of the operation in flight.
fn whole_or_nothing(found: &Names, acked: &Names, in_flight: Option<&[Effect]>) -> bool {
    if found == acked {
        return true;
    }
    let Some(effects) = in_flight else {
        return false;
    };
    let new_names: Vec<&String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::New(n) => Some(n),
            _ => None,
        })
        .collect();
    let new_ids: Vec<Uuid> = new_names
        .iter()
        .filter_map(|name| {
            found
                .iter()
                .find(|(id, n)| n == name && !acked.contains_key(id))
                .map(|(id, _)| *id)
        })
        .collect();
    new_ids.len() == new_names.len() && applied(acked, effects, &new_ids) == *found
}

#[test]
fn every_acknowledged_operation_survives_kill_9() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let kills: usize = std::env::var("PRISMDB_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill.prismdb");
    let mut acked = Names::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut in_flight_applied = 0;
    for round in 0..kills {
        let stop_after = 1 + rng.below(40);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_runs_operations",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, &path)
            .env(SEED_ENV, (round as u64 * 7919 + 13).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut effects: Option<Vec<Effect>> = None;
        let mut acks = 0;
        let mut killed = false;
        loop {
            if acks >= stop_after && !killed {
                child.kill().unwrap();
                killed = true;
            }
            let Some(Ok(line)) = lines.next() else { break };
            let mut words = line.split(' ');
            match words.next() {
                Some("TRY") => effects = Some(Vec::new()),
                Some("E") => {
                    let list = effects.as_mut().expect("effects follow TRY");
                    match (words.next(), words.next()) {
                        (Some("SET"), Some(id)) => list.push(Effect::Set(
                            id.parse().unwrap(),
                            words.next().unwrap().to_owned(),
                        )),
                        (Some("DEL"), Some(id)) => list.push(Effect::Del(id.parse().unwrap())),
                        (Some("NEW"), Some(name)) => list.push(Effect::New(name.to_owned())),
                        other => panic!("bad effect line {line:?} {other:?}"),
                    }
                }
                Some("ACK") => {
                    let ids: Vec<Uuid> = words
                        .filter(|w| !w.is_empty())
                        .map(|w| w.parse().unwrap())
                        .collect();
                    acked = applied(&acked, &effects.take().expect("ACK follows TRY"), &ids);
                    acks += 1;
                }
                _ => {}
            }
        }
        let status = child.wait().unwrap();
        assert!(
            killed,
            "round {round}: the child stopped by itself ({status}) after {acks} operations"
        );

        let db = Database::open(&path).unwrap();
        let report = db.verify_integrity().unwrap();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);
        let found: Names = live_records(&db)
            .into_iter()
            .map(|(id, l)| (id, l.name))
            .collect();
        assert!(
            whole_or_nothing(&found, &acked, effects.as_deref()),
            "round {round}: found {} records, acknowledged {}, in flight {effects:?}",
            found.len(),
            acked.len()
        );
        if found != acked {
            in_flight_applied += 1;
        }
        acked = found;
    }
    eprintln!("{kills} kills; {in_flight_applied} times the operation in flight had committed");
}
