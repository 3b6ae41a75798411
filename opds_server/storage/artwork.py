"""Covers and comic pages drawn with Pillow: the demo library's, and placeholders for books without one.

Pure drawing: text in, JPEG bytes out. Pillow's built-in font covers ASCII only, so text is drawn
with its accents folded; a title in another script is left out rather than drawn as boxes.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import unicodedata
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

COVER_SIZE = (600, 900)


def fold_to_ascii(text: str) -> str:
    """``text`` without accents ("à" to "a"); characters with no ASCII form are dropped."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _colour(title: str, lightness: float) -> tuple[int, int, int]:
    """A colour whose hue comes from the title, so each book keeps its colour from run to run."""
    hue = hashlib.sha256(title.encode()).digest()[0] / 256
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, 0.5)
    return round(red * 255), round(green * 255), round(blue * 255)


def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow built without FreeType: no sizes, no anchors
        raise TypeError("drawn covers need Pillow built with FreeType")
    return font


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """`text` in lines of at most `width` pixels, drawn without accents (Aileron, Pillow's font, is ASCII)."""
    lines: list[str] = []
    for word in fold_to_ascii(text).split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def draw_cover(title: str, authors: Sequence[str], series: str | None = None) -> bytes:
    """A 600x900 JPEG: title, series and authors on a background coloured after the title."""
    accent = _colour(title, 0.75)
    image = Image.new("RGB", COVER_SIZE, _colour(title, 0.3))
    draw = ImageDraw.Draw(image)
    draw.rectangle((28, 28, 571, 871), outline=accent, width=6)
    title_font, series_font, author_font = _font(60), _font(30), _font(36)
    y = 170
    for line in _wrap(draw, title, title_font, 480):
        draw.text((300, y), line, font=title_font, fill="white", anchor="ma")
        y += 74
    draw.line((220, y + 24, 380, y + 24), fill=accent, width=4)
    series_lines = _wrap(draw, series, series_font, 480) if series else []
    if series_lines:
        draw.text((300, y + 56), series_lines[0], font=series_font, fill=accent, anchor="ma")
    author_lines = _wrap(draw, " & ".join(authors), author_font, 480)
    for n, line in enumerate(author_lines, 1 - len(author_lines)):  # the last line at y = 754
        draw.text((300, 754 + 46 * n), line, font=author_font, fill="white", anchor="ma")
    return _jpeg(image)


def draw_comic_page(title: str, captions: Sequence[str]) -> bytes:
    """A 600x900 JPEG page: the chapter's title, then one panel per paragraph, captioned with it."""
    image = Image.new("RGB", COVER_SIZE, "white")
    draw = ImageDraw.Draw(image)
    draw.text((300, 24), fold_to_ascii(title), font=_font(34), fill="black", anchor="ma")
    caption_font = _font(22)
    for n, caption in enumerate(captions):
        top, cloud_x, hero_x = 80 + 270 * n, 120 + 150 * n, 480 - 120 * n
        draw.rectangle((30, top, 570, top + 255), fill=(150, 200, 240), outline="black", width=5)
        draw.rectangle((35, top + 205, 565, top + 250), fill=(110, 170, 80))
        for x, y, r in (
            (cloud_x, top + 150, 34),
            (cloud_x + 40, top + 132, 40),
            (cloud_x + 82, top + 150, 32),
        ):
            draw.ellipse((x - r, y - r, x + r, y + r), fill="white")
        draw.polygon([(hero_x - 22, top + 160), (hero_x + 22, top + 160), (hero_x, top + 205)], fill="red")
        draw.ellipse((hero_x - 14, top + 130, hero_x + 14, top + 158), fill=(240, 200, 160), outline="black")
        lines = _wrap(draw, caption, caption_font, 500)
        draw.rectangle((40, top + 10, 560, top + 20 + 27 * len(lines)), fill=(255, 248, 208), outline="black")
        for row, line in enumerate(lines):
            draw.text((50, top + 15 + 27 * row), line, font=caption_font, fill="black")
    return _jpeg(image)
