"""The catalogue as HTML pages: one more renderer of the feed model, for browsers.

Built with lxml's HTML element factory, so every string from the library is escaped by
construction; the only markup taken as it is comes from ``Publication.content_html``, which the
catalogue has already sanitised (``opds_server.calibre.comments``). Pages work without any script
(Kobo and Kindle browsers), stay small (a few KB of inline CSS, lazy thumbnails), read at 600
pixels and on a desktop, and use landmarks, headings, labels and alt text. Each page links the
same feed in both OPDS representations (``rel="alternate"``), where apps such as Librera look.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from lxml import etree, html
from lxml.builder import ElementMaker

from feeds import vocab
from feeds.model import Acquisition, Facet, Feed, Link, NavigationEntry, Publication

_E = ElementMaker(makeelement=html.html_parser.makeelement)
DOCTYPE = "<!DOCTYPE html>"
STYLE = """
:root{color-scheme:light dark;--fg:#1b1b1b;--bg:#fff;--mute:#595959;--line:#d0d0d0;--link:#0645ad}
@media (prefers-color-scheme:dark){:root{--fg:#eee;--bg:#111;--mute:#b0b0b0;--line:#444;--link:#9cf}}
*{box-sizing:border-box}body{margin:0 auto;max-width:62rem;padding:0 .75rem 2rem;font:1rem/1.45 Georgia,serif;
color:var(--fg);background:var(--bg)}a{color:var(--link)}header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;
align-items:center;border-bottom:1px solid var(--line);padding:.6rem 0}header .home{font-weight:bold;font-size:1.15rem}
form.search{display:flex;gap:.3rem;flex:1 1 16rem}form.search input{flex:1;min-width:0;font:inherit;padding:.3rem}
nav.account ul,nav.facets ul,nav.pages ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.3rem 1rem}
button,.button{font:inherit;padding:.35rem .8rem;border:1px solid var(--fg);border-radius:.3rem;background:var(--bg);
color:var(--fg);text-decoration:none;display:inline-block}ul.entries{padding-left:1.2rem}ul.entries li{margin:.25rem 0}
ul.books{list-style:none;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(9rem,1fr));gap:1rem}
ul.books img{width:100%;height:auto;aspect-ratio:2/3;object-fit:cover;border:1px solid var(--line)}
ul.books a{text-decoration:none}ul.books .title{display:block;font-weight:bold}.mute{color:var(--mute)}
.book{display:grid;grid-template-columns:minmax(8rem,14rem) 1fr;gap:1rem;margin-top:1rem}
.book img{width:100%;height:auto}
@media (max-width:36rem){.book{grid-template-columns:1fr}.book figure{max-width:12rem}}figure{margin:0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem}dt{font-weight:bold}dd{margin:0}
ul.downloads{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.5rem}[aria-current]{font-weight:bold}
label.field{display:block;margin:.6rem 0}
label.field input{display:block;font:inherit;padding:.3rem;width:100%;max-width:20rem}
.error{border-left:.3rem solid #b00020;padding-left:.6rem}
form.action{margin:.3rem 0}form.action label{margin-right:.4rem}
form.action input,form.action select{font:inherit;margin-right:.4rem}
"""
_FORMAT_NAMES = {
    "application/epub+zip": "EPUB",
    "application/kepub+zip": "KEPUB",
    "application/pdf": "PDF",
    "application/x-mobipocket-ebook": "MOBI",
    "application/vnd.amazon.ebook": "AZW",
    "application/vnd.comicbook+zip": "CBZ",
    "application/vnd.amazon.mobi8-ebook": "AZW3",
    "application/x-fictionbook+xml": "FB2",
    "text/plain": "TXT",
}


class SiteFrame(msgspec.Struct, frozen=True, kw_only=True):
    """What every page shows around its content: the site's name, search, and the reader's links."""

    library_name: str
    home_href: str
    search_href: str
    """The acquisition feed that takes ``query``."""
    account_links: tuple[Link, ...] = ()
    """Favourites, shelves, log in or log out: what this reader may do."""
    search_description_href: str | None = None


class Choice(msgspec.Struct, frozen=True, kw_only=True):
    """A labelled choice the reader makes in a form (a ``select``), or a text to type (no options)."""

    name: str
    label: str
    options: tuple[tuple[str, str], ...] = ()
    """(value, text); empty: a text field."""


class FormAction(msgspec.Struct, frozen=True, kw_only=True):
    """A button that posts a small form (add to favourites, add to a shelf, log out)."""

    label: str
    action: str
    fields: tuple[tuple[str, str], ...] = ()
    """Hidden fields."""
    choice: Choice | None = None


def _action_form(action: FormAction, key: str = "") -> etree._Element:
    form: etree._Element = _E.form(action=action.action, method="post", **{"class": "action"})
    for name, value in action.fields:
        form.append(_E.input(type="hidden", name=name, value=value))
    if action.choice is not None:
        choice = action.choice
        field_id = f"{choice.name}-{key}" if key else choice.name
        form.append(_E.label(choice.label, **{"for": field_id}))
        if choice.options:
            form.append(
                _E.select(
                    *(_E.option(text, value=value) for value, text in choice.options), name=choice.name, id=field_id
                )
            )
        else:
            form.append(_E.input(name=choice.name, id=field_id, required="required", maxlength="128"))
    form.append(_E.button(action.label, type="submit"))
    return form


def _size(length: int | None) -> str:
    if length is None:
        return ""
    if length >= 1024 * 1024:
        return f"{length / (1024 * 1024):.1f} MB"
    return f"{max(1, round(length / 1024))} KB"


def _format_name(acquisition: Acquisition) -> str:
    if acquisition.title:
        return acquisition.title
    return _FORMAT_NAMES.get(acquisition.type.split(";")[0], acquisition.type.split("/")[-1].upper())


def _page(frame: SiteFrame, title: str, links: Sequence[Link], content: list[etree._Element]) -> bytes:
    head = [
        _E.meta(charset="utf-8"),
        _E.meta(name="viewport", content="width=device-width, initial-scale=1"),
        _E.link(rel="icon", href="data:,"),  # no icon: spares every browser a request for /favicon.ico
        _E.title(title if title == frame.library_name else f"{title} · {frame.library_name}"),
        _E.style(STYLE.strip()),
    ]
    head.extend(
        _E.link(rel="alternate", type=link.type, href=link.href)
        for link in links
        if link.rel == vocab.REL_ALTERNATE and link.type
    )
    if frame.search_description_href:
        head.append(
            _E.link(
                rel="search", type=vocab.OPENSEARCH_TYPE, href=frame.search_description_href, title=frame.library_name
            )
        )
    account = [_E.li(_E.a(link.title or link.href, href=link.href)) for link in frame.account_links]
    header = _E.header(
        _E.a(frame.library_name, href=frame.home_href, **{"class": "home"}),
        _E.form(
            _E.label("Search", **{"for": "search-query", "class": "mute"}),
            _E.input(id="search-query", name="query", type="search", required="required", maxlength="256"),
            _E.button("Search", type="submit"),
            action=frame.search_href,
            method="get",
            role="search",
            **{"class": "search"},
        ),
    )
    if account:
        header.append(_E.nav(_E.ul(*account), **{"class": "account", "aria-label": "Your library"}))
    document = _E.html(_E.head(*head), _E.body(header, _E.main(*content, id="content")), lang="en")
    rendered: bytes = html.tostring(document, doctype=DOCTYPE, encoding="utf-8", method="html")
    return rendered


def _facets(facets: Sequence[Facet]) -> list[etree._Element]:
    groups: dict[str, list[Facet]] = {}
    for facet in facets:
        groups.setdefault(facet.group, []).append(facet)
    navs = []
    for group, members in groups.items():
        items = []
        for facet in members:
            label = f"{facet.title} ({facet.count})" if facet.count is not None else facet.title
            anchor = _E.a(label, href=facet.href)
            if facet.is_active:
                anchor.set("aria-current", "true")
            items.append(_E.li(anchor))
        navs.append(_E.nav(_E.h2(group), _E.ul(*items), **{"class": "facets", "aria-label": group}))
    return navs


def _navigation(entries: Sequence[NavigationEntry]) -> etree._Element:
    items = []
    for entry in entries:
        item = _E.li(_E.a(entry.title, href=entry.href))
        if entry.count is not None:
            item.append(_E.span(f" ({entry.count})", **{"class": "mute"}))
        elif entry.summary:
            item.append(_E.span(f" · {entry.summary}", **{"class": "mute"}))
        items.append(item)
    element: etree._Element = _E.ul(*items, **{"class": "entries"})
    return element


def _byline(publication: Publication) -> str:
    names = " & ".join(a.name for a in publication.authors) or "Unknown author"
    if publication.series is not None and publication.series.position is not None:
        return f"{names} · {publication.series.name} #{publication.series.position:g}"
    return names


def _thumbnail(publication: Publication) -> str | None:
    images = {image.rel: image.href for image in publication.images}
    return images.get("thumbnail") or images.get("image")


def _card(publication: Publication, actions: Sequence[FormAction] = ()) -> etree._Element:
    target = publication.self_href or (publication.acquisitions[0].href if publication.acquisitions else "#")
    anchor = _E.a(href=target)
    thumbnail = _thumbnail(publication)
    if thumbnail:
        anchor.append(_E.img(src=thumbnail, alt="", loading="lazy", width="150", height="225"))
    anchor.append(_E.span(publication.title, **{"class": "title"}))
    element: etree._Element = _E.li(anchor, _E.span(_byline(publication), **{"class": "mute"}))
    element.extend(_action_form(action) for action in actions)
    return element


def _pages(links: Sequence[Link]) -> etree._Element | None:
    names = {vocab.REL_FIRST: "First", vocab.REL_PREVIOUS: "Previous", vocab.REL_NEXT: "Next", vocab.REL_LAST: "Last"}
    found = {link.rel: link for link in links if link.rel in names}
    items = [_E.li(_E.a(label, href=found[rel].href, rel=rel)) for rel, label in names.items() if rel in found]
    if not items:
        return None
    element: etree._Element = _E.nav(_E.ul(*items), **{"class": "pages", "aria-label": "Pages"})
    return element


def render_feed_html(
    feed: Feed, frame: SiteFrame, item_actions: Mapping[str, Sequence[FormAction]] | None = None
) -> bytes:
    """A navigation or acquisition feed as a page; ``item_actions``: buttons under some of its books,
    by the book's ``self_href`` (remove from this shelf)."""
    actions = item_actions or {}
    content: list[etree._Element] = [_E.h1(feed.title)]
    if feed.subtitle:
        content.append(_E.p(feed.subtitle, **{"class": "mute"}))
    if feed.page is not None and feed.kind == "acquisition":
        content.append(_E.p(f"{feed.page.number_of_items} books", **{"class": "mute"}))
    content.extend(_facets(feed.facets))
    if feed.navigation:
        content.append(_navigation(feed.navigation))
    for group in feed.groups:
        section = _E.section(_E.h2(_E.a(group.title, href=group.href) if group.href else group.title))
        if group.publications:
            section.append(_E.ul(*(_card(p) for p in group.publications), **{"class": "books"}))
        if group.navigation:
            section.append(_navigation(group.navigation))
        content.append(section)
    if feed.publications:
        cards = (_card(p, actions.get(p.self_href or "", ())) for p in feed.publications)
        content.append(_E.ul(*cards, **{"class": "books"}))
    if not (feed.navigation or feed.publications or feed.groups):
        content.append(_E.p("Nothing here yet."))
    pages = _pages(feed.links)
    if pages is not None:
        content.append(pages)
    return _page(frame, feed.title, feed.links, content)


def _date(moment: dt.datetime | dt.date) -> str:
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"


def _details(publication: Publication) -> etree._Element:
    rows: list[etree._Element] = []

    def row(name: str, *value: etree._Element | str) -> None:
        rows.extend((_E.dt(name), _E.dd(*value)))

    if publication.authors:
        people: list[etree._Element | str] = []
        for index, author in enumerate(publication.authors):
            if index:
                people.append(", ")
            people.append(_E.a(author.name, href=author.href) if author.href else author.name)
        row("By" if len(publication.authors) == 1 else "Authors", *people)
    if publication.series is not None:
        position = f" #{publication.series.position:g}" if publication.series.position is not None else ""
        name = publication.series.name + position
        row("Series", _E.a(name, href=publication.series.href) if publication.series.href else name)
    if publication.issued is not None:
        row("Published", _date(publication.issued))
    if publication.publisher:
        row("Publisher", publication.publisher)
    if publication.languages:
        row("Language", ", ".join(publication.languages))
    if publication.subjects:
        tags: list[etree._Element | str] = []
        for index, subject in enumerate(publication.subjects):
            if index:
                tags.append(", ")
            tags.append(_E.a(subject.label, href=subject.href) if subject.href else subject.label)
        row("Tags", *tags)
    element: etree._Element = _E.dl(*rows)
    return element


def _description(publication: Publication) -> etree._Element | None:
    if publication.content_html:
        section: etree._Element = _E.section(_E.h2("Description"))
        parts: list[Any] = list(html.fragments_fromstring(publication.content_html))
        for part in parts:
            section.append(_E.p(part) if isinstance(part, str) else part)
        return section
    if publication.summary:
        element: etree._Element = _E.section(_E.h2("Description"), _E.p(publication.summary))
        return element
    return None


def render_publication_html(publication: Publication, frame: SiteFrame, actions: Sequence[FormAction] = ()) -> bytes:
    """A book's page: cover, details, description, one download button per format, the reader's
    ``actions`` (add to favourites...), its OPDS entries."""
    images = {image.rel: image.href for image in publication.images}
    cover = images.get("image") or images.get("thumbnail")
    body = _E.div(**{"class": "book"})
    if cover:
        body.append(_E.figure(_E.img(src=cover, alt=f"Cover of {publication.title}", width="300", height="450")))
    text = _E.div(_E.h1(publication.title), _details(publication))
    downloads = [
        _E.li(
            _E.a(
                f"Download {_format_name(a)}" + (f" ({_size(a.length)})" if a.length is not None else ""),
                href=a.href,
                type=a.type,
                **{"class": "button"},
            )
        )
        for a in publication.acquisitions
    ]
    if downloads:
        text.append(_E.h2("Download"))
        text.append(_E.ul(*downloads, **{"class": "downloads"}))
    if actions:
        text.append(_E.div(*(_action_form(a, str(n)) for n, a in enumerate(actions)), **{"class": "actions"}))
    body.append(text)
    content: list[etree._Element] = [body]
    description = _description(publication)
    if description is not None:
        content.append(description)
    alternates = [link for link in publication.alternate if link.rel == vocab.REL_ALTERNATE]
    if alternates:
        names = {vocab.ENTRY_TYPE: "OPDS 1.2 entry", vocab.OPDS2_PUBLICATION_TYPE: "OPDS 2.0 publication"}
        paragraph = _E.p("In OPDS: ", **{"class": "mute"})
        for index, link in enumerate(alternates):
            if index:
                paragraph[-1].tail = " · "
            paragraph.append(_E.a(names.get(str(link.type), str(link.type)), href=link.href, type=str(link.type)))
        content.append(paragraph)
    return _page(frame, publication.title, publication.alternate, content)


def render_login_html(
    frame: SiteFrame, *, action: str, next_href: str, csrf: str, error: str | None = None, user_name: str = ""
) -> bytes:
    """The login form: user name and password (or an app password), kept in a session cookie."""
    content: list[etree._Element] = [_E.h1("Log in")]
    if error:
        content.append(_E.p(error, role="alert", **{"class": "error"}))
    content.append(
        _E.form(
            _E.label(
                "User name",
                _E.input(
                    name="username", autocomplete="username", required="required", value=user_name, maxlength="128"
                ),
                **{"class": "field"},
            ),
            _E.label(
                "Password",
                _E.input(
                    name="password",
                    type="password",
                    autocomplete="current-password",
                    required="required",
                    maxlength="1024",
                ),
                **{"class": "field"},
            ),
            _E.input(type="hidden", name="csrf", value=csrf),
            _E.input(type="hidden", name="next", value=next_href),
            _E.button("Log in", type="submit"),
            action=action,
            method="post",
        )
    )
    content.append(
        _E.p(
            "E-readers and OPDS apps log in with the same user name and password, or an app password.",
            **{"class": "mute"},
        )
    )
    return _page(frame, "Log in", (), content)


def render_message_html(frame: SiteFrame, title: str, message: str, actions: Sequence[FormAction] = ()) -> bytes:
    """A short page: a heading, a sentence, perhaps a button (the log-out confirmation, an error)."""
    content: list[etree._Element] = [_E.h1(title), _E.p(message)]
    content.extend(_action_form(a) for a in actions)
    return _page(frame, title, (), content)
