"""The JSON API over real HTTP, on SQLite and on Postgres: logging in, tokens and their rotation,
the account, app passwords, bad input, and the OpenAPI document at ``/schema``.

Each backend gets one server for the module; tests share its users, so each works on its own
logins and asserts only about those.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time

import httpx
import jwt
import msgspec
import pytest

from opds_server.auth.tokens import Tokens
from tests.server.api_client import (
    API_PATHS,
    PASSWORDS,
    PROBLEM_TYPE,
    Api,
    Problem,
    TokenPair,
    login,
    problem,
    read_secret,
    refresh,
)

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
        return jwt.encode(claims, key="", algorithm="none")  # PyJWT takes "" as no key
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
