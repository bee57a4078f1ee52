"""The services under test, served over real HTTP on loopback, and what a
client of Portcullis does: tokens from the real token service whose issuer
tests/python_client.rs passes in the environment.

  PORTCULLIS_ISSUER, PORTCULLIS_ORDERS_SECRET, PORTCULLIS_CI_SECRET,
  PORTCULLIS_CHECKER_SECRET, PORTCULLIS_ID_TOKEN      examples/acme + tests/fixtures/guard
  PORTCULLIS_SHORT_ISSUER, PORTCULLIS_SHORT_ORDERS_SECRET,
  PORTCULLIS_SHORT_ORGANIZATION                      the same with 3 s access tokens
"""

import base64
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import uvicorn
from fastapi import Depends, FastAPI
from flask import Flask, g
from werkzeug.serving import make_server

from portcullis import Guard
from portcullis import fastapi as portcullis_fastapi
from portcullis import flask as portcullis_flask

JOURNEYS_API = "https://api.acme.com/journeys"
DEADLINE = 60.0


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through tests/python_client.rs")
    return value


# --- the services ---


def flask_app(guard: Guard) -> Flask:
    app = Flask("journeys")
    portcullis_flask.init_app(app, guard)

    @app.post("/workspaces/<workspace>/journeys/<journey>/publish")
    @portcullis_flask.requires_permission("journeys.publish")
    def publish(workspace, journey):
        return {"published": journey, "workspace": workspace, "by": g.portcullis_claims["sub"]}

    @app.post("/workspaces/<workspace>/members")
    @portcullis_flask.requires_permission("iam.manage-roles")
    def add_member(workspace):
        return {"added": True}

    @app.get("/me")
    @portcullis_flask.requires_token
    def me():
        return {"sub": g.portcullis_claims["sub"]}

    return app


def fastapi_app(guard: Guard) -> FastAPI:
    app = FastAPI()
    portcullis_fastapi.install(app, guard)
    publish_permission = portcullis_fastapi.RequirePermission("journeys.publish")
    manage_roles = portcullis_fastapi.RequirePermission("iam.manage-roles")

    @app.post("/workspaces/{workspace}/journeys/{journey}/publish")
    def publish(workspace: str, journey: str, claims: dict = Depends(publish_permission)):
        return {"published": journey, "workspace": workspace, "by": claims["sub"]}

    @app.post("/workspaces/{workspace}/members")
    def add_member(workspace: str, claims: dict = Depends(manage_roles)):
        return {"added": True}

    @app.get("/me")
    def me(claims: dict = Depends(portcullis_fastapi.verified_token)):
        return {"sub": claims["sub"]}

    return app


class Served:
    """A service on 127.0.0.1:0 in a thread, and the guard it uses."""

    def __init__(self, framework: str, guard: Guard):
        self.guard = guard
        if framework == "flask":
            self._server = make_server("127.0.0.1", 0, flask_app(guard), threaded=True)
            self.base = f"http://127.0.0.1:{self._server.server_port}"
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._stop = self._server.shutdown
        else:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            self.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            server = uvicorn.Server(uvicorn.Config(fastapi_app(guard), log_level="warning"))
            self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)

            def stop():
                server.should_exit = True
                self._thread.join(10)

            self._stop = stop
            self._started = lambda: server.started
        self._thread.start()
        if framework == "fastapi":
            until = time.monotonic() + DEADLINE
            while not self._started():
                assert time.monotonic() < until, "uvicorn did not start"
                time.sleep(0.02)

    def stop(self):
        self._stop()


@pytest.fixture(params=["flask", "fastapi"])
def framework(request) -> str:
    return request.param


@pytest.fixture
def serve():
    started = []

    def start(framework: str, guard: Guard) -> Served:
        served = Served(framework, guard)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


# --- what a caller sees ---


class Answer:
    def __init__(self, status: int, challenge: str, body):
        self.status, self.challenge, self.body = status, challenge, body

    def __repr__(self):
        return f"{self.status} {self.challenge!r} {self.body!r}"


def call(base: str, method: str, path: str, token: str | None) -> Answer:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(f"{base}{path}", method=method, headers=headers, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, error.headers, error.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")
    return Answer(status, headers.get("WWW-Authenticate", ""), body)


def publish_in(base: str, workspace: str, token: str | None) -> Answer:
    return call(base, "POST", f"/workspaces/{workspace}/journeys/j-42/publish", token)


def assert_invalid_token(answer: Answer, description: str):
    assert answer.status == 401, answer
    assert answer.challenge.startswith('Bearer error="invalid_token"'), answer
    assert answer.body["error"] == "invalid_token"
    assert description in answer.body["error_description"], answer


def assert_forbidden(answer: Answer, permission: str):
    assert answer.status == 403, answer
    assert answer.challenge.startswith('Bearer error="insufficient_scope"'), answer
    assert answer.body["error"] == "insufficient_scope"
    assert permission in answer.body["error_description"], answer


# --- what a client of Portcullis does ---


def client_credentials(issuer: str, client: str, secret: str) -> str:
    basic = base64.b64encode(f"{client}:{secret}".encode()).decode()
    request = urllib.request.Request(
        f"{issuer}/token",
        data=b"grant_type=client_credentials",
        method="POST",
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def revoke(issuer: str, client: str, secret: str, token: str) -> None:
    basic = base64.b64encode(f"{client}:{secret}".encode()).decode()
    request = urllib.request.Request(
        f"{issuer}/revoke",
        data=urllib.parse.urlencode({"token": token, "token_type_hint": "access_token"}).encode(),
        method="POST",
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def part(token: str, index: int) -> dict:
    segment = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
