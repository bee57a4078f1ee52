"""Verifying access tokens (RFC 9068 section 4, RFC 8725's checklist) and
deciding permissions, for one issuer and one audience.

The issuer's keys come from its JWKS (found through discovery), kept by
``kid`` and fetched again when a token names an unknown one, at most once
per ``min_jwks_refresh`` seconds whatever arrives, so tokens with made-up
kids cannot make the service hammer the issuer.
"""

import base64
import json
import threading
import time
import urllib.error
import urllib.request

import jwt

from .errors import InsufficientPermission, InvalidToken, IssuerUnavailable, MissingToken

# Asymmetric only: a public key must never serve as an HMAC secret, and
# "none" is never accepted (RFC 8725 section 3.1).
DEFAULT_ALGORITHMS = ("ES256", "EdDSA", "RS256")
_NEVER = {"none", "HS256", "HS384", "HS512"}
_MAX_TOKEN_BYTES = 16 * 1024
_MAX_DOCUMENT_BYTES = 256 * 1024
_RENEW_BEFORE = 30.0


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 section 2.1)."""
    if not authorization:
        raise MissingToken()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingToken()
    return token.strip()


class Guard:
    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        leeway: float = 30,
        algorithms=DEFAULT_ALGORITHMS,
        min_jwks_refresh: float = 30,
        jwks_max_age: float = 600,
        workspace_param: str = "workspace",
        check_api: tuple[str, str] | None = None,
        timeout: float = 5,
    ):
        if not issuer.startswith(("https://", "http://")):
            raise ValueError(f"the issuer must be an http(s) URL, got {issuer!r}")
        if not audience:
            raise ValueError("the audience must not be empty")
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.algorithms = [a for a in algorithms if a not in _NEVER]
        if not self.algorithms:
            raise ValueError("no asymmetric algorithm is allowed")
        self.min_jwks_refresh = min_jwks_refresh
        self.jwks_max_age = jwks_max_age
        self.workspace_param = workspace_param
        self.check_api = check_api
        self.timeout = timeout
        self._discovery = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._refresh_lock = threading.Lock()
        self._own_token: tuple[str, float] | None = None
        self._own_token_lock = threading.Lock()
        self.jwks_fetches = 0

    # --- verification ---

    def verify(self, token: str) -> dict:
        """The claims of ``token`` if it is a valid access token for this service."""
        if len(token) > _MAX_TOKEN_BYTES:
            raise InvalidToken("The token is too long.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("The token is not a well-formed JWT.") from None
        typ = str(header.get("typ", "")).lower()
        if typ not in ("at+jwt", "application/at+jwt"):
            raise InvalidToken("The token's typ is not at+jwt: it is not an access token.")
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise InvalidToken("The token's algorithm is not allowed.")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("The token names no key (kid).")
        key = self._key(kid)
        # The key decides the algorithm, not the token.
        if key.algorithm_name != alg:
            raise InvalidToken("The token's algorithm is not its key's.")
        try:
            return jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"], "verify_nbf": True},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("The token is not valid yet.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("The token is not meant for this service (aud).") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("The token was issued by another issuer.") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("The token's signature does not verify.") from None
        except jwt.PyJWTError:
            raise InvalidToken("The token is not a valid access token.") from None

    def authorize(self, token: str, permission: str, workspace: str | None = None) -> dict:
        """Verifies ``token`` and decides ``permission`` in ``workspace`` (None: the
        organization as a whole), from its claims or, in check mode, the check API."""
        claims = self.verify(token)
        if self.check_api:
            self._check(token, permission, workspace)
            return claims
        if holds(claims, permission, workspace):
            return claims
        if claims.get("permissions") is None:
            raise InsufficientPermission(
                permission,
                f"Permission {permission} is required, and the token carries no permissions: "
                "ask for scope permissions or list permissions in the client's tokenClaims.",
            )
        raise InsufficientPermission(permission, f"Permission {permission} is required.")

    # --- keys ---

    def discovery(self) -> dict:
        if self._discovery is None:
            document = self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            # OpenID Connect Discovery section 4.3: the document names the issuer we asked.
            if document.get("issuer") != self.issuer:
                raise IssuerUnavailable(f"the discovery document names issuer {document.get('issuer')!r}")
            self._discovery = document
        return self._discovery

    def _key(self, kid: str) -> jwt.PyJWK:
        fetched_at = self._fetched_at
        fresh = fetched_at is not None and time.monotonic() - fetched_at < self.jwks_max_age
        if fresh and kid in self._keys:
            return self._keys[kid]
        try:
            self._refresh(fetched_at)
        except IssuerUnavailable:
            if not self._keys:
                raise
        if self._fetched_at is None:
            raise IssuerUnavailable("the issuer's keys could not be fetched yet")
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("The token's key (kid) is not among the issuer's signing keys.")
        return key

    def _refresh(self, seen: float | None) -> None:
        with self._refresh_lock:
            if self._fetched_at != seen:
                return  # another thread fetched meanwhile
            now = time.monotonic()
            if self._last_attempt is not None and now - self._last_attempt < self.min_jwks_refresh:
                return
            self._last_attempt = now
            uri = self.discovery()["jwks_uri"]
            self.jwks_fetches += 1
            document = self._get_json(uri)
            keys = {}
            for jwk in document.get("keys", []):
                if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
                    continue
                if jwk.get("use", "sig") != "sig" or jwk.get("alg") not in self.algorithms:
                    continue
                try:
                    keys[jwk["kid"]] = jwt.PyJWK(jwk)
                except jwt.PyJWTError:
                    continue
            self._keys = keys
            self._fetched_at = time.monotonic()

    # --- check mode ---

    def _check(self, token: str, permission: str, workspace: str | None) -> None:
        body = json.dumps({"token": token, "permission": permission, "workspace": workspace}).encode()
        status, answer = self._post_check(body, renew=False)
        if status == 401:
            # Our own token was refused (a rotation, a restart): take another once.
            status, answer = self._post_check(body, renew=True)
        if status != 200:
            raise IssuerUnavailable(f"the check API answered {status}")
        if answer.get("allowed") is True:
            return
        reason = answer.get("reason", "")
        if reason in ("InvalidToken", "RevokedToken"):
            raise InvalidToken(answer.get("explanation") or "The token is not valid.")
        raise InsufficientPermission(permission, f"Permission {permission} is required ({reason}).")

    def _post_check(self, body: bytes, renew: bool) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{self.issuer}/api/v1/check",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._own(renew)}"},
        )
        return self._send(request)

    def _own(self, renew: bool) -> str:
        with self._own_token_lock:
            if self._own_token and not renew and time.monotonic() < self._own_token[1]:
                return self._own_token[0]
            client_id, secret = self.check_api
            basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
            request = urllib.request.Request(
                self.discovery()["token_endpoint"],
                data=b"grant_type=client_credentials",
                method="POST",
                headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
            )
            status, issued = self._send(request)
            if status != 200 or "access_token" not in issued:
                raise IssuerUnavailable(f"the token endpoint refused the guard's client {client_id!r} ({status})")
            lifetime = float(issued.get("expires_in", 60))
            self._own_token = (issued["access_token"], time.monotonic() + lifetime - min(_RENEW_BEFORE, lifetime / 2))
            return self._own_token[0]

    # --- HTTP ---

    def _get_json(self, url: str) -> dict:
        status, document = self._send(urllib.request.Request(url))
        if status != 200:
            raise IssuerUnavailable(f"GET {url}: status {status}")
        return document

    def _send(self, request: urllib.request.Request) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read(_MAX_DOCUMENT_BYTES + 1)
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read(_MAX_DOCUMENT_BYTES + 1)
        except (urllib.error.URLError, OSError) as error:
            raise IssuerUnavailable(f"{request.full_url}: {error}") from None
        if len(raw) > _MAX_DOCUMENT_BYTES:
            raise IssuerUnavailable(f"{request.full_url}: the document is too large")
        try:
            document = json.loads(raw) if raw else {}
        except ValueError:
            raise IssuerUnavailable(f"{request.full_url}: not JSON") from None
        return status, document if isinstance(document, dict) else {}


def holds(claims: dict, permission: str, workspace: str | None) -> bool:
    """Whether the claims say the principal holds ``permission`` in ``workspace``:
    in ``permissions`` (everywhere) or in ``workspace_permissions[workspace]``."""
    if permission in (claims.get("permissions") or []):
        return True
    if workspace is None:
        return False
    per_workspace = claims.get("workspace_permissions") or {}
    return permission in (per_workspace.get(workspace) or [])
