"""Users, app passwords and refresh tokens on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine

from opds_server.db.users import InvalidNameError, RefreshOutcome, UserExistsError, UserStore

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_users_are_created_found_without_case_and_listed(engine: Engine) -> None:
    users = UserStore(engine)
    ada = users.create_user("Ada", "hash-a", is_admin=True, now=NOW)
    users.create_user("bob", "hash-b", is_admin=False, now=NOW)
    found = users.find_user("ADA")
    assert found is not None
    assert (found.id, found.name, found.is_admin, found.created_at) == (ada.id, "Ada", True, NOW)
    assert [u.name for u in users.list_users()] == ["Ada", "bob"]
    assert users.count_users() == 2


def test_duplicate_names_differing_only_in_case_are_refused(engine: Engine) -> None:
    users = UserStore(engine)
    users.create_user("Ada", "h", is_admin=False, now=NOW)
    with pytest.raises(UserExistsError, match="'ada' exists already"):
        users.create_user("ada", "h", is_admin=False, now=NOW)


@pytest.mark.parametrize("name", ["", "   ", "a:b", "tab\there", "x" * 65])
def test_bad_names_are_refused(engine: Engine, name: str) -> None:
    with pytest.raises(InvalidNameError):
        UserStore(engine).create_user(name, "h", is_admin=False, now=NOW)


def test_password_change_bumps_the_token_version_and_revokes_refresh_tokens(engine: Engine) -> None:
    users = UserStore(engine)
    ada = users.create_user("ada", "old", is_admin=False, now=NOW)
    users.add_refresh_token("t1", ada.id, "fam", now=NOW, expires_at=NOW + dt.timedelta(days=7))
    assert users.set_password_hash(ada.id, "new", now=NOW)
    after = users.get_user(ada.id)
    assert after is not None
    assert after.token_version == ada.token_version + 1
    assert users.read_password_hash(ada.id) == "new"
    assert users.use_refresh_token("t1", now=NOW).outcome is RefreshOutcome.REUSED


def test_a_refresh_token_is_spent_once(engine: Engine) -> None:
    users = UserStore(engine)
    ada = users.create_user("ada", "h", is_admin=False, now=NOW)
    users.add_refresh_token("t1", ada.id, "fam", now=NOW, expires_at=NOW + dt.timedelta(days=7))
    first = users.use_refresh_token("t1", now=NOW)
    assert (first.outcome, first.user_id, first.family) == (RefreshOutcome.USED, ada.id, "fam")
    assert users.use_refresh_token("t1", now=NOW).outcome is RefreshOutcome.REUSED
    assert users.use_refresh_token("nope", now=NOW).outcome is RefreshOutcome.UNKNOWN


def test_an_expired_refresh_token_is_reported_as_expired(engine: Engine) -> None:
    users = UserStore(engine)
    ada = users.create_user("ada", "h", is_admin=False, now=NOW)
    users.add_refresh_token("t1", ada.id, "fam", now=NOW, expires_at=NOW + dt.timedelta(seconds=1))
    assert users.use_refresh_token("t1", now=NOW + dt.timedelta(seconds=2)).outcome is RefreshOutcome.EXPIRED


def test_app_passwords_are_scoped_listed_and_revoked(engine: Engine) -> None:
    users = UserStore(engine)
    ada = users.create_user("ada", "h", is_admin=False, now=NOW)
    made = users.create_app_password(ada.id, "Kobo browser", "secret-hash", ("catalog",), now=NOW)
    found = users.read_app_password(made.id)
    assert found is not None
    assert (found[0].label, found[0].scopes, found[1]) == ("Kobo browser", ("catalog",), "secret-hash")
    assert users.revoke_app_password(ada.id, made.id, now=NOW)
    assert not users.revoke_app_password(ada.id, made.id, now=NOW)
    (listed,) = users.list_app_passwords(ada.id)
    assert listed.revoked_at == NOW


def test_deleting_a_user_removes_their_credentials(engine: Engine) -> None:
    users = UserStore(engine)
    ada = users.create_user("ada", "h", is_admin=False, now=NOW)
    made = users.create_app_password(ada.id, "KOReader", "s", ("catalog", "sync"), now=NOW)
    assert users.delete_user(ada.id)
    assert users.get_user(ada.id) is None
    assert users.read_app_password(made.id) is None
