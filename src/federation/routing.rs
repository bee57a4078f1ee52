//! Home-realm discovery and the rollout stages, as pure decisions: which
//! identity provider (if any) a typed email or user name is routed to, and
//! whether a password may still be used for it.
//!
//! | stage      | routed user (domain matches)          | password for them          |
//! |------------|---------------------------------------|----------------------------|
//! | Disabled   | not offered                           | as before                  |
//! | Testing    | offered to `testUsers` only           | as before                  |
//! | Optional   | offered to everyone of the domains    | still works                |
//! | Enforced   | the only way in                       | refused, except `breakGlassUsers` |

use crate::api::{IdentityProviderSpec, RolloutStage};

/// One identity provider of the organization, by name, with its spec.
#[derive(Clone, Debug)]
pub struct ProviderEntry {
    pub name: String,
    pub spec: IdentityProviderSpec,
}

/// What the sign-in page does with a typed email (or user name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// No provider applies: the password (and passkey) form, as before.
    Local,
    /// Offer the provider; the password still works (`Optional`, `Testing`).
    Offer { provider: String },
    /// Send the browser to the provider; no password (`Enforced`).
    Require { provider: String },
}

impl Route {
    pub fn provider(&self) -> Option<&str> {
        match self {
            Route::Local => None,
            Route::Offer { provider } | Route::Require { provider } => Some(provider),
        }
    }
}

/// The domain of an email address, lowercased.
pub fn email_domain(typed: &str) -> Option<String> {
    let (_, domain) = typed.trim().rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

fn listed(list: &[String], typed: &str) -> bool {
    list.iter().any(|entry| entry.eq_ignore_ascii_case(typed.trim()))
}

/// The provider routed for `typed` (an email, or a user name that is an
/// email), by domain and stage. When two providers claim a domain, the
/// one furthest along its rollout wins, then the first by name.
pub fn route(providers: &[ProviderEntry], typed: &str) -> Route {
    let Some(domain) = email_domain(typed) else { return Route::Local };
    let mut candidates: Vec<&ProviderEntry> = providers
        .iter()
        .filter(|p| p.spec.email_domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)))
        .filter(|p| match p.spec.rollout.stage {
            RolloutStage::Disabled => false,
            RolloutStage::Testing => listed(&p.spec.rollout.test_users, typed),
            RolloutStage::Optional | RolloutStage::Enforced => true,
        })
        .collect();
    candidates.sort_by(|a, b| {
        stage_rank(b.spec.rollout.stage).cmp(&stage_rank(a.spec.rollout.stage)).then(a.name.cmp(&b.name))
    });
    let Some(chosen) = candidates.first() else { return Route::Local };
    let provider = chosen.name.clone();
    match chosen.spec.rollout.stage {
        RolloutStage::Enforced if !listed(&chosen.spec.rollout.break_glass_users, typed) => {
            Route::Require { provider }
        }
        _ => Route::Offer { provider },
    }
}

fn stage_rank(stage: RolloutStage) -> u8 {
    match stage {
        RolloutStage::Disabled => 0,
        RolloutStage::Testing => 1,
        RolloutStage::Optional => 2,
        RolloutStage::Enforced => 3,
    }
}

/// Whether a password sign-in of the user known by `names` (userName and
/// emails) is refused because an Enforced provider owns their domain and
/// they are not a break-glass user. Returns the provider's name.
pub fn password_refused_by<'a>(providers: &'a [ProviderEntry], names: &[&str]) -> Option<&'a str> {
    providers
        .iter()
        .filter(|p| p.spec.rollout.stage == RolloutStage::Enforced)
        .find(|p| {
            let routed = names.iter().any(|name| {
                email_domain(name)
                    .is_some_and(|d| p.spec.email_domains.iter().any(|e| e.eq_ignore_ascii_case(&d)))
            });
            let break_glass = names.iter().any(|name| listed(&p.spec.rollout.break_glass_users, name));
            routed && !break_glass
        })
        .map(|p| p.name.as_str())
}

/// Whether the provider may be used by `typed` at all now (a sign-in
/// started for it, or its callback): Disabled never; Testing only for test
/// users, judged again on the identity the upstream returns.
pub fn stage_admits(spec: &IdentityProviderSpec, names: &[&str]) -> bool {
    match spec.rollout.stage {
        RolloutStage::Disabled => false,
        RolloutStage::Testing => names.iter().any(|n| listed(&spec.rollout.test_users, n)),
        RolloutStage::Optional | RolloutStage::Enforced => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str, stage: RolloutStage, domains: &[&str]) -> ProviderEntry {
        let mut spec: IdentityProviderSpec = serde_json::from_value(serde_json::json!({
            "type": "OIDC",
            "oidc": { "issuer": "https://idp.example", "clientId": "c", "clientSecretRef": { "name": "s" } },
            "emailDomains": domains,
        }))
        .expect("a spec");
        spec.rollout.stage = stage;
        spec.rollout.test_users = vec!["tess@acme.com".into()];
        spec.rollout.break_glass_users = vec!["root@acme.com".into()];
        ProviderEntry { name: name.into(), spec }
    }

    #[test]
    fn each_stage_routes_as_the_table_says() {
        let at = |stage| vec![provider("okta", stage, &["acme.com"])];
        assert_eq!(route(&at(RolloutStage::Disabled), "tess@acme.com"), Route::Local);
        assert_eq!(route(&at(RolloutStage::Testing), "bob@acme.com"), Route::Local);
        assert_eq!(
            route(&at(RolloutStage::Testing), "TESS@acme.com"),
            Route::Offer { provider: "okta".into() }
        );
        assert_eq!(
            route(&at(RolloutStage::Optional), "bob@ACME.com"),
            Route::Offer { provider: "okta".into() }
        );
        assert_eq!(
            route(&at(RolloutStage::Enforced), "bob@acme.com"),
            Route::Require { provider: "okta".into() }
        );
        assert_eq!(
            route(&at(RolloutStage::Enforced), "root@acme.com"),
            Route::Offer { provider: "okta".into() }
        );
        assert_eq!(route(&at(RolloutStage::Enforced), "bob@globex.com"), Route::Local);
        assert_eq!(route(&at(RolloutStage::Enforced), "bob"), Route::Local);
    }

    #[test]
    fn passwords_are_refused_only_under_enforced_and_never_for_break_glass() {
        let enforced = vec![provider("okta", RolloutStage::Enforced, &["acme.com"])];
        assert_eq!(password_refused_by(&enforced, &["bob", "bob@acme.com"]), Some("okta"));
        assert_eq!(password_refused_by(&enforced, &["root", "root@acme.com"]), None);
        assert_eq!(password_refused_by(&enforced, &["eve@globex.com"]), None);
        let optional = vec![provider("okta", RolloutStage::Optional, &["acme.com"])];
        assert_eq!(password_refused_by(&optional, &["bob@acme.com"]), None);
    }

    #[test]
    fn the_provider_furthest_along_wins_a_shared_domain() {
        let both = vec![
            provider("a-old", RolloutStage::Optional, &["acme.com"]),
            provider("b-new", RolloutStage::Enforced, &["acme.com"]),
        ];
        assert_eq!(route(&both, "bob@acme.com"), Route::Require { provider: "b-new".into() });
    }
}
