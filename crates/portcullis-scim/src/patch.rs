//! Applying a PatchOp request (RFC 7644 §3.5.2) to a User or Group held as
//! SCIM JSON, the way Okta and Entra ID send it. All operations apply, to a
//! copy, or none do: [`apply`] returns the new resource or the first error.
//!
//! ```text
//!  body ──PatchRequest::from_json──► [PatchOperation { op, path: PatchPath?, value? }]
//!                                              │ path.resolve(resource type)
//!                                              ▼
//!   Extension(urn) │ Attribute(attr[.sub]) │ Values(attr[filter][.sub])
//!                                              │ coerce value by schema type,
//!                                              │ check mutability, primary
//!                                              ▼
//!  PatchOutcome { resource, changed, membership: +added −removed, password }
//! ```
//!
//! Decisions where the RFC or the clients leave room:
//! - `op` is matched in any case (`Add`, `replace`, `REMOVE`); attribute
//!   names in paths and value objects too, stored in their canonical spelling.
//! - `add`/`replace` without a path take an object whose keys are paths
//!   themselves: `name.givenName` and `urn:…:User:department` (Entra ID), or an
//!   extension URN keyed to an object of its attributes. `schemas` there, or
//!   in the object of a path naming an extension URN, is ignored: the server
//!   keeps `schemas` in step with the extensions present.
//! - Booleans sent as strings (`"False"`, `"true"`, any case) are booleans;
//!   a bare string for a complex attribute with a `value` sub-attribute means
//!   `{"value": …}` (Entra ID sends `manager` that way).
//! - `null` as a value unassigns (RFC 7643 §2.5): `replace` with `null`
//!   removes, `add` with `null` changes nothing.
//! - Values of a multi-valued complex attribute are the same value when their
//!   `value` sub-attributes are equal (by its `caseExact`): `add` merges into
//!   the existing value instead of duplicating it, so re-adding a member is not
//!   an error.
//! - `remove` of a multi-valued attribute with a `value` array removes only the
//!   listed values (Entra ID's member removal); of a single-valued attribute
//!   with a value, removes it only if it still holds that value.
//! - `remove` whose filter matches nothing, or of an attribute with no value,
//!   succeeds and changes nothing: removal is idempotent, and clients retry.
//!   RFC 7644 §3.5.2.2 lists no error for it (`noTarget` there is only for a
//!   missing path).
//! - `add`/`replace` whose value filter matches nothing creates the value when
//!   the filter is `eq` comparisons joined by `and` (`emails[type eq
//!   "work"].value` on a user with no work email, as Entra ID sends it);
//!   otherwise `noTarget` (RFC 7644 §3.5.2.3).
//! - Setting `primary: true` on a value clears it on the others (RFC 7643
//!   §2.4); two new primaries in one operation are `invalidValue`.
//! - `readOnly` attributes (`id`, `meta`, `groups`) may be sent with their
//!   current value (Okta sends `id` when it renames a group); any other value
//!   is `mutability`, as is changing a set `immutable` sub-attribute or
//!   removing a required attribute.
//! - Unknown attributes are refused (`invalidPath`), never dropped silently.
//! - A `password` is taken out of the resource and handed back separately
//!   ([`PatchOutcome::password`]) for hashing; it is never kept in the JSON.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::ScimType;
use crate::eval::{matches_value, parse_bool, parse_date_time};
use crate::filter::{CompareOp, Filter};
use crate::json::{get_ci, get_ci_mut, is_present, object_ci, remove_ci, set_ci};
use crate::path::{self, PatchPath, PathError, PathTarget};
use crate::schema::{Attribute, AttributeType, Container, Mutability, ResourceType, Schema};

/// `schemas` URI of a PatchOp request (RFC 7644 §3.5.2).
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The three PATCH operations (RFC 7644 §3.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

impl OpKind {
    /// The operation for an `op` value in any case.
    pub fn from_name(name: &str) -> Option<OpKind> {
        [OpKind::Add, OpKind::Remove, OpKind::Replace]
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(name))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::Remove => "remove",
            OpKind::Replace => "replace",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One element of `Operations`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    /// `None` when absent; `Some(Value::Null)` when sent as `null`.
    pub value: Option<Value>,
}

/// A PatchOp request body.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    pub operations: Vec<PatchOperation>,
}

/// A new cleartext password sent in a PATCH; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(String);

impl NewPassword {
    /// The cleartext, to be hashed and dropped.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

/// Members (by `value`) that a Group PATCH added and removed, for single-row
/// updates of the membership table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl MembershipChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// The result of a PATCH that applied.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOutcome {
    /// The patched resource (a JSON object), without any password.
    pub resource: Value,
    /// Whether `resource` differs from the input (a password alone does not count).
    pub changed: bool,
    /// For Groups: members added and removed. Empty for Users.
    pub membership: MembershipChanges,
    /// A password the PATCH set, if any.
    pub password: Option<NewPassword>,
}

/// Why a PATCH was refused. `index` is the 0-based position in `Operations`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    #[error("invalid PatchOp request: {detail}")]
    InvalidRequest { detail: String },
    #[error("Operations[{index}]: {error}")]
    Path { index: usize, error: PathError },
    #[error("Operations[{index}] ({op} {target}): {detail}")]
    InvalidPath { index: usize, op: OpKind, target: String, detail: String },
    #[error("Operations[{index}] ({op} {target}): {detail}")]
    NoTarget { index: usize, op: OpKind, target: String, detail: String },
    #[error("Operations[{index}] ({op} {target}): {detail}")]
    InvalidValue { index: usize, op: OpKind, target: String, detail: String },
    #[error("Operations[{index}] ({op} {target}): {detail}")]
    Mutability { index: usize, op: OpKind, target: String, detail: String },
}

impl PatchError {
    pub fn scim_type(&self) -> ScimType {
        match self {
            PatchError::InvalidRequest { .. } => ScimType::InvalidSyntax,
            PatchError::Path { error, .. } => error.scim_type(),
            PatchError::InvalidPath { .. } => ScimType::InvalidPath,
            PatchError::NoTarget { .. } => ScimType::NoTarget,
            PatchError::InvalidValue { .. } => ScimType::InvalidValue,
            PatchError::Mutability { .. } => ScimType::Mutability,
        }
    }
}

impl PatchRequest {
    /// Reads a PatchOp body: `schemas` must list [`PATCH_OP_SCHEMA`],
    /// `Operations` must hold at least one operation; member names in any
    /// case. Paths are parsed here, so a bad path fails before anything applies.
    pub fn from_json(body: &Value) -> Result<PatchRequest, PatchError> {
        let invalid = |detail: String| PatchError::InvalidRequest { detail };
        let body = body.as_object().ok_or_else(|| invalid("the body must be a JSON object".into()))?;
        let declares_patch_op = get_ci(body, "schemas").and_then(Value::as_array).is_some_and(|schemas| {
            schemas.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP_SCHEMA)))
        });
        if !declares_patch_op {
            return Err(invalid(format!("\"schemas\" must contain {PATCH_OP_SCHEMA:?}")));
        }
        let operations = match get_ci(body, "Operations") {
            Some(Value::Array(operations)) if !operations.is_empty() => operations,
            _ => return Err(invalid("\"Operations\" must be a non-empty array".into())),
        };
        let mut parsed = Vec::with_capacity(operations.len());
        for (index, operation) in operations.iter().enumerate() {
            let operation = operation
                .as_object()
                .ok_or_else(|| invalid(format!("Operations[{index}] must be an object")))?;
            let op = match get_ci(operation, "op") {
                Some(Value::String(name)) => OpKind::from_name(name).ok_or_else(|| {
                    invalid(format!("Operations[{index}].op {name:?} is not add, remove or replace"))
                })?,
                _ => return Err(invalid(format!("Operations[{index}].op must be add, remove or replace"))),
            };
            let path = match get_ci(operation, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) => {
                    Some(path::parse(text).map_err(|error| PatchError::Path { index, error })?)
                }
                Some(_) => return Err(invalid(format!("Operations[{index}].path must be a string"))),
            };
            let value = get_ci(operation, "value").cloned();
            parsed.push(PatchOperation { op, path, value });
        }
        Ok(PatchRequest { operations: parsed })
    }
}

/// Applies `request` to `resource` (a `resource_type` resource as stored),
/// all operations or none.
pub fn apply(
    resource: &Map<String, Value>,
    resource_type: &ResourceType,
    request: &PatchRequest,
) -> Result<PatchOutcome, PatchError> {
    let mut root = resource.clone();
    for (index, operation) in request.operations.iter().enumerate() {
        let target = operation.path.as_ref().map_or_else(|| "(no path)".to_owned(), ToString::to_string);
        let op = Op { index, kind: operation.op, target, resource_type };
        match &operation.path {
            None if operation.op == OpKind::Remove => {
                return Err(op.no_target("remove needs a path (RFC 7644 §3.5.2.2)"));
            }
            None => op.apply_without_path(&mut root, operation.value.as_ref())?,
            Some(path) => {
                let target = path.resolve(resource_type).map_err(|error| op.path(error))?;
                op.apply_to(&mut root, target, operation.value.as_ref())?;
            }
        }
    }
    sync_schemas(&mut root, resource_type);
    let password = match remove_ci(&mut root, "password") {
        Some(Value::String(new))
            if get_ci(resource, "password").and_then(Value::as_str) != Some(new.as_str()) =>
        {
            Some(NewPassword(new))
        }
        _ => None,
    };
    let changed = if get_ci(resource, "password").is_some() {
        let mut before = resource.clone();
        remove_ci(&mut before, "password");
        before != root
    } else {
        *resource != root
    };
    let membership = match resource_type.schema.attribute("members") {
        Some(members) => membership_changes(members, resource, &root),
        None => MembershipChanges::default(),
    };
    Ok(PatchOutcome { resource: Value::Object(root), changed, membership, password })
}

/// One operation being applied: its position and target, for errors.
struct Op<'r> {
    index: usize,
    kind: OpKind,
    target: String,
    resource_type: &'r ResourceType,
}

impl Op<'_> {
    fn with_target(&self, target: String) -> Self {
        Op { index: self.index, kind: self.kind, target, resource_type: self.resource_type }
    }

    fn path(&self, error: PathError) -> PatchError {
        PatchError::Path { index: self.index, error }
    }

    fn invalid_path(&self, detail: impl Into<String>) -> PatchError {
        PatchError::InvalidPath {
            index: self.index,
            op: self.kind,
            target: self.target.clone(),
            detail: detail.into(),
        }
    }

    fn no_target(&self, detail: impl Into<String>) -> PatchError {
        PatchError::NoTarget {
            index: self.index,
            op: self.kind,
            target: self.target.clone(),
            detail: detail.into(),
        }
    }

    fn invalid_value(&self, detail: impl Into<String>) -> PatchError {
        PatchError::InvalidValue {
            index: self.index,
            op: self.kind,
            target: self.target.clone(),
            detail: detail.into(),
        }
    }

    fn mutability(&self, detail: impl Into<String>) -> PatchError {
        PatchError::Mutability {
            index: self.index,
            op: self.kind,
            target: self.target.clone(),
            detail: detail.into(),
        }
    }

    /// `add`/`replace` with no path: each key of the value object is a path
    /// (RFC 7644 §3.5.2.1, §3.5.2.3).
    fn apply_without_path(
        &self,
        root: &mut Map<String, Value>,
        value: Option<&Value>,
    ) -> Result<(), PatchError> {
        let Some(Value::Object(attributes)) = value else {
            return Err(self.invalid_value("without a path, the value must be an object of attributes"));
        };
        for (key, value) in attributes {
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            let op = self.with_target(key.clone());
            if key.eq_ignore_ascii_case(self.resource_type.schema.id) {
                op.apply_without_path(root, Some(value))?;
                continue;
            }
            let path = path::parse(key).map_err(|error| op.path(error))?;
            let target = path.resolve(self.resource_type).map_err(|error| op.path(error))?;
            op.apply_to(root, target, Some(value))?;
        }
        Ok(())
    }

    fn apply_to(
        &self,
        root: &mut Map<String, Value>,
        target: PathTarget<'_>,
        value: Option<&Value>,
    ) -> Result<(), PatchError> {
        match target {
            PathTarget::Extension(schema) => self.apply_to_extension(root, schema, value),
            PathTarget::Attribute(resolved) => {
                let attribute = resolved.attribute;
                let Some(container) = container(root, resolved.container, self.kind != OpKind::Remove) else {
                    return Ok(());
                };
                let result = match (resolved.sub_attribute, self.kind) {
                    (Some(_), _) if attribute.multi_valued => Err(self.invalid_path(format!(
                        "a sub-attribute of the multi-valued {0} needs a value filter, e.g. {0}[type eq \"work\"].value",
                        attribute.name
                    ))),
                    (None, OpKind::Remove) => self.remove_attribute(container, attribute, value),
                    (None, _) => self.set_attribute(container, attribute, value),
                    (Some(sub), OpKind::Remove) => self.remove_sub_attribute(container, attribute, sub, value),
                    (Some(sub), _) => self.set_sub_attribute(container, attribute, sub, value),
                };
                drop_empty_extension(root, resolved.container);
                result
            }
            PathTarget::Values { attribute, filter, sub_attribute } => {
                let Some(container) = container(root, attribute.container, self.kind != OpKind::Remove)
                else {
                    return Ok(());
                };
                let result =
                    self.apply_to_values(container, attribute.attribute, filter, sub_attribute, value);
                drop_empty_extension(root, attribute.container);
                result
            }
        }
    }

    /// A path naming an extension URN: its object as a whole.
    fn apply_to_extension(
        &self,
        root: &mut Map<String, Value>,
        schema: &'static Schema,
        value: Option<&Value>,
    ) -> Result<(), PatchError> {
        match (self.kind, value) {
            (OpKind::Remove, _) | (OpKind::Replace, Some(Value::Null)) => {
                if let Some(required) = schema.attributes.iter().find(|a| a.required) {
                    return Err(self.mutability(format!("{} is required", required.name)));
                }
                remove_ci(root, schema.id);
                Ok(())
            }
            (OpKind::Add, Some(Value::Null)) => Ok(()),
            (_, Some(Value::Object(attributes))) => {
                for (key, value) in attributes {
                    // The extension object as a client serialises it may carry
                    // `schemas`; the server keeps `schemas` itself (see above).
                    if key.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    let op = self.with_target(format!("{}:{key}", schema.id));
                    let mut path = path::parse(key).map_err(|error| op.path(error))?;
                    let attr_path = match &mut path {
                        PatchPath::Attribute(p) | PatchPath::ValuePath { path: p, .. } => p,
                    };
                    if attr_path.urn.is_none() {
                        attr_path.urn = Some(schema.id.to_owned());
                    }
                    let target = path.resolve(self.resource_type).map_err(|error| op.path(error))?;
                    op.apply_to(root, target, Some(value))?;
                }
                Ok(())
            }
            (_, None) => Err(self.invalid_value("add and replace need a value")),
            (_, Some(_)) => Err(self.invalid_value("an extension's value is an object of its attributes")),
        }
    }

    /// `add`/`replace` of a whole attribute (RFC 7644 §3.5.2.1, §3.5.2.3).
    fn set_attribute(
        &self,
        container: &mut Map<String, Value>,
        attribute: &'static Attribute,
        value: Option<&Value>,
    ) -> Result<(), PatchError> {
        let value = value.ok_or_else(|| self.invalid_value("add and replace need a value"))?;
        if value.is_null() {
            return match self.kind {
                OpKind::Add => Ok(()),
                _ => self.unassign(container, attribute),
            };
        }
        if attribute.multi_valued {
            return self.set_multi_valued(container, attribute, value);
        }
        if attribute.is_complex() {
            // Sub-attributes not given are left as they are, for add and replace alike.
            let incoming = coerce_complex(attribute, value).map_err(|d| self.invalid_value(d))?;
            for (name, value) in incoming {
                let Some(sub) = attribute.sub_attribute(&name) else { continue };
                self.set_sub_attribute(container, attribute, sub, Some(&value))?;
            }
            return Ok(());
        }
        let new = coerce(attribute, value).map_err(|d| self.invalid_value(d))?;
        if attribute.required && new.as_str() == Some("") {
            return Err(self.invalid_value(format!("{} is required and cannot be empty", attribute.name)));
        }
        if self.writable(attribute, None, get_ci(container, attribute.name), &new)? {
            set_ci(container, attribute.name, new);
        }
        Ok(())
    }

    /// `add`/`replace` of `attr.sub` on a single-valued complex attribute.
    fn set_sub_attribute(
        &self,
        container: &mut Map<String, Value>,
        attribute: &'static Attribute,
        sub: &'static Attribute,
        value: Option<&Value>,
    ) -> Result<(), PatchError> {
        let value = value.ok_or_else(|| self.invalid_value("add and replace need a value"))?;
        if value.is_null() {
            return match self.kind {
                OpKind::Add => Ok(()),
                _ => self.remove_sub_attribute(container, attribute, sub, None),
            };
        }
        let new = coerce(sub, value).map_err(|d| self.invalid_value(d))?;
        let current =
            get_ci(container, attribute.name).and_then(Value::as_object).and_then(|o| get_ci(o, sub.name));
        if self.writable(sub, Some(attribute), current, &new)? {
            set_ci(object_ci(container, attribute.name), sub.name, new);
        }
        Ok(())
    }

    /// `add` appends (merging values already there), `replace` replaces all
    /// values (RFC 7644 §3.5.2.1, §3.5.2.3).
    fn set_multi_valued(
        &self,
        container: &mut Map<String, Value>,
        attribute: &'static Attribute,
        value: &Value,
    ) -> Result<(), PatchError> {
        let incoming = self.coerce_elements(attribute, value)?;
        if attribute.mutability == Mutability::ReadOnly {
            let current = elements(get_ci(container, attribute.name));
            let unchanged = match self.kind {
                OpKind::Add => incoming.iter().all(|new| current.iter().any(|old| same(attribute, old, new))),
                _ => {
                    current.len() == incoming.len()
                        && current.iter().zip(&incoming).all(|(a, b)| same(attribute, a, b))
                }
            };
            return if unchanged {
                Ok(())
            } else {
                Err(self.mutability(format!("{} is readOnly", attribute.name)))
            };
        }
        with_values(container, attribute, |values| {
            if self.kind == OpKind::Replace {
                values.clear();
            }
            let mut index = ValueIndex::new(attribute, values);
            let mut touched = Vec::with_capacity(incoming.len());
            for element in incoming {
                match index.find(attribute, values, &element) {
                    Some(at) => {
                        self.merge_element(attribute, &mut values[at], element)?;
                        touched.push(at);
                    }
                    None => {
                        self.check_new_element(attribute, &element)?;
                        index.insert(attribute, &element, values.len());
                        values.push(element);
                        touched.push(values.len() - 1);
                    }
                }
            }
            self.enforce_single_primary(attribute, values, &touched)
        })
    }

    /// `remove` of a whole attribute, or of listed values of a multi-valued
    /// one (RFC 7644 §3.5.2.2; Entra ID lists members to remove in `value`).
    fn remove_attribute(
        &self,
        container: &mut Map<String, Value>,
        attribute: &'static Attribute,
        value: Option<&Value>,
    ) -> Result<(), PatchError> {
        let Some(current) = get_ci(container, attribute.name).filter(|v| is_present(v)) else {
            return Ok(());
        };
        if let Some(listed) = value.filter(|v| is_present(v)) {
            if attribute.multi_valued {
                let listed = self.coerce_elements(attribute, listed)?;
                let listed_keys: HashSet<String> =
                    listed.iter().filter_map(|v| identity(attribute, v)).collect();
                let unkeyed: Vec<&Value> =
                    listed.iter().filter(|v| identity(attribute, v).is_none()).collect();
                return with_values(container, attribute, |values| {
                    let before = values.len();
                    values.retain(|old| {
                        let keyed = identity(attribute, old).is_some_and(|key| listed_keys.contains(&key));
                        !(keyed || unkeyed.iter().any(|gone| same(attribute, old, gone)))
                    });
                    if values.len() == before { Ok(()) } else { self.check_removable(attribute, None) }
                });
            }
            let listed = match listed {
                Value::Array(items) if items.len() == 1 => &items[0],
                other => other,
            };
            let listed = coerce(attribute, listed).map_err(|d| self.invalid_value(d))?;
            if !same_value(attribute, current, &listed) {
                return Ok(());
            }
        }
        self.unassign(container, attribute)
    }

    fn unassign(
        &self,
        container: &mut Map<String, Value>,
        attribute: &'static Attribute,
    ) -> Result<(), PatchError> {
        if get_ci(container, attribute.name).is_some_and(is_present) {
            self.check_removable(attribute, None)?;
        }
        remove_ci(container, attribute.name);
        Ok(())
    }

    /// `remove` of `attr.sub` on a single-valued complex attribute.
    fn remove_sub_attribute(
        &self,
        container: &mut Map<String, Value>,
        attribute: &'static Attribute,
        sub: &'static Attribute,
        value: Option<&Value>,
    ) -> Result<(), PatchError> {
        let Some(Value::Object(object)) = get_ci_mut(container, attribute.name) else { return Ok(()) };
        let Some(current) = get_ci(object, sub.name).filter(|v| is_present(v)) else { return Ok(()) };
        if let Some(listed) = value.filter(|v| is_present(v)) {
            let listed = coerce(sub, listed).map_err(|d| self.invalid_value(d))?;
            if !same(sub, current, &listed) {
                return Ok(());
            }
        }
        self.check_removable(sub, Some(attribute))?;
        remove_ci(object, sub.name);
        if object.is_empty() {
            remove_ci(container, attribute.name);
        }
        Ok(())
    }

    /// Operations on the values of a multi-valued complex attribute selected by
    /// a value filter, or on one sub-attribute of each (RFC 7644 §3.5.2).
    fn apply_to_values(
        &self,
        container: &mut Map<String, Value>,
        attribute: &'static Attribute,
        filter: &Filter,
        sub: Option<&'static Attribute>,
        value: Option<&Value>,
    ) -> Result<(), PatchError> {
        with_values(container, attribute, |values| self.change_values(values, attribute, filter, sub, value))
    }

    fn change_values(
        &self,
        values: &mut Vec<Value>,
        attribute: &'static Attribute,
        filter: &Filter,
        sub: Option<&'static Attribute>,
        value: Option<&Value>,
    ) -> Result<(), PatchError> {
        let selected: Vec<usize> =
            (0..values.len()).filter(|&i| matches_value(filter, &values[i], attribute)).collect();
        let removing = match (self.kind, value) {
            (OpKind::Remove, _) => true,
            (OpKind::Add, Some(Value::Null)) => return Ok(()),
            (_, Some(Value::Null)) => true,
            (_, None) => return Err(self.invalid_value("add and replace need a value")),
            (_, Some(_)) => false,
        };
        if removing {
            if selected.is_empty() {
                return Ok(());
            }
            self.check_removable(attribute, None)?;
            match sub {
                None => {
                    let selected: HashSet<usize> = selected.into_iter().collect();
                    let mut i = 0;
                    values.retain(|_| {
                        i += 1;
                        !selected.contains(&(i - 1))
                    });
                }
                Some(sub) => {
                    for &i in &selected {
                        if let Value::Object(object) = &mut values[i]
                            && get_ci(object, sub.name).is_some_and(is_present)
                        {
                            self.check_removable(sub, Some(attribute))?;
                            remove_ci(object, sub.name);
                        }
                    }
                    values.retain(is_present);
                }
            }
            return Ok(());
        }
        let Some(value) = value else { return Ok(()) };
        if attribute.mutability == Mutability::ReadOnly {
            return Err(self.mutability(format!("{} is readOnly", attribute.name)));
        }
        let touched = if selected.is_empty() {
            let Some(mut element) = seed_from_filter(filter, attribute) else {
                return Err(self.no_target(format!(
                    "no value of {} matches the filter, and only `eq` comparisons joined by `and` say what value to create",
                    attribute.name
                )));
            };
            match sub {
                Some(sub) => {
                    element
                        .insert(sub.name.to_owned(), coerce(sub, value).map_err(|d| self.invalid_value(d))?);
                }
                None => {
                    let given = coerce_complex(attribute, value).map_err(|d| self.invalid_value(d))?;
                    element.extend(given.into_iter().filter(|(_, v)| !v.is_null()));
                }
            }
            let element = Value::Object(element);
            self.check_new_element(attribute, &element)?;
            values.push(element);
            vec![values.len() - 1]
        } else {
            for &i in &selected {
                match sub {
                    Some(sub) => {
                        let new = coerce(sub, value).map_err(|d| self.invalid_value(d))?;
                        let current = values[i].as_object().and_then(|o| get_ci(o, sub.name));
                        if self.writable(sub, Some(attribute), current, &new)? {
                            if !values[i].is_object() {
                                values[i] = Value::Object(Map::new());
                            }
                            if let Value::Object(object) = &mut values[i] {
                                set_ci(object, sub.name, new);
                            }
                        }
                    }
                    None => {
                        let new = self.coerce_element(attribute, value)?;
                        if self.kind == OpKind::Add {
                            self.merge_element(attribute, &mut values[i], new)?;
                        } else {
                            self.check_new_element(attribute, &new)?;
                            values[i] = new;
                        }
                    }
                }
            }
            selected
        };
        self.enforce_single_primary(attribute, values, &touched)
    }

    /// Whether to write `new` over `current` given the attribute's mutability
    /// (RFC 7644 §3.5.2: readOnly and set immutable attributes do not change).
    /// A readOnly attribute sent with its current value is accepted and left alone.
    fn writable(
        &self,
        attribute: &'static Attribute,
        parent: Option<&'static Attribute>,
        current: Option<&Value>,
        new: &Value,
    ) -> Result<bool, PatchError> {
        let name = qualified(parent, attribute);
        let read_only = attribute.mutability == Mutability::ReadOnly
            || parent.is_some_and(|p| p.mutability == Mutability::ReadOnly);
        let unchanged = current.is_some_and(|current| same(attribute, current, new));
        if read_only {
            return if unchanged { Ok(false) } else { Err(self.mutability(format!("{name} is readOnly"))) };
        }
        if attribute.mutability == Mutability::Immutable && current.is_some_and(is_present) && !unchanged {
            return Err(self.mutability(format!("{name} is immutable and already set")));
        }
        // Equal under caseExact is still written: a change of case is a change.
        Ok(true)
    }

    /// RFC 7644 §3.5.2.2: removing a required, readOnly or set immutable
    /// attribute is `mutability`.
    fn check_removable(
        &self,
        attribute: &'static Attribute,
        parent: Option<&'static Attribute>,
    ) -> Result<(), PatchError> {
        let name = qualified(parent, attribute);
        if attribute.required {
            return Err(self.mutability(format!("{name} is required and cannot be removed")));
        }
        let mutability = parent
            .filter(|p| p.mutability == Mutability::ReadOnly)
            .map_or(attribute.mutability, |p| p.mutability);
        match mutability {
            Mutability::ReadOnly => Err(self.mutability(format!("{name} is readOnly"))),
            Mutability::Immutable => Err(self.mutability(format!("{name} is immutable"))),
            Mutability::ReadWrite | Mutability::WriteOnly => Ok(()),
        }
    }

    /// Merges the sub-attributes of `new` into an existing value.
    fn merge_element(
        &self,
        attribute: &'static Attribute,
        existing: &mut Value,
        new: Value,
    ) -> Result<(), PatchError> {
        let (Value::Object(object), Value::Object(new)) = (&mut *existing, &new) else {
            *existing = new;
            return Ok(());
        };
        for (name, value) in new {
            let Some(sub) = attribute.sub_attribute(name) else { continue };
            if self.writable(sub, Some(attribute), get_ci(object, sub.name), value)? {
                set_ci(object, sub.name, value.clone());
            }
        }
        Ok(())
    }

    /// A value being added may not set readOnly sub-attributes and must have
    /// the required ones (`members.value`).
    fn check_new_element(&self, attribute: &'static Attribute, element: &Value) -> Result<(), PatchError> {
        let Value::Object(object) = element else { return Ok(()) };
        for sub in attribute.sub_attributes {
            let present = get_ci(object, sub.name).is_some_and(is_present);
            if sub.required && !present {
                return Err(
                    self.invalid_value(format!("each value of {} needs {}", attribute.name, sub.name))
                );
            }
            if sub.mutability == Mutability::ReadOnly && present {
                return Err(self.mutability(format!("{}.{} is readOnly", attribute.name, sub.name)));
            }
        }
        Ok(())
    }

    /// Only one value may be primary (RFC 7643 §2.4): the value this operation
    /// made primary wins; two made primary at once is an error.
    fn enforce_single_primary(
        &self,
        attribute: &'static Attribute,
        values: &mut [Value],
        touched: &[usize],
    ) -> Result<(), PatchError> {
        if attribute.sub_attribute("primary").is_none_or(|p| p.kind != AttributeType::Boolean) {
            return Ok(());
        }
        let is_primary =
            |v: &Value| v.as_object().and_then(|o| get_ci(o, "primary")) == Some(&Value::Bool(true));
        let mut winners: Vec<usize> = touched.iter().copied().filter(|&i| is_primary(&values[i])).collect();
        winners.sort_unstable();
        winners.dedup();
        match winners.as_slice() {
            [] => Ok(()),
            [winner] => {
                for (i, value) in values.iter_mut().enumerate() {
                    if i != *winner
                        && is_primary(value)
                        && let Value::Object(object) = value
                    {
                        set_ci(object, "primary", Value::Bool(false));
                    }
                }
                Ok(())
            }
            _ => {
                Err(self
                    .invalid_value(format!("more than one value of {} is marked primary", attribute.name)))
            }
        }
    }

    fn coerce_elements(
        &self,
        attribute: &'static Attribute,
        value: &Value,
    ) -> Result<Vec<Value>, PatchError> {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        items.into_iter().filter(|v| !v.is_null()).map(|item| self.coerce_element(attribute, item)).collect()
    }

    /// One value of a multi-valued attribute, with null sub-attributes dropped.
    fn coerce_element(&self, attribute: &'static Attribute, value: &Value) -> Result<Value, PatchError> {
        if !attribute.is_complex() {
            return coerce(attribute, value).map_err(|d| self.invalid_value(d));
        }
        let object = coerce_complex(attribute, value).map_err(|d| self.invalid_value(d))?;
        Ok(Value::Object(object.into_iter().filter(|(_, v)| !v.is_null()).collect()))
    }
}

fn qualified(parent: Option<&Attribute>, attribute: &Attribute) -> String {
    match parent {
        Some(parent) => format!("{}.{}", parent.name, attribute.name),
        None => attribute.name.to_owned(),
    }
}

/// The object an attribute lives in: the resource, or an extension's object
/// (created for writes).
fn container(
    root: &mut Map<String, Value>,
    container: Container,
    create: bool,
) -> Option<&mut Map<String, Value>> {
    match container {
        Container::Resource => Some(root),
        Container::Extension(schema) if create => Some(object_ci(root, schema.id)),
        Container::Extension(schema) => match get_ci_mut(root, schema.id) {
            Some(Value::Object(object)) => Some(object),
            _ => None,
        },
    }
}

fn drop_empty_extension(root: &mut Map<String, Value>, container: Container) {
    if let Container::Extension(schema) = container
        && !get_ci(root, schema.id).is_some_and(is_present)
    {
        remove_ci(root, schema.id);
    }
}

/// `schemas` lists the core schema and exactly the extensions that have values.
fn sync_schemas(root: &mut Map<String, Value>, resource_type: &ResourceType) {
    let mut schemas = vec![Value::String(resource_type.schema.id.to_owned())];
    for extension in resource_type.extensions {
        if get_ci(root, extension.schema.id).is_some_and(is_present) {
            schemas.push(Value::String(extension.schema.id.to_owned()));
        } else {
            remove_ci(root, extension.schema.id);
        }
    }
    set_ci(root, "schemas", Value::Array(schemas));
}

fn elements(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(single) => vec![single],
    }
}

/// Runs `change` on the values of a multi-valued attribute, taken out of the
/// resource and put back after. On an error `apply` drops the whole copy, so
/// nothing needs putting back then.
fn with_values(
    container: &mut Map<String, Value>,
    attribute: &'static Attribute,
    change: impl FnOnce(&mut Vec<Value>) -> Result<(), PatchError>,
) -> Result<(), PatchError> {
    let mut values = match get_ci_mut(container, attribute.name).map(Value::take) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(single) => vec![single],
    };
    change(&mut values)?;
    store_elements(container, attribute, values);
    Ok(())
}

/// An empty multi-valued attribute is unassigned (RFC 7644 §3.5.2.2).
fn store_elements(container: &mut Map<String, Value>, attribute: &Attribute, values: Vec<Value>) {
    if values.is_empty() {
        remove_ci(container, attribute.name);
    } else {
        set_ci(container, attribute.name, Value::Array(values));
    }
}

/// The identity of a value of a multi-valued complex attribute: its `value`
/// sub-attribute, folded unless caseExact.
fn identity(attribute: &'static Attribute, element: &Value) -> Option<String> {
    let key = match element.as_object().and_then(|o| get_ci(o, "value"))? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    identity_key(attribute, key)
}

fn identity_key(attribute: &'static Attribute, value: String) -> Option<String> {
    let value_sub = attribute.value_sub_attribute()?;
    Some(if value_sub.case_exact { value } else { value.to_lowercase() })
}

/// Where values already are, by identity, so adding many members stays linear.
struct ValueIndex {
    by_identity: HashMap<String, usize>,
}

impl ValueIndex {
    fn new(attribute: &'static Attribute, values: &[Value]) -> Self {
        let mut by_identity = HashMap::new();
        for (i, value) in values.iter().enumerate() {
            if let Some(key) = identity(attribute, value) {
                by_identity.entry(key).or_insert(i);
            }
        }
        ValueIndex { by_identity }
    }

    fn find(&self, attribute: &'static Attribute, values: &[Value], element: &Value) -> Option<usize> {
        match identity(attribute, element) {
            Some(key) => self.by_identity.get(&key).copied(),
            None => values.iter().position(|old| same(attribute, old, element)),
        }
    }

    fn insert(&mut self, attribute: &'static Attribute, element: &Value, at: usize) {
        if let Some(key) = identity(attribute, element) {
            self.by_identity.entry(key).or_insert(at);
        }
    }
}

/// Whether `old` is the value `listed` names: by identity where there is one.
fn same_value(attribute: &'static Attribute, old: &Value, listed: &Value) -> bool {
    match (identity(attribute, old), identity(attribute, listed)) {
        (Some(a), Some(b)) => a == b,
        _ => same(attribute, old, listed),
    }
}

/// Equality under the attribute's `caseExact`, sub-attribute by sub-attribute.
fn same(attribute: &'static Attribute, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) if !attribute.case_exact => a.to_lowercase() == b.to_lowercase(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(attribute, a, b))
        }
        (Value::Object(a), Value::Object(b)) if attribute.is_complex() => {
            let keys: HashSet<String> = a.keys().chain(b.keys()).map(|k| k.to_lowercase()).collect();
            keys.iter().all(|key| {
                let (x, y) =
                    (get_ci(a, key).filter(|v| !v.is_null()), get_ci(b, key).filter(|v| !v.is_null()));
                match (x, y, attribute.sub_attribute(key)) {
                    (Some(x), Some(y), Some(sub)) => same(sub, x, y),
                    (x, y, _) => x == y,
                }
            })
        }
        _ => a == b,
    }
}

/// A value converted to the attribute's type, or why it cannot be.
fn coerce(attribute: &'static Attribute, value: &Value) -> Result<Value, String> {
    let wrong = |expected: &str| format!("{} takes {expected}, not {value}", attribute.name);
    match attribute.kind {
        AttributeType::String | AttributeType::Reference | AttributeType::Binary => match value {
            Value::String(_) => Ok(value.clone()),
            _ => Err(wrong("a string")),
        },
        AttributeType::DateTime => match value {
            Value::String(text) if parse_date_time(text).is_some() => Ok(value.clone()),
            _ => Err(wrong("a dateTime such as \"2024-05-01T12:00:00Z\"")),
        },
        AttributeType::Boolean => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::String(text) => parse_bool(text).map(Value::Bool).ok_or_else(|| wrong("true or false")),
            _ => Err(wrong("true or false")),
        },
        AttributeType::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            _ => Err(wrong("an integer")),
        },
        AttributeType::Decimal => match value {
            Value::Number(_) => Ok(value.clone()),
            _ => Err(wrong("a number")),
        },
        AttributeType::Complex => coerce_complex(attribute, value).map(Value::Object),
    }
}

/// A complex value with canonical sub-attribute names; nulls are kept (they
/// unassign). A bare scalar is shorthand for `{"value": …}`.
fn coerce_complex(attribute: &'static Attribute, value: &Value) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(given) => {
            let mut out = Map::new();
            for (name, value) in given {
                let sub = attribute
                    .sub_attribute(name)
                    .ok_or_else(|| format!("{} has no sub-attribute {name:?}", attribute.name))?;
                let value = if value.is_null() { Value::Null } else { coerce(sub, value)? };
                out.insert(sub.name.to_owned(), value);
            }
            Ok(out)
        }
        Value::String(_) | Value::Number(_) | Value::Bool(_) => match attribute.value_sub_attribute() {
            Some(value_sub) => Ok(Map::from_iter([(value_sub.name.to_owned(), coerce(value_sub, value)?)])),
            None => Err(format!("{} takes an object of sub-attributes, not {value}", attribute.name)),
        },
        _ => Err(format!("{} takes an object of sub-attributes, not {value}", attribute.name)),
    }
}

/// The value a filter of `eq` comparisons joined by `and` describes:
/// `type eq "work"` → `{"type": "work"}`.
fn seed_from_filter(filter: &Filter, attribute: &'static Attribute) -> Option<Map<String, Value>> {
    match filter {
        Filter::Compare { path, op: CompareOp::Eq, value }
            if path.urn.is_none() && path.sub_attr.is_none() =>
        {
            let sub = attribute.sub_attribute(&path.name)?;
            let value = coerce(sub, &value.to_json()).ok()?;
            Some(Map::from_iter([(sub.name.to_owned(), value)]))
        }
        Filter::And(operands) => {
            let mut seed = Map::new();
            for operand in operands {
                seed.extend(seed_from_filter(operand, attribute)?);
            }
            Some(seed)
        }
        _ => None,
    }
}

fn member_values(
    members: &'static Attribute,
    resource: &Map<String, Value>,
) -> Vec<(Option<String>, String)> {
    let mut seen = HashSet::new();
    elements(get_ci(resource, members.name))
        .into_iter()
        .filter_map(|m| m.as_object().and_then(|o| get_ci(o, "value")).and_then(Value::as_str))
        .map(|value| (identity_key(members, value.to_owned()), value.to_owned()))
        .filter(|(key, _)| seen.insert(key.clone()))
        .collect()
}

fn membership_changes(
    members: &'static Attribute,
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> MembershipChanges {
    let (before, after) = (member_values(members, before), member_values(members, after));
    let before_keys: HashSet<&Option<String>> = before.iter().map(|(key, _)| key).collect();
    let after_keys: HashSet<&Option<String>> = after.iter().map(|(key, _)| key).collect();
    MembershipChanges {
        added: after.iter().filter(|(key, _)| !before_keys.contains(key)).map(|(_, v)| v.clone()).collect(),
        removed: before.iter().filter(|(key, _)| !after_keys.contains(key)).map(|(_, v)| v.clone()).collect(),
    }
}

#[cfg(test)]
mod tests;
