//! Any UTF-8 as a SCIM filter (RFC 7644 §3.4.2.2): parsing never panics or
//! overflows the stack, what parses prints back to the same AST, and checking
//! and evaluating it against a User never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_scim::{eval, filter, schema};

fuzz_target!(|input: &str| {
    let Ok(parsed) = filter::parse(input) else { return };
    let printed = parsed.to_string();
    // Printing may lengthen strings (escapes), so only the depth limit applies here.
    let limits = filter::Limits { max_length: usize::MAX, max_depth: filter::MAX_DEPTH };
    assert_eq!(filter::parse_with(&printed, limits).as_ref(), Ok(&parsed), "printed as {printed}");
    let _ = filter::validate(&parsed, &schema::USER);
    let user = serde_json::json!({
        "schemas": [schema::USER_SCHEMA],
        "userName": "ada@example.test",
        "emails": [{"value": "ada@example.test", "type": "work", "primary": true}],
        "meta": {"lastModified": "2024-05-01T00:00:00Z"}
    });
    let _ = eval::matches(&parsed, &user);
});
