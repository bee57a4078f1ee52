//! SCIM filters and sort orders as SQL (RFC 7644 §3.4.2.2, §3.4.2.3): the
//! parsed [`Filter`] of `portcullis_scim::filter` becomes a parameterised `WHERE`
//! clause over `users` (alias `u`), `user_emails` (`e`), `groups` (`g`) and
//! `memberships` (`m`), the same text on SQLite and PostgreSQL. Values are
//! always bound (`$2`, `$3`, …; `$1` is the organization), never interpolated.
//!
//! ```text
//!   userName eq "Ann"                ──► (u.user_name_key IS NOT NULL AND u.user_name_key = $2)   $2 = "ann"
//!   emails[type eq "work" and value co "@acme"]
//!                                    ──► u.id IN (SELECT e.user_id FROM user_emails e
//!                                                 WHERE e.organization = $1 AND (… AND …))
//!   members.value eq "…"             ──► g.id IN (SELECT m.group_id FROM memberships m WHERE …)
//! ```
//!
//! Semantics follow `portcullis_scim::eval`: strings compare ignoring case unless
//! the attribute is `caseExact` (through the stored lower-case `*_key`
//! columns, or `LOWER(…)`); every leaf is two-valued, so `ne` and `not` match
//! absent attributes; a multi-valued attribute matches when one of its values
//! does, and `ne` is the negation of `eq`. Attributes without a column (kept
//! in `users.scim_json`) cannot be filtered or sorted on: that is an error
//! naming the attribute, never a silent full scan.

use portcullis_scim::ScimType;
use portcullis_scim::eval::{parse_bool, parse_date_time};
use portcullis_scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use portcullis_scim::schema::{Attribute, ResourceType};

use super::Backend;

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// A translated filter: SQL over the aliases above, and what its
/// placeholders (from `$2` on) are bound to, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlWhere {
    pub sql: String,
    pub binds: Vec<SqlValue>,
}

/// Why a filter or sort order cannot be run as SQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("filtering on {path:?} is not supported by this server; filterable: {supported}")]
    UnfilterableAttribute { path: String, supported: &'static str },
    #[error("{path:?} is a dateTime; {value} is not an xsd:dateTime (RFC 7643 §2.3.5)")]
    InvalidDateTime { path: String, value: String },
    #[error("{op} is not supported on {path:?}")]
    UnsupportedOperator { path: String, op: &'static str },
    #[error("sorting by {path:?} is not supported; sortable: {supported}")]
    UnsortableAttribute { path: String, supported: &'static str },
}

impl QueryError {
    pub fn scim_type(&self) -> ScimType {
        match self {
            QueryError::UnsortableAttribute { .. } => ScimType::InvalidValue,
            _ => ScimType::InvalidFilter,
        }
    }
}

/// Which resources a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Users,
    Groups,
}

impl Resource {
    fn resource_type(self) -> &'static ResourceType {
        match self {
            Resource::Users => &portcullis_scim::schema::USER,
            Resource::Groups => &portcullis_scim::schema::GROUP,
        }
    }

    fn filterable(self) -> &'static str {
        match self {
            Resource::Users => {
                "id, externalId, userName, displayName, name.givenName, name.familyName, active, \
                 emails.value, emails.type, emails.primary, groups.value, meta.created, meta.lastModified"
            }
            Resource::Groups => "id, externalId, displayName, members.value, meta.created, meta.lastModified",
        }
    }
}

/// How a column holds its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    /// Text compared as stored: `caseExact` attributes.
    Exact(&'static str),
    /// A lower-case key column (`*_key`): compare with the lower-cased value.
    Key(&'static str),
    /// Text compared ignoring case through `LOWER(…)`.
    Folded(&'static str),
    Bool(&'static str),
    /// Unix milliseconds, compared with an `xsd:dateTime`.
    Millis(&'static str),
}

/// A multi-valued attribute kept in a child table: the subquery giving the
/// ids of the resources with a matching value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    Emails,
    UserGroups,
    GroupMembers,
}

impl Child {
    fn wrap(self, condition: &str) -> String {
        match self {
            Child::Emails => format!(
                "u.id IN (SELECT e.user_id FROM user_emails e WHERE e.organization = $1 AND ({condition}))"
            ),
            Child::UserGroups => {
                format!("u.id IN (SELECT m.user_id FROM memberships m WHERE ({condition}))")
            }
            Child::GroupMembers => {
                format!("g.id IN (SELECT m.group_id FROM memberships m WHERE ({condition}))")
            }
        }
    }

    /// The column of one value's sub-attribute (inside `attr[…]`).
    fn column(self, sub: &str) -> Option<Column> {
        match (self, sub.to_ascii_lowercase().as_str()) {
            (Child::Emails, "value") => Some(Column::Key("e.value_key")),
            (Child::Emails, "type") => Some(Column::Folded("e.kind")),
            (Child::Emails, "primary") => Some(Column::Bool("e.is_primary")),
            (Child::UserGroups, "value") => Some(Column::Exact("m.group_id")),
            (Child::GroupMembers, "value") => Some(Column::Exact("m.user_id")),
            _ => None,
        }
    }
}

enum Field {
    Single(Column),
    Multi(Child, Column),
}

/// Translates `filter` (already checked by `filter::parse_for`) for `resource`.
pub fn translate(filter: &Filter, resource: Resource, backend: Backend) -> Result<SqlWhere, QueryError> {
    let mut translator = Translator { resource, backend, binds: Vec::new() };
    let sql = translator.filter(filter, None)?;
    Ok(SqlWhere { sql, binds: translator.binds })
}

/// The `ORDER BY` list for `sortBy` (RFC 7644 §3.4.2.3): absent values last,
/// then the id so that pages are stable.
pub fn order_by(
    sort_by: Option<&AttrPath>,
    descending: bool,
    resource: Resource,
    backend: Backend,
) -> Result<String, QueryError> {
    let (alias, default) = match resource {
        Resource::Users => ("u", "u.user_name_key"),
        Resource::Groups => ("g", "g.display_name_key"),
    };
    let column = match sort_by {
        None => default.to_owned(),
        Some(path) => {
            let unsortable = || QueryError::UnsortableAttribute {
                path: path.to_string(),
                supported: match resource {
                    Resource::Users => {
                        "id, externalId, userName, displayName, name.givenName, name.familyName, active, \
                         meta.created, meta.lastModified"
                    }
                    Resource::Groups => "id, externalId, displayName, meta.created, meta.lastModified",
                },
            };
            match single_column(resource, path).ok_or_else(unsortable)? {
                Column::Exact(c) | Column::Key(c) | Column::Bool(c) | Column::Millis(c) => c.to_owned(),
                Column::Folded(c) => format!("LOWER({c})"),
            }
        }
    };
    let collate = if backend == Backend::Postgres { " COLLATE \"C\"" } else { "" };
    let direction = if descending { "DESC" } else { "ASC" };
    let text_sort = !column.ends_with("_ms") && !column.ends_with("active");
    let collated = if text_sort { format!("{column}{collate}") } else { column.clone() };
    Ok(format!("({column} IS NULL) ASC, {collated} {direction}, {alias}.id ASC"))
}

/// The column of a single-valued attribute of `resource`, if it has one.
fn single_column(resource: Resource, path: &AttrPath) -> Option<Column> {
    match field(resource, path)? {
        Field::Single(column) => Some(column),
        Field::Multi(..) => None,
    }
}

fn field(resource: Resource, path: &AttrPath) -> Option<Field> {
    let resolved = resource.resource_type().resolve(path).ok()?;
    if let portcullis_scim::schema::Container::Extension(_) = resolved.container {
        return None;
    }
    let name = resolved.attribute.name.to_ascii_lowercase();
    let sub = resolved.sub_attribute.map(|s| s.name.to_ascii_lowercase());
    let single = |column| Some(Field::Single(column));
    match (resource, name.as_str(), sub.as_deref()) {
        (Resource::Users, "id", None) => single(Column::Exact("u.id")),
        (Resource::Users, "externalid", None) => single(Column::Exact("u.external_id")),
        (Resource::Users, "username", None) => single(Column::Key("u.user_name_key")),
        (Resource::Users, "displayname", None) => single(Column::Folded("u.display_name")),
        (Resource::Users, "name", Some("givenname")) => single(Column::Folded("u.given_name")),
        (Resource::Users, "name", Some("familyname")) => single(Column::Folded("u.family_name")),
        (Resource::Users, "active", None) => single(Column::Bool("u.active")),
        (Resource::Users, "meta", Some("created")) => single(Column::Millis("u.created_ms")),
        (Resource::Users, "meta", Some("lastmodified")) => single(Column::Millis("u.updated_ms")),
        (Resource::Users, "emails", sub) => {
            Child::Emails.column(sub.unwrap_or("value")).map(|c| Field::Multi(Child::Emails, c))
        }
        (Resource::Users, "groups", sub) => {
            Child::UserGroups.column(sub.unwrap_or("value")).map(|c| Field::Multi(Child::UserGroups, c))
        }
        (Resource::Groups, "id", None) => single(Column::Exact("g.id")),
        (Resource::Groups, "externalid", None) => single(Column::Exact("g.external_id")),
        (Resource::Groups, "displayname", None) => single(Column::Key("g.display_name_key")),
        (Resource::Groups, "meta", Some("created")) => single(Column::Millis("g.created_ms")),
        (Resource::Groups, "meta", Some("lastmodified")) => single(Column::Millis("g.updated_ms")),
        (Resource::Groups, "members", sub) => {
            Child::GroupMembers.column(sub.unwrap_or("value")).map(|c| Field::Multi(Child::GroupMembers, c))
        }
        _ => None,
    }
}

fn child_of(resource: Resource, attribute: &Attribute) -> Option<Child> {
    match (resource, attribute.name) {
        (Resource::Users, "emails") => Some(Child::Emails),
        (Resource::Users, "groups") => Some(Child::UserGroups),
        (Resource::Groups, "members") => Some(Child::GroupMembers),
        _ => None,
    }
}

struct Translator {
    resource: Resource,
    backend: Backend,
    binds: Vec<SqlValue>,
}

const FALSE: &str = "(1 = 0)";

impl Translator {
    fn bind(&mut self, value: SqlValue) -> String {
        self.binds.push(value);
        // $1 is the organization.
        format!("${}", self.binds.len() + 1)
    }

    fn unfilterable(&self, path: impl ToString) -> QueryError {
        QueryError::UnfilterableAttribute { path: path.to_string(), supported: self.resource.filterable() }
    }

    /// `within`: inside `attr[…]`, paths are sub-attributes of that child table.
    fn filter(&mut self, filter: &Filter, within: Option<Child>) -> Result<String, QueryError> {
        Ok(match filter {
            Filter::Present(path) => self.compare(path, None, within)?,
            Filter::Compare { path, op, value } => self.compare(path, Some((*op, value)), within)?,
            Filter::ValuePath { path, filter } => {
                let resolved =
                    self.resource.resource_type().resolve(path).map_err(|_| self.unfilterable(path))?;
                let child =
                    child_of(self.resource, resolved.attribute).ok_or_else(|| self.unfilterable(path))?;
                let inner = self.filter(filter, Some(child))?;
                child.wrap(&inner)
            }
            Filter::Not(inner) => format!("NOT ({})", self.filter(inner, within)?),
            Filter::And(operands) => self.join(operands, " AND ", within)?,
            Filter::Or(operands) => self.join(operands, " OR ", within)?,
        })
    }

    fn join(&mut self, operands: &[Filter], with: &str, within: Option<Child>) -> Result<String, QueryError> {
        let parts: Vec<String> = operands
            .iter()
            .map(|operand| self.filter(operand, within).map(|sql| format!("({sql})")))
            .collect::<Result<_, _>>()?;
        Ok(parts.join(with))
    }

    fn compare(
        &mut self,
        path: &AttrPath,
        comparison: Option<(CompareOp, &CompValue)>,
        within: Option<Child>,
    ) -> Result<String, QueryError> {
        let field = match within {
            Some(child) => {
                let column = if path.urn.is_none() && path.sub_attr.is_none() {
                    child.column(&path.name)
                } else {
                    None
                };
                Field::Single(column.ok_or_else(|| self.unfilterable(path))?)
            }
            None => field(self.resource, path).ok_or_else(|| self.unfilterable(path))?,
        };
        match field {
            Field::Single(column) => self.leaf(path, column, comparison),
            Field::Multi(child, column) => Ok(match comparison {
                // `ne` is the negation of `eq`, over all values (`portcullis_scim::eval`).
                Some((CompareOp::Ne, value)) if *value != CompValue::Null => {
                    let eq = self.leaf(path, column, Some((CompareOp::Eq, value)))?;
                    format!("NOT ({})", child.wrap(&eq))
                }
                Some((CompareOp::Eq, CompValue::Null)) => {
                    format!("NOT ({})", child.wrap(&self.leaf(path, column, None)?))
                }
                Some((CompareOp::Ne, CompValue::Null)) => child.wrap(&self.leaf(path, column, None)?),
                _ => child.wrap(&self.leaf(path, column, comparison)?),
            }),
        }
    }

    /// One comparison on one column, true or false (never NULL).
    fn leaf(
        &mut self,
        path: &AttrPath,
        column: Column,
        comparison: Option<(CompareOp, &CompValue)>,
    ) -> Result<String, QueryError> {
        let present = match column {
            Column::Exact(c) | Column::Key(c) | Column::Folded(c) => {
                format!("({c} IS NOT NULL AND {c} <> '')")
            }
            Column::Bool(c) | Column::Millis(c) => format!("({c} IS NOT NULL)"),
        };
        let Some((op, value)) = comparison else { return Ok(present) };
        match (op, value) {
            (CompareOp::Eq, CompValue::Null) => return Ok(format!("NOT {present}")),
            (CompareOp::Ne, CompValue::Null) => return Ok(present),
            (_, CompValue::Null) => return Ok(FALSE.to_owned()),
            _ => {}
        }
        if op == CompareOp::Ne {
            let eq = self.leaf(path, column, Some((CompareOp::Eq, value)))?;
            return Ok(format!("NOT ({eq})"));
        }
        match column {
            Column::Bool(c) => {
                let wanted = match value {
                    CompValue::Bool(b) => Some(*b),
                    CompValue::String(s) => parse_bool(s),
                    _ => None,
                };
                match (op, wanted) {
                    (CompareOp::Eq, Some(b)) => {
                        let p = self.bind(SqlValue::Bool(b));
                        Ok(format!("({c} IS NOT NULL AND {c} = {p})"))
                    }
                    (CompareOp::Eq, None) => Ok(FALSE.to_owned()),
                    _ => Err(QueryError::UnsupportedOperator { path: path.to_string(), op: op.as_str() }),
                }
            }
            Column::Millis(c) => {
                let CompValue::String(text) = value else {
                    return Err(QueryError::InvalidDateTime {
                        path: path.to_string(),
                        value: value.to_string(),
                    });
                };
                let (seconds, nanos) = parse_date_time(text).ok_or_else(|| QueryError::InvalidDateTime {
                    path: path.to_string(),
                    value: value.to_string(),
                })?;
                let millis = seconds.saturating_mul(1000).saturating_add(i64::from(nanos / 1_000_000));
                let sql_op = match op {
                    CompareOp::Eq => "=",
                    CompareOp::Gt => ">",
                    CompareOp::Ge => ">=",
                    CompareOp::Lt => "<",
                    CompareOp::Le => "<=",
                    _ => {
                        return Err(QueryError::UnsupportedOperator {
                            path: path.to_string(),
                            op: op.as_str(),
                        });
                    }
                };
                let p = self.bind(SqlValue::Int(millis));
                Ok(format!("({c} IS NOT NULL AND {c} {sql_op} {p})"))
            }
            Column::Exact(c) | Column::Key(c) | Column::Folded(c) => {
                let case_exact = matches!(column, Column::Exact(_));
                let text = match value {
                    CompValue::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let text = if case_exact { text } else { super::name_key(&text) };
                let expr = match column {
                    Column::Folded(c) => format!("LOWER({c})"),
                    _ => c.to_owned(),
                };
                let condition = if op.is_substring() {
                    let (prefix, suffix) = match op {
                        CompareOp::Co => (true, true),
                        CompareOp::Sw => (false, true),
                        _ => (true, false),
                    };
                    if case_exact && self.backend == Backend::Sqlite {
                        // SQLite's LIKE ignores ASCII case; GLOB does not.
                        let pattern = wrap(&glob_escape(&text), prefix, suffix, '*');
                        let p = self.bind(SqlValue::Text(pattern));
                        format!("{expr} GLOB {p}")
                    } else {
                        let pattern = wrap(&like_escape(&text), prefix, suffix, '%');
                        let p = self.bind(SqlValue::Text(pattern));
                        format!("{expr} LIKE {p} ESCAPE '\\'")
                    }
                } else {
                    let sql_op = match op {
                        CompareOp::Gt => ">",
                        CompareOp::Ge => ">=",
                        CompareOp::Lt => "<",
                        CompareOp::Le => "<=",
                        _ => "=",
                    };
                    let collate = if op.is_ordering() && self.backend == Backend::Postgres {
                        " COLLATE \"C\""
                    } else {
                        ""
                    };
                    let p = self.bind(SqlValue::Text(text));
                    format!("{expr}{collate} {sql_op} {p}")
                };
                Ok(format!("({c} IS NOT NULL AND {condition})"))
            }
        }
    }
}

fn wrap(text: &str, prefix: bool, suffix: bool, any: char) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    if prefix {
        pattern.push(any);
    }
    pattern.push_str(text);
    if suffix {
        pattern.push(any);
    }
    pattern
}

/// Escapes `%`, `_` and the escape character itself for `LIKE … ESCAPE '\'`.
pub(in crate::store) fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes GLOB's special characters by putting each in a one-character class.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_scim::filter::parse_for;
    use portcullis_scim::schema::{GROUP, USER};

    fn users(text: &str) -> SqlWhere {
        translate(&parse_for(text, &USER).expect("valid filter"), Resource::Users, Backend::Postgres)
            .expect("translates")
    }

    #[test]
    fn user_name_eq_uses_the_key_column_and_binds_the_folded_value() {
        let sql = users("USERNAME eq \"Ann@Acme.com\"");
        assert_eq!(sql.sql, "(u.user_name_key IS NOT NULL AND u.user_name_key = $2)");
        assert_eq!(sql.binds, vec![SqlValue::Text("ann@acme.com".into())]);
    }

    #[test]
    fn value_paths_become_subqueries_and_like_patterns_are_escaped() {
        let sql = users("emails[type eq \"work\" and value co \"50%_\"]");
        assert!(sql.sql.starts_with("u.id IN (SELECT e.user_id FROM user_emails e"), "{}", sql.sql);
        assert_eq!(sql.binds, vec![SqlValue::Text("work".into()), SqlValue::Text("%50\\%\\_%".into())]);
    }

    #[test]
    fn ne_on_a_multi_valued_attribute_is_the_negation_of_eq() {
        let sql = users("emails ne \"a@b.c\"");
        assert!(sql.sql.starts_with("NOT (u.id IN"), "{}", sql.sql);
    }

    #[test]
    fn case_exact_substring_on_sqlite_uses_glob() {
        let filter = parse_for("externalId sw \"A*\"", &USER).unwrap();
        let sql = translate(&filter, Resource::Users, Backend::Sqlite).unwrap();
        assert_eq!(sql.sql, "(u.external_id IS NOT NULL AND u.external_id GLOB $2)");
        assert_eq!(sql.binds, vec![SqlValue::Text("A[*]*".into())]);
    }

    #[test]
    fn attributes_without_a_column_are_refused_by_name() {
        let filter = parse_for("title eq \"CEO\"", &USER).unwrap();
        let err = translate(&filter, Resource::Users, Backend::Sqlite).unwrap_err();
        assert!(err.to_string().contains("\"title\""), "{err}");
        assert_eq!(err.scim_type(), ScimType::InvalidFilter);
    }

    #[test]
    fn dates_bind_milliseconds_and_bad_dates_are_invalid_filters() {
        let filter = parse_for("meta.lastModified gt \"2024-01-01T00:00:00Z\"", &GROUP).unwrap();
        let sql = translate(&filter, Resource::Groups, Backend::Sqlite).unwrap();
        assert_eq!(sql.binds, vec![SqlValue::Int(1_704_067_200_000)]);
        let filter = parse_for("meta.created gt \"yesterday\"", &GROUP).unwrap();
        assert!(translate(&filter, Resource::Groups, Backend::Sqlite).is_err());
    }

    #[test]
    fn sort_puts_absent_values_last_and_breaks_ties_by_id() {
        let path = portcullis_scim::filter::parse_attr_path("name.familyName").unwrap();
        let order = order_by(Some(&path), true, Resource::Users, Backend::Sqlite).unwrap();
        assert_eq!(order, "(LOWER(u.family_name) IS NULL) ASC, LOWER(u.family_name) DESC, u.id ASC");
        let emails = portcullis_scim::filter::parse_attr_path("emails").unwrap();
        assert!(order_by(Some(&emails), false, Resource::Users, Backend::Sqlite).is_err());
    }
}
