//! The operator's own health: whether the settings it was started with, and
//! the Secrets they name, let the services it runs serve every organization.
//! A wrong or missing setting never leaves a pod that serves nothing
//! silently; it shows in four places:
//!
//! ```text
//!  validate_settings (flags, pure) ─┐
//!  service_keys (Secret check)  ────┼─► OperatorStatus ──► condition ServicesConfigured on every Organization
//!  database Secret check ───────────┘       │ (Ready False: the tenant and Argo CD see why its issuer does not serve)
//!                                           ├─► Warning Event on the operator's own Deployment (or its Lease)
//!                                           ├─► an error log line per problem, an info line when it is resolved
//!                                           └─► portcullis_operator_setting_problems (gauge)
//! ```
//!
//! Why conditions on each Organization rather than a status object of the
//! operator's own: the Organization is what tenants and Argo CD already
//! watch, and the problem is theirs to see (their issuer does not serve);
//! the platform team, who can fix it, sees the same reason in the Events of
//! the operator's Deployment, where `kubectl describe` shows them, without a
//! resource kind or ConfigMap that nothing else reads.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::conditions::{self, Desired};

/// What is wrong with one setting, for a condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SettingProblem {
    /// UpperCamelCase, as a condition's reason.
    pub reason: &'static str,
    /// What is wrong and which flag, chart value or Secret fixes it.
    pub message: String,
}

impl SettingProblem {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

/// How the problems of one source changed with a report.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub appeared: Vec<SettingProblem>,
    pub resolved: Vec<SettingProblem>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.appeared.is_empty() && self.resolved.is_empty()
    }
}

/// The problems found so far, by what found them (`settings`,
/// `service-keys`, `database`).
#[derive(Debug, Default)]
pub struct OperatorStatus {
    by_source: Mutex<BTreeMap<&'static str, Vec<SettingProblem>>>,
}

impl OperatorStatus {
    /// Replaces what `source` found.
    pub fn report(&self, source: &'static str, mut problems: Vec<SettingProblem>) -> Changes {
        problems.sort();
        problems.dedup();
        let mut by_source = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        let before = by_source.insert(source, problems.clone()).unwrap_or_default();
        Changes {
            appeared: problems.iter().filter(|p| !before.contains(p)).cloned().collect(),
            resolved: before.into_iter().filter(|p| !problems.contains(p)).collect(),
        }
    }

    /// Every current problem, in a stable order.
    pub fn problems(&self) -> Vec<SettingProblem> {
        let by_source = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        by_source.values().flatten().cloned().collect()
    }

    /// The `ServicesConfigured` condition every Organization carries.
    pub fn condition(&self) -> Desired {
        let problems = self.problems();
        match problems.first() {
            None => Desired::new(conditions::SERVICES_CONFIGURED, true, "SettingsComplete", ""),
            Some(first) => {
                let message = problems
                    .iter()
                    .map(|p| format!("{}: {}", p.reason, p.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                Desired::new(
                    conditions::SERVICES_CONFIGURED,
                    false,
                    first.reason,
                    format!("the Portcullis operator is misconfigured (ask the platform team): {message}"),
                )
            }
        }
    }
}

/// A base URL the services are reached at: `http(s)://host[:port][/path]`,
/// no query or fragment.
fn check_base_url(url: Option<&str>, what: &str, flag: &str, value: &str) -> Option<SettingProblem> {
    let missing = || {
        SettingProblem::new(
            "PublicUrlMissing",
            format!("{what} is not set (operator flag {flag}, chart value {value})"),
        )
    };
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else { return Some(missing()) };
    let invalid = |why: &str| {
        SettingProblem::new(
            "PublicUrlInvalid",
            format!("{what} {url:?} (operator flag {flag}, chart value {value}) {why}"),
        )
    };
    match url::Url::parse(url) {
        Err(e) => Some(invalid(&format!("is not a URL: {e}"))),
        Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => {
            Some(invalid("must be an http:// or https:// URL"))
        }
        Ok(parsed) if parsed.host_str().is_none_or(str::is_empty) => Some(invalid("has no host")),
        Ok(parsed) if parsed.query().is_some() || parsed.fragment().is_some() => {
            Some(invalid("must not have a query or a fragment"))
        }
        Ok(_) => None,
    }
}

/// What is wrong with the operator's flags, before anything runs: the
/// public base URLs every issuer and SCIM endpoint is built from.
pub fn validate_settings(
    issuer_base_url: Option<&str>,
    scim_base_url: Option<&str>,
    scim_service_runs: bool,
) -> Vec<SettingProblem> {
    let mut problems = Vec::new();
    problems.extend(check_base_url(
        issuer_base_url,
        "the public base URL of the token service",
        "--issuer-base-url",
        "publicBaseUrl",
    ));
    if scim_service_runs {
        problems.extend(check_base_url(
            scim_base_url,
            "the public base URL of the SCIM service",
            "--scim-base-url",
            "scimBaseUrl",
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_base_urls_name_the_flag_and_the_chart_value() {
        assert!(
            validate_settings(Some("https://id.example.com"), Some("https://scim.example.com"), true)
                .is_empty()
        );
        assert!(
            validate_settings(Some("http://localhost:8080/iam"), None, false).is_empty(),
            "no SCIM service"
        );
        let missing = validate_settings(None, None, true);
        assert_eq!(
            missing.iter().map(|p| p.reason).collect::<Vec<_>>(),
            ["PublicUrlMissing", "PublicUrlMissing"]
        );
        assert!(
            missing[0].message.contains("--issuer-base-url") && missing[0].message.contains("publicBaseUrl")
        );
        assert!(missing[1].message.contains("scimBaseUrl"));
        for bad in [
            "id.example.com",
            "ftp://id.example.com",
            "https://id.example.com/?a=b",
            "https://id.example.com#x",
        ] {
            let found = validate_settings(Some(bad), Some("https://scim.example.com"), true);
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert_eq!(found[0].reason, "PublicUrlInvalid", "{bad}");
        }
    }

    #[test]
    fn reports_say_what_appeared_and_what_was_resolved_and_feed_one_condition() {
        let status = OperatorStatus::default();
        assert!(status.condition().status, "no problem: configured");
        let problem =
            SettingProblem::new("DatabaseSecretMissing", "Secret portcullis/portcullis-database not found");
        let changes = status.report("database", vec![problem.clone()]);
        assert_eq!(changes.appeared, vec![problem.clone()]);
        assert!(
            status.report("database", vec![problem.clone()]).is_empty(),
            "the same again changes nothing"
        );
        status.report("settings", vec![SettingProblem::new("PublicUrlMissing", "no URL")]);
        let condition = status.condition();
        assert!(!condition.status);
        assert_eq!(condition.reason, "DatabaseSecretMissing", "sources in a stable order");
        assert!(condition.message.contains("PublicUrlMissing: no URL"), "{}", condition.message);
        let changes = status.report("database", vec![]);
        assert_eq!(changes.resolved, vec![problem]);
        assert_eq!(status.condition().reason, "PublicUrlMissing");
    }
}
