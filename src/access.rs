//! The access module: who may do what. Per-record grants come with issue 4; today it holds
//! the rules that do not depend on a record.

use crate::error::{Error, Result};
use crate::model::{ObjectType, Principal, Role};

/// Refuses writes to `event` by anyone but the system principal (`read_only_type`).
pub(crate) fn check_type_writable(principal: &Principal, ty: ObjectType) -> Result<()> {
    if ty == ObjectType::Event && principal.role != Role::System {
        return Err(Error::ReadOnlyType(format!(
            "{ty} records are written only by the system principal"
        )));
    }
    Ok(())
}

/// Refuses schema changes by principals without the admin (or system) role.
pub(crate) fn check_schema_admin(principal: &Principal, ty: ObjectType) -> Result<()> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "changing the {ty} schema needs the admin role"
        )))
    }
}
