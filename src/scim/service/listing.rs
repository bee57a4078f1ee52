//! Query parameters of a list or `.search` request (RFC 7644 §3.4.2, §3.4.3)
//! and the ListResponse they produce: filter, sortBy/sortOrder,
//! startIndex/count, attributes/excludedAttributes.

use portcullis_scim::ScimType;
use portcullis_scim::filter::{self, parse_attr_path};
use portcullis_scim::schema::ResourceType;
use serde_json::{Value, json};

use super::error::ScimError;
use super::projection::Projection;
use crate::store::Backend;
use crate::store::scim::PageQuery;
use crate::store::scim_query::{self, Resource, SqlWhere};

/// `schemas` URI of a list response (RFC 7644 §3.4.2).
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// `schemas` URI of a `.search` request body (RFC 7644 §3.4.3).
pub const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// Most resources in one page; `count` above it is lowered (RFC 7644 §3.4.2.4).
pub const MAX_RESULTS: u32 = 1000;
/// Page size when the client names none.
pub const DEFAULT_COUNT: u32 = 100;

/// A list request as sent, before it is checked against a resource type.
#[derive(Debug, Default, Clone)]
pub struct ListRequest {
    filter: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    attributes: Vec<String>,
    excluded_attributes: Vec<String>,
}

/// A checked list request: SQL to run, the window, and what to return.
pub struct PlannedList {
    pub filter: Option<SqlWhere>,
    pub order_by: String,
    /// 1-based, as the client counts.
    pub start_index: u64,
    pub count: u32,
    pub projection: Projection,
}

impl PlannedList {
    pub fn page(&self) -> PageQuery<'_> {
        PageQuery {
            filter: self.filter.as_ref(),
            order_by: &self.order_by,
            offset: self.start_index - 1,
            limit: self.count,
        }
    }
}

fn integer(name: &str, text: &str) -> Result<i64, ScimError> {
    text.trim().parse().map_err(|_| {
        ScimError::invalid(ScimType::InvalidValue, format!("{name} must be an integer, not {text:?}"))
    })
}

fn names(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl ListRequest {
    /// From the query string of `GET /Users` (parameter names in any case).
    pub fn from_query(pairs: &[(String, String)]) -> Result<Self, ScimError> {
        let mut request = ListRequest::default();
        for (name, value) in pairs {
            match name.to_ascii_lowercase().as_str() {
                "filter" => request.filter = Some(value.clone()),
                "sortby" => request.sort_by = Some(value.clone()),
                "sortorder" => request.sort_order = Some(value.clone()),
                "startindex" => request.start_index = Some(integer("startIndex", value)?),
                "count" => request.count = Some(integer("count", value)?),
                "attributes" => request.attributes.extend(names(value)),
                "excludedattributes" => request.excluded_attributes.extend(names(value)),
                _ => {}
            }
        }
        Ok(request)
    }

    /// From the body of `POST …/.search` (RFC 7644 §3.4.3).
    pub fn from_search_body(body: &Value) -> Result<Self, ScimError> {
        let invalid = |detail: String| ScimError::invalid(ScimType::InvalidSyntax, detail);
        let body = body.as_object().ok_or_else(|| invalid("a SearchRequest is a JSON object".into()))?;
        let mut request = ListRequest::default();
        for (name, value) in body {
            let text = || -> Result<String, ScimError> {
                value.as_str().map(str::to_owned).ok_or_else(|| invalid(format!("{name} must be a string")))
            };
            let number = || -> Result<i64, ScimError> {
                match value {
                    Value::Number(n) => {
                        n.as_i64().ok_or_else(|| invalid(format!("{name} must be an integer")))
                    }
                    Value::String(s) => integer(name, s),
                    _ => Err(invalid(format!("{name} must be an integer"))),
                }
            };
            let list = || -> Result<Vec<String>, ScimError> {
                match value {
                    Value::String(s) => Ok(names(s)),
                    Value::Array(items) => items
                        .iter()
                        .map(|item| item.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| invalid(format!("{name} must list attribute names"))),
                    _ => Err(invalid(format!("{name} must list attribute names"))),
                }
            };
            match name.to_ascii_lowercase().as_str() {
                "schemas" => {
                    let declared = value.as_array().is_some_and(|schemas| {
                        schemas.iter().any(|s| {
                            s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(SEARCH_REQUEST_SCHEMA))
                        })
                    });
                    if !declared {
                        return Err(invalid(format!("\"schemas\" must contain {SEARCH_REQUEST_SCHEMA:?}")));
                    }
                }
                "filter" => request.filter = Some(text()?),
                "sortby" => request.sort_by = Some(text()?),
                "sortorder" => request.sort_order = Some(text()?),
                "startindex" => request.start_index = Some(number()?),
                "count" => request.count = Some(number()?),
                "attributes" => request.attributes = list()?,
                "excludedattributes" => request.excluded_attributes = list()?,
                other => return Err(invalid(format!("unknown SearchRequest member {other:?}"))),
            }
        }
        Ok(request)
    }

    /// The request as one resource type of a root `/.search` sees it
    /// (RFC 7644 §3.4.3): the attribute names and the sortBy it has; if it has
    /// none of the `attributes` asked for, only what is always returned.
    pub fn for_resource_type(&self, resource_type: &'static ResourceType) -> ListRequest {
        let known =
            |text: &String| parse_attr_path(text).is_ok_and(|path| resource_type.resolve(&path).is_ok());
        let mut narrowed = self.clone();
        narrowed.attributes.retain(|text| known(text));
        if narrowed.attributes.is_empty() && !self.attributes.is_empty() {
            narrowed.attributes.push("id".to_owned());
        }
        narrowed.excluded_attributes.retain(|text| known(text));
        narrowed.sort_by = self.sort_by.clone().filter(|text| known(text));
        narrowed
    }

    /// Only `attributes`/`excludedAttributes`, for a request of one resource.
    pub fn projection(&self, resource_type: &'static ResourceType) -> Result<Projection, ScimError> {
        Projection::new(resource_type, &self.attributes, &self.excluded_attributes)
    }

    /// Checks the request against `resource` and translates its filter.
    pub fn plan(
        &self,
        resource: Resource,
        resource_type: &'static ResourceType,
        backend: Backend,
    ) -> Result<PlannedList, ScimError> {
        let filter = match &self.filter {
            Some(text) => {
                let parsed = filter::parse_for(text, resource_type)?;
                Some(scim_query::translate(&parsed, resource, backend)?)
            }
            None => None,
        };
        let sort_by = match &self.sort_by {
            Some(text) => Some(parse_attr_path(text).map_err(|e| {
                ScimError::invalid(
                    ScimType::InvalidValue,
                    format!("sortBy {text:?} is not an attribute path: {e}"),
                )
            })?),
            None => None,
        };
        let descending = match self.sort_order.as_deref() {
            None => false,
            Some(order) if order.eq_ignore_ascii_case("ascending") => false,
            Some(order) if order.eq_ignore_ascii_case("descending") => true,
            Some(other) => {
                return Err(ScimError::invalid(
                    ScimType::InvalidValue,
                    format!("sortOrder must be ascending or descending, not {other:?}"),
                ));
            }
        };
        let order_by = scim_query::order_by(sort_by.as_ref(), descending, resource, backend)?;
        // RFC 7644 §3.4.2.4: startIndex below 1 is 1; a negative count is 0.
        let start_index = u64::try_from(self.start_index.unwrap_or(1).max(1)).unwrap_or(1);
        let count =
            u32::try_from(self.count.unwrap_or(i64::from(DEFAULT_COUNT)).clamp(0, i64::from(MAX_RESULTS)))
                .unwrap_or(DEFAULT_COUNT);
        let projection = Projection::new(resource_type, &self.attributes, &self.excluded_attributes)?;
        Ok(PlannedList { filter, order_by, start_index, count, projection })
    }
}

/// A ListResponse (RFC 7644 §3.4.2).
pub fn list_response(total: u64, start_index: u64, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}
