"""Flask: ``init_app(app, guard)`` and the ``@requires_permission`` decorator.

The workspace is the view argument named by ``guard.workspace_param``; the
verified claims are in ``flask.g.portcullis_claims``.
"""

import functools

from flask import current_app, g, jsonify, request

from .errors import GuardError
from .guard import Guard, bearer_token

_EXTENSION = "portcullis"


def init_app(app, guard: Guard) -> None:
    app.extensions[_EXTENSION] = guard


def requires_permission(permission: str):
    """Admits the request only if its bearer token's principal holds ``permission``
    in the route's workspace (or the organization, on a route without one)."""

    def decorator(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            guard: Guard = current_app.extensions[_EXTENSION]
            workspace = (request.view_args or {}).get(guard.workspace_param)
            try:
                token = bearer_token(request.headers.get("Authorization"))
                g.portcullis_claims = guard.authorize(token, permission, workspace)
            except GuardError as refusal:
                return refusal_response(refusal)
            return view(*args, **kwargs)

        return guarded

    return decorator


def requires_token(view):
    """Admits any valid access token for this service (no permission)."""

    @functools.wraps(view)
    def guarded(*args, **kwargs):
        guard: Guard = current_app.extensions[_EXTENSION]
        try:
            g.portcullis_claims = guard.verify(bearer_token(request.headers.get("Authorization")))
        except GuardError as refusal:
            return refusal_response(refusal)
        return view(*args, **kwargs)

    return guarded


def refusal_response(refusal: GuardError):
    response = jsonify(refusal.body())
    response.status_code = refusal.status
    response.headers.update(refusal.headers())
    return response
