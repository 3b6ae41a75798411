"""Per-user feeds over HTTP: Favourites, Shelves and each shelf, Currently reading, Finished.

One server on a copy of the fixture library, with anonymous browsing on (so the root can be seen
without a login) and pages of two books by default, so the personal feeds are paged. Its users
are made by the real CLI and their lists seeded through ``PersonalLibrary`` on the server's own
user database, with explicit times so every order is known.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import opds_check
import pytest

from feeds import vocab
from opds_server.db.engine import make_engine
from opds_server.db.library import PersonalLibrary
from opds_server.db.users import UserStore
from tests.conftest import ROOT, LiveServer, copy_fixture_library, start_server, stop_server
from tests.server.reading import (
    Flavour,
    assert_paged_consistently,
    books_in,
    fetch,
    items_in,
    page_one,
    prefix,
    read_page,
    walk,
)

PAGE_SIZE = 2
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)

# alice's lists: 16 has no formats, 17's only file is gone and 999 is not in the library.
FAVOURITES = [25, 10, 3]  # added 3, 10, 16, 999, 25: newest first, the missing skipped
TO_READ = [7, 2, 30, 12, 5]  # shelf order, with 17 between 30 and 12
POETRY = [20]
READING = [8, 9]  # 8 read on two devices, most recently on the second
FINISHED = [14, 13, 11]  # 14 begun first, finished last
BOB_FAVOURITES = [4]


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@dataclass(frozen=True)
class Catalogue:
    """The running server and what was seeded in it."""

    server: LiveServer
    user_ids: dict[str, int]
    to_read: int
    poetry: int
    bobs_shelf: int

    def client(self, user: str | None) -> httpx.Client:
        auth = (user, PASSWORDS[user]) if user is not None else None
        return self.server.client(auth=auth)


def add_user(data_dir: Path, name: str) -> None:
    """``opds-server users add NAME --password-stdin``, the real CLI."""
    result = subprocess.run(
        [sys.executable, "-m", "opds_server", "users", "add", name, "--password-stdin"],
        cwd=ROOT,
        env={**os.environ, "OPDS_NO_BOOTSTRAP": "1", "OPDS_DATA_DIR": str(data_dir)},
        input=PASSWORDS[name] + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def seed(personal: PersonalLibrary, alice: int, bob: int) -> tuple[int, int, int]:
    """alice's and bob's lists; the ids of alice's two shelves and bob's one."""
    for minute, book_id in enumerate([3, 10, 16, 999, 25]):
        personal.add_favourite(alice, book_id, now=at(minute))
    to_read = personal.create_shelf(alice, "To read", now=at(0)).id
    for minute, book_id in enumerate([7, 2, 30, 17, 12, 5]):
        assert personal.add_to_shelf(alice, to_read, book_id, now=at(minute))
    poetry = personal.create_shelf(alice, "Poetry", now=at(0)).id
    personal.add_to_shelf(alice, poetry, 20, now=at(1))
    for minute, book_id, device, percentage, is_finished in [
        (1, 8, "kobo", 0.3, False),
        (2, 14, "kobo", 0.1, False),
        (3, 11, "kobo", 1.0, True),
        (4, 9, "koreader", 0.5, False),
        (5, 13, "koreader", 1.0, True),
        (6, 8, "koreader", 0.4, False),
        (7, 14, "koreader", 1.0, True),
    ]:
        personal.save_progress(
            alice,
            book_id,
            device_kind=device,
            percentage=percentage,
            locator=None,
            is_finished=is_finished,
            now=at(minute),
        )
    personal.add_favourite(bob, 4, now=at(0))
    bobs_shelf = personal.create_shelf(bob, "Bob's", now=at(0)).id
    personal.add_to_shelf(bob, bobs_shelf, 1, now=at(0))
    return to_read, poetry, bobs_shelf


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalogue]:
    workdir = tmp_path_factory.mktemp("personal")
    library = copy_fixture_library(workdir / "library")
    data_dir = workdir / "data"
    server = start_server(
        library,
        data_dir,
        workdir / "server.log",
        env={"OPDS_ANONYMOUS_BROWSING": "true", "OPDS_PAGE_SIZE": str(PAGE_SIZE)},
    )
    try:
        for name in PASSWORDS:
            add_user(data_dir, name)
        engine = make_engine(f"sqlite:///{data_dir / 'opds.db'}")
        try:
            users = UserStore(engine)
            user_ids = {name: user.id for name in PASSWORDS if (user := users.find_user(name)) is not None}
            to_read, poetry, bobs_shelf = seed(PersonalLibrary(engine), user_ids["alice"], user_ids["bob"])
        finally:
            engine.dispose()
        yield Catalogue(server, user_ids, to_read, poetry, bobs_shelf)
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def alice(catalogue: Catalogue) -> Iterator[httpx.Client]:
    with catalogue.client("alice") as client:
        yield client


@pytest.fixture(scope="module")
def bob(catalogue: Catalogue) -> Iterator[httpx.Client]:
    with catalogue.client("bob") as client:
        yield client


def all_books(client: httpx.Client, flavour: Flavour, path: str) -> list[int]:
    """The books of every page of a personal feed, in feed order."""
    return [book for page in walk(client, flavour, prefix(flavour) + path) for book in page.books]


# --- what each feed lists -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/favourites", FAVOURITES), ("/reading", READING), ("/finished", FINISHED)],
)
def test_each_list_shows_the_users_offered_books_in_its_order(
    alice: httpx.Client, flavour: Flavour, path: str, expected: list[int]
) -> None:
    assert all_books(alice, flavour, path) == expected


def test_a_shelf_lists_its_offered_books_in_shelf_order(
    catalogue: Catalogue, alice: httpx.Client, flavour: Flavour
) -> None:
    assert all_books(alice, flavour, f"/shelves/{catalogue.to_read}") == TO_READ
    assert all_books(alice, flavour, f"/shelves/{catalogue.poetry}") == POETRY


def test_shelves_lists_each_shelf_by_name_with_its_count(
    catalogue: Catalogue, alice: httpx.Client, flavour: Flavour
) -> None:
    items = items_in(fetch(alice, flavour, f"{prefix(flavour)}/shelves"))
    assert [(item.title, item.count) for item in items] == [("Poetry", len(POETRY)), ("To read", len(TO_READ))]
    assert [item.href for item in items] == [
        page_one(alice, flavour, f"/shelves/{shelf}", {}) for shelf in (catalogue.poetry, catalogue.to_read)
    ]


def test_limit_two_walks_the_five_book_shelf_exactly(
    catalogue: Catalogue, alice: httpx.Client, flavour: Flavour
) -> None:
    url = page_one(alice, flavour, f"/shelves/{catalogue.to_read}", {"limit": "2"})
    pages = walk(alice, flavour, url)
    assert_paged_consistently(pages, flavour, per_page=2, total=len(TO_READ))
    assert [book for page in pages for book in page.books] == TO_READ


@pytest.mark.parametrize("path", ["/favourites", "/shelves", "/reading", "/finished"])
def test_an_empty_feed_offers_the_new_books_in_opds2_only(catalogue: Catalogue, flavour: Flavour, path: str) -> None:
    with catalogue.client("carol") as carol:
        document = fetch(carol, flavour, prefix(flavour) + path)
        new_books = page_one(carol, flavour, "/books", {"sort": "new"})
    assert books_in(document) == []
    assert [item.href for item in items_in(document)] == ([new_books] if flavour == "json" else [])


# --- one user never sees another's ----------------------------------------------------------------------------


def test_another_user_sees_only_their_own_favourites_and_shelves(bob: httpx.Client, flavour: Flavour) -> None:
    assert all_books(bob, flavour, "/favourites") == BOB_FAVOURITES
    assert all_books(bob, flavour, "/reading") == []
    items = items_in(fetch(bob, flavour, f"{prefix(flavour)}/shelves"))
    assert [(item.title, item.count) for item in items] == [("Bob's", 1)]


def test_another_users_shelf_is_not_found(catalogue: Catalogue, bob: httpx.Client, flavour: Flavour) -> None:
    for shelf in (catalogue.to_read, catalogue.poetry):
        response = bob.get(f"{prefix(flavour)}/shelves/{shelf}")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    assert bob.get(f"{prefix(flavour)}/shelves/{catalogue.bobs_shelf}").status_code == 200


def test_a_cursor_of_another_users_list_is_refused(alice: httpx.Client, bob: httpx.Client, flavour: Flavour) -> None:
    first = read_page(alice, flavour, page_one(alice, flavour, "/favourites", {}))
    after = httpx.URL(first.links["next"]).params["after"]
    response = bob.get(f"{prefix(flavour)}/favourites", params={"after": after})
    assert response.status_code == 400
    assert "another feed" in response.json()["detail"]


# --- logins and caching ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/favourites", "/shelves", "/shelves/1", "/reading", "/finished"])
def test_personal_feeds_need_a_login_even_with_anonymous_browsing(
    catalogue: Catalogue, flavour: Flavour, path: str
) -> None:
    with catalogue.client(None) as anonymous:
        response = anonymous.get(prefix(flavour) + path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert response.headers["content-type"] == vocab.AUTHENTICATION_TYPE


def test_root_has_the_personal_entries_only_when_logged_in(
    catalogue: Catalogue, alice: httpx.Client, flavour: Flavour
) -> None:
    personal = ["Favourites", "Shelves", "Currently reading", "Finished"]
    with catalogue.client(None) as anonymous:
        anonymous_titles = [item.title for item in items_in(fetch(anonymous, flavour, prefix(flavour)))]
    titles = [item.title for item in items_in(fetch(alice, flavour, prefix(flavour)))]
    assert not set(personal) & set(anonymous_titles)
    assert titles == anonymous_titles + personal


def test_favourites_have_another_etag_for_another_user(
    alice: httpx.Client, bob: httpx.Client, flavour: Flavour
) -> None:
    url = f"{prefix(flavour)}/favourites"
    assert alice.get(url).headers["etag"] != bob.get(url).headers["etag"]


def test_the_root_has_an_etag_of_its_own_for_each_user_and_anonymous(
    catalogue: Catalogue, alice: httpx.Client, bob: httpx.Client, flavour: Flavour
) -> None:
    with catalogue.client(None) as anonymous:
        tags = [client.get(prefix(flavour)).headers["etag"] for client in (anonymous, alice, bob)]
    assert len(set(tags)) == len(tags)


def test_personal_feeds_are_private_and_validated_by_etag_only(alice: httpx.Client, flavour: Flavour) -> None:
    url = f"{prefix(flavour)}/favourites"
    response = alice.get(url)
    assert response.headers["cache-control"].split(",")[0] == "private"
    assert "last-modified" not in response.headers
    again = alice.get(url, headers={"If-None-Match": response.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")


def test_a_changed_list_gets_a_new_etag(catalogue: Catalogue, flavour: Flavour) -> None:
    url = f"{prefix(flavour)}/favourites"
    engine = make_engine(f"sqlite:///{catalogue.server.data_dir / 'opds.db'}")
    personal, carol_id = PersonalLibrary(engine), catalogue.user_ids["carol"]
    try:
        with catalogue.client("carol") as carol:
            before = carol.get(url).headers["etag"]
            personal.add_favourite(carol_id, 6, now=at(0))
            response = carol.get(url, headers={"If-None-Match": before})
        assert response.status_code == 200
        assert response.headers["etag"] != before
    finally:
        personal.remove_favourite(carol_id, 6)  # carol's lists stay empty for the other tests
        engine.dispose()


# --- conformance ----------------------------------------------------------------------------------------------

CRAWL_PATHS = ["/favourites", "/shelves", "/reading", "/finished"]


@pytest.mark.parametrize("root", ["/opds", "/opds/v2"])
@pytest.mark.parametrize("path", CRAWL_PATHS)
def test_personal_feed_crawl_has_no_failures(
    catalogue: Catalogue, r2_modules: Path, root: str, path: str, crawl_summaries: list[str]
) -> None:
    report = opds_check.run(
        catalogue.server.url + root + path,
        auth=("alice", PASSWORDS["alice"]),
        readium=True,
        readium_modules=str(r2_modules),
        max_pages=12,
        max_links=20,
        probe_all_acquisitions=False,
    )
    crawl_summaries.append(f"alice {root}{path}: {report.summary().splitlines()[-1]} ({len(report.warnings)} warnings)")
    assert report.errors == [], "\n".join(map(str, report.errors))
    # The budget covers every page of the personal feed itself (the catalogue beyond it has its own crawl).
    start = catalogue.server.url + root + path
    unverified = [w for w in report.warnings if w.rule == "pagination.unverified" and w.url.startswith(start)]
    assert unverified == [], "\n".join(map(str, unverified))


@pytest.mark.parametrize("root", ["/opds", "/opds/v2"])
@pytest.mark.parametrize("path", CRAWL_PATHS)
def test_an_empty_personal_feed_conforms(catalogue: Catalogue, r2_modules: Path, root: str, path: str) -> None:
    report = opds_check.run(
        catalogue.server.url + root + path,
        auth=("carol", PASSWORDS["carol"]),
        readium=True,
        readium_modules=str(r2_modules),
        max_pages=1,
        check_links=False,
    )
    assert report.errors == [], "\n".join(map(str, report.errors))
