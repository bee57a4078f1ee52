//! `{issuer}/admin/posture`: the compliance posture for an administrator
//! with `iam.view`, drawn from the kept posture
//! ([`crate::token::service::posture`]): donuts for MFA adoption, bars for
//! the methods and the risks, tables for SCIM sync and signing keys. Inline
//! SVG and one small stylesheet; no script, no external asset (the pages'
//! CSP forbids both).
//!
//! ```text
//!  GET {issuer}/admin/posture  AdminPage<iam.view> ─► PostureCache (≤ 1 min old) ─► page
//! ```

use axum::extract::State;
use axum::http::StatusCode;

use super::admin_pages::AdminPage;
use super::error::LoginError;
use super::pages::{AdminPosturePage, Bar, BarChart, Donut, Page};
use crate::api::OrganizationPosture;
use crate::posture::percent;
use crate::token::service::check::IamView;
use crate::token::service::state::TokenServiceState;

/// Room for bars: the chart is 100 units wide, labels take 45, figures 10.
const BAR_ROOM: u64 = 45;

fn donut(id: &'static str, title: &'static str, part: u64, whole: u64, of_whom: &str) -> Donut {
    match percent(part, whole) {
        Some(share) => Donut {
            id,
            title,
            filled: share,
            rest: 100 - share,
            center: format!("{share}%"),
            text: format!("{part} of {whole} {of_whom} ({share}%)"),
        },
        None => {
            Donut { id, title, filled: 0, rest: 100, center: "–".to_owned(), text: format!("no {of_whom}") }
        }
    }
}

fn chart(
    id: &'static str,
    title: &'static str,
    bars: &[(&'static str, &'static str, u64, &'static str)],
) -> BarChart {
    let largest = bars.iter().map(|b| b.2).max().unwrap_or(0).max(1);
    let bars: Vec<Bar> = bars
        .iter()
        .zip(0u32..)
        .map(|(&(id, label, value, colour), row)| Bar {
            id,
            label,
            value,
            width: u32::try_from(value.saturating_mul(BAR_ROOM) / largest).unwrap_or(0),
            y: 1 + row * 7,
            colour,
        })
        .collect();
    let summary = bars.iter().map(|b| format!("{} {}", b.label, b.value)).collect::<Vec<_>>().join(", ");
    BarChart { id, title, height: 1 + 7 * u32::try_from(bars.len()).unwrap_or(0), summary, bars }
}

const BLUE: &str = "#2a6fdb";
const RED: &str = "#c0392b";

/// `GET {issuer}/admin/posture`.
pub(super) async fn show(
    State(state): State<TokenServiceState>,
    page: AdminPage<IamView>,
) -> Result<Page, LoginError> {
    let posture: std::sync::Arc<OrganizationPosture> =
        state.posture_cache().posture(&state, &page.org).await?;
    let mfa = &posture.mfa;
    let view = AdminPosturePage {
        organization_display_name: &page.org.display_name,
        user_name: &page.user.user_name,
        computed_at: &posture.computed_at,
        donuts: vec![
            donut("mfa-adoption", "MFA adoption", mfa.enrolled, posture.active_users, "active users"),
            donut(
                "privileged-mfa",
                "MFA among privileged users",
                mfa.privileged_enrolled,
                mfa.privileged_users,
                "privileged users",
            ),
        ],
        charts: vec![
            chart(
                "methods",
                "Second factors by method",
                &[
                    ("totp", "Authenticator app", mfa.totp, BLUE),
                    ("security-key", "Security key", mfa.security_key, BLUE),
                    ("passkey", "Passkey", mfa.passkey, BLUE),
                ],
            ),
            chart(
                "risks",
                "Accounts and grants to review",
                &[
                    ("stale", "Stale accounts", posture.stale_accounts, RED),
                    ("stale-with-grants", "Stale, holding grants", posture.stale_accounts_with_grants, RED),
                    (
                        "inactive-with-grants",
                        "Inactive, holding grants",
                        posture.inactive_users_with_grants,
                        RED,
                    ),
                    (
                        "standing-privileged",
                        "Standing privileged grants",
                        posture.standing_privileged_grants,
                        RED,
                    ),
                    ("pending-requests", "Pending access requests", posture.pending_access_requests, RED),
                ],
            ),
        ],
        scim: &posture.scim_sync,
        keys: &posture.key_rotations,
        pending_access_requests: posture.pending_access_requests,
    };
    Ok(Page::new(StatusCode::OK, &view))
}
