//! Interoperability: the Rust `openidconnect` relying-party library against
//! our token service over real HTTP — discovery, the code flow with PKCE
//! through the real sign-in form, ID-token validation (signature from our
//! JWKS, nonce, at_hash), refresh, and client_credentials with the access
//! token's signature checked against the JWKS the library fetched.

#[path = "support/browser_form.rs"]
mod browser_form;
#[path = "support/token_service.rs"]
mod token_support;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKey, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, JsonWebKey as _, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse as _,
};
use token_support::*;

fn rp_http_client() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .expect("the relying party's HTTP client")
}

/// Opens `authorize_url` in a browser, signs alice in through the form and
/// returns the query of the redirect back to the client.
async fn sign_in_through_the_form(svc: &TokenService, authorize_url: &str) -> Vec<(String, String)> {
    let browser = browser_form::browser();
    let form_page = browser.get(authorize_url).send().await.expect("open authorize");
    assert_eq!(form_page.status(), reqwest::StatusCode::OK);
    let body = form_page.text().await.unwrap();
    let (action, mut fields) = browser_form::form_in(&body, "");
    fields.push(("username".into(), ALICE.into()));
    fields.push(("password".into(), ALICE_PASSWORD.into()));
    let response =
        browser.post(format!("{}{action}", svc.base_url)).form(&fields).send().await.expect("post the form");
    assert!(response.status().is_redirection(), "{}", response.status());
    let location = response.headers()[reqwest::header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with(WEBAPP_REDIRECT), "{location}");
    let url = reqwest::Url::parse(&location).unwrap();
    url.query_pairs().into_owned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openidconnect_drives_discovery_code_pkce_refresh_and_id_token_validation() {
    let svc = start(sqlite_store().await).await;
    let http = rp_http_client();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(svc.issuer(ORG)).unwrap(), &http)
        .await
        .expect("discovery, with the JWKS");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("webapp".into()),
        Some(ClientSecret::new(WEBAPP_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(WEBAPP_REDIRECT.into()).unwrap());

    let (pkce_challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let (authorize_url, csrf_state, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(pkce_challenge)
        .url();
    let query = sign_in_through_the_form(&svc, authorize_url.as_str()).await;
    let param = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(param("state").as_deref(), Some(csrf_state.secret().as_str()));
    let code = param("code").expect("a code");

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("a token endpoint")
        .set_pkce_verifier(pkce_verifier)
        .request_async(&http)
        .await
        .expect("the code exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, &nonce).expect("the ID token validates");
    assert_eq!(claims.subject().as_str(), svc.alice_id);
    assert_eq!(claims.email().map(|e| e.as_str()), Some(ALICE_EMAIL));
    assert!(claims.auth_time().is_some());
    let expected_hash = claims.access_token_hash().expect("at_hash");
    let actual_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(&actual_hash, expected_hash);

    // Refresh: a new refresh token and a new ID token that still validates.
    let refresh_token = tokens.refresh_token().expect("a refresh token");
    let refreshed = client
        .exchange_refresh_token(refresh_token)
        .expect("a token endpoint")
        .request_async(&http)
        .await
        .expect("the refresh");
    assert_ne!(refreshed.refresh_token().unwrap().secret(), refresh_token.secret(), "rotated");
    let refreshed_id = refreshed.id_token().expect("a refreshed ID token");
    let refreshed_claims = refreshed_id.claims(&verifier, |_: Option<&Nonce>| Ok(())).expect("validates");
    assert_eq!(refreshed_claims.subject().as_str(), svc.alice_id);
    // The library's second use of the old refresh token is refused.
    let replay =
        client.exchange_refresh_token(refresh_token).expect("a token endpoint").request_async(&http).await;
    assert!(replay.is_err(), "a rotated refresh token is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openidconnect_gets_client_credentials_tokens_that_verify_against_the_jwks() {
    let svc = start(sqlite_store().await).await;
    let http = rp_http_client();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(svc.issuer(ORG)).unwrap(), &http)
        .await
        .expect("discovery");
    let keys = metadata.jwks().keys().to_vec();
    assert_eq!(keys.len(), 1);
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("backend".into()),
        Some(ClientSecret::new(BACKEND_SECRET.into())),
    );
    let tokens = client
        .exchange_client_credentials()
        .expect("a token endpoint")
        .request_async(&http)
        .await
        .expect("client_credentials");
    let access = tokens.access_token().secret();
    let (signed, signature) = access.rsplit_once('.').unwrap();
    let signature =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature).unwrap();
    let key: &CoreJsonWebKey = &keys[0];
    key.verify_signature(&CoreJwsSigningAlgorithm::EcdsaP256Sha256, signed.as_bytes(), &signature)
        .expect("the access token verifies with the published key");
    assert!(
        key.verify_signature(&CoreJwsSigningAlgorithm::EcdsaP256Sha256, b"tampered", &signature).is_err()
    );
}
