"""Causal-tracing heat maps as one PNG, drawn with Pillow.

Why: the per-(layer, token) scores are easier to judge as the paper's picture - one row per
prompt token (subject tokens starred and bold), one column per layer, white where restoring
the state does nothing and dark where it brings the answer back. The picture is shown in the
Admin tab, so it is laid out for the page: at most MAX_WIDTH px wide, so that a 1024 px
window shows it unshrunk, text of 14 px and more, a title naming the prompt and the traced
answer, and a caption under each panel's name saying what was restored.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from editing.drawing import (
    INK,
    MUTED,
    WHITE,
    draw_lines,
    font,
    line_height,
    printable,
    text_width,
    wrap,
)
from editing.trace import TraceResult

DARK = {"hidden": (84, 39, 143), "mlp": (0, 109, 44), "attn": (165, 15, 21)}
NAME = {"hidden": "Hidden states", "mlp": "MLP output", "attn": "Attention output"}
MAX_WIDTH = 960  # px; Gradio gives an image about 958 px in a 1024 px window
MIN_WIDTH = 720  # px; room for the title and captions when a model has few layers
TEXT, SMALL, HEAD, TITLE_PX = 15, 14, 15, 19  # font sizes, px
CELL_H = 24  # px per token row
CELL_W_MIN, CELL_W_MAX = 8, 26  # px per layer column
PANEL_MIN = 260  # px; a panel's text and colour bar need this much even over a few layers
PAD, GAP = 14, 28  # outer margin; space between panels
TOP_PAD = 36  # px above the title: Gradio lays the component's label over the image there
BAR_H = 12
LABEL_CHARS = 22
FRAME = (160, 160, 160)


def answer_text(result: TraceResult) -> str:
    """The traced answer as a reader sees it: without the token's leading space."""
    return printable(result.answer.strip() or result.answer)


def prompt_text(result: TraceResult) -> str:
    """The traced prompt; of a chat transcript only its last line (the words before the
    answer), since the template's markup says nothing to a reader."""
    prompt = (result.prompt or "".join(result.tokens)).strip()
    if "\n" in prompt:
        return "… " + printable(prompt.rsplit("\n", 1)[1].strip())
    return printable(prompt)


def trace_title(results: list[TraceResult]) -> str:
    """'Where the model recalls 'Paris' for: The Eiffel Tower is located in'."""
    first = results[0]
    return f"Where the model recalls '{answer_text(first)}' for: {prompt_text(first)}"


def caption(result: TraceResult) -> str:
    """What one panel's cells mean."""
    span = f"a window of {result.window} layers" if result.window > 1 else "one layer"
    return {
        "hidden": "Restoring the whole residual stream at this token and layer: how much of "
                  "the answer comes back.",
        "mlp": f"Restoring only the MLP output ({span} around this layer) at this token.",
        "attn": f"The same for the attention output ({span} around this layer).",
    }.get(result.kind, "Restoring this state at this token and layer.")


def _labels(result: TraceResult) -> list[tuple[str, bool]]:
    """(label, is_subject) per token; blank tokens spelled out, long ones cut."""
    s0, s1 = result.subject_range
    labels = []
    for i, token in enumerate(result.tokens):
        text = printable(repr(token)[1:-1] if not token.strip() else token.strip())
        if len(text) > LABEL_CHARS:
            text = text[:LABEL_CHARS - 1] + "…"
        subject = s0 <= i < s1
        labels.append((text + (" *" if subject else ""), subject))
    return labels


def _colour(value: float, dark: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(round(255 + (d - 255) * value) for d in dark)


def _tick_step(cell_w: int, n_layers: int) -> int:
    """Every how many layers a number fits under the grid without touching the next."""
    need = text_width(str(n_layers), font(SMALL)) + 8
    for step in (1, 2, 4, 5, 10, 20, 50):
        if step * cell_w >= need:
            return step
    return 100


@dataclass
class _Layout:
    cols: int
    cell_w: int
    label_w: int
    grid_w: int  # the cells
    panel_w: int  # the panel's text and colour bar: at least the cells
    width: int


def _layout(results: list[TraceResult]) -> _Layout:
    """Panels side by side when their cells can be CELL_W_MIN wide within MAX_WIDTH, else
    in fewer columns (stacked, one per row, at worst)."""
    n_layers = max(r.scores.shape[0] for r in results)
    label_w = max(text_width(text, font(TEXT, bold)) for r in results
                  for text, bold in _labels(r)) + 10
    for cols in range(len(results), 0, -1):
        room = MAX_WIDTH - 2 * PAD - label_w - (cols - 1) * GAP
        cell_w = min(CELL_W_MAX, room // (cols * n_layers))
        if cell_w >= CELL_W_MIN or cols == 1:
            cell_w = max(cell_w, 3)
            grid_w = n_layers * cell_w
            panel_w = max(grid_w, PANEL_MIN)
            width = max(MIN_WIDTH, 2 * PAD + label_w + cols * panel_w + (cols - 1) * GAP)
            if width <= MAX_WIDTH or cols == 1:
                return _Layout(cols, cell_w, label_w, grid_w, panel_w, width)
    raise AssertionError("unreachable")


def _header(result: TraceResult, width: int) -> tuple[list[str], list[str]]:
    return (wrap(NAME.get(result.kind, result.kind), font(HEAD, True), width),
            wrap(caption(result), font(SMALL), width))


def _footer_h() -> int:
    """Layer numbers, 'layer', the colour bar's label, the bar and its end values."""
    return 6 + 2 * line_height(font(SMALL)) + 8 + line_height(font(SMALL)) + BAR_H + \
        line_height(font(SMALL)) + 6


def _panel(draw: ImageDraw.ImageDraw, result: TraceResult, x0: int, top: int, head_h: int,
           layout: _Layout) -> None:
    """One panel: name, caption, grid, layer axis, colour bar; its grid starts at top+head_h."""
    small, head = font(SMALL), font(HEAD, True)
    name, words = _header(result, layout.panel_w)
    y = draw_lines(draw, (x0, top), name, head)
    draw_lines(draw, (x0, y + 2), words, small, MUTED)

    n_layers, n_tokens = result.scores.shape
    cell_w, y0 = layout.cell_w, top + head_h
    grid_h = n_tokens * CELL_H
    low = float(result.corrupted_prob)
    high = max(float(np.max(result.scores)), low + 1e-9)
    dark = DARK.get(result.kind, (40, 40, 40))
    shade = np.clip((result.scores - low) / (high - low), 0.0, 1.0)
    for layer in range(n_layers):
        for token in range(n_tokens):
            x, yy = x0 + layer * cell_w, y0 + token * CELL_H
            draw.rectangle([x, yy, x + cell_w - 1, yy + CELL_H - 1],
                           fill=_colour(float(shade[layer, token]), dark))
    draw.rectangle([x0 - 1, y0 - 1, x0 + n_layers * cell_w, y0 + grid_h], outline=FRAME)

    y = y0 + grid_h + 4
    step = _tick_step(cell_w, n_layers)
    for layer in range(0, n_layers, step):
        x = x0 + layer * cell_w + cell_w // 2
        draw.line([x, y, x, y + 3], fill=INK)
        draw.text((x, y + 5), str(layer), fill=INK, font=small, anchor="mt")
    y += 6 + line_height(small)
    draw.text((x0 + layout.grid_w // 2, y), "layer", fill=MUTED, font=small, anchor="mt")
    y += line_height(small) + 8

    # colour bar: white = the corrupted run's probability, dark = the best restored one
    bar_w = max(layout.grid_w, 170)  # under the cells; wide enough for its label
    label = f"probability of '{answer_text(result)}'"
    draw.text((x0 + bar_w // 2, y), label, fill=INK, font=small, anchor="mt")
    y += line_height(small)
    for i in range(bar_w):
        draw.line([x0 + i, y, x0 + i, y + BAR_H - 1],
                  fill=_colour(i / max(bar_w - 1, 1), dark))
    draw.rectangle([x0 - 1, y - 1, x0 + bar_w, y + BAR_H], outline=FRAME)
    y += BAR_H + 3
    draw.text((x0, y), f"{low:.2f}", fill=INK, font=small, anchor="lt")
    draw.text((x0 + bar_w, y), f"{high:.2f}", fill=INK, font=small, anchor="rt")


def trace_figure(results: list[TraceResult]) -> Image.Image:
    """The traces of one prompt (usually hidden, mlp, attn) as one picture: title, a line on
    the clean and corrupted probabilities, then one panel per result."""
    if not results:
        raise ValueError("no trace results to draw")
    layout = _layout(results)
    title_face, small, text = font(TITLE_PX, True), font(SMALL), font(TEXT)
    first = results[0]
    title = wrap(trace_title(results), title_face, layout.width - 2 * PAD)
    subtitle = wrap(f"p('{answer_text(first)}') is {first.clean_prob:.2f} with the clean prompt "
                    f"and {first.corrupted_prob:.2f} with the subject's tokens (*) noised. "
                    "Darker cells bring more of it back.", small, layout.width - 2 * PAD)
    top_h = TOP_PAD + len(title) * line_height(title_face) + 2 + \
        len(subtitle) * line_height(small) + PAD
    rows = [results[i:i + layout.cols] for i in range(0, len(results), layout.cols)]
    blocks = []
    for row in rows:
        head_h = max(len(name) * line_height(font(HEAD, True)) + 2 + len(words) *
                     line_height(small) for name, words in
                     (_header(r, layout.panel_w) for r in row)) + 8
        grid_h = max(r.scores.shape[1] for r in row) * CELL_H
        blocks.append((row, head_h, head_h + grid_h + _footer_h()))
    height = top_h + sum(h for _, _, h in blocks) + GAP * (len(blocks) - 1) + PAD

    image = Image.new("RGB", (layout.width, height), WHITE)
    draw = ImageDraw.Draw(image)
    y = draw_lines(draw, (PAD, TOP_PAD), title, title_face)
    draw_lines(draw, (PAD, y + 2), subtitle, small, MUTED)
    top = top_h
    for row, head_h, block_h in blocks:
        for i, (label, subject) in enumerate(_labels(row[0])):
            draw.text((PAD + layout.label_w - 8, top + head_h + i * CELL_H + CELL_H // 2),
                      label, fill=INK, font=font(TEXT, subject) if subject else text,
                      anchor="rm")
        for j, result in enumerate(row):
            x0 = PAD + layout.label_w + j * (layout.panel_w + GAP)
            _panel(draw, result, x0, top, head_h, layout)
        top += block_h + GAP
    image.info["title"] = trace_title(results)
    return image


def _save(image: Image.Image, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = PngInfo()
    if image.info.get("title"):
        meta.add_text("Title", image.info["title"])
    image.save(path, format="PNG", pnginfo=meta)
    return path


def render_heatmap(result: TraceResult, path: Path) -> Path:
    """One trace as a PNG at `path`; returns the path."""
    return _save(trace_figure([result]), path)


def render_heatmaps(results: list[TraceResult], path: Path) -> Path:
    """Several traces of one prompt (usually hidden, mlp, attn) as one PNG at `path`, the
    title also in the PNG's Title text; returns the path."""
    return _save(trace_figure(results), path)

