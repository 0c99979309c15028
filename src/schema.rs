//! The schema module: property catalogs per (team, type), their default contents, the
//! schema operations, and the checks that turn a written JSON value into a stored value.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::codec::StoredValue;
use crate::error::{Error, Result};
use crate::model::ObjectType;
use crate::time_fmt;

/// What kind of values a property holds (SPEC §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Any string.
    Text,
    /// An e-mail address, compared case-insensitively.
    Email,
    /// An `http(s)://` URL.
    Url,
    /// A phone number: digits with `+ - ( ) .` and spaces.
    Phone,
    /// An integer or a float.
    Number,
    /// `true` or `false`.
    Boolean,
    /// An RFC 3339 instant, kept as epoch microseconds.
    Datetime,
    /// One option of the property's list.
    Select,
    /// A set of options of the property's list.
    Multiselect,
    /// The id of a record of the property's target type.
    Reference,
}

impl Kind {
    /// Every kind, in the order of SPEC §2's table.
    pub const ALL: [Kind; 10] = [
        Kind::Text,
        Kind::Email,
        Kind::Url,
        Kind::Phone,
        Kind::Number,
        Kind::Boolean,
        Kind::Datetime,
        Kind::Select,
        Kind::Multiselect,
        Kind::Reference,
    ];

    /// The kind's name, as in the API (`"multiselect"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Email => "email",
            Kind::Url => "url",
            Kind::Phone => "phone",
            Kind::Number => "number",
            Kind::Boolean => "boolean",
            Kind::Datetime => "datetime",
            Kind::Select => "select",
            Kind::Multiselect => "multiselect",
            Kind::Reference => "reference",
        }
    }

    /// Parses a kind name; an unknown one is `invalid_value`.
    pub fn parse(name: &str) -> Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| Error::InvalidValue(format!("unknown property kind {name:?}")))
    }

    fn has_options(self) -> bool {
        matches!(self, Kind::Select | Kind::Multiselect)
    }

    /// Whether the value index holds this kind's values unless asked otherwise.
    fn indexed_by_default(self) -> bool {
        matches!(
            self,
            Kind::Email | Kind::Phone | Kind::Number | Kind::Datetime | Kind::Reference
        )
    }
}

/// One option of a select or multiselect property.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectOption {
    /// Made by the engine; a write may name the option by it.
    pub id: Uuid,
    /// The option's name in reads and writes.
    pub slug: String,
    /// A human label.
    pub label: String,
    /// The small number records store for this option; never reused.
    pub(crate) num: u32,
}

/// One property of a catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Property {
    /// The property's name: `[a-z][a-z0-9_]{0,63}`.
    pub slug: String,
    /// What values it holds.
    pub kind: Kind,
    /// Whether two live records may not share a value.
    pub unique: bool,
    /// Whether the value index holds its values (always for unique properties).
    pub indexed: bool,
    /// Whether substring filters on it read trigram bitmaps (text only; see
    /// docs/schema.md).
    #[serde(default)]
    pub search: bool,
    /// The options of a select or multiselect, in display (and sort) order.
    pub options: Vec<SelectOption>,
    /// The target type of a reference.
    pub target: Option<ObjectType>,
    /// The number records and keys store instead of the slug; never reused.
    pub(crate) pid: u16,
    pub(crate) next_option: u32,
}

impl Property {
    /// The property as the API shows it: `{slug, kind, unique, indexed, search, options?,
    /// target?}`.
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "slug": self.slug,
            "kind": self.kind.as_str(),
            "unique": self.unique,
            "indexed": self.indexed,
            "search": self.search,
        });
        if self.kind.has_options() {
            out["options"] = self
                .options
                .iter()
                .map(|o| json!({"id": o.id, "slug": o.slug, "label": o.label}))
                .collect();
        }
        if let Some(target) = self.target {
            out["target"] = json!(target.as_str());
        }
        out
    }

    /// The option written as `text`: its slug or its UUID.
    pub(crate) fn option_by_text(&self, text: &str) -> Option<&SelectOption> {
        self.options.iter().find(|o| o.slug == text).or_else(|| {
            let id = Uuid::parse_str(text).ok()?;
            self.options.iter().find(|o| o.id == id)
        })
    }

    /// The option stored as `num`.
    pub(crate) fn option_by_num(&self, num: u32) -> Option<&SelectOption> {
        self.options.iter().find(|o| o.num == num)
    }

    /// The option's position in the catalog (its sort rank).
    pub(crate) fn option_rank(&self, num: u32) -> Option<usize> {
        self.options.iter().position(|o| o.num == num)
    }

    /// Whether the value index holds this property.
    ///
    /// References always are: one entry (target id, ordinal) per record maps targets back to
    /// the records that point at them (find, upsert, dotted paths). A bitmap per target
    /// would need a chunk read and rewrite per record and target on every write; measured
    /// on a million contacts over 50,000 organizations, that slowed bulk loads by half.
    pub(crate) fn in_value_index(&self) -> bool {
        self.indexed || self.unique || self.kind == Kind::Reference
    }

    /// Whether the property keeps trigram bitmaps for substring filters.
    pub(crate) fn searchable(&self) -> bool {
        self.search && self.kind == Kind::Text
    }

    /// Converts a written JSON value into its stored form, or explains what is wrong with
    /// it (`invalid_value` naming the slug). `null` is handled by the caller.
    pub(crate) fn to_stored(&self, value: &Value) -> Result<StoredValue> {
        let bad = |expected: &str| {
            Error::InvalidValue(format!(
                "property {:?} ({}) expects {expected}, got {}",
                self.slug,
                self.kind.as_str(),
                short_json(value)
            ))
        };
        match self.kind {
            Kind::Text => value
                .as_str()
                .map(|s| StoredValue::Str(s.to_owned()))
                .ok_or_else(|| bad("a string")),
            Kind::Email | Kind::Url | Kind::Phone => {
                let text = value.as_str().ok_or_else(|| bad("a string"))?;
                if !format_ok(self.kind, text) {
                    return Err(bad(&format!("a valid {}", self.kind.as_str())));
                }
                Ok(StoredValue::Str(text.to_owned()))
            }
            Kind::Number => number_to_stored(value).ok_or_else(|| bad("a finite number")),
            Kind::Boolean => value
                .as_bool()
                .map(StoredValue::Bool)
                .ok_or_else(|| bad("true or false")),
            Kind::Datetime => value
                .as_str()
                .and_then(time_fmt::parse_rfc3339)
                .map(StoredValue::Time)
                .ok_or_else(|| bad("an RFC 3339 date-time")),
            Kind::Select => {
                let text = value.as_str().ok_or_else(|| bad("an option slug or id"))?;
                self.option_num(text).map(StoredValue::Option)
            }
            Kind::Multiselect => {
                let items = value
                    .as_array()
                    .ok_or_else(|| bad("an array of option slugs or ids"))?;
                let mut nums = Vec::with_capacity(items.len());
                for item in items {
                    let text = item
                        .as_str()
                        .ok_or_else(|| bad("an array of option slugs or ids"))?;
                    nums.push(self.option_num(text)?);
                }
                nums.sort_by_key(|n| self.option_rank(*n));
                nums.dedup();
                Ok(StoredValue::Options(nums))
            }
            Kind::Reference => value
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .map(|id| StoredValue::Ref(id.as_u128()))
                .ok_or_else(|| bad("a record id")),
        }
    }

    fn option_num(&self, text: &str) -> Result<u32> {
        self.option_by_text(text).map(|o| o.num).ok_or_else(|| {
            Error::InvalidValue(format!("property {:?} has no option {text:?}", self.slug))
        })
    }

    /// [`Property::to_json_value`] for an owned value: stored text moves instead of being copied.
    pub(crate) fn json_of_owned(&self, stored: StoredValue) -> Value {
        match stored {
            StoredValue::Str(s) => Value::String(s),
            other => self.to_json_value(&other),
        }
    }

    /// The JSON a read shows for a stored value (references as their id).
    pub(crate) fn to_json_value(&self, stored: &StoredValue) -> Value {
        match stored {
            StoredValue::Str(s) => Value::String(s.clone()),
            StoredValue::Int(i) => json!(i),
            StoredValue::Float(f) => json!(f),
            StoredValue::Bool(b) => Value::Bool(*b),
            StoredValue::Time(t) => Value::String(time_fmt::format_rfc3339(*t)),
            StoredValue::Option(n) => self
                .option_by_num(*n)
                .map_or(Value::Null, |o| Value::String(o.slug.clone())),
            StoredValue::Options(ns) => ns
                .iter()
                .filter_map(|n| self.option_by_num(*n))
                .map(|o| Value::String(o.slug.clone()))
                .collect(),
            StoredValue::Ref(id) => Value::String(Uuid::from_u128(*id).to_string()),
        }
    }
}

fn number_to_stored(value: &Value) -> Option<StoredValue> {
    let number = value.as_number()?;
    if let Some(i) = number.as_i64() {
        return Some(StoredValue::Int(i));
    }
    let f = number.as_f64()?;
    f.is_finite().then_some(StoredValue::Float(f))
}

/// A JSON value cut to a readable length for an error message.
pub(crate) fn short_json(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= 80 {
        return text;
    }
    let cut = (0..=77)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}...", &text[..cut])
}

/// Whether `text` is a plausible value of a formatted string kind.
fn format_ok(kind: Kind, text: &str) -> bool {
    match kind {
        Kind::Email => email_ok(text),
        Kind::Url => url_ok(text),
        Kind::Phone => phone_ok(text),
        _ => true,
    }
}

fn email_ok(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    text.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn url_ok(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

fn phone_ok(text: &str) -> bool {
    let digits = text.chars().filter(char::is_ascii_digit).count();
    (3..=20).contains(&digits)
        && text.len() <= 40
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

/// Names that are system fields of every record and can never be property slugs.
pub const SYSTEM_FIELDS: [&str; 6] = [
    "id",
    "created_at",
    "updated_at",
    "deleted_at",
    "source",
    "is_user_object",
];

/// Checks a property or option slug against `[a-z][a-z0-9_]{0,63}`.
pub(crate) fn check_slug(slug: &str, what: &str) -> Result<()> {
    let mut chars = slug.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && slug.len() <= 64 {
        Ok(())
    } else {
        Err(Error::InvalidValue(format!(
            "{what} {slug:?} must match [a-z][a-z0-9_]{{0,63}}"
        )))
    }
}

/// A new property, as the add-property operation takes it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PropertySpec {
    /// The slug of the new property.
    pub slug: String,
    /// Its kind, by name (`"text"`, `"select"`, …).
    pub kind: String,
    /// Whether its values must be unique among live records.
    #[serde(default)]
    pub unique: Option<bool>,
    /// Whether the value index should hold it (default: by kind, see docs/schema.md).
    #[serde(default)]
    pub indexed: Option<bool>,
    /// Whether substring filters should read trigram bitmaps (text only; default off).
    #[serde(default)]
    pub search: Option<bool>,
    /// The options of a select or multiselect.
    #[serde(default)]
    pub options: Option<Vec<OptionSpec>>,
    /// The target type of a reference, by name.
    #[serde(default)]
    pub target: Option<String>,
}

/// An option to add: a slug and an optional label (default: the slug).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct OptionSpec {
    /// The option's slug.
    pub slug: String,
    /// Its label.
    #[serde(default)]
    pub label: Option<String>,
}

/// A change to one property, as the update-property operation takes it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PropertyChange {
    /// Make the property unique (refused if live records share a value) or not.
    #[serde(default)]
    pub unique: Option<bool>,
    /// Add the property to the value index or drop it from there.
    #[serde(default)]
    pub indexed: Option<bool>,
    /// Keep trigram bitmaps for substring filters (text only) or drop them.
    #[serde(default)]
    pub search: Option<bool>,
    /// Options to append.
    #[serde(default)]
    pub add_options: Vec<OptionSpec>,
    /// Options to rename, old slug → new slug.
    #[serde(default)]
    pub rename_options: std::collections::BTreeMap<String, String>,
    /// Options to remove (refused while a record holds them).
    #[serde(default)]
    pub remove_options: Vec<String>,
}

/// The property catalog of one (team, type).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Bumped by every change; caches compare it.
    pub(crate) version: u64,
    properties: Vec<Property>,
    next_pid: u16,
    /// The properties' slugs as rows share them, made on first use.
    #[serde(skip)]
    slugs: SharedSlugs,
}

/// A catalog's slugs, each allocated once and shared by every row rendered with it
/// (rendering one record allocated each slug again, about a tenth of a get). Not part of
/// the catalog's value: equal catalogs compare equal whether or not it was made.
#[derive(Clone, Default)]
struct SharedSlugs(std::sync::OnceLock<Vec<std::sync::Arc<str>>>);

impl PartialEq for SharedSlugs {
    fn eq(&self, _: &SharedSlugs) -> bool {
        true
    }
}

impl std::fmt::Debug for SharedSlugs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSlugs")
    }
}

impl Catalog {
    /// The properties, in the order they were added.
    pub fn properties(&self) -> &[Property] {
        &self.properties
    }

    /// The slugs of [`Catalog::properties`], in the same order, shared.
    pub(crate) fn shared_slugs(&self) -> &[std::sync::Arc<str>] {
        self.slugs.0.get_or_init(|| {
            self.properties
                .iter()
                .map(|p| p.slug.as_str().into())
                .collect()
        })
    }

    /// The property named `slug`, if any.
    pub fn property(&self, slug: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.slug == slug)
    }

    /// The property named `slug`, or `unknown_property` naming it.
    pub fn require(&self, slug: &str) -> Result<&Property> {
        self.property(slug).ok_or_else(|| {
            if SYSTEM_FIELDS.contains(&slug) {
                Error::ReadOnlyProperty(format!("{slug:?} is a system field"))
            } else {
                Error::UnknownProperty(format!("no property {slug:?}"))
            }
        })
    }

    /// The property stored as `pid`.
    pub(crate) fn by_pid(&self, pid: u16) -> Option<&Property> {
        self.properties.iter().find(|p| p.pid == pid)
    }

    /// The catalog as the API shows it: an array of properties.
    pub fn to_json(&self) -> Value {
        self.properties.iter().map(Property::to_json).collect()
    }

    /// The default catalog of `ty` for `team` (docs/schema.md). Option ids are derived from
    /// the team, type and slugs, so the default catalog is the same whenever it is built.
    pub fn default_for(team: Uuid, ty: ObjectType) -> Catalog {
        let mut catalog = Catalog {
            version: 0,
            properties: Vec::new(),
            next_pid: 1,
            slugs: SharedSlugs::default(),
        };
        for (slug, kind, unique, extra) in default_properties(ty) {
            let mut spec = PropertySpec {
                slug: slug.to_owned(),
                kind: kind.as_str().to_owned(),
                unique: Some(unique),
                ..PropertySpec::default()
            };
            match extra {
                Extra::None => {}
                Extra::Target(t) => spec.target = Some(t.as_str().to_owned()),
                Extra::Options(opts) => {
                    spec.options = Some(
                        opts.iter()
                            .map(|o| OptionSpec {
                                slug: (*o).to_owned(),
                                label: None,
                            })
                            .collect(),
                    )
                }
            }
            let seed = format!("{}/{slug}", ty.as_str());
            catalog
                .add(&spec, |opt| default_option_id(team, &seed, opt))
                .expect("default catalogs are valid");
        }
        catalog
    }

    /// Adds a property; option ids come from `make_id`. Errors name the slug at fault.
    pub(crate) fn add(
        &mut self,
        spec: &PropertySpec,
        mut make_id: impl FnMut(&str) -> Uuid,
    ) -> Result<&Property> {
        check_slug(&spec.slug, "property slug")?;
        if SYSTEM_FIELDS.contains(&spec.slug.as_str()) {
            return Err(Error::ReadOnlyProperty(format!(
                "{:?} is a system field",
                spec.slug
            )));
        }
        if self.property(&spec.slug).is_some() {
            return Err(Error::Conflict(format!(
                "property {:?} already exists",
                spec.slug
            )));
        }
        let kind = Kind::parse(&spec.kind)?;
        let target = match (&spec.target, kind) {
            (Some(t), Kind::Reference) => Some(t.parse::<ObjectType>().map_err(|_| {
                Error::InvalidValue(format!("reference target {t:?} is not an object type"))
            })?),
            (None, Kind::Reference) => {
                return Err(Error::InvalidValue(format!(
                    "reference property {:?} needs a target type",
                    spec.slug
                )))
            }
            (Some(_), _) => {
                return Err(Error::InvalidValue(format!(
                    "property {:?} is not a reference and takes no target",
                    spec.slug
                )))
            }
            (None, _) => None,
        };
        if spec.options.is_some() && !kind.has_options() {
            return Err(Error::InvalidValue(format!(
                "property {:?} is not a select and takes no options",
                spec.slug
            )));
        }
        let unique = spec.unique.unwrap_or(false);
        if unique && !unique_allowed(kind) {
            return Err(Error::InvalidValue(format!(
                "property {:?} of kind {} cannot be unique",
                spec.slug,
                kind.as_str()
            )));
        }
        let pid = self.next_pid;
        self.next_pid = pid.checked_add(1).ok_or_else(|| {
            Error::LimitExceeded("a type can have at most 65,535 properties".into())
        })?;
        let mut property = Property {
            slug: spec.slug.clone(),
            kind,
            unique,
            indexed: spec.indexed.unwrap_or(kind.indexed_by_default())
                || unique
                || kind == Kind::Reference,
            search: check_search(&spec.slug, kind, spec.search.unwrap_or(false))?,
            options: Vec::new(),
            target,
            pid,
            next_option: 1,
        };
        for option in spec.options.iter().flatten() {
            add_option(&mut property, option, &mut make_id)?;
        }
        self.version += 1;
        self.slugs = SharedSlugs::default();
        self.properties.push(property);
        Ok(self.properties.last().expect("just pushed"))
    }

    /// Applies the option part of `change` (add, rename, remove) to property `slug`.
    /// `in_use` tells whether a record holds an option number. Nothing changes on error.
    pub(crate) fn change_options(
        &mut self,
        slug: &str,
        change: &PropertyChange,
        mut make_id: impl FnMut(&str) -> Uuid,
        mut in_use: impl FnMut(&Property, u32) -> Result<bool>,
    ) -> Result<()> {
        let mut property = self.require(slug)?.clone();
        let touches_options = !change.add_options.is_empty()
            || !change.rename_options.is_empty()
            || !change.remove_options.is_empty();
        if touches_options && !property.kind.has_options() {
            return Err(Error::InvalidValue(format!(
                "property {slug:?} is not a select and has no options"
            )));
        }
        for (old, new) in &change.rename_options {
            check_slug(new, "option slug")?;
            if property.options.iter().any(|o| &o.slug == new) {
                return Err(Error::Conflict(format!(
                    "property {slug:?} already has an option {new:?}"
                )));
            }
            let option = property
                .options
                .iter_mut()
                .find(|o| &o.slug == old)
                .ok_or_else(|| {
                    Error::InvalidValue(format!("property {slug:?} has no option {old:?}"))
                })?;
            if option.label == option.slug {
                option.label = new.clone();
            }
            option.slug = new.clone();
        }
        for removed in &change.remove_options {
            let option = property.option_by_text(removed).cloned().ok_or_else(|| {
                Error::InvalidValue(format!("property {slug:?} has no option {removed:?}"))
            })?;
            if in_use(&property, option.num)? {
                return Err(Error::Conflict(format!(
                    "option {removed:?} of property {slug:?} is still held by records"
                )));
            }
            property.options.retain(|o| o.num != option.num);
        }
        for added in &change.add_options {
            add_option(&mut property, added, &mut make_id)?;
        }
        self.replace(property);
        Ok(())
    }

    /// Sets the unique, indexed and search flags of property `slug`.
    pub(crate) fn set_flags(
        &mut self,
        slug: &str,
        unique: bool,
        indexed: bool,
        search: bool,
    ) -> Result<()> {
        let mut property = self.require(slug)?.clone();
        property.search = check_search(slug, property.kind, search)?;
        if unique && !unique_allowed(property.kind) {
            return Err(Error::InvalidValue(format!(
                "property {slug:?} of kind {} cannot be unique",
                property.kind.as_str()
            )));
        }
        property.unique = unique;
        property.indexed = indexed || unique || property.kind == Kind::Reference;
        self.replace(property);
        Ok(())
    }

    /// Removes property `slug` from the catalog.
    pub(crate) fn remove(&mut self, slug: &str) -> Result<Property> {
        let position = self
            .properties
            .iter()
            .position(|p| p.slug == slug)
            .ok_or_else(|| Error::UnknownProperty(format!("no property {slug:?}")))?;
        self.version += 1;
        self.slugs = SharedSlugs::default();
        Ok(self.properties.remove(position))
    }

    fn replace(&mut self, property: Property) {
        if let Some(slot) = self.properties.iter_mut().find(|p| p.pid == property.pid) {
            *slot = property;
            self.version += 1;
            self.slugs = SharedSlugs::default();
        }
    }
}

fn unique_allowed(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Text | Kind::Email | Kind::Url | Kind::Phone | Kind::Number | Kind::Datetime
    )
}

fn add_option(
    property: &mut Property,
    spec: &OptionSpec,
    make_id: &mut impl FnMut(&str) -> Uuid,
) -> Result<()> {
    check_slug(&spec.slug, "option slug")?;
    if property.options.iter().any(|o| o.slug == spec.slug) {
        return Err(Error::Conflict(format!(
            "property {:?} already has an option {:?}",
            property.slug, spec.slug
        )));
    }
    let num = property.next_option;
    property.next_option += 1;
    property.options.push(SelectOption {
        id: make_id(&spec.slug),
        slug: spec.slug.clone(),
        label: spec.label.clone().unwrap_or_else(|| spec.slug.clone()),
        num,
    });
    Ok(())
}

fn default_option_id(team: Uuid, seed: &str, option: &str) -> Uuid {
    Uuid::new_v5(&team, format!("{seed}/{option}").as_bytes())
}

enum Extra {
    None,
    Target(ObjectType),
    Options(&'static [&'static str]),
}

/// `search`, refused (`invalid_value`) on a kind other than text.
fn check_search(slug: &str, kind: Kind, search: bool) -> Result<bool> {
    if search && kind != Kind::Text {
        return Err(Error::InvalidValue(format!(
            "property {slug:?} of kind {} cannot be searched by substring; only text can",
            kind.as_str()
        )));
    }
    Ok(search)
}

/// The default properties of each type: (slug, kind, unique, target or options).
fn default_properties(ty: ObjectType) -> Vec<(&'static str, Kind, bool, Extra)> {
    let mut props = vec![("name", Kind::Text, false, Extra::None)];
    match ty {
        ObjectType::Contact => props.extend([
            ("email", Kind::Email, true, Extra::None),
            ("phone", Kind::Phone, false, Extra::None),
            ("title", Kind::Text, false, Extra::None),
            (
                "organization",
                Kind::Reference,
                false,
                Extra::Target(ObjectType::Organization),
            ),
        ]),
        ObjectType::Organization => props.push(("domain", Kind::Text, true, Extra::None)),
        ObjectType::Identity => props.push(("email", Kind::Email, false, Extra::None)),
        ObjectType::Deal => props.extend([
            ("amount", Kind::Number, false, Extra::None),
            (
                "stage",
                Kind::Select,
                false,
                Extra::Options(&[
                    "lead",
                    "qualified",
                    "proposal",
                    "negotiation",
                    "won",
                    "lost",
                ]),
            ),
            (
                "organization",
                Kind::Reference,
                false,
                Extra::Target(ObjectType::Organization),
            ),
        ]),
        ObjectType::Action => props.extend([
            ("due_at", Kind::Datetime, false, Extra::None),
            ("done", Kind::Boolean, false, Extra::None),
        ]),
        ObjectType::Document => props.push(("url", Kind::Url, false, Extra::None)),
        ObjectType::Event => props.extend([
            ("starts_at", Kind::Datetime, false, Extra::None),
            ("ends_at", Kind::Datetime, false, Extra::None),
        ]),
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_pattern() {
        assert!(check_slug("a", "x").is_ok());
        assert!(check_slug("a_1", "x").is_ok());
        assert!(check_slug("1a", "x").is_err());
        assert!(check_slug("A", "x").is_err());
        assert!(check_slug("", "x").is_err());
        assert!(check_slug(&"a".repeat(65), "x").is_err());
    }

    #[test]
    fn formats_are_checked() {
        assert!(email_ok("a@b.co"));
        assert!(!email_ok("a@b"));
        assert!(!email_ok("a b@c.de"));
        assert!(url_ok("https://x.io/a"));
        assert!(!url_ok("ftp://x.io"));
        assert!(phone_ok("+1 (555) 123-4567"));
        assert!(!phone_ok("call me"));
    }

    #[test]
    fn default_catalog_is_deterministic() {
        let team = Uuid::new_v4();
        let a = Catalog::default_for(team, ObjectType::Deal);
        let b = Catalog::default_for(team, ObjectType::Deal);
        assert_eq!(a, b);
        assert_eq!(a.require("stage").unwrap().options.len(), 6);
    }

    #[test]
    fn shared_slugs_follow_every_change() {
        let slugs = |c: &Catalog| -> Vec<String> {
            c.shared_slugs().iter().map(|s| s.to_string()).collect()
        };
        let listed = |c: &Catalog| -> Vec<String> {
            c.properties().iter().map(|p| p.slug.clone()).collect()
        };
        let mut catalog = Catalog::default_for(Uuid::new_v4(), ObjectType::Contact);
        assert_eq!(slugs(&catalog), listed(&catalog));
        let spec = PropertySpec {
            slug: "city".into(),
            kind: "text".into(),
            ..PropertySpec::default()
        };
        catalog.add(&spec, |_| Uuid::new_v4()).unwrap();
        assert_eq!(slugs(&catalog).last().map(String::as_str), Some("city"));
        let copy = catalog.clone();
        catalog.remove("city").unwrap();
        assert_eq!(slugs(&catalog), listed(&catalog));
        assert_eq!(slugs(&copy), listed(&copy), "a clone keeps its own slugs");
    }
}
