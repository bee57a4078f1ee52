use jiff::{SignedDuration, Timestamp};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use serde_json::json;

use super::*;
use crate::token::claims::{AccessTokenClaims, AccessTokenGrant, IdTokenClaims, IdTokenGrant};
use crate::token::encoding::b64url;
use crate::token::keys::{Algorithm, KeyMeta, KeySet, RotationPolicy, SigningKey};

const ISSUER: &str = "https://id.example.com/acme";
const AUDIENCE: &str = "https://api.example.com";
const CLIENT: &str = "journeys-web";

fn t0() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn minutes(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

/// A set with one active key of `algorithm`.
fn key_set(algorithm: Algorithm, seed: u64) -> KeySet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut key = SigningKey::generate(algorithm, t0(), &mut rng).unwrap();
    let meta = KeyMeta { activated_at: Some(t0()), ..key.meta().clone() };
    key = SigningKey::from_pkcs8_der(meta, key.pkcs8_der()).unwrap();
    KeySet::new(vec![key]).unwrap()
}

fn access_claims(now: Timestamp) -> AccessTokenClaims {
    let grant = AccessTokenGrant {
        issuer: ISSUER.into(),
        subject: "user-1".into(),
        audiences: vec![AUDIENCE.into()],
        client_id: CLIENT.into(),
        scopes: vec!["journeys".into()],
        organization: "acme".into(),
        ..AccessTokenGrant::default()
    };
    AccessTokenClaims::issue(grant, now, minutes(15), &mut StdRng::seed_from_u64(99)).unwrap()
}

fn id_claims(now: Timestamp) -> IdTokenClaims {
    let grant = IdTokenGrant {
        issuer: ISSUER.into(),
        subject: "user-1".into(),
        client_id: AUDIENCE.into(),
        ..IdTokenGrant::default()
    };
    IdTokenClaims::issue(grant, Algorithm::ES256, now, minutes(15)).unwrap()
}

fn access(now: Timestamp) -> Validation<'static> {
    Validation::new(TokenType::Access, ISSUER, AUDIENCE, now)
}

fn verify_access(token: &str, keys: &KeySet, now: Timestamp) -> Result<AccessTokenClaims, VerifyError> {
    verify::<AccessTokenClaims>(token, keys, &access(now)).map(|v| v.claims)
}

/// A token with an arbitrary header and payload, signed by `key` regardless
/// of what the header says.
fn forge(key: &SigningKey, header: serde_json::Value, payload: &serde_json::Value) -> String {
    let header = serde_json::to_vec(&header).unwrap();
    let payload = serde_json::to_vec(payload).unwrap();
    sign_compact(key, &header, &payload).unwrap()
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

#[test]
fn access_tokens_round_trip_with_every_algorithm() {
    for (algorithm, seed) in [(Algorithm::ES256, 1), (Algorithm::EdDSA, 2), (Algorithm::RS256, 3)] {
        let keys = key_set(algorithm, seed);
        let claims = access_claims(t0());
        let token = sign_with_active(&keys, TokenType::Access, &claims).unwrap();
        let verified = verify::<AccessTokenClaims>(&token, &keys, &access(t0())).unwrap();
        assert_eq!(verified.claims, claims, "{algorithm}");
        assert_eq!(verified.kid, keys.signing_key().unwrap().kid());
    }
}

#[test]
fn the_header_names_algorithm_type_and_key() {
    let keys = key_set(Algorithm::ES256, 4);
    let token = sign_with_active(&keys, TokenType::Access, &access_claims(t0())).unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&b64url_decode(&parts(&token)[0]).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "ES256", "typ": "at+jwt", "kid": keys.signing_key().unwrap().kid()}));
}

#[test]
fn eddsa_signing_matches_rfc_8037_appendix_a_4() {
    let seed: [u8; 32] =
        b64url_decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap().try_into().unwrap();
    let der = [
        &[0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20][..],
        &seed,
    ]
    .concat();
    let meta = KeyMeta {
        kid: "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k".into(),
        algorithm: Algorithm::EdDSA,
        created_at: t0(),
        activated_at: Some(t0()),
        retired_at: None,
    };
    let key = SigningKey::from_pkcs8_der(meta, &der).unwrap();
    let token = sign_compact(&key, br#"{"alg":"EdDSA"}"#, b"Example of Ed25519 signing").unwrap();
    assert_eq!(
        token,
        "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    );
}

#[test]
fn alg_none_is_rejected() {
    let keys = key_set(Algorithm::ES256, 5);
    let kid = keys.signing_key().unwrap().kid().to_owned();
    let payload = serde_json::to_value(access_claims(t0())).unwrap();
    for alg in ["none", "None", "NONE", ""] {
        let header = b64url(&serde_json::to_vec(&json!({"alg": alg, "typ": "at+jwt", "kid": kid})).unwrap());
        let body = b64url(&serde_json::to_vec(&payload).unwrap());
        for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
            let result = verify_access(&token, &keys, t0());
            assert!(
                matches!(result, Err(VerifyError::AlgorithmNotAllowed(_) | VerifyError::Malformed(_))),
                "{alg:?}: {result:?}"
            );
        }
        let token = format!("{header}.{body}.");
        assert_eq!(verify_access(&token, &keys, t0()), Err(VerifyError::AlgorithmNotAllowed(alg.into())));
    }
}

#[test]
fn hs256_with_the_public_key_as_secret_is_rejected() {
    for (algorithm, seed) in [(Algorithm::ES256, 6), (Algorithm::RS256, 7), (Algorithm::EdDSA, 8)] {
        let keys = key_set(algorithm, seed);
        let key = keys.signing_key().unwrap();
        let payload = serde_json::to_vec(&access_claims(t0())).unwrap();
        // The secrets a confused verifier might use: the raw public key, the
        // JWK JSON, and the JWKS document.
        let secrets = [
            key.verifying_key().public_key().to_vec(),
            serde_json::to_vec(key.verifying_key().jwk()).unwrap(),
            serde_json::to_vec(&keys.jwks()).unwrap(),
        ];
        for secret in secrets {
            for alg in ["HS256", "HS384", "HS512"] {
                let header = json!({"alg": alg, "typ": "at+jwt", "kid": key.kid()});
                let input = format!("{}.{}", b64url(&serde_json::to_vec(&header).unwrap()), b64url(&payload));
                let mac = ring::hmac::sign(
                    &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
                    input.as_bytes(),
                );
                let token = format!("{input}.{}", b64url(mac.as_ref()));
                assert_eq!(
                    verify_access(&token, &keys, t0()),
                    Err(VerifyError::AlgorithmNotAllowed(alg.into()))
                );
            }
            // The same MAC under the key's own alg is just a bad signature.
            let header = json!({"alg": algorithm.as_str(), "typ": "at+jwt", "kid": key.kid()});
            let input = format!("{}.{}", b64url(&serde_json::to_vec(&header).unwrap()), b64url(&payload));
            let mac =
                ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret), input.as_bytes());
            let token = format!("{input}.{}", b64url(mac.as_ref()));
            assert_eq!(verify_access(&token, &keys, t0()), Err(VerifyError::BadSignature));
        }
    }
}

#[test]
fn unknown_or_missing_kid_is_rejected() {
    let ours = key_set(Algorithm::ES256, 9);
    let theirs = key_set(Algorithm::ES256, 10);
    let token = sign_with_active(&theirs, TokenType::Access, &access_claims(t0())).unwrap();
    assert_eq!(verify_access(&token, &ours, t0()), Err(VerifyError::UnknownKeyId));

    let payload = serde_json::to_value(access_claims(t0())).unwrap();
    let token = forge(ours.signing_key().unwrap(), json!({"alg": "ES256", "typ": "at+jwt"}), &payload);
    assert_eq!(verify_access(&token, &ours, t0()), Err(VerifyError::MissingKeyId));
}

#[test]
fn a_key_embedded_in_the_header_is_never_used() {
    let ours = key_set(Algorithm::ES256, 11);
    let theirs = key_set(Algorithm::ES256, 12);
    let attacker = theirs.signing_key().unwrap();
    let payload = serde_json::to_value(access_claims(t0())).unwrap();
    let jwk = serde_json::to_value(attacker.verifying_key().jwk()).unwrap();
    for kid in [attacker.kid(), ours.signing_key().unwrap().kid()] {
        let header = json!({
            "alg": "ES256", "typ": "at+jwt", "kid": kid,
            "jwk": jwk, "jku": "https://evil.example/jwks",
        });
        let token = forge(attacker, header, &payload);
        let result = verify_access(&token, &ours, t0());
        assert!(matches!(result, Err(VerifyError::UnknownKeyId | VerifyError::BadSignature)), "{result:?}");
    }
}

#[test]
fn the_algorithm_comes_from_our_key_not_the_header() {
    let keys = key_set(Algorithm::ES256, 13);
    let key = keys.signing_key().unwrap();
    let payload = serde_json::to_value(access_claims(t0())).unwrap();
    for alg in ["EdDSA", "RS256"] {
        let token = forge(key, json!({"alg": alg, "typ": "at+jwt", "kid": key.kid()}), &payload);
        assert_eq!(
            verify_access(&token, &keys, t0()),
            Err(VerifyError::AlgorithmMismatch {
                expected: Algorithm::ES256,
                found: Algorithm::from_header(alg).unwrap()
            })
        );
    }
}

#[test]
fn critical_header_extensions_are_rejected() {
    let keys = key_set(Algorithm::ES256, 14);
    let key = keys.signing_key().unwrap();
    let payload = serde_json::to_value(access_claims(t0())).unwrap();
    let token = forge(
        key,
        json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid(), "crit": ["b64"], "b64": false}),
        &payload,
    );
    assert_eq!(verify_access(&token, &keys, t0()), Err(VerifyError::CriticalHeader));
}

#[test]
fn the_audience_must_include_ours() {
    let keys = key_set(Algorithm::ES256, 15);
    let mut claims = access_claims(t0());
    claims.aud = crate::token::claims::Audience::single("https://other.example.com");
    let token = sign_with_active(&keys, TokenType::Access, &claims).unwrap();
    assert_eq!(verify_access(&token, &keys, t0()), Err(VerifyError::WrongAudience));

    claims.aud =
        crate::token::claims::Audience::new(["https://other.example.com".into(), AUDIENCE.into()]).unwrap();
    let token = sign_with_active(&keys, TokenType::Access, &claims).unwrap();
    assert!(verify_access(&token, &keys, t0()).is_ok(), "an array containing ours is fine");

    let mut payload = serde_json::to_value(access_claims(t0())).unwrap();
    payload.as_object_mut().unwrap().remove("aud");
    let key = keys.signing_key().unwrap();
    let token = forge(key, json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid()}), &payload);
    assert_eq!(verify_access(&token, &keys, t0()), Err(VerifyError::MissingClaim("aud")));
}

#[test]
fn the_issuer_must_be_ours_exactly() {
    let keys = key_set(Algorithm::ES256, 16);
    for iss in ["https://id.example.com/other", "https://id.example.com/acme/", "https://ID.example.com/acme"]
    {
        let mut claims = access_claims(t0());
        claims.iss = iss.into();
        let token = sign_with_active(&keys, TokenType::Access, &claims).unwrap();
        assert_eq!(verify_access(&token, &keys, t0()), Err(VerifyError::WrongIssuer), "{iss}");
    }
}

#[test]
fn expiry_is_enforced_with_a_small_leeway() {
    let keys = key_set(Algorithm::ES256, 17);
    let claims = access_claims(t0());
    let token = sign_with_active(&keys, TokenType::Access, &claims).unwrap();
    let exp = Timestamp::from_second(claims.exp).unwrap();
    assert!(verify_access(&token, &keys, exp - SignedDuration::from_secs(1)).is_ok());
    assert!(verify_access(&token, &keys, exp + DEFAULT_LEEWAY - SignedDuration::from_secs(1)).is_ok());
    assert_eq!(verify_access(&token, &keys, exp + DEFAULT_LEEWAY), Err(VerifyError::Expired));
    assert_eq!(verify_access(&token, &keys, exp + minutes(60)), Err(VerifyError::Expired));

    let strict = Validation { leeway: SignedDuration::ZERO, ..access(exp) };
    assert_eq!(verify::<AccessTokenClaims>(&token, &keys, &strict).map(|_| ()), Err(VerifyError::Expired));
}

#[test]
fn tokens_from_the_future_are_rejected() {
    let keys = key_set(Algorithm::ES256, 18);
    let token = sign_with_active(&keys, TokenType::Access, &access_claims(t0() + minutes(5))).unwrap();
    assert_eq!(verify_access(&token, &keys, t0()), Err(VerifyError::IssuedInFuture));
    assert!(verify_access(&token, &keys, t0() + minutes(4)).is_ok(), "within the leeway");

    let key = keys.signing_key().unwrap();
    let mut payload = serde_json::to_value(access_claims(t0())).unwrap();
    payload["nbf"] = json!(t0().as_second() + 600);
    let token = forge(key, json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid()}), &payload);
    assert_eq!(verify_access(&token, &keys, t0()), Err(VerifyError::NotYetValid));
}

#[test]
fn required_time_claims_must_be_present() {
    let keys = key_set(Algorithm::ES256, 19);
    let key = keys.signing_key().unwrap();
    for claim in ["exp", "iat", "iss"] {
        let mut payload = serde_json::to_value(access_claims(t0())).unwrap();
        payload.as_object_mut().unwrap().remove(claim);
        let token = forge(key, json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid()}), &payload);
        let expected = match claim {
            "exp" => VerifyError::MissingClaim("exp"),
            "iat" => VerifyError::MissingClaim("iat"),
            _ => VerifyError::MissingClaim("iss"),
        };
        assert_eq!(verify_access(&token, &keys, t0()), Err(expected));
    }
}

#[test]
fn an_id_token_is_not_an_access_token() {
    let keys = key_set(Algorithm::ES256, 20);
    let id_token = sign_with_active(&keys, TokenType::Id, &id_claims(t0())).unwrap();
    assert_eq!(
        verify_access(&id_token, &keys, t0()),
        Err(VerifyError::WrongType { expected: "at+jwt", found: Some("JWT".into()) })
    );
    // And it does verify as what it is.
    let id = Validation::new(TokenType::Id, ISSUER, AUDIENCE, t0());
    assert!(verify::<IdTokenClaims>(&id_token, &keys, &id).is_ok());

    let access_token = sign_with_active(&keys, TokenType::Access, &access_claims(t0())).unwrap();
    assert!(matches!(verify::<IdTokenClaims>(&access_token, &keys, &id), Err(VerifyError::WrongType { .. })));

    // Relabelling the header breaks the signature.
    let mut p = parts(&id_token);
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": keys.signing_key().unwrap().kid()});
    p[0] = b64url(&serde_json::to_vec(&header).unwrap());
    assert_eq!(verify_access(&p.join("."), &keys, t0()), Err(VerifyError::BadSignature));
}

#[test]
fn typ_is_compared_as_rfc_7515_says_and_must_be_present() {
    let keys = key_set(Algorithm::ES256, 21);
    let key = keys.signing_key().unwrap();
    let payload = serde_json::to_value(access_claims(t0())).unwrap();
    for typ in ["application/at+jwt", "AT+JWT", "Application/At+Jwt"] {
        let token = forge(key, json!({"alg": "ES256", "typ": typ, "kid": key.kid()}), &payload);
        assert!(verify_access(&token, &keys, t0()).is_ok(), "{typ}");
    }
    let token = forge(key, json!({"alg": "ES256", "kid": key.kid()}), &payload);
    assert_eq!(
        verify_access(&token, &keys, t0()),
        Err(VerifyError::WrongType { expected: "at+jwt", found: None })
    );
}

#[test]
fn a_tampered_payload_fails_the_signature() {
    let keys = key_set(Algorithm::ES256, 22);
    let token = sign_with_active(&keys, TokenType::Access, &access_claims(t0())).unwrap();
    let mut p = parts(&token);
    let mut payload: serde_json::Value = serde_json::from_slice(&b64url_decode(&p[1]).unwrap()).unwrap();
    payload["sub"] = json!("admin");
    p[1] = b64url(&serde_json::to_vec(&payload).unwrap());
    assert_eq!(verify_access(&p.join("."), &keys, t0()), Err(VerifyError::BadSignature));

    // A flipped bit in the signature, too.
    let mut p = parts(&token);
    let mut signature = b64url_decode(&p[2]).unwrap();
    signature[10] ^= 1;
    p[2] = b64url(&signature);
    assert_eq!(verify_access(&p.join("."), &keys, t0()), Err(VerifyError::BadSignature));
}

#[test]
fn malformed_tokens_are_rejected_before_any_key_work() {
    let keys = key_set(Algorithm::ES256, 23);
    let token = sign_with_active(&keys, TokenType::Access, &access_claims(t0())).unwrap();
    let p = parts(&token);
    let cases = [
        String::new(),
        "abc".into(),
        format!("{}.{}", p[0], p[1]),
        format!("{token}.extra"),
        format!("{}.{}.{}.{}.{}", p[0], p[1], p[2], p[2], p[2]),
        format!("{}=.{}.{}", p[0], p[1], p[2]),
        format!("{}.{}.{}=", p[0], p[1], p[2]),
        format!("{}.{}.{}", b64url(b"not json"), p[1], p[2]),
        format!("{}.{}.{}", b64url(b"[1,2]"), p[1], p[2]),
        format!(" {token}"),
    ];
    for case in cases {
        let result = verify_access(&case, &keys, t0());
        assert!(matches!(result, Err(VerifyError::Malformed(_))), "{case:?}: {result:?}");
    }
    let duplicate =
        format!("{}.{}.{}", b64url(br#"{"alg":"ES256","alg":"none","typ":"at+jwt"}"#), p[1], p[2]);
    assert!(matches!(verify_access(&duplicate, &keys, t0()), Err(VerifyError::Malformed(_))));
    let long = "a".repeat(MAX_TOKEN_LENGTH + 1);
    assert_eq!(verify_access(&long, &keys, t0()), Err(VerifyError::TooLong));
}

#[test]
fn payloads_that_are_not_our_claims_are_rejected_after_the_signature() {
    let keys = key_set(Algorithm::ES256, 24);
    let key = keys.signing_key().unwrap();
    let mut payload = serde_json::to_value(access_claims(t0())).unwrap();
    payload.as_object_mut().unwrap().remove("client_id");
    let token = forge(key, json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid()}), &payload);
    assert!(matches!(verify_access(&token, &keys, t0()), Err(VerifyError::InvalidClaims(_))));
}

#[test]
fn only_the_active_key_signs() {
    let mut rng = StdRng::seed_from_u64(25);
    let next = SigningKey::generate(Algorithm::ES256, t0(), &mut rng).unwrap();
    assert!(matches!(
        sign(&next, TokenType::Access, &access_claims(t0())),
        Err(SignError::KeyNotActive { state: KeyState::Next, .. })
    ));
    assert!(matches!(
        sign_with_active(&KeySet::default(), TokenType::Access, &access_claims(t0())),
        Err(SignError::NoActiveKey)
    ));
}

#[test]
fn a_retiring_key_verifies_until_it_is_removed() {
    let policy = RotationPolicy::new(
        Algorithm::ES256,
        SignedDuration::from_hours(720),
        SignedDuration::from_hours(24),
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(26);
    let mut keys = KeySet::default();
    let at = |h: i64| t0() + SignedDuration::from_hours(h);
    let step = |keys: &mut KeySet, now: Timestamp, rng: &mut StdRng| {
        let plan = keys.plan_rotation(&policy, now);
        keys.apply(&plan, rng).unwrap();
    };

    step(&mut keys, at(0), &mut rng);
    let old = keys.signing_key().unwrap().kid().to_owned();
    step(&mut keys, at(696), &mut rng);
    let signed_last_minute = at(720) - minutes(1);
    let token = sign_with_active(&keys, TokenType::Access, &access_claims(signed_last_minute)).unwrap();

    step(&mut keys, at(720), &mut rng);
    let new = keys.signing_key().unwrap().kid().to_owned();
    assert_ne!(new, old);
    // From the moment of promotion, new tokens carry the new key.
    let fresh = sign_with_active(&keys, TokenType::Access, &access_claims(at(720))).unwrap();
    assert_eq!(verify::<AccessTokenClaims>(&fresh, &keys, &access(at(720))).unwrap().kid, new);
    // The old key is retiring: its last token still verifies while valid.
    let verified = verify::<AccessTokenClaims>(&token, &keys, &access(at(720) + minutes(10))).unwrap();
    assert_eq!(verified.kid, old);

    step(&mut keys, at(744), &mut rng);
    assert!(keys.verifying_key(&old).is_none(), "deleted one overlap after retirement");
    // Even a verifier with a lax clock cannot accept it once the key is gone.
    let lax = Validation { leeway: SignedDuration::from_hours(48), ..access(at(744)) };
    assert_eq!(verify::<AccessTokenClaims>(&token, &keys, &lax).map(|_| ()), Err(VerifyError::UnknownKeyId));
}

#[test]
fn a_year_of_rotation_never_rejects_a_valid_token() {
    // period 720h, overlap 24h, tokens living the whole overlap (the worst
    // case the Organization's CEL rule allows), hourly reconciles. Each token
    // is signed just before a reconcile and verified when signed and just
    // before it expires; keys never come back once deleted, so those two
    // moments cover its whole life.
    let policy = RotationPolicy::new(
        Algorithm::ES256,
        SignedDuration::from_hours(720),
        SignedDuration::from_hours(24),
    )
    .unwrap();
    let lifetime = SignedDuration::from_hours(24);
    let mut rng = StdRng::seed_from_u64(27);
    let mut keys = KeySet::default();
    let mut pending: std::collections::VecDeque<(String, Timestamp)> = Default::default();
    let mut kids_used = std::collections::BTreeSet::new();
    for hour in 0..24 * 365 {
        let now = t0() + SignedDuration::from_hours(hour);
        let plan = keys.plan_rotation(&policy, now);
        keys.apply(&plan, &mut rng).unwrap();
        let active = keys.signing_key().unwrap().kid().to_owned();
        if let Some(promoted) = plan.promote.first() {
            assert_eq!(&active, promoted, "the promoted key signs from {now}");
        }

        // Tokens that expire before the next reconcile: last look now.
        while let Some((token, expires)) = pending.front().cloned() {
            if expires > now + SignedDuration::from_hours(1) {
                break;
            }
            pending.pop_front();
            let last_moment = expires - SignedDuration::from_secs(1);
            let validation = Validation { leeway: SignedDuration::ZERO, ..access(last_moment) };
            if let Err(e) = verify::<AccessTokenClaims>(&token, &keys, &validation) {
                panic!("token expiring at {expires} rejected at {last_moment}: {e}");
            }
        }

        let signed_at = now + SignedDuration::from_hours(1) - SignedDuration::from_secs(1);
        let mut claims = access_claims(signed_at);
        claims.exp = (signed_at + lifetime).as_second();
        let token = sign_with_active(&keys, TokenType::Access, &claims).unwrap();
        let validation = Validation { leeway: SignedDuration::ZERO, ..access(signed_at) };
        assert_eq!(verify::<AccessTokenClaims>(&token, &keys, &validation).unwrap().kid, active);
        kids_used.insert(active);
        pending.push_back((token, signed_at + lifetime));
    }
    assert_eq!(kids_used.len(), 13, "a key per 720 hours");
}

#[test]
fn error_descriptions_are_valid_oauth_error_descriptions() {
    let errors = [
        VerifyError::TooLong,
        VerifyError::Malformed("x"),
        VerifyError::AlgorithmNotAllowed("\"\\\u{7f}".into()),
        VerifyError::CriticalHeader,
        VerifyError::MissingKeyId,
        VerifyError::UnknownKeyId,
        VerifyError::AlgorithmMismatch { expected: Algorithm::ES256, found: Algorithm::RS256 },
        VerifyError::WrongType { expected: "at+jwt", found: None },
        VerifyError::BadSignature,
        VerifyError::MissingClaim("exp"),
        VerifyError::WrongIssuer,
        VerifyError::WrongAudience,
        VerifyError::Expired,
        VerifyError::NotYetValid,
        VerifyError::IssuedInFuture,
        VerifyError::InvalidClaims("x".into()),
    ];
    for error in errors {
        assert_eq!(error.error_code(), "invalid_token");
        // RFC 6749 §5.2: %x20-21 / %x23-5B / %x5D-7E.
        let description = error.description();
        assert!(
            description.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
            "{description:?}"
        );
    }
}

#[test]
fn token_text_in_errors_is_bounded_and_printable() {
    let keys = key_set(Algorithm::ES256, 28);
    let header = b64url(&serde_json::to_vec(&json!({"alg": format!("x\n{}", "y".repeat(500))})).unwrap());
    let VerifyError::AlgorithmNotAllowed(alg) =
        verify_access(&format!("{header}.e30.sig"), &keys, t0()).unwrap_err()
    else {
        panic!("expected AlgorithmNotAllowed");
    };
    assert!(alg.len() <= 64 && !alg.contains('\n'));
}
