use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::*;

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

fn policy(algorithm: Algorithm) -> RotationPolicy {
    RotationPolicy::new(algorithm, hours(720), hours(24)).unwrap()
}

/// RFC 8037 Appendix A.1: the Ed25519 private key `d`.
const RFC8037_SEED: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";

fn rfc8037_key() -> SigningKey {
    let seed: [u8; 32] = crate::token::encoding::b64url_decode(RFC8037_SEED).unwrap().try_into().unwrap();
    let meta = KeyMeta {
        kid: "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k".into(),
        algorithm: Algorithm::EdDSA,
        created_at: t0(),
        activated_at: Some(t0()),
        retired_at: None,
    };
    SigningKey::from_pkcs8_der(meta, &ed25519_pkcs8_from_seed(&seed)).unwrap()
}

/// One RSA key for all tests: generating 2048-bit keys is slow in debug builds.
fn rsa_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(Algorithm::RS256, t0(), &mut StdRng::seed_from_u64(256)).unwrap())
}

#[test]
fn ed25519_jwk_and_kid_match_rfc_8037() {
    let key = rfc8037_key();
    let jwk = key.verifying_key().jwk();
    assert_eq!(
        jwk.params,
        JwkParams::Okp { crv: "Ed25519".into(), x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into() }
    );
    // RFC 8037 Appendix A.3: the RFC 7638 thumbprint.
    assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

#[test]
fn rsa_thumbprint_matches_rfc_7638() {
    // RFC 7638 §3.1.
    let params = JwkParams::Rsa {
        n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
        e: "AQAB".into(),
    };
    assert_eq!(params.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

#[test]
fn generated_keys_have_the_jwk_shape_of_their_algorithm() {
    let mut rng = StdRng::seed_from_u64(1);
    let es = SigningKey::generate(Algorithm::ES256, t0(), &mut rng).unwrap();
    let ed = SigningKey::generate(Algorithm::EdDSA, t0(), &mut rng).unwrap();
    let json = |k: &SigningKey| serde_json::to_value(k.verifying_key().jwk()).unwrap();

    let es_jwk = json(&es);
    assert_eq!((es_jwk["kty"].as_str(), es_jwk["crv"].as_str()), (Some("EC"), Some("P-256")));
    assert_eq!(es_jwk["x"].as_str().unwrap().len(), 43);
    assert_eq!(es_jwk["y"].as_str().unwrap().len(), 43);
    assert_eq!((es_jwk["alg"].as_str(), es_jwk["use"].as_str()), (Some("ES256"), Some("sig")));
    assert_eq!(es_jwk["kid"].as_str(), Some(es.kid()));

    let ed_jwk = json(&ed);
    assert_eq!((ed_jwk["kty"].as_str(), ed_jwk["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    assert_eq!(ed_jwk["alg"], "EdDSA");

    let rsa_jwk = json(rsa_key());
    assert_eq!(rsa_jwk["kty"], "RSA");
    assert_eq!(rsa_jwk["e"], "AQAB");
    assert_eq!(rsa_jwk["n"].as_str().unwrap().len(), 342, "2048-bit modulus");
    assert_eq!(rsa_jwk["alg"], "RS256");

    for key in [&es, &ed, rsa_key()] {
        assert_eq!(key.verifying_key().jwk().params.thumbprint(), key.kid());
        assert_eq!(key.state(), KeyState::Next);
        assert_eq!(key.meta().created_at, t0());
    }
}

#[test]
fn generation_draws_only_from_the_injected_rng() {
    for algorithm in [Algorithm::ES256, Algorithm::EdDSA] {
        let a = SigningKey::generate(algorithm, t0(), &mut StdRng::seed_from_u64(5)).unwrap();
        let b = SigningKey::generate(algorithm, t0(), &mut StdRng::seed_from_u64(5)).unwrap();
        let c = SigningKey::generate(algorithm, t0(), &mut StdRng::seed_from_u64(6)).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_ne!(a.kid(), c.kid());
    }
}

#[test]
fn keys_survive_the_pem_round_trip_and_verify_each_others_signatures() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut keys = vec![
        SigningKey::generate(Algorithm::ES256, t0(), &mut rng).unwrap(),
        SigningKey::generate(Algorithm::EdDSA, t0(), &mut rng).unwrap(),
    ];
    let rsa = rsa_key();
    keys.push(SigningKey::from_pkcs8_der(rsa.meta().clone(), rsa.pkcs8_der()).unwrap());
    for key in keys {
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", key.algorithm());
        let loaded = SigningKey::from_pkcs8_pem(key.meta().clone(), &pem).unwrap();
        assert_eq!(loaded.verifying_key().jwk(), key.verifying_key().jwk());
        let signature = key.sign(b"message").unwrap();
        assert!(loaded.verifying_key().verify_signature(b"message", &signature));
        assert!(!loaded.verifying_key().verify_signature(b"messagf", &signature));
    }
}

#[test]
fn a_stored_key_whose_metadata_does_not_match_is_refused() {
    let mut rng = StdRng::seed_from_u64(3);
    let key = SigningKey::generate(Algorithm::ES256, t0(), &mut rng).unwrap();
    let pem = key.to_pkcs8_pem();

    let wrong_kid = KeyMeta { kid: "someone-else".into(), ..key.meta().clone() };
    assert!(matches!(SigningKey::from_pkcs8_pem(wrong_kid, &pem), Err(KeyError::KidMismatch { .. })));

    let wrong_algorithm = KeyMeta { algorithm: Algorithm::EdDSA, ..key.meta().clone() };
    assert!(matches!(SigningKey::from_pkcs8_pem(wrong_algorithm, &pem), Err(KeyError::Rejected { .. })));

    let not_pem = SigningKey::from_pkcs8_pem(key.meta().clone(), "not a pem");
    assert!(matches!(not_pem, Err(KeyError::Pem { .. })));

    let wrong_label = pem.replace("PRIVATE KEY", "PUBLIC KEY");
    assert!(matches!(
        SigningKey::from_pkcs8_pem(key.meta().clone(), &wrong_label),
        Err(KeyError::Pem { .. })
    ));
}

#[test]
fn debug_output_never_contains_the_private_key() {
    let key = SigningKey::generate(Algorithm::EdDSA, t0(), &mut StdRng::seed_from_u64(4)).unwrap();
    let debug = format!("{key:?}");
    let pem = key.to_pkcs8_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!debug.contains(&body));
    assert!(debug.contains(key.kid()));
}

#[test]
fn key_meta_is_stored_as_camel_case_json_with_timestamps() {
    let meta = KeyMeta {
        kid: "k".into(),
        algorithm: Algorithm::ES256,
        created_at: t0(),
        activated_at: Some(t0() + hours(24)),
        retired_at: None,
    };
    let json = serde_json::to_value(&meta).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "kid": "k", "algorithm": "ES256",
            "createdAt": "2026-01-01T00:00:00Z", "activatedAt": "2026-01-02T00:00:00Z"
        })
    );
    assert_eq!(serde_json::from_value::<KeyMeta>(json).unwrap(), meta);
}

#[test]
fn rotation_policy_needs_an_overlap_shorter_than_the_period() {
    assert!(RotationPolicy::new(Algorithm::ES256, hours(720), hours(24)).is_ok());
    assert!(RotationPolicy::new(Algorithm::ES256, hours(24), hours(24)).is_err());
    assert!(RotationPolicy::new(Algorithm::ES256, hours(24), SignedDuration::ZERO).is_err());
}

#[test]
fn a_key_set_refuses_duplicate_kids() {
    let a = rfc8037_key();
    let b = rfc8037_key();
    assert!(matches!(KeySet::new(vec![a, b]), Err(KeyError::DuplicateKid { .. })));
}

// --- the schedule ---------------------------------------------------------

fn meta(kid: &str, created: i64, activated: Option<i64>, retired: Option<i64>) -> KeyMeta {
    KeyMeta {
        kid: kid.into(),
        algorithm: Algorithm::ES256,
        created_at: t0() + hours(created),
        activated_at: activated.map(|h| t0() + hours(h)),
        retired_at: retired.map(|h| t0() + hours(h)),
    }
}

fn at(h: i64) -> Timestamp {
    t0() + hours(h)
}

#[test]
fn a_new_organization_gets_an_active_key_at_once() {
    let plan = plan_rotation(&[], &policy(Algorithm::ES256), at(0));
    assert_eq!(plan.create, Some(NewKey { algorithm: Algorithm::ES256, state: KeyState::Active }));
    assert_eq!(plan.wake_at, Some(at(720 - 24)), "the successor is due one overlap before the period ends");
}

#[test]
fn the_successor_is_published_one_overlap_before_the_period_ends() {
    let keys = [meta("a", 0, Some(0), None)];
    let before = plan_rotation(&keys, &policy(Algorithm::ES256), at(695));
    assert!(before.is_empty());
    assert_eq!(before.wake_at, Some(at(696)));
    let plan = plan_rotation(&keys, &policy(Algorithm::ES256), at(696));
    assert_eq!(plan.create, Some(NewKey { algorithm: Algorithm::ES256, state: KeyState::Next }));
    assert_eq!(plan.wake_at, Some(at(720)));
}

#[test]
fn the_successor_takes_over_when_the_period_ends() {
    let keys = [meta("a", 0, Some(0), None), meta("b", 696, None, None)];
    assert!(plan_rotation(&keys, &policy(Algorithm::ES256), at(719)).is_empty());
    let plan = plan_rotation(&keys, &policy(Algorithm::ES256), at(720));
    assert_eq!(
        (plan.promote.as_slice(), plan.retire.as_slice()),
        (&["b".to_owned()][..], &["a".to_owned()][..])
    );
    assert_eq!(plan.wake_at, Some(at(744)), "the retired key goes one overlap later");
}

#[test]
fn a_retiring_key_is_deleted_one_overlap_after_it_stopped_signing() {
    let keys = [meta("a", 0, Some(0), Some(720)), meta("b", 696, Some(720), None)];
    assert!(plan_rotation(&keys, &policy(Algorithm::ES256), at(743)).is_empty());
    assert_eq!(plan_rotation(&keys, &policy(Algorithm::ES256), at(744)).delete, vec!["a".to_owned()]);
}

#[test]
fn a_late_successor_is_still_published_for_a_full_overlap() {
    // The operator was down from hour 600 to hour 800: the old key keeps
    // signing until the new one has been in the JWKS for `overlap`.
    let keys = [meta("a", 0, Some(0), None)];
    let plan = plan_rotation(&keys, &policy(Algorithm::ES256), at(800));
    assert_eq!(plan.create, Some(NewKey { algorithm: Algorithm::ES256, state: KeyState::Next }));
    let keys = [meta("a", 0, Some(0), None), meta("b", 800, None, None)];
    assert!(plan_rotation(&keys, &policy(Algorithm::ES256), at(823)).is_empty());
    assert_eq!(plan_rotation(&keys, &policy(Algorithm::ES256), at(824)).promote, vec!["b".to_owned()]);
}

#[test]
fn a_rotation_asked_for_publishes_a_successor_at_once_which_signs_one_overlap_later() {
    let asked = policy(Algorithm::ES256).requested_at(Some(at(100)));
    let keys = [meta("a", 0, Some(0), None)];
    assert!(plan_rotation(&keys, &asked, at(99)).is_empty(), "not before it was asked for");
    assert_eq!(plan_rotation(&keys, &asked, at(99)).wake_at, Some(at(100)));
    let plan = plan_rotation(&keys, &asked, at(100));
    assert_eq!(plan.create, Some(NewKey { algorithm: Algorithm::ES256, state: KeyState::Next }));
    let keys = [meta("a", 0, Some(0), None), meta("b", 100, None, None)];
    assert!(plan_rotation(&keys, &asked, at(123)).is_empty(), "published for a full overlap first");
    assert_eq!(plan_rotation(&keys, &asked, at(123)).wake_at, Some(at(124)));
    let plan = plan_rotation(&keys, &asked, at(124));
    assert_eq!(
        (plan.promote.as_slice(), plan.retire.as_slice()),
        (&["b".to_owned()][..], &["a".to_owned()][..])
    );
    // Once a key activated after the request signs, the request is spent.
    let keys = [meta("a", 0, Some(0), Some(124)), meta("b", 100, Some(124), None)];
    assert!(plan_rotation(&keys, &asked, at(200)).create.is_none());
}

#[test]
fn an_algorithm_change_rotates_after_one_overlap() {
    let keys = [meta("a", 0, Some(0), None)];
    let plan = plan_rotation(&keys, &policy(Algorithm::EdDSA), at(10));
    assert_eq!(plan.create, Some(NewKey { algorithm: Algorithm::EdDSA, state: KeyState::Next }));
    let keys =
        [meta("a", 0, Some(0), None), KeyMeta { algorithm: Algorithm::EdDSA, ..meta("b", 10, None, None) }];
    assert!(plan_rotation(&keys, &policy(Algorithm::EdDSA), at(33)).is_empty());
    let plan = plan_rotation(&keys, &policy(Algorithm::EdDSA), at(34));
    assert_eq!((plan.promote, plan.retire), (vec!["b".to_owned()], vec!["a".to_owned()]));
}

#[test]
fn a_next_key_of_the_old_algorithm_is_replaced() {
    let keys = [meta("a", 0, Some(0), None), meta("b", 696, None, None)];
    let plan = plan_rotation(&keys, &policy(Algorithm::RS256), at(700));
    assert_eq!(plan.delete, vec!["b".to_owned()]);
    assert_eq!(plan.create, Some(NewKey { algorithm: Algorithm::RS256, state: KeyState::Next }));
}

#[test]
fn surplus_active_keys_are_retired_and_the_newest_keeps_signing() {
    let keys = [meta("a", 0, Some(0), None), meta("b", 5, Some(10), None)];
    let plan = plan_rotation(&keys, &policy(Algorithm::ES256), at(20));
    assert_eq!(plan.retire, vec!["a".to_owned()]);
    assert!(plan.promote.is_empty());
}

#[test]
fn without_an_active_key_the_next_one_is_promoted_at_once() {
    let keys = [meta("b", 10, None, None)];
    let plan = plan_rotation(&keys, &policy(Algorithm::ES256), at(11));
    assert_eq!(plan.promote, vec!["b".to_owned()]);
}

#[test]
fn a_plan_applied_leaves_nothing_to_do_until_it_wakes() {
    let policy = policy(Algorithm::ES256);
    let mut keys: Vec<KeyMeta> = Vec::new();
    let mut now = at(0);
    for n in 0..20 {
        let plan = plan_rotation(&keys, &policy, now);
        assert!(!plan.is_empty(), "woken at {now} for nothing");
        apply(&plan, &mut keys, n);
        assert!(plan_rotation(&keys, &policy, now).is_empty(), "not idempotent at {now}");
        let wake = plan.wake_at.expect("a schedule always has a next step");
        assert!(plan_rotation(&keys, &policy, wake - SignedDuration::from_secs(1)).is_empty());
        now = wake;
    }
}

/// What the operator does with a plan, on metadata only.
fn apply(plan: &RotationPlan, keys: &mut Vec<KeyMeta>, n: usize) {
    keys.retain_mut(|meta| plan.apply_to_meta(meta));
    if let Some(new) = &plan.create {
        keys.push(new.meta(format!("k{n}"), plan.at));
    }
}

// --- the key set ------------------------------------------------------------

#[test]
fn the_key_set_signs_with_the_active_key_and_publishes_all_three_states() {
    let policy = policy(Algorithm::ES256);
    let mut rng = StdRng::seed_from_u64(11);
    let mut set = KeySet::default();
    assert!(set.signing_key().is_none());

    let plan = set.plan_rotation(&policy, at(0));
    let first = set.apply(&plan, &mut rng).unwrap().unwrap().kid().to_owned();
    assert_eq!(set.signing_key().unwrap().kid(), first);

    let plan = set.plan_rotation(&policy, at(696));
    let second = set.apply(&plan, &mut rng).unwrap().unwrap().kid().to_owned();
    assert_eq!(set.signing_key().unwrap().kid(), first, "a next key does not sign");

    let plan = set.plan_rotation(&policy, at(720));
    assert!(set.apply(&plan, &mut rng).unwrap().is_none());
    assert_eq!(set.signing_key().unwrap().kid(), second, "the new key signs from the moment it is active");

    let plan = set.plan_rotation(&policy, at(720 + 696));
    let third = set.apply(&plan, &mut rng).unwrap().unwrap().kid().to_owned();
    let published: Vec<(String, KeyState)> = set
        .jwks()
        .keys
        .iter()
        .map(|jwk| (jwk.kid.clone(), set.keys().iter().find(|k| k.kid() == jwk.kid).unwrap().state()))
        .collect();
    // `first` was deleted at 744, one overlap after it retired.
    assert_eq!(published, vec![(second.clone(), KeyState::Active), (third, KeyState::Next)]);

    let jwks = serde_json::to_value(set.jwks()).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert!(jwks["keys"][0].get("d").is_none(), "no private member in the JWKS");
}

#[test]
fn a_retiring_key_is_published_until_deleted() {
    let policy = policy(Algorithm::EdDSA);
    let mut rng = StdRng::seed_from_u64(12);
    let mut set = KeySet::default();
    for h in [0, 696, 720] {
        let plan = set.plan_rotation(&policy, at(h));
        set.apply(&plan, &mut rng).unwrap();
    }
    let states: Vec<KeyState> = set.keys().iter().map(SigningKey::state).collect();
    assert_eq!(states, vec![KeyState::Retiring, KeyState::Active]);
    assert_eq!(set.jwks().keys.len(), 2);
    let plan = set.plan_rotation(&policy, at(744));
    set.apply(&plan, &mut rng).unwrap();
    assert_eq!(set.jwks().keys.len(), 1);
}

// --- the schedule over time ---------------------------------------------------

/// Runs the operator at the given reconcile times, on metadata only, and
/// checks the schedule's promises; returns how many keys were created.
fn simulate(policy: &RotationPolicy, lifetime: SignedDuration, times: &[Timestamp]) -> Result<usize, String> {
    let mut keys: Vec<KeyMeta> = Vec::new();
    // kid → end of the last interval in which it signed.
    let mut last_signed: HashMap<String, Timestamp> = HashMap::new();
    let mut deleted_at: HashMap<String, Timestamp> = HashMap::new();
    let mut created = 0;
    let mut wake_at: Option<Timestamp> = None;
    for (i, &now) in times.iter().enumerate() {
        let plan = plan_rotation(&keys, policy, now);
        if !plan.is_empty() && wake_at.is_some_and(|w| now < w) {
            return Err(format!("acted at {now} before its wake time {wake_at:?}"));
        }
        for kid in &plan.delete {
            deleted_at.insert(kid.clone(), now);
        }
        for kid in &plan.promote {
            let key = keys.iter().find(|k| &k.kid == kid).unwrap();
            let published = now.duration_since(key.created_at);
            if published < policy.overlap() {
                return Err(format!("{kid} signs after being published for only {published}"));
            }
        }
        for kid in &plan.retire {
            let key = keys.iter().find(|k| &k.kid == kid).unwrap();
            let active_for = now.duration_since(key.activated_at.unwrap());
            if active_for < policy.period() {
                return Err(format!("{kid} retired after only {active_for}"));
            }
        }
        apply(&plan, &mut keys, created);
        created += usize::from(plan.create.is_some());
        wake_at = plan.wake_at;

        if !plan_rotation(&keys, policy, now).is_empty() {
            return Err(format!("plan at {now} is not idempotent"));
        }
        let active: Vec<&KeyMeta> = keys.iter().filter(|k| k.state() == KeyState::Active).collect();
        if active.len() != 1 {
            return Err(format!("{} active keys at {now}", active.len()));
        }
        if keys.len() > 3 {
            return Err(format!("{} keys published at {now}", keys.len()));
        }
        // Tokens are signed until the next reconcile.
        let interval_end = times.get(i + 1).copied().unwrap_or(now);
        last_signed.insert(active[0].kid.clone(), interval_end);
    }
    // A token signed just before `last` expires just before `last + lifetime`;
    // its key must still be published until then. Keys never come back, so
    // being there at the end of the token's life is enough.
    for (kid, last) in &last_signed {
        if let Some(&gone) = deleted_at.get(kid)
            && gone < *last + lifetime
        {
            return Err(format!("{kid} signed until {last} but was deleted at {gone}"));
        }
    }
    Ok(created)
}

/// Reconcile times over a year: steps of 1 minute up to `max_step`, with an
/// occasional outage of up to ten days.
fn reconcile_times(seed: u64, max_step: SignedDuration) -> Vec<Timestamp> {
    use rand::RngExt as _;
    let mut rng = StdRng::seed_from_u64(seed);
    let end = t0() + hours(24 * 365);
    let mut times = vec![t0()];
    let mut now = t0();
    while now < end {
        let step = if rng.random_ratio(1, 2000) {
            rng.random_range(1..=240 * 60)
        } else {
            rng.random_range(1..=max_step.as_mins().max(1))
        };
        now += SignedDuration::from_mins(step);
        times.push(now);
    }
    times
}

#[test]
fn a_year_of_hourly_reconciles_with_the_default_policy_rotates_monthly() {
    let times: Vec<Timestamp> = (0..=24 * 365).map(at).collect();
    let created = simulate(&policy(Algorithm::ES256), SignedDuration::from_mins(15), &times).unwrap();
    assert_eq!(created, 13, "one key at start plus one every 720 hours");
    let created = simulate(&policy(Algorithm::ES256), hours(24), &times).unwrap();
    assert_eq!(created, 13);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn no_token_outlives_its_key(
        period_hours in 2i64..=2000,
        overlap_per_mille in 1i64..1000,
        lifetime_per_mille in 1i64..=1000,
        max_step_minutes in 60i64..=720,
        seed in any::<u64>(),
    ) {
        let period = hours(period_hours);
        let overlap = SignedDuration::from_mins((period.as_mins() * overlap_per_mille / 1000).max(1));
        let lifetime = SignedDuration::from_secs((overlap.as_secs() * lifetime_per_mille / 1000).max(1));
        let policy = RotationPolicy::new(Algorithm::ES256, period, overlap).unwrap();
        let times = reconcile_times(seed, SignedDuration::from_mins(max_step_minutes));
        if let Err(violation) = simulate(&policy, lifetime, &times) {
            prop_assert!(false, "{}", violation);
        }
    }
}
