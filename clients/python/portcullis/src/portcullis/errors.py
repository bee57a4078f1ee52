"""Why a request was refused, as RFC 6750 section 3 has a resource server say it."""

import re


class GuardError(Exception):
    """A refusal: an HTTP status, a ``WWW-Authenticate`` challenge and the OAuth error JSON."""

    status = 401
    error = "invalid_token"

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description

    def challenge(self) -> str | None:
        # RFC 6750 section 3: the description keeps to printable ASCII without '"' and '\'.
        description = re.sub(r'[^ !#-\[\]-~]', "", self.description)
        return f'Bearer error="{self.error}", error_description="{description}"'

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}

    def headers(self) -> dict:
        challenge = self.challenge()
        return {"WWW-Authenticate": challenge} if challenge else {}


class MissingToken(GuardError):
    """No bearer token: a bare challenge (RFC 6750 section 3.1)."""

    error = "invalid_request"

    def __init__(self):
        super().__init__("A bearer token is required.")

    def challenge(self) -> str | None:
        return "Bearer"


class InvalidToken(GuardError):
    """Malformed, not ours, expired, revoked, or not for this service."""


class InsufficientPermission(GuardError):
    status = 403
    error = "insufficient_scope"

    def __init__(self, permission: str, description: str):
        super().__init__(description)
        self.permission = permission


class IssuerUnavailable(GuardError):
    """Discovery, the JWKS or the check API could not be reached."""

    status = 503
    error = "temporarily_unavailable"

    def __init__(self, detail: str):
        super().__init__("The token issuer could not be reached; try again.")
        self.detail = detail

    def challenge(self) -> str | None:
        return None
