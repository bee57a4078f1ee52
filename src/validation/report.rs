//! The findings about a folder of manifests as `file:line` reports: parse
//! problems, the CRDs' own rules ([`super::schema`]) and the cross-object
//! checks ([`super::check`]), located in the files they came from. What
//! `portcullis validate` prints and what standalone mode refuses a reload for.

use crate::manifests::{ManifestSet, Resource};
use crate::validation::schema::SchemaRules;
use crate::validation::{self, Finding, ObjectRef, Severity, Snapshot};

/// One line of output, ready to sort and print.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Report {
    pub file: String,
    pub line: usize,
    pub severity: Severity,
    pub message: String,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file, self.line, self.severity, self.message)
    }
}

/// Everything wrong with a set of manifests already read.
pub fn validate_set(set: &ManifestSet) -> Vec<Report> {
    let mut reports: Vec<Report> = set
        .problems
        .iter()
        .map(|p| Report {
            file: p.file.display().to_string(),
            line: p.line,
            severity: Severity::Error,
            message: p.message.clone(),
        })
        .collect();

    let (mut orgs, mut roles, mut ras, mut idps, mut clients) = (vec![], vec![], vec![], vec![], vec![]);
    for m in &set.manifests {
        match &m.resource {
            Resource::Organization(o) => orgs.push(o.clone()),
            Resource::Role(o) => roles.push(o.clone()),
            Resource::RoleAssignment(o) => ras.push(o.clone()),
            Resource::IdentityProvider(o) => idps.push(o.clone()),
            Resource::OAuthClient(o) => clients.push(o.clone()),
        }
    }
    let snapshot = Snapshot {
        organizations: &orgs,
        roles: &roles,
        role_assignments: &ras,
        identity_providers: &idps,
        oauth_clients: &clients,
    };
    reports.extend(check_schema_rules(set));
    reports.extend(validation::check(&snapshot).into_iter().map(|f| locate(set, f)));
    reports.sort();
    reports.dedup();
    reports
}

/// The CRDs' CEL rules on each manifest, as the API server would apply them.
fn check_schema_rules(set: &ManifestSet) -> Vec<Report> {
    let rules = SchemaRules::new();
    let mut reports = Vec::new();
    for manifest in &set.manifests {
        let object = object_ref(&manifest.resource);
        for violation in rules.check(&object.kind, &manifest.resource.to_json()) {
            let keys: Vec<&str> = violation
                .field_path
                .split(['.', '['])
                .filter(|k| !k.is_empty() && !k.ends_with(']'))
                .collect();
            reports.push(Report {
                file: manifest.source.file.display().to_string(),
                line: manifest.source.line_of(&keys, violation.value.as_deref()),
                severity: Severity::Error,
                message: format!(
                    "{} {}: {}: {} [SchemaRule]",
                    object.kind, object.name, violation.field_path, violation.message
                ),
            });
        }
    }
    reports
}

/// Finds the manifest a finding is about, and the line of its field.
fn locate(set: &ManifestSet, finding: Finding) -> Report {
    let source = set
        .manifests
        .iter()
        .map(|m| (object_ref(&m.resource), &m.source))
        .find(|(r, _)| *r == finding.object);
    let (file, line) = match source {
        Some((_, source)) => {
            (source.file.display().to_string(), source.line_of(&finding.field, finding.value.as_deref()))
        }
        None => (format!("{}/{}", finding.object.kind, finding.object.name), 0),
    };
    let message =
        format!("{} {}: {} [{}]", finding.object.kind, finding.object.name, finding.message, finding.reason);
    Report { file, line, severity: finding.severity, message }
}

pub fn object_ref(resource: &Resource) -> ObjectRef {
    match resource {
        Resource::Organization(o) => ObjectRef::of(o),
        Resource::Role(o) => ObjectRef::of(o),
        Resource::RoleAssignment(o) => ObjectRef::of(o),
        Resource::IdentityProvider(o) => ObjectRef::of(o),
        Resource::OAuthClient(o) => ObjectRef::of(o),
    }
}
