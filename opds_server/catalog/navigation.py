"""Navigation feeds: the root, and the category lists (authors, series, tags, ...).

A list longer than the grouping threshold is first offered by initial letter; lists are paged
with the same opaque cursors as books, over the snapshot's presorted categories.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence

import msgspec

from feeds import vocab
from feeds.model import Feed, FeedKind, Group, Link, NavigationEntry, Page, Publication
from opds_server.calibre.model import Category
from opds_server.calibre.snapshot import LibrarySnapshot
from opds_server.catalog.common import feed_links, stable_id
from opds_server.catalog.cursor import cursor_scope, decode_cursor, encode_cursor
from opds_server.catalog.hrefs import Flavour, Hrefs, ParamValue
from opds_server.errors import InvalidCursorError, InvalidQueryError, NotFoundError


class CategorySpec(msgspec.Struct, frozen=True, kw_only=True):
    """A category list: its snapshot key, titles, and the books filter its entries set."""

    name: str
    title: str
    noun: str
    nouns: str
    param: str
    is_letters: bool = False
    """The list is itself a list of letters: never grouped again, never paged."""

    def counted(self, count: int) -> str:
        return f"{count} {self.noun if count == 1 else self.nouns}"


CATEGORIES: dict[str, CategorySpec] = {
    spec.name: spec
    for spec in (
        CategorySpec(
            name="titles", title="Titles A-Z", noun="letter", nouns="letters", param="initial", is_letters=True
        ),
        CategorySpec(name="authors", title="Authors", noun="author", nouns="authors", param="author"),
        CategorySpec(name="series", title="Series", noun="series", nouns="series", param="series"),
        CategorySpec(name="tags", title="Tags", noun="tag", nouns="tags", param="tag"),
        CategorySpec(name="languages", title="Languages", noun="language", nouns="languages", param="language"),
        CategorySpec(name="publishers", title="Publishers", noun="publisher", nouns="publishers", param="publisher"),
        CategorySpec(name="ratings", title="Ratings", noun="rating", nouns="ratings", param="rating"),
    )
}


def _books(count: int) -> str:
    return f"{count} book" if count == 1 else f"{count} books"


def _sort_key(category: Category) -> tuple[str, str]:
    return (category.sort.casefold(), category.key)


def build_root(
    snapshot: LibrarySnapshot,
    hrefs: Hrefs,
    *,
    title: str,
    threshold: int,
    new_books: Sequence[Publication],
    personal: Sequence[NavigationEntry] = (),
) -> Feed:
    """The root navigation feed; in OPDS 2 it also carries a group of the newest books.

    ``personal`` are the entries of a logged-in user's own feeds, listed after the catalogue's.
    """
    acquisition, navigation = hrefs.feed_type("acquisition"), hrefs.feed_type("navigation")
    titles_grouped = snapshot.book_count > threshold
    entries = [
        NavigationEntry(
            id=stable_id(snapshot, "new"),
            title="New books",
            href=hrefs.feed("/books", {"sort": "new"}),
            type=acquisition,
            rel=vocab.REL_SORT_NEW,
            updated=snapshot.updated,
            summary=f"All {_books(snapshot.book_count)}, newest first",
            count=snapshot.book_count,
        ),
        NavigationEntry(
            id=stable_id(snapshot, "titles"),
            title="Titles A-Z",
            href=hrefs.feed("/titles") if titles_grouped else hrefs.feed("/books", {"sort": "title"}),
            type=navigation if titles_grouped else acquisition,
            updated=snapshot.updated,
            summary=f"All {_books(snapshot.book_count)} by title",
            count=snapshot.book_count,
        ),
    ]
    for spec in CATEGORIES.values():
        if spec.name == "titles":
            continue
        items = snapshot.tag_children.get("", ()) if spec.name == "tags" else snapshot.category(spec.name)
        if not items:
            continue
        entries.append(
            NavigationEntry(
                id=stable_id(snapshot, spec.name),
                title=spec.title,
                href=hrefs.feed(f"/{spec.name}"),
                type=navigation,
                updated=snapshot.updated,
                summary=spec.counted(len(items)),
                count=len(items),
            )
        )
    entries.extend(personal)
    groups: tuple[Group, ...] = ()
    if hrefs.flavour is not Flavour.ATOM and new_books:
        groups = (
            Group(
                title="New books",
                href=hrefs.feed("/books", {"sort": "new"}),
                type=acquisition,
                publications=tuple(new_books),
            ),
        )
    return Feed(
        id=stable_id(snapshot, "root"),
        title=title,
        updated=snapshot.updated,
        kind="navigation",
        author_name=title,
        links=tuple(feed_links(hrefs, path="", params={}, kind="navigation", up=None)),
        navigation=tuple(entries),
        groups=groups,
    )


def _whole_node(snapshot: LibrarySnapshot, path: str) -> Category:
    """The first item of a tag node's list: all books under the node, its children's included.

    Its empty sort key keeps it first, and it pages like any other item.
    """
    parent, _, leaf = path.rpartition(".")
    node = next((c for c in snapshot.tag_children.get(parent, ()) if c.key == path), None)
    return Category(key=path, name=f"All books in {leaf}", sort="", count=node.count if node else 0, initial="#")


def _entry(snapshot: LibrarySnapshot, hrefs: Hrefs, spec: CategorySpec, item: Category) -> NavigationEntry:
    if spec.name == "tags" and item.has_children:
        href, kind = hrefs.feed("/tags", {"parent": item.key}), "navigation"
    elif spec.name == "titles":
        href, kind = hrefs.feed("/books", {"sort": "title", "initial": item.key}), "acquisition"
    else:
        href, kind = hrefs.feed("/books", {spec.param: item.key}), "acquisition"
    return NavigationEntry(
        id=stable_id(snapshot, spec.name, item.key, kind),
        title=item.name,
        href=href,
        type=hrefs.feed_type(kind),  # type: ignore[arg-type]  # kind is one of the two literals
        updated=snapshot.updated,
        summary=_books(item.count),
        count=item.count,
    )


def _letters(
    snapshot: LibrarySnapshot, hrefs: Hrefs, spec: CategorySpec, items: Sequence[Category]
) -> list[NavigationEntry]:
    counts = Counter(item.initial for item in items)
    return [
        NavigationEntry(
            id=stable_id(snapshot, spec.name, "initial", letter),
            title=letter,
            href=hrefs.feed(f"/{spec.name}", {"initial": letter}),
            type=hrefs.feed_type("navigation"),
            updated=snapshot.updated,
            summary=spec.counted(count),
            count=count,
        )
        for letter, count in sorted(counts.items(), key=lambda pair: (pair[0] == "#", pair[0]))
    ]


def build_category_feed(
    snapshot: LibrarySnapshot,
    hrefs: Hrefs,
    spec: CategorySpec,
    *,
    initial: str | None,
    parent: str | None,
    after: str | None,
    page_size: int,
    threshold: int,
) -> Feed:
    """A category list, its letter groups, or one page of it.

    Raises:
        NotFoundError: the tag ``parent`` or the letter ``initial`` has nothing under it.
        InvalidCursorError: ``after`` is not a cursor of this list.
        InvalidQueryError: ``parent`` holds a character XML cannot carry (it goes into the title).
    """
    if parent is not None and any(ord(c) < 32 or c in "\ufffd\ufffe\uffff" for c in parent):
        raise InvalidQueryError("parent must be UTF-8 text without control characters")
    items: Sequence[Category]
    if spec.name == "tags":
        items = snapshot.tag_children.get(parent or "", ())
        if parent and not items:
            raise NotFoundError(f"parent={parent!r}: no tag has children under this name")
    else:
        items = snapshot.category(spec.name)
    params: dict[str, ParamValue] = {"parent": parent, "initial": initial}
    title = spec.title if not parent else f"{spec.title}: {parent.replace('.', ' › ')}"
    if initial is not None:
        items = [item for item in items if item.initial == initial]
        if not items:
            raise NotFoundError(f"initial={initial!r}: no {spec.nouns} start with this letter")
        title = f"{title}: {initial}"
    up_href = hrefs.feed(f"/{spec.name}", {"parent": parent.rpartition(".")[0]} if parent else None)
    up: tuple[str, FeedKind] = (up_href if (initial or parent) else hrefs.feed(), "navigation")
    entries: list[NavigationEntry] = []
    page: Page | None = None
    links: list[Link] = []
    if parent:
        items = [_whole_node(snapshot, parent), *items]
    if spec.is_letters:
        page_size = max(page_size, len(items))
    if not spec.is_letters and initial is None and not parent and len(items) > threshold:
        entries = _letters(snapshot, hrefs, spec, items)
    else:
        start = 0
        current = 1
        if after is not None:
            cursor = decode_cursor(after, scope=cursor_scope(spec.name, parent, initial), key_count=2)
            if not all(isinstance(key, str) for key in cursor.keys):
                raise InvalidCursorError(f"after={after[:40]!r} is a cursor of another feed, not of this list")
            start = bisect_right(items, (cursor.keys[0], cursor.keys[1]), key=_sort_key)
            current = cursor.page
        chunk = items[start : start + page_size]
        entries.extend(_entry(snapshot, hrefs, spec, item) for item in chunk)
        page = Page(
            number_of_items=len(items),
            items_per_page=page_size,
            current_page=current,
            start_index=start + 1,
        )
        links = _page_links(hrefs, spec, params=params, items=items, start=start, page_size=page_size, current=current)
    return Feed(
        id=stable_id(snapshot, spec.name, parent or "", initial or ""),
        title=title,
        updated=snapshot.updated,
        kind="navigation",
        author_name=title,
        links=(
            *feed_links(hrefs, path=f"/{spec.name}", params={**params, "after": after}, kind="navigation", up=up),
            *links,
        ),
        navigation=tuple(entries),
        page=page,
    )


def _page_links(
    hrefs: Hrefs,
    spec: CategorySpec,
    *,
    params: dict[str, ParamValue],
    items: Sequence[Category],
    start: int,
    page_size: int,
    current: int,
) -> list[Link]:
    path, kind = f"/{spec.name}", hrefs.feed_type("navigation")
    scope = cursor_scope(spec.name, params.get("parent"), params.get("initial"))
    links = []
    if start > 0:
        links.append(Link(href=hrefs.feed(path, params), rel=vocab.REL_FIRST, type=kind))
        previous_start = max(0, start - page_size)
        previous_after = None
        if previous_start > 0:
            anchor = items[previous_start - 1]
            previous_after = encode_cursor(current - 1, scope, _sort_key(anchor))
        links.append(
            Link(href=hrefs.feed(path, {**params, "after": previous_after}), rel=vocab.REL_PREVIOUS, type=kind)
        )
    if start + page_size < len(items):
        anchor = items[start + page_size - 1]
        next_after = encode_cursor(current + 1, scope, _sort_key(anchor))
        links.append(Link(href=hrefs.feed(path, {**params, "after": next_after}), rel=vocab.REL_NEXT, type=kind))
    return links
