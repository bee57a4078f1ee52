//! Evaluates a [`Filter`] against SCIM resource JSON in memory (RFC 7644
//! §3.4.2.2): for tests, and for the value filters of PATCH paths.
//!
//! Semantics, decided where the RFC is loose (the SQL translation must agree):
//! - Strings compare ignoring case unless the attribute is `caseExact`; names
//!   of attributes always ignore case.
//! - A multi-valued attribute matches when any of its values does; a complex
//!   attribute named without a sub-attribute compares its `value`
//!   (`emails co "@acme.com"`).
//! - `ne` is the negation of `eq`: an absent attribute is `ne` anything.
//!   `eq null` holds when the attribute has no present value.
//! - `pr`: present and neither null, `""`, `[]` nor `{}`.
//! - `gt ge lt le`: strings lexicographically (after case folding), numbers
//!   numerically, `dateTime` attributes as instants (offsets honoured).
//! - A boolean compared with the string `"true"`/`"false"` (any case) compares
//!   as that boolean, since clients send both.
//! - A path that names no attribute matches nothing (`parse_for` refuses it
//!   before it gets here).

use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::filter::{AttrPath, CompValue, CompareOp, Filter};
use crate::json::{get_ci, is_present};
use crate::schema::{Attribute, AttributeType, Container, ResourceType, resource_type_of};

/// Whether `resource` matches `filter`, with the attribute characteristics of
/// the resource type it declares in `schemas` (RFC 7643 defaults otherwise:
/// not case-exact).
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match resource_type_of(resource) {
        Some(resource_type) => matches_resource(filter, resource, resource_type),
        None => eval(filter, Scope::Untyped, resource),
    }
}

/// Whether `resource`, of `resource_type`, matches `filter`.
pub fn matches_resource(filter: &Filter, resource: &Value, resource_type: &ResourceType) -> bool {
    eval(filter, Scope::Resource(resource_type), resource)
}

/// Whether one value of the complex attribute `attribute` matches the value
/// filter `filter` (the part between `[` and `]`).
pub fn matches_value(filter: &Filter, value: &Value, attribute: &'static Attribute) -> bool {
    eval(filter, Scope::Within(attribute), value)
}

/// What attribute paths are relative to.
#[derive(Debug, Clone, Copy)]
enum Scope<'r> {
    Resource(&'r ResourceType),
    /// Sub-attributes of one value of this complex attribute.
    Within(&'static Attribute),
    Untyped,
    UntypedWithin,
}

/// The values a path names, flattened over multi-valued attributes, and the
/// attribute whose characteristics govern comparing them.
struct Found<'v> {
    values: Vec<&'v Value>,
    leaf: Option<&'static Attribute>,
}

impl Found<'_> {
    fn none() -> Self {
        Found { values: Vec::new(), leaf: None }
    }
}

fn eval(filter: &Filter, scope: Scope<'_>, object: &Value) -> bool {
    match filter {
        Filter::And(operands) => operands.iter().all(|operand| eval(operand, scope, object)),
        Filter::Or(operands) => operands.iter().any(|operand| eval(operand, scope, object)),
        Filter::Not(inner) => !eval(inner, scope, object),
        Filter::Present(path) => lookup(scope, object, path).values.into_iter().any(is_present),
        Filter::Compare { path, op, value } => {
            let found = lookup(scope, object, path);
            // A complex value named without a sub-attribute compares its `value`.
            let scalars: Vec<&Value> = found
                .values
                .iter()
                .filter_map(|v| match v {
                    Value::Object(map) if path.sub_attr.is_none() => get_ci(map, "value"),
                    other => Some(*other),
                })
                .collect();
            let equal = || match value {
                CompValue::Null => !scalars.iter().any(|v| is_present(v)),
                _ => scalars.iter().any(|v| compare(v, CompareOp::Eq, value, found.leaf)),
            };
            match op {
                CompareOp::Eq => equal(),
                CompareOp::Ne => !equal(),
                _ => scalars.iter().any(|v| compare(v, *op, value, found.leaf)),
            }
        }
        Filter::ValuePath { path, filter } => {
            let (raw, child) = match scope {
                Scope::Resource(resource_type) => match resource_type.resolve(path) {
                    Ok(resolved) if resolved.sub_attribute.is_none() && resolved.attribute.is_complex() => {
                        let container = match resolved.container {
                            Container::Resource => Some(object),
                            Container::Extension(schema) => {
                                object.as_object().and_then(|map| get_ci(map, schema.id))
                            }
                        };
                        let raw =
                            container.and_then(Value::as_object).and_then(|map| get_ci(map, &path.name));
                        (raw, Scope::Within(resolved.attribute))
                    }
                    _ => return false,
                },
                Scope::Untyped => (untyped_top(object, path), Scope::UntypedWithin),
                // Value filters do not nest (RFC 7644 §3.4.2.2 `valFilter`).
                Scope::Within(_) | Scope::UntypedWithin => return false,
            };
            match raw {
                Some(Value::Array(items)) => items.iter().any(|item| eval(filter, child, item)),
                Some(item @ Value::Object(_)) => eval(filter, child, item),
                _ => false,
            }
        }
    }
}

fn lookup<'v>(scope: Scope<'_>, object: &'v Value, path: &AttrPath) -> Found<'v> {
    let Some(map) = object.as_object() else { return Found::none() };
    let (raw, leaf) = match scope {
        Scope::Resource(resource_type) => {
            let Ok(resolved) = resource_type.resolve(path) else { return Found::none() };
            let container = match resolved.container {
                Container::Resource => Some(map),
                Container::Extension(schema) => get_ci(map, schema.id).and_then(Value::as_object),
            };
            (container.and_then(|c| get_ci(c, resolved.attribute.name)), Some(resolved.leaf()))
        }
        Scope::Within(parent) => {
            if path.urn.is_some() || path.sub_attr.is_some() {
                return Found::none();
            }
            let Some(sub) = parent.sub_attribute(&path.name) else { return Found::none() };
            (get_ci(map, sub.name), Some(sub))
        }
        Scope::Untyped => (untyped_top(object, path), None),
        Scope::UntypedWithin => (get_ci(map, &path.name), None),
    };
    let mut values = Vec::new();
    let Some(raw) = raw else { return Found { values, leaf } };
    let elements: Vec<&Value> = match raw {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    match &path.sub_attr {
        None => values = elements,
        Some(sub) => {
            for element in elements {
                match element.as_object().and_then(|e| get_ci(e, sub)) {
                    Some(Value::Array(items)) => values.extend(items),
                    Some(value) => values.push(value),
                    None => {}
                }
            }
        }
    }
    Found { values, leaf }
}

/// A top-level attribute when no schema is known: inside the object keyed by
/// the URN if there is one, else at the top.
fn untyped_top<'v>(object: &'v Value, path: &AttrPath) -> Option<&'v Value> {
    let map = object.as_object()?;
    path.urn
        .as_deref()
        .and_then(|urn| get_ci(map, urn))
        .and_then(Value::as_object)
        .and_then(|extension| get_ci(extension, &path.name))
        .or_else(|| get_ci(map, &path.name))
}

fn compare(candidate: &Value, op: CompareOp, value: &CompValue, leaf: Option<&Attribute>) -> bool {
    let kind = leaf.map(|attribute| attribute.kind);
    let case_exact = leaf.is_some_and(|attribute| attribute.case_exact);
    match (candidate, value) {
        (Value::String(have), CompValue::String(want)) => {
            let as_instants = kind == Some(AttributeType::DateTime) || (kind.is_none() && op.is_ordering());
            if as_instants && let (Some(have), Some(want)) = (parse_date_time(have), parse_date_time(want)) {
                return ordered(op, have.cmp(&want));
            }
            compare_strings(have, want, op, case_exact)
        }
        (Value::Bool(have), CompValue::Bool(want)) => op == CompareOp::Eq && have == want,
        (Value::Bool(have), CompValue::String(want)) => {
            op == CompareOp::Eq && parse_bool(want).is_some_and(|want| *have == want)
        }
        (Value::Number(have), CompValue::Number(want)) => {
            !op.is_substring()
                && compare_numbers(have, want.value()).is_some_and(|ordering| ordered(op, ordering))
        }
        _ => false,
    }
}

fn ordered(op: CompareOp, ordering: Ordering) -> bool {
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn compare_strings(have: &str, want: &str, op: CompareOp, case_exact: bool) -> bool {
    let (have, want) = if case_exact {
        (have.to_owned(), want.to_owned())
    } else {
        (have.to_lowercase(), want.to_lowercase())
    };
    match op {
        CompareOp::Co => have.contains(&want),
        CompareOp::Sw => have.starts_with(&want),
        CompareOp::Ew => have.ends_with(&want),
        _ => ordered(op, have.cmp(&want)),
    }
}

fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return Some(a.cmp(&b));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// `"true"` / `"false"` in any case, as Entra ID sends booleans.
pub fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// An `xsd:dateTime` (RFC 7643 §2.3.5) as (seconds since the epoch,
/// nanoseconds), so that different offsets compare correctly. No offset
/// means UTC.
pub fn parse_date_time(text: &str) -> Option<(i64, u32)> {
    let bytes = text.as_bytes();
    let number = |from: usize, to: usize| -> Option<i64> {
        let digits = text.get(from..to)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|(at, byte)| bytes.get(*at) != Some(byte))
        || !matches!(bytes.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0u32;
    if bytes.get(at) == Some(&b'.') {
        let start = at + 1;
        at = start;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return None;
        }
        for (i, digit) in bytes[start..at].iter().take(9).enumerate() {
            nanos += u32::from(digit - b'0') * 10u32.pow(8 - i as u32);
        }
    }
    let offset = match bytes.get(at) {
        None => 0,
        Some(b'Z' | b'z') if at + 1 == bytes.len() => 0,
        Some(sign @ (b'+' | b'-')) if at + 6 == bytes.len() && bytes[at + 3] == b':' => {
            let (hours, minutes) = (number(at + 1, at + 3)?, number(at + 4, at + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    // A leap second sorts with the second before it.
    let second = second.min(59);
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some((seconds, nanos))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{parse, strategies};
    use crate::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER, USER_SCHEMA};
    use serde_json::json;

    fn ada() -> Value {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "00u1ExTeRnAl",
            "userName": "Ada.Lovelace@Example.test",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "displayName": "Ada Lovelace",
            "title": "",
            "nickName": null,
            "active": true,
            "emails": [
                {"value": "ada@other.test", "type": "work", "primary": true},
                {"value": "ada@acme.com", "type": "home"}
            ],
            "phoneNumbers": [],
            "meta": {"resourceType": "User", "lastModified": "2024-05-01T01:00:00+02:00"},
            ENTERPRISE_USER_SCHEMA: {"employeeNumber": "701984", "manager": {"value": "m-26"}}
        })
    }

    fn check(filter: &str) -> bool {
        let filter = parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        matches(&filter, &ada())
    }

    #[test]
    fn eq_ignores_case_unless_case_exact() {
        assert!(check(r#"userName eq "ada.lovelace@example.TEST""#));
        assert!(check(r#"USERNAME EQ "ada.lovelace@example.test""#));
        assert!(check(r#"externalId eq "00u1ExTeRnAl""#));
        assert!(!check(r#"externalId eq "00u1external""#));
        assert!(!check(r#"id eq "2819C223-7F76-453A-919D-413861904646""#));
    }

    #[test]
    fn substring_operators() {
        assert!(check(r#"displayName co "LOVE""#));
        assert!(check(r#"displayName sw "ada""#));
        assert!(check(r#"displayName ew "lace""#));
        assert!(!check(r#"displayName sw "Love""#));
        assert!(!check(r#"active co "t""#));
    }

    #[test]
    fn ordering_on_strings_is_lexicographic_after_case_folding() {
        assert!(check(r#"displayName gt "ADA""#));
        assert!(check(r#"displayName ge "ada lovelace""#));
        assert!(check(r#"displayName lt "b""#));
        assert!(check(r#"displayName le "Ada Lovelace""#));
        assert!(!check(r#"displayName lt "Ada""#));
    }

    #[test]
    fn ordering_on_date_times_compares_instants() {
        // 01:00+02:00 is 23:00Z the day before: lexicographically it would be later.
        assert!(check(r#"meta.lastModified lt "2024-05-01T00:00:00Z""#));
        assert!(check(r#"meta.lastModified gt "2024-04-30T22:59:59.999Z""#));
        assert!(check(r#"meta.lastModified eq "2024-04-30T23:00:00Z""#));
        assert!(check(r#"meta.lastModified ge "2024-04-30T23:00:00.000000000Z""#));
        assert!(!check(r#"meta.lastModified gt "2024-04-30T23:00:00.001Z""#));
    }

    #[test]
    fn present_means_not_null_and_not_empty() {
        assert!(check("displayName pr"));
        assert!(check("emails pr"));
        assert!(check("name pr"));
        assert!(!check("title pr"));
        assert!(!check("nickName pr"));
        assert!(!check("phoneNumbers pr"));
        assert!(!check("userType pr"));
    }

    #[test]
    fn null_ne_and_absent_attributes() {
        assert!(check("nickName eq null"));
        assert!(check("userType eq null"));
        assert!(!check("displayName eq null"));
        assert!(check("displayName ne null"));
        assert!(check(r#"userType ne "Employee""#));
        assert!(!check(r#"displayName ne "ada lovelace""#));
    }

    #[test]
    fn multi_valued_attributes_match_any_value_and_default_to_value() {
        assert!(check(r#"emails.value eq "ADA@acme.com""#));
        assert!(check(r#"emails co "acme.com""#));
        assert!(check(r#"emails.type eq "home""#));
        assert!(!check(r#"emails.type eq "other""#));
    }

    #[test]
    fn value_paths_match_within_one_value() {
        assert!(check(r#"emails[type eq "work" and value co "@other.test"]"#));
        // The work address is not at acme.com; the home one is. No single value matches both.
        assert!(!check(r#"emails[type eq "work" and value co "@acme.com"]"#));
        assert!(check(r#"emails[type eq "home" and not (primary eq true)]"#));
        assert!(check(r#"emails[primary eq true] and userName sw "ada""#));
        assert!(!check(r#"phoneNumbers[type eq "work"]"#));
    }

    #[test]
    fn logic_operators() {
        assert!(check(r#"title pr or userName sw "ada""#));
        assert!(!check(r#"title pr and userName sw "ada""#));
        assert!(check(r#"not (title pr) and (active eq false or name.givenName eq "ada")"#));
        assert!(!check(r#"not (userName pr)"#));
    }

    #[test]
    fn booleans_and_numbers() {
        assert!(check("active eq true"));
        assert!(!check("active eq false"));
        assert!(check(r#"active eq "True""#));
        assert!(check("active ne false"));
        let counted = json!({"n": 10, "f": 2.5});
        assert!(matches(&parse("n gt 9").unwrap(), &counted));
        assert!(matches(&parse("n le 10.0").unwrap(), &counted));
        assert!(matches(&parse("f lt 3").unwrap(), &counted));
        assert!(!matches(&parse("n co 1").unwrap(), &counted));
    }

    #[test]
    fn extension_attributes_by_urn() {
        assert!(check(&format!(r#"{ENTERPRISE_USER_SCHEMA}:employeeNumber eq "701984""#)));
        assert!(check(&format!(r#"{}:manager.value eq "m-26""#, ENTERPRISE_USER_SCHEMA.to_uppercase())));
        assert!(!check(r#"employeeNumber eq "701984""#));
    }

    #[test]
    fn group_members_by_value() {
        let group = json!({
            "schemas": [GROUP_SCHEMA],
            "displayName": "Finance",
            "members": [{"value": "u-1", "display": "Ada"}, {"value": "u-2"}]
        });
        assert!(matches(&parse(r#"members[value eq "u-2"]"#).unwrap(), &group));
        // members.value is caseExact: it holds ids.
        assert!(!matches(&parse(r#"members[value eq "U-2"]"#).unwrap(), &group));
        assert!(matches(&parse(r#"displayName eq "finance""#).unwrap(), &group));
    }

    #[test]
    fn untyped_resources_use_rfc_defaults() {
        let plain = json!({"userName": "Bob", "emails": [{"value": "b@x.test", "type": "Work"}]});
        assert!(matches(&parse(r#"username eq "BOB""#).unwrap(), &plain));
        assert!(matches(&parse(r#"emails[type eq "work"]"#).unwrap(), &plain));
    }

    #[test]
    fn matches_value_for_patch_value_paths() {
        let emails = USER.schema.attribute("emails").unwrap();
        let filter = parse(r#"type eq "WORK" and primary eq true"#).unwrap();
        assert!(matches_value(&filter, &json!({"type": "work", "primary": true}), emails));
        assert!(!matches_value(&filter, &json!({"type": "work"}), emails));
    }

    #[test]
    fn date_time_parsing() {
        assert_eq!(parse_date_time("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(parse_date_time("1970-01-01T01:00:00+01:00"), Some((0, 0)));
        assert_eq!(parse_date_time("2000-03-01T00:00:00.25Z"), Some((951_868_800, 250_000_000)));
        assert_eq!(parse_date_time("1969-12-31T23:59:59-00:00"), Some((-1, 0)));
        assert_eq!(parse_date_time("2024-02-29T12:00:00"), Some((1_709_208_000, 0)));
        for bad in
            ["2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01", "2024-01-01T00:00:00+0100", "x"]
        {
            assert_eq!(parse_date_time(bad), None, "{bad}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn evaluation_never_panics(filter in strategies::filter()) {
                let _ = matches(&filter, &ada());
                let _ = matches(&filter, &json!({"emails": "not a list", "name": [1, {"x": null}]}));
            }
        }
    }
}
