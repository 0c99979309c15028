//! The one error type of prismdb, with the codes and HTTP statuses of SPEC §5.

/// Every way a prismdb call can fail. The message names the slug, id, value or position at
/// fault; [`Error::code`] gives the API's code and [`Error::http_status`] its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request as a whole is malformed (bad limit, missing body member, …).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A record id is not a UUID.
    #[error("invalid id: {0}")]
    InvalidId(String),
    /// No live record (or none the caller may read) answers to the id or value.
    #[error("not found: {0}")]
    NotFound(String),
    /// A property slug is not in the type's catalog.
    #[error("unknown property: {0}")]
    UnknownProperty(String),
    /// A value does not fit its property's kind, or an option does not exist.
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// A system field (`created_at`, `updated_at`, …) was written.
    #[error("read-only property: {0}")]
    ReadOnlyProperty(String),
    /// The type cannot be written by this principal (`event` for non-system callers).
    #[error("read-only type: {0}")]
    ReadOnlyType(String),
    /// A unique property's value is already held by another live record.
    #[error("unique violation: {0}")]
    UniqueViolation(String),
    /// A find or upsert matched more than one live record.
    #[error("multiple matches: {0}")]
    MultipleMatches(String),
    /// A filter or sort is malformed or names an unknown property.
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// A cursor was altered, or belongs to another query.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// A limit of the API was exceeded (page size, batch size, …).
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The caller may read the record but not make this change.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The caller did not prove who it is.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The change conflicts with the record's current state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Storage failed or the file is damaged.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The result type of every prismdb call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The API's error code, e.g. `"unique_violation"`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalid_request",
            Error::InvalidId(_) => "invalid_id",
            Error::NotFound(_) => "not_found",
            Error::UnknownProperty(_) => "unknown_property",
            Error::InvalidValue(_) => "invalid_value",
            Error::ReadOnlyProperty(_) => "read_only_property",
            Error::ReadOnlyType(_) => "read_only_type",
            Error::UniqueViolation(_) => "unique_violation",
            Error::MultipleMatches(_) => "multiple_matches",
            Error::InvalidFilter(_) => "invalid_filter",
            Error::InvalidCursor(_) => "invalid_cursor",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::PermissionDenied(_) => "permission_denied",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Conflict(_) => "conflict",
            Error::Internal(_) => "internal",
        }
    }

    /// The HTTP status the server answers this error with.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::InvalidRequest(_)
            | Error::InvalidId(_)
            | Error::UnknownProperty(_)
            | Error::InvalidValue(_)
            | Error::ReadOnlyProperty(_)
            | Error::InvalidFilter(_)
            | Error::InvalidCursor(_) => 400,
            Error::Unauthenticated(_) => 401,
            Error::PermissionDenied(_) | Error::ReadOnlyType(_) => 403,
            Error::NotFound(_) => 404,
            Error::UniqueViolation(_) | Error::MultipleMatches(_) | Error::Conflict(_) => 409,
            Error::LimitExceeded(_) => 413,
            Error::Internal(_) => 500,
        }
    }

    /// The message without the code prefix.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidRequest(m)
            | Error::InvalidId(m)
            | Error::NotFound(m)
            | Error::UnknownProperty(m)
            | Error::InvalidValue(m)
            | Error::ReadOnlyProperty(m)
            | Error::ReadOnlyType(m)
            | Error::UniqueViolation(m)
            | Error::MultipleMatches(m)
            | Error::InvalidFilter(m)
            | Error::InvalidCursor(m)
            | Error::LimitExceeded(m)
            | Error::PermissionDenied(m)
            | Error::Unauthenticated(m)
            | Error::Conflict(m)
            | Error::Internal(m) => m,
        }
    }
}
