"""The JSON API over real HTTP, on SQLite and on Postgres: tokens and their rotation, the account,
app passwords, favourites, shelves, progress, bad input, and the OpenAPI document at ``/schema``.

Each backend gets one server for the module; tests share its users, so each works on its own
books, shelves and logins and asserts only about those.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import msgspec
import pytest

from opds_server.auth.tokens import Tokens
from tests.conftest import (
    ROOT,
    LiveServer,
    create_postgres_database,
    drop_postgres_database,
    start_server,
    stop_server,
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


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(
    request: pytest.FixtureRequest, fixture_library: Path, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[Api]:
    work = tmp_path_factory.mktemp(f"api-{request.param}")
    database = f"opds_api_{worker_id}_{os.getpid()}"
    env = {"OPDS_DATA_DIR": str(work / "data")}
    if request.param == "postgresql":
        env["DATABASE_URL"] = create_postgres_database(database)
    server = start_server(fixture_library, work / "data", work / "server.log", env)
    try:
        with ThreadPoolExecutor() as pool:
            list(pool.map(lambda name: add_user(env, name), PASSWORDS))
        yield Api(server=server, backend=request.param)
    finally:
        stop_server(server)
        if request.param == "postgresql":
            drop_postgres_database(database)


@pytest.fixture(scope="module")
def http(api: Api) -> Iterator[httpx.Client]:
    """A client without credentials."""
    with api.client() as client:
        yield client


def login(http: httpx.Client, name: str, password: str | None = None) -> TokenPair:
    response = http.post("/api/auth/token", json={"username": name, "password": password or PASSWORDS[name]})
    assert response.status_code == 200, response.text
    return msgspec.json.decode(response.content, type=TokenPair)


@pytest.fixture(scope="module")
def ada(api: Api, http: httpx.Client) -> Iterator[httpx.Client]:
    with api.client(login(http, "ada").access_token) as client:
        yield client


@pytest.fixture(scope="module")
def bob(api: Api, http: httpx.Client) -> Iterator[httpx.Client]:
    with api.client(login(http, "bob").access_token) as client:
        yield client


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


# Logging in and tokens


def test_a_login_returns_a_bearer_pair_that_opens_the_api_and_the_feeds(api: Api, http: httpx.Client) -> None:
    pair = login(http, "ada")
    assert (pair.token_type, pair.expires_in, pair.refresh_expires_in) == ("Bearer", 1800, 7 * 86400)
    with api.client(pair.access_token) as client:
        me = client.get("/api/me").json()
        assert (me["name"], me["is_admin"], me["scopes"]) == ("ada", False, ["account", "catalog", "sync"])
        assert client.get("/opds").status_code == 200
        assert client.get("/opds/v2/books?limit=2").status_code == 200


def test_an_unknown_name_and_a_wrong_password_get_the_same_answer_after_the_same_work(http: httpx.Client) -> None:
    def attempt(name: str, password: str) -> tuple[float, Problem]:
        started = time.perf_counter()
        response = http.post("/api/auth/token", json={"username": name, "password": password})
        elapsed = time.perf_counter() - started
        assert response.headers["www-authenticate"].startswith("Bearer")
        return elapsed, problem(response, 401)

    unknown, wrong = [], []
    for n in range(5):
        unknown.append(attempt("nobody", f"guess {n}"))
        wrong.append(attempt("bob", f"guess {n}"))
    assert {p.detail for _, p in unknown} == {p.detail for _, p in wrong} == {"wrong user name or password"}
    # Both run one argon2 verification: their medians stay within a factor of two of each other.
    ratio = statistics.median(t for t, _ in unknown) / statistics.median(t for t, _ in wrong)
    assert 0.5 < ratio < 2, ratio


def test_too_many_failures_lock_the_account_with_a_429_even_for_the_right_password(http: httpx.Client) -> None:
    for n in range(10):
        problem(http.post("/api/auth/token", json={"username": "dee", "password": f"wrong {n}"}), 401)
    response = http.post("/api/auth/token", json={"username": "dee", "password": PASSWORDS["dee"]})
    problem(response, 429, "too many failed logins")
    assert int(response.headers["retry-after"]) > 0


def test_an_app_password_cannot_obtain_tokens(ada: httpx.Client, http: httpx.Client) -> None:
    made = ada.post("/api/app-passwords", json={"label": "token thief"}).json()
    response = http.post("/api/auth/token", json={"username": "ada", "password": made["password"]})
    problem(response, 401, "app password")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"username": "ada"}', "missing required field `password`"),
        (b'{"username": "ada", "password": 7}', "'password' = 7"),
        (b'{"username": "' + b"a" * 65 + b'", "password": "x"}', "'username'"),
        (b'{"username": "ada", "password": "x", "otp": 1}', "unknown field `otp`"),
        (b'{"username": "ada", "password": ', "not valid JSON"),
        (b"", "empty"),
    ],
)
def test_a_bad_login_body_is_a_400_naming_the_problem(http: httpx.Client, body: bytes, named: str) -> None:
    problem(http.post("/api/auth/token", content=body, headers={"content-type": "application/json"}), 400, named)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "missing required field `refresh_token`"),
        ({"refresh_token": 5}, "'refresh_token' = 5"),
        ({"refresh_token": "x" * 5000}, "'refresh_token'"),
    ],
)
def test_a_bad_refresh_body_is_a_400_naming_the_field(http: httpx.Client, body: dict[str, object], named: str) -> None:
    problem(http.post("/api/auth/refresh", json=body), 400, named)


def test_refreshing_rotates_the_pair_and_spends_the_old_refresh_token(api: Api, http: httpx.Client) -> None:
    first = login(http, "ada")
    response = refresh(http, first.refresh_token)
    assert response.status_code == 200, response.text
    second = msgspec.json.decode(response.content, type=TokenPair)
    assert second.refresh_token != first.refresh_token
    with api.client(second.access_token) as client:
        assert client.get("/api/me").status_code == 200
    third = refresh(http, second.refresh_token)
    assert third.status_code == 200, third.text


def test_a_spent_refresh_token_presented_again_revokes_its_whole_family(http: httpx.Client) -> None:
    first, other_login = login(http, "ada"), login(http, "ada")
    second = msgspec.json.decode(refresh(http, first.refresh_token).content, type=TokenPair)
    problem(refresh(http, first.refresh_token), 401, "every token of this login is now revoked")
    problem(refresh(http, second.refresh_token), 401)
    assert refresh(http, other_login.refresh_token).status_code == 200


def counterfeit(api: Api, token: str, kind: str) -> str:
    """A token with the claims of ``token``, but unsigned, signed with another key, never recorded by
    the server (signed with its real secret, read from the data dir), or expired."""
    claims = jwt.decode(token, options={"verify_signature": False})
    now = dt.datetime.now(tz=dt.UTC)
    if kind == "alg-none":
        return jwt.encode(claims, key=None, algorithm="none")
    if kind == "forged":
        return jwt.encode(claims, "not the server's secret, but long enough", algorithm="HS256")
    issued_at = now - dt.timedelta(days=8) if kind == "expired" else now
    pair, _ = Tokens(read_secret(api)).issue(int(claims["sub"]), int(claims["ver"]), now=issued_at)
    return pair.refresh_token if claims["typ"] == "refresh" else pair.access_token


@pytest.mark.parametrize("kind", ["alg-none", "forged", "unrecorded", "expired", "access-as-refresh", "garbage"])
def test_refresh_refuses_tokens_it_did_not_issue_and_record(api: Api, http: httpx.Client, kind: str) -> None:
    pair = login(http, "ada")
    if kind == "access-as-refresh":
        token = pair.access_token
    elif kind == "garbage":
        token = "not.a.token"
    else:
        token = counterfeit(api, pair.refresh_token, kind)
    problem(refresh(http, token), 401, "refresh_token")
    assert refresh(http, pair.refresh_token).status_code == 200  # the real one still works


@pytest.mark.parametrize("kind", ["alg-none", "forged", "expired", "refresh-as-access"])
def test_the_api_and_the_feeds_refuse_bearer_tokens_that_are_not_valid_access_tokens(
    api: Api, http: httpx.Client, kind: str
) -> None:
    pair = login(http, "ada")
    token = pair.refresh_token if kind == "refresh-as-access" else counterfeit(api, pair.access_token, kind)
    for path in ("/api/me", "/opds"):
        response = http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (path, response.text)
    assert "Bearer" in http.get("/api/me", headers={"Authorization": f"Bearer {token}"}).headers["www-authenticate"]


def test_logout_revokes_the_family_of_the_refresh_token(api: Api, http: httpx.Client) -> None:
    pair = login(http, "ada")
    with api.client(pair.access_token) as client:
        assert client.post("/api/auth/logout", json={"refresh_token": pair.refresh_token}).status_code == 204
    problem(refresh(http, pair.refresh_token), 401)


def test_logout_refuses_a_token_of_another_account_or_none_at_all(ada: httpx.Client, http: httpx.Client) -> None:
    bobs = login(http, "bob")
    problem(ada.post("/api/auth/logout", json={"refresh_token": bobs.refresh_token}), 400, "'refresh_token'")
    problem(ada.post("/api/auth/logout", json={"refresh_token": "garbage"}), 400, "'refresh_token'")
    problem(ada.post("/api/auth/logout", json={}), 400, "`refresh_token`")
    assert refresh(http, bobs.refresh_token).status_code == 200


# The account


def test_the_api_needs_a_login_and_an_app_password_may_not_use_it(ada: httpx.Client, http: httpx.Client) -> None:
    response = http.get("/api/me")
    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert http.get("/api/me", auth=("ada", PASSWORDS["ada"])).status_code == 200
    made = ada.post("/api/app-passwords", json={"label": "reader", "scopes": ["catalog"]}).json()
    problem(http.get("/api/me", auth=("ada", made["password"])), 403, "account")


def test_changing_the_password_kills_the_old_one_and_every_token_at_once(api: Api, http: httpx.Client) -> None:
    pair = login(http, "cyd")
    assert http.get("/opds", auth=("cyd", PASSWORDS["cyd"])).status_code == 200  # now in the credential cache
    with api.client(pair.access_token) as cyd:
        wrong = {"current_password": "not it", "new_password": "cyd's new password"}
        problem(cyd.post("/api/me/password", json=wrong), 400, "'current_password'")
        problem(cyd.post("/api/me/password", json={"current_password": PASSWORDS["cyd"]}), 400, "new_password")
        change = {"current_password": PASSWORDS["cyd"], "new_password": "cyd's new password"}
        assert cyd.post("/api/me/password", json=change).status_code == 204
        problem(cyd.get("/api/me"), 401)
    assert http.get("/opds", auth=("cyd", PASSWORDS["cyd"])).status_code == 401
    problem(refresh(http, pair.refresh_token), 401)
    assert login(http, "cyd", "cyd's new password").access_token


def test_app_passwords_are_shown_once_listed_without_secrets_and_revoked(ada: httpx.Client, http: httpx.Client) -> None:
    response = ada.post("/api/app-passwords", json={"label": "Kobo Libra", "scopes": ["catalog", "sync"]})
    assert response.status_code == 201
    made = response.json()
    assert made["password"].startswith(f"opds_{made['id']}_")
    listed = {p["id"]: p for p in ada.get("/api/app-passwords").json()}
    assert listed[made["id"]]["label"] == "Kobo Libra"
    assert listed[made["id"]]["scopes"] == ["catalog", "sync"]
    assert "password" not in listed[made["id"]]
    assert http.get("/opds", auth=("ada", made["password"])).status_code == 200
    assert ada.delete(f"/api/app-passwords/{made['id']}").status_code == 204
    assert made["id"] not in {p["id"] for p in ada.get("/api/app-passwords").json()}
    assert http.get("/opds", auth=("ada", made["password"])).status_code == 401
    problem(ada.delete(f"/api/app-passwords/{made['id']}"), 404, str(made["id"]))
    problem(ada.delete("/api/app-passwords/0"), 400, "'password_id'")


def test_an_app_password_of_another_account_cannot_be_seen_or_revoked(ada: httpx.Client, bob: httpx.Client) -> None:
    bobs = bob.post("/api/app-passwords", json={"label": "bob's phone"}).json()
    assert bobs["id"] not in {p["id"] for p in ada.get("/api/app-passwords").json()}
    problem(ada.delete(f"/api/app-passwords/{bobs['id']}"), 404, f"no app password {bobs['id']}")
    assert bobs["id"] in {p["id"] for p in bob.get("/api/app-passwords").json()}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"label": "x", "scopes": ["account"]}, "'scopes[0]' = \"account\""),
        ({"label": "x", "scopes": []}, "'scopes' = []"),
        ({"label": ""}, "'label' = \"\""),
        ({"label": "bell\u0007"}, "'label'"),
        ({"label": "x" * 101}, "'label'"),
        ({"label": ["x"]}, "'label'"),
    ],
)
def test_a_bad_app_password_request_is_a_400_naming_the_field(
    ada: httpx.Client, body: dict[str, object], named: str
) -> None:
    problem(ada.post("/api/app-passwords", json=body), 400, named)


# Favourites


def test_favourites_are_added_idempotently_listed_with_titles_and_removed(ada: httpx.Client) -> None:
    assert ada.put("/api/favourites/11").status_code == 204
    assert ada.put("/api/favourites/11").status_code == 204
    listed = ada.get("/api/favourites").json()
    assert [f for f in listed if f["book_id"] == 11] == [{"book_id": 11, "title": title_of(ada, 11)}]
    assert ada.delete("/api/favourites/11").status_code == 204
    assert 11 not in {f["book_id"] for f in ada.get("/api/favourites").json()}
    problem(ada.delete("/api/favourites/11"), 404, "book 11")


def test_favourites_of_one_account_are_not_anothers(ada: httpx.Client, bob: httpx.Client) -> None:
    assert ada.put("/api/favourites/12").status_code == 204
    assert 12 not in {f["book_id"] for f in bob.get("/api/favourites").json()}
    problem(bob.delete("/api/favourites/12"), 404)


def test_a_book_not_in_the_library_cannot_be_a_favourite(ada: httpx.Client) -> None:
    problem(ada.put("/api/favourites/999999"), 404, "book 999999")
    problem(ada.put("/api/favourites/0"), 400, "'book_id'")
    problem(ada.put("/api/favourites/99999999999"), 400, "'book_id'")
    problem(ada.put("/api/favourites/abc"), 404)


# Shelves


def make_shelf(client: httpx.Client, name: str) -> int:
    response = client.post("/api/shelves", json={"name": name})
    assert response.status_code == 201, response.text
    shelf_id: int = response.json()["id"]
    return shelf_id


def shelf_books(client: httpx.Client, shelf_id: int) -> list[int]:
    response = client.get(f"/api/shelves/{shelf_id}")
    assert response.status_code == 200, response.text
    return [book["book_id"] for book in response.json()["books"]]


def test_a_shelf_holds_books_in_order_and_can_be_reordered_and_renamed(ada: httpx.Client) -> None:
    shelf_id = make_shelf(ada, "Summer")
    for book_id in (3, 1, 2, 1):
        assert ada.put(f"/api/shelves/{shelf_id}/books/{book_id}").status_code == 204
    shelf = ada.get(f"/api/shelves/{shelf_id}").json()
    assert (shelf["name"], shelf["book_count"]) == ("Summer", 3)
    assert shelf["books"][0] == {"book_id": 3, "title": title_of(ada, 3)}
    reordered = ada.put(f"/api/shelves/{shelf_id}/order", json={"book_ids": [2, 3]})
    assert [b["book_id"] for b in reordered.json()["books"]] == [2, 3, 1]
    assert ada.delete(f"/api/shelves/{shelf_id}/books/3").status_code == 204
    assert shelf_books(ada, shelf_id) == [2, 1]
    problem(ada.delete(f"/api/shelves/{shelf_id}/books/3"), 404, "book 3 is not on shelf")
    assert ada.patch(f"/api/shelves/{shelf_id}", json={"name": "Autumn"}).json()["name"] == "Autumn"
    assert {"Autumn"} <= {s["name"] for s in ada.get("/api/shelves").json()}
    assert ada.delete(f"/api/shelves/{shelf_id}").status_code == 204
    problem(ada.get(f"/api/shelves/{shelf_id}"), 404, f"no shelf {shelf_id}")


def test_shelf_names_are_unique_per_account_whatever_their_case(ada: httpx.Client, bob: httpx.Client) -> None:
    make_shelf(ada, "Classics")
    problem(ada.post("/api/shelves", json={"name": "CLASSICS"}), 409, "'name' = 'CLASSICS'")
    other = make_shelf(ada, "Modern")
    problem(ada.patch(f"/api/shelves/{other}", json={"name": "classics"}), 409, "'name'")
    make_shelf(bob, "Classics")


def test_another_accounts_shelf_answers_like_one_that_does_not_exist(ada: httpx.Client, bob: httpx.Client) -> None:
    shelf_id = make_shelf(ada, "Private")
    assert ada.put(f"/api/shelves/{shelf_id}/books/4").status_code == 204
    missing = 2**31 - 1
    for method, path, body in [
        ("GET", "", None),
        ("PATCH", "", {"name": "Mine"}),
        ("PUT", "/books/5", None),
        ("DELETE", "/books/4", None),
        ("PUT", "/order", {"book_ids": [4]}),
        ("DELETE", "", None),
    ]:
        theirs = problem(bob.request(method, f"/api/shelves/{shelf_id}{path}", json=body), 404)
        nobodys = problem(bob.request(method, f"/api/shelves/{missing}{path}", json=body), 404)
        assert theirs.detail.replace(str(shelf_id), "N") == nobodys.detail.replace(str(missing), "N")
    assert shelf_books(ada, shelf_id) == [4]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "named"),
    [
        ("POST", "", {"name": ""}, 400, "'name'"),
        ("POST", "", {"name": "   "}, 400, "printable characters"),
        ("POST", "", {"name": "x" * 201}, 400, "'name'"),
        ("POST", "", {"title": "Wrong field"}, 400, "unknown field `title`"),
        ("PATCH", "/{shelf}", {"name": 5}, 400, "'name' = 5"),
        ("PUT", "/{shelf}/books/999999", None, 404, "book 999999"),
        ("PUT", "/{shelf}/order", {"book_ids": "1,2"}, 400, "'book_ids'"),
        ("PUT", "/{shelf}/order", {"book_ids": [1, "x"]}, 400, "'book_ids[1]' = \"x\""),
        ("PUT", "/{shelf}/order", {"book_ids": [77]}, 400, "77 not on shelf"),
        ("PUT", "/{shelf}/order", {"book_ids": [1] * 10_001}, 400, "'book_ids'"),
    ],
)
def test_bad_shelf_requests_are_answered_naming_the_problem(
    request: pytest.FixtureRequest,
    ada: httpx.Client,
    *,
    method: str,
    path: str,
    body: dict[str, object] | None,
    status: int,
    named: str,
) -> None:
    shelf_id = make_shelf(ada, request.node.name[-200:])
    ada.put(f"/api/shelves/{shelf_id}/books/1")
    problem(ada.request(method, "/api/shelves" + path.format(shelf=shelf_id), json=body), status, named)
    assert shelf_books(ada, shelf_id) == [1]


def test_two_clients_adding_to_one_shelf_at_once_lose_nothing(api: Api, ada: httpx.Client) -> None:
    shelf_id = make_shelf(ada, "Race")
    start = threading.Barrier(2)
    token = ada.headers["authorization"].removeprefix("Bearer ")

    def add(first: int) -> list[int]:
        with api.client(token) as client:
            start.wait()
            return [client.put(f"/api/shelves/{shelf_id}/books/{b}").status_code for b in range(first, 21, 2)]

    with ThreadPoolExecutor(2) as pool:
        statuses = [status for batch in pool.map(add, (1, 2)) for status in batch]
    assert set(statuses) == {204}
    assert sorted(shelf_books(ada, shelf_id)) == list(range(1, 21))


# Progress


def test_progress_is_saved_per_device_kind_and_listed_newest_first(ada: httpx.Client) -> None:
    saved = ada.put("/api/progress/5", json={"percentage": 12.5, "locator": "epubcfi(/6/4!/4)", "device_kind": "web"})
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["book_id"], body["percentage"], body["locator"], body["finished"]) == (
        5,
        12.5,
        "epubcfi(/6/4!/4)",
        False,
    )
    assert body["title"] == title_of(ada, 5)
    ada.put("/api/progress/5", json={"percentage": 100, "finished": True, "device_kind": "koreader"})
    ada.put("/api/progress/6", json={"percentage": 1})
    assert [(p["book_id"], p["device_kind"]) for p in ada.get("/api/progress").json()[:3]] == [
        (6, "api"),
        (5, "koreader"),
        (5, "web"),
    ]
    one = ada.get("/api/progress/5").json()
    assert [(p["device_kind"], p["percentage"], p["finished"]) for p in one] == [
        ("koreader", 100, True),
        ("web", 12.5, False),
    ]


def test_progress_of_one_account_is_not_anothers(ada: httpx.Client, bob: httpx.Client) -> None:
    ada.put("/api/progress/7", json={"percentage": 70})
    assert bob.get("/api/progress/7").json() == []
    assert 7 not in {p["book_id"] for p in bob.get("/api/progress").json()}


def test_progress_of_a_book_not_in_the_library_is_a_404(ada: httpx.Client) -> None:
    problem(ada.put("/api/progress/999999", json={"percentage": 5}), 404, "book 999999")
    problem(ada.get("/api/progress/999999"), 404, "book 999999")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"percentage": -1}', "'percentage' = -1"),
        (b'{"percentage": 101}', "'percentage' = 101"),
        (b'{"percentage": "NaN"}', "'percentage' = \"NaN\""),
        (b'{"percentage": "fifty"}', "'percentage' = \"fifty\""),
        (b'{"percentage": NaN}', "not valid JSON"),
        (b'{"percentage": 1e999}', "not valid JSON"),
        (b'{"locator": "x"}', "missing required field `percentage`"),
        (b'{"percentage": 5, "locator": "' + b"x" * (64 * 1024 + 1) + b'"}', "'locator'"),
        (b'{"percentage": 5, "locator": 7}', "'locator' = 7"),
        (b'{"percentage": 5, "device_kind": "Bad Kind!"}', "'device_kind' = \"Bad Kind!\""),
        (b'{"percentage": 5, "finished": "maybe"}', "'finished' = \"maybe\""),
        (b'{"percentage": 5, "page": 3}', "unknown field `page`"),
        (b'{"percentage": 5', "not valid JSON"),
        (b"", "the request body is empty"),
        (b"[50]", "Expected `object`, got `array`"),
    ],
)
def test_bad_progress_is_a_400_naming_the_field_and_value(ada: httpx.Client, body: bytes, named: str) -> None:
    response = ada.put("/api/progress/8", content=body, headers={"content-type": "application/json"})
    problem(response, 400, named)
    assert ada.get("/api/progress/8").json() == []


def test_an_enormous_body_is_refused_with_a_413(ada: httpx.Client) -> None:
    body = b'{"percentage": 5, "locator": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    problem(ada.put("/api/progress/9", content=body, headers={"content-type": "application/json"}), 413, "bytes")


# The OpenAPI document


@pytest.mark.parametrize("path", ["/schema", "/schema/openapi.json"])
def test_the_openapi_document_is_public_and_lists_every_api_operation(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 200
    document = msgspec.json.decode(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "opds-server"
    for api_path, methods in API_PATHS.items():
        assert methods <= set(document["paths"][api_path]), api_path
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["paths"]["/api/me"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in document["paths"]["/api/auth/token"]["post"]
    errors = document["paths"]["/api/progress/{book_id}"]["put"]["responses"]
    assert {"200", "400", "401", "404", "413"} <= set(errors)
    assert set(errors["400"]["content"]) == {PROBLEM_TYPE}


def test_an_unknown_api_path_is_a_404_problem(ada: httpx.Client) -> None:
    problem(ada.get("/api/nothing-here"), 404)
    problem(ada.post("/api/me"), 405)
