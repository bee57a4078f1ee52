//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9): which
//! attributes of a rendered resource are returned. `id` and `schemas` are
//! always returned (RFC 7643 §7 `returned: always`).

use std::collections::BTreeMap;

use portcullis_scim::ScimType;
use portcullis_scim::filter::parse_attr_path;
use portcullis_scim::schema::{Container, ResourceType};
use serde_json::{Map, Value};

use super::error::ScimError;

/// Where an attribute is in the JSON: top level, or in an extension's object.
type Slot = (Option<&'static str>, &'static str);

/// The attributes a response keeps.
#[derive(Debug, Default, Clone)]
pub struct Projection {
    /// `attributes`: slot → `None` for the whole attribute, or these sub-attributes.
    only: Option<BTreeMap<Slot, Option<Vec<&'static str>>>>,
    /// `excludedAttributes`: same shape.
    excluded: BTreeMap<Slot, Option<Vec<&'static str>>>,
}

fn add(map: &mut BTreeMap<Slot, Option<Vec<&'static str>>>, slot: Slot, sub: Option<&'static str>) {
    let entry = map.entry(slot).or_insert_with(|| Some(Vec::new()));
    match (entry.as_mut(), sub) {
        (Some(subs), Some(sub)) => subs.push(sub),
        (Some(_), None) => *entry = None,
        (None, _) => {}
    }
}

impl Projection {
    /// Resolves the names against `resource_type`; an unknown one is `invalidValue`.
    pub fn new(
        resource_type: &'static ResourceType,
        attributes: &[String],
        excluded: &[String],
    ) -> Result<Self, ScimError> {
        let resolve = |text: &String| {
            let unknown = |detail: String| ScimError::invalid(ScimType::InvalidValue, detail);
            let path = parse_attr_path(text)
                .map_err(|e| unknown(format!("{text:?} is not an attribute path: {e}")))?;
            let resolved = resource_type.resolve(&path).map_err(|e| unknown(e.to_string()))?;
            let container = match resolved.container {
                Container::Resource => None,
                Container::Extension(schema) => Some(schema.id),
            };
            Ok::<_, ScimError>(((container, resolved.attribute.name), resolved.sub_attribute.map(|s| s.name)))
        };
        let mut projection = Projection::default();
        if !attributes.is_empty() {
            let mut only = BTreeMap::new();
            for text in attributes {
                let (slot, sub) = resolve(text)?;
                add(&mut only, slot, sub);
            }
            projection.only = Some(only);
        }
        for text in excluded {
            let (slot, sub) = resolve(text)?;
            add(&mut projection.excluded, slot, sub);
        }
        Ok(projection)
    }

    /// Whether the response will show the core attribute `name` at all (so
    /// that, say, 50,000 members are not read only to be dropped).
    pub fn shows(&self, name: &str) -> bool {
        let slot = (None, name);
        let shown = self.only.as_ref().is_none_or(|only| only.keys().any(|s| *s == slot));
        let excluded = matches!(self.excluded.get(&slot), Some(None));
        shown && !excluded
    }

    /// Whether `excludedAttributes` names the whole core attribute `name`.
    pub fn excludes(&self, name: &str) -> bool {
        matches!(self.excluded.get(&(None, name)), Some(None))
    }

    pub fn apply(&self, resource: Value) -> Value {
        let Value::Object(mut resource) = resource else { return resource };
        if let Some(only) = &self.only {
            let mut kept = Map::new();
            for always in ["schemas", "id"] {
                if let Some(value) = resource.remove(always) {
                    kept.insert(always.to_owned(), value);
                }
            }
            for ((container, name), subs) in only {
                let source = match container {
                    None => Some(&resource),
                    Some(urn) => resource.get(*urn).and_then(Value::as_object),
                };
                let Some(value) = source.and_then(|source| source.get(*name)) else { continue };
                let value = match subs {
                    None => value.clone(),
                    Some(subs) => keep_subs(value, subs),
                };
                let target = match container {
                    None => &mut kept,
                    Some(urn) => {
                        match kept.entry(urn.to_string()).or_insert_with(|| Value::Object(Map::new())) {
                            Value::Object(object) => object,
                            _ => continue,
                        }
                    }
                };
                target.insert((*name).to_owned(), value);
            }
            resource = kept;
        }
        for ((container, name), subs) in &self.excluded {
            if matches!(*name, "id") {
                continue;
            }
            let target = match container {
                None => Some(&mut resource),
                Some(urn) => resource.get_mut(*urn).and_then(Value::as_object_mut),
            };
            let Some(target) = target else { continue };
            match subs {
                None => {
                    target.remove(*name);
                }
                Some(subs) => {
                    if let Some(value) = target.get_mut(*name) {
                        drop_subs(value, subs);
                    }
                }
            }
        }
        Value::Object(resource)
    }
}

fn keep_subs(value: &Value, subs: &[&str]) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .filter(|(k, _)| subs.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|item| keep_subs(item, subs)).collect()),
        other => other.clone(),
    }
}

fn drop_subs(value: &mut Value, subs: &[&str]) {
    match value {
        Value::Object(object) => object.retain(|k, _| !subs.contains(&k.as_str())),
        Value::Array(items) => items.iter_mut().for_each(|item| drop_subs(item, subs)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use portcullis_scim::schema::{GROUP, USER};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn attributes_keep_only_the_named_ones_plus_id_and_schemas() {
        let projection = Projection::new(&USER, &names(&["USERNAME", "emails.value"]), &[]).unwrap();
        let kept = projection.apply(json!({
            "schemas": ["s"], "id": "1", "userName": "ann", "active": true,
            "emails": [{"value": "a@x", "type": "work"}],
        }));
        assert_eq!(
            kept,
            json!({"schemas": ["s"], "id": "1", "userName": "ann", "emails": [{"value": "a@x"}]})
        );
        assert!(!projection.shows("groups"));
    }

    #[test]
    fn excluded_attributes_are_dropped_and_members_need_not_be_read() {
        let projection = Projection::new(&GROUP, &[], &names(&["members", "id"])).unwrap();
        assert!(!projection.shows("members"));
        let kept = projection.apply(json!({"id": "1", "displayName": "g", "members": []}));
        assert_eq!(kept, json!({"id": "1", "displayName": "g"}));
        assert!(Projection::new(&GROUP, &[], &names(&["nosuch"])).is_err());
    }
}
