//! `POST /.search` at the service root (RFC 7644 §3.4.3): one query over
//! every resource type, answered as one ListResponse of Users then Groups.
//!
//! ```text
//!  SearchRequest ─► for_resource_type(User)  ─► plan ─► users  [startIndex … )
//!               └─► for_resource_type(Group) ─► plan ─► groups [what the users left of the page)
//! ```
//!
//! Each type sees the request with the attribute names (and `sortBy`) it
//! has; a filter naming an attribute one type lacks matches none of that
//! type's resources, and is `invalidFilter` only when no type has it.
//! `sortBy` orders within each type; Users always come before Groups.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use portcullis_scim::schema::{GROUP, USER};

use super::auth::ScimCaller;
use super::error::ScimError;
use super::listing::{ListRequest, list_response};
use super::{ScimState, groups, json_body, scim_response, users};
use crate::store::scim_query::Resource;

pub(super) async fn search_all(
    caller: ScimCaller,
    State(state): State<ScimState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let request = ListRequest::from_search_body(&json_body(body)?)?;
    let backend = state.store.backend();
    let users_plan = request.for_resource_type(&USER).plan(Resource::Users, &USER, backend);
    let groups_plan = request.for_resource_type(&GROUP).plan(Resource::Groups, &GROUP, backend);
    let (users_plan, mut groups_plan) = match (users_plan, groups_plan) {
        (Err(error), Err(_)) => return Err(error),
        (users, groups) => (users.ok(), groups.ok()),
    };
    // Both plans share the window: it comes from the request alone.
    let window = users_plan.as_ref().or(groups_plan.as_ref()).map(|plan| (plan.start_index, plan.count));
    let (start_index, count) = window.unwrap_or((1, 0));
    let (users_total, mut resources) = match &users_plan {
        Some(plan) => users::user_page(&state, &caller, plan).await?,
        None => (0, Vec::new()),
    };
    let mut total = users_total;
    if let Some(plan) = &mut groups_plan {
        // The page goes on where the users end.
        plan.start_index = (start_index - 1).saturating_sub(users_total) + 1;
        plan.count = count.saturating_sub(u32::try_from(resources.len()).unwrap_or(u32::MAX));
        let (groups_total, groups) = groups::group_page(&state, &caller, plan).await?;
        total += groups_total;
        resources.extend(groups);
    }
    Ok(scim_response(StatusCode::OK, &list_response(total, start_index, resources), None, None))
}
