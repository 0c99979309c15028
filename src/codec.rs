//! The codec module: how a record is laid out in storage.
//!
//! A stored record is one format byte, one flags byte (bit 0: in the trash, so liveness is
//! known without decoding) and a MessagePack array (rmp-serde): the
//! record's ordinal, its system fields and its property map as (property number, value)
//! pairs. Property slugs and option slugs never appear in stored records, so renaming an
//! option rewrites no record and keys stay short.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The first byte of every stored record.
const RECORD_FORMAT: u8 = 1;

/// A property value in its stored form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum StoredValue {
    /// text, email, url, phone.
    Str(String),
    /// An integral number.
    Int(i64),
    /// A non-integral (or out of `i64` range) finite number.
    Float(f64),
    /// boolean.
    Bool(bool),
    /// datetime, as epoch microseconds.
    Time(i64),
    /// select: the option's number.
    Option(u32),
    /// multiselect: option numbers in catalog order, no repeats.
    Options(Vec<u32>),
    /// reference: the target record's id.
    Ref(u128),
}

/// A record as stored under its (team, type, id) key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredRecord {
    /// The record's dense ordinal within its (team, type): its bit in every bitmap.
    pub ord: u32,
    /// Creation time, epoch microseconds.
    pub created_at: i64,
    /// Last change, epoch microseconds.
    pub updated_at: i64,
    /// Set while the record is in the trash.
    pub deleted_at: Option<i64>,
    /// The integration that wrote the record.
    pub source: Option<u128>,
    /// Whether a person (not an integration) made the record.
    pub is_user_object: bool,
    /// The reference's opaque `list` member, as JSON text.
    pub list: Option<String>,
    /// (property number, value), ordered by property number, no repeats.
    pub props: Vec<(u16, StoredValue)>,
}

impl StoredRecord {
    /// The stored value of property `pid`.
    pub fn value(&self, pid: u16) -> Option<&StoredValue> {
        self.props
            .binary_search_by_key(&pid, |(p, _)| *p)
            .ok()
            .map(|i| &self.props[i].1)
    }

    /// Sets (or, with `None`, removes) the value of property `pid`.
    pub fn set(&mut self, pid: u16, value: Option<StoredValue>) {
        match (self.props.binary_search_by_key(&pid, |(p, _)| *p), value) {
            (Ok(i), Some(v)) => self.props[i].1 = v,
            (Ok(i), None) => {
                self.props.remove(i);
            }
            (Err(i), Some(v)) => self.props.insert(i, (pid, v)),
            (Err(_), None) => {}
        }
    }

    /// Whether the record is live (not in the trash).
    pub fn is_live(&self) -> bool {
        self.deleted_at.is_none()
    }
}

/// Encodes a record for storage.
pub(crate) fn encode_record(record: &StoredRecord) -> Result<Vec<u8>> {
    let mut out = vec![RECORD_FORMAT, u8::from(!record.is_live())];
    rmp_serde::encode::write(&mut out, record)
        .map_err(|e| Error::Internal(format!("cannot encode record: {e}")))?;
    Ok(out)
}

/// Decodes a stored record. Any byte string either decodes to a well-formed record or
/// gives an `internal` error saying the record is damaged; it never panics.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<StoredRecord> {
    let damaged = |why: String| Error::Internal(format!("stored record is damaged: {why}"));
    let trashed = is_trashed(bytes)?;
    let record: StoredRecord =
        rmp_serde::from_slice(&bytes[2..]).map_err(|e| damaged(e.to_string()))?;
    if record.is_live() == trashed {
        return Err(damaged("trash flag disagrees with deleted_at".into()));
    }
    let ordered = record.props.windows(2).all(|w| w[0].0 < w[1].0);
    if !ordered {
        return Err(damaged("property numbers out of order".into()));
    }
    Ok(record)
}

/// Whether the stored record in `bytes` is in the trash, read from its header alone.
pub(crate) fn is_trashed(bytes: &[u8]) -> Result<bool> {
    let damaged = |why: String| Error::Internal(format!("stored record is damaged: {why}"));
    match bytes {
        [RECORD_FORMAT, flags @ (0 | 1), ..] => Ok(*flags == 1),
        [RECORD_FORMAT, flags, ..] => Err(damaged(format!("unknown flags {flags}"))),
        [format, ..] => Err(damaged(format!("unknown record format {format}"))),
        [] => Err(damaged("empty value".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredRecord {
        StoredRecord {
            ord: 7,
            created_at: 1,
            updated_at: 2,
            deleted_at: None,
            source: Some(u128::MAX - 3),
            is_user_object: true,
            list: Some("{\"a\":1}".into()),
            props: vec![
                (1, StoredValue::Str("Ada".into())),
                (2, StoredValue::Float(1.5)),
                (3, StoredValue::Options(vec![3, 1])),
                (4, StoredValue::Ref(u128::MAX)),
            ],
        }
    }

    #[test]
    fn records_round_trip() {
        let record = sample();
        assert_eq!(
            decode_record(&encode_record(&record).unwrap()).unwrap(),
            record
        );
    }

    #[test]
    fn set_keeps_properties_ordered() {
        let mut record = sample();
        record.set(0, Some(StoredValue::Bool(true)));
        record.set(9, Some(StoredValue::Int(1)));
        record.set(2, None);
        let pids: Vec<u16> = record.props.iter().map(|(p, _)| *p).collect();
        assert_eq!(pids, vec![0, 1, 3, 4, 9]);
        assert_eq!(record.value(9), Some(&StoredValue::Int(1)));
    }

    #[test]
    fn truncated_records_are_errors() {
        let bytes = encode_record(&sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode_record(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
