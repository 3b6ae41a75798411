"""The client side of the JSON API tests: users, logins and problem checks (test_api_*)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import httpx
import msgspec

from tests.conftest import (
    ROOT,
    LiveServer,
)

PASSWORDS = {"ada": "ada's long password", "bob": "bob's password", "cyd": "cyd's old password", "dee": "dee's"}
PROBLEM_TYPE = "application/problem+json"
API_PATHS = {
    "/api/auth/token": {"post"},
    "/api/auth/refresh": {"post"},
    "/api/auth/logout": {"post"},
    "/api/me": {"get"},
    "/api/me/password": {"post"},
    "/api/app-passwords": {"get", "post"},
    "/api/app-passwords/{password_id}": {"delete"},
    "/api/favourites": {"get"},
    "/api/favourites/{book_id}": {"put", "delete"},
    "/api/shelves": {"get", "post"},
    "/api/shelves/{shelf_id}": {"get", "patch", "delete"},
    "/api/shelves/{shelf_id}/books/{book_id}": {"put", "delete"},
    "/api/shelves/{shelf_id}/order": {"put"},
    "/api/progress": {"get"},
    "/api/progress/{book_id}": {"get", "put"},
    "/api/kobo/devices": {"get", "post"},
    "/api/kobo/devices/{device_id}": {"delete"},
    "/api/kobo/devices/{device_id}/sync": {"put"},
    "/api/kobo/devices/{device_id}/resync": {"post"},
}


class Problem(msgspec.Struct, frozen=True):
    type: str
    title: str
    status: int
    detail: str


class TokenPair(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    refresh_expires_in: int


@dataclass(frozen=True)
class Api:
    """A live server on one backend, with the users of ``PASSWORDS``."""

    server: LiveServer
    backend: str

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.server.client(headers=headers)


def add_user(env: dict[str, str], name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "opds_server", "users", "add", name, "--password-stdin"],
        cwd=ROOT,
        env={**os.environ, "OPDS_NO_BOOTSTRAP": "1", **env},
        input=PASSWORDS[name] + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def login(http: httpx.Client, name: str, password: str | None = None) -> TokenPair:
    response = http.post("/api/auth/token", json={"username": name, "password": password or PASSWORDS[name]})
    assert response.status_code == 200, response.text
    return msgspec.json.decode(response.content, type=TokenPair)


def problem(response: httpx.Response, status: int, *named: str) -> Problem:
    """The response is a problem of ``status`` whose detail mentions every one of ``named``."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM_TYPE
    found = msgspec.json.decode(response.content, type=Problem)
    assert found.status == status
    for word in named:
        assert word in found.detail, (word, found.detail)
    return found


def refresh(http: httpx.Client, token: str) -> httpx.Response:
    return http.post("/api/auth/refresh", json={"refresh_token": token})


def title_of(client: httpx.Client, book_id: int) -> str:
    response = client.get(f"/opds/v2/books/{book_id}")
    assert response.status_code == 200
    return str(msgspec.json.decode(response.content)["metadata"]["title"])


def read_secret(api: Api) -> bytes:
    return (api.server.data_dir / "secret.key").read_text(encoding="ascii").strip().encode()
