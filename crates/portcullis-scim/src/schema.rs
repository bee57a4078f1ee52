//! The attribute table of the resource types we serve: User (RFC 7643 §4.1)
//! with the enterprise extension (§4.3), and Group (§4.2), plus the common
//! attributes `id`, `externalId` and `meta` (§3.1).
//!
//! ```text
//!   ResourceType USER ──schema──► Schema core:2.0:User ──► Attribute userName, name{…}, emails[{…}], …
//!        │           ──extensions► Schema enterprise:2.0:User ──► employeeNumber, manager{…}, …
//!        └── common ──► id, externalId, meta{…}
//! ```
//!
//! The table decides how values compare (`caseExact`), how PATCH values are
//! coerced (`type`), what a client may change (`mutability`), and it is what
//! `/Schemas` and `/ResourceTypes` serve ([`schema_resource`],
//! [`resource_type_resource`]). Attribute names match case-insensitively
//! (RFC 7643 §2.1); [`ResourceType::resolve`] turns a parsed attribute path into
//! the attribute it names, which is also what a filter → SQL translation keys on.

use serde_json::{Map, Value, json};

use crate::filter::AttrPath;

/// `schemas` URI of the core User schema (RFC 7643 §4.1).
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// `schemas` URI of the core Group schema (RFC 7643 §4.2).
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// `schemas` URI of the enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// `schemas` URI of a schema definition resource (RFC 7643 §7).
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
/// `schemas` URI of a resource type definition (RFC 7643 §6).
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl AttributeType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeType::String => "string",
            AttributeType::Boolean => "boolean",
            AttributeType::Decimal => "decimal",
            AttributeType::Integer => "integer",
            AttributeType::DateTime => "dateTime",
            AttributeType::Binary => "binary",
            AttributeType::Reference => "reference",
            AttributeType::Complex => "complex",
        }
    }
}

/// Who may change an attribute (RFC 7643 §7, `mutability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// When an attribute is returned (RFC 7643 §7, `returned`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

/// How unique a value must be (RFC 7643 §7, `uniqueness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition with its characteristics (RFC 7643 §2.2, §7).
#[derive(Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: &'static str,
    pub kind: AttributeType,
    pub multi_valued: bool,
    pub description: &'static str,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [Attribute],
}

impl Attribute {
    /// The sub-attribute called `name` (case-insensitive), if this is complex.
    pub fn sub_attribute(&'static self, name: &str) -> Option<&'static Attribute> {
        self.sub_attributes.iter().find(|sub| sub.name.eq_ignore_ascii_case(name))
    }

    pub fn is_complex(&self) -> bool {
        self.kind == AttributeType::Complex
    }

    /// The sub-attribute a filter or PATCH compares when it names this complex
    /// attribute without a sub-attribute (`emails co "@acme.com"` compares
    /// `emails.value`).
    pub fn value_sub_attribute(&'static self) -> Option<&'static Attribute> {
        self.sub_attribute("value")
    }

    // Builders for the static tables below.

    const fn new(name: &'static str, kind: AttributeType, description: &'static str) -> Attribute {
        Attribute {
            name,
            kind,
            multi_valued: false,
            description,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: &[],
        }
    }

    const fn multi(mut self) -> Attribute {
        self.multi_valued = true;
        self
    }

    const fn required(mut self) -> Attribute {
        self.required = true;
        self
    }

    const fn case_exact(mut self) -> Attribute {
        self.case_exact = true;
        self
    }

    const fn mutability(mut self, mutability: Mutability) -> Attribute {
        self.mutability = mutability;
        self
    }

    const fn returned(mut self, returned: Returned) -> Attribute {
        self.returned = returned;
        self
    }

    const fn unique(mut self) -> Attribute {
        self.uniqueness = Uniqueness::Server;
        self
    }

    const fn canonical(mut self, values: &'static [&'static str]) -> Attribute {
        self.canonical_values = values;
        self
    }

    const fn references(mut self, types: &'static [&'static str]) -> Attribute {
        self.reference_types = types;
        self
    }

    const fn sub(mut self, sub_attributes: &'static [Attribute]) -> Attribute {
        self.sub_attributes = sub_attributes;
        self
    }
}

/// A schema: a named set of attributes (RFC 7643 §7).
#[derive(Debug, PartialEq, Eq)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [Attribute],
}

impl Schema {
    /// The top-level attribute called `name` (case-insensitive).
    pub fn attribute(&'static self, name: &str) -> Option<&'static Attribute> {
        self.attributes.iter().find(|attribute| attribute.name.eq_ignore_ascii_case(name))
    }
}

/// A schema extension of a resource type (RFC 7643 §6, `schemaExtensions`).
#[derive(Debug, PartialEq, Eq)]
pub struct SchemaExtension {
    pub schema: &'static Schema,
    pub required: bool,
}

/// A resource type: its endpoint, core schema and extensions (RFC 7643 §6).
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    pub id: &'static str,
    pub name: &'static str,
    pub endpoint: &'static str,
    pub description: &'static str,
    pub schema: &'static Schema,
    pub extensions: &'static [SchemaExtension],
}

/// Where a top-level attribute lives in the resource JSON: at the top, or in
/// the object keyed by an extension's URI (RFC 7643 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Resource,
    Extension(&'static Schema),
}

/// An attribute path resolved against a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedAttribute {
    pub container: Container,
    pub attribute: &'static Attribute,
    pub sub_attribute: Option<&'static Attribute>,
}

impl ResolvedAttribute {
    /// The attribute whose values a comparison looks at: the named
    /// sub-attribute, or `value` of a complex attribute named alone, or the
    /// attribute itself.
    pub fn leaf(&self) -> &'static Attribute {
        match self.sub_attribute {
            Some(sub) => sub,
            None => self.attribute.value_sub_attribute().unwrap_or(self.attribute),
        }
    }

    /// The path in its canonical spelling, with the extension URI for extension
    /// attributes: `emails.value`, `urn:…:enterprise:2.0:User:manager.value`.
    pub fn canonical_path(&self) -> String {
        let mut path = String::new();
        if let Container::Extension(schema) = self.container {
            path.push_str(schema.id);
            path.push(':');
        }
        path.push_str(self.attribute.name);
        if let Some(sub) = self.sub_attribute {
            path.push('.');
            path.push_str(sub.name);
        }
        path
    }
}

/// What a PATCH path may name beyond an attribute: a whole extension object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvedTarget {
    Attribute(ResolvedAttribute),
    Extension(&'static Schema),
}

/// An attribute path that names nothing in the resource type (reported as
/// `invalidFilter` in a filter and `invalidPath` in a PATCH path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown attribute {path:?} for resource type {resource_type}")]
pub struct UnknownAttribute {
    pub path: String,
    pub resource_type: &'static str,
}

impl ResourceType {
    /// The core schema followed by the extension schemas.
    pub fn schemas(&self) -> impl Iterator<Item = &'static Schema> + '_ {
        std::iter::once(self.schema).chain(self.extensions.iter().map(|extension| extension.schema))
    }

    /// The extension schema with this URI (case-insensitive).
    pub fn extension(&self, urn: &str) -> Option<&'static Schema> {
        self.extensions
            .iter()
            .map(|extension| extension.schema)
            .find(|schema| schema.id.eq_ignore_ascii_case(urn))
    }

    /// A top-level attribute by optional schema URI and name. Unqualified
    /// names are looked up in the core schema and the common attributes only
    /// (RFC 7644 §3.10); extension attributes need their URI.
    pub fn top_level(&self, urn: Option<&str>, name: &str) -> Option<(Container, &'static Attribute)> {
        let in_core = || {
            self.schema.attribute(name).or_else(|| COMMON.attribute(name)).map(|a| (Container::Resource, a))
        };
        match urn {
            None => in_core(),
            Some(urn) if urn.eq_ignore_ascii_case(self.schema.id) => in_core(),
            Some(urn) => {
                let schema = self.extension(urn)?;
                schema.attribute(name).map(|attribute| (Container::Extension(schema), attribute))
            }
        }
    }

    /// Resolves an attribute path of a filter (RFC 7644 §3.4.2.2 `attrPath`).
    pub fn resolve(&self, path: &AttrPath) -> Result<ResolvedAttribute, UnknownAttribute> {
        let unknown = || UnknownAttribute { path: path.to_string(), resource_type: self.id };
        let (container, attribute) = self.top_level(path.urn.as_deref(), &path.name).ok_or_else(unknown)?;
        let sub_attribute = match &path.sub_attr {
            None => None,
            Some(sub) => Some(attribute.sub_attribute(sub).ok_or_else(unknown)?),
        };
        Ok(ResolvedAttribute { container, attribute, sub_attribute })
    }

    /// Resolves an attribute path of a PATCH operation, which may also name a
    /// whole extension object by its URI (RFC 7644 §3.5.2).
    pub fn resolve_target(&self, path: &AttrPath) -> Result<ResolvedTarget, UnknownAttribute> {
        if let (Some(urn), None) = (&path.urn, &path.sub_attr) {
            let whole = format!("{urn}:{}", path.name);
            if let Some(schema) = self.extension(&whole) {
                return Ok(ResolvedTarget::Extension(schema));
            }
        }
        self.resolve(path).map(ResolvedTarget::Attribute)
    }

    /// Resolves an attribute path inside a value filter (`emails[type eq
    /// "work"]`): a bare sub-attribute name of `parent`.
    pub fn resolve_in(
        &self,
        parent: &'static Attribute,
        path: &AttrPath,
    ) -> Result<&'static Attribute, UnknownAttribute> {
        let unknown =
            || UnknownAttribute { path: format!("{}[{path}]", parent.name), resource_type: self.id };
        if path.urn.is_some() || path.sub_attr.is_some() {
            return Err(unknown());
        }
        parent.sub_attribute(&path.name).ok_or_else(unknown)
    }
}

/// The resource type a SCIM resource declares in `schemas` (or, failing
/// that, `meta.resourceType`), among the ones served here.
pub fn resource_type_of(resource: &Value) -> Option<&'static ResourceType> {
    let declared = |urn: &str| {
        resource.get("schemas").and_then(Value::as_array).is_some_and(|schemas| {
            schemas.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)))
        })
    };
    RESOURCE_TYPES.iter().copied().find(|rt| declared(rt.schema.id)).or_else(|| {
        let name = resource.get("meta")?.get("resourceType")?.as_str()?;
        RESOURCE_TYPES.iter().copied().find(|rt| rt.id.eq_ignore_ascii_case(name))
    })
}

/// The schema representation served at `/Schemas/{id}` (RFC 7643 §7).
/// `base_url` is the SCIM base (`https://host/scim/v2`), used for
/// `meta.location`.
pub fn schema_resource(schema: &Schema, base_url: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": schema.attributes.iter().map(attribute_json).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "Schema",
            "location": format!("{}/Schemas/{}", base_url.trim_end_matches('/'), schema.id),
        },
    })
}

/// The representation served at `/ResourceTypes/{id}` (RFC 7643 §6).
pub fn resource_type_resource(resource_type: &ResourceType, base_url: &str) -> Value {
    let extensions: Vec<Value> = resource_type
        .extensions
        .iter()
        .map(|extension| json!({"schema": extension.schema.id, "required": extension.required}))
        .collect();
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": resource_type.id,
        "name": resource_type.name,
        "endpoint": resource_type.endpoint,
        "description": resource_type.description,
        "schema": resource_type.schema.id,
        "schemaExtensions": extensions,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{}/ResourceTypes/{}", base_url.trim_end_matches('/'), resource_type.id),
        },
    })
}

fn attribute_json(attribute: &Attribute) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), attribute.name.into());
    out.insert("type".into(), attribute.kind.as_str().into());
    out.insert("multiValued".into(), attribute.multi_valued.into());
    out.insert("description".into(), attribute.description.into());
    out.insert("required".into(), attribute.required.into());
    out.insert("caseExact".into(), attribute.case_exact.into());
    out.insert("mutability".into(), attribute.mutability.as_str().into());
    out.insert("returned".into(), attribute.returned.as_str().into());
    out.insert("uniqueness".into(), attribute.uniqueness.as_str().into());
    if !attribute.canonical_values.is_empty() {
        out.insert("canonicalValues".into(), attribute.canonical_values.into());
    }
    if attribute.kind == AttributeType::Reference {
        out.insert("referenceTypes".into(), attribute.reference_types.into());
    }
    if attribute.is_complex() {
        let subs: Vec<Value> = attribute.sub_attributes.iter().map(attribute_json).collect();
        out.insert("subAttributes".into(), subs.into());
    }
    Value::Object(out)
}

use AttributeType::{Boolean, Complex, DateTime, Reference, String as Str};
use Mutability::{Immutable, ReadOnly, WriteOnly};

const fn string(name: &'static str, description: &'static str) -> Attribute {
    Attribute::new(name, Str, description)
}

/// The attributes every resource has (RFC 7643 §3.1). They are not part of a
/// served schema but resolve like core attributes.
pub static COMMON: Schema = Schema {
    id: "urn:ietf:params:scim:schemas:common",
    name: "Common",
    description: "Attributes common to all resources",
    attributes: &[
        string("id", "Identifier of the resource, issued by the service provider")
            .case_exact()
            .mutability(ReadOnly)
            .returned(Returned::Always)
            .unique(),
        string("externalId", "Identifier of the resource in the provisioning client").case_exact(),
        Attribute::new("meta", Complex, "Resource metadata").mutability(ReadOnly).sub(&[
            string("resourceType", "Name of the resource type").case_exact().mutability(ReadOnly),
            Attribute::new("created", DateTime, "When the resource was added").mutability(ReadOnly),
            Attribute::new("lastModified", DateTime, "When the resource was last changed")
                .mutability(ReadOnly),
            Attribute::new("location", Reference, "URI of the resource")
                .case_exact()
                .mutability(ReadOnly)
                .references(&["uri"]),
            string("version", "Entity tag of the resource").case_exact().mutability(ReadOnly),
        ]),
    ],
};

const MULTI_VALUE_TYPES: &[&str] = &["work", "home", "other"];

/// Core User schema (RFC 7643 §4.1): the attributes Okta and Entra ID map by default.
pub static USER_CORE: Schema = Schema {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: &[
        string("userName", "Unique identifier the user signs in with").required().unique(),
        Attribute::new("name", Complex, "Components of the user's name").sub(&[
            string("formatted", "Full name for display"),
            string("familyName", "Family name"),
            string("givenName", "Given name"),
            string("middleName", "Middle name"),
            string("honorificPrefix", "Honorific prefix"),
            string("honorificSuffix", "Honorific suffix"),
        ]),
        string("displayName", "Name to display to end users"),
        string("nickName", "Casual name"),
        Attribute::new("profileUrl", Reference, "URL of the user's profile").references(&["external"]),
        string("title", "Job title"),
        string("userType", "Relationship to the organization, such as Employee or Contractor"),
        string("preferredLanguage", "Preferred written or spoken language"),
        string("locale", "Default location for localization"),
        string("timezone", "Time zone, in IANA format"),
        Attribute::new("active", Boolean, "Whether the user may sign in"),
        string("password", "Cleartext password, only ever written")
            .mutability(WriteOnly)
            .returned(Returned::Never),
        Attribute::new("emails", Complex, "Email addresses").multi().sub(&[
            string("value", "Email address"),
            string("display", "Label for display"),
            string("type", "Kind of address").canonical(MULTI_VALUE_TYPES),
            Attribute::new("primary", Boolean, "Whether this is the preferred address"),
        ]),
        Attribute::new("phoneNumbers", Complex, "Phone numbers").multi().sub(&[
            string("value", "Phone number"),
            string("display", "Label for display"),
            string("type", "Kind of number").canonical(&["work", "home", "mobile", "fax", "pager", "other"]),
            Attribute::new("primary", Boolean, "Whether this is the preferred number"),
        ]),
        Attribute::new("addresses", Complex, "Physical mailing addresses").multi().sub(&[
            string("formatted", "Full address for display"),
            string("streetAddress", "Street address"),
            string("locality", "City or locality"),
            string("region", "State or region"),
            string("postalCode", "Postal code"),
            string("country", "Country, ISO 3166-1 alpha-2"),
            string("type", "Kind of address").canonical(MULTI_VALUE_TYPES),
            Attribute::new("primary", Boolean, "Whether this is the preferred address"),
        ]),
        Attribute::new("roles", Complex, "Roles given to the user by the provisioning client").multi().sub(
            &[
                string("value", "Role"),
                string("display", "Label for display"),
                string("type", "Kind of role"),
                Attribute::new("primary", Boolean, "Whether this is the primary role"),
            ],
        ),
        Attribute::new("groups", Complex, "Groups the user belongs to, maintained through Group membership")
            .multi()
            .mutability(ReadOnly)
            .sub(&[
                string("value", "Identifier of the group").case_exact().mutability(ReadOnly),
                Attribute::new("$ref", Reference, "URI of the group")
                    .case_exact()
                    .mutability(ReadOnly)
                    .references(&["User", "Group"]),
                string("display", "Name of the group").mutability(ReadOnly),
                string("type", "Direct or indirect membership")
                    .mutability(ReadOnly)
                    .canonical(&["direct", "indirect"]),
            ]),
    ],
};

/// Enterprise User extension (RFC 7643 §4.3).
pub static ENTERPRISE_USER: Schema = Schema {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: &[
        string("employeeNumber", "Identifier assigned by the organization"),
        string("costCenter", "Cost center"),
        string("organization", "Organization"),
        string("division", "Division"),
        string("department", "Department"),
        Attribute::new("manager", Complex, "The user's manager").sub(&[
            string("value", "Identifier of the manager's User").case_exact(),
            Attribute::new("$ref", Reference, "URI of the manager's User").case_exact().references(&["User"]),
            string("displayName", "Display name of the manager").mutability(ReadOnly),
        ]),
    ],
};

/// Core Group schema (RFC 7643 §4.2).
pub static GROUP_CORE: Schema = Schema {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: &[
        // Unique per server: role assignments name groups by display name.
        string("displayName", "Name of the group").required().unique(),
        Attribute::new("members", Complex, "Members of the group").multi().sub(&[
            string("value", "Identifier of the member").required().case_exact().mutability(Immutable),
            Attribute::new("$ref", Reference, "URI of the member")
                .case_exact()
                .mutability(Immutable)
                .references(&["User", "Group"]),
            string("display", "Name of the member"),
            string("type", "Kind of member").mutability(Immutable).canonical(&["User", "Group"]),
        ]),
    ],
};

/// The User resource type, at `/Users`.
pub static USER: ResourceType = ResourceType {
    id: "User",
    name: "User",
    endpoint: "/Users",
    description: "User Account",
    schema: &USER_CORE,
    extensions: &[SchemaExtension { schema: &ENTERPRISE_USER, required: false }],
};

/// The Group resource type, at `/Groups`.
pub static GROUP: ResourceType = ResourceType {
    id: "Group",
    name: "Group",
    endpoint: "/Groups",
    description: "Group",
    schema: &GROUP_CORE,
    extensions: &[],
};

/// Every resource type served.
pub static RESOURCE_TYPES: [&ResourceType; 2] = [&USER, &GROUP];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse_attr_path;

    fn path(text: &str) -> AttrPath {
        parse_attr_path(text).expect("valid attribute path")
    }

    #[test]
    fn resolves_names_case_insensitively_to_canonical_spelling() {
        let resolved = USER.resolve(&path("NAME.givenname")).unwrap();
        assert_eq!(resolved.canonical_path(), "name.givenName");
        assert_eq!(USER.resolve(&path("USERNAME")).unwrap().canonical_path(), "userName");
    }

    #[test]
    fn resolves_extension_attributes_only_with_their_urn() {
        let resolved = USER
            .resolve(&path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"))
            .unwrap();
        assert_eq!(resolved.container, Container::Extension(&ENTERPRISE_USER));
        let manager = USER
            .resolve(&path("URN:IETF:params:scim:schemas:extension:enterprise:2.0:user:manager.value"))
            .unwrap();
        assert_eq!(manager.canonical_path(), format!("{ENTERPRISE_USER_SCHEMA}:manager.value"));
        assert!(USER.resolve(&path("employeeNumber")).is_err());
    }

    #[test]
    fn resolves_core_urn_prefix_and_common_attributes() {
        let resolved = USER.resolve(&path("urn:ietf:params:scim:schemas:core:2.0:User:userName")).unwrap();
        assert_eq!(resolved.canonical_path(), "userName");
        assert_eq!(GROUP.resolve(&path("meta.lastModified")).unwrap().leaf().kind, DateTime);
        assert_eq!(GROUP.resolve(&path("externalId")).unwrap().attribute.name, "externalId");
    }

    #[test]
    fn unknown_attributes_and_sub_attributes_are_errors() {
        let err = USER.resolve(&path("emails.vlue")).unwrap_err();
        assert_eq!(err.to_string(), "unknown attribute \"emails.vlue\" for resource type User");
        assert!(USER.resolve(&path("userName.first")).is_err());
        assert!(GROUP.resolve(&path("userName")).is_err());
        assert!(USER.resolve(&path("urn:example:unknown:Thing:field")).is_err());
    }

    #[test]
    fn a_patch_target_may_name_the_whole_extension() {
        let target = USER.resolve_target(&path(ENTERPRISE_USER_SCHEMA)).unwrap();
        assert_eq!(target, ResolvedTarget::Extension(&ENTERPRISE_USER));
    }

    #[test]
    fn leaf_of_a_complex_attribute_is_its_value_sub_attribute() {
        let emails = USER.resolve(&path("emails")).unwrap();
        assert_eq!(emails.leaf().name, "value");
        let name = USER.resolve(&path("name")).unwrap();
        assert_eq!(name.leaf().name, "name");
    }

    #[test]
    fn resource_type_comes_from_schemas_or_meta() {
        assert_eq!(resource_type_of(&json!({"schemas": [GROUP_SCHEMA]})), Some(&GROUP));
        assert_eq!(resource_type_of(&json!({"meta": {"resourceType": "User"}})), Some(&USER));
        assert_eq!(resource_type_of(&json!({"userName": "x"})), None);
    }

    #[test]
    fn schema_resource_renders_rfc7643_section7_shape() {
        let rendered = schema_resource(&USER_CORE, "https://scim.example.test/scim/v2/");
        assert_eq!(rendered["schemas"], json!([SCHEMA_SCHEMA]));
        assert_eq!(rendered["id"], USER_SCHEMA);
        assert_eq!(
            rendered["meta"]["location"],
            format!("https://scim.example.test/scim/v2/Schemas/{USER_SCHEMA}")
        );
        let attributes = rendered["attributes"].as_array().unwrap();
        let user_name = attributes.iter().find(|a| a["name"] == "userName").unwrap();
        assert_eq!(
            user_name,
            &json!({
                "name": "userName", "type": "string", "multiValued": false,
                "description": "Unique identifier the user signs in with",
                "required": true, "caseExact": false, "mutability": "readWrite",
                "returned": "default", "uniqueness": "server",
            })
        );
        let emails = attributes.iter().find(|a| a["name"] == "emails").unwrap();
        assert_eq!(emails["multiValued"], true);
        assert_eq!(emails["type"], "complex");
        let primary =
            emails["subAttributes"].as_array().unwrap().iter().find(|a| a["name"] == "primary").unwrap();
        assert_eq!(primary["type"], "boolean");
        let groups = attributes.iter().find(|a| a["name"] == "groups").unwrap();
        assert_eq!(groups["mutability"], "readOnly");
        let password = attributes.iter().find(|a| a["name"] == "password").unwrap();
        assert_eq!(password["returned"], "never");
    }

    #[test]
    fn group_members_render_with_reference_types() {
        let rendered = schema_resource(&GROUP_CORE, "https://x.test");
        let members =
            rendered["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "members").unwrap();
        let reference =
            members["subAttributes"].as_array().unwrap().iter().find(|a| a["name"] == "$ref").unwrap();
        assert_eq!(reference["referenceTypes"], json!(["User", "Group"]));
        assert_eq!(reference["mutability"], "immutable");
    }

    #[test]
    fn resource_type_resource_lists_the_enterprise_extension() {
        let rendered = resource_type_resource(&USER, "https://x.test/scim/v2");
        assert_eq!(rendered["endpoint"], "/Users");
        assert_eq!(
            rendered["schemaExtensions"],
            json!([{"schema": ENTERPRISE_USER_SCHEMA, "required": false}])
        );
        assert_eq!(rendered["meta"]["location"], "https://x.test/scim/v2/ResourceTypes/User");
    }
}
