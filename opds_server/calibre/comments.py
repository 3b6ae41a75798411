"""Calibre's comments are HTML typed in by anyone: sanitise them before they reach a reader.

nh3 (ammonia) keeps a conservative set of formatting tags and drops scripts, event handlers,
styles, iframes and ``javascript:`` URLs. ``plain_text`` gives the text for Atom summaries and
OPDS 2 descriptions. Both are memoised by the raw text: the same books are rendered again and
again (each sort order, both representations, every page that shows them) and nh3 is the
costliest step of an entry.
"""

from __future__ import annotations

import functools
import html
import re

import nh3

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "cite", "code", "dd", "div", "dl", "dt", "em", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "i", "li", "ol", "p", "pre", "q", "s", "small", "span", "strong",
    "sub", "sup", "u", "ul",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}}
_BLOCK_EDGE = re.compile(r"</?(p|div|h[1-6]|li|ul|ol|blockquote|pre|dd|dt|tr)\b[^>]*>|<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\s*\n\s*")


@functools.lru_cache(maxsize=1024)
def sanitise_html(raw: str) -> str:
    """Keep formatting, drop anything that runs or loads: the result is safe to embed in a page."""
    return nh3.clean(
        raw,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    ).strip()


@functools.lru_cache(maxsize=1024)
def plain_text(raw: str) -> str:
    """The text of an HTML fragment, one line per block, entities decoded."""
    cleaned = nh3.clean(raw, tags=_TAGS, attributes={}, strip_comments=True)
    with_breaks = _BLOCK_EDGE.sub("\n", cleaned)
    text = html.unescape(_TAG.sub("", with_breaks)).replace("\xa0", " ")
    return _BLANK_LINES.sub("\n", _SPACES.sub(" ", text)).strip()


def shorten(text: str, limit: int) -> str:
    """Cut ``text`` at a word boundary to at most ``limit`` characters, marking the cut with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if not text[limit - 1].isspace() and " " in cut:
        cut = cut.rsplit(None, 1)[0]  # do not end inside a word
    return cut.rstrip(" ,;:") + "…"
