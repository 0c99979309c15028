//! The grant module: per-record access lists of deals, actions, documents and events
//! (SPEC §6), their JSON shape, their checks and their stored form.
//!
//! A grant gives levels to the record's team, to team groups and to users. Levels are
//! ordered: `r` (read) < `w` (write, implies read) < `a` (admin: also delete, restore and
//! change the grant). What a principal may do is the highest level any of its entries
//! gives it.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::Principal;

/// An access level of a grant entry; each level implies the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `r`: read the record.
    Read = 1,
    /// `w`: read and change the record.
    Write = 2,
    /// `a`: also delete and restore it and change its grant.
    Admin = 3,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 3] = [Level::Read, Level::Write, Level::Admin];

    /// The level's letter in the API: `r`, `w` or `a`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "r",
            Level::Write => "w",
            Level::Admin => "a",
        }
    }

    /// The level written as `text` (`r`, `w` or `a`), or `None`.
    pub fn parse(text: &str) -> Option<Level> {
        match text {
            "r" => Some(Level::Read),
            "w" => Some(Level::Write),
            "a" => Some(Level::Admin),
            _ => None,
        }
    }

    /// The level stored as `byte`, or `None`.
    pub(crate) fn from_byte(byte: u8) -> Option<Level> {
        Level::ALL.into_iter().find(|level| *level as u8 == byte)
    }
}

/// Who may do what with one record: its team's level, and levels of groups and users.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// The level of every member of the record's team, if any.
    pub team: Option<Level>,
    /// Levels of team groups.
    pub groups: BTreeMap<Uuid, Level>,
    /// Levels of users.
    pub users: BTreeMap<Uuid, Level>,
}

impl Grant {
    /// The grant a new record gets when its create names none: the team may write, the
    /// creator is admin.
    pub fn default_for(creator: Uuid) -> Grant {
        Grant {
            team: Some(Level::Write),
            groups: BTreeMap::new(),
            users: BTreeMap::from([(creator, Level::Admin)]),
        }
    }

    /// The highest level this grant gives `principal` (through its team, groups or user),
    /// or `None`. Roles are not looked at here (see `access`).
    pub fn level_of(&self, principal: &Principal) -> Option<Level> {
        let groups = principal.groups.iter().filter_map(|g| self.groups.get(g));
        self.team
            .into_iter()
            .chain(groups.copied())
            .chain(self.users.get(&principal.user).copied())
            .max()
    }

    /// Whether some entry gives the admin level (a grant without one is refused: nobody
    /// but an administrator could ever change it again).
    pub fn has_admin(&self) -> bool {
        self.team == Some(Level::Admin)
            || self
                .groups
                .values()
                .chain(self.users.values())
                .any(|l| *l == Level::Admin)
    }

    /// Refuses (`invalid_value`) a grant that gives nobody the admin level.
    pub(crate) fn check_has_admin(&self) -> Result<()> {
        if self.has_admin() {
            return Ok(());
        }
        Err(bad(
            "a grant must give someone the \"a\" level, or nobody could change it".into(),
        ))
    }

    /// Parses a grant in the API's shape, `{team_id: {team: level}, team_group_id:
    /// [{group: level}], user_id: [{user: level}]}`, for a record of `team` (a missing key
    /// grants nothing). Errors are `invalid_value` and say what was wrong: a malformed id
    /// or level, a team other than `team`, an entry given twice, an unknown key, or no
    /// entry with the `a` level.
    pub fn from_json(team: Uuid, value: &Value) -> Result<Grant> {
        let object = value
            .as_object()
            .ok_or_else(|| bad(format!("a grant is an object, got {}", short(value))))?;
        let mut grant = Grant::default();
        for (key, entries) in object {
            match key.as_str() {
                _ if entries.is_null() => {}
                "team_id" => grant.team = team_level(team, entries)?,
                "team_group_id" => grant.groups = entry_list(key, entries)?,
                "user_id" => grant.users = entry_list(key, entries)?,
                other => {
                    return Err(bad(format!(
                        "unknown grant key {other:?} (expected team_id, team_group_id, user_id)"
                    )))
                }
            }
        }
        grant.check_has_admin()?;
        Ok(grant)
    }

    /// The grant in the API's shape for a record of `team` (see [`Grant::from_json`]).
    pub fn to_json(&self, team: Uuid) -> Value {
        let list = |entries: &BTreeMap<Uuid, Level>| -> Value {
            entries
                .iter()
                .map(|(id, level)| json!({ id.to_string(): level.as_str() }))
                .collect()
        };
        let mut out = Map::new();
        if let Some(level) = self.team {
            out.insert(
                "team_id".into(),
                json!({ team.to_string(): level.as_str() }),
            );
        }
        out.insert("team_group_id".into(), list(&self.groups));
        out.insert("user_id".into(), list(&self.users));
        Value::Object(out)
    }
}

fn bad(message: String) -> Error {
    Error::InvalidValue(format!("grant: {message}"))
}

fn short(value: &Value) -> String {
    crate::schema::short_json(value)
}

fn level_in(context: &str, value: &Value) -> Result<Level> {
    value.as_str().and_then(Level::parse).ok_or_else(|| {
        bad(format!(
            "{context}: level must be \"r\", \"w\" or \"a\", got {}",
            short(value)
        ))
    })
}

fn id_in(context: &str, text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| bad(format!("{context}: {text:?} is not a UUID")))
}

/// `team_id`: a map with at most one entry, the record's team.
fn team_level(team: Uuid, value: &Value) -> Result<Option<Level>> {
    let map = value
        .as_object()
        .ok_or_else(|| bad(format!("team_id is a map, got {}", short(value))))?;
    let mut level = None;
    for (key, entry) in map {
        if id_in("team_id", key)? != team {
            return Err(bad(format!(
                "team_id names team {key}, but the record belongs to team {team}"
            )));
        }
        level = Some(level_in("team_id", entry)?);
    }
    Ok(level)
}

/// `team_group_id` or `user_id`: an array of maps from id to level, each id once.
fn entry_list(key: &str, value: &Value) -> Result<BTreeMap<Uuid, Level>> {
    let items = value
        .as_array()
        .ok_or_else(|| bad(format!("{key} is an array, got {}", short(value))))?;
    let mut out = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let context = format!("{key}[{i}]");
        let map = item
            .as_object()
            .ok_or_else(|| bad(format!("{context} is a map, got {}", short(item))))?;
        for (id, level) in map {
            let id = id_in(&context, id)?;
            if out.insert(id, level_in(&context, level)?).is_some() {
                return Err(bad(format!("{key} names {id} more than once")));
            }
        }
    }
    Ok(out)
}

/// Kinds of grant entries, the second byte of a scope bitmap's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// The record's team.
    Team = 0,
    /// A team group.
    Group = 1,
    /// A user.
    User = 2,
}

/// The name of the scope bitmap of one entry: records whose grant gives `id` (of `kind`)
/// exactly `level`: `[7, kind, id (16), level]`.
pub(crate) fn scope_name(kind: EntryKind, id: Uuid, level: Level) -> Vec<u8> {
    let mut name = Vec::with_capacity(19);
    name.push(crate::keys::SCOPE_BITMAP);
    name.push(kind as u8);
    name.extend_from_slice(id.as_bytes());
    name.push(level as u8);
    name
}

impl Grant {
    /// The scope bitmaps a record with this grant has its bit in (the team entry is named
    /// with the nil id: the bitmap's scope already says which team).
    pub(crate) fn scope_names(&self) -> Vec<Vec<u8>> {
        let team_entry = self.team.map(|l| (EntryKind::Team, Uuid::nil(), l));
        let groups = self.groups.iter().map(|(g, l)| (EntryKind::Group, *g, *l));
        let users = self.users.iter().map(|(u, l)| (EntryKind::User, *u, *l));
        team_entry
            .into_iter()
            .chain(groups)
            .chain(users)
            .map(|(kind, id, level)| scope_name(kind, id, level))
            .collect()
    }

    /// The stored form: the team's level byte (0 for none), then per group and per user a
    /// count (`u32`) and `id (16), level` entries.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![GRANT_FORMAT, self.team.map_or(0, |l| l as u8)];
        for entries in [&self.groups, &self.users] {
            out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for (id, level) in entries {
                out.extend_from_slice(id.as_bytes());
                out.push(*level as u8);
            }
        }
        out
    }

    /// Decodes a stored grant; damaged bytes are an `internal` error, never a panic.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Grant> {
        let damaged = |why: &str| Error::Internal(format!("stored grant is damaged: {why}"));
        let (head, mut rest) = bytes.split_at_checked(2).ok_or_else(|| damaged("short"))?;
        if head[0] != GRANT_FORMAT {
            return Err(damaged("unknown format"));
        }
        let team = match head[1] {
            0 => None,
            byte => Some(Level::from_byte(byte).ok_or_else(|| damaged("bad level"))?),
        };
        let mut lists = Vec::with_capacity(2);
        for _ in 0..2 {
            let (count, tail) = rest.split_at_checked(4).ok_or_else(|| damaged("short"))?;
            let count = u32::from_be_bytes(count.try_into().map_err(|_| damaged("short"))?);
            let size = (count as usize)
                .checked_mul(17)
                .ok_or_else(|| damaged("count"))?;
            let (entries, tail) = tail
                .split_at_checked(size)
                .ok_or_else(|| damaged("short"))?;
            let mut list = BTreeMap::new();
            for entry in entries.chunks_exact(17) {
                let id = Uuid::from_slice(&entry[..16]).map_err(|_| damaged("bad id"))?;
                let level = Level::from_byte(entry[16]).ok_or_else(|| damaged("bad level"))?;
                // `encode` writes each list in ascending id order, once per id.
                if list.last_key_value().is_some_and(|(last, _)| *last >= id) {
                    return Err(damaged("entries out of order"));
                }
                list.insert(id, level);
            }
            lists.push(list);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(damaged("trailing bytes"));
        }
        let users = lists.pop().unwrap_or_default();
        let groups = lists.pop().unwrap_or_default();
        Ok(Grant {
            team,
            groups,
            users,
        })
    }
}

/// The format byte of a stored grant.
const GRANT_FORMAT: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn team() -> Uuid {
        Uuid::from_u128(7)
    }

    #[test]
    fn the_api_shape_round_trips_and_is_checked() {
        let (g, u) = (Uuid::from_u128(8), Uuid::from_u128(9));
        let json = json!({
            "team_id": {team().to_string(): "r"},
            "team_group_id": [{g.to_string(): "w"}],
            "user_id": [{u.to_string(): "a"}],
        });
        let grant = Grant::from_json(team(), &json).unwrap();
        assert_eq!(grant.team, Some(Level::Read));
        assert_eq!(grant.groups[&g], Level::Write);
        assert_eq!(
            Grant::from_json(team(), &grant.to_json(team())).unwrap(),
            grant
        );
        assert_eq!(Grant::decode(&grant.encode()).unwrap(), grant);
        let refused = [
            json!({"user_id": [{u.to_string(): "x"}]}),
            json!({"user_id": [{"not-a-uuid": "a"}]}),
            json!({"team_id": {Uuid::from_u128(99).to_string(): "a"}}),
            json!({"user_id": [{u.to_string(): "a"}, {u.to_string(): "r"}]}),
            json!({"user_id": [{u.to_string(): "w"}]}),
            json!({"owner": [], "user_id": [{u.to_string(): "a"}]}),
            json!([1]),
        ];
        for value in refused {
            let err = Grant::from_json(team(), &value).unwrap_err();
            assert_eq!(err.code(), "invalid_value", "{value}");
        }
    }

    #[test]
    fn damaged_grants_are_errors() {
        let grant = Grant::default_for(Uuid::from_u128(3));
        let bytes = grant.encode();
        for cut in 0..bytes.len() {
            assert!(Grant::decode(&bytes[..cut]).is_err(), "{cut}");
        }
        let mut bad_level = bytes.clone();
        bad_level[1] = 9;
        assert!(Grant::decode(&bad_level).is_err());
        let mut huge = bytes;
        huge[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Grant::decode(&huge).is_err());
    }

    #[test]
    fn only_the_canonical_form_decodes() {
        let mut grant = Grant::default_for(Uuid::from_u128(3));
        grant.users.insert(Uuid::from_u128(9), Level::Read);
        let bytes = grant.encode();
        assert_eq!(Grant::decode(&bytes).unwrap(), grant);
        // The users list is last: two entries of 17 bytes each; swap them.
        let end = bytes.len();
        let mut swapped = bytes.clone();
        swapped[end - 34..end - 17].copy_from_slice(&bytes[end - 17..]);
        swapped[end - 17..].copy_from_slice(&bytes[end - 34..end - 17]);
        assert!(Grant::decode(&swapped).is_err(), "entries out of order");
        let mut twice = bytes.clone();
        twice[end - 17..].copy_from_slice(&bytes[end - 34..end - 17]);
        assert!(Grant::decode(&twice).is_err(), "an id given twice");
        // What the fuzzer found: a list whose ids descend.
        let found = std::fs::read("fuzz/corpus/stored_record/regression-grant-unordered")
            .expect("the fuzz regression input");
        assert!(Grant::decode(&found).is_err());
    }
}
