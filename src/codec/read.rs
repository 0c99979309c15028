//! Reading a stored record's MessagePack body (the array after the two header bytes).
//!
//! Written against rmp's low-level reads rather than through serde: every list page, sorted
//! walk and record check decodes records, and rmp-serde's generic visitor path was a quarter
//! of a substring query's first page. The layout is the one `encode_record` writes (see
//! the module above); anything else is an error naming what was wrong, never a panic.

use rmp::decode;

use super::{damaged, StoredRecord, StoredValue, RECORD_FIELDS};
use crate::error::Result;

/// The unread rest of a record body.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn array_len(&mut self, what: &str) -> Result<usize> {
        decode::read_array_len(&mut self.0)
            .map(|len| len as usize)
            .map_err(|_| damaged(format_args!("{what} is not an array")))
    }

    fn signed(&mut self, what: &str) -> Result<i64> {
        decode::read_int(&mut self.0).map_err(|_| damaged(format_args!("{what} is not an i64")))
    }

    fn unsigned<T: TryFrom<u64>>(&mut self, what: &str) -> Result<T> {
        decode::read_int::<u64, _>(&mut self.0)
            .ok()
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| damaged(format_args!("{what} is not an unsigned number in range")))
    }

    fn boolean(&mut self, what: &str) -> Result<bool> {
        decode::read_bool(&mut self.0).map_err(|_| damaged(format_args!("{what} is not a boolean")))
    }

    fn text(&mut self, what: &str) -> Result<&'a str> {
        let (text, rest) = decode::read_str_from_slice(self.0)
            .map_err(|_| damaged(format_args!("{what} is not UTF-8 text")))?;
        self.0 = rest;
        Ok(text)
    }

    /// A 16-byte id (rmp-serde writes a `u128` as 16 big-endian bytes).
    fn id(&mut self, what: &str) -> Result<u128> {
        let bad = || damaged(format_args!("{what} is not a 16-byte id"));
        if decode::read_bin_len(&mut self.0).map_err(|_| bad())? != 16 {
            return Err(bad());
        }
        let (bytes, rest) = self.0.split_first_chunk::<16>().ok_or_else(bad)?;
        self.0 = rest;
        Ok(u128::from_be_bytes(*bytes))
    }

    /// `None` past a nil, else what `read` reads.
    fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        match self.0.split_first() {
            Some((0xc0, rest)) => {
                self.0 = rest;
                Ok(None)
            }
            _ => read(self).map(Some),
        }
    }

    /// The value that follows kind tag `tag`.
    fn value(&mut self, tag: u8) -> Result<StoredValue> {
        Ok(match tag {
            0 => StoredValue::Str(self.text("a text value")?.to_owned()),
            1 => StoredValue::Int(self.signed("an integer value")?),
            2 => StoredValue::Float(
                decode::read_f64(&mut self.0)
                    .map_err(|_| damaged("a float value is not an f64"))?,
            ),
            3 => StoredValue::Bool(self.boolean("a boolean value")?),
            4 => StoredValue::Time(self.signed("a datetime value")?),
            5 => StoredValue::Option(self.unsigned("an option number")?),
            6 => {
                let count = self.array_len("a multiselect value")?;
                let mut options = Vec::with_capacity(count.min(64));
                for _ in 0..count {
                    options.push(self.unsigned("an option number")?);
                }
                StoredValue::Options(options)
            }
            7 => StoredValue::Ref(self.id("a reference")?),
            tag => return Err(damaged(format_args!("unknown value tag {tag}"))),
        })
    }

    /// Passes over the value that follows kind tag `tag`, allocating only for lists.
    fn skip_value(&mut self, tag: u8) -> Result<()> {
        match tag {
            0 => self.text("a text value").map(drop),
            _ => self.value(tag).map(drop),
        }
    }

    /// The system fields before the property list: (ordinal, created_at, updated_at,
    /// deleted_at, source, is_user_object, list).
    fn system_fields(&mut self) -> Result<SystemFields<'a>> {
        if self.array_len("the record")? != RECORD_FIELDS {
            return Err(damaged("the record has the wrong number of fields"));
        }
        Ok(SystemFields {
            ord: self.unsigned("the ordinal")?,
            created_at: self.signed("created_at")?,
            updated_at: self.signed("updated_at")?,
            deleted_at: self.optional(|b| b.signed("deleted_at"))?,
            source: self.optional(|b| b.id("source"))?,
            is_user_object: self.boolean("is_user_object")?,
            list: self.optional(|b| b.text("list"))?,
        })
    }

    /// The number of properties in the property list that starts here.
    fn property_count(&mut self) -> Result<usize> {
        let len = self.array_len("the property list")?;
        match len % 3 {
            0 => Ok(len / 3),
            _ => Err(damaged("the property list ends inside a property")),
        }
    }

    /// A property's number and kind tag.
    fn property_head(&mut self) -> Result<(u16, u8)> {
        Ok((
            self.unsigned("a property number")?,
            self.unsigned("a value tag")?,
        ))
    }

    fn end(&self) -> Result<()> {
        match self.0.is_empty() {
            true => Ok(()),
            false => Err(damaged("bytes follow the record")),
        }
    }
}

struct SystemFields<'a> {
    ord: u32,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    source: Option<u128>,
    is_user_object: bool,
    list: Option<&'a str>,
}

/// Decodes a whole record body.
pub(super) fn record(body: &[u8]) -> Result<StoredRecord> {
    let mut body = Body(body);
    let system = body.system_fields()?;
    let count = body.property_count()?;
    let mut props = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let (pid, tag) = body.property_head()?;
        props.push((pid, body.value(tag)?));
    }
    body.end()?;
    Ok(StoredRecord {
        ord: system.ord,
        created_at: system.created_at,
        updated_at: system.updated_at,
        deleted_at: system.deleted_at,
        source: system.source,
        is_user_object: system.is_user_object,
        list: system.list.map(str::to_owned),
        props,
    })
}

/// The ordinal of a record body (its first field), read without the rest.
pub(super) fn ordinal(body: &[u8]) -> Result<u32> {
    let mut body = Body(body);
    if body.array_len("the record")? == 0 {
        return Err(damaged("the record has no ordinal"));
    }
    body.unsigned("the ordinal")
}

/// Decodes only the value of property `pid` of a record body, passing over the rest.
pub(super) fn one_value(body: &[u8], pid: u16) -> Result<Option<StoredValue>> {
    let mut body = Body(body);
    body.system_fields()?;
    let mut found = None;
    for _ in 0..body.property_count()? {
        let (number, tag) = body.property_head()?;
        match number == pid {
            true => found = Some(body.value(tag)?),
            false => body.skip_value(tag)?,
        }
    }
    body.end()?;
    Ok(found)
}
