"""The same cases as tests/guard.rs, for the Python package in Flask and
FastAPI services, against the real Portcullis standalone."""

import hashlib
import hmac
import json
import re
import time
import urllib.request

from conftest import (
    DEADLINE,
    JOURNEYS_API,
    assert_forbidden,
    assert_invalid_token,
    b64,
    call,
    client_credentials,
    env,
    part,
    publish_in,
    revoke,
)
from portcullis import Guard


def orders_token() -> str:
    return client_credentials(env("PORTCULLIS_ISSUER"), "orders-service", env("PORTCULLIS_ORDERS_SECRET"))


def test_allowed_in_the_workspace_granted_and_denied_elsewhere(framework, serve):
    api = serve(framework, Guard(env("PORTCULLIS_ISSUER"), JOURNEYS_API))
    token = orders_token()
    allowed = publish_in(api.base, "emea-marketing", token)
    assert allowed.status == 200, allowed
    assert allowed.body["by"] == "orders-service"
    assert_forbidden(publish_in(api.base, "us-marketing", token), "journeys.publish")
    assert_forbidden(call(api.base, "POST", "/workspaces/emea-marketing/members", token), "iam.manage-roles")
    bare = publish_in(api.base, "emea-marketing", None)
    assert bare.status == 401 and bare.challenge == "Bearer", bare


def test_a_token_for_another_audience_is_refused(framework, serve):
    api = serve(framework, Guard(env("PORTCULLIS_ISSUER"), JOURNEYS_API))
    data_token = client_credentials(env("PORTCULLIS_ISSUER"), "ci-deployer", env("PORTCULLIS_CI_SECRET"))
    assert_invalid_token(publish_in(api.base, "emea-marketing", data_token), "not meant for this service")


def test_forged_none_and_hmac_tokens_are_refused(framework, serve):
    api = serve(framework, Guard(env("PORTCULLIS_ISSUER"), JOURNEYS_API))
    token = orders_token()
    header, payload, signature = token.split(".")
    claims = part(token, 1)
    claims["permissions"] = ["iam.manage-roles"]
    forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    assert_invalid_token(call(api.base, "POST", "/workspaces/emea-marketing/members", forged), "signature does not verify")

    kid = part(token, 0)["kid"]
    none = f"{b64(json.dumps({'alg': 'none', 'typ': 'at+jwt', 'kid': kid}).encode())}.{payload}."
    assert_invalid_token(publish_in(api.base, "emea-marketing", none), "algorithm")

    with urllib.request.urlopen(f"{env('PORTCULLIS_ISSUER')}/jwks", timeout=30) as response:
        jwks = json.loads(response.read())
    public_jwk = json.dumps(next(k for k in jwks["keys"] if k["kid"] == kid)).encode()
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'at+jwt', 'kid': kid}).encode())}.{payload}"
    mac = hmac.new(public_jwk, signing_input.encode(), hashlib.sha256).digest()
    assert_invalid_token(publish_in(api.base, "emea-marketing", f"{signing_input}.{b64(mac)}"), "algorithm")


def test_an_id_token_is_not_an_access_token(framework, serve):
    # Even for a service that names the client as its audience.
    api = serve(framework, Guard(env("PORTCULLIS_ISSUER"), "journey-studio-web"))
    assert_invalid_token(call(api.base, "GET", "/me", env("PORTCULLIS_ID_TOKEN")), "typ is not at+jwt")


def test_a_flood_of_unknown_kids_fetches_the_jwks_at_most_once_more(framework, serve):
    api = serve(framework, Guard(env("PORTCULLIS_ISSUER"), JOURNEYS_API))
    token = orders_token()
    assert publish_in(api.base, "emea-marketing", token).status == 200
    fetches = api.guard.jwks_fetches
    _, payload, signature = token.split(".")
    for i in range(40):
        header = b64(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": f"made-up-{i}"}).encode())
        assert_invalid_token(publish_in(api.base, "emea-marketing", f"{header}.{payload}.{signature}"), "kid")
    assert api.guard.jwks_fetches <= fetches + 1


def test_check_mode_refuses_a_revoked_token_that_plain_verification_admits(framework, serve):
    issuer = env("PORTCULLIS_ISSUER")
    plain = serve(framework, Guard(issuer, JOURNEYS_API))
    checked = serve(framework, Guard(issuer, JOURNEYS_API, check_api=("journeys-guard", env("PORTCULLIS_CHECKER_SECRET"))))
    token = orders_token()
    assert publish_in(checked.base, "emea-marketing", token).status == 200
    assert_forbidden(publish_in(checked.base, "us-marketing", token), "journeys.publish")
    revoke(issuer, "orders-service", env("PORTCULLIS_ORDERS_SECRET"), token)
    assert publish_in(plain.base, "emea-marketing", token).status == 200, "plain verification cannot see a revocation"
    assert_invalid_token(publish_in(checked.base, "emea-marketing", token), "revoked")


def test_expired_tokens_are_refused_and_a_key_rotation_is_followed(serve):
    issuer = env("PORTCULLIS_SHORT_ISSUER")
    secret = env("PORTCULLIS_SHORT_ORDERS_SECRET")
    guard = Guard(issuer, JOURNEYS_API, leeway=0, min_jwks_refresh=0.5)
    api = serve("flask", guard)

    token = client_credentials(issuer, "orders-service", secret)
    exp = part(token, 1)["exp"]
    assert call(api.base, "GET", "/me", token).status == 200
    until = time.monotonic() + DEADLINE
    while (answer := call(api.base, "GET", "/me", token)).status == 200:
        assert time.monotonic() < until, "an expired token is still admitted"
        time.sleep(0.1)
    assert time.time() >= exp, "refused only once expired"
    assert_invalid_token(answer, "expired")

    # docs/key-rotation.md: shorten the period; tokens signed by a key the
    # guard has never seen verify without restarting the service.
    old_kid = part(token, 0)["kid"]
    fetches = guard.jwks_fetches
    organization = env("PORTCULLIS_SHORT_ORGANIZATION")
    with open(organization) as f:
        text = f.read()
    edited = re.sub(r"period: 720h\n(\s+)overlap: 24h", r"period: 8s\n\1overlap: 4s", text)
    assert edited != text
    with open(organization, "w") as f:
        f.write(edited)
    until = time.monotonic() + DEADLINE
    while part(rotated := client_credentials(issuer, "orders-service", secret), 0)["kid"] == old_kid:
        assert time.monotonic() < until, "no token signed by a new key"
        time.sleep(0.2)
    answer = publish_in(api.base, "emea-marketing", rotated)
    assert answer.status == 200, answer
    assert guard.jwks_fetches > fetches
