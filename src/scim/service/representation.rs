//! Users and Groups as SCIM JSON (RFC 7643 §4.1, §4.2, §3.1 `meta`), and
//! back: what a POST or PUT body (or a patched resource) sets.
//!
//! A user's columns (userName, name.givenName/familyName, displayName,
//! externalId, active, emails' value, type and primary) are the truth for
//! those attributes; every other attribute of the schema (title,
//! phoneNumbers, the enterprise extension, …) and sub-attribute (an email's
//! `display`) is kept as JSON in `users.scim_json` and returned as sent. A
//! `password` is never kept here nor returned (RFC 7643 §4.1.1: writeOnly,
//! returned never): [`UserFields::password`] hands it over for hashing.

use portcullis_scim::ScimType;
use portcullis_scim::eval::parse_bool;
use portcullis_scim::json::get_ci;
use portcullis_scim::schema::{
    Attribute, AttributeType, ENTERPRISE_USER_SCHEMA, GROUP, GROUP_SCHEMA, USER, USER_SCHEMA,
};
use serde_json::{Map, Value, json};

use super::error::ScimError;
use crate::secret::SecretString;
use crate::store::identity::Member;
use crate::store::scim::ScimUser;
use crate::store::{Email, Group};

fn timestamp(ms: i64) -> Value {
    jiff::Timestamp::from_millisecond(ms).map(|t| Value::String(t.to_string())).unwrap_or(Value::Null)
}

fn meta(resource_type: &str, created_ms: i64, updated_ms: i64, version: i64, location: &str) -> Value {
    json!({
        "resourceType": resource_type,
        "created": timestamp(created_ms),
        "lastModified": timestamp(updated_ms),
        "version": super::etag(version),
        "location": location,
    })
}

/// Attributes the columns own: never taken from `scim_json`.
const USER_COLUMN_ATTRIBUTES: [&str; 10] = [
    "schemas",
    "id",
    "externalId",
    "userName",
    "displayName",
    "active",
    "emails",
    "groups",
    "meta",
    "password",
];

/// A User resource. `groups`: (group id, display name) of its memberships.
pub fn user_json(scim_user: &ScimUser, groups: Option<&[(String, String)]>, base_url: &str) -> Value {
    let user = &scim_user.user;
    let mut out = scim_user.extra.clone().unwrap_or_default();
    // Written in canonical spelling by `user_fields` and `users::patch`.
    let email_extras = out.remove("emails");
    let active_unassigned = out.get("active").is_some_and(Value::is_null);
    out.retain(|key, _| !USER_COLUMN_ATTRIBUTES.iter().any(|owned| owned.eq_ignore_ascii_case(key)));
    let mut schemas = vec![Value::from(USER_SCHEMA)];
    if out.contains_key(ENTERPRISE_USER_SCHEMA) {
        schemas.push(ENTERPRISE_USER_SCHEMA.into());
    }
    out.insert("schemas".into(), schemas.into());
    out.insert("id".into(), user.id.clone().into());
    if let Some(external_id) = &user.external_id {
        out.insert("externalId".into(), external_id.clone().into());
    }
    out.insert("userName".into(), user.user_name.clone().into());
    let mut name = match out.remove("name") {
        Some(Value::Object(name)) => name,
        _ => Map::new(),
    };
    name.remove("givenName");
    name.remove("familyName");
    if let Some(given) = &user.given_name {
        name.insert("givenName".into(), given.clone().into());
    }
    if let Some(family) = &user.family_name {
        name.insert("familyName".into(), family.clone().into());
    }
    if !name.is_empty() {
        out.insert("name".into(), Value::Object(name));
    }
    if let Some(display_name) = &user.display_name {
        out.insert("displayName".into(), display_name.clone().into());
    }
    if !active_unassigned {
        out.insert("active".into(), user.active.into());
    }
    if !user.emails.is_empty() {
        let emails: Vec<Value> = user
            .emails
            .iter()
            .map(|email| {
                let mut value = match email_extra(email_extras.as_ref(), email) {
                    Some(extra) => extra.clone(),
                    None => Map::new(),
                };
                value.insert("value".into(), email.value.clone().into());
                value.insert("primary".into(), email.primary.into());
                if let Some(kind) = &email.kind {
                    value.insert("type".into(), kind.clone().into());
                }
                Value::Object(value)
            })
            .collect();
        out.insert("emails".into(), emails.into());
    }
    if let Some(groups) = groups {
        let groups: Vec<Value> = groups
            .iter()
            .map(|(id, display)| {
                json!({"value": id, "display": display, "$ref": format!("{base_url}/Groups/{id}"), "type": "direct"})
            })
            .collect();
        out.insert("groups".into(), groups.into());
    }
    let location = format!("{base_url}/Users/{}", user.id);
    out.insert("meta".into(), meta("User", user.created_ms, user.updated_ms, user.version, &location));
    Value::Object(out)
}

/// The sub-attributes without a column (`display`) kept for `email`: the
/// entry of `scim_json`'s `emails` with its value and type.
fn email_extra<'a>(extras: Option<&'a Value>, email: &Email) -> Option<&'a Map<String, Value>> {
    extras?.as_array()?.iter().filter_map(Value::as_object).find_map(|extra| {
        let value = extra.get("value").and_then(Value::as_str)?;
        let kind = extra.get("type").and_then(Value::as_str);
        (value.eq_ignore_ascii_case(&email.value) && kind == email.kind.as_deref()).then_some(extra)
    })
}

/// A Group resource; `members` when they were read.
pub fn group_json(group: &Group, members: Option<&[Member]>, base_url: &str) -> Value {
    let mut out = json!({
        "schemas": [GROUP_SCHEMA],
        "id": group.id,
        "displayName": group.display_name,
    });
    if let Some(external_id) = &group.external_id {
        out["externalId"] = external_id.clone().into();
    }
    if let Some(members) = members {
        out["members"] = members
            .iter()
            .map(|m| {
                json!({
                    "value": m.user_id, "display": m.display.as_deref().unwrap_or(&m.user_name),
                    "$ref": format!("{base_url}/Users/{}", m.user_id), "type": "User",
                })
            })
            .collect::<Vec<_>>()
            .into();
    }
    let location = format!("{base_url}/Groups/{}", group.id);
    out["meta"] = meta("Group", group.created_ms, group.updated_ms, group.version, &location);
    out
}

/// What a User body sets.
#[derive(Debug, Clone, PartialEq)]
pub struct UserFields {
    pub user_name: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub external_id: Option<String>,
    pub emails: Vec<Email>,
    pub active: bool,
    /// Everything else, in canonical spelling, for `users.scim_json`.
    pub extra: Map<String, Value>,
    /// A `password` sent along, in clear: to hash or drop, never to keep.
    pub password: Option<SecretString>,
    /// The body has no `active` (or `null`): a new user is active, and a
    /// PATCH that removed it leaves it unassigned ([`ACTIVE_UNASSIGNED`]).
    pub active_absent: bool,
}

/// `scim_json`'s mark of a user whose `active` a PATCH removed (RFC 7644
/// §3.5.2.2: unassigned): the user's status (the column) stays as it was, and
/// `active` is not returned until it is set again.
pub const ACTIVE_UNASSIGNED: (&str, Value) = ("active", Value::Null);

fn invalid(detail: String) -> ScimError {
    ScimError::invalid(ScimType::InvalidValue, detail)
}

fn declares(body: &Map<String, Value>, urn: &str) -> Result<(), ScimError> {
    let declared = get_ci(body, "schemas").and_then(Value::as_array).is_some_and(|schemas| {
        schemas.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)))
    });
    if declared {
        Ok(())
    } else {
        Err(ScimError::invalid(ScimType::InvalidSyntax, format!("\"schemas\" must contain {urn:?}")))
    }
}

fn optional_string(name: &str, value: &Value) -> Result<Option<String>, ScimError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(invalid(format!("{name} must be a string"))),
    }
}

fn boolean(name: &str, value: &Value) -> Result<bool, ScimError> {
    match value {
        Value::Bool(b) => Ok(*b),
        // Clients send "True"/"False" (RFC 7643 §2.3.2 says JSON booleans).
        Value::String(s) => {
            parse_bool(s).ok_or_else(|| invalid(format!("{name} must be true or false, not {s:?}")))
        }
        _ => Err(invalid(format!("{name} must be true or false"))),
    }
}

/// Loosely checks a value against its attribute's type (RFC 7643 §2.3).
fn check_type(path: &str, attribute: &'static Attribute, value: &Value) -> Result<(), ScimError> {
    if value.is_null() {
        return Ok(());
    }
    if attribute.multi_valued {
        let Value::Array(items) = value else { return Err(invalid(format!("{path} must be an array"))) };
        return items.iter().try_for_each(|item| check_single(path, attribute, item));
    }
    check_single(path, attribute, value)
}

fn check_single(path: &str, attribute: &'static Attribute, value: &Value) -> Result<(), ScimError> {
    let ok = match attribute.kind {
        AttributeType::Complex => {
            let Value::Object(object) = value else {
                return Err(invalid(format!("{path} must be an object")));
            };
            for (key, sub_value) in object {
                let sub = attribute
                    .sub_attribute(key)
                    .ok_or_else(|| invalid(format!("{path} has no sub-attribute {key:?}")))?;
                check_single(&format!("{path}.{}", sub.name), sub, sub_value)?;
            }
            true
        }
        AttributeType::Boolean => value.is_boolean() || value.as_str().and_then(parse_bool).is_some(),
        AttributeType::Integer | AttributeType::Decimal => value.is_number(),
        _ => value.is_string() || value.is_null(),
    };
    if ok { Ok(()) } else { Err(invalid(format!("{path} must be of type {}", attribute.kind.as_str()))) }
}

/// Reads a User body (POST, PUT, or a patched resource). Read-only
/// attributes (`id`, `meta`, `groups`) are ignored (RFC 7644 §3.5.1);
/// unknown attributes are refused.
pub fn user_fields(body: &Value) -> Result<UserFields, ScimError> {
    let body = body
        .as_object()
        .ok_or_else(|| ScimError::invalid(ScimType::InvalidSyntax, "a User is a JSON object"))?;
    declares(body, USER_SCHEMA)?;
    let mut fields = UserFields {
        user_name: String::new(),
        display_name: None,
        given_name: None,
        family_name: None,
        external_id: None,
        emails: Vec::new(),
        active: true,
        extra: Map::new(),
        password: None,
        active_absent: true,
    };
    for (key, value) in body {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(schema) = USER.extension(key) {
            let Value::Object(object) = value else {
                return Err(invalid(format!("{} must be an object", schema.id)));
            };
            let mut extension = Map::new();
            for (name, sub_value) in object {
                if name.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                let attribute = schema
                    .attribute(name)
                    .ok_or_else(|| invalid(format!("unknown attribute {name:?} of {}", schema.id)))?;
                check_type(attribute.name, attribute, sub_value)?;
                if !sub_value.is_null() {
                    extension.insert(attribute.name.to_owned(), sub_value.clone());
                }
            }
            if !extension.is_empty() {
                fields.extra.insert(schema.id.to_owned(), Value::Object(extension));
            }
            continue;
        }
        let (_, attribute) =
            USER.top_level(None, key).ok_or_else(|| invalid(format!("unknown attribute {key:?} of User")))?;
        match attribute.name {
            "id" | "meta" | "groups" => {}
            "password" => match value {
                Value::Null => {}
                Value::String(password) => fields.password = Some(SecretString::new(password.clone())),
                // Never echo what was sent: it may be a password.
                _ => return Err(invalid("password must be a string".to_owned())),
            },
            "userName" => fields.user_name = optional_string("userName", value)?.unwrap_or_default(),
            "displayName" => fields.display_name = optional_string("displayName", value)?,
            "externalId" => fields.external_id = optional_string("externalId", value)?,
            "active" => {
                fields.active = value.is_null() || boolean("active", value)?;
                fields.active_absent = value.is_null();
            }
            "name" => {
                check_type("name", attribute, value)?;
                let mut rest = Map::new();
                for (sub, sub_value) in value.as_object().into_iter().flatten() {
                    match attribute.sub_attribute(sub).map(|s| s.name) {
                        Some("givenName") => {
                            fields.given_name = optional_string("name.givenName", sub_value)?
                        }
                        Some("familyName") => {
                            fields.family_name = optional_string("name.familyName", sub_value)?
                        }
                        Some(other) if !sub_value.is_null() => {
                            rest.insert(other.to_owned(), sub_value.clone());
                        }
                        _ => {}
                    }
                }
                if !rest.is_empty() {
                    fields.extra.insert("name".into(), Value::Object(rest));
                }
            }
            "emails" => {
                check_type("emails", attribute, value)?;
                fields.emails = emails(value)?;
                let kept = email_sub_attributes(attribute, value);
                if !kept.is_empty() {
                    fields.extra.insert("emails".into(), kept.into());
                }
            }
            name => {
                check_type(name, attribute, value)?;
                if !value.is_null() {
                    fields.extra.insert(name.to_owned(), value.clone());
                }
            }
        }
    }
    if fields.user_name.trim().is_empty() {
        return Err(invalid("userName is required (RFC 7643 §4.1.1)".to_owned()));
    }
    Ok(fields)
}

/// Of each email that has sub-attributes without a column (`display`): those,
/// with its `value` and `type` to find it again ([`email_extra`]).
fn email_sub_attributes(attribute: &'static Attribute, value: &Value) -> Vec<Value> {
    let mut kept = Vec::new();
    for item in value.as_array().into_iter().flatten().filter_map(Value::as_object) {
        let mut extra = Map::new();
        for (key, sub_value) in item {
            let Some(sub) = attribute.sub_attribute(key) else { continue };
            if !matches!(sub.name, "value" | "type" | "primary") && !sub_value.is_null() {
                extra.insert(sub.name.to_owned(), sub_value.clone());
            }
        }
        if extra.is_empty() {
            continue;
        }
        for key in ["value", "type"] {
            if let Some(Value::String(text)) = get_ci(item, key) {
                extra.insert(key.to_owned(), text.clone().into());
            }
        }
        kept.push(Value::Object(extra));
    }
    kept
}

fn emails(value: &Value) -> Result<Vec<Email>, ScimError> {
    let mut emails = Vec::new();
    for item in value.as_array().into_iter().flatten() {
        let Some(item) = item.as_object() else { return Err(invalid("emails must hold objects".into())) };
        let address = get_ci(item, "value")
            .and_then(Value::as_str)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| invalid("every email needs a value".into()))?;
        let kind = match get_ci(item, "type") {
            Some(value) => optional_string("emails.type", value)?,
            None => None,
        };
        let primary = match get_ci(item, "primary") {
            Some(Value::Null) | None => false,
            Some(value) => boolean("emails.primary", value)?,
        };
        emails.push(Email { value: address.to_owned(), kind, primary });
    }
    if emails.iter().filter(|e| e.primary).count() > 1 {
        return Err(invalid("at most one email may be primary (RFC 7643 §2.4)".into()));
    }
    Ok(emails)
}

/// What a Group body sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFields {
    pub display_name: String,
    pub external_id: Option<String>,
    /// Member user ids, when `members` was sent.
    pub members: Option<Vec<String>>,
    /// (user id, display) of the members sent with a `display`.
    pub member_displays: Vec<(String, String)>,
}

/// Reads a Group body (POST, PUT, or a patched resource).
pub fn group_fields(body: &Value) -> Result<GroupFields, ScimError> {
    let body = body
        .as_object()
        .ok_or_else(|| ScimError::invalid(ScimType::InvalidSyntax, "a Group is a JSON object"))?;
    declares(body, GROUP_SCHEMA)?;
    let mut fields = GroupFields {
        display_name: String::new(),
        external_id: None,
        members: None,
        member_displays: Vec::new(),
    };
    for (key, value) in body {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let (_, attribute) = GROUP
            .top_level(None, key)
            .ok_or_else(|| invalid(format!("unknown attribute {key:?} of Group")))?;
        match attribute.name {
            "id" | "meta" => {}
            "displayName" => fields.display_name = optional_string("displayName", value)?.unwrap_or_default(),
            "externalId" => fields.external_id = optional_string("externalId", value)?,
            "members" => {
                check_type("members", attribute, value)?;
                let mut members = Vec::new();
                for member in value.as_array().into_iter().flatten() {
                    let id = member
                        .as_object()
                        .and_then(|m| get_ci(m, "value"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid("every member needs a value (the user's id)".into()))?;
                    members.push(id.to_owned());
                    let display =
                        member.as_object().and_then(|m| get_ci(m, "display")).and_then(Value::as_str);
                    if let Some(display) = display {
                        fields.member_displays.push((id.to_owned(), display.to_owned()));
                    }
                }
                fields.members = Some(members);
            }
            other => return Err(invalid(format!("{other} cannot be set on a Group"))),
        }
    }
    if fields.display_name.trim().is_empty() {
        return Err(invalid("displayName is required (RFC 7643 §4.2)".to_owned()));
    }
    Ok(fields)
}
