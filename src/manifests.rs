//! Reading a folder of Kubernetes manifests (multi-document YAML) into typed
//! Portcullis resources, remembering where each came from so that problems can
//! be reported as `file:line`.
//!
//! Used by `portcullis validate` and by standalone mode, which both read the
//! same YAML that Argo CD or `kubectl apply` would send to the API server.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use serde::de::DeserializeOwned;

use crate::api::{self, IdentityProvider, OAuthClient, Organization, Role, RoleAssignment};

/// Where a document starts, and its text, to point at the line of a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The file, as given (relative to the folder passed in when possible).
    pub file: PathBuf,
    /// 1-based line of the document's first line in the file.
    pub line: usize,
    /// The document's text.
    pub text: String,
}

impl Source {
    /// Best line for a field: follows `path` (`["spec", "principal", "kind"]`)
    /// key by key through the document, falling back to the deepest key found.
    /// When `value` is given, prefers a line under that key mentioning it.
    pub fn line_of(&self, path: &[&str], value: Option<&str>) -> usize {
        let lines: Vec<&str> = self.text.lines().collect();
        let mut at = 0;
        let mut found = None;
        for key in path {
            let hit = (at..lines.len()).find(|&i| is_key_line(lines[i], key));
            match hit {
                Some(i) => {
                    found = Some(i);
                    at = i;
                }
                None => break,
            }
        }
        if let Some(value) = value {
            let start = found.unwrap_or(0);
            if let Some(i) = (start..lines.len()).find(|&i| mentions(lines[i], value)) {
                return self.line + i;
            }
        }
        self.line + found.unwrap_or(0)
    }
}

fn is_key_line(line: &str, key: &str) -> bool {
    let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
    trimmed.strip_prefix(key).is_some_and(|rest| rest.starts_with(':'))
}

fn mentions(line: &str, value: &str) -> bool {
    let code = line.split(" #").next().unwrap_or(line);
    code.split(|c: char| c.is_whitespace() || matches!(c, ':' | ',' | '[' | ']' | '"' | '\''))
        .any(|token| token == value)
}

/// A Portcullis resource read from a manifest.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant, reason = "a few hundred per folder, read once; boxing buys nothing")]
pub enum Resource {
    Organization(Organization),
    Role(Role),
    RoleAssignment(RoleAssignment),
    IdentityProvider(IdentityProvider),
    OAuthClient(OAuthClient),
}

impl Resource {
    /// The resource as JSON, the shape the API server validates.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Resource::Organization(o) => serde_json::to_value(o),
            Resource::Role(o) => serde_json::to_value(o),
            Resource::RoleAssignment(o) => serde_json::to_value(o),
            Resource::IdentityProvider(o) => serde_json::to_value(o),
            Resource::OAuthClient(o) => serde_json::to_value(o),
        };
        value.unwrap_or_default()
    }
}

/// A resource and where it was read from.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub resource: Resource,
    pub source: Source,
}

/// A document that could not be read as what it claims to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseProblem {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: error: {}", self.file.display(), self.line, self.message)
    }
}

/// A `v1/Secret` read from a manifest: standalone mode takes the values that
/// Portcullis objects reference from these (in a cluster they come from the
/// API server). `Debug` never shows the values.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretManifest {
    pub namespace: String,
    pub name: String,
    /// `data` (base64-decoded) merged with `stringData`, which wins, as the API server does.
    pub values: BTreeMap<String, String>,
    pub source: Source,
}

impl fmt::Debug for SecretManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretManifest")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Everything read from a folder.
#[derive(Clone, Debug, Default)]
pub struct ManifestSet {
    pub manifests: Vec<Manifest>,
    pub secrets: Vec<SecretManifest>,
    /// Documents of other kinds (Namespaces, ConfigMaps...), accepted and ignored.
    pub ignored: usize,
    pub problems: Vec<ParseProblem>,
}

impl ManifestSet {
    /// The value of `key` in Secret `namespace/name`, if the folder has it.
    pub fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Option<&str> {
        self.secrets
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
            .and_then(|s| s.values.get(key))
            .map(String::as_str)
    }
}

/// Reads every `*.yaml` / `*.yml` file under `dir`, recursively, in path order
/// (or `dir` alone when it is a file).
pub fn read_dir(dir: &Path) -> std::io::Result<ManifestSet> {
    let mut set = ManifestSet::default();
    for path in yaml_files(dir)? {
        let text = std::fs::read_to_string(&path)?;
        read_str(&path, &text, &mut set);
    }
    Ok(set)
}

/// The files [`read_dir`] reads, in the order it reads them.
pub fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if dir.is_file() {
        files.push(dir.to_owned());
    } else {
        collect_yaml_files(dir, &mut files)?;
    }
    files.sort();
    Ok(files)
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads the documents of one file's text into `set`.
pub fn read_str(file: &Path, text: &str, set: &mut ManifestSet) {
    for (line, doc) in split_documents(text) {
        let source = Source { file: file.to_owned(), line, text: doc };
        match read_document(&source) {
            Ok(Document::Resource(resource)) => set.manifests.push(Manifest { resource, source }),
            Ok(Document::Secret { namespace, name, values }) => {
                set.secrets.push(SecretManifest { namespace, name, values, source })
            }
            Ok(Document::Other) => set.ignored += 1,
            Err((at, message)) => {
                set.problems.push(ParseProblem { file: file.to_owned(), line: at, message })
            }
        }
    }
}

/// Splits multi-document YAML at `---` lines: `(first line number, text)`.
/// Documents holding only comments or blank lines are dropped.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        if line == "---" || line.starts_with("--- ") || line.starts_with("---\t") {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push((start, current));
    docs.into_iter()
        .filter(|(_, doc)| doc.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')))
        .collect()
}

type DocumentError = (usize, String);

/// What one YAML document turned out to be.
#[allow(clippy::large_enum_variant, reason = "one at a time, moved straight into the set")]
enum Document {
    Resource(Resource),
    Secret { namespace: String, name: String, values: BTreeMap<String, String> },
    Other,
}

fn read_document(source: &Source) -> Result<Document, DocumentError> {
    let value: serde_json::Value = serde_saphyr::from_str(&source.text).map_err(|e| {
        let line = e.location().map_or(source.line, |l| source.line + l.line() as usize - 1);
        (line, format!("invalid YAML: {}", first_line(&e.to_string())))
    })?;
    let api_version = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default();
    let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err((source.line, "a manifest needs apiVersion and kind".to_owned()));
    }
    if api_version == "v1" && kind == "Secret" {
        return read_secret(source, &value);
    }
    if api_version.split('/').next() != Some(api::GROUP) {
        return Ok(Document::Other);
    }
    if api_version != api::API_VERSION {
        return Err((
            source.line_of(&["apiVersion"], None),
            format!("unsupported apiVersion {api_version}: this version serves {}", api::API_VERSION),
        ));
    }
    let resource = match kind {
        "Organization" => Resource::Organization(typed(source, value)?),
        "Role" => Resource::Role(typed(source, value)?),
        "RoleAssignment" => Resource::RoleAssignment(typed(source, value)?),
        "IdentityProvider" => Resource::IdentityProvider(typed(source, value)?),
        "OAuthClient" => Resource::OAuthClient(typed(source, value)?),
        // A request is a one-time event its approvers decide, not standing
        // state a folder (or Git) keeps declaring.
        "AccessRequest" => {
            return Err((
                source.line_of(&["kind"], None),
                "an AccessRequest is not read from a folder: file it with kubectl in a cluster, or through \
                 the admin API (POST {issuer}/api/v1/access-requests; see docs/access-requests.md)"
                    .to_owned(),
            ));
        }
        other => {
            return Err((
                source.line_of(&["kind"], None),
                format!(
                    "unknown kind {other} in {}: expected Organization, Role, RoleAssignment, IdentityProvider or OAuthClient",
                    api::GROUP
                ),
            ));
        }
    };
    Ok(Document::Resource(resource))
}

/// A core Secret: its name, namespace (`default` when absent, as kubectl
/// would apply it) and values.
fn read_secret(source: &Source, value: &serde_json::Value) -> Result<Document, DocumentError> {
    let metadata = value.get("metadata");
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
    let name = text(metadata.and_then(|m| m.get("name")))
        .ok_or_else(|| (source.line_of(&["metadata"], None), "a Secret needs metadata.name".to_owned()))?;
    let namespace = text(metadata.and_then(|m| m.get("namespace"))).unwrap_or_else(|| "default".to_owned());
    let mut values = BTreeMap::new();
    let entries = |field: &str| value.get(field).and_then(|d| d.as_object()).into_iter().flatten();
    for (key, encoded) in entries("data") {
        let decoded = encoded
            .as_str()
            .and_then(|e| BASE64_STANDARD.decode(e.trim()).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                (
                    source.line_of(&["data", key], None),
                    format!("Secret {name}: data.{key} is not base64 of UTF-8 text"),
                )
            })?;
        values.insert(key.clone(), decoded);
    }
    for (key, plain) in entries("stringData") {
        let plain = plain.as_str().ok_or_else(|| {
            (
                source.line_of(&["stringData", key], None),
                format!("Secret {name}: stringData.{key} is not a string"),
            )
        })?;
        values.insert(key.clone(), plain.to_owned());
    }
    Ok(Document::Secret { namespace, name, values })
}

/// Deserializes into the typed resource, rejecting unknown fields the way the
/// API server's strict field validation does, and pointing at the field.
fn typed<T: DeserializeOwned>(source: &Source, value: serde_json::Value) -> Result<T, DocumentError> {
    let mut unknown = Vec::new();
    let result: Result<T, _> = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        value,
        &mut |path: serde_ignored::Path<'_>| unknown.push(path.to_string()),
    ));
    let typed = result.map_err(|e| {
        let path = e.path().to_string();
        let keys: Vec<&str> = path.split('.').filter(|k| !k.is_empty() && !k.starts_with('[')).collect();
        let field = if path == "." { String::new() } else { format!("{path}: ") };
        (source.line_of(&keys, None), format!("{field}{}", e.inner()))
    })?;
    // apiVersion and kind were read above; `status` is the controller's to
    // write; anything else unknown is a typo the API server would refuse.
    let expected = |p: &String| p == "apiVersion" || p == "kind" || p.starts_with("status");
    if let Some(path) = unknown.into_iter().find(|p| !expected(p)) {
        let keys: Vec<&str> = path.split('.').filter(|k| !k.chars().all(|c| c.is_ascii_digit())).collect();
        return Err((source.line_of(&keys, None), format!("unknown field {path}")));
    }
    Ok(typed)
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> ManifestSet {
        let mut set = ManifestSet::default();
        read_str(Path::new("t.yaml"), text, &mut set);
        set
    }

    #[test]
    fn documents_keep_their_line_numbers() {
        let set = read(
            "# leading comment\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\n\
             apiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata:\n  name: r\nspec:\n  permissions: [a.b]\n",
        );
        assert_eq!(set.problems, []);
        assert_eq!(set.secrets.len(), 1);
        assert_eq!(set.manifests.len(), 1);
        assert_eq!(set.manifests[0].source.line, 7);
        assert_eq!(set.manifests[0].source.line_of(&["spec", "permissions"], Some("a.b")), 12);
    }

    #[test]
    fn secrets_are_read_with_data_decoded_and_string_data_winning() {
        let set = read(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: okta\n  namespace: acme\n\
             data:\n  a: aGVsbG8=\n  b: b2xk\nstringData:\n  b: new\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        );
        assert_eq!(set.problems, []);
        assert_eq!((set.secrets.len(), set.ignored), (1, 1));
        assert_eq!(set.secret_value("acme", "okta", "a"), Some("hello"));
        assert_eq!(set.secret_value("acme", "okta", "b"), Some("new"));
        assert_eq!(set.secret_value("default", "okta", "a"), None);
        assert!(!format!("{:?}", set.secrets[0]).contains("hello"), "values never in Debug");
    }

    #[test]
    fn a_secret_that_is_not_base64_points_at_its_line() {
        let set = read("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  k: '%%%'\n");
        assert_eq!(set.problems.len(), 1, "{:?}", set.problems);
        assert_eq!(set.problems[0].line, 6);
    }

    #[test]
    fn a_wrong_enum_value_points_at_its_line() {
        let set = read(
            "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata:\n  name: r\nspec:\n  scope: Galaxy\n",
        );
        assert_eq!(set.problems.len(), 1, "{:?}", set.problems);
        assert_eq!(set.problems[0].line, 6);
        assert!(set.problems[0].message.contains("spec.scope"), "{}", set.problems[0].message);
    }

    #[test]
    fn an_unknown_field_is_an_error_with_its_line() {
        let set = read(
            "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata:\n  name: r\nspec:\n  permisions: [a.b]\n",
        );
        assert_eq!(set.problems.len(), 1, "{:?}", set.problems);
        assert_eq!(set.problems[0].line, 6);
        assert_eq!(set.problems[0].message, "unknown field spec.permisions");
    }

    #[test]
    fn an_access_request_in_a_folder_is_refused_with_its_line_and_where_to_file_it() {
        let set = read(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\napiVersion: iam.portcullis.dev/v1alpha1\n\
             kind: AccessRequest\nmetadata: {name: r}\nspec: {requester: ada, role: r, duration: 1h, justification: j}\n",
        );
        assert_eq!(set.problems.len(), 1, "{:?}", set.problems);
        assert_eq!(set.problems[0].line, 6);
        assert!(set.problems[0].message.contains("/api/v1/access-requests"), "{}", set.problems[0].message);
    }

    #[test]
    fn broken_yaml_reports_the_line_in_the_file() {
        let set =
            read("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\napiVersion: x\nkind: [unclosed\n");
        assert_eq!(set.problems.len(), 1);
        assert!(set.problems[0].line >= 4, "{:?}", set.problems);
    }
}
