//! The nouns of the data model: object types and the principals that call the engine.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::error::{Error, Result};

/// The seven object types of the Prism API.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ObjectType {
    /// A person.
    Contact,
    /// A company.
    Organization,
    /// An external identity of a contact.
    Identity,
    /// A sales opportunity (has grants).
    Deal,
    /// A task (has grants).
    Action,
    /// A file or link (has grants).
    Document,
    /// Something that happened; written only by the system principal (has grants).
    Event,
}

impl ObjectType {
    /// All types, in their stable numbering order.
    pub const ALL: [ObjectType; 7] = [
        ObjectType::Contact,
        ObjectType::Organization,
        ObjectType::Identity,
        ObjectType::Deal,
        ObjectType::Action,
        ObjectType::Document,
        ObjectType::Event,
    ];

    /// The type's name in routes and filters, e.g. `"contact"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Contact => "contact",
            ObjectType::Organization => "organization",
            ObjectType::Identity => "identity",
            ObjectType::Deal => "deal",
            ObjectType::Action => "action",
            ObjectType::Document => "document",
            ObjectType::Event => "event",
        }
    }

    /// The byte that stands for the type in storage keys.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    /// Whether records of this type carry per-record grants (SPEC §6).
    pub fn has_grants(self) -> bool {
        matches!(
            self,
            ObjectType::Deal | ObjectType::Action | ObjectType::Document | ObjectType::Event
        )
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ObjectType {
    type Err = Error;

    /// Parses a type name; an unknown name is `invalid_request`.
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| Error::InvalidRequest(format!("unknown object type {s:?}")))
    }
}

/// What a principal may do beyond its grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// An ordinary team member: grants decide.
    #[default]
    Member,
    /// A team administrator: bypasses grants, may change the schema.
    Admin,
    /// The embedding service itself: bypasses grants and alone may write events.
    System,
}

impl FromStr for Role {
    type Err = Error;

    /// Parses `member`, `admin` or `system`; anything else is `invalid_request`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            "system" => Ok(Role::System),
            _ => Err(Error::InvalidRequest(format!("unknown role {s:?}"))),
        }
    }
}

/// Who is calling: every operation runs as a principal of exactly one team.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The team whose data the call may touch; nothing else is visible.
    pub team: Uuid,
    /// The calling user (the creator of records it makes).
    pub user: Uuid,
    /// The team groups the user belongs to.
    pub groups: Vec<Uuid>,
    /// The role, which may bypass grants.
    pub role: Role,
}

impl Principal {
    /// A member of `team` acting as `user`, in no groups.
    pub fn member(team: Uuid, user: Uuid) -> Principal {
        Principal {
            team,
            user,
            groups: Vec::new(),
            role: Role::Member,
        }
    }

    /// An administrator of `team` acting as `user`.
    pub fn admin(team: Uuid, user: Uuid) -> Principal {
        Principal {
            role: Role::Admin,
            ..Principal::member(team, user)
        }
    }

    /// The embedding service acting on `team`.
    pub fn system(team: Uuid) -> Principal {
        Principal {
            role: Role::System,
            ..Principal::member(team, Uuid::nil())
        }
    }

    /// Returns this principal with `groups` as its groups.
    pub fn with_groups(mut self, groups: Vec<Uuid>) -> Principal {
        self.groups = groups;
        self
    }

    /// Whether the role may change the schema.
    pub fn is_admin(&self) -> bool {
        matches!(self.role, Role::Admin | Role::System)
    }
}

/// Parses a record id; anything but a UUID is `invalid_id` naming the text.
pub fn parse_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| Error::InvalidId(format!("{text:?} is not a UUID")))
}
