"""Verify Portcullis access tokens and require permissions.

``Guard`` does the work; ``portcullis.flask`` and ``portcullis.fastapi``
wire it into those frameworks.
"""

from .errors import GuardError, InsufficientPermission, InvalidToken, IssuerUnavailable, MissingToken
from .guard import Guard, bearer_token

__all__ = [
    "Guard",
    "GuardError",
    "InsufficientPermission",
    "InvalidToken",
    "IssuerUnavailable",
    "MissingToken",
    "bearer_token",
]
