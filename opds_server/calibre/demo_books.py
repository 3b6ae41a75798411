"""The twelve books of the demo library: metadata and original text, as plain data.

``demo`` turns these into a Calibre library. Every text here was written for this project: the
classics (Melville, Austen, Verne, Kafka, Stevenson and Osbourne) get a short summary of ours, never
a quotation. The set covers what a reader of the catalogue has to handle: two series (one with a
fractional index), a book with two authors, leading articles, hierarchical tags, three languages, a
book from 1813, ISBNs, ratings, a book without a cover, EPUB + PDF, and a CBZ comic.

This module holds data only: no I/O and no calibre conventions (those live in ``demo``).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec

Language = Literal["eng", "fra", "deu"]
BookFormat = Literal["EPUB", "PDF", "CBZ"]


class Chapter(msgspec.Struct, frozen=True, kw_only=True):
    """A chapter of an EPUB, or a page of a comic (one panel per paragraph)."""

    title: str
    text: str
    """Paragraphs separated by blank lines; line breaks inside a paragraph are only layout."""

    @property
    def paragraphs(self) -> list[str]:
        # Only line breaks become spaces: French text keeps its no-break spaces before ":".
        return [
            " ".join(line.strip() for line in block.strip().splitlines())
            for block in self.text.split("\n\n")
            if block.strip()
        ]


class DemoBook(msgspec.Struct, frozen=True, kw_only=True):
    """One book; ``rating`` uses calibre's 0-10 scale (8 = four stars, 7 = three and a half)."""

    title: str
    authors: tuple[str, ...]
    language: Language
    published: dt.date
    added: dt.datetime
    publisher: str
    tags: tuple[str, ...]
    comments: str
    chapters: tuple[Chapter, ...]
    series: str | None = None
    series_index: float = 1.0
    rating: int | None = None
    isbn_stem: str | None = None
    """The first 12 digits of an ISBN-13; ``demo`` computes the check digit."""
    formats: tuple[BookFormat, ...] = ("EPUB",)
    has_cover: bool = True


def _added(year: int, month: int, day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


SALTMARSH = "The Saltmarsh Chronicles"
COPPER_STREET = "The Copper Street Mysteries"

BOOKS: tuple[DemoBook, ...] = (
    DemoBook(
        title="The Tide Clock",
        authors=("Rosalind Finch",),
        language="eng",
        published=dt.date(2009, 4, 14),
        added=_added(2015, 3, 2, 19, 45),
        publisher="Saltmarsh Press",
        tags=("Fiction.Fantasy", "Sea"),
        series=SALTMARSH,
        series_index=1.0,
        rating=8,
        isbn_stem="978095123401",
        comments=(
            "<p>In the fen village of Wrayholm the tide is kept by a clock, and the clock has stopped. "
            "Young Maud Ashby has three days to wind it before the sea forgets the way home.</p>"
        ),
        chapters=(
            Chapter(
                title="The Stopped Hour",
                text="""
                    Every morning for a hundred years the keeper of Wrayholm had climbed the tower and
                    turned the great brass key, and every morning the sea had answered by coming in across
                    the marsh exactly when it was told.

                    On the first morning of spring the key would not turn. Maud Ashby, who was eleven and
                    not the keeper at all, stood on the ladder with both hands on it until her palms were
                    red.

                    Below her the marsh lay flat and silver and strangely quiet. The water in the channels
                    did not move, and even the reeds seemed to be waiting to be told the time.
                """,
            ),
            Chapter(
                title="The Keeper's Ledger",
                text="""
                    Old Tobit Fenn had kept the clock for forty years, and he kept his ledger the same way:
                    one line a day, in ink that had faded from black to brown to the colour of weak tea.

                    Most lines said only “Wound. Tide true.” But on a page from long ago someone had
                    written, in a smaller and more frightened hand, “Wound. Tide late. Heron seen at the
                    sluice.”

                    Maud read the line three times, then closed the book and went to find her boots.
                """,
            ),
        ),
    ),
    DemoBook(
        title="The Heron's Oath",
        authors=("Rosalind Finch",),
        language="eng",
        published=dt.date(2011, 9, 2),
        added=_added(2017, 8, 11, 8, 15),
        publisher="Saltmarsh Press",
        tags=("Fiction.Fantasy", "Sea"),
        series=SALTMARSH,
        series_index=2.0,
        rating=10,
        isbn_stem="978095123402",
        comments=(
            "<p>A year after the clock was mended, a grey heron arrives in Wrayholm carrying a promise "
            "nobody remembers making. Maud must find out who swore it, and what it will cost.</p>"
        ),
        chapters=(
            Chapter(
                title="A Visitor at the Sluice",
                text="""
                    The heron came on the longest night of the year and stood on the sluice gate as if it
                    had been hired to guard it.

                    It did not fly when the dogs barked, nor when Maud's brother threw a clod of earth. It
                    only watched the village with one cold yellow eye, the way a creditor watches a door.
                """,
            ),
            Chapter(
                title="What Was Sworn",
                text="""
                    In the church there was a stone that everyone stepped over and nobody read. Maud knelt
                    and brushed the moss from it with her sleeve.

                    “We who drained the marsh,” it said, “shall give back one field in every hundred years,
                    or the water will come and take its due.”

                    Maud counted on her fingers. Then she counted again, because the first answer could not
                    be right.
                """,
            ),
        ),
    ),
    DemoBook(
        title="A Bridge of Reeds",
        authors=("Rosalind Finch",),
        language="eng",
        published=dt.date(2010, 6, 21),
        added=_added(2021, 1, 30, 21, 10),
        publisher="Saltmarsh Press",
        tags=("Fiction.Fantasy", "Novella"),
        series=SALTMARSH,
        series_index=1.5,
        rating=7,
        isbn_stem="978095123403",
        comments=(
            "<p>A short tale set between the first two Saltmarsh books: the old clock keeper remembers the "
            "winter he built a bridge that was only meant to last one night.</p>"
        ),
        chapters=(
            Chapter(
                title="The Winter of the Flood",
                text="""
                    Tobit was nineteen the winter the river broke its banks, and he was the only person in
                    Wrayholm who could still tie a reed knot the way his grandmother had taught him.

                    By dusk the far bank was an island, and on it stood the miller's house with the miller's
                    children at the window.
                """,
            ),
            Chapter(
                title="One Night Only",
                text="""
                    He worked until his fingers bled, binding bundle to bundle, until a pale bridge lay
                    across the black water like a line drawn in chalk.

                    It held for three crossings. On the fourth it sighed and folded, and the river carried
                    it away toward the sea, and Tobit stood on the bank and laughed, because everyone was on
                    the right side of it.
                """,
            ),
        ),
    ),
    DemoBook(
        title="Moby-Dick",
        authors=("Herman Melville",),
        language="eng",
        published=dt.date(1851, 11, 14),
        added=_added(2012, 5, 20, 10, 0),
        publisher="Harper & Brothers",
        tags=("Fiction.Classics", "Fiction.Adventure", "Sea"),
        rating=9,
        isbn_stem="978184022500",
        formats=("EPUB", "PDF"),
        comments=(
            "<p>A summary written for this demo, not Melville's text: a young sailor signs on to the whaler"
            " <em>Pequod</em> and learns too late that its captain is hunting one white whale.</p>"
        ),
        chapters=(
            Chapter(
                title="The Sailor Ashore",
                text="""
                    Our narrator, who asks only to be called Ishmael, arrives in New Bedford in a cold
                    December with little money and a great restlessness. Whenever the land grows dull to
                    him, he goes to sea.

                    At a crowded inn he must share a bed with Queequeg, a harpooneer from a distant island.
                    Their first night is alarming; by morning they are firm friends.
                """,
            ),
            Chapter(
                title="The Pequod Sails",
                text="""
                    The two sign aboard the Pequod, an old Nantucket whaler trimmed with the teeth and bones
                    of her catch. Her owners speak of Captain Ahab with a respect close to fear.

                    Ahab does not appear until the ship is far out at sea. When he does, he stands on a leg
                    of whalebone and nails a gold coin to the mast for the first man to sight the white
                    whale.
                """,
            ),
            Chapter(
                title="The Chase",
                text="""
                    The voyage becomes a hunt across every ocean. The mate Starbuck argues for cargo and
                    caution; Ahab hears only his own purpose.

                    When the whale is found at last, the chase lasts three days. One man survives to tell
                    it, floating on a coffin that his friend had carved.
                """,
            ),
        ),
    ),
    DemoBook(
        title="Pride and Prejudice",
        authors=("Jane Austen",),
        language="eng",
        published=dt.date(1813, 1, 28),
        added=_added(2014, 12, 24, 16, 30),
        publisher="T. Egerton",
        tags=("Fiction.Classics", "Fiction.Romance"),
        rating=10,
        comments=(
            "<p>A summary written for this demo: the five Bennet sisters, their anxious mother, and a proud"
            " gentleman who makes a very poor first impression.</p>"
        ),
        chapters=(
            Chapter(
                title="A Newcomer at Netherfield",
                text="""
                    When a wealthy young man named Mr Bingley takes the great house at Netherfield, Mrs
                    Bennet is certain he must want a wife, and equally certain that one of her daughters
                    will do.

                    At the assembly ball Bingley dances twice with Jane, the eldest. His friend Mr Darcy
                    dances with nobody he has not been introduced to, and finds Elizabeth only tolerable.
                """,
            ),
            Chapter(
                title="First Impressions",
                text="""
                    Elizabeth laughs about the insult with her friends, but she does not forget it.
                    Everything she later hears of Darcy fits neatly into the opinion she has formed.

                    It takes a letter, a long walk and a good deal of honesty on both sides before either of
                    them admits to having judged too quickly.
                """,
            ),
        ),
    ),
    DemoBook(
        title="De la Terre à la Lune",
        authors=("Jules Verne",),
        language="fra",
        published=dt.date(1865, 10, 25),
        added=_added(2019, 7, 14, 12, 0),
        publisher="Pierre-Jules Hetzel",
        tags=("Fiction.Science Fiction", "Fiction.Classics"),
        rating=8,
        isbn_stem="979109876543",
        comments=(
            "<p>Résumé écrit pour la démo\u00a0: après la guerre, les membres du Gun-Club de Baltimore "
            "s'ennuient, jusqu'au jour où leur président propose d'envoyer un boulet sur la Lune.</p>"
        ),
        chapters=(
            Chapter(
                title="Le Gun-Club",
                text="""
                    À Baltimore, les membres du Gun-Club ne parlent que de canons. La guerre est finie, et
                    ces artilleurs passionnés n'ont plus rien à calculer ni à construire.

                    Un soir, leur président, Impey Barbicane, monte à la tribune. Il propose une entreprise
                    digne d'eux\u00a0: atteindre la Lune avec un projectile.
                """,
            ),
            Chapter(
                title="La Columbiad",
                text="""
                    On choisit un terrain près de Tampa pour fondre un canon géant dans le sol même. Des
                    milliers de curieux viennent voir couler le métal en fusion.

                    Un Français audacieux, Michel Ardan, télégraphie alors une demande
                    inattendue\u00a0: il veut voyager à l'intérieur du boulet.
                """,
            ),
        ),
    ),
    DemoBook(
        title="Die Verwandlung",
        authors=("Franz Kafka",),
        language="deu",
        published=dt.date(1915, 10, 1),
        added=_added(2013, 2, 3, 9, 20),
        publisher="Kurt Wolff Verlag",
        tags=("Fiction.Classics", "Novella"),
        comments=(
            "<p>Eine Zusammenfassung für die Demo: Der Handlungsreisende Gregor Samsa erwacht eines Morgens"
            " verwandelt, und seine Familie muss lernen, mit ihm zu leben.</p>"
        ),
        chapters=(
            Chapter(
                title="Das Erwachen",
                text="""
                    Gregor Samsa erwacht an einem grauen Morgen und kann nicht aufstehen. Sein Körper wirkt
                    fremd, schwer und gepanzert, und der Wecker zeigt längst eine Zeit, zu der er im Zug
                    sitzen müsste.

                    An der Tür rufen erst die Mutter, dann der Vater, schließlich der Prokurist der Firma.
                    Gregor antwortet, aber niemand versteht seine Stimme.
                """,
            ),
            Chapter(
                title="Die Familie",
                text="""
                    Die Schwester Grete bringt ihm jeden Tag Essen und räumt das Zimmer um. Der Vater nimmt
                    wieder Arbeit an, die Mutter näht für fremde Leute.

                    Mit der Zeit wird aus der Sorge Müdigkeit. Zuletzt fährt die Familie mit der Straßenbahn
                    ins Freie und spricht zum ersten Mal seit Monaten von der Zukunft.
                """,
            ),
        ),
    ),
    DemoBook(
        title="The Wrecker",
        authors=("Robert Louis Stevenson", "Lloyd Osbourne"),
        language="eng",
        published=dt.date(1892, 6, 1),
        added=_added(2023, 10, 5, 18, 40),
        publisher="Cassell & Company",
        tags=("Fiction.Adventure", "Fiction.Mystery", "Sea"),
        rating=6,
        has_cover=False,
        comments=(
            "<p>A summary written for this demo: an art student turned businessman buys a wrecked ship at "
            "auction in San Francisco for far more than it can be worth, and sets out to learn why.</p>"
        ),
        chapters=(
            Chapter(
                title="The Auction",
                text="""
                    Loudon Dodd had meant to be a sculptor in Paris. Instead he finds himself in San
                    Francisco, bidding against a stranger for the wreck of the Flying Scud, a brig stranded
                    on a reef in the middle of the Pacific.

                    The price climbs from hundreds to thousands of dollars. Everyone in the room knows the
                    ship is worth very little, and everyone wonders what the other bidder knows.
                """,
            ),
            Chapter(
                title="Midway Island",
                text="""
                    Dodd and his partner sail to the reef and search the wreck plank by plank. The cargo is
                    ordinary, the logbook has been tampered with, and the crew has vanished.

                    The answer, when it comes, is not treasure at all but a crime, and it follows Dodd home
                    across half the world.
                """,
            ),
        ),
    ),
    DemoBook(
        title="The Case of the Silent Bell",
        authors=("Arthur Penhallow",),
        language="eng",
        published=dt.date(2016, 9, 15),
        added=_added(2018, 4, 22, 7, 55),
        publisher="Lamplight Books",
        tags=("Fiction.Mystery",),
        series=COPPER_STREET,
        series_index=1.0,
        rating=6,
        isbn_stem="978190555101",
        comments=(
            "<p>The bell of St Ebba's has rung at six every evening for two centuries. Tonight it is "
            "silent, and the bell-ringer is missing. Inspector Agnes Moll takes the case.</p>"
        ),
        chapters=(
            Chapter(
                title="Six O'Clock",
                text="""
                    Inspector Agnes Moll set her watch by the bell of St Ebba's, and so did half the town.
                    When six o'clock came and went in silence, she put down her tea and reached for her
                    coat.

                    The tower door was unlocked. The rope hung straight and still. On the bottom step lay a
                    single glove, too small for the bell-ringer's hand.
                """,
            ),
            Chapter(
                title="The Glove",
                text="""
                    “A child's?” asked Sergeant Pike. “A woman's,” said Moll, “and a careful one. Look how
                    the fingertips are worn: she climbs ladders.”

                    By midnight they had a list of everyone in town who owned a ladder and a reason to hate
                    the bell. It was a longer list than either of them liked.
                """,
            ),
        ),
    ),
    DemoBook(
        title="The Case of the Paper Lantern",
        authors=("Arthur Penhallow",),
        language="eng",
        published=dt.date(2019, 3, 1),
        added=_added(2022, 9, 9, 13, 5),
        publisher="Lamplight Books",
        tags=("Fiction.Mystery",),
        series=COPPER_STREET,
        series_index=2.0,
        rating=8,
        isbn_stem="978190555102",
        comments=(
            "<p>During the winter lantern festival a paper lantern drifts down Copper Street carrying a "
            "message for a man who has been dead for ten years.</p>"
        ),
        chapters=(
            Chapter(
                title="Lights over the River",
                text="""
                    On the night of the festival a thousand paper lanterns rose from the river bank. One did
                    not rise; it drifted low along Copper Street and came to rest against the police station
                    window.

                    Inside its paper walls someone had written a name in careful capitals: the name of a man
                    whose funeral Moll had attended ten years before.
                """,
            ),
            Chapter(
                title="Ten Years Late",
                text="""
                    The dead man's widow still kept his hat on a peg by the door. She looked at the lantern
                    for a long time and then said, very quietly, that the handwriting was his.

                    Moll did not believe in ghosts. She did believe in people who wanted others to believe
                    in them, and she began to ask who had gained from a ten-year-old funeral.
                """,
            ),
        ),
    ),
    DemoBook(
        title="An Almanac of Small Weather",
        authors=("Tomasz Wren",),
        language="eng",
        published=dt.date(2020, 5, 20),
        added=_added(2024, 3, 17, 11, 11),
        publisher="Fieldfare Books",
        tags=("Non-Fiction.Nature.Weather", "Essays"),
        rating=9,
        isbn_stem="978191234567",
        comments=(
            "<p>Short essays on the weather nobody forecasts: the fog in one valley, the frost on one "
            "windowpane, the breeze that only blows along one street.</p>"
        ),
        chapters=(
            Chapter(
                title="Frost Flowers",
                text="""
                    On the coldest mornings the inside of my kitchen window grows ferns. They start in the
                    corners, where the glass is coldest, and reach toward the middle as if looking for the
                    light.

                    No two mornings draw the same picture. The frost follows every scratch on the glass, so
                    in a sense the window remembers everything that ever touched it.
                """,
            ),
            Chapter(
                title="The Valley Fog",
                text="""
                    Near my house there is a valley that fills with fog on clear autumn nights, like a bowl
                    filling with milk. Cold air slides down the slopes and pools at the bottom.

                    Walk down into it at dawn and you leave a sunny morning for a grey one in twenty steps.
                    Walk back up and the day is waiting for you, exactly where you left it.
                """,
            ),
        ),
    ),
    DemoBook(
        title="Captain Nimbus and the Cloud Thieves",
        authors=("Juniper Hale",),
        language="eng",
        published=dt.date(2018, 11, 10),
        added=_added(2020, 6, 6, 15, 0),
        publisher="Nimbus Comics",
        tags=("Comics", "Fiction.Adventure"),
        formats=("CBZ",),
        comments="<p>A comic in three pages: somebody has stolen every cloud over Brightfield.</p>",
        chapters=(
            Chapter(
                title="The Sky Is Empty",
                text="""
                    Morning in Brightfield. Not one cloud in the sky, for the twentieth day running.

                    FARMER: Three weeks without rain! Where have all the clouds gone?

                    CAPTAIN NIMBUS: Leave it to me. Clouds don't just wander off!
                """,
            ),
            Chapter(
                title="The Cloud Barn",
                text="""
                    High above the hills floats a barn made of fog, stuffed to the rafters.

                    THIEF: Nobody will ever find our clouds up here!

                    CAPTAIN NIMBUS: Found them! Time to let it rain.
                """,
            ),
        ),
    ),
)
