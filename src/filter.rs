//! The filter language of SPEC §4, parsed into a typed plan checked against the catalogs.
//!
//! Parsing is total: any JSON value either becomes a [`Filter`] or an `invalid_filter`
//! error whose message starts with a JSON pointer to the offending node
//! (`/filter/$and/2/amount/$gte: expected a number`). Values are converted to their stored
//! form here (option slugs or UUIDs to option numbers, RFC 3339 to microseconds, e-mail and
//! the text of `$contains`/`$starts_with`/`$ends_with` to lowercase), so evaluation never
//! looks at JSON again.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::codec::StoredValue;
use crate::error::{Error, Result};
use crate::model::ObjectType;
use crate::schema::{Catalog, Kind, Property};
use crate::time_fmt;

/// Filters nest at most this deep (`$and`/`$or`/`$not` levels); deeper is refused.
pub(crate) const MAX_DEPTH: usize = 32;

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Filter {
    /// Matches every live record (`{}`).
    All,
    /// Every part matches.
    And(Vec<Filter>),
    /// Some part matches.
    Or(Vec<Filter>),
    /// The part does not match (relative to the live records).
    Not(Box<Filter>),
    /// A condition on one field.
    Cond(Field, Op),
}

/// What a condition looks at.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Field {
    /// A property of the queried type: its number and kind.
    Prop { pid: u16, kind: Kind },
    /// The `created_at` system field.
    CreatedAt,
    /// The `updated_at` system field.
    UpdatedAt,
    /// A property of the record a reference points at (`organization.domain`).
    Path {
        /// The reference property of the queried type.
        via: u16,
        /// The type it points at.
        target: ObjectType,
        /// The field of the target.
        inner: Box<Field>,
    },
}

/// A comparison, with values already in stored form.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    /// Equal (multiselect: has the option; text kinds: exact, e-mail ignoring case).
    Eq(StoredValue),
    /// Any of (multiselect: has any of).
    In(Vec<StoredValue>),
    /// Has all of (multiselect only).
    HasAll(Vec<u32>),
    /// Greater than.
    Gt(StoredValue),
    /// Greater than or equal.
    Gte(StoredValue),
    /// Less than.
    Lt(StoredValue),
    /// Less than or equal.
    Lte(StoredValue),
    /// Text contains (lowercase needle).
    Contains(String),
    /// Text starts with (lowercase needle).
    StartsWith(String),
    /// Text ends with (lowercase needle).
    EndsWith(String),
    /// Has (true) or lacks (false) a value.
    Exists(bool),
}

/// Parses the `filter` member of a query body for type `ty`. `catalog` gives the catalog
/// of any type (dotted paths need the target's).
pub(crate) fn parse(
    value: &Value,
    ty: ObjectType,
    catalog: &dyn Fn(ObjectType) -> Result<std::sync::Arc<Catalog>>,
) -> Result<Filter> {
    let parser = Parser { ty, catalog };
    parser.node(value, &Pointer::root("filter"), 0)
}

/// A JSON pointer being built while descending.
#[derive(Clone)]
struct Pointer(String);

impl Pointer {
    fn root(name: &str) -> Pointer {
        Pointer(format!("/{name}"))
    }

    fn child(&self, segment: &str) -> Pointer {
        let escaped = segment.replace('~', "~0").replace('/', "~1");
        Pointer(format!("{}/{escaped}", self.0))
    }

    fn error(&self, what: impl std::fmt::Display) -> Error {
        Error::InvalidFilter(format!("{}: {what}", self.0))
    }
}

struct Parser<'a> {
    ty: ObjectType,
    catalog: &'a dyn Fn(ObjectType) -> Result<std::sync::Arc<Catalog>>,
}

impl Parser<'_> {
    fn node(&self, value: &Value, at: &Pointer, depth: usize) -> Result<Filter> {
        if depth > MAX_DEPTH {
            return Err(at.error(format!("filters nest at most {MAX_DEPTH} levels deep")));
        }
        let Value::Object(members) = value else {
            return Err(at.error("expected an object"));
        };
        let mut parts = Vec::with_capacity(members.len());
        for (key, member) in members {
            let here = at.child(key);
            parts.push(match key.as_str() {
                "$and" => Filter::And(self.list(member, &here, depth)?),
                "$or" => Filter::Or(self.list(member, &here, depth)?),
                "$not" => Filter::Not(Box::new(self.node(member, &here, depth + 1)?)),
                op if op.starts_with('$') => {
                    return Err(here.error(format!(
                        "unknown operator {op:?} (expected a property or $and, $or, $not)"
                    )))
                }
                field => self.condition(field, member, &here)?,
            });
        }
        Ok(match parts.len() {
            0 => Filter::All,
            1 => parts.pop().expect("one part"),
            _ => Filter::And(parts),
        })
    }

    fn list(&self, value: &Value, at: &Pointer, depth: usize) -> Result<Vec<Filter>> {
        let Value::Array(items) = value else {
            return Err(at.error("expected an array of filters"));
        };
        if items.is_empty() {
            return Err(at.error("expected at least one filter"));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.node(item, &at.child(&i.to_string()), depth + 1))
            .collect()
    }

    /// `{field: value}` or `{field: {$op: value, …}}`.
    fn condition(&self, name: &str, value: &Value, at: &Pointer) -> Result<Filter> {
        let (field, kind, prop) = self.field(self.ty, name, at)?;
        let ops = match value {
            Value::Object(ops) if ops.keys().next().is_some_and(|k| k.starts_with('$')) => ops,
            Value::Object(_) => return Err(at.error("expected a value or an object of operators")),
            shorthand => {
                return Ok(Filter::Cond(
                    field,
                    self.op("$eq", shorthand, kind, prop.as_ref(), at)?,
                ))
            }
        };
        let conds = self.operators(ops, &field, kind, prop.as_ref(), at)?;
        Ok(match conds.len() {
            1 => conds.into_iter().next().expect("one condition"),
            _ => Filter::And(conds),
        })
    }

    fn operators(
        &self,
        ops: &Map<String, Value>,
        field: &Field,
        kind: Kind,
        prop: Option<&Property>,
        at: &Pointer,
    ) -> Result<Vec<Filter>> {
        let mut conds = Vec::with_capacity(ops.len());
        for (name, operand) in ops {
            let here = at.child(name);
            let cond = match name.as_str() {
                "$ne" => Filter::Not(Box::new(Filter::Cond(
                    field.clone(),
                    self.op("$eq", operand, kind, prop, &here)?,
                ))),
                "$nin" => Filter::Not(Box::new(Filter::Cond(
                    field.clone(),
                    self.op("$in", operand, kind, prop, &here)?,
                ))),
                other => Filter::Cond(field.clone(), self.op(other, operand, kind, prop, &here)?),
            };
            conds.push(cond);
        }
        Ok(conds)
    }

    /// Resolves a field name (`slug`, `created_at`, `reference.slug`) on `ty`.
    fn field(
        &self,
        ty: ObjectType,
        name: &str,
        at: &Pointer,
    ) -> Result<(Field, Kind, Option<Property>)> {
        match name {
            "created_at" => return Ok((Field::CreatedAt, Kind::Datetime, None)),
            "updated_at" => return Ok((Field::UpdatedAt, Kind::Datetime, None)),
            _ => {}
        }
        let catalog = (self.catalog)(ty)?;
        if let Some((head, rest)) = name.split_once('.') {
            let via = catalog
                .property(head)
                .ok_or_else(|| at.error(format!("{ty} has no property {head:?}")))?;
            let target = match (via.kind, via.target) {
                (Kind::Reference, Some(target)) => target,
                _ => {
                    return Err(at.error(format!(
                        "{head:?} is not a reference; only references can be followed with '.'"
                    )))
                }
            };
            if rest.contains('.') {
                return Err(at.error("a path follows one reference only"));
            }
            let (inner, kind, prop) = self.field(target, rest, at)?;
            let field = Field::Path {
                via: via.pid,
                target,
                inner: Box::new(inner),
            };
            return Ok((field, kind, prop));
        }
        let prop = catalog
            .property(name)
            .ok_or_else(|| at.error(format!("{ty} has no property {name:?}")))?;
        Ok((
            Field::Prop {
                pid: prop.pid,
                kind: prop.kind,
            },
            prop.kind,
            Some(prop.clone()),
        ))
    }

    /// One operator applied to `operand`, checked against the kind.
    fn op(
        &self,
        name: &str,
        operand: &Value,
        kind: Kind,
        prop: Option<&Property>,
        at: &Pointer,
    ) -> Result<Op> {
        let text_like = matches!(kind, Kind::Text | Kind::Email | Kind::Url | Kind::Phone);
        match name {
            "$eq" if operand.is_null() => Ok(Op::Exists(false)),
            "$eq" => Ok(Op::Eq(value_of(operand, kind, prop, at)?)),
            "$in" => Ok(Op::In(
                array_of(operand, at)?
                    .iter()
                    .enumerate()
                    .map(|(i, v)| value_of(v, kind, prop, &at.child(&i.to_string())))
                    .collect::<Result<_>>()?,
            )),
            "$gt" | "$gte" | "$lt" | "$lte" => {
                if !(text_like || matches!(kind, Kind::Number | Kind::Datetime)) {
                    return Err(at.error(format!(
                        "{name} does not apply to {} properties",
                        kind.as_str()
                    )));
                }
                let v = value_of(operand, kind, prop, at)?;
                Ok(match name {
                    "$gt" => Op::Gt(v),
                    "$gte" => Op::Gte(v),
                    "$lt" => Op::Lt(v),
                    _ => Op::Lte(v),
                })
            }
            "$contains" if kind == Kind::Multiselect => {
                Ok(Op::Eq(value_of(operand, kind, prop, at)?))
            }
            "$contains" | "$starts_with" | "$ends_with" => {
                if !text_like {
                    return Err(at.error(format!(
                        "{name} applies to text properties, not {}",
                        kind.as_str()
                    )));
                }
                let needle = operand
                    .as_str()
                    .ok_or_else(|| at.error("expected a string"))?
                    .to_lowercase();
                Ok(match name {
                    "$contains" => Op::Contains(needle),
                    "$starts_with" => Op::StartsWith(needle),
                    _ => Op::EndsWith(needle),
                })
            }
            "$all" => {
                if kind != Kind::Multiselect {
                    return Err(at.error(format!(
                        "$all applies to multiselect properties, not {}",
                        kind.as_str()
                    )));
                }
                let options = array_of(operand, at)?
                    .iter()
                    .enumerate()
                    .map(
                        |(i, v)| match value_of(v, kind, prop, &at.child(&i.to_string()))? {
                            StoredValue::Option(n) => Ok(n),
                            _ => Err(at.error("expected option slugs or ids")),
                        },
                    )
                    .collect::<Result<_>>()?;
                Ok(Op::HasAll(options))
            }
            "$exists" => operand
                .as_bool()
                .map(Op::Exists)
                .ok_or_else(|| at.error("expected true or false")),
            other => Err(at.error(format!("unknown operator {other:?}"))),
        }
    }
}

fn array_of<'v>(value: &'v Value, at: &Pointer) -> Result<&'v Vec<Value>> {
    value
        .as_array()
        .ok_or_else(|| at.error("expected an array"))
}

/// A filter operand in stored form for a field of `kind`.
fn value_of(
    value: &Value,
    kind: Kind,
    prop: Option<&Property>,
    at: &Pointer,
) -> Result<StoredValue> {
    let expected = |what: &str| {
        at.error(format!(
            "expected {what}, got {}",
            crate::schema::short_json(value)
        ))
    };
    match kind {
        Kind::Text | Kind::Url | Kind::Phone => value
            .as_str()
            .map(|s| StoredValue::Str(s.to_owned()))
            .ok_or_else(|| expected("a string")),
        Kind::Email => value
            .as_str()
            .map(|s| StoredValue::Str(s.to_lowercase()))
            .ok_or_else(|| expected("a string")),
        Kind::Number => match value.as_number() {
            Some(n) if n.is_i64() => Ok(StoredValue::Int(n.as_i64().unwrap_or_default())),
            Some(n) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(StoredValue::Float)
                .ok_or_else(|| expected("a number")),
            None => Err(expected("a number")),
        },
        Kind::Boolean => value
            .as_bool()
            .map(StoredValue::Bool)
            .ok_or_else(|| expected("true or false")),
        Kind::Datetime => value
            .as_str()
            .and_then(time_fmt::parse_rfc3339)
            .map(StoredValue::Time)
            .ok_or_else(|| expected("an RFC 3339 date-time")),
        Kind::Select | Kind::Multiselect => {
            let text = value
                .as_str()
                .ok_or_else(|| expected("an option slug or id"))?;
            let option = prop
                .and_then(|p| p.option_by_text(text))
                .ok_or_else(|| at.error(format!("no option {text:?}")))?;
            Ok(StoredValue::Option(option.num))
        }
        Kind::Reference => value
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .map(|id| StoredValue::Ref(id.as_u128()))
            .ok_or_else(|| expected("a record id")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn parse_for(ty: ObjectType, filter: Value) -> Result<Filter> {
        let team = Uuid::from_u128(9);
        parse(&filter, ty, &|t| {
            Ok(Arc::new(Catalog::default_for(team, t)))
        })
    }

    fn err(filter: Value) -> String {
        match parse_for(ObjectType::Deal, filter) {
            Err(Error::InvalidFilter(message)) => message,
            other => panic!("expected invalid_filter, got {other:?}"),
        }
    }

    #[test]
    fn the_spec_example_parses() {
        let filter = json!({"$and": [
            {"stage": {"$in": ["qualified", "proposal"]}},
            {"amount": {"$gte": 10000}},
            {"organization.domain": {"$ends_with": ".IO"}},
            {"$not": {"name": {"$contains": "Test"}}}
        ]});
        let Filter::And(parts) = parse_for(ObjectType::Deal, filter).unwrap() else {
            panic!("and")
        };
        assert_eq!(parts.len(), 4);
        assert!(matches!(
            &parts[1],
            Filter::Cond(
                Field::Prop {
                    kind: Kind::Number,
                    ..
                },
                Op::Gte(StoredValue::Int(10000))
            )
        ));
        assert!(
            matches!(&parts[2], Filter::Cond(Field::Path { target: ObjectType::Organization, .. }, Op::EndsWith(s)) if s == ".io")
        );
        assert!(matches!(&parts[3], Filter::Not(_)));
    }

    #[test]
    fn shorthand_null_ne_and_several_keys() {
        assert!(matches!(
            parse_for(ObjectType::Deal, json!({"name": "x"})).unwrap(),
            Filter::Cond(_, Op::Eq(StoredValue::Str(_)))
        ));
        assert!(matches!(
            parse_for(ObjectType::Deal, json!({"name": null})).unwrap(),
            Filter::Cond(_, Op::Exists(false))
        ));
        assert!(matches!(
            parse_for(ObjectType::Deal, json!({"name": {"$ne": "x"}})).unwrap(),
            Filter::Not(_)
        ));
        assert!(
            matches!(parse_for(ObjectType::Deal, json!({"name": "x", "amount": 3})).unwrap(), Filter::And(p) if p.len() == 2)
        );
        assert_eq!(parse_for(ObjectType::Deal, json!({})).unwrap(), Filter::All);
        assert!(matches!(
            parse_for(
                ObjectType::Deal,
                json!({"created_at": {"$lt": "2026-01-01T00:00:00Z"}})
            )
            .unwrap(),
            Filter::Cond(Field::CreatedAt, Op::Lt(StoredValue::Time(_)))
        ));
    }

    #[test]
    fn errors_point_at_the_offending_node() {
        assert!(err(json!({"$and": [{}, {}, {"amount": {"$gte": "lots"}}]}))
            .starts_with("/filter/$and/2/amount/$gte: expected a number"));
        assert!(err(json!({"colour": "red"}))
            .starts_with("/filter/colour: deal has no property \"colour\""));
        assert!(err(json!({"stage": {"$in": ["won", "maybe"]}}))
            .starts_with("/filter/stage/$in/1: no option \"maybe\""));
        assert!(
            err(json!({"name": {"$near": 1}})).starts_with("/filter/name/$near: unknown operator")
        );
        assert!(err(json!({"$or": []})).starts_with("/filter/$or: expected at least one filter"));
        assert!(err(json!({"amount": {"$contains": "1"}})).starts_with("/filter/amount/$contains"));
        assert!(err(json!({"stage": {"$gt": "won"}})).starts_with("/filter/stage/$gt"));
        assert!(
            err(json!({"name.x": 1})).starts_with("/filter/name.x: \"name\" is not a reference")
        );
        assert!(err(json!({"a/b~c": 1})).starts_with("/filter/a~1b~0c:"));
        assert!(err(json!([1])).starts_with("/filter: expected an object"));
        let mut deep = json!({"name": "x"});
        for _ in 0..40 {
            deep = json!({"$not": deep});
        }
        assert!(err(deep).contains("nest"));
    }
}
