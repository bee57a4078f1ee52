//! The CRDs' own rules, evaluated client-side on the same generated schema the
//! API server enforces, so `validate` rejects before merge what `kubectl apply`
//! would reject at sync: CEL `x-kubernetes-validations` (with kube-cel) and
//! the OpenAPI string patterns. (Types, enums and unknown fields are already
//! refused when a manifest is read into the typed resources.)

use std::collections::{BTreeMap, HashMap};

use kube_cel::{CompiledSchema, Validator, compile_schema};
use regex::Regex;
use serde_json::Value;

use crate::api;

/// One rule an object breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaViolation {
    /// Where, as the API server says it (`spec.oidc`, `spec.redirectUris[0]`).
    pub field_path: String,
    /// The rule's message.
    pub message: String,
    /// The offending value, when it is a plain string (helps to find its line).
    pub value: Option<String>,
}

/// The compiled rules of every Portcullis kind.
pub struct SchemaRules {
    by_kind: BTreeMap<String, KindRules>,
    validator: Validator,
    /// Every `pattern` of the schemas, compiled once: compiling one costs
    /// far more than matching it, and a folder has thousands of strings.
    patterns: HashMap<String, Regex>,
}

struct KindRules {
    schema: Value,
    cel: CompiledSchema,
}

impl Default for SchemaRules {
    fn default() -> Self {
        Self::new()
    }
}

impl SchemaRules {
    /// Compiles the rules of every CRD once.
    pub fn new() -> Self {
        let by_kind = api::crds()
            .into_iter()
            .filter_map(|(_, crd)| {
                let kind = crd.spec.names.kind.clone();
                let schema = crd.spec.versions.first()?.schema.as_ref()?.open_api_v3_schema.as_ref()?;
                let schema = serde_json::to_value(schema).ok()?;
                let cel = compile_schema(&schema);
                Some((kind, KindRules { schema, cel }))
            })
            .collect::<BTreeMap<_, _>>();
        let mut patterns = HashMap::new();
        for rules in by_kind.values() {
            compile_patterns(&rules.schema, &mut patterns);
        }
        SchemaRules { by_kind, validator: Validator::new(), patterns }
    }

    /// The rules `object` (a manifest as written, defaults not yet applied) breaks.
    pub fn check(&self, kind: &str, object: &Value) -> Vec<SchemaViolation> {
        let Some(rules) = self.by_kind.get(kind) else {
            return Vec::new();
        };
        let mut violations = Vec::new();
        check_patterns(&self.patterns, &rules.schema, object, "", &mut violations);
        if let Err(errors) = self.validator.validate_compiled(&rules.cel, object, None) {
            violations.extend(errors.into_vec().into_iter().map(|e| SchemaViolation {
                field_path: e.field_path,
                message: e.message,
                value: None,
            }));
        }
        violations
    }
}

/// Compiles every `pattern` under `schema` into `out`. The patterns are ours
/// and compiled in tests; a bad one is left out, and checks nothing.
fn compile_patterns(schema: &Value, out: &mut HashMap<String, Regex>) {
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && !out.contains_key(pattern)
        && let Ok(regex) = Regex::new(pattern)
    {
        out.insert(pattern.to_owned(), regex);
    }
    match schema {
        Value::Object(map) => map.values().for_each(|v| compile_patterns(v, out)),
        Value::Array(items) => items.iter().for_each(|v| compile_patterns(v, out)),
        _ => {}
    }
}

/// OpenAPI `pattern` on every string the schema constrains, worded as the API
/// server words it.
fn check_patterns(
    patterns: &HashMap<String, Regex>,
    schema: &Value,
    value: &Value,
    path: &str,
    out: &mut Vec<SchemaViolation>,
) {
    match value {
        Value::String(text) => {
            let Some(pattern) = schema.get("pattern").and_then(Value::as_str) else { return };
            if patterns.get(pattern).is_some_and(|re| !re.is_match(text)) {
                out.push(SchemaViolation {
                    field_path: path.to_owned(),
                    message: format!("should match '{pattern}'"),
                    value: Some(text.clone()),
                });
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else { return };
            for (i, item) in items.iter().enumerate() {
                check_patterns(patterns, item_schema, item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(fields) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
            for (name, field) in fields {
                if let Some(field_schema) = properties.get(name) {
                    let child = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                    check_patterns(patterns, field_schema, field, &child, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_public_client_with_a_secret_breaks_its_rule() {
        let rules = SchemaRules::new();
        let client = json!({
            "apiVersion": api::API_VERSION, "kind": "OAuthClient", "metadata": {"name": "web"},
            "spec": {"type": "Public", "grantTypes": ["authorization_code"],
                     "redirectUris": ["https://app.example.com/cb"],
                     "clientSecretRef": {"name": "s"}}
        });
        let violations = rules.check("OAuthClient", &client);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].message.starts_with("a Public client has no secret"), "{violations:?}");
        assert_eq!(violations[0].field_path, "spec.clientSecretRef");
    }

    #[test]
    fn a_permission_name_outside_the_pattern_is_reported_like_the_api_server_does() {
        let rules = SchemaRules::new();
        let org = json!({
            "apiVersion": api::API_VERSION, "kind": "Organization", "metadata": {"name": "o"},
            "spec": {"displayName": "O", "permissions": [{"name": "journeys.view"}, {"name": "Journeys.Publish"}]}
        });
        let violations = rules.check("Organization", &org);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field_path, "spec.permissions[1].name");
        assert!(violations[0].message.starts_with("should match '^"), "{violations:?}");
        assert_eq!(violations[0].value.as_deref(), Some("Journeys.Publish"));
    }

    #[test]
    fn every_pattern_in_the_crds_compiles() {
        fn walk(schema: &Value) {
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                Regex::new(pattern).unwrap_or_else(|e| panic!("pattern {pattern}: {e}"));
            }
            match schema {
                Value::Object(map) => map.values().for_each(walk),
                Value::Array(items) => items.iter().for_each(walk),
                _ => {}
            }
        }
        for (_, crd) in api::crds() {
            walk(&serde_json::to_value(&crd).unwrap());
        }
    }

    #[test]
    fn defaults_from_the_schema_apply_before_the_rules() {
        let rules = SchemaRules::new();
        // scope defaults to Organization, so no workspace is fine.
        let ra = json!({
            "apiVersion": api::API_VERSION, "kind": "RoleAssignment", "metadata": {"name": "a"},
            "spec": {"principal": {"kind": "User", "name": "ann@acme.com"}, "role": "viewer"}
        });
        assert_eq!(rules.check("RoleAssignment", &ra), []);
    }
}
