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
