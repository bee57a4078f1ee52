//! `portcullis openapi`: the admin API's OpenAPI 3.1 document, as every
//! token service serves it at `{issuer}/api/v1/openapi.json`.

use std::process::ExitCode;

use crate::token::service::admin;

/// Prints the document with `issuer` as its server.
pub fn run(issuer: &str) -> ExitCode {
    let mut document = admin::openapi_document();
    document["servers"] = serde_json::json!([{ "url": issuer.trim_end_matches('/') }]);
    match serde_json::to_string_pretty(&document) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: cannot write the document: {error}");
            ExitCode::FAILURE
        }
    }
}
