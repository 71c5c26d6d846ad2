"""Every benchmark and experiment script parses its command line and shows its help without
loading a model: the figures in BENCHMARKS.md and docs/experiments/ are only reproducible
while their commands still start."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(f"{folder}.{p.stem}" for folder in ("bench", "experiments")
                 for p in (REPO / folder).glob("*.py") if p.stem not in ("__init__", "common"))
DRIVERS = ("rome_select", "memit_select", "mend_select", "locality_margins")


def test_every_script_is_listed() -> None:
    assert {f"experiments.{d}" for d in DRIVERS} | {"bench.promotions"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    if name.split(".")[1] in DRIVERS:
        assert "--data-dir" in out and "--json" in out


def test_model_args_parse() -> None:
    import argparse

    from bench.common import add_model_args

    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--data-dir", "/tmp/x", "--json", "out.json"])
    assert args.data_dir == Path("/tmp/x") and args.json == Path("out.json")
    assert parser.parse_args([]).data_dir is None


def test_replicas_arguments() -> None:
    """bench.replicas: --quick is the smoke run; bad counts and store URLs stop at parsing."""
    from bench.replicas import FACTS, parse_args

    quick = parse_args(["--quick"])
    assert (quick.replicas, quick.clients, quick.rounds, quick.repeats, quick.models) == \
        ([2], [1, 2], 1, 1, ["shared"])
    default = parse_args([])
    assert (default.replicas, default.clients, default.method) == ([1, 2], [1, 2, 4, 8], "rome")
    for bad in (["--clients", "0"], ["--replicas", "0", "2"], ["--repeats", str(len(FACTS) + 1)],
                ["--store-url", "/tmp/amend.db"], ["--models", "both"]):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(bad)
        assert exit_info.value.code == 2, bad


def test_replicas_reads_the_apps_catch_up_line() -> None:
    """The line editing/promote.py logs when an instance applies weight edits from the shared
    store, as ui.py's log format writes it: what was applied, how long, and when."""
    import logging
    import time

    from bench.replicas import CATCH_UP_LINE, log_time

    record = logging.LogRecord("editing.promote", logging.INFO, __file__, 1,
                               "Weight edits from the shared store: applied %s, rolled back %s "
                               "(%.2f s)", ([3], "none", 6.54), None)
    line = logging.Formatter("%(asctime)s %(name)s: %(message)s").format(record)
    (stamp, applied, seconds), = CATCH_UP_LINE.findall(f"other line\n{line}\nlast line\n")
    assert (applied, seconds) == ("[3]", "6.54")
    assert abs(log_time(stamp) - record.created) < 0.002
    assert abs(log_time(stamp) - time.time()) < 60
