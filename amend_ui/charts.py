"""The Admin tab's promotion chart: each weight edit's scores as a picture (PIL image for a
gr.Image), drawn with Pillow like the causal-trace heat map.

Why not gr.LinePlot: it drew one promotion as no visible point, labelled whole-number ids
1.00, 1.05 ..., merged metrics with equal values into one line, cut off the legend and showed
rolled-back promotions like live ones. Here the x axis has one integer tick per weight edit
id, every metric is a line with its own colour and marker shape (markers are nudged a few
pixels apart so equal values stay visible), the legend sits to the right of the plot, and
a rolled-back promotion's markers are hollow and grey, off the lines, which join only the
promotions still in the weights. `promotion_series` is the pure data behind the picture, so
tests can check it without reading pixels.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from PIL import Image, ImageDraw

from editing.drawing import INK, MUTED, WHITE, font, line_height, wrap

# metric -> (legend label, colour (Okabe-Ito, colour-blind safe), marker, dashed line)
METRICS = {
    "reliability": ("reliability", (0, 114, 178), "circle", False),
    "generalization": ("generalization", (213, 94, 0), "square", False),
    "locality": ("locality", (0, 158, 115), "triangle", False),
    "chat_reliability": ("chat: reliability", (86, 180, 233), "circle", True),
    "chat_generalization": ("chat: generalization", (230, 159, 0), "square", True),
    "chat_locality": ("chat: locality", (204, 121, 167), "triangle", True),
}
ROLLED_BACK = (150, 150, 150)
ROLLED_BACK_BAND = (242, 242, 242)
GRID = (225, 225, 225)
WIDTH, HEIGHT, EMPTY_HEIGHT = 900, 340, 130  # px: fits a 1024 px window without shrinking
SCALE = 3  # drawn this many times larger, then shrunk: smooth lines and markers
Y_MAX = 1.05
Y_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
# px around the plot; the legend is on the right, and Gradio lays the component's label over
# the top left corner
LEFT, RIGHT, TOP, BOTTOM = 52, 200, 50, 52
DODGE = 11  # px at most between the markers of neighbouring metrics at one id
RADIUS = 5  # px
TEXT = 13  # px
EMPTY = "No promotions yet"
EMPTY_HINT = ("Promote edits above: each promotion's reliability, generalization and "
              "locality appear here.")


@dataclass(frozen=True)
class Point:
    weight_edit: int
    value: float
    live: bool  # committed: in the weights now; False: rolled back


@dataclass(frozen=True)
class Series:
    metric: str
    label: str
    colour: tuple[int, int, int]
    marker: str
    dashed: bool
    points: tuple[Point, ...]


@dataclass(frozen=True)
class ChartData:
    series: tuple[Series, ...]
    ids: tuple[int, ...]  # every weight edit shown, in order
    rolled_back: tuple[int, ...]
    ticks: tuple[int, ...]  # labelled ids on the x axis: whole numbers only

    @property
    def empty(self) -> bool:
        return not self.series


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def x_ticks(ids: Iterable[int], most: int = 12) -> tuple[int, ...]:
    """Whole-number ticks over the ids: every id when they are few, else a round step."""
    ids = sorted(set(ids))
    if not ids:
        return ()
    if len(ids) <= most:
        return tuple(ids)
    low, high = ids[0], ids[-1]
    step = next(s for m in (1, 10, 100, 1000, 10**6) for s in (m, 2 * m, 5 * m)
                if (high - low) // s + 1 <= most)
    return tuple(range(math.ceil(low / step) * step, high + 1, step))


def promotion_series(rows: Iterable[Mapping]) -> ChartData:
    """What the chart shows, from `WeightEdits.table()` rows: one series per metric that
    any row has a number for, its points in id order, flagged live or rolled back."""
    rows = sorted((r for r in rows if isinstance(r.get("id"), int)), key=lambda r: r["id"])
    series = []
    for metric, (label, colour, marker, dashed) in METRICS.items():
        points = tuple(Point(r["id"], min(max(v, 0.0), Y_MAX), r.get("status") == "committed")
                       for r in rows if (v := _number(r.get(metric))) is not None)
        if points:
            series.append(Series(metric, label, colour, marker, dashed, points))
    ids = tuple(sorted({p.weight_edit for s in series for p in s.points}))
    rolled_back = tuple(r["id"] for r in rows
                        if r["id"] in ids and r.get("status") != "committed")
    return ChartData(tuple(series), ids, rolled_back, x_ticks(ids))


def _marker(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float,
            fill: tuple[int, int, int], outline: tuple[int, int, int], width: int) -> None:
    if shape == "square":
        r *= 0.9
        draw.rectangle([x - r, y - r, x + r, y + r], fill=fill, outline=outline, width=width)
    elif shape == "triangle":
        r *= 1.2
        draw.polygon([(x, y - r), (x + r, y + 0.75 * r), (x - r, y + 0.75 * r)], fill=fill,
                     outline=outline, width=width)
    else:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=outline, width=width)


def _line(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float],
          colour: tuple[int, int, int], width: int, dashed: bool) -> None:
    if not dashed:
        draw.line([a, b], fill=colour, width=width)
        return
    length = math.dist(a, b)
    dash = 7 * SCALE
    for start in range(0, int(length), 2 * dash):
        t0, t1 = start / length, min(start + dash, length) / length
        draw.line([(a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                   (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)],
                  fill=colour, width=width)


def _y_label(value: float) -> str:
    return f"{value:g}"


def _empty_figure(text: str, hint: str) -> Image.Image:
    s = SCALE
    image = Image.new("RGB", (WIDTH * s, EMPTY_HEIGHT * s), WHITE)
    draw = ImageDraw.Draw(image)
    draw.rectangle([s, s, (WIDTH - 1) * s, (EMPTY_HEIGHT - 1) * s], outline=GRID, width=s)
    middle = WIDTH * s // 2
    draw.text((middle, 54 * s), text, fill=INK, font=font(18 * s, True), anchor="mm")
    y = 76 * s
    for line in wrap(hint, font(TEXT * s), (WIDTH - 80) * s):
        draw.text((middle, y), line, fill=MUTED, font=font(TEXT * s), anchor="mt")
        y += line_height(font(TEXT * s))
    return image.resize((WIDTH, EMPTY_HEIGHT), Image.Resampling.LANCZOS)


def promotion_figure(rows: Iterable[Mapping], empty_text: str = EMPTY,
                     empty_hint: str = EMPTY_HINT) -> Image.Image:
    """The chart of `WeightEdits.table()` rows as a WIDTH x HEIGHT RGB image; with no scores
    to show, a short picture saying `empty_text` (and `empty_hint` under it)."""
    data = promotion_series(rows)
    if data.empty:
        return _empty_figure(empty_text, empty_hint)
    s = SCALE
    image = Image.new("RGB", (WIDTH * s, HEIGHT * s), WHITE)
    draw = ImageDraw.Draw(image)
    text, bold = font(TEXT * s), font(TEXT * s, True)
    x0, x1 = LEFT * s, (WIDTH - RIGHT) * s
    y0, y1 = TOP * s, (HEIGHT - BOTTOM) * s  # y0: the top of the plot, at Y_MAX

    low, high = data.ids[0], data.ids[-1]
    pad = max(0.5, (high - low) * 0.04)
    span = high - low + 2 * pad

    def px(weight_edit: float) -> float:
        return x0 + (weight_edit - low + pad) / span * (x1 - x0)

    def py(value: float) -> float:
        return y1 - value / Y_MAX * (y1 - y0)

    spacing = min((px(b) - px(a) for a, b in itertools.pairwise(data.ids)),
                  default=(x1 - x0) / 2)
    dodge = min(DODGE * s, spacing * 0.7 / len(data.series))  # never into the next id
    offsets = {sr.metric: (i - (len(data.series) - 1) / 2) * dodge
               for i, sr in enumerate(data.series)}
    for weight_edit in data.rolled_back:  # a pale band: this promotion is no longer live
        width = min(spacing * 0.9, (len(data.series) - 1) * dodge + (2 * RADIUS + 8) * s)
        draw.rectangle([px(weight_edit) - width / 2, y0, px(weight_edit) + width / 2, y1],
                       fill=ROLLED_BACK_BAND)
    for value in Y_TICKS:
        y = py(value)
        draw.line([(x0, y), (x1, y)], fill=GRID, width=s)
        draw.text((x0 - 8 * s, y), _y_label(value), fill=INK, font=text, anchor="rm")
    draw.rectangle([x0, y0, x1, y1], outline=(170, 170, 170), width=s)
    draw.text((x0, y0 - 8 * s), "score (1 = best)", fill=MUTED, font=text, anchor="ls")
    for weight_edit in data.ticks:
        x = px(weight_edit)
        draw.line([(x, y1), (x, y1 + 5 * s)], fill=INK, width=s)
        colour = ROLLED_BACK if weight_edit in data.rolled_back else INK
        draw.text((x, y1 + 8 * s), str(weight_edit), fill=colour, font=text, anchor="mt")
    draw.text(((x0 + x1) / 2, y1 + 8 * s + line_height(text) + 4 * s), "weight edit id",
              fill=MUTED, font=text, anchor="mt")

    for sr in data.series:  # lines first, so every marker sits on top of every line
        live = [(px(p.weight_edit) + offsets[sr.metric], py(p.value))
                for p in sr.points if p.live]
        for a, b in itertools.pairwise(live):
            _line(draw, a, b, sr.colour, 2 * s, sr.dashed)
    for sr in data.series:
        for p in sr.points:
            x, y = px(p.weight_edit) + offsets[sr.metric], py(p.value)
            if p.live:
                _marker(draw, sr.marker, x, y, RADIUS * s, sr.colour, WHITE, s)
            else:
                _marker(draw, sr.marker, x, y, RADIUS * s, WHITE, ROLLED_BACK, 2 * s)

    lx, ly = x1 + 18 * s, y0
    step = max(line_height(text) + 5 * s, 20 * s)
    for sr in data.series:
        middle = ly + step / 2
        _line(draw, (lx, middle), (lx + 28 * s, middle), sr.colour, 2 * s, sr.dashed)
        _marker(draw, sr.marker, lx + 14 * s, middle, RADIUS * s, sr.colour, WHITE, s)
        draw.text((lx + 36 * s, middle), sr.label, fill=INK, font=text, anchor="lm")
        ly += step
    if data.rolled_back:
        ly += step / 3
        middle = ly + step / 2
        _marker(draw, "circle", lx + 14 * s, middle, RADIUS * s, WHITE, ROLLED_BACK, 2 * s)
        draw.text((lx + 36 * s, middle), "rolled back", fill=INK, font=bold, anchor="lm")
        draw.text((lx + 36 * s, middle + line_height(text)), "(not in the weights)",
                  fill=MUTED, font=text, anchor="lm")
    return image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
