//! Any UTF-8 as a SCIM PATCH path (RFC 7644 §3.5.2): parsing never panics or
//! overflows the stack, what parses prints back to the same path, and
//! resolving it against User and Group never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_scim::{filter, path, schema};

fuzz_target!(|input: &str| {
    let Ok(parsed) = path::parse(input) else { return };
    let printed = parsed.to_string();
    let limits = filter::Limits { max_length: usize::MAX, max_depth: filter::MAX_DEPTH };
    assert_eq!(path::parse_with(&printed, limits).as_ref(), Ok(&parsed), "printed as {printed}");
    let _ = parsed.resolve(&schema::USER);
    let _ = parsed.resolve(&schema::GROUP);
});
