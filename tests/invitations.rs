//! Invitations as people meet them: the real `portcullis standalone`
//! binary, over real HTTP on loopback, mailing through a real SMTP server
//! (aiosmtpd, `support/smtp_sink.rs`) whose delivered messages the tests
//! read. The admin API creates, lists, resends and revokes; the link of the
//! mail is accepted once (also when two browsers race); expiry, the
//! provisioning mode, roleSource, the caller's own permissions and bad
//! bodies each have their refusal; the link's token shows up nowhere but in
//! the mail. The last test is the scenario in Chromium, ending with
//! `portcullis audit verify` on the export.

#[path = "support/chromium.rs"]
mod chromium;
#[path = "support/openapi.rs"]
mod openapi;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/smtp_sink.rs"]
mod smtp_sink;
#[path = "support/standalone.rs"]
mod standalone;
#[path = "support/token_service.rs"]
mod token_support;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use smtp_sink::SmtpSink;
use standalone::{Standalone, free_port};

const DEADLINE: Duration = Duration::from_secs(30);
const WEBAPP_REDIRECT: &str = "https://app.acme.test/callback";
const ADMIN: &str = "ada@acme.test";
const PASSWORD: &str = "a long enough password 42";

/// The tenant: provisioning `mode`, `roleSource`, the catalog and roles, the
/// administrator ada (bootstrap), and clients: `ops` (every iam permission),
/// `helpdesk` (only iam.invite-users), `reader` (journeys.view), `webapp`
/// (sign-in for people).
fn write_tenant(dir: &Path, port: u16, mode: &str, role_source: &str) {
    let issuer = format!("http://localhost:{port}/o/acme");
    let organization = format!(
        "apiVersion: iam.portcullis.dev/v1alpha1
kind: Organization
metadata: {{ name: acme, namespace: acme }}
spec:
  displayName: Acme Test
  emailDomains: [acme.test]
  workspaces: [{{ name: eu }}]
  permissions:
    - {{ name: iam.view }}
    - {{ name: iam.invite-users, privileged: true }}
    - {{ name: iam.manage, privileged: true }}
    - {{ name: iam.manage-roles, privileged: true }}
    - {{ name: iam.export-audit, privileged: true }}
    - {{ name: journeys.view }}
    - {{ name: journeys.publish }}
  authentication:
    password: {{ enabled: true, minLength: 12 }}
    mfa: {{ required: Never, methods: [WebAuthn] }}
  provisioning: {{ mode: {mode} }}
  administration: {{ roleSource: {role_source} }}
"
    );
    std::fs::write(dir.join("organization.yaml"), organization).unwrap();
    let mut docs = Vec::new();
    for (name, scope, permissions) in [
        (
            "admin",
            "Organization",
            "[iam.view, iam.invite-users, iam.manage, iam.manage-roles, iam.export-audit, journeys.view, journeys.publish]",
        ),
        ("inviter", "Organization", "[iam.invite-users]"),
        ("viewer", "Organization", "[journeys.view]"),
        ("publisher", "Workspace", "[journeys.publish, journeys.view]"),
    ] {
        docs.push(format!(
            "apiVersion: iam.portcullis.dev/v1alpha1\nkind: Role\nmetadata: {{ name: {name}, namespace: acme }}\n\
             spec: {{ scope: {scope}, permissions: {permissions} }}\n"
        ));
    }
    for (name, kind, principal, role) in [
        ("ada-admin", "User", ADMIN, "admin"),
        ("ops-admin", "Client", "ops", "admin"),
        ("helpdesk-inviter", "Client", "helpdesk", "inviter"),
        ("reader-viewer", "Client", "reader", "viewer"),
    ] {
        docs.push(format!(
            "apiVersion: iam.portcullis.dev/v1alpha1\nkind: RoleAssignment\nmetadata: {{ name: {name}, namespace: acme }}\n\
             spec: {{ principal: {{ kind: {kind}, name: \"{principal}\" }}, role: {role}, scope: Organization }}\n"
        ));
    }
    for client in ["ops", "helpdesk", "reader"] {
        docs.push(format!(
            "apiVersion: iam.portcullis.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: {client}, namespace: acme }}\n\
             spec: {{ type: Confidential, grantTypes: [client_credentials], audiences: [\"{issuer}\"] }}\n"
        ));
    }
    docs.push(format!(
        "apiVersion: iam.portcullis.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: webapp, namespace: acme }}\n\
         spec: {{ type: Confidential, grantTypes: [authorization_code], redirectUris: [\"{WEBAPP_REDIRECT}\"],\n\
         audiences: [\"https://api.acme.test\"], tokenClaims: [roles, permissions, email] }}\n"
    ));
    std::fs::write(dir.join("access.yaml"), docs.join("---\n")).unwrap();
}

/// A tenant served by standalone, mailing to `smtp_url`.
struct Tenant {
    server: Standalone,
    manifests: tempfile::TempDir,
    _data: tempfile::TempDir,
    /// Every response body the API gave, to look for tokens in.
    seen: std::sync::Mutex<Vec<String>>,
}

impl Tenant {
    async fn start(smtp_url: &str) -> Tenant {
        let manifests = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let server = Standalone::start(manifests.path(), &data.path().join("data"), |port| {
            write_tenant(manifests.path(), port, "disabled", "API");
            vec!["--smtp-url".into(), smtp_url.into()]
        })
        .await;
        Tenant { server, manifests, _data: data, seen: std::sync::Mutex::new(Vec::new()) }
    }

    fn issuer(&self) -> String {
        self.server.issuer()
    }

    async fn token(&self, client: &str) -> String {
        let secret = self.server.client_secret(client).await;
        let response = http()
            .post(format!("{}/token", self.issuer()))
            .basic_auth(client, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "a token for {client}");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// `method path` of the admin API with `body`; the status and the JSON answer.
    async fn api(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, text) = self.api_text(token, method, path, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `method path` of the admin API; the status and the body as text, which
    /// the OpenAPI document the service serves must describe.
    async fn api_text(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let url = format!("{}/api/v1{path}", self.issuer());
        let mut request = http().request(method.parse().unwrap(), &url).bearer_auth(token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let answer = openapi::Answer::described(&self.issuer(), method, response).await;
        self.seen.lock().unwrap().push(answer.text.clone());
        (answer.status, answer.text)
    }

    /// Rewrites the tenant's manifests (the folder watch takes them in).
    async fn rewrite(&self, mode: &str, role_source: &str) {
        write_tenant(self.manifests.path(), self.server.port, mode, role_source);
    }

    /// Nothing the service printed or answered holds `token`.
    fn assert_never_shown(&self, token: &str) {
        assert!(!self.server.output().contains(token), "the link's token is in the service's output");
        for body in self.seen.lock().unwrap().iter() {
            assert!(!body.contains(token), "the link's token is in an API answer: {body}");
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A browser-like client: cookies kept, redirects not followed.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The token at the end of an invitation link.
fn token_of(link: &str) -> String {
    link.rsplit('/').next().unwrap().to_owned()
}

/// The value of the hidden `csrf` field of a page.
fn csrf_of(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn page(client: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let response = client.get(url).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// Opens the link in `client` and posts the form with `password`.
async fn accept(client: &reqwest::Client, link: &str, password: &str) -> (StatusCode, String) {
    let (status, html) = page(client, link).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let form = [("csrf", csrf_of(&html)), ("password", password.into()), ("password_again", password.into())];
    let response = client.post(link).form(&form).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn audit_actions(tenant: &Tenant, token: &str) -> Vec<String> {
    let (status, text) = tenant.api_text(token, "GET", "/audit/export", None).await;
    assert_eq!(status, StatusCode::OK);
    text.lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["event"]["action"].as_str().unwrap_or("").to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_created_listed_resent_and_revoked() {
    let sink = SmtpSink::start().await;
    let tenant = Tenant::start(&sink.url()).await;
    let ops = tenant.token("ops").await;

    let (status, created) = tenant
        .api(&ops, "POST", "/invitations", Some(json!({ "email": "bea@acme.test", "roles": ["viewer"] })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["state"], "pending");
    assert_eq!(created["mail"]["status"], "sent", "{created}");
    assert_eq!(created["invitedBy"], "ops");
    let id = created["id"].as_str().unwrap().to_owned();
    let first = sink.wait_for_mail("bea@acme.test", 1, DEADLINE).await;
    assert_eq!(first.subject, "You are invited to Acme Test");
    let first_link = first.link_containing("/invitations/").expect("a link in the mail");
    assert!(first_link.starts_with(&format!("{}/invitations/", tenant.issuer())), "{first_link}");

    // A second invitation of the same address is refused while one is pending.
    let (status, problem) =
        tenant.api(&ops, "POST", "/invitations", Some(json!({ "email": "BEA@acme.test" }))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "urn:portcullis:problem:conflict");

    // Listed, filtered, paged.
    for email in ["cy@acme.test", "dee@acme.test"] {
        let (status, _) = tenant.api(&ops, "POST", "/invitations", Some(json!({ "email": email }))).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, all) = tenant.api(&ops, "GET", "/invitations?state=pending", None).await;
    assert_eq!(all["invitations"].as_array().unwrap().len(), 3, "{all}");
    let (_, one) = tenant.api(&ops, "GET", "/invitations?email=bea@acme.test", None).await;
    assert_eq!(one["invitations"][0]["id"], id.as_str());
    let (_, first_page) = tenant.api(&ops, "GET", "/invitations?limit=2", None).await;
    let cursor = first_page["nextCursor"].as_str().expect("a next page");
    let (_, second_page) =
        tenant.api(&ops, "GET", &format!("/invitations?limit=2&cursor={cursor}"), None).await;
    let emails: Vec<&str> = [&first_page, &second_page]
        .iter()
        .flat_map(|p| p["invitations"].as_array().unwrap().iter().map(|i| i["email"].as_str().unwrap()))
        .collect();
    assert_eq!(emails, ["bea@acme.test", "cy@acme.test", "dee@acme.test"]);
    assert!(second_page.get("nextCursor").is_none());
    let (status, problem) = tenant.api(&ops, "GET", "/invitations?state=lost", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["errors"][0]["parameter"], "state");

    // Resend: a new link, and the first one is dead.
    let (status, resent) = tenant.api(&ops, "POST", &format!("/invitations/{id}/resend"), None).await;
    assert_eq!(status, StatusCode::OK, "{resent}");
    assert_eq!(resent["links"], 2);
    let second_link =
        sink.wait_for_mail("bea@acme.test", 2, DEADLINE).await.link_containing("/invitations/").unwrap();
    assert_ne!(second_link, first_link);
    let (status, html) = page(&browser(), &first_link).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("most recent mail"), "{html}");
    let (status, html) = page(&browser(), &second_link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("bea@acme.test") && html.contains("viewer"), "{html}");

    // Revoke: the link says so, and nothing more can be done with it.
    let (status, revoked) = tenant.api(&ops, "POST", &format!("/invitations/{id}/revoke"), None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    let (status, html) = page(&browser(), &second_link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("withdrawn"), "{html}");
    let (status, _) = tenant.api(&ops, "POST", &format!("/invitations/{id}/resend"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, problem) = tenant.api(&ops, "GET", "/invitations/no-such-id", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");

    let actions = audit_actions(&tenant, &ops).await;
    for action in ["invitation.create", "invitation.resend", "invitation.revoke"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
    tenant.assert_never_shown(&token_of(&first_link));
    tenant.assert_never_shown(&token_of(&second_link));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_is_accepted_once_even_by_two_browsers_at_the_same_time() {
    let sink = SmtpSink::start().await;
    let tenant = Tenant::start(&sink.url()).await;
    let ops = tenant.token("ops").await;
    let body = json!({ "email": "eve@acme.test", "roles": ["publisher"], "workspace": "eu" });
    let (status, created) = tenant.api(&ops, "POST", "/invitations", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let link =
        sink.wait_for_mail("eve@acme.test", 1, DEADLINE).await.link_containing("/invitations/").unwrap();

    // A password shorter than the policy, or two that differ, change nothing.
    let (status, html) = accept(&browser(), &link, "short").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("at least 12 characters"), "{html}");
    // A post without this browser's CSRF token is refused.
    let response = browser()
        .post(&link)
        .form(&[("csrf", "forged"), ("password", PASSWORD), ("password_again", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Two browsers open the link and post at once: exactly one account.
    let (one, two) = (browser(), browser());
    let (page_one, page_two) = (page(&one, &link).await.1, page(&two, &link).await.1);
    let post = |client: &reqwest::Client, html: &str| {
        let form =
            [("csrf", csrf_of(html)), ("password", PASSWORD.into()), ("password_again", PASSWORD.into())];
        client.post(&link).form(&form).send()
    };
    let (first, second) = tokio::join!(post(&one, &page_one), post(&two, &page_two));
    let mut statuses = [first.unwrap().status(), second.unwrap().status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::GONE], "exactly one acceptance wins");
    let (status, html) = page(&browser(), &link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("accepted already"), "{html}");

    // The user exists once, local, with the invited role in the workspace.
    let (_, users) = tenant.api(&ops, "GET", "/users", None).await;
    let eve: Vec<&Value> =
        users["users"].as_array().unwrap().iter().filter(|u| u["userName"] == "eve@acme.test").collect();
    assert_eq!(eve.len(), 1, "{users}");
    assert_eq!(eve[0]["source"], "local");
    let user_id = eve[0]["id"].as_str().unwrap();
    let started = Instant::now();
    loop {
        let (_, user) = tenant.api(&ops, "GET", &format!("/users/{user_id}"), None).await;
        let scopes = user["access"]["scopes"].as_array().cloned().unwrap_or_default();
        let in_eu = scopes.iter().find(|s| s["scope"]["workspace"] == "eu");
        if in_eu.is_some_and(|s| {
            s["permissions"].as_array().unwrap().iter().any(|p| p["permission"] == "journeys.publish")
        }) {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "the invited role never applied: {user}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, invitation) =
        tenant.api(&ops, "GET", &format!("/invitations/{}", created["id"].as_str().unwrap()), None).await;
    assert_eq!(invitation["state"], "accepted");
    assert_eq!(invitation["userId"], user_id);
    let actions = audit_actions(&tenant, &ops).await;
    assert_eq!(actions.iter().filter(|a| *a == "invitation.accept").count(), 1, "{actions:?}");
    tenant.assert_never_shown(&token_of(&link));
    assert!(!tenant.server.output().contains(PASSWORD), "the password is in the service's output");
}

/// The same race on PostgreSQL, where two transactions really run at once:
/// the token service over HTTP on a store of the real server, an invitation
/// stored with a token the test chose, ten browsers posting together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_one_of_many_concurrent_acceptances_wins() {
    use portcullis::secret::SecretString;
    use portcullis::store::{InvitationStore as _, NewInvitation, UserStore as _};

    let url = tokio::task::spawn_blocking(|| postgres::Postgres::shared().create_database()).await.unwrap();
    let store = portcullis::store::Store::connect(&url).await.expect("connect to the test PostgreSQL");
    let service = token_support::start(store).await;
    let token = SecretString::generate();
    service
        .store
        .create_invitation(&NewInvitation {
            organization: token_support::ORG.into(),
            email: "race@acme.test".into(),
            workspace: None,
            roles: vec!["viewer".into()],
            token_hash: token.hash(),
            invited_by: "test".into(),
            lifetime_ms: 600_000,
        })
        .await
        .expect("store an invitation");
    let link = format!("{}/invitations/{}", service.issuer(token_support::ORG), token.expose());
    let mut pages = Vec::new();
    for _ in 0..10 {
        let client = browser();
        let (status, html) = page(&client, &link).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        pages.push((client, csrf_of(&html)));
    }
    let link = &link;
    let posts = pages.iter().map(|(client, csrf)| {
        let form =
            [("csrf", csrf.clone()), ("password", PASSWORD.into()), ("password_again", PASSWORD.into())];
        async move { client.post(link).form(&form).send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(posts).await;
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::GONE), "{statuses:?}");
    let users = service.store.find_users_by_email(token_support::ORG, "race@acme.test").await.unwrap();
    assert_eq!(users.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_link_is_refused_and_a_resend_makes_a_working_one() {
    let sink = SmtpSink::start().await;
    let tenant = Tenant::start(&sink.url()).await;
    let ops = tenant.token("ops").await;
    let (status, created) = tenant
        .api(&ops, "POST", "/invitations", Some(json!({ "email": "fay@acme.test", "expiresIn": "1s" })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let link =
        sink.wait_for_mail("fay@acme.test", 1, DEADLINE).await.link_containing("/invitations/").unwrap();
    let started = Instant::now();
    loop {
        let (status, html) = page(&browser(), &link).await;
        if status == StatusCode::GONE {
            assert!(html.contains("expired"), "{html}");
            break;
        }
        assert!(started.elapsed() < DEADLINE, "the link never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, expired) = tenant.api(&ops, "GET", "/invitations?state=expired", None).await;
    assert_eq!(expired["invitations"][0]["id"], id.as_str(), "{expired}");
    let (status, _) = tenant.api(&ops, "POST", &format!("/invitations/{id}/resend"), None).await;
    assert_eq!(status, StatusCode::OK);
    let fresh =
        sink.wait_for_mail("fay@acme.test", 2, DEADLINE).await.link_containing("/invitations/").unwrap();
    let (status, html) = accept(&browser(), &fresh, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Invitation accepted"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_problem_documents_and_follow_the_organization() {
    let sink = SmtpSink::start().await;
    let tenant = Tenant::start(&sink.url()).await;
    let (ops, helpdesk, reader) =
        (tenant.token("ops").await, tenant.token("helpdesk").await, tenant.token("reader").await);

    let (status, problem) =
        tenant.api(&reader, "POST", "/invitations", Some(json!({ "email": "x@acme.test" }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["type"], "urn:portcullis:problem:forbidden");
    let (status, _) = tenant.api(&reader, "GET", "/invitations", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An inviter grants nothing it lacks: helpdesk holds only iam.invite-users.
    let body = json!({ "email": "gus@acme.test", "roles": ["viewer"] });
    let (status, problem) = tenant.api(&helpdesk, "POST", "/invitations", Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["type"], "urn:portcullis:problem:escalation");
    assert!(problem["detail"].as_str().unwrap().contains("journeys.view"), "{problem}");
    let (status, _) =
        tenant.api(&helpdesk, "POST", "/invitations", Some(json!({ "email": "gus@acme.test" }))).await;
    assert_eq!(status, StatusCode::CREATED);

    for (body, field) in [
        (json!({ "email": "h@acme.test", "nickname": "h" }), "nickname"),
        (json!({ "email": "not an address" }), "email"),
        (json!({ "email": "h@acme.test", "roles": ["nope"] }), "roles[0]"),
        (json!({ "email": "h@acme.test", "roles": ["publisher"] }), "roles[0]"),
        (json!({ "email": "h@acme.test", "workspace": "mars" }), "workspace"),
        (json!({ "email": "h@acme.test", "expiresIn": "forever" }), "expiresIn"),
        (json!({ "email": "h@acme.test", "expiresIn": "9000h" }), "expiresIn"),
        (json!({ "roles": [] }), ""),
    ] {
        let (status, problem) = tenant.api(&ops, "POST", "/invitations", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let huge = json!({ "email": "h@acme.test", "roles": vec!["x".repeat(1000); 80] });
    let (status, problem) = tenant.api(&ops, "POST", "/invitations", Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert_eq!(problem["type"], "urn:portcullis:problem:too-large");
    let (status, problem) = tenant.api(&ops, "POST", "/invitations", Some(json!({ "email": ADMIN }))).await;
    assert_eq!(status, StatusCode::CONFLICT, "an existing user: {problem}");
    // Nothing of the refused requests was stored or mailed.
    let (_, listed) = tenant.api(&ops, "GET", "/invitations", None).await;
    assert_eq!(listed["invitations"].as_array().unwrap().len(), 1, "{listed}");
    assert!(sink.mails_to("h@acme.test").is_empty());

    // The admin page without a session: to the sign-in pages, and back to it
    // only (the way back never leads off the organization's admin pages).
    let admin_page = format!("{}/admin/invitations", tenant.issuer());
    for request in [
        http().get(&admin_page),
        http().post(&admin_page).form(&[("action", "create"), ("email", "z@acme.test")]),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(&format!("{}/authorize?", tenant.issuer())), "{location}");
        assert!(location.contains("client_id=portcullis%3Aadmin-pages"), "{location}");
        assert!(location.contains("state=%2Fo%2Facme%2Fadmin%2Finvitations"), "{location}");
    }
    for evil in ["https://evil.example/", "//evil.example/o/acme/admin/x", "/o/acme/admin/../../../evil"] {
        let back = format!(
            "{}/admin/signed-in?code=x&state={}",
            tenant.issuer(),
            form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
        );
        let response = http().get(&back).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/o/acme/admin/invitations", "{evil}");
    }

    // roleSource GitOps: roles come from Git, so an invitation carries none.
    // (The probe names an existing user: refused either way, nothing stored.)
    tenant.rewrite("disabled", "GitOps").await;
    let body = json!({ "email": ADMIN, "roles": ["viewer"] });
    let problem = await_problem(&tenant, &ops, &body, "urn:portcullis:problem:managed-in-git").await;
    assert_eq!(problem["status"], 409);
    let (status, _) =
        tenant.api(&ops, "POST", "/invitations", Some(json!({ "email": "ivy@acme.test" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let link =
        sink.wait_for_mail("ivy@acme.test", 1, DEADLINE).await.link_containing("/invitations/").unwrap();

    // Provisioning mode scim: the identity provider provisions; no invitation
    // is made, and a pending link no longer creates a user.
    tenant.rewrite("scim", "GitOps").await;
    let body = json!({ "email": ADMIN });
    let problem = await_problem(&tenant, &ops, &body, "urn:portcullis:problem:provisioned-by-scim").await;
    assert_eq!(problem["status"], 409);
    let (status, html) = page(&browser(), &link).await;
    assert_eq!(status, StatusCode::CONFLICT, "{html}");
    assert!(html.contains("identity provider"), "{html}");
}

/// Awaits the folder sync: creating `body` answers the problem `kind`.
async fn await_problem(tenant: &Tenant, token: &str, body: &Value, kind: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, problem) = tenant.api(token, "POST", "/invitations", Some(body.clone())).await;
        if problem["type"] == kind {
            return problem;
        }
        assert!(started.elapsed() < DEADLINE, "still no {kind}: {problem}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_smtp_server_is_down_the_invitation_stays_and_a_resend_delivers() {
    let port = free_port();
    let tenant = Tenant::start(&format!("smtp://127.0.0.1:{port}")).await;
    let ops = tenant.token("ops").await;
    let (status, created) =
        tenant.api(&ops, "POST", "/invitations", Some(json!({ "email": "kim@acme.test" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["mail"]["status"], "failed", "{created}");
    assert!(created["mail"]["error"].as_str().unwrap().contains("SMTP"), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, stored) = tenant.api(&ops, "GET", &format!("/invitations/{id}"), None).await;
    assert_eq!(stored["mail"]["status"], "failed", "{stored}");

    let sink = SmtpSink::start_on(port).await;
    let (status, resent) = tenant.api(&ops, "POST", &format!("/invitations/{id}/resend"), None).await;
    assert_eq!(status, StatusCode::OK, "{resent}");
    assert_eq!(resent["mail"]["status"], "sent", "{resent}");
    let link =
        sink.wait_for_mail("kim@acme.test", 1, DEADLINE).await.link_containing("/invitations/").unwrap();
    let (status, _) = page(&browser(), &link).await;
    assert_eq!(status, StatusCode::OK);
}

/// The scenario: an administrator signed in through the real sign-in
/// pages invites from the admin page in Chromium; the invitee accepts from
/// the mail in Chromium, signs in and gets tokens with the invited role; the
/// audit export holds both actions, verifies, and a one-line edit is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_invites_in_chromium_and_the_invitee_accepts_from_the_mail() {
    use chromium::{Chromium, DEFAULT_DEADLINE};
    let sink = SmtpSink::start().await;
    let tenant = Tenant::start(&sink.url()).await;
    let admin_password = tenant.server.printed("password:").await;
    let browser = Chromium::launch().await;
    let tab = browser.new_tab().await;

    // Not signed in: the admin page sends the browser to sign in, and back.
    let admin_page = format!("{}/admin/invitations", tenant.issuer());
    tab.goto(&admin_page).await;
    tab.wait_for_selector("#username", DEFAULT_DEADLINE).await;
    tab.fill("#username", ADMIN).await;
    tab.fill("#password", &admin_password).await;
    tab.click("button[type=submit]").await;
    tab.wait_for_url("the admin page again", DEFAULT_DEADLINE, |url| url == admin_page).await;
    tab.wait_for_text("Invite someone", DEFAULT_DEADLINE).await;

    tab.fill("#email", "lea@acme.test").await;
    tab.click("input[name=role][value=viewer]").await;
    tab.click("#invite").await;
    tab.wait_for_text("on its way", DEFAULT_DEADLINE).await;
    assert!(tab.text().await.contains("lea@acme.test"));

    // The admin page's forms need the token bound to the session: the same
    // session cookie with a forged one is refused, and nothing is invited.
    let cookies = tab.page().get_cookies().await.expect("the browser's cookies");
    let session = cookies.iter().find(|c| c.name == "portcullis_session").expect("a session cookie");
    let forged = http()
        .post(&admin_page)
        .header("cookie", format!("portcullis_session={}", session.value))
        .form(&[("csrf", "forged"), ("action", "create"), ("email", "forged@acme.test")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let ops = tenant.token("ops").await;
    let (_, listed) = tenant.api(&ops, "GET", "/invitations?email=forged@acme.test", None).await;
    assert_eq!(listed["invitations"], json!([]), "{listed}");

    let mail = sink.wait_for_mail("lea@acme.test", 1, DEADLINE).await;
    assert!(mail.text.contains(ADMIN), "the mail names who invited: {}", mail.text);
    let link = mail.link_containing("/invitations/").unwrap();
    tab.goto(&link).await;
    tab.wait_for_text("Join Acme Test", DEFAULT_DEADLINE).await;
    tab.fill("#password", PASSWORD).await;
    tab.fill("#password_again", PASSWORD).await;
    tab.click("button[type=submit]").await;
    tab.wait_for_text("Invitation accepted", DEFAULT_DEADLINE).await;

    // The invitee signs in to an application and gets the invited role.
    let verifier = "a-pkce-verifier-that-is-long-enough-0123456789abcdef";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    tab.catch_navigations_to(WEBAPP_REDIRECT).await;
    tab.goto(&format!(
        "{}/authorize?response_type=code&client_id=webapp&redirect_uri={}&scope=openid&state=s&prompt=login&\
         code_challenge={challenge}&code_challenge_method=S256",
        tenant.issuer(),
        form_urlencoded::byte_serialize(WEBAPP_REDIRECT.as_bytes()).collect::<String>(),
    ))
    .await;
    tab.wait_for_selector("#username", DEFAULT_DEADLINE).await;
    tab.fill("#username", "lea@acme.test").await;
    tab.fill("#password", PASSWORD).await;
    tab.click("button[type=submit]").await;
    let landed = tab.wait_for_caught(DEFAULT_DEADLINE).await;
    let code = form_urlencoded::parse(landed.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let tokens: Value = http()
        .post(format!("{}/token", tenant.issuer()))
        .basic_auth("webapp", Some(tenant.server.client_secret("webapp").await))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", WEBAPP_REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().expect("an access token");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(access.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert!(claims["roles"].to_string().contains("viewer"), "{claims}");
    assert!(claims["permissions"].to_string().contains("journeys.view"), "{claims}");
    // Signed in now as lea, who may not invite: the admin page says so.
    tab.goto(&admin_page).await;
    tab.wait_for_text("does not hold the permission iam.invite-users", DEFAULT_DEADLINE).await;
    browser.close().await;

    // The audit export holds both actions and verifies; an edited line is named.
    let (status, export) = tenant.api_text(&ops, "GET", "/audit/export", None).await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<&str> = export.lines().collect();
    let at = |action: &str| {
        lines
            .iter()
            .position(|l| l.contains(&format!("\"action\":\"{action}\"")))
            .unwrap_or_else(|| panic!("no {action} in the export:\n{export}"))
    };
    let (created, accepted) = (at("invitation.create"), at("invitation.accept"));
    assert!(lines[created].contains(ADMIN), "the administrator is the actor: {}", lines[created]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.jsonl");
    std::fs::write(&file, &export).unwrap();
    // Awaited, not blocking: the server's output must keep being read meanwhile.
    let verify = async |file: &Path| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("audit")
            .arg("verify")
            .arg(file)
            .output()
            .await
            .unwrap()
    };
    let ok = verify(&file).await;
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );

    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[accepted] = edited[accepted].replace("lea@acme.test", "mallory@acme.test");
    assert_ne!(edited[accepted], lines[accepted]);
    std::fs::write(&file, edited.join("\n") + "\n").unwrap();
    let broken = verify(&file).await;
    assert!(!broken.status.success());
    let said = String::from_utf8_lossy(&broken.stderr);
    assert!(said.contains(&format!("acme.jsonl:{}:", accepted + 1)), "names line {}: {said}", accepted + 1);
    tenant.assert_never_shown(&token_of(&link));
}
