"""Every benchmark script parses its command line and shows its help without loading a model:
the figures in BENCHMARKS.md are only reproducible while their commands still start."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in ("__init__", "common"))


def test_every_script_is_listed() -> None:
    assert {"rome_select", "memit_select", "mend_select", "locality_margins",
            "promotions"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"bench.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    if name in ("rome_select", "memit_select", "mend_select", "locality_margins"):
        assert "--data-dir" in out and "--json" in out


def test_model_args_parse() -> None:
    import argparse

    from bench.common import add_model_args

    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--data-dir", "/tmp/x", "--json", "out.json"])
    assert args.data_dir == Path("/tmp/x") and args.json == Path("out.json")
    assert parser.parse_args([]).data_dir is None
