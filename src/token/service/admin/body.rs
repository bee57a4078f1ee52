//! Request bodies and versions of the admin API: JSON read with the path of
//! the first field at fault (unknown fields refused, so a misspelt one is
//! never silently ignored), a size limit answered 413, and `If-Match` /
//! `ETag` carrying a row's version (RFC 9110 §13.1.1, §8.8.3).

use std::borrow::Cow;
use std::marker::PhantomData;

use aide::generate::GenContext;
use aide::openapi::{Operation, RequestBody, Response as DocResponse, StatusCode as DocStatus};
use aide::{OperationInput, OperationOutput};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::AdminError;
use super::openapi::{problem_responses, schema_content, string_header};

/// The largest body the admin API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Reads a JSON body as `T`: unknown fields, wrong types and missing fields
/// are named by their path.
pub fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, AdminError> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AdminError::TooLarge,
        _ => AdminError::invalid_field("", rejection.body_text()),
    })?;
    let mut unknown: Option<String> = None;
    let mut note_unknown = |path: serde_ignored::Path<'_>| {
        unknown.get_or_insert_with(|| field_path(&path));
    };
    let deserializer = &mut serde_json::Deserializer::from_slice(&body);
    let ignored = serde_ignored::Deserializer::new(deserializer, &mut note_unknown);
    let value: Result<T, _> = serde_path_to_error::deserialize(ignored);
    let value = value.map_err(|error| {
        let field = error.path().to_string();
        let field = if field == "." { String::new() } else { field };
        AdminError::invalid_field(&field, error.into_inner().to_string())
    })?;
    if let Some(field) = unknown {
        return Err(AdminError::invalid_field(&field, "unknown field"));
    }
    Ok(value)
}

/// A JSON body of type `T`, read when the handler says so ([`JsonBody::read`]):
/// after the caller is authorized and in the order the handler checks its
/// input. Documents itself as `application/json` of `T`'s schema.
pub struct JsonBody<T> {
    bytes: Result<Bytes, BytesRejection>,
    body: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> JsonBody<T> {
    /// The body as `T`, or the fault named by its path ([`json_body`]).
    pub fn read(self) -> Result<T, AdminError> {
        json_body(self.bytes)
    }
}

impl<T: DeserializeOwned + Default> JsonBody<T> {
    /// As [`read`](Self::read), with an empty body read as `T::default()`:
    /// for actions whose every field is optional.
    pub fn read_or_default(self) -> Result<T, AdminError> {
        match &self.bytes {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
            _ => self.read(),
        }
    }
}

impl<S: Send + Sync, T> FromRequest<S> for JsonBody<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self { bytes: Bytes::from_request(request, state).await, body: PhantomData })
    }
}

impl<T: JsonSchema> OperationInput for JsonBody<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let body = RequestBody {
            description: None,
            content: [("application/json".to_owned(), schema_content::<T>(ctx))].into_iter().collect(),
            required: true,
            extensions: Default::default(),
        };
        aide::operation::set_body(ctx, operation, body);
    }

    fn inferred_early_responses(
        ctx: &mut GenContext,
        _operation: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        problem_responses(ctx, &[400, 413])
    }
}

/// A JSON answer with the row's version as its `ETag`.
pub struct Versioned<T> {
    pub status: StatusCode,
    pub version: i64,
    pub body: T,
    /// Where a created object is (`Location`).
    pub location: Option<String>,
}

impl<T> Versioned<T> {
    pub fn ok(version: i64, body: T) -> Self {
        Self { status: StatusCode::OK, version, body, location: None }
    }

    pub fn created(version: i64, body: T, location: String) -> Self {
        Self { status: StatusCode::CREATED, version, body, location: Some(location) }
    }
}

impl<T: Serialize> IntoResponse for Versioned<T> {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::ETAG, etag(self.version));
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        response
    }
}

/// 200 with `T` and an `ETag` (a handler's `*_docs` says where it is 201).
impl<T: JsonSchema> OperationOutput for Versioned<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<DocResponse> {
        let mut response = Json::<T>::operation_response(ctx, operation)?;
        if response.description.is_empty() {
            response.description = "OK.".to_owned();
        }
        response
            .headers
            .insert("ETag".to_owned(), string_header("The version, for `If-Match` (RFC 9110 §8.8.3)."));
        Some(response)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, operation)
            .map(|r| (Some(DocStatus::Code(200)), r))
            .into_iter()
            .collect()
    }
}

/// An ignored field's path written as `serde_path_to_error` writes the
/// others (`emails[0].kind`), so that every fault names its field one way.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            field_path(parent)
        }
    }
}

/// For a field that may be absent (leave it), `null` (clear it) or a value:
/// `#[serde(default, deserialize_with = "present")] Option<Option<T>>`.
pub fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The version `If-Match` names: `None` when absent or `*`.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, AdminError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| AdminError::invalid_parameter("If-Match", "must be an ETag this API returned"))
}

/// Documents the optional `If-Match` request header ([`if_match`]).
pub struct IfMatch;

impl OperationInput for IfMatch {
    fn operation_input(_ctx: &mut GenContext, operation: &mut Operation) {
        let parameter = serde_json::json!({
            "in": "header",
            "name": "If-Match",
            "required": false,
            "description": "Only if the stored version is still this `ETag` (else 412).",
            "schema": { "type": "string" },
        });
        if let Ok(parameter) = serde_json::from_value(parameter) {
            operation.parameters.push(aide::openapi::ReferenceOr::Item(parameter));
        }
    }

    fn inferred_early_responses(
        ctx: &mut GenContext,
        _operation: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        problem_responses(ctx, &[400])
    }
}

/// The `ETag` of version `version`.
pub fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// One `name=value` of a query string, decoded.
pub type QueryPair<'q> = (Cow<'q, str>, Cow<'q, str>);

/// The parameters of a query string, each name at most once: a repeated one
/// is refused, by name (every list of the admin API reads its query so).
pub fn query_pairs(query: &str) -> Result<Vec<QueryPair<'_>>, AdminError> {
    let mut pairs: Vec<QueryPair<'_>> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if pairs.iter().any(|(seen, _)| *seen == name) {
            return Err(AdminError::invalid_parameter(&name, "given more than once"));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// The `nextCursor` of a list ordered by creation: the last item's
/// `{created_ms}:{id}`, base64url (opaque to callers).
pub fn created_cursor(created_ms: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created_ms}:{id}"))
}

/// A `cursor` parameter made by [`created_cursor`].
pub fn parse_created_cursor(value: &str) -> Result<(i64, String), AdminError> {
    URL_SAFE_NO_PAD
        .decode(value.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let (created, id) = text.split_once(':')?;
            Some((created.parse::<i64>().ok()?, id.to_owned()))
        })
        .ok_or_else(|| AdminError::invalid_parameter("cursor", "not a cursor this API returned"))
}

/// A list's `limit`: 1 to `max`.
pub fn page_limit(value: &str, max: u32) -> Result<u32, AdminError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|limit| (1..=max).contains(limit))
        .ok_or_else(|| AdminError::invalid_parameter("limit", format!("must be 1 to {max}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_cursor_reads_back_and_anything_else_is_refused() {
        let cursor = created_cursor(1_765_000_000_123, "ar-7:x");
        assert_eq!(parse_created_cursor(&cursor).unwrap(), (1_765_000_000_123, "ar-7:x".to_owned()));
        for bad in ["", "!!", &URL_SAFE_NO_PAD.encode("no-colon"), &URL_SAFE_NO_PAD.encode("x:1")] {
            assert!(parse_created_cursor(bad).is_err(), "{bad:?}");
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Outer {
        #[allow(dead_code)]
        user_name: String,
        #[serde(default)]
        #[allow(dead_code)]
        emails: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    struct Inner {
        #[allow(dead_code)]
        value: String,
    }

    fn field_of(body: &str) -> String {
        match json_body::<Outer>(Ok(Bytes::from(body.to_owned()))) {
            Err(AdminError::InvalidField { field, .. }) => field,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn faults_are_named_by_their_path() {
        assert_eq!(field_of(r#"{"userName": 3}"#), "userName");
        assert_eq!(field_of(r#"{"userName": "a", "emails": [{"value": 1}]}"#), "emails[0].value");
        assert_eq!(field_of(r#"{"userName": "a", "nickname": "b"}"#), "nickname");
        assert_eq!(
            field_of(r#"{"userName": "a", "emails": [{"value": "x", "kind": "y"}]}"#),
            "emails[0].kind"
        );
        assert_eq!(field_of("{}"), "");
        assert!(json_body::<Outer>(Ok(Bytes::from_static(br#"{"userName": "a"}"#))).is_ok());
    }

    #[test]
    fn if_match_reads_our_etags() {
        let mut headers = HeaderMap::new();
        assert_eq!(if_match(&headers).unwrap(), None);
        headers.insert(header::IF_MATCH, etag(7));
        assert_eq!(if_match(&headers).unwrap(), Some(7));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("W/\"3\""));
        assert_eq!(if_match(&headers).unwrap(), Some(3));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("\"x\""));
        assert!(if_match(&headers).is_err());
    }
}
