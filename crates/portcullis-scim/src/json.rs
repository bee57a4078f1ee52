//! Case-insensitive access to resource JSON: SCIM attribute names ignore case
//! (RFC 7643 §2.1), JSON object keys do not.

use serde_json::{Map, Value};

/// The key of `map` that equals `name` ignoring ASCII case, preferring an exact match.
pub(crate) fn find_key<'m>(map: &'m Map<String, Value>, name: &str) -> Option<&'m String> {
    map.get_key_value(name)
        .map(|(key, _)| key)
        .or_else(|| map.keys().find(|key| key.eq_ignore_ascii_case(name)))
}

/// The value of the key of `map` that equals `name` ignoring ASCII case.
pub fn get_ci<'m>(map: &'m Map<String, Value>, name: &str) -> Option<&'m Value> {
    find_key(map, name).and_then(|key| map.get(key))
}

pub(crate) fn get_ci_mut<'m>(map: &'m mut Map<String, Value>, name: &str) -> Option<&'m mut Value> {
    let key = find_key(map, name)?.clone();
    map.get_mut(&key)
}

/// Removes every key equal to `name` ignoring case; returns the first value found.
pub(crate) fn remove_ci(map: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let keys: Vec<String> = map.keys().filter(|key| key.eq_ignore_ascii_case(name)).cloned().collect();
    let mut removed = None;
    for key in keys {
        let value = map.remove(&key);
        if removed.is_none() {
            removed = value;
        }
    }
    removed
}

/// Sets `name` (canonical spelling) to `value`, dropping other spellings of
/// it. An existing entry is overwritten where it is, so key order holds when
/// serde_json preserves it.
pub(crate) fn set_ci(map: &mut Map<String, Value>, name: &str, value: Value) {
    let others: Vec<String> =
        map.keys().filter(|key| key.as_str() != name && key.eq_ignore_ascii_case(name)).cloned().collect();
    for key in others {
        map.remove(&key);
    }
    match map.get_mut(name) {
        Some(slot) => *slot = value,
        None => {
            map.insert(name.to_owned(), value);
        }
    }
}

/// The object under `name`, created empty (canonical spelling) if absent or
/// not an object.
pub(crate) fn object_ci<'m>(map: &'m mut Map<String, Value>, name: &str) -> &'m mut Map<String, Value> {
    if !map.get(name).is_some_and(Value::is_object) {
        let existing = match remove_ci(map, name) {
            Some(Value::Object(object)) => object,
            _ => Map::new(),
        };
        map.insert(name.to_owned(), Value::Object(existing));
    }
    match map.get_mut(name) {
        Some(Value::Object(object)) => object,
        _ => unreachable!("an object was stored under {name:?} just above"),
    }
}

/// Unassigned in the sense of RFC 7643 §2.5: absent, null, or an empty
/// array; an empty string or object counts too for `pr`.
pub(crate) fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(map) => map.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}
