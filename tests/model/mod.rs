//! A plain in-memory model of the library (records in a vector, grants as maps, a naive
//! filter), the operations that drive both, decoded from bytes (so proptest and the fuzzer
//! share them), and the comparison of every read. Used by `tests/model_based.rs` and by
//! the `operations` fuzz target (`fuzz/fuzz_targets/operations.rs`).
#![allow(dead_code)]

use std::collections::BTreeMap;

use prismdb::{
    BulkUpdateItem, Database, Error, Grant, ImportMode, ImportRequest, ListRequest, ObjectType,
    Principal, QueryRequest, RecordInput, Role,
};
use serde_json::{json, Map, Value};
use uuid::Uuid;

pub const TEAMS: usize = 2;
/// Principals of each team: 0 admin, 1 and 2 members (2 in the team's one group), 3 a
/// member in no group.
pub const WHO: usize = 4;
const STAGES: [&str; 3] = ["lead", "won", "lost"];
const TYPES: [ObjectType; 2] = [ObjectType::Contact, ObjectType::Deal];

pub fn team_id(team: usize) -> Uuid {
    Uuid::from_u128(0x7000 + team as u128)
}

fn user_id(team: usize, who: usize) -> Uuid {
    Uuid::from_u128(0x8000 + (team as u128) * 16 + who as u128)
}

fn group_id(team: usize) -> Uuid {
    Uuid::from_u128(0x9000 + team as u128)
}

pub fn principal(team: usize, who: usize) -> Principal {
    let groups = if who == 2 {
        vec![group_id(team)]
    } else {
        vec![]
    };
    Principal {
        team: team_id(team),
        user: user_id(team, who),
        groups,
        role: if who == 0 { Role::Admin } else { Role::Member },
    }
}

/// A grant level: 1 read, 2 write, 3 admin.
type Lvl = u8;

#[derive(Clone, Debug, Default, PartialEq)]
struct ModelGrant {
    team: Option<Lvl>,
    group: Option<Lvl>,
    users: BTreeMap<usize, Lvl>,
}

impl ModelGrant {
    fn default_for(creator: usize) -> ModelGrant {
        ModelGrant {
            team: Some(2),
            group: None,
            users: BTreeMap::from([(creator, 3)]),
        }
    }

    fn level(&self, who: usize) -> Option<Lvl> {
        let group = if who == 2 { self.group } else { None };
        [self.team, group, self.users.get(&who).copied()]
            .into_iter()
            .flatten()
            .max()
    }

    fn to_json(&self, team: usize) -> Value {
        let name = |l: Lvl| ["", "r", "w", "a"][l as usize];
        let mut out = Map::new();
        if let Some(l) = self.team {
            out.insert(
                "team_id".into(),
                json!({team_id(team).to_string(): name(l)}),
            );
        }
        if let Some(l) = self.group {
            out.insert(
                "team_group_id".into(),
                json!([{group_id(team).to_string(): name(l)}]),
            );
        }
        let users: Vec<Value> = self
            .users
            .iter()
            .map(|(u, l)| json!({user_id(team, *u).to_string(): name(*l)}))
            .collect();
        out.insert("user_id".into(), Value::Array(users));
        Value::Object(out)
    }
}

#[derive(Clone, Debug)]
struct Rec {
    id: Uuid,
    team: usize,
    ty: usize,
    name: String,
    email: Option<String>,
    amount: Option<i64>,
    stage: Option<&'static str>,
    deleted: bool,
    grant: ModelGrant,
}

/// One operation on both the database and the model.
#[derive(Clone, Debug)]
pub enum Op {
    Create {
        team: usize,
        who: usize,
        ty: usize,
        name: u8,
        email: Option<u8>,
        amount: u8,
        stage: u8,
    },
    Patch {
        team: usize,
        who: usize,
        ty: usize,
        pick: u8,
        name: u8,
        email: Option<u8>,
        amount: u8,
    },
    Delete {
        team: usize,
        who: usize,
        ty: usize,
        pick: u8,
    },
    Restore {
        team: usize,
        who: usize,
        ty: usize,
        pick: u8,
    },
    Duplicate {
        team: usize,
        who: usize,
        ty: usize,
        pick: u8,
    },
    SetGrant {
        team: usize,
        who: usize,
        pick: u8,
        variant: u8,
    },
    BulkUpdate {
        team: usize,
        who: usize,
        ty: usize,
        picks: [u8; 3],
        name: u8,
    },
    BulkDelete {
        team: usize,
        who: usize,
        ty: usize,
        picks: [u8; 2],
    },
    Upsert {
        team: usize,
        who: usize,
        email: u8,
        name: u8,
    },
    Import {
        team: usize,
        who: usize,
        rows: [(u8, u8); 3],
        /// Run as an async job (then by `run_import_jobs`) instead of inline.
        job: bool,
    },
    Reopen,
}

/// Reads operations from bytes, five per operation; stops when the bytes run out.
pub fn decode(bytes: &[u8]) -> Vec<Op> {
    bytes
        .chunks_exact(5)
        .map(|b| {
            let (team, who, ty) = (
                (b[1] & 1) as usize,
                ((b[1] >> 1) & 3) as usize,
                ((b[1] >> 3) & 1) as usize,
            );
            let small = |x: u8| x % 6;
            match b[0] % 16 {
                0..=3 => Op::Create {
                    team,
                    who,
                    ty,
                    name: b[2],
                    email: (b[3] % 4 != 0).then_some(small(b[3])),
                    amount: b[4],
                    stage: b[3],
                },
                4 | 5 => Op::Patch {
                    team,
                    who,
                    ty,
                    pick: b[2],
                    name: b[3],
                    email: (b[4] % 3 == 0).then_some(small(b[4] / 3)),
                    amount: b[4],
                },
                6 => Op::Delete {
                    team,
                    who,
                    ty,
                    pick: b[2],
                },
                7 => Op::Restore {
                    team,
                    who,
                    ty,
                    pick: b[2],
                },
                8 => Op::Duplicate {
                    team,
                    who,
                    ty,
                    pick: b[2],
                },
                9 | 10 => Op::SetGrant {
                    team,
                    who,
                    pick: b[2],
                    variant: b[3],
                },
                11 => Op::BulkUpdate {
                    team,
                    who,
                    ty,
                    picks: [b[2], b[3], b[2] ^ b[3]],
                    name: b[4],
                },
                12 => Op::BulkDelete {
                    team,
                    who,
                    ty,
                    picks: [b[2], b[3]],
                },
                13 => Op::Upsert {
                    team,
                    who,
                    email: small(b[2]),
                    name: b[3],
                },
                14 => Op::Import {
                    team,
                    who,
                    rows: [
                        (small(b[2]), b[3]),
                        (small(b[3]), b[4]),
                        (small(b[4]), b[2]),
                    ],
                    job: b[1] & 16 == 16,
                },
                _ => Op::Reopen,
            }
        })
        .collect()
}

/// The e-mail address of person `k`.
fn address(k: u8) -> String {
    format!("person{k}@example.com")
}

/// The model: every record ever made, in creation (= id) order.
#[derive(Default)]
pub struct Model {
    recs: Vec<Rec>,
}

type Outcome<T> = Result<T, &'static str>;

impl Model {
    fn of(&self, team: usize, ty: usize) -> Vec<usize> {
        (0..self.recs.len())
            .filter(|&i| self.recs[i].team == team && self.recs[i].ty == ty)
            .collect()
    }

    fn pick(&self, team: usize, ty: usize, pick: u8) -> Option<usize> {
        let all = self.of(team, ty);
        (!all.is_empty()).then(|| all[pick as usize % all.len()])
    }

    fn level(&self, i: usize, who: usize) -> Option<Lvl> {
        let r = &self.recs[i];
        if who == 0 || r.ty == 0 {
            Some(3)
        } else {
            r.grant.level(who)
        }
    }

    /// Access to live (or trashed, if `trash`) record `i` at `need`.
    fn access(&self, i: usize, who: usize, need: Lvl, trash: bool) -> Outcome<()> {
        if self.recs[i].deleted != trash {
            return Err("not_found");
        }
        match self.level(i, who) {
            None => Err("not_found"),
            Some(l) if l < need => Err("permission_denied"),
            Some(_) => Ok(()),
        }
    }

    fn email_taken(&self, team: usize, email: &str, except: Option<usize>) -> bool {
        self.of(team, 0).into_iter().any(|j| {
            Some(j) != except
                && !self.recs[j].deleted
                && self.recs[j].email.as_deref() == Some(email)
        })
    }
}

fn code(error: &Error) -> &'static str {
    error.code()
}

fn props(ty: usize, name: u8, email: Option<u8>, amount: u8, stage: u8) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("name".into(), json!(format!("n{name}")));
    if ty == 0 {
        if let Some(k) = email {
            map.insert("email".into(), json!(address(k)));
        }
    } else {
        map.insert("amount".into(), json!(amount as i64 * 10));
        map.insert("stage".into(), json!(STAGES[stage as usize % 3]));
    }
    map
}

/// Applies `op` to the database and the model and checks they agree on its outcome.
pub struct Harness {
    pub db: Database,
    pub path: Option<std::path::PathBuf>,
    pub model: Model,
}

impl Harness {
    pub fn apply(&mut self, op: &Op) {
        match op.clone() {
            Op::Create {
                team,
                who,
                ty,
                name,
                email,
                amount,
                stage,
            } => {
                let p = props(ty, name, email, amount, stage);
                let got = self.db.create(
                    &principal(team, who),
                    TYPES[ty],
                    &RecordInput::new(p.clone()),
                );
                let want = match p.get("email").and_then(Value::as_str) {
                    Some(e) if self.model.email_taken(team, e, None) => Err("unique_violation"),
                    _ => Ok(()),
                };
                agree(op, &got.as_ref().map(|_| ()).map_err(code), &want);
                if let Ok(record) = got {
                    self.model.recs.push(rec_from(
                        record.id,
                        team,
                        ty,
                        &p,
                        ModelGrant::default_for(who),
                    ));
                }
            }
            Op::Patch {
                team,
                who,
                ty,
                pick,
                name,
                email,
                amount,
            } => {
                let Some(i) = self.model.pick(team, ty, pick) else {
                    return;
                };
                let mut p = props(ty, name, email, amount, amount);
                p.remove("stage");
                self.patch(op, team, who, i, p);
            }
            Op::Delete {
                team,
                who,
                ty,
                pick,
            } => {
                let Some(i) = self.model.pick(team, ty, pick) else {
                    return;
                };
                let got = self
                    .db
                    .delete(&principal(team, who), TYPES[ty], self.model.recs[i].id)
                    .map_err(|e| code(&e));
                let want = self.model.access(i, who, 3, false);
                agree(op, &got, &want);
                if got.is_ok() {
                    self.model.recs[i].deleted = true;
                }
            }
            Op::Restore {
                team,
                who,
                ty,
                pick,
            } => {
                let Some(i) = self.model.pick(team, ty, pick) else {
                    return;
                };
                let got = self
                    .db
                    .restore(&principal(team, who), TYPES[ty], self.model.recs[i].id)
                    .map(|_| ())
                    .map_err(|e| code(&e));
                let r = &self.model.recs[i];
                let want = match self.model.access(i, who, 3, r.deleted) {
                    Err(e) => Err(e),
                    Ok(())
                        if r.deleted
                            && r.email
                                .as_deref()
                                .is_some_and(|e| self.model.email_taken(team, e, Some(i))) =>
                    {
                        Err("unique_violation")
                    }
                    Ok(()) => Ok(()),
                };
                agree(op, &got, &want);
                if got.is_ok() {
                    self.model.recs[i].deleted = false;
                }
            }
            Op::Duplicate {
                team,
                who,
                ty,
                pick,
            } => {
                let Some(i) = self.model.pick(team, ty, pick) else {
                    return;
                };
                let got =
                    self.db
                        .duplicate(&principal(team, who), TYPES[ty], self.model.recs[i].id);
                let want = self.model.access(i, who, 1, false);
                agree(op, &got.as_ref().map(|_| ()).map_err(code), &want);
                if let Ok(record) = got {
                    let mut copy = self.model.recs[i].clone();
                    copy.id = record.id;
                    copy.email = None;
                    copy.grant.users.insert(who, 3);
                    if ty == 0 {
                        copy.grant = ModelGrant::default_for(who);
                    }
                    self.model.recs.push(copy);
                }
            }
            Op::SetGrant {
                team,
                who,
                pick,
                variant,
            } => {
                let Some(i) = self.model.pick(team, 1, pick) else {
                    return;
                };
                let grant = match variant % 3 {
                    0 => ModelGrant {
                        team: Some(1),
                        group: None,
                        users: BTreeMap::from([(who, 3)]),
                    },
                    1 => ModelGrant {
                        team: None,
                        group: Some(1),
                        users: BTreeMap::from([(1, 3)]),
                    },
                    _ => ModelGrant {
                        team: None,
                        group: None,
                        users: BTreeMap::from([(3, 3), (1, 2)]),
                    },
                };
                let parsed =
                    Grant::from_json(team_id(team), &grant.to_json(team)).expect("a valid grant");
                let got = self.db.update_grant(
                    &principal(team, who),
                    ObjectType::Deal,
                    self.model.recs[i].id,
                    &parsed,
                );
                let want = self.model.access(i, who, 3, false);
                agree(op, &got.as_ref().map(|_| ()).map_err(code), &want);
                if got.is_ok() {
                    self.model.recs[i].grant = grant;
                }
            }
            Op::BulkUpdate {
                team,
                who,
                ty,
                picks,
                name,
            } => {
                let Some(_) = self.model.pick(team, ty, 0) else {
                    return;
                };
                let targets: Vec<usize> = picks
                    .iter()
                    .filter_map(|p| self.model.pick(team, ty, *p))
                    .collect();
                let items: Vec<BulkUpdateItem> = targets
                    .iter()
                    .map(|&i| BulkUpdateItem {
                        id: self.model.recs[i].id.to_string(),
                        input: RecordInput::new(props(ty, name, None, name, name)),
                    })
                    .collect();
                let got = self
                    .db
                    .bulk_update(&principal(team, who), TYPES[ty], &items)
                    .expect("a bulk call of 3 items");
                for (item, &i) in got.results.iter().zip(&targets) {
                    let want = self.model.access(i, who, 2, false);
                    agree(op, &item_outcome(item), &want);
                    if want.is_ok() {
                        self.set_props(i, &props(ty, name, None, name, name));
                    }
                }
            }
            Op::BulkDelete {
                team,
                who,
                ty,
                picks,
            } => {
                let targets: Vec<usize> = picks
                    .iter()
                    .filter_map(|p| self.model.pick(team, ty, *p))
                    .collect();
                let ids: Vec<String> = targets
                    .iter()
                    .map(|&i| self.model.recs[i].id.to_string())
                    .collect();
                let got = self
                    .db
                    .bulk_delete(&principal(team, who), TYPES[ty], &ids)
                    .expect("a bulk call of 2 items");
                for (item, &i) in got.results.iter().zip(&targets) {
                    let want = self.model.access(i, who, 3, false);
                    agree(op, &item_outcome(item), &want);
                    if want.is_ok() {
                        self.model.recs[i].deleted = true;
                    }
                }
            }
            Op::Upsert {
                team,
                who,
                email,
                name,
            } => {
                let e = address(email);
                let p = props(0, name, None, 0, 0);
                let got = self.db.upsert(
                    &principal(team, who),
                    ObjectType::Contact,
                    "email",
                    &e,
                    &RecordInput::new(p.clone()),
                );
                let (record, created) = got.unwrap_or_else(|err| panic!("{op:?}: {err}"));
                match self.live_with_email(team, &e) {
                    Some(i) => {
                        assert!(
                            !created && record.id == self.model.recs[i].id,
                            "{op:?}: upsert made a duplicate"
                        );
                        self.set_props(i, &p);
                    }
                    None => {
                        assert!(created, "{op:?}");
                        let mut p = p;
                        p.insert("email".into(), json!(e));
                        self.model.recs.push(rec_from(
                            record.id,
                            team,
                            0,
                            &p,
                            ModelGrant::default_for(who),
                        ));
                    }
                }
            }
            Op::Import {
                team,
                who,
                rows,
                job,
            } => {
                let rows: Vec<Map<String, Value>> = rows
                    .iter()
                    .map(|(e, n)| props(0, *n, Some(*e), 0, 0))
                    .collect();
                let request = ImportRequest {
                    rows: rows.clone(),
                    dedupe_key: Some("email".into()),
                    mode: Some(if job {
                        ImportMode::Async
                    } else {
                        ImportMode::Sync
                    }),
                };
                let p = principal(team, who);
                let mut job = self
                    .db
                    .import(&p, ObjectType::Contact, &request)
                    .unwrap_or_else(|e| panic!("{op:?}: {e}"));
                if job.status == prismdb::JobStatus::Processing {
                    self.db.run_import_jobs(|_| {}).expect("the job runs");
                    job = self.db.import_status(&p, job.job_id).expect("its status");
                }
                assert_eq!(job.status, prismdb::JobStatus::Complete, "{op:?}");
                assert_eq!(job.failed, 0, "{op:?}: {job:?}");
                for (row, result) in rows.iter().zip(&job.results) {
                    let e = row["email"].as_str().unwrap().to_owned();
                    match self.live_with_email(team, &e) {
                        Some(i) => {
                            assert!(
                                result.existing && result.id == Some(self.model.recs[i].id),
                                "{op:?}: {result:?}"
                            );
                            self.set_props(i, row);
                        }
                        None => {
                            assert!(result.created, "{op:?}: {result:?}");
                            self.model.recs.push(rec_from(
                                result.id.unwrap(),
                                team,
                                0,
                                row,
                                ModelGrant::default_for(who),
                            ));
                        }
                    }
                }
            }
            Op::Reopen => {
                if let Some(path) = &self.path {
                    let placeholder = Database::in_memory().unwrap();
                    drop(std::mem::replace(&mut self.db, placeholder));
                    self.db = Database::open(path).expect("reopen");
                }
            }
        }
    }

    fn patch(&mut self, op: &Op, team: usize, who: usize, i: usize, p: Map<String, Value>) {
        let ty = self.model.recs[i].ty;
        let got = self
            .db
            .patch(
                &principal(team, who),
                TYPES[ty],
                self.model.recs[i].id,
                &RecordInput::new(p.clone()),
            )
            .map(|_| ())
            .map_err(|e| code(&e));
        let want = match self.model.access(i, who, 2, false) {
            Err(e) => Err(e),
            Ok(()) => match p.get("email").and_then(Value::as_str) {
                Some(e) if self.model.email_taken(team, e, Some(i)) => Err("unique_violation"),
                _ => Ok(()),
            },
        };
        agree(op, &got, &want);
        if got.is_ok() {
            self.set_props(i, &p);
        }
    }

    fn live_with_email(&self, team: usize, email: &str) -> Option<usize> {
        self.model.of(team, 0).into_iter().find(|&j| {
            !self.model.recs[j].deleted && self.model.recs[j].email.as_deref() == Some(email)
        })
    }

    fn set_props(&mut self, i: usize, p: &Map<String, Value>) {
        let r = &mut self.model.recs[i];
        if let Some(n) = p.get("name") {
            r.name = n.as_str().unwrap().to_owned();
        }
        if let Some(e) = p.get("email") {
            r.email = Some(e.as_str().unwrap().to_owned());
        }
        if let Some(a) = p.get("amount") {
            r.amount = a.as_i64();
        }
        if let Some(s) = p.get("stage") {
            r.stage = stage_of(s);
        }
    }

    /// Compares every read of every principal with the model: lists and trash (all pages),
    /// counts, a filtered sorted query of deals with its total, and find by e-mail.
    pub fn check_reads(&self, salt: u8) {
        for team in 0..TEAMS {
            for who in 0..WHO {
                let p = principal(team, who);
                for (ty, object_type) in TYPES.iter().enumerate() {
                    for trash in [false, true] {
                        let want: Vec<(Uuid, String)> = self
                            .model
                            .of(team, ty)
                            .into_iter()
                            .filter(|&i| self.model.access(i, who, 1, trash).is_ok())
                            .map(|i| (self.model.recs[i].id, self.model.recs[i].name.clone()))
                            .collect();
                        let got = self.walk(&p, ty, trash);
                        assert_eq!(got, want, "team {team} who {who} type {ty} trash {trash}");
                        if !trash {
                            let count = self.db.count(&p, *object_type).unwrap();
                            assert_eq!(
                                count,
                                want.len() as u64,
                                "count: team {team} who {who} type {ty}"
                            );
                        }
                    }
                }
                self.check_query(team, who, salt);
                self.check_grants(team, who);
                let e = address(salt % 6);
                let found = self
                    .db
                    .find(&p, ObjectType::Contact, "email", &e)
                    .map(|r| r.id)
                    .map_err(|e| code(&e));
                let want = self
                    .live_with_email(team, &e)
                    .map(|i| self.model.recs[i].id)
                    .ok_or("not_found");
                assert_eq!(found, want, "find {e}: team {team} who {who}");
            }
        }
    }

    /// Every deal's grant as each principal reads it: the model's grant, or the error.
    fn check_grants(&self, team: usize, who: usize) {
        for i in self.model.of(team, 1) {
            let rec = &self.model.recs[i];
            let got = self
                .db
                .grant(&principal(team, who), ObjectType::Deal, rec.id)
                .map_err(|e| code(&e));
            let want = self.model.access(i, who, 1, false).map(|()| {
                Grant::from_json(team_id(team), &rec.grant.to_json(team)).expect("model grant")
            });
            assert_eq!(got, want, "grant of {}: team {team} who {who}", rec.id);
        }
    }

    fn walk(&self, p: &Principal, ty: usize, trash: bool) -> Vec<(Uuid, String)> {
        let mut out = Vec::new();
        let mut request = ListRequest::first(3);
        loop {
            let page = if trash {
                self.db.trash(p, TYPES[ty], &request)
            } else {
                self.db.list(p, TYPES[ty], &request)
            }
            .unwrap();
            out.extend(
                page.rows
                    .iter()
                    .map(|r| (r.id, r.properties["name"].as_str().unwrap().to_owned())),
            );
            match page.next_cursor {
                Some(c) => request.cursor = Some(c),
                None => return out,
            }
        }
    }

    fn check_query(&self, team: usize, who: usize, salt: u8) {
        let stage = STAGES[salt as usize % 3];
        let floor = (salt as i64 % 26) * 100;
        let mut want: Vec<(i64, Uuid)> = self
            .model
            .of(team, 1)
            .into_iter()
            .filter(|&i| self.model.access(i, who, 1, false).is_ok())
            .map(|i| &self.model.recs[i])
            .filter(|r| r.stage == Some(stage) && r.amount.is_some_and(|a| a >= floor))
            .map(|r| (r.amount.unwrap(), r.id))
            .collect();
        want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let want: Vec<Uuid> = want.into_iter().map(|(_, id)| id).collect();
        let body = json!({"filter": {"stage": stage, "amount": {"$gte": floor}}, "sort": [{"property": "amount", "direction": "desc"}], "limit": 2, "include_total": true});
        let mut request: QueryRequest = serde_json::from_value(body).unwrap();
        let mut got = Vec::new();
        loop {
            let page = self
                .db
                .query(&principal(team, who), ObjectType::Deal, &request)
                .unwrap();
            assert_eq!(
                page.total,
                Some(want.len() as u64),
                "query total: team {team} who {who}"
            );
            got.extend(page.rows.iter().map(|r| r.id));
            match page.next_cursor {
                Some(c) => request.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(
            got, want,
            "query stage {stage} amount >= {floor}: team {team} who {who}"
        );
    }
}

/// The stage a written value names.
fn stage_of(value: &Value) -> Option<&'static str> {
    STAGES.iter().find(|x| Some(**x) == value.as_str()).copied()
}

fn rec_from(id: Uuid, team: usize, ty: usize, p: &Map<String, Value>, grant: ModelGrant) -> Rec {
    let mut rec = Rec {
        id,
        team,
        ty,
        name: String::new(),
        email: None,
        amount: None,
        stage: None,
        deleted: false,
        grant,
    };
    rec.name = p["name"].as_str().unwrap().to_owned();
    rec.email = p.get("email").and_then(Value::as_str).map(str::to_owned);
    rec.amount = p.get("amount").and_then(Value::as_i64);
    rec.stage = p.get("stage").and_then(stage_of);
    rec
}

/// A bulk item's result as an outcome: its error code, if it failed.
fn item_outcome(item: &prismdb::ItemResult) -> Result<(), &str> {
    match &item.error {
        None => Ok(()),
        Some((code, _)) => Err(code.as_str()),
    }
}

fn agree(op: &Op, got: &Result<(), &str>, want: &Result<(), &str>) {
    assert_eq!(got, want, "{op:?}: the database and the model disagree");
}
