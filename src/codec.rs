//! The codec module: how a record is laid out in storage.
//!
//! A stored record is one format byte, one flags byte (bit 0: in the trash, so liveness is
//! known without decoding) and a MessagePack array (written with rmp-serde, read by hand in
//! the `read` submodule): the record's ordinal, its system fields and its property map as
//! (property number, value) pairs. Property slugs and option slugs never appear in stored
//! records, so renaming an option rewrites no record and keys stay short.

use serde::Serialize;

use crate::error::{Error, Result};

mod read;

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
#[derive(Clone, Debug, PartialEq, Serialize)]
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
    use serde::ser::SerializeSeq;
    use serde::Serializer;

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
}

/// The number of fields of [`StoredRecord`] (its array length in storage).
const RECORD_FIELDS: usize = 8;

/// Decodes only the value of property `pid` of a stored record (`None` if it has none).
/// Errors like [`decode_record`] on damaged bytes.
pub(crate) fn decode_value(bytes: &[u8], pid: u16) -> Result<Option<StoredValue>> {
    is_trashed(bytes)?;
    read::one_value(&bytes[2..], pid)
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

/// The error for stored record bytes that are not a record, saying why.
fn damaged(why: impl std::fmt::Display) -> Error {
    Error::Internal(format!("stored record is damaged: {why}"))
}

/// Encodes a record for storage.
pub(crate) fn encode_record(record: &StoredRecord) -> Result<Vec<u8>> {
    // Room for a record of a dozen short properties without growing.
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[RECORD_FORMAT, u8::from(!record.is_live())]);
    rmp_serde::encode::write(&mut out, record)
        .map_err(|e| Error::Internal(format!("cannot encode record: {e}")))?;
    Ok(out)
}

/// Decodes a stored record. Any byte string either decodes to a well-formed record or
/// gives an `internal` error saying the record is damaged; it never panics.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<StoredRecord> {
    let trashed = is_trashed(bytes)?;
    let record = read::record(&bytes[2..])?;
    if record.is_live() == trashed {
        return Err(damaged("trash flag disagrees with deleted_at"));
    }
    let ordered = record.props.windows(2).all(|w| w[0].0 < w[1].0);
    if !ordered {
        return Err(damaged("property numbers out of order"));
    }
    Ok(record)
}

/// The ordinal of the stored record in `bytes`, read without decoding the rest (the first
/// field of the record's MessagePack array). Damaged bytes give an `internal` error.
pub(crate) fn record_ord(bytes: &[u8]) -> Result<u32> {
    is_trashed(bytes)?;
    read::ordinal(&bytes[2..])
}

/// Whether the stored record in `bytes` is in the trash, read from its header alone.
pub(crate) fn is_trashed(bytes: &[u8]) -> Result<bool> {
    match bytes {
        [RECORD_FORMAT, flags @ (0 | 1), ..] => Ok(*flags == 1),
        [RECORD_FORMAT, flags, ..] => Err(damaged(format_args!("unknown flags {flags}"))),
        [format, ..] => Err(damaged(format_args!("unknown record format {format}"))),
        [] => Err(damaged("empty value")),
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

    fn stored_value() -> impl proptest::strategy::Strategy<Value = StoredValue> {
        use proptest::prelude::*;
        prop_oneof![
            ".{0,40}".prop_map(StoredValue::Str),
            any::<i64>().prop_map(StoredValue::Int),
            any::<f64>().prop_map(StoredValue::Float),
            any::<bool>().prop_map(StoredValue::Bool),
            any::<i64>().prop_map(StoredValue::Time),
            any::<u32>().prop_map(StoredValue::Option),
            proptest::collection::vec(any::<u32>(), 0..5).prop_map(StoredValue::Options),
            any::<u128>().prop_map(StoredValue::Ref),
        ]
    }

    fn stored_record() -> impl proptest::strategy::Strategy<Value = StoredRecord> {
        use proptest::prelude::*;
        let system = (
            any::<u32>(),
            any::<i64>(),
            any::<i64>(),
            any::<Option<i64>>(),
            any::<Option<u128>>(),
            any::<bool>(),
            proptest::option::of(".{0,20}"),
        );
        let props = proptest::collection::btree_map(any::<u16>(), stored_value(), 0..12);
        (system, props).prop_map(
            |((ord, created, updated, deleted, source, user, list), props)| StoredRecord {
                ord,
                created_at: created,
                updated_at: updated,
                deleted_at: deleted,
                source,
                is_user_object: user,
                list,
                props: props.into_iter().collect(),
            },
        )
    }

    /// Equality that takes a NaN float to equal itself (a stored NaN reads back as NaN).
    fn same(a: &StoredRecord, b: &StoredRecord) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    proptest::proptest! {
        /// Every record the encoder writes decodes to itself, whole or one value at a time.
        #[test]
        fn any_record_round_trips(record in stored_record()) {
            let bytes = encode_record(&record).unwrap();
            let back = decode_record(&bytes).unwrap();
            proptest::prop_assert!(same(&back, &record), "{back:?} != {record:?}");
            for (pid, value) in &record.props {
                let one = decode_value(&bytes, *pid).unwrap();
                proptest::prop_assert_eq!(format!("{one:?}"), format!("{:?}", Some(value)));
            }
            proptest::prop_assert_eq!(record_ord(&bytes).unwrap(), record.ord);
        }

        /// A record with one byte changed or cut short decodes to something or to an
        /// error, never a panic; when it decodes, reading one value agrees with it.
        #[test]
        fn damaged_records_never_panic(record in stored_record(), at in 0usize..400, byte in proptest::prelude::any::<u8>(), cut in proptest::prelude::any::<bool>()) {
            let mut bytes = encode_record(&record).unwrap();
            let at = at % bytes.len();
            match cut {
                true => bytes.truncate(at),
                false => bytes[at] = byte,
            }
            if let Ok(decoded) = decode_record(&bytes) {
                for (pid, value) in &decoded.props {
                    let one = decode_value(&bytes, *pid).unwrap();
                    proptest::prop_assert_eq!(format!("{one:?}"), format!("{:?}", Some(value)));
                }
            }
        }
    }

    #[test]
    fn truncated_records_are_errors() {
        let bytes = encode_record(&sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode_record(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
