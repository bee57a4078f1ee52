//! The SCIM service over real HTTP (a listener on 127.0.0.1:0 and reqwest),
//! with the requests Okta and Entra ID send (`fixtures/scim/`), on SQLite
//! and on a real PostgreSQL server (`support/postgres.rs`).

#[path = "support/browser_form.rs"]
mod browser_form;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/token_service.rs"]
mod token_support;

use std::time::{Duration, Instant};

use portcullis::scim::service::sync_health::FLUSH_DELAY;
use portcullis::scim::service::{ScimState, router};
use portcullis::store::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const OKTA_TOKEN: &str = "okta-scim-token-for-acme";
const ENTRA_TOKEN: &str = "entra-scim-token-for-acme";
const GLOBEX_TOKEN: &str = "scim-token-for-globex";
const INITECH_TOKEN: &str = "scim-token-for-initech";
const DISABLED_IDP_TOKEN: &str = "token-of-an-idp-without-scim";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Service::start(super::sqlite_store().await).await).await;
                }
            )*
        }
        mod postgresql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Service::start(super::postgres_store().await).await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    okta_provisions_looks_up_and_deactivates_a_user,
    entra_provisions_a_user_with_the_enterprise_extension,
    okta_manages_group_membership_and_renames,
    entra_adds_and_removes_members_and_renames,
    a_group_patch_applies_all_or_nothing,
    filters_pagination_and_sorting,
    search_endpoint_and_attribute_selection,
    malformed_and_unknown_filters_are_invalid_filter,
    unknown_ids_duplicates_and_stale_etags,
    tokens_only_open_their_own_organization,
    writes_are_refused_unless_provisioning_mode_is_scim,
    discovery_declares_what_works_and_refuses_writes,
    bodies_are_bounded_and_must_be_json,
    sync_health_counts_requests_errors_and_provisioned_resources,
    a_membership_added_over_scim_grants_the_group_role,
    writes_touch_only_the_callers_own_users_and_groups,
    a_pushed_password_is_stored_hashed_for_sign_in_and_never_returned,
    a_pushed_password_is_accepted_and_dropped_without_password_sign_in,
    email_display_and_other_sub_attributes_are_kept,
    a_patch_may_name_the_enterprise_extension_with_an_object,
    root_search_lists_users_and_groups_as_one_page,
    a_group_patch_answers_with_the_group_unless_members_are_excluded,
    a_member_that_is_not_a_user_changes_nothing,
    removing_active_leaves_it_unassigned_and_the_status_as_it_was,
);

async fn sqlite_store() -> Store {
    Store::connect("sqlite::memory:").await.expect("open an in-memory SQLite store")
}

async fn postgres_store() -> Store {
    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database())
        .await
        .expect("create a database");
    Store::connect(&url).await.expect("connect to the test PostgreSQL")
}

fn hash(token: &str) -> String {
    portcullis::secret::SecretHash::of(token).to_string()
}

fn organization(namespace: &str, name: &str, mode: &str) -> OrganizationRecord {
    OrganizationRecord {
        meta: ObjectMeta::new(format!("uid-org-{name}"), namespace, name, 1),
        display_name: name.to_owned(),
        catalog: Vec::new(),
        workspaces: Vec::new(),
        spec_json: json!({"displayName": name, "provisioning": {"mode": mode}}).to_string(),
    }
}

fn identity_provider(namespace: &str, name: &str, scim_enabled: bool) -> IdentityProviderRecord {
    IdentityProviderRecord {
        meta: ObjectMeta::new(format!("uid-idp-{namespace}-{name}"), namespace, name, 1),
        protocol: "oidc".into(),
        stage: "Enforced".into(),
        email_domains: Vec::new(),
        scim_enabled,
        spec_json: json!({"scim": {"enabled": scim_enabled}}).to_string(),
    }
}

/// The service on a loopback port, over a store holding three organizations:
/// `acme` (provisioning `scim`; IdPs okta and entra), `globex` (`scim`),
/// `initech` (`jit`).
struct Service {
    base: String,
    store: Store,
    state: ScimState,
    client: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    fn expect(self, status: StatusCode) -> Self {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        self
    }

    /// Asserts a SCIM Error response (RFC 7644 §3.12).
    #[track_caller]
    fn expect_error(self, status: StatusCode, scim_type: Option<&str>) -> Self {
        let answer = self.expect(status);
        assert_eq!(answer.body["schemas"], json!([ERROR_SCHEMA]), "{}", answer.body);
        assert_eq!(answer.body["status"], status.as_u16().to_string());
        assert_eq!(answer.body["scimType"].as_str(), scim_type, "{}", answer.body);
        assert!(answer.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", answer.body);
        assert_eq!(answer.header("content-type"), Some("application/scim+json"));
        answer
    }
}

impl Service {
    async fn start(store: Store) -> Service {
        for (namespace, name, mode) in
            [("acme", "acme", "scim"), ("globex", "globex", "scim"), ("initech", "initech", "jit")]
        {
            store.apply(&organization(namespace, name, mode)).await.expect("store an organization");
        }
        for (namespace, idp, token, scim) in [
            ("acme", "okta", OKTA_TOKEN, true),
            ("acme", "entra", ENTRA_TOKEN, true),
            ("acme", "legacy", DISABLED_IDP_TOKEN, false),
            ("globex", "okta", GLOBEX_TOKEN, true),
            ("initech", "okta", INITECH_TOKEN, true),
        ] {
            store.apply(&identity_provider(namespace, idp, scim)).await.expect("store an identity provider");
            assert!(
                store
                    .set_scim_token_hash(namespace, idp, Some(&hash(token)))
                    .await
                    .expect("store a token hash")
            );
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let state = ScimState::new(store.clone(), &base);
        let app = router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Service { base, store, state, client: reqwest::Client::new() }
    }

    fn url(&self, organization: &str, path: &str) -> String {
        format!("{}/o/{organization}/scim/v2{path}", self.base)
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/scim+json").body(body.to_string());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the service answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read the body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer { status, headers, body }
    }

    /// A request to acme as its Okta client.
    async fn acme(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        self.send(method, &self.url("acme", path), Some(OKTA_TOKEN), body, &[]).await
    }

    async fn create_user(&self, user_name: &str) -> String {
        let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name});
        let answer = self.acme(Method::POST, "/Users", Some(&body)).await.expect(StatusCode::CREATED);
        answer.body["id"].as_str().expect("an id").to_owned()
    }
}

fn fixture(name: &str, substitutions: &[(&str, &str)]) -> Value {
    let path = format!("{}/tests/fixtures/scim/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    for (from, to) in substitutions {
        text = text.replace(&format!("{{{{{from}}}}}"), to);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn filter_path(resource: &str, filter: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("url");
    url.query_pairs_mut().append_pair("filter", filter);
    format!("{resource}?{}", url.query().unwrap_or_default())
}

fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|members| members.iter().filter_map(|m| m["value"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

// === Okta and Entra ID, as they send it. ===

async fn okta_provisions_looks_up_and_deactivates_a_user(service: Service) {
    let created = service.acme(Method::POST, "/Users", Some(&fixture("okta_create_user", &[]))).await;
    let created = created.expect(StatusCode::CREATED);
    let id = created.body["id"].as_str().expect("an id").to_owned();
    let location = service.url("acme", &format!("/Users/{id}"));
    assert_eq!(created.header("location"), Some(location.as_str()));
    assert_eq!(created.header("content-type"), Some("application/scim+json"));
    assert_eq!(created.header("etag"), Some("W/\"1\""));
    assert_eq!(created.body["meta"]["resourceType"], "User");
    assert_eq!(created.body["meta"]["version"], "W/\"1\"");
    assert_eq!(created.body["meta"]["location"], location.as_str());
    assert!(created.body["meta"]["created"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(created.body["name"], json!({"givenName": "Ann", "familyName": "Lee"}));
    assert_eq!(created.body["locale"], "en-US", "attributes without a column are kept");
    assert_eq!(created.body["groups"], json!([]));

    // Okta looks the user up by userName before pushing; case does not matter.
    let found =
        service.acme(Method::GET, &filter_path("/Users", "userName eq \"ANN.LEE@acme.example\""), None).await;
    let found = found.expect(StatusCode::OK);
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.body["Resources"][0]["id"], id.as_str());
    assert_eq!(found.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"]));

    let patched = service
        .acme(Method::PATCH, &format!("/Users/{id}"), Some(&fixture("okta_deactivate_user", &[])))
        .await;
    let patched = patched.expect(StatusCode::OK);
    assert_eq!(patched.body["active"], false);
    assert_eq!(patched.header("etag"), Some("W/\"2\""));
    let stored = service.store.get_user("acme", &id).await.unwrap().expect("the user exists");
    assert!(!stored.active);
    assert_eq!(stored.source, UserSource::Scim);

    // Okta retries: the same PATCH again changes nothing and is no error.
    let again = service
        .acme(Method::PATCH, &format!("/Users/{id}"), Some(&fixture("okta_deactivate_user", &[])))
        .await;
    assert_eq!(again.expect(StatusCode::OK).header("etag"), Some("W/\"2\""));
}

async fn entra_provisions_a_user_with_the_enterprise_extension(service: Service) {
    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let url = service.url("acme", "/Users");
    let created = service
        .send(Method::POST, &url, Some(ENTRA_TOKEN), Some(&fixture("entra_create_user", &[])), &[])
        .await;
    let created = created.expect(StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body[ENTERPRISE], json!({"department": "Navy", "employeeNumber": "1906"}));
    assert!(created.body["schemas"].as_array().unwrap().contains(&json!(ENTERPRISE)));
    assert_eq!(created.body["title"], "Rear Admiral");
    assert_eq!(created.body["name"]["formatted"], "Grace Hopper");

    // Entra ID matches on externalId or userName.
    let path = filter_path("/Users", "externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"");
    let found = service.send(Method::GET, &service.url("acme", &path), Some(ENTRA_TOKEN), None, &[]).await;
    assert_eq!(found.expect(StatusCode::OK).body["Resources"][0]["id"], id.as_str());

    let user_url = service.url("acme", &format!("/Users/{id}"));
    let updated = service
        .send(Method::PATCH, &user_url, Some(ENTRA_TOKEN), Some(&fixture("entra_update_user", &[])), &[])
        .await;
    let updated = updated.expect(StatusCode::OK);
    assert_eq!(updated.body["name"]["givenName"], "Amazing Grace");
    assert_eq!(updated.body[ENTERPRISE]["department"], "Research");
    assert_eq!(updated.body[ENTERPRISE]["employeeNumber"], "1906");
    assert_eq!(updated.body["emails"][0]["value"], "grace@contoso.example");
    assert_eq!(updated.body["emails"][0]["primary"], true);

    // "False" as a string, as Entra ID sends it.
    let disabled = service
        .send(Method::PATCH, &user_url, Some(ENTRA_TOKEN), Some(&fixture("entra_disable_user", &[])), &[])
        .await;
    assert_eq!(disabled.expect(StatusCode::OK).body["active"], false);
    let read =
        service.send(Method::GET, &user_url, Some(ENTRA_TOKEN), None, &[]).await.expect(StatusCode::OK);
    assert_eq!(read.body["active"], false);
    assert_eq!(read.body["title"], "Rear Admiral");
    let by_email = service
        .acme(Method::GET, &filter_path("/Users", "emails[type eq \"work\" and value co \"@CONTOSO\"]"), None)
        .await;
    assert_eq!(by_email.expect(StatusCode::OK).body["totalResults"], 1);
}

async fn okta_manages_group_membership_and_renames(service: Service) {
    let ann = service.create_user("ann@acme.example").await;
    let bob = service.create_user("bob@acme.example").await;
    let group = service.acme(Method::POST, "/Groups", Some(&fixture("okta_create_group", &[]))).await;
    let group = group.expect(StatusCode::CREATED);
    let gid = group.body["id"].as_str().unwrap().to_owned();
    assert_eq!(group.body["meta"]["resourceType"], "Group");
    assert_eq!(service.store.get_group("acme", &gid).await.unwrap().unwrap().source, GroupSource::Idp);

    let group_path = format!("/Groups/{gid}");
    for user in [&ann, &bob] {
        let add = fixture("okta_add_member", &[("user_id", user)]);
        let patched = service.acme(Method::PATCH, &group_path, Some(&add)).await.expect(StatusCode::OK);
        assert!(member_ids(&patched.body).contains(user), "200 with the group: {}", patched.body);
    }
    // Adding an existing member is not an error, and changes nothing.
    let version_before = service.store.get_group("acme", &gid).await.unwrap().unwrap().version;
    let add = fixture("okta_add_member", &[("user_id", &ann)]);
    let again = service.acme(Method::PATCH, &group_path, Some(&add)).await.expect(StatusCode::OK);
    assert_eq!(again.header("etag"), Some(format!("W/\"{version_before}\"").as_str()));
    assert_eq!(service.store.get_group("acme", &gid).await.unwrap().unwrap().version, version_before);

    let read = service.acme(Method::GET, &group_path, None).await.expect(StatusCode::OK);
    let mut expected = vec![ann.clone(), bob.clone()];
    expected.sort();
    assert_eq!(member_ids(&read.body), expected);
    let ann_read = service.acme(Method::GET, &format!("/Users/{ann}"), None).await.expect(StatusCode::OK);
    assert_eq!(ann_read.body["groups"][0]["value"], gid.as_str());
    assert_eq!(ann_read.body["groups"][0]["display"], "Engineering");

    let remove = fixture("okta_remove_member", &[("user_id", &ann)]);
    service.acme(Method::PATCH, &group_path, Some(&remove)).await.expect(StatusCode::OK);
    let read = service.acme(Method::GET, &group_path, None).await.expect(StatusCode::OK);
    assert_eq!(member_ids(&read.body), vec![bob.clone()]);

    let rename = fixture("okta_rename_group", &[("group_id", &gid)]);
    let renamed = service.acme(Method::PATCH, &group_path, Some(&rename)).await.expect(StatusCode::OK);
    assert_eq!(renamed.body["displayName"], "Platform Engineering");
    let found = service
        .acme(Method::GET, &filter_path("/Groups", "displayName eq \"platform engineering\""), None)
        .await;
    let found = found.expect(StatusCode::OK);
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.body["Resources"][0]["displayName"], "Platform Engineering");
    assert_eq!(member_ids(&found.body["Resources"][0]), vec![bob.clone()], "a rename keeps the members");

    let members = service
        .acme(Method::GET, &filter_path("/Groups", &format!("members[value eq \"{bob}\"]")), None)
        .await;
    assert_eq!(members.expect(StatusCode::OK).body["totalResults"], 1);
    service.acme(Method::DELETE, &group_path, None).await.expect(StatusCode::NO_CONTENT);
    service.acme(Method::GET, &group_path, None).await.expect_error(StatusCode::NOT_FOUND, None);
}

async fn entra_adds_and_removes_members_and_renames(service: Service) {
    let user = service.create_user("carol@acme.example").await;
    let groups = service.url("acme", "/Groups");
    let created = service
        .send(Method::POST, &groups, Some(ENTRA_TOKEN), Some(&fixture("entra_create_group", &[])), &[])
        .await;
    let gid = created.expect(StatusCode::CREATED).body["id"].as_str().unwrap().to_owned();
    let group_url = service.url("acme", &format!("/Groups/{gid}"));
    let add = fixture("entra_add_member", &[("user_id", &user)]);
    service.send(Method::PATCH, &group_url, Some(ENTRA_TOKEN), Some(&add), &[]).await.expect(StatusCode::OK);
    assert_eq!(service.store.count_members("acme", &gid).await.unwrap(), 1);

    // Entra ID reads groups without their members.
    let path = format!("{}&excludedAttributes=members", filter_path("/Groups", "displayName eq \"Group1\""));
    let listed = service.send(Method::GET, &service.url("acme", &path), Some(ENTRA_TOKEN), None, &[]).await;
    let listed = listed.expect(StatusCode::OK);
    assert_eq!(listed.body["totalResults"], 1);
    assert!(listed.body["Resources"][0].get("members").is_none(), "{}", listed.body);
    assert_eq!(listed.body["Resources"][0]["externalId"], "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");

    let remove = fixture("entra_remove_member", &[("user_id", &user)]);
    service
        .send(Method::PATCH, &group_url, Some(ENTRA_TOKEN), Some(&remove), &[])
        .await
        .expect(StatusCode::OK);
    assert_eq!(service.store.count_members("acme", &gid).await.unwrap(), 0);

    let rename = fixture("entra_rename_group", &[]);
    service
        .send(Method::PATCH, &group_url, Some(ENTRA_TOKEN), Some(&rename), &[])
        .await
        .expect(StatusCode::OK);
    assert_eq!(service.store.get_group("acme", &gid).await.unwrap().unwrap().display_name, "Group1 Renamed");
}

async fn a_group_patch_applies_all_or_nothing(service: Service) {
    let user = service.create_user("dave@acme.example").await;
    let created = service.acme(Method::POST, "/Groups", Some(&fixture("okta_create_group", &[]))).await;
    let gid = created.expect(StatusCode::CREATED).body["id"].as_str().unwrap().to_owned();
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "path": "displayName", "value": "Renamed"},
            {"op": "add", "path": "members", "value": [{"value": user}, {"value": "no-such-user"}]},
        ]
    });
    let answer = service.acme(Method::PATCH, &format!("/Groups/{gid}"), Some(&body)).await;
    let answer = answer.expect_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    assert!(answer.body["detail"].as_str().unwrap().contains("no-such-user"));
    let group = service.store.get_group("acme", &gid).await.unwrap().unwrap();
    assert_eq!(group.display_name, "Engineering", "the rename was rolled back");
    assert_eq!(service.store.count_members("acme", &gid).await.unwrap(), 0);

    let bad_path = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "path": "displayName", "value": "Renamed"},
            {"op": "replace", "path": "nosuch", "value": 1},
        ]
    });
    let answer = service.acme(Method::PATCH, &format!("/Groups/{gid}"), Some(&bad_path)).await;
    answer.expect_error(StatusCode::BAD_REQUEST, Some("invalidPath"));
    assert_eq!(service.store.get_group("acme", &gid).await.unwrap().unwrap().display_name, "Engineering");
}

async fn filters_pagination_and_sorting(service: Service) {
    for name in ["erin", "alice", "dan", "bob", "carl"] {
        service.create_user(&format!("{name}@acme.example")).await;
    }
    service.create_user("zed@other.example").await;
    let page = service
        .acme(Method::GET, "/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=2", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(page.body["totalResults"], 6);
    assert_eq!(page.body["startIndex"], 2);
    assert_eq!(page.body["itemsPerPage"], 2);
    let names: Vec<&str> =
        page.body["Resources"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap()).collect();
    assert_eq!(names, ["erin@acme.example", "dan@acme.example"]);

    let counted = service
        .acme(Method::GET, &format!("{}&count=0", filter_path("/Users", "userName co \"@ACME.\"")), None)
        .await;
    let counted = counted.expect(StatusCode::OK);
    assert_eq!(counted.body["totalResults"], 5);
    assert_eq!(counted.body["Resources"], json!([]));

    let combined =
        "(userName sw \"a\" or userName ew \"other.example\") and not (userName eq \"zed@other.example\")";
    let found =
        service.acme(Method::GET, &filter_path("/Users", combined), None).await.expect(StatusCode::OK);
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.body["Resources"][0]["userName"], "alice@acme.example");

    let past = service
        .acme(
            Method::GET,
            &filter_path("/Users", "meta.created gt \"2001-01-01T00:00:00Z\" and active eq true"),
            None,
        )
        .await;
    assert_eq!(past.expect(StatusCode::OK).body["totalResults"], 6);
    let absent = service.acme(Method::GET, &filter_path("/Users", "displayName pr"), None).await;
    assert_eq!(absent.expect(StatusCode::OK).body["totalResults"], 0);
    let bad_sort = service.acme(Method::GET, "/Users?sortBy=emails", None).await;
    bad_sort.expect_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
}

async fn search_endpoint_and_attribute_selection(service: Service) {
    service
        .acme(Method::POST, "/Users", Some(&fixture("okta_create_user", &[])))
        .await
        .expect(StatusCode::CREATED);
    let search = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "attributes": ["userName", "name.givenName"],
        "filter": "name.familyName eq \"lee\"",
        "startIndex": 1,
        "count": 10,
    });
    let found = service.acme(Method::POST, "/Users/.search", Some(&search)).await.expect(StatusCode::OK);
    assert_eq!(found.body["totalResults"], 1);
    let user = &found.body["Resources"][0];
    let mut keys: Vec<&String> = user.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["id", "name", "schemas", "userName"], "{user}");
    assert_eq!(user["name"], json!({"givenName": "Ann"}));

    let id = user["id"].as_str().unwrap();
    let read = service.acme(Method::GET, &format!("/Users/{id}?excludedAttributes=emails,meta"), None).await;
    let read = read.expect(StatusCode::OK);
    assert!(read.body.get("emails").is_none() && read.body.get("meta").is_none(), "{}", read.body);
    assert_eq!(read.body["userName"], "ann.lee@acme.example");
}

// === Negative cases. ===

async fn malformed_and_unknown_filters_are_invalid_filter(service: Service) {
    for filter in ["userName eq", "userName xx \"a\"", "(userName eq \"a\"", "userName eq \"unterminated"] {
        let answer = service.acme(Method::GET, &filter_path("/Users", filter), None).await;
        answer.expect_error(StatusCode::BAD_REQUEST, Some("invalidFilter"));
    }
    let unknown = service.acme(Method::GET, &filter_path("/Users", "shoeSize eq \"42\""), None).await;
    let unknown = unknown.expect_error(StatusCode::BAD_REQUEST, Some("invalidFilter"));
    assert!(unknown.body["detail"].as_str().unwrap().contains("shoeSize"));
    let deep = format!("{}userName eq \"a\"{}", "(".repeat(40), ")".repeat(40));
    service
        .acme(Method::GET, &filter_path("/Users", &deep), None)
        .await
        .expect_error(StatusCode::BAD_REQUEST, Some("invalidFilter"));
    let long = format!("userName eq \"{}\"", "a".repeat(5000));
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": long});
    service
        .acme(Method::POST, "/Users/.search", Some(&search))
        .await
        .expect_error(StatusCode::BAD_REQUEST, Some("invalidFilter"));
}

async fn unknown_ids_duplicates_and_stale_etags(service: Service) {
    let missing = service.acme(Method::GET, "/Users/does-not-exist", None).await;
    let missing = missing.expect_error(StatusCode::NOT_FOUND, None);
    assert!(missing.body["detail"].as_str().unwrap().contains("does-not-exist"));
    service
        .acme(Method::DELETE, "/Groups/does-not-exist", None)
        .await
        .expect_error(StatusCode::NOT_FOUND, None);

    let id = service.create_user("erin@acme.example").await;
    let duplicate =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ERIN@acme.example"});
    service
        .acme(Method::POST, "/Users", Some(&duplicate))
        .await
        .expect_error(StatusCode::CONFLICT, Some("uniqueness"));
    service
        .acme(Method::POST, "/Groups", Some(&fixture("okta_create_group", &[])))
        .await
        .expect(StatusCode::CREATED);
    service
        .acme(Method::POST, "/Groups", Some(&fixture("okta_create_group", &[])))
        .await
        .expect_error(StatusCode::CONFLICT, Some("uniqueness"));

    let url = service.url("acme", &format!("/Users/{id}"));
    let deactivate = fixture("okta_deactivate_user", &[]);
    let stale = service
        .send(Method::PATCH, &url, Some(OKTA_TOKEN), Some(&deactivate), &[("if-match", "W/\"7\"")])
        .await;
    stale.expect_error(StatusCode::PRECONDITION_FAILED, None);
    assert!(service.store.get_user("acme", &id).await.unwrap().unwrap().active, "nothing changed");
    let fresh = service
        .send(Method::PATCH, &url, Some(OKTA_TOKEN), Some(&deactivate), &[("if-match", "W/\"1\"")])
        .await;
    fresh.expect(StatusCode::OK);
    let put =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "erin@acme.example"});
    let stale_put =
        service.send(Method::PUT, &url, Some(OKTA_TOKEN), Some(&put), &[("if-match", "W/\"1\"")]).await;
    stale_put.expect_error(StatusCode::PRECONDITION_FAILED, None);
    let stale_delete =
        service.send(Method::DELETE, &url, Some(OKTA_TOKEN), None, &[("if-match", "W/\"1\"")]).await;
    stale_delete.expect_error(StatusCode::PRECONDITION_FAILED, None);
    let put = service.send(Method::PUT, &url, Some(OKTA_TOKEN), Some(&put), &[("if-match", "*")]).await;
    assert_eq!(put.expect(StatusCode::OK).body["active"], true, "PUT replaces: active defaults to true");
}

async fn tokens_only_open_their_own_organization(service: Service) {
    let users = service.url("acme", "/Users");
    service.send(Method::GET, &users, None, None, &[]).await.expect_error(StatusCode::UNAUTHORIZED, None);
    service
        .send(Method::GET, &users, Some("wrong"), None, &[])
        .await
        .expect_error(StatusCode::UNAUTHORIZED, None);
    service
        .send(Method::GET, &users, Some(GLOBEX_TOKEN), None, &[])
        .await
        .expect_error(StatusCode::UNAUTHORIZED, None);
    service
        .send(Method::GET, &users, Some(DISABLED_IDP_TOKEN), None, &[])
        .await
        .expect_error(StatusCode::UNAUTHORIZED, None);
    let nowhere = service.url("no-such-org", "/Users");
    service
        .send(Method::GET, &nowhere, Some(OKTA_TOKEN), None, &[])
        .await
        .expect_error(StatusCode::UNAUTHORIZED, None);
    let basic =
        service.send(Method::GET, &users, None, None, &[("authorization", "Basic b2t0YTpva3Rh")]).await;
    assert_eq!(
        basic.expect_error(StatusCode::UNAUTHORIZED, None).header("www-authenticate"),
        Some("Bearer realm=\"scim\"")
    );

    // Authorization comes before the body: a bad body with a bad token is a 401.
    let answer = service.send(Method::POST, &users, Some("wrong"), Some(&json!("not a user")), &[]).await;
    answer.expect_error(StatusCode::UNAUTHORIZED, None);

    // A user of acme is invisible through globex.
    let id = service.create_user("frank@acme.example").await;
    let globex = service.url("globex", &format!("/Users/{id}"));
    service
        .send(Method::GET, &globex, Some(GLOBEX_TOKEN), None, &[])
        .await
        .expect_error(StatusCode::NOT_FOUND, None);
    let listed =
        service.send(Method::GET, &service.url("globex", "/Users"), Some(GLOBEX_TOKEN), None, &[]).await;
    assert_eq!(listed.expect(StatusCode::OK).body["totalResults"], 0);

    // A revoked token stops working at once.
    service.store.set_scim_token_hash("acme", "okta", None).await.unwrap();
    service
        .send(Method::GET, &users, Some(OKTA_TOKEN), None, &[])
        .await
        .expect_error(StatusCode::UNAUTHORIZED, None);
}

async fn writes_are_refused_unless_provisioning_mode_is_scim(service: Service) {
    let users = service.url("initech", "/Users");
    let body = fixture("okta_create_user", &[]);
    let refused = service.send(Method::POST, &users, Some(INITECH_TOKEN), Some(&body), &[]).await;
    let refused = refused.expect_error(StatusCode::FORBIDDEN, None);
    assert!(refused.body["detail"].as_str().unwrap().contains("jit"), "{}", refused.body);
    let groups = service.url("initech", "/Groups");
    let group = fixture("okta_create_group", &[]);
    service
        .send(Method::POST, &groups, Some(INITECH_TOKEN), Some(&group), &[])
        .await
        .expect_error(StatusCode::FORBIDDEN, None);
    assert_eq!(service.store.count_users("initech").await.unwrap(), 0);
    // Reads still work, so the identity provider's connection test passes.
    service.send(Method::GET, &users, Some(INITECH_TOKEN), None, &[]).await.expect(StatusCode::OK);
}

async fn discovery_declares_what_works_and_refuses_writes(service: Service) {
    let config = service.acme(Method::GET, "/ServiceProviderConfig", None).await.expect(StatusCode::OK);
    assert_eq!(config.body["bulk"]["supported"], false);
    assert_eq!(config.body["patch"]["supported"], true);
    assert_eq!(config.body["filter"]["supported"], true);
    assert_eq!(config.body["etag"]["supported"], true);
    assert_eq!(config.body["changePassword"]["supported"], true);
    let schemas = service.acme(Method::GET, "/Schemas", None).await.expect(StatusCode::OK);
    assert_eq!(schemas.body["totalResults"], 3);
    let user_schema =
        service.acme(Method::GET, "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", None).await;
    assert_eq!(user_schema.expect(StatusCode::OK).body["name"], "User");
    let types = service.acme(Method::GET, "/ResourceTypes", None).await.expect(StatusCode::OK);
    assert_eq!(types.body["totalResults"], 2);
    service.acme(Method::GET, "/ResourceTypes/Group", None).await.expect(StatusCode::OK);
    service.acme(Method::GET, "/ResourceTypes/Printer", None).await.expect_error(StatusCode::NOT_FOUND, None);
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let answer = service.acme(method, "/ServiceProviderConfig", Some(&json!({}))).await;
        answer.expect_error(StatusCode::METHOD_NOT_ALLOWED, None);
    }
    service
        .acme(Method::PUT, "/Users", Some(&json!({})))
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, None);
    service.acme(Method::GET, "/Bulk", None).await.expect_error(StatusCode::NOT_FOUND, None);
}

async fn bodies_are_bounded_and_must_be_json(service: Service) {
    let users = service.url("acme", "/Users");
    let huge = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x".repeat(2 * 1024 * 1024)});
    let refused = service.send(Method::POST, &users, Some(OKTA_TOKEN), Some(&huge), &[]).await;
    // The server will not read the rest of that body, so it ends the
    // connection and says so: the client's next request, on the same pooled
    // client, goes on a new connection instead of racing the close.
    assert_eq!(refused.headers.get("connection").map(|v| v.to_str().unwrap()), Some("close"));
    refused.expect_error(StatusCode::PAYLOAD_TOO_LARGE, None);
    let answer = service
        .client
        .post(&users)
        .bearer_auth(OKTA_TOKEN)
        .header("content-type", "application/scim+json")
        .body("{not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let body: Value = answer.json().await.expect("a SCIM error");
    assert_eq!(body["scimType"], "invalidSyntax");
    let no_name = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "displayName": "Nobody"});
    service
        .acme(Method::POST, "/Users", Some(&no_name))
        .await
        .expect_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    let unknown =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "u", "shoeSize": 42});
    service
        .acme(Method::POST, "/Users", Some(&unknown))
        .await
        .expect_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
}

async fn sync_health_counts_requests_errors_and_provisioned_resources(service: Service) {
    service.create_user("gina@acme.example").await;
    service
        .acme(Method::POST, "/Groups", Some(&fixture("okta_create_group", &[])))
        .await
        .expect(StatusCode::CREATED);
    service.acme(Method::GET, "/Users/missing", None).await.expect_error(StatusCode::NOT_FOUND, None);
    // Counted in memory, written by the service on its own within FLUSH_DELAY.
    let deadline = Instant::now() + FLUSH_DELAY + Duration::from_secs(10);
    let health = loop {
        let health = service.store.scim_sync_health("acme", "okta").await.unwrap();
        match health {
            Some(health) if health.request_count >= 3 => break health,
            _ if Instant::now() > deadline => panic!("sync health not written in time: {health:?}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(health.request_count, 3);
    assert_eq!(health.error_count, 1);
    assert!(health.last_error.as_deref().is_some_and(|e| e.starts_with("404")), "{health:?}");
    assert!(health.last_error_ms.is_some());
    assert_eq!(health.users_provisioned, 1);
    assert_eq!(health.groups_provisioned, 1);
    assert_eq!(service.store.scim_sync_health("acme", "entra").await.unwrap(), None);
    // Flushing (as at shutdown) writes what was counted at once.
    service.acme(Method::GET, "/Users", None).await.expect(StatusCode::OK);
    service.state.flush_sync_health().await;
    let health = service.store.scim_sync_health("acme", "okta").await.unwrap().expect("health is recorded");
    assert_eq!((health.request_count, health.error_count), (4, 1));
    assert!(health.last_request_ms >= health.last_error_ms.unwrap_or_default());
    // The metrics are not on the public listener (the binary serves them on
    // --metrics-listen): there /metrics is no endpoint.
    let public = service.client.get(format!("{}/metrics", service.base)).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let metrics = service.state.metrics.render();
    assert!(
        metrics.contains(
            "portcullis_scim_requests_total{namespace=\"acme\",identity_provider=\"okta\",status=\"4xx\"} 1"
        ),
        "{metrics}"
    );
}

// === Membership changes reach the access index. ===

async fn a_membership_added_over_scim_grants_the_group_role(service: Service) {
    use portcullis::authz::{Principal, Scope};

    let mut acme = organization("acme", "acme", "scim");
    acme.meta.generation = 2;
    acme.catalog = vec!["journeys.publish".into()];
    service.store.apply(&acme).await.unwrap();
    let permissions = vec!["journeys.publish".to_owned()];
    service
        .store
        .apply(&RoleRecord {
            meta: ObjectMeta::new("uid-role-publisher", "acme", "publisher", 1),
            scope: RoleScope::Organization,
            spec_json: json!({"permissions": permissions}).to_string(),
            permissions,
            included_roles: Vec::new(),
        })
        .await
        .unwrap();
    service
        .store
        .apply(&AssignmentRecord {
            meta: ObjectMeta::new("uid-ra-engineering", "acme", "engineering-publish", 1),
            principal_kind: PrincipalKind::Group,
            principal_name: "Engineering".into(),
            role: "publisher".into(),
            workspace: None,
            expires_at_ms: None,
            spec_json: json!({"principal": "Engineering", "role": "publisher"}).to_string(),
        })
        .await
        .unwrap();
    let follower = IndexFollower::start(service.store.clone(), "acme").await.unwrap();
    let user = service.create_user("hal@acme.example").await;
    let created = service.acme(Method::POST, "/Groups", Some(&fixture("okta_create_group", &[]))).await;
    let gid = created.expect(StatusCode::CREATED).body["id"].as_str().unwrap().to_owned();
    let allows = |snapshot: &IndexSnapshot| {
        let principal = Principal::user("hal@acme.example");
        snapshot.index.check(&principal, "journeys.publish", &Scope::Organization, 0).is_allowed()
    };
    assert!(!allows(&follower.current()));

    let add = fixture("okta_add_member", &[("user_id", &user)]);
    service.acme(Method::PATCH, &format!("/Groups/{gid}"), Some(&add)).await.expect(StatusCode::OK);
    let mut snapshots = follower.subscribe();
    let deadline = std::time::Duration::from_secs(15);
    tokio::time::timeout(deadline, snapshots.wait_for(|snapshot| allows(snapshot)))
        .await
        .expect("the follower saw the new membership in time")
        .expect("the follower is running");
}

/// Finding 9 of issue 13: any SCIM token could PATCH a local account (it
/// disabled the bootstrap administrator) and users provisioned by another
/// IdentityProvider. Reads still see every user and group of the
/// organization; writes reach only the caller's own (and users no provider
/// claims), others get 403 in the SCIM Error schema and stay as they were.
async fn writes_touch_only_the_callers_own_users_and_groups(service: Service) {
    let admin = service
        .store
        .create_user(&NewUser {
            emails: vec![Email::primary("admin@acme.example")],
            ..NewUser::new("acme", "admin@acme.example", UserSource::Local)
        })
        .await
        .unwrap();
    let admin_url = format!("/Users/{}", admin.id);
    let read = service.acme(Method::GET, &admin_url, None).await.expect(StatusCode::OK);
    assert_eq!(read.body["userName"], "admin@acme.example");
    let deactivate = fixture("okta_deactivate_user", &[]);
    let answer = service.acme(Method::PATCH, &admin_url, Some(&deactivate)).await;
    let detail = answer.expect_error(StatusCode::FORBIDDEN, None).body["detail"].clone();
    assert!(detail.as_str().unwrap().contains("local account"), "{detail}");
    let replace = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "admin@acme.example", "active": false});
    service.acme(Method::PUT, &admin_url, Some(&replace)).await.expect_error(StatusCode::FORBIDDEN, None);
    service.acme(Method::DELETE, &admin_url, None).await.expect_error(StatusCode::FORBIDDEN, None);
    let stored = service.store.get_user("acme", &admin.id).await.unwrap().expect("still there");
    assert!(stored.active, "the local account is untouched");

    // Entra ID's user and group: Okta reads them, cannot change them.
    let users = service.url("acme", "/Users");
    let created = service
        .send(Method::POST, &users, Some(ENTRA_TOKEN), Some(&fixture("entra_create_user", &[])), &[])
        .await;
    let grace = created.expect(StatusCode::CREATED).body["id"].as_str().unwrap().to_owned();
    let grace_url = format!("/Users/{grace}");
    service.acme(Method::GET, &grace_url, None).await.expect(StatusCode::OK);
    let answer = service.acme(Method::PATCH, &grace_url, Some(&deactivate)).await;
    let detail = answer.expect_error(StatusCode::FORBIDDEN, None).body["detail"].clone();
    assert!(detail.as_str().unwrap().contains("IdentityProvider entra"), "{detail}");
    service.acme(Method::DELETE, &grace_url, None).await.expect_error(StatusCode::FORBIDDEN, None);
    let answer = service
        .send(Method::PATCH, &service.url("acme", &grace_url), Some(ENTRA_TOKEN), Some(&deactivate), &[])
        .await;
    assert_eq!(answer.expect(StatusCode::OK).body["active"], false, "its own provider still can");

    let groups = service.url("acme", "/Groups");
    let created = service
        .send(Method::POST, &groups, Some(ENTRA_TOKEN), Some(&fixture("entra_create_group", &[])), &[])
        .await;
    let group = created.expect(StatusCode::CREATED).body["id"].as_str().unwrap().to_owned();
    let group_url = format!("/Groups/{group}");
    service.acme(Method::GET, &group_url, None).await.expect(StatusCode::OK);
    let rename = fixture("okta_rename_group", &[("group_id", &group)]);
    service.acme(Method::PATCH, &group_url, Some(&rename)).await.expect_error(StatusCode::FORBIDDEN, None);
    service.acme(Method::DELETE, &group_url, None).await.expect_error(StatusCode::FORBIDDEN, None);
    let stored = service.store.get_group("acme", &group).await.unwrap().expect("still there");
    assert_eq!(stored.display_name, "Group1");
}

// === Issue 13, SCIM conformance: what scim2-tester and the clients expect. ===

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Whether `password` verifies against the user's stored hash, with the
/// hasher sign-in uses.
async fn signs_in_with(store: &Store, user_id: &str, password: &str) -> bool {
    let user = store.get_user("acme", user_id).await.unwrap().expect("the user exists");
    let Some(hash) = user.password_hash else { return false };
    assert!(hash.expose().starts_with("$argon2id$"), "stored as an argon2id PHC string");
    portcullis::token::password::PasswordHasher::new(1)
        .verify(password, hash.expose())
        .await
        .expect("a valid stored hash")
}

/// The password attribute (RFC 7643 §4.1.1) in an organization with password
/// sign-in enabled: stored hashed for the sign-in to check, on POST, PATCH and
/// PUT; never in an answer; too short for the policy is a 400 that does not
/// echo it.
async fn a_pushed_password_is_stored_hashed_for_sign_in_and_never_returned(service: Service) {
    const FIRST: &str = "first-Secret-passphrase-1";
    const SECOND: &str = "second-Secret-passphrase-2";
    const THIRD: &str = "third-Secret-passphrase-3";
    let body = json!({"schemas": [USER_SCHEMA], "userName": "pat@acme.example", "password": FIRST});
    let created = service.acme(Method::POST, "/Users", Some(&body)).await.expect(StatusCode::CREATED);
    assert!(created.body.get("password").is_none(), "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(signs_in_with(&service.store, &id, FIRST).await);
    assert!(!signs_in_with(&service.store, &id, SECOND).await);

    let user_path = format!("/Users/{id}");
    let patch = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "password", "value": SECOND}]});
    let patched = service.acme(Method::PATCH, &user_path, Some(&patch)).await.expect(StatusCode::OK);
    assert!(!patched.body.to_string().contains(SECOND));
    assert_eq!(patched.header("etag"), Some("W/\"2\""), "a password change is a change");
    assert!(signs_in_with(&service.store, &id, SECOND).await);
    let pathless =
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"password": THIRD}}]});
    service.acme(Method::PATCH, &user_path, Some(&pathless)).await.expect(StatusCode::OK);
    assert!(signs_in_with(&service.store, &id, THIRD).await);

    // A PUT without a password keeps it; with one, replaces it.
    let put = json!({"schemas": [USER_SCHEMA], "userName": "pat@acme.example", "displayName": "Pat"});
    service.acme(Method::PUT, &user_path, Some(&put)).await.expect(StatusCode::OK);
    assert!(signs_in_with(&service.store, &id, THIRD).await);
    let put = json!({"schemas": [USER_SCHEMA], "userName": "pat@acme.example", "password": FIRST});
    let replaced = service.acme(Method::PUT, &user_path, Some(&put)).await.expect(StatusCode::OK);
    assert!(!replaced.body.to_string().contains(FIRST));
    assert!(signs_in_with(&service.store, &id, FIRST).await);

    for path in [user_path.clone(), "/Users".to_owned()] {
        let read = service.acme(Method::GET, &path, None).await.expect(StatusCode::OK);
        assert!(!read.body.to_string().contains("password"), "{}", read.body);
        let asked = service.acme(Method::GET, &format!("{path}?attributes=password,userName"), None).await;
        assert!(!asked.expect(StatusCode::OK).body.to_string().contains("$argon2"));
    }

    // Shorter than the organization's minLength (12 by default): refused, not echoed, nothing kept.
    let short = json!({"schemas": [USER_SCHEMA], "userName": "short@acme.example", "password": "hunter2"});
    let refused = service.acme(Method::POST, "/Users", Some(&short)).await;
    let refused = refused.expect_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    assert!(!refused.body.to_string().contains("hunter2"));
    assert!(service.store.find_user_by_name("acme", "short@acme.example").await.unwrap().is_none());
    let short = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "password", "value": "hunter2"}]});
    service
        .acme(Method::PATCH, &user_path, Some(&short))
        .await
        .expect_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    assert!(signs_in_with(&service.store, &id, FIRST).await, "the password stayed");
}

/// With password sign-in disabled, a pushed password is accepted (Entra ID
/// sends one and expects success) and dropped: nothing is stored.
async fn a_pushed_password_is_accepted_and_dropped_without_password_sign_in(service: Service) {
    let mut globex = organization("globex", "globex", "scim");
    globex.meta.generation = 2;
    globex.spec_json = json!({
        "displayName": "globex",
        "provisioning": {"mode": "scim"},
        "authentication": {"password": {"enabled": false}},
    })
    .to_string();
    service.store.apply(&globex).await.unwrap();
    let users = service.url("globex", "/Users");
    let body = json!({"schemas": [USER_SCHEMA], "userName": "gus@globex.example", "password": "short"});
    let created = service.send(Method::POST, &users, Some(GLOBEX_TOKEN), Some(&body), &[]).await;
    let created = created.expect(StatusCode::CREATED);
    assert!(!created.body.to_string().contains("short\""), "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let patch = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "password", "value": "another one"}]});
    let url = service.url("globex", &format!("/Users/{id}"));
    service.send(Method::PATCH, &url, Some(GLOBEX_TOKEN), Some(&patch), &[]).await.expect(StatusCode::OK);
    let stored = service.store.get_user("globex", &id).await.unwrap().expect("the user exists");
    assert_eq!(stored.password_hash, None);
}

/// Sub-attributes without a column (an email's `display`) and attributes
/// kept as JSON survive POST, PATCH and PUT, and come back as sent.
async fn email_display_and_other_sub_attributes_are_kept(service: Service) {
    let body = json!({
        "schemas": [USER_SCHEMA],
        "userName": "eve@acme.example",
        "name": {"givenName": "Eve", "familyName": "Moneypenny", "honorificPrefix": "Ms."},
        "emails": [
            {"value": "eve@acme.example", "type": "work", "primary": true, "display": "Work"},
            {"value": "eve@home.example", "type": "home"},
        ],
        "phoneNumbers": [{"value": "+1-201-555-0123", "type": "work", "display": "Desk"}],
    });
    let created = service.acme(Method::POST, "/Users", Some(&body)).await.expect(StatusCode::CREATED);
    assert_eq!(created.body["emails"][0]["display"], "Work", "{}", created.body);
    assert!(created.body["emails"][1].get("display").is_none());
    assert_eq!(created.body["name"]["honorificPrefix"], "Ms.");
    assert_eq!(created.body["phoneNumbers"][0]["display"], "Desk");
    let id = created.body["id"].as_str().unwrap().to_owned();
    let user_path = format!("/Users/{id}");

    let patch = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "emails[type eq \"home\"].display", "value": "Home"},
        {"op": "add", "path": "emails", "value": [{"value": "eve@other.example", "type": "other", "display": "Other"}]},
    ]});
    let patched = service.acme(Method::PATCH, &user_path, Some(&patch)).await.expect(StatusCode::OK);
    let displays: Vec<(&str, &str)> = patched.body["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["value"].as_str().unwrap(), e["display"].as_str().unwrap_or("-")))
        .collect();
    assert_eq!(
        displays,
        [("eve@acme.example", "Work"), ("eve@home.example", "Home"), ("eve@other.example", "Other")],
        "{}",
        patched.body
    );
    let read = service.acme(Method::GET, &user_path, None).await.expect(StatusCode::OK);
    assert_eq!(read.body["emails"], patched.body["emails"]);
    let by_value = service
        .acme(Method::GET, &filter_path("/Users", "emails.value eq \"eve@other.example\""), None)
        .await;
    assert_eq!(by_value.expect(StatusCode::OK).body["totalResults"], 1);

    let put = json!({
        "schemas": [USER_SCHEMA],
        "userName": "eve@acme.example",
        "emails": [{"value": "eve@acme.example", "type": "work", "primary": true, "display": "Office"}],
    });
    let replaced = service.acme(Method::PUT, &user_path, Some(&put)).await.expect(StatusCode::OK);
    assert_eq!(
        replaced.body["emails"],
        json!([{"value": "eve@acme.example", "type": "work", "primary": true, "display": "Office"}])
    );
}

/// A PATCH whose path is the enterprise extension's URN and whose value is
/// its object (as scim2-tester sends it, `schemas` inside) sets those
/// attributes; POST may carry the same object.
async fn a_patch_may_name_the_enterprise_extension_with_an_object(service: Service) {
    let body = json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": "quinn@acme.example",
        ENTERPRISE: {"schemas": [ENTERPRISE], "employeeNumber": "7", "department": "Q Branch"},
    });
    let created = service.acme(Method::POST, "/Users", Some(&body)).await.expect(StatusCode::CREATED);
    assert_eq!(created.body[ENTERPRISE], json!({"employeeNumber": "7", "department": "Q Branch"}));
    let id = created.body["id"].as_str().unwrap().to_owned();
    let manager = service.create_user("m@acme.example").await;
    let patch = json!({"schemas": [PATCH_OP], "Operations": [{
        "op": "replace",
        "path": ENTERPRISE,
        "value": {"schemas": [ENTERPRISE], "department": "Research", "manager": {"value": manager}},
    }]});
    let patched = service.acme(Method::PATCH, &format!("/Users/{id}"), Some(&patch)).await;
    let patched = patched.expect(StatusCode::OK);
    assert_eq!(
        patched.body[ENTERPRISE],
        json!({"employeeNumber": "7", "department": "Research", "manager": {"value": manager}}),
        "{}",
        patched.body
    );
    let add = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "add", "path": ENTERPRISE, "value": {"costCenter": "4130"}},
    ]});
    let added = service.acme(Method::PATCH, &format!("/Users/{id}"), Some(&add)).await.expect(StatusCode::OK);
    assert_eq!(added.body[ENTERPRISE]["costCenter"], "4130");
    assert_eq!(added.body[ENTERPRISE]["department"], "Research");
}

/// `POST /.search` at the service root (RFC 7644 §3.4.3): Users and Groups in
/// one list, paged across both, each with the requested attributes it has.
async fn root_search_lists_users_and_groups_as_one_page(service: Service) {
    for name in ["ann", "bob"] {
        service.create_user(&format!("{name}@acme.example")).await;
    }
    service
        .acme(Method::POST, "/Groups", Some(&fixture("okta_create_group", &[])))
        .await
        .expect(StatusCode::CREATED);
    let service = &service;
    let search = |body: Value| async move {
        let mut body = body;
        body["schemas"] = json!(["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]);
        service.acme(Method::POST, "/.search", Some(&body)).await
    };
    let all = search(json!({"attributes": ["userName", "displayName"]})).await.expect(StatusCode::OK);
    assert_eq!(all.body["totalResults"], 3);
    let resources = all.body["Resources"].as_array().unwrap();
    assert_eq!(resources.len(), 3);
    assert_eq!(resources[0]["userName"], "ann@acme.example");
    assert_eq!(resources[1]["userName"], "bob@acme.example");
    assert_eq!(resources[2]["displayName"], "Engineering");
    assert!(resources[2].get("members").is_none(), "only the attributes asked for: {}", resources[2]);
    assert!(resources[0].get("emails").is_none());

    // The second page starts in the users and ends in the groups.
    let page = search(json!({"startIndex": 2, "count": 2})).await.expect(StatusCode::OK);
    assert_eq!(page.body["totalResults"], 3);
    assert_eq!(page.body["startIndex"], 2);
    assert_eq!(page.body["Resources"][0]["userName"], "bob@acme.example");
    assert_eq!(page.body["Resources"][1]["displayName"], "Engineering");

    // A filter on an attribute only Users have finds only users.
    let users = search(json!({"filter": "userName sw \"a\""})).await.expect(StatusCode::OK);
    assert_eq!(users.body["totalResults"], 1);
    assert_eq!(users.body["Resources"][0]["userName"], "ann@acme.example");
    let excluded = search(json!({"excludedAttributes": ["members"]})).await.expect(StatusCode::OK);
    assert_eq!(excluded.body["totalResults"], 3);
    search(json!({"filter": "shoeSize eq 42"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, Some("invalidFilter"));
    let unauthenticated =
        service.send(Method::POST, &service.url("acme", "/.search"), None, Some(&json!({})), &[]).await;
    unauthenticated.expect_error(StatusCode::UNAUTHORIZED, None);
    let globex = service
        .send(
            Method::POST,
            &service.url("globex", "/.search"),
            Some(GLOBEX_TOKEN),
            Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]})),
            &[],
        )
        .await;
    assert_eq!(globex.expect(StatusCode::OK).body["totalResults"], 0, "another organization sees none");
    service.acme(Method::GET, "/.search", None).await.expect_error(StatusCode::METHOD_NOT_ALLOWED, None);
}

/// Group PATCH (RFC 7644 §3.5.2 allows 200 or 204): 200 with the group,
/// unless the request excludes `members` or the group is large (README).
async fn a_group_patch_answers_with_the_group_unless_members_are_excluded(service: Service) {
    let ann = service.create_user("ann@acme.example").await;
    let created = service.acme(Method::POST, "/Groups", Some(&fixture("okta_create_group", &[]))).await;
    let gid = created.expect(StatusCode::CREATED).body["id"].as_str().unwrap().to_owned();
    let add = fixture("okta_add_member", &[("user_id", &ann)]);
    let patched =
        service.acme(Method::PATCH, &format!("/Groups/{gid}"), Some(&add)).await.expect(StatusCode::OK);
    assert_eq!(patched.header("content-type"), Some("application/scim+json"));
    assert_eq!(patched.header("etag"), Some("W/\"2\""));
    assert_eq!(patched.body["meta"]["version"], "W/\"2\"");
    assert_eq!(member_ids(&patched.body), vec![ann.clone()]);
    // The member's display as Okta sent it; without one, the userName.
    assert_eq!(patched.body["members"][0]["display"], "ann.lee@acme.example");
    let bob = service.create_user("bob@acme.example").await;
    let add_bob = json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": bob}]}]});
    let both =
        service.acme(Method::PATCH, &format!("/Groups/{gid}"), Some(&add_bob)).await.expect(StatusCode::OK);
    let displays: Vec<&str> =
        both.body["members"].as_array().unwrap().iter().map(|m| m["display"].as_str().unwrap()).collect();
    assert_eq!(displays, ["ann.lee@acme.example", "bob@acme.example"], "{}", both.body);
    let rename_member = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": bob, "display": "Bob B."}]},
    ]});
    let renamed = service
        .acme(Method::PATCH, &format!("/Groups/{gid}"), Some(&rename_member))
        .await
        .expect(StatusCode::OK);
    assert_eq!(renamed.body["members"][1]["display"], "Bob B.", "{}", renamed.body);
    let read = service.acme(Method::GET, &format!("/Groups/{gid}"), None).await.expect(StatusCode::OK);
    assert_eq!(read.body["members"], renamed.body["members"]);
    let remove_bob = json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": format!("members[value eq \"{bob}\"]")}]});
    let removed = service
        .acme(Method::PATCH, &format!("/Groups/{gid}"), Some(&remove_bob))
        .await
        .expect(StatusCode::OK);
    assert_eq!(member_ids(&removed.body), vec![ann.clone()]);

    let rename = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "Eng"}]});
    let quiet = service
        .acme(Method::PATCH, &format!("/Groups/{gid}?excludedAttributes=members"), Some(&rename))
        .await
        .expect(StatusCode::NO_CONTENT);
    let version = service.store.get_group("acme", &gid).await.unwrap().unwrap().version;
    assert_eq!(quiet.header("etag"), Some(format!("W/\"{version}\"").as_str()));
    assert_eq!(service.store.get_group("acme", &gid).await.unwrap().unwrap().display_name, "Eng");
    assert_eq!(quiet.body, Value::Null);
    let only_name = service
        .acme(Method::PATCH, &format!("/Groups/{gid}?attributes=displayName"), Some(&rename))
        .await
        .expect(StatusCode::OK);
    assert_eq!(only_name.body["displayName"], "Eng");
    assert!(only_name.body.get("members").is_none(), "{}", only_name.body);

    // A group of more than 1,000 members answers 204: it is never rendered whole.
    let mut ids = Vec::with_capacity(1001);
    for n in 0..1001 {
        let user = service
            .store
            .create_user(&NewUser::new("acme", format!("member-{n:04}@acme.example"), UserSource::Scim))
            .await
            .unwrap();
        ids.push(user.id);
    }
    let big = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Everyone", "members": ids.iter().map(|id| json!({"value": id})).collect::<Vec<_>>()});
    let created = service.acme(Method::POST, "/Groups", Some(&big)).await.expect(StatusCode::CREATED);
    let big_id = created.body["id"].as_str().unwrap().to_owned();
    let add = fixture("okta_add_member", &[("user_id", &ann)]);
    service
        .acme(Method::PATCH, &format!("/Groups/{big_id}"), Some(&add))
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(service.store.count_members("acme", &big_id).await.unwrap(), 1002);
}

/// A member whose User does not exist: 400 `invalidValue` naming it, and the
/// request changes nothing (POST creates no group, PUT and PATCH leave it).
async fn a_member_that_is_not_a_user_changes_nothing(service: Service) {
    let ann = service.create_user("ann@acme.example").await;
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Ghosts",
        "members": [{"value": ann}, {"value": "not-provisioned-yet"}],
    });
    let refused = service.acme(Method::POST, "/Groups", Some(&body)).await;
    let refused = refused.expect_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    assert!(refused.body["detail"].as_str().unwrap().contains("not-provisioned-yet"), "{}", refused.body);
    let found = service.acme(Method::GET, &filter_path("/Groups", "displayName eq \"Ghosts\""), None).await;
    assert_eq!(found.expect(StatusCode::OK).body["totalResults"], 0, "no group was created");

    let created = service.acme(Method::POST, "/Groups", Some(&fixture("okta_create_group", &[]))).await;
    let gid = created.expect(StatusCode::CREATED).body["id"].as_str().unwrap().to_owned();
    let add = fixture("okta_add_member", &[("user_id", &ann)]);
    service.acme(Method::PATCH, &format!("/Groups/{gid}"), Some(&add)).await.expect(StatusCode::OK);
    let put = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Renamed",
        "members": [{"value": "not-provisioned-yet"}],
    });
    let refused = service.acme(Method::PUT, &format!("/Groups/{gid}"), Some(&put)).await;
    let refused = refused.expect_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    assert!(refused.body["detail"].as_str().unwrap().contains("not-provisioned-yet"));
    let group = service.store.get_group("acme", &gid).await.unwrap().unwrap();
    assert_eq!(group.display_name, "Engineering");
    assert_eq!(service.store.count_members("acme", &gid).await.unwrap(), 1);
}

// === A pushed password, used where it matters: the sign-in form. ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_with_the_password_pushed_over_scim_on_sqlite() {
    signs_in_with_a_pushed_password(sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_with_the_password_pushed_over_scim_on_postgresql() {
    signs_in_with_a_pushed_password(postgres_store().await).await;
}

/// The token service and the SCIM service on one store: Okta pushes a user
/// with a password (then changes it by PATCH), and the user signs in with it
/// through the token service's sign-in form.
async fn signs_in_with_a_pushed_password(store: Store) {
    const PUSHED: &str = "pushed-by-okta-passphrase";
    const CHANGED: &str = "changed-by-okta-passphrase";
    let tokens = token_support::start(store.clone()).await;
    // The seeded organization, now provisioned over SCIM by Okta.
    let catalog = ["iam.view", "journeys.view", "journeys.edit", "journeys.publish"];
    store
        .apply(&OrganizationRecord {
            meta: ObjectMeta::new("acme-org-acme", "acme", "acme", 2),
            display_name: "acme".into(),
            catalog: catalog.iter().map(|p| p.to_string()).collect(),
            workspaces: vec!["eu".into(), "us".into()],
            spec_json: json!({
                "displayName": "acme",
                "workspaces": [{"name": "eu"}, {"name": "us"}],
                "permissions": catalog.iter().map(|p| json!({"name": p})).collect::<Vec<_>>(),
                "tokens": {"accessTokenLifetime": "15m", "refreshTokenLifetime": "720h", "signingAlgorithm": "ES256"},
                "provisioning": {"mode": "scim"},
            })
            .to_string(),
        })
        .await
        .unwrap();
    store.apply(&identity_provider("acme", "okta", true)).await.unwrap();
    assert!(store.set_scim_token_hash("acme", "okta", Some(&hash(OKTA_TOKEN))).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scim_base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(ScimState::new(store.clone(), &scim_base));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let users = format!("{scim_base}/o/acme/scim/v2/Users");
    let body = json!({"schemas": [USER_SCHEMA], "userName": "sam@acme.test", "password": PUSHED});
    let created = client.post(&users).bearer_auth(OKTA_TOKEN).json(&body).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let sign_in = |password: &'static str| {
        let base = tokens.base_url.clone();
        async move {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("client_id", "legacy"),
                    ("redirect_uri", token_support::LEGACY_REDIRECT),
                    ("response_type", "code"),
                    ("scope", "openid"),
                    ("state", "s"),
                ])
                .finish();
            let browser = browser_form::browser();
            let form = browser_form::open(&browser, &format!("{base}/o/acme/authorize?{query}")).await;
            assert_eq!(form.status, StatusCode::OK, "{}", form.body);
            let fields = [("username", "sam@acme.test"), ("password", password)];
            let result = browser_form::submit(&browser, &base, &form, "", &fields, &[]).await;
            result.status == StatusCode::SEE_OTHER
                && result
                    .location
                    .as_deref()
                    .is_some_and(|l| l.starts_with(token_support::LEGACY_REDIRECT) && l.contains("code="))
        }
    };
    assert!(sign_in(PUSHED).await, "the pushed password signs in");
    let patch = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "password", "value": CHANGED}]});
    let patched =
        client.patch(format!("{users}/{id}")).bearer_auth(OKTA_TOKEN).json(&patch).send().await.unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    assert!(!sign_in(PUSHED).await, "the old password no longer does");
    assert!(sign_in(CHANGED).await, "the new one does");
}

/// PATCH `remove` of `active` (RFC 7644 §3.5.2.2): unassigned, so not
/// returned; the user's status stays as it was (no way to reactivate).
async fn removing_active_leaves_it_unassigned_and_the_status_as_it_was(service: Service) {
    let id = service.create_user("una@acme.example").await;
    let path = format!("/Users/{id}");
    service
        .acme(Method::PATCH, &path, Some(&fixture("okta_deactivate_user", &[])))
        .await
        .expect(StatusCode::OK);
    let remove = json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "active"}]});
    let removed = service.acme(Method::PATCH, &path, Some(&remove)).await.expect(StatusCode::OK);
    assert!(removed.body.get("active").is_none(), "{}", removed.body);
    let title =
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "title", "value": "Analyst"}]});
    let read = service.acme(Method::PATCH, &path, Some(&title)).await.expect(StatusCode::OK);
    assert!(read.body.get("active").is_none(), "still unassigned: {}", read.body);
    assert!(!service.store.get_user("acme", &id).await.unwrap().unwrap().active, "still deactivated");
    let set =
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": true}]});
    let set = service.acme(Method::PATCH, &path, Some(&set)).await.expect(StatusCode::OK);
    assert_eq!(set.body["active"], true);
    assert!(service.store.get_user("acme", &id).await.unwrap().unwrap().active);
}
