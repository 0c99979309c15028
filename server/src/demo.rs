//! Realistic demo data for one team: organizations, contacts that reference them, deals
//! with stages and grants, actions, documents, and events written as the system
//! principal. Deterministic (a fixed seed), so two loads of the same size look alike.

use indicatif::{ProgressBar, ProgressStyle};
use prismdb::{Batch, Database, Grant, ObjectType, Principal, PropertySpec, RecordInput};
use serde_json::{json, Value};
use uuid::Uuid;

/// Records written per transaction.
const BATCH: usize = 2_000;

const FIRST: [&str; 12] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim",
    "Margaret", "Leslie",
];
const LAST: [&str; 12] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman",
    "Berners", "Hamilton", "Lamport",
];
const INDUSTRIES: [&str; 8] = [
    "software",
    "retail",
    "finance",
    "health",
    "energy",
    "media",
    "logistics",
    "education",
];
const CITIES: [&str; 10] = [
    "Berlin", "Lisbon", "Paris", "Madrid", "Rome", "Vienna", "Oslo", "Dublin", "Prague", "Athens",
];
const ORG_SUFFIXES: [&str; 4] = ["Labs", "Systems", "Group", "Works"];
const STAGES: [&str; 6] = [
    "lead",
    "qualified",
    "proposal",
    "negotiation",
    "won",
    "lost",
];

/// A small xorshift generator: demo data needs variety, not quality.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// How many records of each type a load of `contacts` contacts writes.
struct Sizes {
    organizations: usize,
    contacts: usize,
    deals: usize,
    actions: usize,
    documents: usize,
    events: usize,
}

impl Sizes {
    fn for_contacts(contacts: usize) -> Sizes {
        Sizes {
            organizations: (contacts / 10).max(1),
            contacts,
            deals: contacts / 4,
            actions: contacts / 4,
            documents: contacts / 10,
            events: contacts / 10,
        }
    }

    fn total(&self) -> usize {
        self.organizations
            + self.contacts
            + self.deals
            + self.actions
            + self.documents
            + self.events
    }
}

/// Loads demo data for `team` into `db`, with a progress bar on a terminal. Fails with the
/// library's message if a write is refused.
pub fn load(db: &Database, team: Uuid, contacts: usize) -> Result<(), String> {
    let admin = Principal::admin(team, Uuid::new_v4());
    let sizes = Sizes::for_contacts(contacts);
    let bar = ProgressBar::new(sizes.total() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records ({per_sec}, {eta} left)")
            .map_err(|e| e.to_string())?,
    );
    add_demo_properties(db, &admin).map_err(|e| e.to_string())?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let orgs = write_many(db, &admin, sizes.organizations, &bar, |b, i| {
        b.create_id(ObjectType::Organization, &organization(&mut rng, i)?)
    })?;
    let people = write_many(db, &admin, sizes.contacts, &bar, |b, i| {
        b.create_id(ObjectType::Contact, &contact(&mut rng, i, &orgs)?)
    })?;
    let groups: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    write_many(db, &admin, sizes.deals, &bar, |b, i| {
        b.create_id(ObjectType::Deal, &deal(&mut rng, i, &orgs, team, &groups)?)
    })?;
    write_many(db, &admin, sizes.actions, &bar, |b, i| {
        b.create_id(ObjectType::Action, &action(&mut rng, i)?)
    })?;
    write_many(db, &admin, sizes.documents, &bar, |b, i| {
        let input = props(
            json!({"name": format!("Document {i}"), "url": format!("https://docs.example.com/{i}")}),
        )?;
        b.create_id(ObjectType::Document, &input)
    })?;
    let system = Principal::system(team);
    write_many(db, &system, sizes.events, &bar, |b, i| {
        let day = 1 + i % 28;
        let input = props(json!({
            "name": format!("Meeting with {}", people[i % people.len()]),
            "starts_at": format!("2026-11-{day:02}T09:00:00Z"),
            "ends_at": format!("2026-11-{day:02}T10:00:00Z"),
        }))?;
        b.create_id(ObjectType::Event, &input)
    })?;
    bar.finish_and_clear();
    eprintln!("loaded {} records for team {team}", sizes.total());
    Ok(())
}

fn add_demo_properties(db: &Database, admin: &Principal) -> prismdb::Result<()> {
    let select = |slug: &str, options: &[&str]| PropertySpec {
        slug: slug.into(),
        kind: "select".into(),
        options: Some(
            options
                .iter()
                .map(|o| prismdb::OptionSpec {
                    slug: (*o).into(),
                    label: None,
                })
                .collect(),
        ),
        ..PropertySpec::default()
    };
    let city = PropertySpec {
        slug: "city".into(),
        kind: "text".into(),
        indexed: Some(true),
        ..PropertySpec::default()
    };
    db.add_property(admin, ObjectType::Contact, &city)?;
    db.add_property(
        admin,
        ObjectType::Contact,
        &select("status", &["lead", "active", "customer", "churned"]),
    )?;
    db.add_property(
        admin,
        ObjectType::Organization,
        &select("industry", &INDUSTRIES),
    )?;
    // Lists are sorted by name: keep names in the value index so those sorts walk it.
    let indexed = prismdb::PropertyChange {
        indexed: Some(true),
        ..prismdb::PropertyChange::default()
    };
    for ty in [
        ObjectType::Contact,
        ObjectType::Organization,
        ObjectType::Deal,
    ] {
        db.update_property(admin, ty, "name", &indexed)?;
    }
    Ok(())
}

/// Writes `count` records in transactions of [`BATCH`], advancing the bar; returns their
/// ids.
fn write_many(
    db: &Database,
    principal: &Principal,
    count: usize,
    bar: &ProgressBar,
    mut make: impl FnMut(&mut Batch<'_, '_, '_>, usize) -> prismdb::Result<Uuid>,
) -> Result<Vec<Uuid>, String> {
    let mut ids = Vec::with_capacity(count);
    for start in (0..count).step_by(BATCH) {
        let end = (start + BATCH).min(count);
        let batch_ids = db
            .write_batch(principal, |b| (start..end).map(|i| make(b, i)).collect())
            .map_err(|e| format!("demo data: {e}"))?;
        ids.extend::<Vec<Uuid>>(batch_ids);
        bar.inc((end - start) as u64);
    }
    Ok(ids)
}

fn props(value: Value) -> prismdb::Result<RecordInput> {
    RecordInput::from_properties(value)
}

fn organization(rng: &mut Rng, i: usize) -> prismdb::Result<RecordInput> {
    props(json!({
        "name": format!("{} {}", rng.pick(&LAST), ORG_SUFFIXES[i % ORG_SUFFIXES.len()]),
        "domain": format!("org{i}.example.com"),
        "industry": rng.pick(&INDUSTRIES),
    }))
}

fn contact(rng: &mut Rng, i: usize, orgs: &[Uuid]) -> prismdb::Result<RecordInput> {
    let (first, last) = (rng.pick(&FIRST), rng.pick(&LAST));
    props(json!({
        "name": format!("{first} {last}"),
        "email": format!("{}.{}{i}@example.com", first.to_lowercase(), last.to_lowercase()),
        "phone": format!("+1 555 {:07}", rng.below(10_000_000)),
        "title": rng.pick(&["Engineer", "Manager", "Director", "Founder"]),
        "city": rng.pick(&CITIES),
        "status": rng.pick(&["lead", "active", "customer", "churned"]),
        "organization": orgs[rng.below(orgs.len())].to_string(),
    }))
}

fn deal(
    rng: &mut Rng,
    i: usize,
    orgs: &[Uuid],
    team: Uuid,
    groups: &[Uuid],
) -> prismdb::Result<RecordInput> {
    let mut input = props(json!({
        "name": format!("Deal {i}"),
        "amount": 1_000 * (1 + rng.below(100)),
        "stage": rng.pick(&STAGES),
        "organization": orgs[rng.below(orgs.len())].to_string(),
    }))?;
    if i.is_multiple_of(5) {
        // A private deal: one group may read it, one user owns it; the team sees nothing.
        let grant = json!({
            "team_group_id": [{groups[i % groups.len()].to_string(): "r"}],
            "user_id": [{Uuid::new_v4().to_string(): "a"}],
        });
        input.grant = Some(Grant::from_json(team, &grant)?);
    }
    Ok(input)
}

fn action(rng: &mut Rng, i: usize) -> prismdb::Result<RecordInput> {
    props(json!({
        "name": format!("Follow up {i}"),
        "due_at": format!("2026-12-{:02}T12:00:00Z", 1 + rng.below(28)),
        "done": rng.below(3) == 0,
    }))
}
