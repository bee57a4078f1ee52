//! Checks answers of the admin API against the OpenAPI document the token
//! service serves at `{issuer}/api/v1/openapi.json`: the operation is found
//! by path template and method, the response by status (then `4XX`, then
//! `default`), the media type by `Content-Type`, and the body is validated
//! with the `jsonschema` crate (draft 2020-12, `$ref`s resolved against the
//! document's `components`). JSON Lines are validated line by line.
//!
//! Include it with `#[path = "support/openapi.rs"] mod openapi;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

/// An answer of the API, read whole.
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    /// Reads `response` (to a `method` request) to the end, and panics
    /// unless the document `issuer` serves describes it: the operation of
    /// the URL's path and `method`, the status, the Content-Type, the body.
    pub async fn described(issuer: &str, method: &str, response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let path = response.url().path().to_owned();
        let text = response.text().await.expect("read the body");
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
        OpenApi::of(issuer).await.assert_describes(method, &path, status.as_u16(), content_type, &text);
        Answer { status, headers, text }
    }
}

/// The document one issuer serves, and the validators built from it.
pub struct OpenApi {
    document: Value,
    /// The path of the server URL (`/o/acme`): what concrete paths start with.
    server_path: String,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// One document per issuer, fetched the first time it is needed.
static DOCUMENTS: OnceLock<Mutex<HashMap<String, Arc<OpenApi>>>> = OnceLock::new();

impl OpenApi {
    /// The document `issuer` serves (fetched once per issuer).
    pub async fn of(issuer: &str) -> Arc<OpenApi> {
        let documents = DOCUMENTS.get_or_init(Default::default);
        if let Some(document) = documents.lock().unwrap().get(issuer) {
            return document.clone();
        }
        let url = format!("{issuer}/api/v1/openapi.json");
        let response = reqwest::get(&url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status(), reqwest::StatusCode::OK, "GET {url}");
        let document: Value = response.json().await.expect("the OpenAPI document is JSON");
        let document = Arc::new(OpenApi::new(document));
        documents.lock().unwrap().insert(issuer.to_owned(), document.clone());
        document
    }

    pub fn new(document: Value) -> Self {
        assert_eq!(document["openapi"], "3.1.0", "an OpenAPI 3.1 document");
        let server = document["servers"][0]["url"].as_str().expect("the document names its server");
        let server_path = reqwest::Url::parse(server).expect("the server is a URL").path().to_owned();
        Self {
            document,
            server_path: server_path.trim_end_matches('/').to_owned(),
            validators: Default::default(),
        }
    }

    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The path template that describes `path` (`/o/acme/api/v1/users/42` →
    /// `/api/v1/users/{id}`): literal segments win over parameters.
    pub fn template_of(&self, path: &str) -> Result<String, String> {
        let path = path.split('?').next().unwrap_or_default();
        let relative = path
            .strip_prefix(&self.server_path)
            .ok_or_else(|| format!("{path} is not under the server's path {}", self.server_path))?;
        let segments: Vec<&str> = relative.split('/').collect();
        let paths = self.document["paths"].as_object().ok_or("the document has no paths")?;
        paths
            .keys()
            .filter_map(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut literals = 0;
                for (part, segment) in parts.iter().zip(&segments) {
                    if part.starts_with('{') && part.ends_with('}') {
                        if segment.is_empty() {
                            return None;
                        }
                    } else if part == segment {
                        literals += 1;
                    } else {
                        return None;
                    }
                }
                Some((literals, template))
            })
            .max_by_key(|(literals, _)| *literals)
            .map(|(_, template)| template.clone())
            .ok_or_else(|| format!("no path of the document describes {path}"))
    }

    /// Checks one answer: `Err` says what the document does not describe.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &str,
    ) -> Result<(), String> {
        let template = self.template_of(path)?;
        let method = method.to_ascii_lowercase();
        let operation = &self.document["paths"][&template][&method];
        if !operation.is_object() {
            return Err(format!("the document has no {method} {template}"));
        }
        let responses = &operation["responses"];
        let (key, response) = [status.to_string(), format!("{}XX", status / 100), "default".to_owned()]
            .into_iter()
            .find_map(|key| responses.get(&key).map(|response| (key, response)))
            .ok_or_else(|| format!("{method} {template} declares no response {status}"))?;
        let content = response.get("content").and_then(Value::as_object);
        let Some(content) = content.filter(|c| !c.is_empty()) else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!("{method} {template} {status} declares no body, but one came: {body}"))
            };
        };
        let media_type = content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("{method} {template} {status}: no Content-Type"))?;
        let Some(described) = content.get(&media_type) else {
            return Err(format!(
                "{method} {template} {status}: Content-Type {media_type} is not one of {:?}",
                content.keys().collect::<Vec<_>>()
            ));
        };
        let Some(schema) = described.get("schema") else { return Ok(()) };
        let validator = self.validator(&format!("{method} {template} {key} {media_type}"), schema)?;
        let documents: Vec<&str> = if media_type.ends_with("jsonl") {
            body.lines().filter(|line| !line.is_empty()).collect()
        } else {
            vec![body]
        };
        for (n, text) in documents.into_iter().enumerate() {
            let instance: Value = serde_json::from_str(text)
                .map_err(|e| format!("{method} {template} {status}: not JSON ({e}): {text}"))?;
            let errors: Vec<String> =
                validator.iter_errors(&instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
            if !errors.is_empty() {
                return Err(format!(
                    "{method} {template} {status} (document {n}): the body does not match the schema: {}\n{text}",
                    errors.join("; ")
                ));
            }
        }
        Ok(())
    }

    /// Panics with what the document does not describe.
    #[track_caller]
    pub fn assert_describes(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &str,
    ) {
        if let Err(finding) = self.check(method, path, status, content_type, body) {
            panic!("the OpenAPI document does not describe this answer: {finding}");
        }
    }

    /// A validator of `schema` whose `#/components/...` references resolve
    /// to the document's components.
    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(validator) = self.validators.lock().unwrap().get(key) {
            return Ok(validator.clone());
        }
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.document["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .map_err(|e| format!("{key}: the schema does not compile: {e}"))?;
        let validator = Arc::new(validator);
        self.validators.lock().unwrap().insert(key.to_owned(), validator.clone());
        Ok(validator)
    }
}
