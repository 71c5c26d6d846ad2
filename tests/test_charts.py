"""The Admin tab's promotion chart (amend_ui/charts.py), from hand-made `WeightEdits.table()`
rows: the data it plots, and the picture's colours where the plot is (the legend, right of
the plot, repeats every colour, so pixel checks look only left of it)."""
from __future__ import annotations

from PIL import Image

from amend_ui.charts import (
    EMPTY_HEIGHT,
    HEIGHT,
    METRICS,
    RIGHT,
    ROLLED_BACK,
    WIDTH,
    promotion_figure,
    promotion_series,
    x_ticks,
)
from amend_ui.handlers import WeightHandlers
from assistant.runtime import Runtime
from config import AppSettings


def row(weight_edit: int, status: str = "committed", chat: bool = False, **scores) -> dict:
    values = {"reliability": 1.0, "generalization": 0.7, "locality": 0.9973,
              "total_locality": 0.99, "portability": None}
    if chat:
        values.update(chat_reliability=1.0, chat_generalization=0.5, chat_locality=1.0)
    values.update(scores)
    return {"id": weight_edit, "method": "rome", "status": status, "edits": [weight_edit],
            "layers": [4], "carried": 0, "seconds": 3.2, **values}


def plot_colours(image: Image.Image) -> set[tuple[int, int, int]]:
    plot = image.convert("RGB").crop((0, 0, WIDTH - RIGHT, image.height))
    return {c for _, c in plot.getcolors(maxcolors=1 << 20)}


def near(colours: set, target: tuple[int, int, int], tolerance: int = 12) -> bool:
    return any(all(abs(a - b) <= tolerance for a, b in zip(c, target, strict=True))
               for c in colours)


def test_x_ticks_are_whole_numbers():
    assert x_ticks([3, 1, 2]) == (1, 2, 3)
    assert x_ticks([7]) == (7,)
    many = x_ticks(range(3, 44))
    assert all(isinstance(t, int) for t in many) and len(many) <= 12
    assert many == (5, 10, 15, 20, 25, 30, 35, 40)
    assert x_ticks([]) == ()


def test_one_marked_series_per_metric_in_id_order():
    data = promotion_series([row(2, chat=True), row(1), row(3, "rolled_back")])
    assert [s.metric for s in data.series] == list(METRICS)  # total_locality etc. not drawn
    assert data.ids == data.ticks == (1, 2, 3)
    assert len({(s.colour, s.dashed) for s in data.series}) == len(data.series)
    for series in data.series:
        assert series.marker in ("circle", "square", "triangle")
        assert [p.weight_edit for p in series.points] == sorted(p.weight_edit
                                                                for p in series.points)
    chat = next(s for s in data.series if s.metric == "chat_reliability")
    assert [p.weight_edit for p in chat.points] == [2]  # only rows that have the score
    assert data.rolled_back == (3,)
    assert [p.live for p in data.series[0].points] == [True, True, False]


def test_values_are_clamped_and_non_numbers_skipped():
    data = promotion_series([row(1, reliability=1.3, generalization="n/a", locality=None)])
    assert [s.metric for s in data.series] == ["reliability"]
    assert data.series[0].points[0].value == 1.05


def test_a_single_promotion_shows_a_marker_per_metric():
    image = promotion_figure([row(1)])
    assert image.size == (WIDTH, HEIGHT) and image.mode == "RGB"
    colours = plot_colours(image)
    for metric in ("reliability", "generalization", "locality"):
        assert near(colours, METRICS[metric][1]), metric
    assert not near(colours, METRICS["chat_reliability"][1], 6)


def test_rolled_back_points_are_grey_and_hollow():
    """A rolled-back promotion's markers are drawn without colour (the plot area holds
    only greys), and the legend gains an entry for them."""
    def spread(colours):
        return max(max(c) - min(c) for c in colours)

    live = promotion_figure([row(1)])
    rolled = promotion_figure([row(1, "rolled_back")])
    assert spread(plot_colours(live)) > 100 and spread(plot_colours(rolled)) <= 3
    assert near(plot_colours(rolled), ROLLED_BACK, 20)
    legend = (WIDTH - RIGHT, 0, WIDTH, HEIGHT)
    assert live.crop(legend).tobytes() != rolled.crop(legend).tobytes()
    mixed = promotion_series([row(1), row(2, "rolled_back"), row(3)])
    assert mixed.rolled_back == (2,)
    assert all([p.live for p in s.points] == [True, False, True] for s in mixed.series)


def test_empty_state_says_so():
    for rows in ([], [{"id": 1, "status": "committed", "reliability": None}]):
        assert promotion_series(rows).empty
        image = promotion_figure(rows)
        assert image.size == (WIDTH, EMPTY_HEIGHT)
        grey = image.convert("L")
        assert grey.getextrema()[0] < 60  # dark text drawn
        assert sum(grey.histogram()[250:]) > 0.9 * WIDTH * EMPTY_HEIGHT  # and little else


def test_locked_chart_needs_no_model(tmp_path):
    handlers = WeightHandlers(Runtime(AppSettings(data_dir=tmp_path, shared=True)))
    assert handlers.promotion_chart(False).size == (WIDTH, EMPTY_HEIGHT)
