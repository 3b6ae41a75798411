"""The JSON API over real HTTP, on SQLite and on Postgres: favourites, shelves and reading progress.

Each backend gets one server for the module; tests share its users, so each works on its own
books and shelves and asserts only about those.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.server.api_client import (
    Api,
    problem,
    title_of,
)

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
