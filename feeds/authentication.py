"""OPDS Authentication Documents (``application/opds-authentication+json``): what Thorium reads from
a 401 to show a login form."""

from __future__ import annotations

import msgspec

from feeds.model import AuthenticationDocument

BASIC = "http://opds-spec.org/auth/basic"
_ENCODER = msgspec.json.Encoder(order="deterministic")


class _Labels(msgspec.Struct, frozen=True, kw_only=True):
    login: str
    password: str


class _Method(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    labels: _Labels


class _Link(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    href: str
    rel: str | None = None
    type: str | None = None


class _Document(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    title: str
    authentication: tuple[_Method, ...]
    description: str | None = None
    links: tuple[_Link, ...] = ()


def render_authentication_document(document: AuthenticationDocument) -> bytes:
    """Render the document with one HTTP Basic method.

    Args:
        document: ids, title, labels and links.

    Returns:
        The UTF-8 JSON document.
    """
    wire = _Document(
        id=document.id,
        title=document.title,
        description=document.description,
        authentication=(
            _Method(type=BASIC, labels=_Labels(login=document.username_label, password=document.password_label)),
        ),
        links=tuple(_Link(href=link.href, rel=link.rel, type=link.type) for link in document.links),
    )
    return _ENCODER.encode(wire)
