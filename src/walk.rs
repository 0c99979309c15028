//! The walk module: sorted pages read in sort order from bitmaps, instead of sorting the
//! keys of every match.
//!
//! The first sort key splits the records into groups that the storage already keeps in
//! sort order: one value index bitmap per value (numbers, datetimes, text other than
//! e-mail, whose index form is lowercased while sorting is by bytes), or one value bitmap
//! per option in catalog order (select) or per boolean. A walk visits the groups in order,
//! keeps each group's matches and stops when the page is full; the matches without a value
//! come last. Inside a group the rows are in id order, unless more sort keys follow or
//! the group's text was cut to the index's 256 bytes: then the group's records are loaded
//! and sorted by their full keys. The cursor picks the group to start from.

use roaring::RoaringBitmap;

use crate::bitmap;
use crate::codec::StoredRecord;
use crate::cursor::Cursor;
use crate::error::{Error, Result};
use crate::index;
use crate::keys::Scope;
use crate::query::Direction;
use crate::records::decoded_at;
use crate::schema::{Kind, Property};
use crate::storage::{prefix_end, Kv};

/// The groups of the first sort key, in ascending order.
pub(crate) enum Groups {
    /// One value index bitmap per value, read by a scan of the index in key order.
    Index,
    /// These value bitmaps (options by catalog position, or false then true).
    Named(Vec<Vec<u8>>),
}

/// A walk: the first sort key's property and direction, and how its groups are read.
pub(crate) struct Walk {
    /// The first sort key's property.
    pub prop: Property,
    /// Its direction.
    pub direction: Direction,
    /// Its groups.
    pub groups: Groups,
    /// Whether more sort keys follow (rows of a group then need sorting).
    pub more_keys: bool,
}

impl Walk {
    /// The walk for a first sort key on `prop`, or `None` where its groups are not stored
    /// in sort order.
    pub(crate) fn for_key(prop: &Property, direction: Direction, more_keys: bool) -> Option<Walk> {
        let groups = match prop.kind {
            Kind::Number | Kind::Datetime | Kind::Text | Kind::Phone | Kind::Url
                if prop.in_value_index() =>
            {
                Groups::Index
            }
            Kind::Select => Groups::Named(
                prop.options
                    .iter()
                    .filter_map(|o| {
                        index::value_bitmap_name(
                            prop.pid,
                            &crate::codec::StoredValue::Option(o.num),
                        )
                    })
                    .collect(),
            ),
            Kind::Boolean => Groups::Named(
                [false, true]
                    .iter()
                    .filter_map(|b| {
                        index::value_bitmap_name(prop.pid, &crate::codec::StoredValue::Bool(*b))
                    })
                    .collect(),
            ),
            _ => return None,
        };
        Some(Walk {
            prop: prop.clone(),
            direction,
            groups,
            more_keys,
        })
    }
}

/// Where the cursor puts a walk.
enum Start {
    /// From the first group.
    Beginning,
    /// From the group with this form (index form, or position among the named groups).
    Group(Vec<u8>),
    /// Among the matches without a value.
    Missing,
}

/// The rows of one sorted page and whether more follow. `key_of` gives a record's full
/// sort key (as the cursor carries it).
pub(crate) fn page(
    kv: &impl Kv,
    scope: Scope,
    walk: &Walk,
    matches: &RoaringBitmap,
    after: Option<&Cursor>,
    limit: usize,
    key_of: &dyn Fn(&StoredRecord) -> Vec<u8>,
) -> Result<(Vec<(u128, StoredRecord)>, bool)> {
    let start = match after {
        Some(c) => start_of(walk, c)?,
        None => Start::Beginning,
    };
    let mut page = Page {
        kv,
        scope,
        walk,
        after,
        limit,
        key_of,
        rows: Vec::with_capacity(limit + 1),
    };
    if !matches!(start, Start::Missing) {
        let from = match &start {
            Start::Group(form) => Some(form.as_slice()),
            _ => None,
        };
        match &walk.groups {
            Groups::Index => page.index_groups(matches, from)?,
            Groups::Named(names) => page.named_groups(names, matches, from)?,
        }
    }
    if !page.full() {
        let (from, to) = crate::eval::value_span(walk.prop.pid, walk.prop.kind);
        let missing = matches - bitmap::read_span(kv, scope, &from, &to)?;
        page.group(&missing, matches!(start, Start::Missing), true)?;
    }
    let has_more = page.rows.len() > limit;
    page.rows.truncate(limit);
    Ok((page.rows, has_more))
}

/// A page being filled, group by group.
struct Page<'a, K: Kv> {
    kv: &'a K,
    scope: Scope,
    walk: &'a Walk,
    after: Option<&'a Cursor>,
    limit: usize,
    key_of: &'a dyn Fn(&StoredRecord) -> Vec<u8>,
    rows: Vec<(u128, StoredRecord)>,
}

impl<K: Kv> Page<'_, K> {
    fn full(&self) -> bool {
        self.rows.len() > self.limit
    }

    /// Adds the rows of one group (its matching ordinals) in sort order; `resumes` says the
    /// cursor's row is in it, `exact` that all its records share the first key's value.
    fn group(&mut self, ords: &RoaringBitmap, resumes: bool, exact: bool) -> Result<()> {
        let want = self.limit + 1 - self.rows.len();
        if exact && !self.walk.more_keys {
            let from = match (resumes, self.after) {
                (true, Some(c)) => c.last_ord.saturating_add(1),
                _ => 0,
            };
            if resumes && self.after.is_some_and(|c| c.last_ord == u32::MAX) {
                return Ok(());
            }
            let rows = &mut self.rows;
            return decoded_at(
                self.kv,
                self.scope,
                ords.range(from..).take(want),
                |_, id, record| {
                    rows.push((id, record));
                    Ok(true)
                },
            );
        }
        let after = self.after.filter(|_| resumes);
        let keyed = sorted_after(self.kv, self.scope, ords, self.key_of, after)?;
        self.rows.extend(
            keyed
                .into_iter()
                .take(want)
                .map(|(_, id, record)| (id, record)),
        );
        Ok(())
    }

    /// Walks the value index of the first key, one value (group) at a time.
    fn index_groups(&mut self, matches: &RoaringBitmap, from: Option<&[u8]>) -> Result<()> {
        let all = self
            .scope
            .bitmap_prefix(&index::index_prefix(self.walk.prop.pid));
        let all_end = prefix_end(&all).unwrap_or_default();
        let at = from.map(|form| [all.as_slice(), form].concat());
        let desc = self.walk.direction == Direction::Desc;
        let (start, end) = match (&at, desc) {
            (Some(at), false) => (at.clone(), all_end),
            (Some(at), true) => (all.clone(), prefix_end(at).unwrap_or_default()),
            (None, _) => (all.clone(), all_end),
        };
        let mut current: Vec<u8> = Vec::new();
        let mut held = RoaringBitmap::new();
        let kv = self.kv;
        kv.scan(
            std::ops::Bound::Included(&start),
            std::ops::Bound::Excluded(&end),
            desc,
            |key, value| {
                let name = &key[..key.len().saturating_sub(4)];
                if name != current.as_slice() {
                    if !current.is_empty() {
                        self.index_group(all.len(), &current, &mut held, at.as_deref())?;
                        if self.full() {
                            return Ok(false);
                        }
                    }
                    current = name.to_vec();
                }
                held |= bitmap::decode_row(key, value)? & matches;
                Ok(true)
            },
        )?;
        if !current.is_empty() && !self.full() {
            self.index_group(all.len(), &current, &mut held, at.as_deref())?;
        }
        Ok(())
    }

    /// Adds one value index group (`name` is its full key prefix, of which the first
    /// `prefix_len` bytes are the index's own) and empties `held`.
    fn index_group(
        &mut self,
        prefix_len: usize,
        name: &[u8],
        held: &mut RoaringBitmap,
        resume: Option<&[u8]>,
    ) -> Result<()> {
        let form_len = name.len() - prefix_len;
        let exact = !matches!(self.walk.prop.kind, Kind::Text | Kind::Phone | Kind::Url)
            || form_len < index::MAX_INDEXED_TEXT + 2;
        let group = std::mem::take(held);
        self.group(&group, resume == Some(name), exact)
    }

    /// Walks named groups (options or booleans) in order from the one at position `from`.
    fn named_groups(
        &mut self,
        names: &[Vec<u8>],
        matches: &RoaringBitmap,
        from: Option<&[u8]>,
    ) -> Result<()> {
        let position = |form: &[u8]| form.try_into().ok().map(u32::from_be_bytes);
        let resume = from.and_then(position);
        let order: Vec<usize> = match self.walk.direction {
            Direction::Asc => (0..names.len()).collect(),
            Direction::Desc => (0..names.len()).rev().collect(),
        };
        let desc = self.walk.direction == Direction::Desc;
        for i in order {
            let position = i as u32;
            // Groups past the cursor's (in walk order) are whole; the cursor's own group
            // continues after its row. A position no group has (an option removed since)
            // starts at the next group.
            let past = resume.is_none_or(|r| if desc { position <= r } else { position >= r });
            if !past {
                continue;
            }
            let here = Some(position) == resume;
            let ords = bitmap::read(self.kv, self.scope, &names[i])? & matches;
            self.group(&ords, here, true)?;
            if self.full() {
                break;
            }
        }
        Ok(())
    }
}

/// The records `ords` with their full sort keys (`key_of`), sorted by (key, id), from the
/// first one past `after`: what a page sorted by keys reads, whole or one group of a walk.
pub(crate) fn sorted_after(
    kv: &impl Kv,
    scope: Scope,
    ords: &RoaringBitmap,
    key_of: &dyn Fn(&StoredRecord) -> Vec<u8>,
    after: Option<&Cursor>,
) -> Result<Vec<(Vec<u8>, u128, StoredRecord)>> {
    let mut keyed = Vec::with_capacity(ords.len() as usize);
    decoded_at(kv, scope, ords.iter(), |_, id, record| {
        keyed.push((key_of(&record), id, record));
        Ok(true)
    })?;
    keyed.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    // The cursor is a bound: the rows start at the first key past it.
    let start = after.map_or(0, |c| {
        keyed.partition_point(|(key, id, _)| {
            (key.as_slice(), *id) <= (c.sort_key.as_slice(), c.last_id)
        })
    });
    keyed.drain(..start);
    Ok(keyed)
}

/// Where a cursor's sort key puts the walk: its first component is `0x01` (no value) or
/// `0x00` and the first key's sort bytes (inverted for `desc`).
fn start_of(walk: &Walk, cursor: &Cursor) -> Result<Start> {
    let bad = || Error::InvalidCursor("cursor: its sort key does not fit this query's sort".into());
    let (marker, rest) = cursor.sort_key.split_first().ok_or_else(bad)?;
    match marker {
        1 => return Ok(Start::Missing),
        0 => {}
        _ => return Err(bad()),
    }
    let rest: Vec<u8> = match walk.direction {
        Direction::Asc => rest.to_vec(),
        Direction::Desc => rest.iter().map(|b| !b).collect(),
    };
    let form = match (&walk.groups, walk.prop.kind) {
        (Groups::Index, Kind::Number | Kind::Datetime) => rest.get(..8).ok_or_else(bad)?.to_vec(),
        (Groups::Index, _) => {
            let text = index::decode_ordered_text(&rest).ok_or_else(bad)?;
            let value = crate::codec::StoredValue::Str(text);
            index::encode(&walk.prop, &value).ok_or_else(bad)?
        }
        (Groups::Named(_), Kind::Select) => rest.get(..4).ok_or_else(bad)?.to_vec(),
        (Groups::Named(_), _) => u32::from(*rest.first().ok_or_else(bad)?)
            .to_be_bytes()
            .to_vec(),
    };
    Ok(Start::Group(form))
}
