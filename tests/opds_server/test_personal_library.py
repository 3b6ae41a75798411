"""Favourites, shelves and reading progress on SQLite and Postgres, including concurrent writers."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from opds_server.db.library import PersonalLibrary, ShelfNameError
from opds_server.db.users import UserStore

NOW = dt.datetime(2026, 2, 3, 4, 5, 6, tzinfo=dt.UTC)


def later(seconds: int) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def make_users(engine: Engine, *names: str) -> list[int]:
    users = UserStore(engine)
    return [users.create_user(name, "hash", is_admin=False, now=NOW).id for name in names]


def test_favourites_are_listed_newest_first_and_adding_twice_keeps_one(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    library.add_favourite(ada, 3, now=NOW)
    library.add_favourite(ada, 1, now=later(1))
    library.add_favourite(ada, 3, now=later(2))
    assert library.favourites(ada) == [1, 3]


def test_removing_a_favourite_reports_whether_it_was_there(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    library.add_favourite(ada, 3, now=NOW)
    assert library.remove_favourite(ada, 3)
    assert not library.remove_favourite(ada, 3)
    assert library.favourites(ada) == []


def test_favourites_belong_to_their_user(engine: Engine) -> None:
    ada, bob = make_users(engine, "ada", "bob")
    library = PersonalLibrary(engine)
    library.add_favourite(ada, 3, now=NOW)
    assert library.favourites(bob) == []
    assert not library.remove_favourite(bob, 3)
    assert library.favourites(ada) == [3]


def test_shelves_are_listed_by_name_with_their_book_counts(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    zebra = library.create_shelf(ada, "  Zebra ", now=NOW)
    apple = library.create_shelf(ada, "apple", now=NOW)
    library.add_to_shelf(ada, zebra.id, 5, now=NOW)
    library.add_to_shelf(ada, zebra.id, 6, now=NOW)
    assert [(s.name, s.book_count) for s in library.shelves(ada)] == [("apple", 0), ("Zebra", 2)]
    found = library.shelf(ada, apple.id)
    assert found is not None
    assert (found.name, found.created_at) == ("apple", NOW)


def test_a_duplicate_shelf_name_differing_in_case_is_refused_as_a_conflict(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    library.create_shelf(ada, "To Read", now=NOW)
    with pytest.raises(ShelfNameError, match="already") as raised:
        library.create_shelf(ada, "to read", now=NOW)
    assert isinstance(raised.value.__cause__, IntegrityError)


def test_two_users_may_have_shelves_of_the_same_name(engine: Engine) -> None:
    ada, bob = make_users(engine, "ada", "bob")
    library = PersonalLibrary(engine)
    library.create_shelf(ada, "To Read", now=NOW)
    library.create_shelf(bob, "To Read", now=NOW)
    assert [s.name for s in library.shelves(bob)] == ["To Read"]


@pytest.mark.parametrize("name", ["", "   ", "tab\there", "x" * 201])
def test_bad_shelf_names_are_refused_without_a_database_conflict(engine: Engine, name: str) -> None:
    (ada,) = make_users(engine, "ada")
    with pytest.raises(ShelfNameError, match="printable characters") as raised:
        PersonalLibrary(engine).create_shelf(ada, name, now=NOW)
    assert raised.value.__cause__ is None


def test_renaming_a_shelf_onto_another_of_its_names_is_refused(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    first = library.create_shelf(ada, "First", now=NOW)
    library.create_shelf(ada, "Second", now=NOW)
    assert library.rename_shelf(ada, first.id, "Renamed", now=later(1))
    renamed = library.shelf(ada, first.id)
    assert renamed is not None
    assert (renamed.name, renamed.updated_at) == ("Renamed", later(1))
    with pytest.raises(ShelfNameError, match="already"):
        library.rename_shelf(ada, first.id, "SECOND", now=later(2))


def test_books_are_appended_to_a_shelf_once_each(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    shelf = library.create_shelf(ada, "Queue", now=NOW)
    for book_id in (7, 3, 9, 3):
        assert library.add_to_shelf(ada, shelf.id, book_id, now=NOW)
    assert library.shelf_books(ada, shelf.id) == [7, 3, 9]


def test_removing_a_book_keeps_the_order_of_the_rest(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    shelf = library.create_shelf(ada, "Queue", now=NOW)
    for book_id in (7, 3, 9):
        library.add_to_shelf(ada, shelf.id, book_id, now=NOW)
    assert library.remove_from_shelf(ada, shelf.id, 3, now=later(1))
    assert library.shelf_books(ada, shelf.id) == [7, 9]
    library.add_to_shelf(ada, shelf.id, 3, now=later(2))
    assert library.shelf_books(ada, shelf.id) == [7, 9, 3]


def test_reordering_puts_the_listed_books_first_and_keeps_the_rest_after_them(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    shelf = library.create_shelf(ada, "Queue", now=NOW)
    for book_id in (1, 2, 3, 4):
        library.add_to_shelf(ada, shelf.id, book_id, now=NOW)
    assert library.reorder_shelf(ada, shelf.id, [4, 2, 4, 99], now=later(1))
    assert library.shelf_books(ada, shelf.id) == [4, 2, 1, 3]


def test_another_users_shelf_can_be_neither_read_nor_changed(engine: Engine) -> None:
    ada, bob = make_users(engine, "ada", "bob")
    library = PersonalLibrary(engine)
    shelf = library.create_shelf(ada, "Private", now=NOW)
    library.add_to_shelf(ada, shelf.id, 1, now=NOW)
    assert library.shelf(bob, shelf.id) is None
    assert library.shelf_books(bob, shelf.id) is None
    assert not library.add_to_shelf(bob, shelf.id, 2, now=NOW)
    assert not library.remove_from_shelf(bob, shelf.id, 1, now=NOW)
    assert not library.reorder_shelf(bob, shelf.id, [1], now=NOW)
    assert not library.rename_shelf(bob, shelf.id, "Mine now", now=NOW)
    assert not library.delete_shelf(bob, shelf.id)
    assert library.shelf_books(ada, shelf.id) == [1]


def test_deleting_a_shelf_deletes_its_book_list(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    shelf = library.create_shelf(ada, "Gone", now=NOW)
    library.add_to_shelf(ada, shelf.id, 1, now=NOW)
    assert library.delete_shelf(ada, shelf.id)
    assert library.shelf_books(ada, shelf.id) is None
    assert library.shelves(ada) == []


def test_two_threads_adding_different_books_to_one_shelf_lose_nothing(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    shelf = library.create_shelf(ada, "Race", now=NOW)
    start = threading.Barrier(2)

    def add(book_ids: range) -> list[bool]:
        start.wait()
        return [library.add_to_shelf(ada, shelf.id, book_id, now=NOW) for book_id in book_ids]

    with ThreadPoolExecutor(2) as pool:  # map re-raises a thread's exception here
        added = [ok for batch in pool.map(add, (range(1, 41, 2), range(2, 41, 2))) for ok in batch]
    assert added == [True] * 40
    stored = library.shelf_books(ada, shelf.id)
    assert stored is not None
    assert sorted(stored) == list(range(1, 41))
    (listed,) = library.shelves(ada)
    assert listed.book_count == 40


def test_progress_is_kept_per_device_kind_and_the_newest_write_wins(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    library.save_progress(ada, 1, device_kind="kobo", percentage=10, locator="a", is_finished=False, now=NOW)
    library.save_progress(ada, 1, device_kind="web", percentage=20, locator=None, is_finished=False, now=later(1))
    saved = library.save_progress(
        ada, 1, device_kind="kobo", percentage=30.5, locator="b", is_finished=False, now=later(2)
    )
    assert (saved.percentage, saved.locator, saved.updated_at) == (30.5, "b", later(2))
    assert [(p.device_kind, p.percentage, p.locator) for p in library.progress(ada, 1)] == [
        ("kobo", 30.5, "b"),
        ("web", 20, None),
    ]


def test_progress_of_all_books_is_newest_first_and_per_user(engine: Engine) -> None:
    ada, bob = make_users(engine, "ada", "bob")
    library = PersonalLibrary(engine)
    library.save_progress(ada, 1, device_kind="api", percentage=10, locator=None, is_finished=False, now=NOW)
    library.save_progress(ada, 2, device_kind="api", percentage=50, locator=None, is_finished=False, now=later(5))
    library.save_progress(bob, 3, device_kind="api", percentage=70, locator=None, is_finished=False, now=later(9))
    assert [p.book_id for p in library.progress(ada)] == [2, 1]
    assert [p.book_id for p in library.progress(bob)] == [3]
    assert library.progress(bob, 1) == []


def test_a_long_locator_is_stored_whole(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    locator = "epubcfi(/6/4!/4/2/1:0)" * 2900  # just under 64 KiB
    library.save_progress(ada, 1, device_kind="web", percentage=1, locator=locator, is_finished=False, now=NOW)
    (stored,) = library.progress(ada, 1)
    assert stored.locator == locator


def test_reading_and_finished_lists_follow_the_latest_state_of_each_book(engine: Engine) -> None:
    (ada,) = make_users(engine, "ada")
    library = PersonalLibrary(engine)
    library.save_progress(ada, 1, device_kind="kobo", percentage=40, locator=None, is_finished=False, now=NOW)
    library.save_progress(ada, 2, device_kind="kobo", percentage=10, locator=None, is_finished=False, now=later(1))
    library.save_progress(ada, 3, device_kind="web", percentage=100, locator=None, is_finished=True, now=later(2))
    library.save_progress(ada, 4, device_kind="web", percentage=100, locator=None, is_finished=True, now=later(3))
    library.save_progress(ada, 3, device_kind="kobo", percentage=99, locator=None, is_finished=False, now=later(4))
    assert library.reading(ada) == [2, 1]
    assert library.finished(ada) == [3, 4]
