//! The audit trail over HTTP (`iam.export-audit`): a page of events with
//! filters and a cursor, the chain's head, a re-check of the stored chain,
//! and the export as JSON Lines that `portcullis audit verify` checks.
//!
//! Readers seal first: whatever was committed before the request is in the
//! chain it reads.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::stream;
use serde_json::{Value, json};

use super::{AdminCaller, AdminError, IamExportAudit};
use crate::audit::{AuditEntry, GENESIS_HASH, Outcome, Target};
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
) -> Result<Json<Value>, AdminError> {
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
    let items: Vec<Value> =
        events.iter().map(|e| json!({ "seq": e.seq, "hash": e.hash, "event": e.event })).collect();
    let mut body = json!({ "organization": namespace, "events": items, "head": head_json(head.as_ref()) });
    if let Some(cursor) = next_cursor {
        body["nextCursor"] = json!(cursor);
    }
    Ok(Json(body))
}

/// `GET {issuer}/api/v1/audit/head`: keep it outside Portcullis (a ticket, a
/// log): an export that ends at it, and a stored chain that still reaches
/// it, lost nothing newer.
pub async fn head(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamExportAudit>,
) -> Result<Json<Value>, AdminError> {
    let namespace = namespace(&state, &caller).await?;
    state.store().seal_audit(&namespace).await?;
    let head = state.store().audit_head(&namespace).await?;
    Ok(Json(head_json(head.as_ref())))
}

/// `GET {issuer}/api/v1/audit/verification`: re-reads the stored chain and
/// checks every link up to the head.
pub async fn verify(
    State(state): State<TokenServiceState>,
    caller: AdminCaller<IamExportAudit>,
) -> Result<Json<Value>, AdminError> {
    let namespace = namespace(&state, &caller).await?;
    state.store().seal_audit(&namespace).await?;
    let body = match state.store().verify_audit(&namespace).await? {
        ChainCheck::Empty => json!({ "intact": true, "events": 0 }),
        ChainCheck::Intact(report) => json!({
            "intact": true,
            "events": report.events,
            "firstSeq": report.first_seq,
            "lastSeq": report.last_seq,
            "head": report.head,
        }),
        ChainCheck::Broken { first_seq, finding } => {
            // The finding counts lines from the oldest stored event.
            let seq = finding.line().map(|line| first_seq + i64::try_from(line).unwrap_or(i64::MAX) - 1);
            json!({ "intact": false, "finding": { "seq": seq, "detail": finding.to_string() } })
        }
    };
    Ok(Json(body))
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

/// The caller's organization's namespace: the audit trail's key.
async fn namespace(
    state: &TokenServiceState,
    caller: &AdminCaller<IamExportAudit>,
) -> Result<String, AdminError> {
    Ok(state.require_organization(&caller.authorized.organization).await?.namespace.clone())
}

fn head_json(head: Option<&AuditHead>) -> Value {
    match head {
        Some(head) => json!({
            "seq": head.seq,
            "hash": head.hash,
            "firstSeq": head.first_seq,
            "anchor": { "seq": head.anchor_seq, "hash": head.anchor_hash },
        }),
        None => json!({ "seq": 0, "hash": GENESIS_HASH, "anchor": { "seq": 0, "hash": GENESIS_HASH } }),
    }
}

/// Reads the query; unknown, repeated or malformed parameters are refused
/// by name.
fn parse_page_request(query: &str) -> Result<PageRequest, AdminError> {
    let mut request = PageRequest { limit: DEFAULT_PAGE, ..PageRequest::default() };
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if seen.iter().any(|s| *s == name) {
            return Err(AdminError::invalid_parameter(&name, "given more than once"));
        }
        seen.push(name.to_string());
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
                request.limit =
                    value.parse::<u32>().ok().filter(|limit| (1..=MAX_PAGE).contains(limit)).ok_or_else(
                        || AdminError::invalid_parameter("limit", format!("must be 1 to {MAX_PAGE}")),
                    )?;
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
