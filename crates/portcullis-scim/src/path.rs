//! The `path` of a PATCH operation (RFC 7644 §3.5.2): `attrPath / valuePath
//! [subAttr]`, e.g. `active`, `name.givenName`,
//! `urn:…:enterprise:2.0:User:manager`, `members[value eq "2819c223"]`,
//! `emails[type eq "work"].value`.
//!
//! The value filter between `[` and `]` is parsed by [`super::filter`], under
//! the same length and nesting [`Limits`]. Errors outside the brackets are
//! `invalidPath`; errors inside them are `invalidFilter` (RFC 7644 §3.12).

use std::fmt;

use crate::ScimType;
use crate::filter::{self, AttrPath, Filter, FilterError, Limits, Parser};
use crate::schema::{Attribute, ResolvedAttribute, ResolvedTarget, ResourceType, Schema, UnknownAttribute};

/// A parsed PATCH path.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchPath {
    /// `attr`, `attr.sub`, `urn:…:attr[.sub]`, or an extension's URN alone.
    Attribute(AttrPath),
    /// `attr[filter]`, optionally followed by `.sub`. `path` has no sub-attribute.
    ValuePath { path: AttrPath, filter: Filter, sub_attr: Option<String> },
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchPath::Attribute(path) => write!(f, "{path}"),
            PatchPath::ValuePath { path, filter, sub_attr } => {
                write!(f, "{path}[{filter}]")?;
                if let Some(sub) = sub_attr {
                    write!(f, ".{sub}")?;
                }
                Ok(())
            }
        }
    }
}

/// Why a PATCH path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path around the value filter is malformed, too long or too deep.
    #[error("invalid path: {0}")]
    Syntax(FilterError),
    /// The value filter inside `[…]` is malformed or names an unknown sub-attribute.
    #[error("invalid value filter in path: {0}")]
    Filter(FilterError),
    #[error("invalid path: {0}")]
    UnknownAttribute(UnknownAttribute),
    #[error("invalid path {path:?}: a value filter selects values of a multi-valued complex attribute")]
    NotMultiValued { path: String },
}

impl PathError {
    pub fn scim_type(&self) -> ScimType {
        match self {
            PathError::Filter(_) => ScimType::InvalidFilter,
            PathError::Syntax(_) | PathError::UnknownAttribute(_) | PathError::NotMultiValued { .. } => {
                ScimType::InvalidPath
            }
        }
    }
}

/// What a PATCH path names, resolved against a resource type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PathTarget<'p> {
    /// The object of a schema extension as a whole.
    Extension(&'static Schema),
    /// An attribute or a sub-attribute of a single-valued complex attribute.
    Attribute(ResolvedAttribute),
    /// The values of a multi-valued complex attribute that match `filter`, or
    /// one sub-attribute of each of them.
    Values { attribute: ResolvedAttribute, filter: &'p Filter, sub_attribute: Option<&'static Attribute> },
}

/// Parses a PATCH path with the default [`Limits`].
pub fn parse(input: &str) -> Result<PatchPath, PathError> {
    parse_with(input, Limits::default())
}

/// Parses a PATCH path within `limits`.
pub fn parse_with(input: &str, limits: Limits) -> Result<PatchPath, PathError> {
    filter::check_limits(input, limits).map_err(PathError::Syntax)?;
    let mut parser = Parser::new(input, limits.max_depth);
    parser.skip_ws();
    let start = parser.pos();
    let path = parser.attr_path().map_err(PathError::Syntax)?;
    let parsed = if parser.peek() == Some(b'[') {
        if path.sub_attr.is_some() {
            return Err(PathError::Syntax(FilterError::InvalidAttributePath {
                at: start,
                text: path.to_string(),
                reason: "a value filter follows an attribute, not a sub-attribute",
            }));
        }
        let filter = parser.value_filter(start, &path).map_err(PathError::Filter)?;
        let sub_attr = parser.sub_attr_after_value_path().map_err(PathError::Syntax)?;
        PatchPath::ValuePath { path, filter, sub_attr }
    } else {
        PatchPath::Attribute(path)
    };
    parser.skip_ws();
    if !parser.at_end() {
        let expected = match parsed {
            PatchPath::Attribute(_) => "`[` or the end of the path",
            PatchPath::ValuePath { .. } => "`.` and a sub-attribute, or the end of the path",
        };
        return Err(PathError::Syntax(parser.unexpected(expected)));
    }
    Ok(parsed)
}

impl PatchPath {
    /// The attribute path before any value filter.
    pub fn attr_path(&self) -> &AttrPath {
        match self {
            PatchPath::Attribute(path) | PatchPath::ValuePath { path, .. } => path,
        }
    }

    /// Resolves the path against `resource_type`, checking the value filter
    /// against the sub-attributes it filters on.
    pub fn resolve(&self, resource_type: &ResourceType) -> Result<PathTarget<'_>, PathError> {
        match self {
            PatchPath::Attribute(path) => match resource_type.resolve_target(path) {
                Ok(ResolvedTarget::Extension(schema)) => Ok(PathTarget::Extension(schema)),
                Ok(ResolvedTarget::Attribute(resolved)) => Ok(PathTarget::Attribute(resolved)),
                Err(unknown) => Err(PathError::UnknownAttribute(unknown)),
            },
            PatchPath::ValuePath { path, filter, sub_attr } => {
                let attribute = resource_type.resolve(path).map_err(PathError::UnknownAttribute)?;
                if !(attribute.attribute.multi_valued && attribute.attribute.is_complex()) {
                    return Err(PathError::NotMultiValued { path: path.to_string() });
                }
                filter::validate_value_filter(filter, resource_type, attribute.attribute)
                    .map_err(PathError::Filter)?;
                let sub_attribute = match sub_attr {
                    None => None,
                    Some(sub) => Some(attribute.attribute.sub_attribute(sub).ok_or_else(|| {
                        PathError::UnknownAttribute(UnknownAttribute {
                            path: self.to_string(),
                            resource_type: resource_type.id,
                        })
                    })?),
                };
                Ok(PathTarget::Values { attribute, filter, sub_attribute })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{CompValue, CompareOp, MAX_DEPTH, MAX_LENGTH};
    use crate::schema::{ENTERPRISE_USER, ENTERPRISE_USER_SCHEMA, GROUP, USER};

    fn ok(input: &str) -> PatchPath {
        parse(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
    }

    fn err(input: &str) -> PathError {
        match parse(input) {
            Ok(path) => panic!("{input:?} should fail, parsed as {path:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_attribute_paths() {
        assert_eq!(ok("active"), PatchPath::Attribute(AttrPath::new("active")));
        assert_eq!(ok("members"), PatchPath::Attribute(AttrPath::new("members")));
        let PatchPath::Attribute(given) = ok("name.givenName") else { panic!() };
        assert_eq!(given.sub_attr.as_deref(), Some("givenName"));
        let PatchPath::Attribute(department) = ok(&format!("{ENTERPRISE_USER_SCHEMA}:department")) else {
            panic!()
        };
        assert_eq!(department.urn.as_deref(), Some(ENTERPRISE_USER_SCHEMA));
    }

    #[test]
    fn okta_member_removal_path() {
        let path = ok(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#);
        assert_eq!(
            path,
            PatchPath::ValuePath {
                path: AttrPath::new("members"),
                filter: Filter::Compare {
                    path: AttrPath::new("value"),
                    op: CompareOp::Eq,
                    value: CompValue::String("2819c223-7f76-453a-919d-413861904646".into()),
                },
                sub_attr: None,
            }
        );
    }

    #[test]
    fn entra_work_email_path_with_sub_attribute() {
        let PatchPath::ValuePath { path, sub_attr, .. } = ok(r#"emails[type eq "work"].value"#) else {
            panic!()
        };
        assert_eq!(path, AttrPath::new("emails"));
        assert_eq!(sub_attr.as_deref(), Some("value"));
        assert!(matches!(ok(r#"addresses[type eq "work"].streetAddress"#), PatchPath::ValuePath { .. }));
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "active",
            "name.familyName",
            r#"emails[type eq "work" and primary eq true].value"#,
            r#"members[value eq "a" or value eq "b"]"#,
            &format!("{ENTERPRISE_USER_SCHEMA}:manager.value"),
        ] {
            let path = ok(input);
            assert_eq!(path.to_string(), input);
            assert_eq!(ok(&path.to_string()), path);
        }
    }

    #[test]
    fn syntax_errors_are_invalid_path() {
        for bad in [
            "",
            "   ",
            "name.",
            "name.givenName.x",
            r#"emails[type eq "work"]."#,
            r#"emails[type eq "work"]value"#,
            r#"emails[type eq "work"].value.x"#,
            r#"name.givenName[type eq "x"]"#,
            "active extra",
            "foo:bar",
        ] {
            let e = err(bad);
            assert!(matches!(e, PathError::Syntax(_)), "{bad}: {e:?}");
            assert_eq!(e.scim_type(), ScimType::InvalidPath, "{bad}");
        }
    }

    #[test]
    fn errors_inside_the_brackets_are_invalid_filter() {
        for bad in [r#"emails[type eq]"#, r#"emails[type eq "work""#, r#"emails[type eq "work]"#, "emails[]"]
        {
            let e = err(bad);
            assert_eq!(e.scim_type(), ScimType::InvalidFilter, "{bad}: {e}");
        }
        let e = err(r#"emails[type equals "work"]"#);
        assert_eq!(
            e.to_string(),
            "invalid value filter in path: unknown operator \"equals\" after \"type\" at offset 12; \
             expected eq, ne, co, sw, ew, gt, ge, lt, le or pr"
        );
    }

    #[test]
    fn limits_apply() {
        let long = format!(r#"members[value eq "{}"]"#, "x".repeat(MAX_LENGTH));
        assert!(matches!(err(&long), PathError::Syntax(FilterError::TooLong { .. })));
        let deep = format!("emails[{}type pr{}]", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(matches!(err(&deep), PathError::Syntax(FilterError::TooDeep { .. })));
        let deepest_allowed =
            format!("emails[{}type pr{}]", "(".repeat(MAX_DEPTH - 1), ")".repeat(MAX_DEPTH - 1));
        assert!(parse(&deepest_allowed).is_ok());
        let huge = format!("emails[{}", "(".repeat(10_000));
        let unlimited = Limits { max_length: usize::MAX, max_depth: MAX_DEPTH };
        assert!(matches!(parse_with(&huge, unlimited), Err(PathError::Syntax(FilterError::TooDeep { .. }))));
    }

    #[test]
    fn resolve_targets() {
        let resolve = |input: &str| ok(input).resolve(&USER).map(|t| format!("{t:?}"));
        assert!(
            matches!(ok("NAME.GIVENNAME").resolve(&USER), Ok(PathTarget::Attribute(a)) if a.canonical_path() == "name.givenName")
        );
        assert!(matches!(
            ok(ENTERPRISE_USER_SCHEMA).resolve(&USER),
            Ok(PathTarget::Extension(schema)) if schema == &ENTERPRISE_USER
        ));
        let path = ok(r#"emails[type eq "work"].value"#);
        let Ok(PathTarget::Values { attribute, sub_attribute, .. }) = path.resolve(&USER) else { panic!() };
        assert_eq!(attribute.attribute.name, "emails");
        assert_eq!(sub_attribute.map(|s| s.name), Some("value"));
        assert!(resolve(r#"members[value eq "x"]"#).is_err());
        assert!(ok(r#"members[value eq "x"]"#).resolve(&GROUP).is_ok());
    }

    #[test]
    fn resolve_errors_say_which_scim_type() {
        let e = ok("titel").resolve(&USER).unwrap_err();
        assert_eq!(
            (e.scim_type(), e.to_string().as_str()),
            (ScimType::InvalidPath, "invalid path: unknown attribute \"titel\" for resource type User")
        );
        let e = ok(r#"emails[tpe eq "work"]"#).resolve(&USER).unwrap_err();
        assert_eq!(e.scim_type(), ScimType::InvalidFilter);
        let e = ok(r#"emails[type eq "work"].vlue"#).resolve(&USER).unwrap_err();
        assert_eq!(e.scim_type(), ScimType::InvalidPath);
        let e = ok(r#"name[givenName eq "Ada"]"#).resolve(&USER).unwrap_err();
        assert!(matches!(e, PathError::NotMultiValued { .. }));
    }

    mod properties {
        use super::*;
        use crate::filter::strategies;
        use proptest::prelude::*;

        fn patch_path() -> impl Strategy<Value = PatchPath> {
            prop_oneof![
                strategies::attr_path().prop_map(PatchPath::Attribute),
                (
                    "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
                    strategies::value_filter(),
                    proptest::option::of("[a-zA-Z][a-zA-Z0-9]{0,6}")
                )
                    .prop_map(|(name, filter, sub_attr)| PatchPath::ValuePath {
                        path: AttrPath::new(name),
                        filter,
                        sub_attr
                    }),
            ]
        }

        proptest! {
            #[test]
            fn printed_paths_parse_back(path in patch_path()) {
                let printed = path.to_string();
                let limits = Limits { max_length: usize::MAX, max_depth: MAX_DEPTH };
                prop_assert_eq!(parse_with(&printed, limits), Ok(path), "printed as {}", printed);
            }

            #[test]
            fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                let text = String::from_utf8_lossy(&bytes);
                if let Ok(path) = parse(&text) {
                    let _ = path.resolve(&USER);
                }
            }

            #[test]
            fn path_shaped_text_never_panics(text in r#"[a-zA-Z .:$\[\]()"\\0-9]{0,120}"#) {
                if let Ok(path) = parse(&text) {
                    let _ = path.resolve(&GROUP);
                    prop_assert_eq!(parse(&path.to_string()), Ok(path));
                }
            }
        }
    }
}
