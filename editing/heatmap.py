"""Causal-tracing heat maps as PNG, drawn with Pillow (no plotting library needed).

Why: the per-(layer, token) scores are easier to judge as the paper's picture - one row per
prompt token (subject tokens starred), one column per layer, white where restoring the state
does nothing and dark where it brings the answer back.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from editing.trace import TraceResult

DARK = {"hidden": (84, 39, 143), "mlp": (0, 109, 44), "attn": (165, 15, 21)}
TITLE = {"hidden": "single restored layer", "mlp": "restored MLP window",
         "attn": "restored attention window"}
CELL_W, CELL_H = 14, 16
PAD = 8
BAR_W = 12
WHITE = (255, 255, 255)
INK = (30, 30, 30)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _safe(text: str) -> str:
    """Printable Latin-1 text: the default font has no other glyphs."""
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text.encode("latin-1", "replace").decode("latin-1")


def _size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return int(right - left), int(bottom - top)


def _labels(result: TraceResult) -> list[str]:
    s0, s1 = result.subject_range
    return [_safe(repr(t)[1:-1] if not t.strip() else t) + ("*" if s0 <= i < s1 else "")
            for i, t in enumerate(result.tokens)]


def _colour(value: float, dark: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(round(255 + (d - 255) * value) for d in dark)


def _panel(result: TraceResult) -> Image.Image:
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = _labels(result)
    label_w = max(_size(probe, s, font)[0] for s in labels) + PAD
    _, text_h = _size(probe, "Ag0", font)
    title = [f"{result.kind}: {TITLE.get(result.kind, '')}",
             _safe(f"answer {result.answer!r}: p clean {result.clean_prob:.3f}, "
                   f"p corrupted {result.corrupted_prob:.3f}")]
    title_h = len(title) * (text_h + 4) + PAD
    n_layers, n_tokens = result.scores.shape
    grid_w, grid_h = n_layers * CELL_W, n_tokens * CELL_H
    low = float(result.corrupted_prob)
    high = max(float(np.max(result.scores)), low + 1e-9)
    bar_labels = [f"{high:.3f}", f"{low:.3f}"]
    bar_w = BAR_W + PAD + max(_size(probe, s, font)[0] for s in bar_labels)
    width = max(PAD + label_w + grid_w + 2 * PAD + bar_w,
                PAD + max(_size(probe, s, font)[0] for s in title)) + PAD
    height = title_h + grid_h + 2 * (text_h + 6) + PAD
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)

    y = PAD // 2
    for line in title:
        draw.text((PAD, y), line, fill=INK, font=font)
        y += text_h + 4
    x0, y0 = PAD + label_w, title_h
    dark = DARK.get(result.kind, (40, 40, 40))
    shade = np.clip((result.scores - low) / (high - low), 0.0, 1.0)
    for layer in range(n_layers):
        for token in range(n_tokens):
            x, yy = x0 + layer * CELL_W, y0 + token * CELL_H
            draw.rectangle([x, yy, x + CELL_W - 1, yy + CELL_H - 1],
                           fill=_colour(float(shade[layer, token]), dark))
    draw.rectangle([x0 - 1, y0 - 1, x0 + grid_w, y0 + grid_h], outline=(160, 160, 160))
    for token, label in enumerate(labels):
        w, _ = _size(probe, label, font)
        draw.text((x0 - PAD // 2 - w, y0 + token * CELL_H + (CELL_H - text_h) // 2 - 1), label,
                  fill=INK, font=font)
    for layer in range(0, n_layers, 5):
        w, _ = _size(probe, str(layer), font)
        x = x0 + layer * CELL_W + CELL_W // 2
        draw.line([x, y0 + grid_h, x, y0 + grid_h + 3], fill=INK)
        draw.text((x - w // 2, y0 + grid_h + 5), str(layer), fill=INK, font=font)
    caption = "layer"
    w, _ = _size(probe, caption, font)
    draw.text((x0 + (grid_w - w) // 2, y0 + grid_h + text_h + 10), caption, fill=INK, font=font)

    # colour bar: dark = the highest restored probability, white = the corrupted one
    bx = x0 + grid_w + 2 * PAD
    for row in range(grid_h):
        draw.line([bx, y0 + row, bx + BAR_W - 1, y0 + row],
                  fill=_colour(1.0 - row / max(grid_h - 1, 1), dark))
    draw.rectangle([bx - 1, y0 - 1, bx + BAR_W, y0 + grid_h], outline=(160, 160, 160))
    draw.text((bx + BAR_W + 4, y0), bar_labels[0], fill=INK, font=font)
    draw.text((bx + BAR_W + 4, y0 + grid_h - text_h - 2), bar_labels[1], fill=INK, font=font)
    return image


def _save(image: Image.Image, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


def render_heatmap(result: TraceResult, path: Path) -> Path:
    """One trace as a PNG at `path`; returns the path."""
    return _save(_panel(result), path)


def render_heatmaps(results: list[TraceResult], path: Path) -> Path:
    """Several traces (usually hidden, mlp, attn of one prompt) side by side in one PNG."""
    if not results:
        raise ValueError("no trace results to draw")
    panels = [_panel(r) for r in results]
    width = sum(p.width for p in panels)
    height = max(p.height for p in panels)
    image = Image.new("RGB", (width, height), WHITE)
    x = 0
    for panel in panels:
        image.paste(panel, (x, 0))
        x += panel.width
    return _save(image, path)
