"""A generator of large Calibre libraries for the benchmarks: ``python3 -m tests.benchmark generate PATH``.

calibre starts the library: ``calibredb add --empty`` writes ``metadata.db`` with calibre's schema,
triggers, preferences and ``library_id``; ``calibredb remove --permanent`` drops that seed book, so the
books get ids 1..N (explicit ids move ``sqlite_sequence`` on: calibre's next ``add`` gets N + 1). The
books then go in through :mod:`sqlite3` in one transaction, with Python versions of the SQL functions
calibre's triggers call: ``title_sort`` (books, series) and ``uuid4`` (books). It only writes into a
missing or empty folder, so it never touches a user's library.

Distributions, from ``random.Random(seed)``: a seed always gives the same books and uuids, but calibre
makes the ``library_id`` and the MOBI and AZW3 files (its AZW3 size varies by a few bytes from run to
run). "Zipf" is 1 / (rank + q), a Zipf law whose head is flattened by q, so that the busiest author has
~500 books in 100,000, not 9,000:

* authors: the first is Zipf (q = 30) over N/4 names; 20% of books have 1-2 co-authors, drawn
  uniformly. Some names carry accents ("Zoë", "Dvořák"), as do 10% of titles and a sixth of publishers.
* series: 30% of books, cut into series of 1 + Exp(mean 4) books by one author, numbered 1, 2... by id.
* tags: 0-5 per book, Zipf (q = 5) over 500 names, a quarter hierarchical ("Fiction.Fantasy.Epic").
  Publisher: 90% of books, Zipf (q = 10) over 2,000 names.
* language: 75% eng, then fra, deu, spa, ita, jpn...; 0.5% have two. Rating: 25% unrated (no link;
  calibre never links a 0), otherwise 2-10, even only. Identifiers: isbn 85% (valid ISBN-13), amazon
  25%, goodreads 15%. Comments: 90%, HTML paragraphs of ~200-2,000 characters, a third with an
  accented word ("café", "naïve").
* dates: timestamp over the 10 years to 2024-11-01, following the id +/- 60 days; pubdate mostly
  1950-2023, 12% 1500-1949, 3% undefined (calibre's 0101-01-01); last_modified after the timestamp.
* files: 1-3 formats (EPUB 70%, AZW3, PDF, MOBI, CBZ 3%), a cover for 85% of books. Each file is a hard
  link to a template (EPUB, PDF, CBZ and six Pillow covers made here, MOBI and AZW3 converted from the
  EPUB by ``ebook-convert``); a template starts a new copy at ext4's limit of 65,000 links.

No ``metadata.opf`` backups are written and no book is marked dirty, so calibre does not spend its
first minutes writing 100,000 backups while it is being measured.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import os
import random
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

from PIL import Image, ImageDraw

from opds_server.calibre.demo import title_sort
from opds_server.storage.artwork import fold_to_ascii

_CHUNK = 10_000
_END = dt.datetime(2024, 11, 1, tzinfo=dt.UTC)
_SPAN = dt.timedelta(days=3653)
_PATH_LIMIT = 100  # calibre's DB.PATH_LIMIT outside Windows (calibre/db/backend.py)
_UNSAFE = frozenset('\\|?*<":>+/') | frozenset(map(chr, range(32)))  # calibre's _filename_sanitize_unicode


def _words(text: str) -> list[str]:
    """The words of `text`, separated by white space; ``_`` is a space inside one."""
    return [word.replace("_", " ") for word in text.split()]


_ADJECTIVES = _words("""Silent Hidden Broken Golden Crimson Last Lost Distant Northern Burning Frozen Quiet Wild
    Secret Silver Iron Paper Glass Midnight Winter Summer Hollow Bright Ancient Forgotten Endless Little Final Velvet
    Painted Restless Gentle Bitter Scarlet Emerald Wandering Sleeping Drowned Naïve Unquiet""")
_NOUNS = _words("""Lantern Harbour River Garden Kingdom Mirror Orchard Island Tower Forest Shadow Compass Letter
    Voyage Empire Atlas Echo Ocean Bridge Cathedral Library Map Crown Storm Tide Road House Door Window Mountain
    Valley City Engine Clock Feather Raven Wolf Fox Star Moon Café Meadow Lighthouse Cartographer Alchemist Keeper
    Daughter Widow Stranger Soldier Gardener Thief Queen Orphan Sailor Witness Inheritance Observatory""")
_PLACES = _words("Paris Montréal Zürich Kyoto Lisbon Bruges Reykjavík Québec Kraków Venice Tangier Oslo Málaga Köln")
_FIRST = _words("""Ada Eleanor Jane John Miguel Victor Jules Claire Tobias Inès Oswin Harriet Pip Max Lena Thomas
    Mary Peter Anna James Sarah David Laura Robert Emma Daniel Alice Henry Grace Samuel Ruth Arthur Helen Hugo Iris
    Felix Nora Oliver Rosa Zoë Chloé José Renée Björn François Sébastien Åsa Jürgen Noémie Raphaël Anaïs Léa""")
_LAST_START = _words("""Ash Black Brook Cal Dun Fair Green Hale Hol Kings Lang Marsh Mont North Oak Pen Quill Red
    Rose Sal Stan Thorn Vane West Wyn Wood Ker Bel Mar Fen Gold Hay Lock Mer""")
_LAST_END = _words("by field ford ham ley ton well wood worth more ridge stone combe hurst land son mann dale")
_LAST_WHOLE = _words("Dubois Lefèvre Müller Ångström Dvořák Ibáñez Núñez Gómez Brontë Östberg Peña Citroën")
_GENRES = {
    "Fiction": _words("Fantasy Mystery Romance Historical Horror Thriller Literary Crime Adventure Science_Fiction"),
    "Non-Fiction": _words("History Science Biography Travel Cooking Philosophy Art Nature Politics Music"),
}
_SUBGENRES = _words("Epic Urban Cozy Hard Military Medieval Modern Ancient Regional Maritime Gothic Space_Opera")
_WORDS = _words("""the a of and in to with on for at from by as was were had is are it its his her their they she
    he we you this that which who when where while after before under over between through long old new small great
    house river road light night morning evening winter summer sea wind rain stone garden door window letter book
    story voyage ship island city village harbour tower bridge forest mountain valley field lantern keeper mother
    father daughter son friend stranger king queen soldier sailor thief widow child teacher doctor walked waited
    remembered found lost kept opened closed carried followed watched wrote read spoke listened slowly quietly
    suddenly always never once again together alone almost nearly still already perhaps cold warm dark bright""")
_ACCENTED = _words("café naïve façade déjà résumé crème brûlée fiancée soufflé Zoë Éditions Chloé Müller Dvořák")
_LANGUAGES = {"eng": 75, "fra": 6, "deu": 5, "spa": 5, "ita": 3, "jpn": 2, "por": 1.5, "nld": 1, "rus": 1, "swe": 0.5}
_FORMATS = {"EPUB": 70, "AZW3": 10, "PDF": 10, "MOBI": 7, "CBZ": 3}
_COLUMNS = {  # in insertion order: values before the links to them, which calibre's triggers check
    "authors": "id, name, sort",
    "series": "id, name",
    "tags": "id, name",
    "publishers": "id, name",
    "languages": "id, lang_code",
    "ratings": "id, rating",
    "books": "id, title, timestamp, pubdate, series_index, author_sort, isbn, lccn, path, flags, has_cover, "
    "last_modified",
    "books_authors_link": "book, author",
    "books_series_link": "book, series",
    "books_tags_link": "book, tag",
    "books_publishers_link": "book, publisher",
    "books_ratings_link": "book, rating",
    "books_languages_link": "book, lang_code, item_order",
    "identifiers": "book, type, val",
    "comments": "book, text",
    "data": "book, format, uncompressed_size, name",
}


class CalibreNotFoundError(RuntimeError):
    """A calibre program (``calibredb``, ``ebook-convert``) is not installed."""


def run_calibre(program: str, *arguments: str) -> str:
    """Run a calibre program headless, with a throwaway config directory; return its stdout.

    ``QT_QPA_PLATFORM=offscreen`` as there is no display (CI runs as root without one); a fresh
    ``CALIBRE_CONFIG_DIRECTORY`` so a user's preferences (auto-merge, tag mapping...) change nothing.
    As root, calibredb runs in a private network namespace (``unshare -n``): it refuses to start while
    calibre-server or the GUI holds calibre's single-instance lock, an abstract Unix socket, and those
    are per namespace (see the fixture library's README). Where namespaces are not allowed, it runs as is.
    """
    if shutil.which(program) is None:
        raise CalibreNotFoundError(f"{program} is not installed: apt-get install calibre")
    isolate = program == "calibredb" and os.geteuid() == 0 and shutil.which("unshare") is not None
    command = ["unshare", "-n", program, *arguments] if isolate else [program, *arguments]
    with tempfile.TemporaryDirectory(prefix="calibre-config-") as config:
        environment = {
            **os.environ,
            "QT_QPA_PLATFORM": "offscreen",
            "CALIBRE_CONFIG_DIRECTORY": config,
            "XDG_DATA_HOME": config,  # `calibredb remove` moves book folders to a Trash there
        }
        done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
        if done.returncode != 0 and isolate and done.stderr.startswith("unshare"):
            done = subprocess.run(command[2:], env=environment, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with {done.returncode}:\n{done.stderr}")
    return done.stdout


def generate_library(path: Path, books: int, *, seed: int = 1) -> None:
    """Write a Calibre library of `books` books to `path`, which must be missing or empty."""
    started = time.monotonic()
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} is not empty: the generator only writes into a new folder")
    path.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(3) as pool:  # calibre programs take 0.5-1 s to start: the templates' two run alongside
        templates = pool.submit(_make_templates, pool)
        run_calibre("calibredb", "add", "--empty", "--title", "Seed", "--with-library", str(path))
        run_calibre("calibredb", "remove", "--permanent", "1", "--with-library", str(path))
        writer = _Writer(path, books, random.Random(seed), templates.result())
    print(f"calibre made the empty library and the templates: {time.monotonic() - started:.1f}s", flush=True)
    uuids = random.Random(f"uuid4-{seed}")
    with closing(sqlite3.connect(path / "metadata.db")) as db:
        db.create_function("title_sort", 1, title_sort, deterministic=True)
        db.create_function("uuid4", 0, lambda: str(uuid.UUID(int=uuids.getrandbits(128), version=4)))
        db.execute("PRAGMA synchronous = OFF")  # this connection only; the journal mode stays calibre's `delete`
        with db:
            for first in range(1, books + 1, _CHUNK):
                for book_id in range(first, min(first + _CHUNK, books + 1)):
                    writer.add_book(book_id)
                writer.flush(db)
                done = min(first + _CHUNK - 1, books)
                print(f"{done:>9,} / {books:,} books  {time.monotonic() - started:6.1f}s", flush=True)
        check = db.execute("PRAGMA integrity_check").fetchone()[0]  # 1-2 s for 100,000 books
        counts = [f"{db.execute(f'SELECT COUNT(*) FROM {t}').fetchone()[0]:,} {t}" for t in list(_COLUMNS)[:7]]
    if check != "ok":
        raise RuntimeError(f"{path / 'metadata.db'} fails SQLite's integrity check: {check}")
    print(f"{', '.join(counts)}; {writer.written:,} files written, {writer.linked:,} hard links")
    print(f"{books:,} books in {time.monotonic() - started:.1f}s: {path}")


class _Writer:
    """Plans books one at a time: writes their folders at once, and their rows at each flush."""

    def __init__(self, library: Path, books: int, rng: random.Random, templates: dict[str, bytes]) -> None:
        self.library, self.books, self.rng, self.templates = library, books, rng, templates
        self.ids: dict[str, dict[str, int]] = {t: {} for t in ("authors", "series", "tags", "publishers", "languages")}
        self.flushed = dict.fromkeys(self.ids, 0)
        self.rows: dict[str, list[tuple[object, ...]]] = {table: [] for table in _COLUMNS}
        self.rows["ratings"] = [(n, 2 * n) for n in range(1, 6)]  # rows 1..5 hold 2, 4, 6, 8, 10
        self.sources: dict[str, Path] = {}  # the file each template's hard links point to
        self.written = self.linked = 0
        self.authors = _unique(rng, max(4, books // 4), _author)
        self.pools = {  # values, most popular first, with the cumulative weights to draw them by
            "authors": (self.authors, _zipf(len(self.authors), 30)),
            "tags": (_unique(rng, 500, _tag), _zipf(500, 5)),
            "publishers": (_unique(rng, 2000, _publisher), _zipf(2000, 10)),
        }
        self.series = _plan_series(rng, books, lambda: self._draw("authors"))

    def _draw(self, pool: str) -> str:
        values, weights = self.pools[pool]
        return self.rng.choices(values, cum_weights=weights)[0]

    def _id(self, table: str, value: str) -> int:
        return self.ids[table].setdefault(value, len(self.ids[table]) + 1)

    def add_book(self, book_id: int) -> None:
        rng = self.rng
        series, index, first_author = self.series.get(book_id) or (None, 1.0, self._draw("authors"))
        authors = [first_author]
        for _ in range(rng.choices((0, 1, 2), (80, 15, 5))[0]):
            if (co_author := rng.choice(self.authors)) not in authors:
                authors.append(co_author)
        title = _title(rng)
        path, name = _names(book_id, title, first_author)
        offset = abs(_SPAN * book_id / self.books + dt.timedelta(days=rng.uniform(-60, 60)))
        added = (_END - abs(_SPAN - offset)).replace(microsecond=0)  # reflected back into the 10 years
        modified = (added + (_END - added) * rng.random()).replace(microsecond=0)
        has_cover = rng.random() < 0.85
        author_sort = " & ".join(_author_sort(author) for author in authors)
        row = (book_id, title, added.isoformat(" "), _pubdate(rng), index, author_sort, "", "", path, 1, has_cover)
        self.rows["books"].append((*row, modified.isoformat(" ")))
        self._add_links(book_id, authors, series)
        self._write_files(book_id, path, name, has_cover=has_cover)

    def _add_links(self, book_id: int, authors: Sequence[str], series: str | None) -> None:
        rng, rows = self.rng, self.rows
        rows["books_authors_link"] += [(book_id, self._id("authors", author)) for author in authors]
        if series is not None:
            rows["books_series_link"].append((book_id, self._id("series", series)))
        tags = dict.fromkeys(self._draw("tags") for _ in range(rng.choices(range(6), (10, 25, 25, 20, 12, 8))[0]))
        rows["books_tags_link"] += [(book_id, self._id("tags", tag)) for tag in tags]
        if rng.random() < 0.9:
            rows["books_publishers_link"].append((book_id, self._id("publishers", self._draw("publishers"))))
        if rng.random() < 0.75:
            rows["books_ratings_link"].append((book_id, rng.choices(range(1, 6), (5, 10, 30, 35, 20))[0]))
        languages = dict.fromkeys(rng.choices(list(_LANGUAGES), list(_LANGUAGES.values()), k=1 + (rng.random() < 0.01)))
        rows["books_languages_link"] += [(book_id, self._id("languages", code), n) for n, code in enumerate(languages)]
        rows["identifiers"] += [(book_id, kind, value) for kind, value in _identifiers(rng)]
        if rng.random() < 0.9:
            rows["comments"].append((book_id, _comment(rng)))

    def _write_files(self, book_id: int, path: str, name: str, *, has_cover: bool) -> None:
        folder = self.library / path
        folder.mkdir(parents=True)
        if has_cover:
            self._place(f"cover-{self.rng.randrange(6)}", folder / "cover.jpg")
        count = self.rng.choices((1, 2, 3), (70, 22, 8))[0]
        for book_format in dict.fromkeys(self.rng.choices(list(_FORMATS), list(_FORMATS.values()), k=count)):
            self._place(book_format, folder / f"{name}.{book_format.lower()}")
            self.rows["data"].append((book_id, book_format, len(self.templates[book_format]), name))

    def _place(self, template: str, target: Path) -> None:
        """A hard link to the template's current copy; where linking fails, the target becomes a new copy."""
        if (source := self.sources.get(template)) is not None:
            try:
                os.link(source, target)
            except OSError:  # EMLINK past ext4's 65,000 links, or a filesystem without hard links
                pass
            else:
                self.linked += 1
                return
        target.write_bytes(self.templates[template])
        self.sources[template] = target
        self.written += 1

    def flush(self, db: sqlite3.Connection) -> None:
        """Insert the rows planned since the last flush."""
        for table, ids in self.ids.items():
            new = list(ids.items())[self.flushed[table] :]
            self.rows[table] = [(i, v, _author_sort(v)) if table == "authors" else (i, v) for v, i in new]
            self.flushed[table] = len(ids)
        for table, columns in _COLUMNS.items():
            marks = ", ".join("?" * (columns.count(",") + 1))
            db.executemany(f"INSERT INTO {table}({columns}) VALUES ({marks})", self.rows[table])
            self.rows[table] = []


def _zipf(count: int, offset: int) -> list[float]:
    """Cumulative weights for ``rng.choices``: rank k has weight 1 / (k + offset)."""
    return list(itertools.accumulate(1 / (rank + offset) for rank in range(1, count + 1)))


def _unique(rng: random.Random, count: int, make: Callable[[random.Random], str]) -> list[str]:
    """`count` names from `make`, distinct case-insensitively (calibre's tables are UNIQUE ... COLLATE NOCASE)."""
    names: dict[str, str] = {}
    for attempt in itertools.count():
        if len(names) == count:
            break
        name = make(rng) if attempt < 3 * count else f"{make(rng)} {attempt}"  # the combinations ran short
        names.setdefault(name.casefold(), name)
    return list(names.values())


def _pair(rng: random.Random) -> str:
    return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"


def _author(rng: random.Random) -> str:
    last = rng.choice(_LAST_WHOLE) if rng.random() < 0.1 else rng.choice(_LAST_START) + rng.choice(_LAST_END)
    middle = f" {rng.choice('ABCDEFGHJKLMNOPRSTW')}." if rng.random() < 0.2 else ""
    return f"{rng.choice(_FIRST)}{middle} {last}"


def _tag(rng: random.Random) -> str:
    if rng.random() < 0.35:
        top = rng.choice(list(_GENRES))
        return f"{top}.{rng.choice(_GENRES[top])}" + (f".{rng.choice(_SUBGENRES)}" if rng.random() < 0.6 else "")
    return rng.choice(_NOUNS) if rng.random() < 0.3 else _pair(rng)


def _publisher(rng: random.Random) -> str:
    last, noun, place = _author(rng).rsplit(" ", 1)[1], rng.choice(_NOUNS), rng.choice(_PLACES)
    names = (f"{last} Press", f"{noun} Books", f"{last} & Sons", f"Éditions {last}", f"{place} University Press")
    return rng.choice((*names, f"{_pair(rng)} Publishing"))


def _series_name(rng: random.Random) -> str:
    noun, other, place = rng.choice(_NOUNS), rng.choice(_NOUNS), rng.choice(_PLACES)
    names = (f"The {noun} Chronicles", f"{noun} Saga", f"{place} Mysteries", f"Tales of the {noun}")
    return rng.choice((*names, f"{noun} & {other}", f"The {_pair(rng)} Cycle"))


def _plan_series(rng: random.Random, books: int, draw_author: Callable[[], str]) -> dict[int, tuple[str, float, str]]:
    """Series, index and author by book id: 30% of the books, shuffled, cut into series, numbered by id."""
    members = rng.sample(range(1, books + 1), round(books * 0.3))
    lengths: list[int] = []
    while sum(lengths) < len(members):
        lengths.append(min(1 + int(rng.expovariate(1 / 4)), 30))
    planned: dict[int, tuple[str, float, str]] = {}
    starts = itertools.accumulate(lengths, initial=0)
    for name, start, length in zip(_unique(rng, len(lengths), _series_name), starts, lengths, strict=False):
        author = draw_author()
        for index, book_id in enumerate(sorted(members[start : start + length]), 1):
            planned[book_id] = (name, float(index), author)
    return planned


def _title(rng: random.Random) -> str:
    noun, other, adjective, name = rng.choice(_NOUNS), rng.choice(_NOUNS), rng.choice(_ADJECTIVES), rng.choice(_FIRST)
    patterns = {
        f"The {adjective} {noun}": 20,
        f"The {noun} of the {other}": 15,
        f"{noun} of {other}": 22,
        f"{adjective} {other}": 12,
        f"{'An' if noun[0] in 'AEIOU' else 'A'} {noun} in {rng.choice(_PLACES)}": 8,
        f"{'An' if other[0] in 'AEIOU' else 'A'} {other} for {name}": 5,
        f"{noun}: {_pair(rng)}": 8,  # ':' and '?' become '_' in file names
        f"Who Stole the {noun}?": 3,
        f"{name} & the {noun}": 5,
    }
    title = rng.choices(list(patterns), list(patterns.values()))[0]
    if rng.random() < 0.005:  # longer than calibre's 96-character folder names
        title += ", Being a " + " and ".join(_pair(rng) for _ in range(5))
    return title


def _author_sort(name: str) -> str:
    """calibre's default author sort ("invert"): "Zoë M. Hale" sorts as "Hale, Zoë M."."""
    given, _, family = name.rpartition(" ")
    return f"{family}, {given}" if given else family


def _ascii_filename(text: str) -> str:
    """calibre's ``ascii_filename`` (calibre/utils/filenames.py) for the names made here: accents folded."""
    name = re.sub(r"\s", " ", "".join("_" if c in _UNSAFE else c for c in fold_to_ascii(text))).strip()
    name = name.replace("..", "_")
    name = name[:-1] + "_" if name.endswith((".", " ")) else name
    return "_" + name[1:] if name.startswith(".") else name


def _names(book_id: int, title: str, author: str) -> tuple[str, str]:
    """``Author/Title (id)`` and ``Title - Author``, as calibre's ``construct_path_name`` and
    ``construct_file_name`` make them (calibre/db/backend.py): 96 and 42 characters of each part."""
    suffix = f" ({book_id})"
    folder_limit, file_limit = _PATH_LIMIT - len(suffix) // 2 - 2, (_PATH_LIMIT - 14 - 2) // 2
    ascii_title, ascii_author = _ascii_filename(title.lstrip()), _ascii_filename(author)
    folder = ascii_author[:folder_limit].rstrip(" .") or "Unknown"
    path = f"{folder}/{ascii_title[:folder_limit].rstrip() or 'Unknown'}{suffix}"
    return path, f"{ascii_title[:file_limit].rstrip() or 'Unknown'} - {ascii_author[:file_limit]}".rstrip(".")


def _pubdate(rng: random.Random) -> str:
    draw = rng.random()
    if draw < 0.03:
        return "0101-01-01 00:00:00+00:00"  # calibre's UNDEFINED_DATE
    year = rng.randint(1500, 1949) if draw < 0.15 else rng.randint(1950, 2023)
    return f"{year:04}-{rng.randint(1, 12):02}-{rng.randint(1, 28):02} 00:00:00+00:00"


def _identifiers(rng: random.Random) -> list[tuple[str, str]]:
    found = []
    if rng.random() < 0.85:
        stem = rng.choice(("978", "979")) + "".join(rng.choices("0123456789", k=9))
        total = sum(int(digit) * (3 if position % 2 else 1) for position, digit in enumerate(stem))
        found.append(("isbn", f"{stem}{-total % 10}"))
    if rng.random() < 0.25:
        found.append(("amazon", "B0" + "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", k=8))))
    if rng.random() < 0.15:
        found.append(("goodreads", str(rng.randint(1, 60_000_000))))
    return found


def _comment(rng: random.Random) -> str:
    """HTML paragraphs of 2-5 sentences, about 200-2,000 characters in all."""
    target, sentences = rng.randint(190, 1750), list[str]()
    while sum(len(sentence) for sentence in sentences) < target:
        words = rng.choices(_WORDS, k=rng.randint(6, 16))
        if rng.random() < 0.03:
            words[-1] = rng.choice(_ACCENTED)
        sentences.append(f"{words[0].capitalize()} {' '.join(words[1:])}.")
    cuts = [0, *itertools.accumulate(rng.randint(2, 5) for _ in sentences)]
    return "".join(f"<p>{' '.join(sentences[a:b])}</p>" for a, b in itertools.pairwise(cuts) if sentences[a:b])


def _zip(entries: dict[str, bytes]) -> bytes:
    """A ZIP of `entries` in order; the first, an EPUB's ``mimetype``, and JPEGs are stored uncompressed."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            stored = name == "mimetype" or name.endswith(".jpg")
            info = zipfile.ZipInfo(name, date_time=(2024, 11, 1, 0, 0, 0))
            archive.writestr(info, content, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _image(size: tuple[int, int], colour: str, label: str, kind: str = "JPEG") -> bytes:
    """A page or cover: a frame and a label on `colour`; Pillow writes it as a JPEG or a one-page PDF."""
    image = Image.new("RGB", size, colour)
    width, height = size
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 12, height // 12, width * 11 // 12, height * 11 // 12), outline="white", width=4)
    draw.text((width // 6, height // 3), label, fill="white")
    buffer = io.BytesIO()
    image.save(buffer, kind, quality=80)
    return buffer.getvalue()


_EPUB = {
    "mimetype": "application/epub+zip",
    "META-INF/container.xml": """<?xml version="1.0"?><container version="1.0" \
xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf" \
media-type="application/oebps-package+xml"/></rootfiles></container>""",
    "OEBPS/content.opf": """<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">urn:isbn:9780000000002</dc:identifier>
<dc:title>Benchmark Book</dc:title><dc:language>en</dc:language>
<meta property="dcterms:modified">2024-11-01T00:00:00Z</meta></metadata>
<manifest><item id="text" href="text.xhtml" media-type="application/xhtml+xml" properties="nav"/></manifest>
<spine><itemref idref="text"/></spine></package>""",
    "OEBPS/text.xhtml": """<?xml version="1.0" encoding="utf-8"?><!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops" lang="en" xml:lang="en">
<head><title>Benchmark Book</title></head><body><nav epub:type="toc"><ol><li><a href="#one">One</a></li></ol></nav>
<section id="one"><h1>One</h1>{paragraphs}</section></body></html>""",
}


def _make_templates(pool: ThreadPoolExecutor) -> dict[str, bytes]:
    """The bytes behind every file: one per format, and the covers ``cover-0`` to ``cover-5``."""
    paragraphs = "".join(_comment(random.Random(n)) for n in range(6))
    epub = _zip({name: text.replace("{paragraphs}", paragraphs).encode() for name, text in _EPUB.items()})
    pages = [_image((400, 600), colour, f"Page {n}") for n, colour in enumerate(("gray", "steelblue", "peru"), 1)]
    cbz = _zip({f"{n:03}.jpg": page for n, page in enumerate(pages, 1)})
    templates = {"EPUB": epub, "PDF": _image((595, 842), "gray", "Benchmark Book", "PDF"), "CBZ": cbz}
    for n, colour in enumerate(("darkred", "navy", "darkgreen", "indigo", "teal", "sienna")):
        templates[f"cover-{n}"] = _image(((300, 450), (400, 600), (600, 900))[n % 3], colour, "Benchmark Book")
    with tempfile.TemporaryDirectory(prefix="library-templates-") as work:
        source, kindle = Path(work) / "book.epub", {"MOBI": Path(work) / "book.mobi", "AZW3": Path(work) / "book.azw3"}
        source.write_bytes(epub)  # MOBI and AZW3: real Kindle files, made by calibre from the EPUB
        list(pool.map(lambda target: run_calibre("ebook-convert", str(source), str(target)), kindle.values()))
        templates |= {book_format: target.read_bytes() for book_format, target in kindle.items()}
    return templates
