//! The audit trail over HTTP (`iam.export-audit`): a page of events with
//! filters and a cursor, the chain's head, a re-check of the stored chain,
//! and the export as JSON Lines that `portcullis audit verify` checks.
//!
//! Readers seal first: whatever was committed before the request is in the
//! chain it reads.

use aide::openapi::{ReferenceOr, Response as DocResponse, StatusCode as DocStatus};
use aide::transform::TransformOperation;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::stream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::body::{page_limit, query_pairs};
use super::openapi::{problems, schema_content, string_header};
use super::{AdminCaller, AdminError, IamExportAudit};
use crate::audit::{AuditEntry, AuditEvent, ExportLine, GENESIS_HASH, Outcome, Target};
use crate::store::{AuditFilter, AuditHead, AuditStore as _, ChainCheck, MAX_AUDIT_PAGE};
use crate::token::service::state::TokenServiceState;

/// Events per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 500;

/// One page request: what to show and where to continue.
#[derive(Debug, Default, PartialEq)]
struct PageRequest {
    filter: AuditFilter,
    limit: u32,
    /// Events with a seq below this one (the `nextCursor` of the last page).
    before_seq: Option<i64>,
}

/// `GET {issuer}/api/v1/audit?action=&actor=&target=&outcome=&since=&until=&limit=&cursor=`
pub async fn list(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamExportAudit>,
    RawQuery(query): RawQuery,
) -> Result<Json<AuditPage>, AdminError> {
    let request = parse_page_request(query.as_deref().unwrap_or_default())?;
    let namespace = namespace(&state, &caller).await?;
    let store = state.store();
    store.seal_audit(&namespace).await?;
    // One more than asked: whether there is a next page.
    let mut events =
        store.list_audit(&namespace, &request.filter, request.before_seq, request.limit + 1).await?;
    let more = events.len() > request.limit as usize;
    events.truncate(request.limit as usize);
    let next_cursor = more.then(|| events.last().map(|e| e.seq.to_string())).flatten();
    let head = store.audit_head(&namespace).await?;
    let events =
        events.into_iter().map(|e| SealedEvent { seq: e.seq, hash: e.hash, event: e.event }).collect();
    Ok(Json(AuditPage { organization: namespace, events, head: HeadView::of(head.as_ref()), next_cursor }))
}

pub fn list_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Audit events, newest first").input::<Query<AuditParameters>>().with(|op| problems(op, &[400]))
}

/// The filters and page of `GET {issuer}/api/v1/audit` (read by [`parse_page_request`]).
#[derive(Deserialize, JsonSchema)]
pub struct AuditParameters {
    /// An action, or a prefix ending in `*` (`user.*`).
    pub action: Option<String>,
    /// The actor's name or id.
    pub actor: Option<String>,
    /// The target's id or name.
    pub target: Option<String>,
    pub outcome: Option<Outcome>,
    /// RFC 3339: events at or after.
    pub since: Option<String>,
    /// RFC 3339: events before.
    pub until: Option<String>,
    /// How many at most (default 100).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of the audit trail.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub organization: String,
    pub events: Vec<SealedEvent>,
    pub head: HeadView,
    /// Present when there is a next (older) page: its `cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An event and its place in the chain.
#[derive(Serialize, JsonSchema)]
pub struct SealedEvent {
    pub seq: i64,
    pub hash: String,
    pub event: AuditEvent,
}

/// `GET {issuer}/api/v1/audit/head`: keep it outside Portcullis (a ticket, a
/// log): an export that ends at it, and a stored chain that still reaches
/// it, lost nothing newer.
pub async fn head(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamExportAudit>,
) -> Result<Json<HeadView>, AdminError> {
    let namespace = namespace(&state, &caller).await?;
    state.store().seal_audit(&namespace).await?;
    let head = state.store().audit_head(&namespace).await?;
    Ok(Json(HeadView::of(head.as_ref())))
}

pub fn head_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("The audit chain's head, to keep outside Portcullis")
}

/// `GET {issuer}/api/v1/audit/verification`: re-reads the stored chain and
/// checks every link up to the head.
pub async fn verify(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamExportAudit>,
) -> Result<Json<Verification>, AdminError> {
    let namespace = namespace(&state, &caller).await?;
    state.store().seal_audit(&namespace).await?;
    let body = match state.store().verify_audit(&namespace).await? {
        ChainCheck::Empty => Verification { intact: true, events: Some(0), ..Verification::default() },
        ChainCheck::Intact(report) => Verification {
            intact: true,
            events: Some(report.events),
            first_seq: Some(report.first_seq),
            last_seq: Some(report.last_seq),
            head: Some(report.head),
            finding: None,
        },
        ChainCheck::Broken { first_seq, finding } => {
            // The finding counts lines from the oldest stored event.
            let seq = finding.line().map(|line| first_seq + i64::try_from(line).unwrap_or(i64::MAX) - 1);
            let finding = Finding { seq, detail: finding.to_string() };
            Verification { intact: false, finding: Some(finding), ..Verification::default() }
        }
    };
    Ok(Json(body))
}

pub fn verify_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.summary("Re-check every link of the stored audit chain")
}

/// What re-checking the stored chain found.
#[derive(Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub intact: bool,
    /// How many events were checked (when intact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<i64>,
    /// The head's hash (when intact and not empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Where the chain breaks (when not intact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<Finding>,
}

#[derive(Default, Serialize, JsonSchema)]
pub struct Finding {
    /// The first event that does not follow (null if no event can be named).
    pub seq: Option<i64>,
    pub detail: String,
}

/// `GET {issuer}/api/v1/audit/export`: every sealed event, oldest first, one
/// JSON line each (`application/jsonl`), streamed a page at a time. The
/// export itself is audited, and is the last line of the file.
pub async fn export(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamExportAudit>,
) -> Result<Response, AdminError> {
    let namespace = namespace(&state, &caller).await?;
    let audited = state.store().with_audit(caller.audit_context());
    audited
        .append_audit(
            &namespace,
            AuditEntry::success("audit.export", Target::new("auditTrail", None, Some(&namespace))),
        )
        .await?;
    audited.seal_audit(&namespace).await?;
    let head = audited.audit_head(&namespace).await?;
    let last_seq = head.as_ref().map_or(0, |head| head.seq);
    let pages = stream::try_unfold(
        (state.store().clone(), namespace, 0_i64),
        move |(store, namespace, after)| async move {
            if after >= last_seq {
                return Ok(None);
            }
            let links = store.audit_links(&namespace, after, MAX_AUDIT_PAGE).await?;
            let Some(last) = links.last() else { return Ok::<_, crate::store::StoreError>(None) };
            let next = last.seq;
            let mut text = String::new();
            for link in links.iter().filter(|link| link.seq <= last_seq) {
                text.push_str(&link.to_line());
                text.push('\n');
            }
            Ok(Some((Bytes::from(text), (store, namespace, next))))
        },
    );
    let mut response = Body::from_stream(pages).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jsonl"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(hash) = head.and_then(|head| HeaderValue::from_str(&head.hash).ok()) {
        headers.insert("portcullis-audit-head", hash);
    }
    Ok(response)
}

pub fn export_docs(mut op: TransformOperation<'_>) -> TransformOperation<'_> {
    let response = aide::generate::in_context(|ctx| {
        let mut response = DocResponse {
            description: "Every sealed event, oldest first: one JSON object of this schema per line \
                (JSON Lines), the export's own event last."
                .to_owned(),
            content: [("application/jsonl".to_owned(), schema_content::<ExportLine>(ctx))]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        response.headers.insert(
            "Portcullis-Audit-Head".to_owned(),
            string_header("The head's hash when the export began (absent for an empty trail)."),
        );
        response
    });
    let responses = op.inner_mut().responses.get_or_insert_with(Default::default);
    responses.responses.insert(DocStatus::Code(200), ReferenceOr::Item(response));
    op.summary("Export the audit trail as JSON Lines (audited)")
}

/// The caller's organization's namespace: the audit trail's key.
async fn namespace(
    state: &TokenServiceState,
    caller: &AdminCaller<IamExportAudit>,
) -> Result<String, AdminError> {
    Ok(state.require_organization(&caller.authorized.organization).await?.namespace.clone())
}

/// The chain's head: the last sealed event, and the anchor the oldest
/// stored one follows.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeadView {
    pub seq: i64,
    pub hash: String,
    /// The lowest seq still stored (null once all were pruned; absent for
    /// an empty trail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<Option<i64>>,
    pub anchor: Link,
}

#[derive(Serialize, JsonSchema)]
pub struct Link {
    pub seq: i64,
    pub hash: String,
}

impl HeadView {
    fn of(head: Option<&AuditHead>) -> Self {
        match head {
            Some(head) => Self {
                seq: head.seq,
                hash: head.hash.clone(),
                first_seq: Some(head.first_seq),
                anchor: Link { seq: head.anchor_seq, hash: head.anchor_hash.clone() },
            },
            None => Self {
                seq: 0,
                hash: GENESIS_HASH.to_owned(),
                first_seq: None,
                anchor: Link { seq: 0, hash: GENESIS_HASH.to_owned() },
            },
        }
    }
}

/// Reads the query; unknown, repeated or malformed parameters are refused
/// by name.
fn parse_page_request(query: &str) -> Result<PageRequest, AdminError> {
    let mut request = PageRequest { limit: DEFAULT_PAGE, ..PageRequest::default() };
    for (name, value) in query_pairs(query)? {
        let value = value.into_owned();
        let filter = &mut request.filter;
        match name.as_ref() {
            "action" => filter.action = Some(non_empty(&name, value)?),
            "actor" => filter.actor = Some(non_empty(&name, value)?),
            "target" => filter.target = Some(non_empty(&name, value)?),
            "outcome" => {
                filter.outcome =
                    Some(Outcome::parse(&value).ok_or_else(|| {
                        AdminError::invalid_parameter("outcome", "must be success or failure")
                    })?);
            }
            "since" => filter.since_ms = Some(timestamp_ms(&name, &value)?),
            "until" => filter.until_ms = Some(timestamp_ms(&name, &value)?),
            "limit" => {
                request.limit = page_limit(&value, MAX_PAGE)?;
            }
            "cursor" => {
                request.before_seq =
                    Some(value.parse::<i64>().ok().filter(|seq| *seq > 0).ok_or_else(|| {
                        AdminError::invalid_parameter("cursor", "not a cursor this API returned")
                    })?);
            }
            other => return Err(AdminError::invalid_parameter(other, "unknown parameter")),
        }
    }
    Ok(request)
}

fn non_empty(name: &str, value: String) -> Result<String, AdminError> {
    if value.is_empty() { Err(AdminError::invalid_parameter(name, "must not be empty")) } else { Ok(value) }
}

fn timestamp_ms(name: &str, value: &str) -> Result<i64, AdminError> {
    value.parse::<jiff::Timestamp>().map(|at| at.as_millisecond()).map_err(|_| {
        AdminError::invalid_parameter(name, "must be an RFC 3339 time such as 2026-01-31T12:00:00Z")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_becomes_a_filter_and_a_page() {
        let request =
            parse_page_request("action=user.*&outcome=failure&since=2026-01-01T00:00:00Z&limit=2&cursor=9")
                .unwrap();
        assert_eq!(request.filter.action.as_deref(), Some("user.*"));
        assert_eq!(request.filter.outcome, Some(Outcome::Failure));
        assert_eq!(request.filter.since_ms, Some(1_767_225_600_000));
        assert_eq!((request.limit, request.before_seq), (2, Some(9)));
        assert_eq!(parse_page_request("").unwrap().limit, DEFAULT_PAGE);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, parameter) in [
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("cursor=abc", "cursor"),
            ("outcome=maybe", "outcome"),
            ("since=yesterday", "since"),
            ("actor=", "actor"),
            ("sort=asc", "sort"),
            ("action=a&action=b", "action"),
        ] {
            match parse_page_request(query) {
                Err(AdminError::InvalidParameter { parameter: found, .. }) => {
                    assert_eq!(found, parameter, "{query}")
                }
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
