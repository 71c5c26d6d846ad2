"""Fonts, text measuring and wrapping for the PNG figures drawn with Pillow (the causal-trace
heat map here, the Admin tab's promotion chart in amend_ui/charts.py).

Why Pillow and not a plotting library: Pillow is already installed with Gradio, and both
figures are simple enough to lay out by hand. Why a scalable font: Pillow's old bitmap default
is ~11 px whatever is asked, too small once a browser scales the picture to the page.
"""
from __future__ import annotations

from functools import lru_cache

from PIL import ImageDraw, ImageFont

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
INK = (30, 30, 30)
MUTED = (90, 90, 90)
WHITE = (255, 255, 255)
_FILES = {False: "DejaVuSans.ttf", True: "DejaVuSans-Bold.ttf"}


@lru_cache(maxsize=64)
def font(size: int, bold: bool = False) -> Font:
    """DejaVu Sans at `size` px when the system has it (Pillow finds it by name in the usual
    font folders), else the scalable font bundled with Pillow (no bold)."""
    try:
        return ImageFont.truetype(_FILES[bold], size)
    except OSError:
        return ImageFont.load_default(size)


def printable(text: str) -> str:
    """Text every font here can draw: newlines and tabs spelled out, Latin-1 only (the
    bundled fallback font has no other glyphs)."""
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text.encode("latin-1", "replace").decode("latin-1")


def text_width(text: str, face: Font) -> int:
    return round(face.getlength(text))


def line_height(face: Font) -> int:
    """Height of one line of text in `face`, ascent to descent, plus a little leading."""
    ascent, descent = face.getmetrics() if hasattr(face, "getmetrics") else (face.size, 0)
    return int(ascent + descent + 3)


def wrap(text: str, face: Font, width: int) -> list[str]:
    """Greedy word wrap to `width` px; a single word longer than the width is cut with '…'."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if text_width(trial, face) <= width or not current:
            current = trial
        else:
            lines.append(current)
            current = word
        while text_width(current, face) > width and len(current) > 1:
            current = current[:-2] + "…"
    if current:
        lines.append(current)
    return lines or [""]


def draw_lines(draw: ImageDraw.ImageDraw, xy: tuple[int, int], lines: list[str], face: Font,
               fill: tuple[int, int, int] = INK) -> int:
    """Draws `lines` top-down from `xy`; returns the y just below the last one."""
    x, y = xy
    for line in lines:
        draw.text((x, y), line, fill=fill, font=face)
        y += line_height(face)
    return y
