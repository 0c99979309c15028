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
#[derive(Clone, Debug, PartialEq)]
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
    /// (property number, value), ordered by property number, no repeats. Stored as one flat
    /// array `[number, kind tag, value, number, kind tag, value, …]` (see [`props_serde`]).
    #[serde(with = "props_serde")]
    pub props: Vec<(u16, StoredValue)>,
}

/// The flat layout of a record's properties: three array elements per property, the value
/// kind as a one-byte tag. (rmp-serde would write each enum value as a one-entry map keyed by
/// the variant's name: 4–6 bytes more per property.)
mod props_serde {
    use std::fmt;

    use serde::de::{DeserializeSeed, Error as _, IgnoredAny, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserializer, Serializer};

    use super::StoredValue;

    pub fn serialize<S: Serializer>(props: &[(u16, StoredValue)], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(props.len() * 3))?;
        for (pid, value) in props {
            seq.serialize_element(pid)?;
            match value {
                StoredValue::Str(v) => (seq.serialize_element(&0u8)?, seq.serialize_element(v)?),
                StoredValue::Int(v) => (seq.serialize_element(&1u8)?, seq.serialize_element(v)?),
                StoredValue::Float(v) => (seq.serialize_element(&2u8)?, seq.serialize_element(v)?),
                StoredValue::Bool(v) => (seq.serialize_element(&3u8)?, seq.serialize_element(v)?),
                StoredValue::Time(v) => (seq.serialize_element(&4u8)?, seq.serialize_element(v)?),
                StoredValue::Option(v) => (seq.serialize_element(&5u8)?, seq.serialize_element(v)?),
                StoredValue::Options(v) => {
                    (seq.serialize_element(&6u8)?, seq.serialize_element(v)?)
                }
                StoredValue::Ref(v) => (seq.serialize_element(&7u8)?, seq.serialize_element(v)?),
            };
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(u16, StoredValue)>, D::Error> {
        d.deserialize_seq(PropsVisitor)
    }

    struct PropsVisitor;

    fn next<'de, A: SeqAccess<'de>, T: serde::Deserialize<'de>>(
        seq: &mut A,
    ) -> Result<T, A::Error> {
        seq.next_element()?
            .ok_or_else(|| A::Error::custom("property list ends inside a property"))
    }

    impl<'de> Visitor<'de> for PropsVisitor {
        type Value = Vec<(u16, StoredValue)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a flat array of (property, tag, value) triples")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut props = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(3 * 64) / 3);
            while let Some(pid) = seq.next_element::<u16>()? {
                let tag = next::<A, u8>(&mut seq)?;
                props.push((pid, read_value(tag, &mut seq)?));
            }
            Ok(props)
        }
    }

    /// Reads the value that follows kind tag `tag`.
    fn read_value<'de, A: SeqAccess<'de>>(tag: u8, seq: &mut A) -> Result<StoredValue, A::Error> {
        Ok(match tag {
            0 => StoredValue::Str(next(seq)?),
            1 => StoredValue::Int(next(seq)?),
            2 => StoredValue::Float(next(seq)?),
            3 => StoredValue::Bool(next(seq)?),
            4 => StoredValue::Time(next(seq)?),
            5 => StoredValue::Option(next(seq)?),
            6 => StoredValue::Options(next(seq)?),
            7 => StoredValue::Ref(next(seq)?),
            tag => return Err(A::Error::custom(format!("unknown value tag {tag}"))),
        })
    }

    /// Reads one property's value out of a stored record, skipping (without allocating)
    /// everything else: what a page needs of each referenced record is its name.
    pub(super) struct OneValue(pub u16);

    impl<'de> Visitor<'de> for OneValue {
        type Value = Option<StoredValue>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a stored record")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            for _ in 0..super::RECORD_FIELDS - 1 {
                next::<A, IgnoredAny>(&mut seq)?;
            }
            seq.next_element_seed(PropsOf(self.0))?
                .ok_or_else(|| A::Error::custom("stored record has no property list"))
        }
    }

    struct PropsOf(u16);

    impl<'de> DeserializeSeed<'de> for PropsOf {
        type Value = Option<StoredValue>;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for PropsOf {
        type Value = Option<StoredValue>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a flat array of (property, tag, value) triples")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(pid) = seq.next_element::<u16>()? {
                let tag = next::<A, u8>(&mut seq)?;
                if pid == self.0 {
                    found = Some(read_value(tag, &mut seq)?);
                } else {
                    next::<A, IgnoredAny>(&mut seq)?;
                }
            }
            Ok(found)
        }
    }
}

/// The number of fields of [`StoredRecord`] (its array length in storage).
const RECORD_FIELDS: usize = 8;

/// Decodes only the value of property `pid` of a stored record (`None` if it has none).
/// Errors like [`decode_record`] on damaged bytes.
pub(crate) fn decode_value(bytes: &[u8], pid: u16) -> Result<Option<StoredValue>> {
    is_trashed(bytes)?;
    let mut de = rmp_serde::Deserializer::from_read_ref(&bytes[2..]);
    serde::Deserializer::deserialize_seq(&mut de, props_serde::OneValue(pid))
        .map_err(|e| Error::Internal(format!("stored record is damaged: {e}")))
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

/// The ordinal of the stored record in `bytes`, read without decoding the rest (the first
/// field of the record's MessagePack array). Damaged bytes give an `internal` error.
pub(crate) fn record_ord(bytes: &[u8]) -> Result<u32> {
    let damaged = |why: &str| Error::Internal(format!("stored record is damaged: {why}"));
    is_trashed(bytes)?;
    let mut body = &bytes[2.min(bytes.len())..];
    let fields = rmp::decode::read_array_len(&mut body).map_err(|_| damaged("no field array"))?;
    if fields == 0 {
        return Err(damaged("no ordinal"));
    }
    rmp::decode::read_int(&mut body).map_err(|_| damaged("ordinal is not a u32"))
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
    fn record_ord_reads_the_ordinal_alone() {
        let bytes = encode_record(&sample()).unwrap();
        assert_eq!(record_ord(&bytes).unwrap(), 7);
        for cut in 0..4 {
            assert!(record_ord(&bytes[..cut]).is_err(), "{cut} bytes");
        }
        assert!(record_ord(&[RECORD_FORMAT, 0, 0x91, 0xc0]).is_err());
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
    fn every_value_kind_round_trips_compactly() {
        let mut record = sample();
        record.props = vec![
            (1, StoredValue::Str("x".into())),
            (2, StoredValue::Int(-5)),
            (3, StoredValue::Float(0.25)),
            (4, StoredValue::Bool(true)),
            (5, StoredValue::Time(1_790_000_000_000_000)),
            (6, StoredValue::Option(3)),
            (7, StoredValue::Options(vec![])),
            (8, StoredValue::Ref(7)),
        ];
        let bytes = encode_record(&record).unwrap();
        assert_eq!(decode_record(&bytes).unwrap(), record);
        // the property list costs a pid, a tag and the value: no variant names
        assert!(!bytes.windows(3).any(|w| w == b"Str"));
    }

    #[test]
    fn one_value_decodes_like_the_whole_record() {
        let record = sample();
        let bytes = encode_record(&record).unwrap();
        for pid in 0..6 {
            assert_eq!(
                decode_value(&bytes, pid).unwrap().as_ref(),
                record.value(pid),
                "{pid}"
            );
        }
        for cut in 0..bytes.len() {
            let _ = decode_value(&bytes[..cut], 1);
        }
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
