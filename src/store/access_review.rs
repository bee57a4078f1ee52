//! What an access review (`portcullis diff`) asks the store: who is in each
//! group of an organization today, and which users are inactive, read in
//! one snapshot. The review never writes.

use std::future::Future;

use super::error::query_error;
use super::{Result, Store, bool_column, column};

/// The groups of an organization with their members, and its inactive users.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessDirectory {
    /// Every group, members included (an empty group too), ordered by name.
    pub groups: Vec<DirectoryGroup>,
    /// userNames of the users that are not active, ordered.
    pub inactive_users: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryGroup {
    pub display_name: String,
    /// Ordered by userName.
    pub members: Vec<DirectoryMember>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryMember {
    pub user_name: String,
    pub active: bool,
}

/// The read an access review needs; see the [module docs](self).
pub trait AccessReviewStore {
    /// The organization's (namespace's) groups, their members with their
    /// status, and its inactive users: one read snapshot.
    fn access_directory(&self, organization: &str) -> impl Future<Output = Result<AccessDirectory>> + Send;
}

impl AccessReviewStore for Store {
    async fn access_directory(&self, organization: &str) -> Result<AccessDirectory> {
        let mut tx = self.begin_read().await?;
        let rows = sqlx::query(
            "SELECT g.display_name AS group_name, u.user_name AS user_name, u.active AS active \
             FROM groups g LEFT JOIN memberships m ON m.group_id = g.id LEFT JOIN users u ON u.id = m.user_id \
             WHERE g.organization = $1 ORDER BY g.display_name_key, g.id, u.user_name_key",
        )
        .bind(organization)
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error("read the groups and their members"))?;
        let mut directory = AccessDirectory::default();
        for row in &rows {
            let group: String = column(row, "groups", "group_name")?;
            if directory.groups.last().is_none_or(|last| last.display_name != group) {
                directory.groups.push(DirectoryGroup { display_name: group, members: Vec::new() });
            }
            // A group without members comes as one row without a user.
            let Some(user_name) = column::<Option<String>>(row, "users", "user_name")? else { continue };
            let active = bool_column(row, "users", "active")?;
            if let Some(group) = directory.groups.last_mut() {
                group.members.push(DirectoryMember { user_name, active });
            }
        }
        let rows = sqlx::query(
            "SELECT user_name FROM users WHERE organization = $1 AND NOT active ORDER BY user_name_key",
        )
        .bind(organization)
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error("read the inactive users"))?;
        directory.inactive_users =
            rows.iter().map(|row| column(row, "users", "user_name")).collect::<Result<_>>()?;
        Ok(directory)
    }
}
