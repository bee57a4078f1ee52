//! Access request notifications: the outbox the store fills in each step's
//! transaction ([`crate::store::access_requests`]), delivered to the
//! webhooks of the Organization's `spec.accessRequests.notifications`.
//!
//! ```text
//!  access_request_notifications ──claim (lease, compare-and-set)──► render Slack | Teams JSON
//!     ▲ retry at 2^n s (≤ 5 min), at most MAX_ATTEMPTS      ──► POST, signed:
//!     └──────────────────────────── a webhook refused          X-Portcullis-Signature: sha256=<hex HMAC-SHA256(body)>
//!                                                              X-Portcullis-Timestamp: <unix seconds>
//! ```
//!
//! Each webhook that accepted (2xx) is recorded, so a retry sends only to
//! those that did not. Webhook URLs are `https://`, or `http://` to a
//! loopback address (the upstream HTTP client's rule). The payload links to
//! the approval page `{issuer}/admin/access-requests/{id}`.

use std::time::Duration;

use ring::hmac;
use serde_json::{Value, json};

use super::state::TokenServiceState;
use crate::api::{AccessRequestWebhook, WebhookFormat};
use crate::error_chain::error_chain;
use crate::federation::http::UpstreamHttp;
use crate::store::access_requests::{
    AccessRequest, AccessRequestStore as _, ClaimedNotification, NotificationEvent, NotificationOutcome,
};
use crate::store::{DesiredStateStore as _, OrganizationRecord};

/// How often the outbox is looked at.
const POLL: Duration = Duration::from_secs(1);
/// How long a claimed row is this worker's (longer than an attempt can take).
const LEASE: Duration = Duration::from_secs(60);
/// Rows claimed per round.
const BATCH: i64 = 20;
/// Attempts before a notification is given up (the last ~5 min apart).
pub const MAX_ATTEMPTS: i64 = 10;
const MAX_BACKOFF_SECONDS: i64 = 300;

pub const SIGNATURE_HEADER: &str = "x-portcullis-signature";
pub const TIMESTAMP_HEADER: &str = "x-portcullis-timestamp";

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), body);
    format!("sha256={}", hex::encode(tag.as_ref()))
}

/// The wait before attempt `attempts + 1`: 2, 4, 8 … seconds, at most 5 minutes.
pub fn backoff_seconds(attempts: i64) -> i64 {
    2_i64.saturating_pow(u32::try_from(attempts.clamp(0, 20) + 1).unwrap_or(20)).min(MAX_BACKOFF_SECONDS)
}

/// What a notification says, whatever its format.
pub struct Notice<'a> {
    pub event: NotificationEvent,
    pub organization: &'a str,
    pub request: &'a AccessRequest,
    /// The approval page.
    pub link: String,
}

impl Notice<'_> {
    fn headline(&self) -> String {
        let r = self.request;
        let scope = r
            .workspace
            .as_deref()
            .map_or_else(|| "the organization".to_owned(), |w| format!("workspace {w}"));
        match self.event {
            NotificationEvent::Requested => {
                format!(
                    "{} asks for the role {} in {scope} for {}",
                    r.requester.name,
                    r.role,
                    human(r.duration_ms)
                )
            }
            NotificationEvent::Approved => {
                format!("{} now holds {} in {scope} (approved)", r.requester.name, r.role)
            }
            NotificationEvent::Denied => {
                format!("{}'s request for {} in {scope} was denied", r.requester.name, r.role)
            }
            NotificationEvent::Revoked => {
                format!("{}'s access {} in {scope} was revoked", r.requester.name, r.role)
            }
            NotificationEvent::Expired => {
                format!("{}'s access {} in {scope} has expired", r.requester.name, r.role)
            }
        }
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let r = self.request;
        let mut facts = vec![
            ("Organization", self.organization.to_owned()),
            ("Requester", r.requester.name.clone()),
            ("Role", r.role.clone()),
            ("Scope", r.workspace.clone().unwrap_or_else(|| "organization".to_owned())),
            ("Duration", human(r.duration_ms)),
            ("Justification", r.justification.clone()),
            ("Approvals", format!("{} of {}", r.approvals.len(), r.approvals_needed)),
        ];
        if let Some(by) = &r.decided_by {
            facts.push(("Decided by", by.clone()));
        }
        if let Some(at) = r.expires_ms {
            facts.push(("Expires", crate::audit::event::rfc3339_ms(at)));
        }
        facts
    }
}

/// `2h`, `90m`, `45s`: how long, as a person reads it.
fn human(ms: i64) -> String {
    let seconds = ms / 1000;
    match seconds {
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Slack's mrkdwn escapes (`&`, `<`, `>`): text from a requester is not markup.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A Slack incoming-webhook message: `text` for notifications, blocks for the channel.
pub fn slack_payload(notice: &Notice<'_>) -> Value {
    let headline = slack_escape(&notice.headline());
    let fields: Vec<Value> = notice
        .facts()
        .into_iter()
        .map(|(name, value)| json!({ "type": "mrkdwn", "text": format!("*{name}*\n{}", slack_escape(&value)) }))
        .collect();
    json!({
        "text": headline,
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": format!("*{headline}*") } },
            // Slack shows at most 10 fields in a section.
            { "type": "section", "fields": fields.into_iter().take(10).collect::<Vec<_>>() },
            { "type": "actions", "elements": [
                { "type": "button", "text": { "type": "plain_text", "text": "Review: approve or deny" },
                  "url": notice.link, "action_id": "portcullis-review" }
            ] }
        ]
    })
}

/// A Microsoft Teams incoming-webhook MessageCard.
pub fn teams_payload(notice: &Notice<'_>) -> Value {
    let color = match notice.event {
        NotificationEvent::Requested => "0078D7",
        NotificationEvent::Approved => "2EB886",
        NotificationEvent::Denied | NotificationEvent::Revoked => "D13438",
        NotificationEvent::Expired => "8A8886",
    };
    let facts: Vec<Value> =
        notice.facts().into_iter().map(|(name, value)| json!({ "name": name, "value": value })).collect();
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": notice.headline(),
        "themeColor": color,
        "title": notice.headline(),
        "sections": [ { "facts": facts } ],
        "potentialAction": [
            { "@type": "OpenUri", "name": "Review: approve or deny",
              "targets": [ { "os": "default", "uri": notice.link } ] }
        ]
    })
}

/// Delivers queued notifications until aborted (every [`POLL`]).
pub async fn deliver_periodically(state: TokenServiceState) {
    let http = match UpstreamHttp::new(None) {
        Ok(http) => http,
        Err(e) => {
            tracing::error!("access request notifications are off: {}", error_chain(&e));
            return;
        }
    };
    loop {
        deliver_due(&state, &http).await;
        tokio::time::sleep(POLL).await;
    }
}

/// One round: every due notification, one attempt each.
pub async fn deliver_due(state: &TokenServiceState, http: &UpstreamHttp) {
    let now = state.now().as_millisecond();
    let lease = now.saturating_add(i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX));
    let claimed = match state.store().claim_access_request_notifications(now, lease, BATCH).await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!("could not read the notifications outbox: {}", error_chain(&e));
            return;
        }
    };
    for notification in claimed {
        let (delivered, outcome) = attempt(state, http, &notification).await;
        if let NotificationOutcome::GiveUp { error } = &outcome {
            tracing::warn!(id = %notification.id, request = %notification.request_id, "access request notification given up: {error}");
        }
        let now = state.now().as_millisecond();
        if let Err(e) = state
            .store()
            .finish_access_request_notification(&notification.id, &delivered, &outcome, now)
            .await
        {
            tracing::warn!("could not record a notification attempt: {}", error_chain(&e));
        }
    }
}

async fn attempt(
    state: &TokenServiceState,
    http: &UpstreamHttp,
    notification: &ClaimedNotification,
) -> (Vec<String>, NotificationOutcome) {
    let mut delivered = notification.delivered.clone();
    let give_up = |error: String| NotificationOutcome::GiveUp { error };
    let organization = match state.store().list::<OrganizationRecord>(&notification.organization).await {
        Ok(found) => found.into_iter().next(),
        Err(e) => return (delivered, retry(state, notification, error_chain(&e))),
    };
    let Some(organization) = organization else {
        return (delivered, give_up("the organization is gone".into()));
    };
    let view = match state.organization(&organization.meta.name).await {
        Ok(Some(view)) => view,
        Ok(None) => return (delivered, give_up("the organization is gone".into())),
        Err(e) => return (delivered, retry(state, notification, e.to_string())),
    };
    let request =
        match state.store().get_access_request(&notification.organization, &notification.request_id).await {
            Ok(Some(request)) => request,
            Ok(None) => return (delivered, give_up("the access request is gone".into())),
            Err(e) => return (delivered, retry(state, notification, error_chain(&e))),
        };
    let webhooks = view.spec.access_requests.as_ref().map(|p| p.notifications.clone()).unwrap_or_default();
    let issuer = state.issuer(&view.name);
    let notice = Notice {
        event: notification.event,
        organization: &view.display_name,
        request: &request,
        link: format!("{issuer}/admin/access-requests/{}", request.id),
    };
    let mut errors = Vec::new();
    let waiting: Vec<&AccessRequestWebhook> =
        webhooks.iter().filter(|w| !delivered.contains(&w.url)).collect();
    for webhook in waiting {
        match send(state, http, &view.namespace, webhook, &notice).await {
            Ok(()) => delivered.push(webhook.url.clone()),
            Err(error) => errors.push(format!("{}: {error}", webhook.url)),
        }
    }
    if errors.is_empty() {
        return (delivered, NotificationOutcome::Delivered);
    }
    (delivered, retry(state, notification, errors.join("; ")))
}

/// Another attempt later, or none when the attempts are spent.
fn retry(
    state: &TokenServiceState,
    notification: &ClaimedNotification,
    error: String,
) -> NotificationOutcome {
    if notification.attempts + 1 >= MAX_ATTEMPTS {
        return NotificationOutcome::GiveUp { error };
    }
    let wait_ms = backoff_seconds(notification.attempts) * 1000;
    NotificationOutcome::Retry { next_attempt_ms: state.now().as_millisecond() + wait_ms, error }
}

async fn send(
    state: &TokenServiceState,
    http: &UpstreamHttp,
    namespace: &str,
    webhook: &AccessRequestWebhook,
    notice: &Notice<'_>,
) -> Result<(), String> {
    let key = state
        .upstreams()
        .secrets()
        .secret(namespace, &webhook.secret_ref.name, &webhook.secret_ref.key)
        .ok_or_else(|| format!("no key {} in Secret {}", webhook.secret_ref.key, webhook.secret_ref.name))?;
    let payload = match webhook.format {
        WebhookFormat::Slack => slack_payload(notice),
        WebhookFormat::Teams => teams_payload(notice),
    };
    let body = serde_json::to_vec(&payload).map_err(|e| e.to_string())?;
    let request = http::Request::post(&webhook.url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature(key.expose().as_bytes(), &body))
        .header(TIMESTAMP_HEADER, state.now().as_second().to_string())
        .body(body)
        .map_err(|e| e.to_string())?;
    let response = http.execute(request).await.map_err(|e| error_chain(&e))?;
    if response.status().is_success() { Ok(()) } else { Err(format!("answered {}", response.status())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let body = b"what do ya want for nothing?";
        assert_eq!(
            signature(b"Jefe", body),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_back_off_to_five_minutes() {
        let waits: Vec<i64> = (0..10).map(backoff_seconds).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }
}
