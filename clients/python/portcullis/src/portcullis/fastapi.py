"""FastAPI: ``install(app, guard)`` and the ``RequirePermission`` dependency.

``Depends(RequirePermission("journeys.publish"))`` gives the verified claims;
the workspace is the path parameter named by ``guard.workspace_param``.
Refusals are rendered by the exception handler ``install`` adds.
"""

from fastapi import Request
from fastapi.responses import JSONResponse

from .errors import GuardError
from .guard import Guard, bearer_token


def install(app, guard: Guard) -> None:
    app.state.portcullis_guard = guard

    @app.exception_handler(GuardError)
    async def refusal(_request: Request, error: GuardError):
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


class RequirePermission:
    def __init__(self, permission: str):
        self.permission = permission

    # A plain function: FastAPI runs it in its thread pool, so the guard's
    # blocking HTTP (JWKS, check API) never stalls the event loop.
    def __call__(self, request: Request) -> dict:
        guard: Guard = request.app.state.portcullis_guard
        token = bearer_token(request.headers.get("Authorization"))
        workspace = request.path_params.get(guard.workspace_param)
        return guard.authorize(token, self.permission, workspace)


def verified_token(request: Request) -> dict:
    """A dependency for any valid access token for this service (no permission)."""
    guard: Guard = request.app.state.portcullis_guard
    return guard.verify(bearer_token(request.headers.get("Authorization")))
