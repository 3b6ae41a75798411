"""``opds-server users ...``, ``app-passwords ...``, ``kobo ...`` and ``db upgrade``: accounts from the shell.

Passwords are prompted twice on a terminal, or read as one line from stdin with
``--password-stdin``; they are never taken from the command line, where ``ps`` would show them.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable

from opds_server.accounts import Accounts, UnknownUserError, bump, open_accounts
from opds_server.auth.passwords import PasswordPolicyError
from opds_server.auth.principal import APP_PASSWORD_SCOPES, Scope
from opds_server.config import settings_from_env
from opds_server.db.engine import DatabaseError
from opds_server.db.kobo import KoboStore
from opds_server.db.users import InvalidNameError, UserExistsError
from opds_server.kobo.devices import DeviceLabelError, endpoint_line, register_device

DEFAULT_BASE = "http://localhost:8080"


class AccountCommandError(Exception):
    """A one-line message for stderr."""


def _read_password(*, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise AccountCommandError("no password on stdin")
        return line.rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise AccountCommandError("the two passwords differ")
    return first


def _run(
    action: Callable[[Accounts, argparse.Namespace], str | None], *, changes: bool
) -> Callable[[argparse.Namespace], None]:
    def command(arguments: argparse.Namespace) -> None:
        settings = settings_from_env(os.environ)
        try:
            accounts, epoch = open_accounts(settings)
            message = action(accounts, arguments)
        except (
            UnknownUserError,
            UserExistsError,
            InvalidNameError,
            PasswordPolicyError,
            DatabaseError,
            DeviceLabelError,
        ) as exc:
            raise AccountCommandError(str(exc)) from exc
        finally:
            if "accounts" in locals():
                accounts.users.engine.dispose()
        if changes:
            bump(epoch)
        if message:
            print(message)

    return command


def _add(accounts: Accounts, arguments: argparse.Namespace) -> str:
    user = accounts.add_user(
        arguments.name, _read_password(from_stdin=arguments.password_stdin), is_admin=arguments.admin
    )
    return f"added {'admin ' if user.is_admin else ''}user {user.name}"


def _passwd(accounts: Accounts, arguments: argparse.Namespace) -> str:
    accounts.user(arguments.name)  # fail before asking for a password
    accounts.set_password(arguments.name, _read_password(from_stdin=arguments.password_stdin))
    return f"password of {arguments.name} changed; its other logins and tokens are revoked"


def _delete(accounts: Accounts, arguments: argparse.Namespace) -> str:
    accounts.delete_user(arguments.name)
    return f"deleted user {arguments.name}"


def _disable(accounts: Accounts, arguments: argparse.Namespace) -> str:
    accounts.set_disabled(arguments.name, is_disabled=arguments.command_name == "disable")
    return f"{arguments.command_name}d user {arguments.name}"


def _list(accounts: Accounts, _arguments: argparse.Namespace) -> str:
    rows = [
        "\t".join(
            (
                u.name,
                "admin" if u.is_admin else "user",
                "disabled" if u.is_disabled else "active",
                f"{u.created_at:%Y-%m-%d}",
            )
        )
        for u in accounts.users.list_users()
    ]
    return "\n".join(rows) if rows else "no users yet: the catalogue is open to anyone who can reach it"


def _create_app_password(accounts: Accounts, arguments: argparse.Namespace) -> str:
    scopes = tuple(Scope(s) for s in arguments.scope) if arguments.scope else APP_PASSWORD_SCOPES
    record, secret = accounts.create_app_password(arguments.name, arguments.label, scopes)
    return f"app password {record.id} ({record.label}, {', '.join(scopes)}) for {arguments.name}:\n{secret}"


def _list_app_passwords(accounts: Accounts, arguments: argparse.Namespace) -> str:
    rows = [
        "\t".join(
            (
                str(p.id),
                p.label,
                ",".join(p.scopes),
                "revoked" if p.revoked_at else "active",
                f"last used {p.last_used_at:%Y-%m-%d %H:%M}" if p.last_used_at else "never used",
            )
        )
        for p in accounts.users.list_app_passwords(accounts.user(arguments.name).id)
    ]
    return "\n".join(rows) if rows else f"{arguments.name} has no app passwords"


def _revoke_app_password(accounts: Accounts, arguments: argparse.Namespace) -> str:
    if not accounts.revoke_app_password(arguments.name, arguments.id):
        raise AccountCommandError(f"{arguments.name} has no active app password {arguments.id}")
    return f"revoked app password {arguments.id} of {arguments.name}"


def _kobo_add(accounts: Accounts, arguments: argparse.Namespace) -> str:
    user = accounts.user(arguments.name)
    settings = settings_from_env(os.environ)
    record, token = register_device(
        KoboStore(accounts.users.engine), user.id, arguments.label or "Kobo", now=accounts.now()
    )
    if not settings.base_url:
        print(
            f"OPDS_BASE_URL is not set: replace {DEFAULT_BASE} by the address your Kobo reaches this server at"
            " (e.g. http://192.168.1.20:8080); it is not taken from requests, which lose the port on a Kobo",
            file=sys.stderr,
        )
    print(f"device {record.id} ({record.label}) of {user.name}; paste under [OneStoreServices] in Kobo eReader.conf:")
    return endpoint_line(settings.base_url or DEFAULT_BASE, token)


def _kobo_list(accounts: Accounts, arguments: argparse.Namespace) -> str:
    user = accounts.user(arguments.name)
    lines = []
    for device in KoboStore(accounts.users.engine).devices(user.id):
        state = "revoked" if device.revoked_at else "active"
        seen = device.last_seen_at.isoformat(timespec="seconds") if device.last_seen_at else "never"
        mode = "shelves" if device.shelves_only else "library"
        lines.append(f"{device.id}\t{device.label}\t{state}\tsyncs {mode}\tlast seen {seen}")
    return "\n".join(lines) or f"{user.name} has no Kobo devices"


def _kobo_revoke(accounts: Accounts, arguments: argparse.Namespace) -> str:
    user = accounts.user(arguments.name)
    if not KoboStore(accounts.users.engine).revoke_device(user.id, arguments.id, now=accounts.now()):
        raise AccountCommandError(f"{user.name} has no active Kobo device {arguments.id}")
    return f"revoked Kobo device {arguments.id} of {user.name}"


def _upgrade(_accounts: Accounts, _arguments: argparse.Namespace) -> str:
    return "the user database is up to date"


def add_account_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]  # argparse's private type
    users = commands.add_parser("users", help="manage users").add_subparsers(dest="command_name", required=True)
    for name, handler, help_text in (("add", _add, "add a user"), ("passwd", _passwd, "change a user's password")):
        parser = users.add_parser(name, help=help_text)
        parser.add_argument("name")
        parser.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
        if name == "add":
            parser.add_argument("--admin", action="store_true", help="the user may manage other users")
        parser.set_defaults(run=_run(handler, changes=True))
    for name, handler, help_text in (
        ("delete", _delete, "delete a user and everything of theirs"),
        ("disable", _disable, "stop a user logging in, keeping their data"),
        ("enable", _disable, "let a disabled user log in again"),
    ):
        parser = users.add_parser(name, help=help_text)
        parser.add_argument("name")
        parser.set_defaults(run=_run(handler, changes=True))
    users.add_parser("list", help="list users").set_defaults(run=_run(_list, changes=False))

    app = commands.add_parser("app-passwords", help="per-device passwords").add_subparsers(
        dest="command_name", required=True
    )
    create = app.add_parser("create", help="make a password for one device (shown once)")
    create.add_argument("name")
    create.add_argument("label", help="what it is for, e.g. 'Kobo browser'")
    create.add_argument(
        "--scope", action="append", choices=[s.value for s in APP_PASSWORD_SCOPES], help="repeat for several"
    )
    create.set_defaults(run=_run(_create_app_password, changes=True))
    listed = app.add_parser("list", help="list a user's app passwords")
    listed.add_argument("name")
    listed.set_defaults(run=_run(_list_app_passwords, changes=False))
    revoke = app.add_parser("revoke", help="revoke an app password")
    revoke.add_argument("name")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=_run(_revoke_app_password, changes=True))

    kobo = commands.add_parser("kobo", help="Kobo e-readers that sync").add_subparsers(
        dest="command_name", required=True
    )
    add_device = kobo.add_parser("add-device", help="register a Kobo for user NAME; prints its api_endpoint line")
    add_device.add_argument("name")
    add_device.add_argument("--label", help="which Kobo it is, e.g. 'Libra 2' (default: Kobo)")
    add_device.set_defaults(run=_run(_kobo_add, changes=False))
    devices = kobo.add_parser("list", help="list a user's Kobo devices")
    devices.add_argument("name")
    devices.set_defaults(run=_run(_kobo_list, changes=False))
    revoke_device = kobo.add_parser("revoke", help="revoke a Kobo device: its token stops working at once")
    revoke_device.add_argument("name")
    revoke_device.add_argument("id", type=int)
    revoke_device.set_defaults(run=_run(_kobo_revoke, changes=True))

    database = commands.add_parser("db", help="the user database").add_subparsers(dest="command_name", required=True)
    database.add_parser("upgrade", help="apply migrations (serve does it on start)").set_defaults(
        run=_run(_upgrade, changes=False)
    )
