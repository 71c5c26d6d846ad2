"""Which locality probes each committed weight edit of a data folder moved, in order.

Replays the folder's committed deltas one by one on the unedited base model and, after each,
prints the guard's probes whose argmax tokens changed (against the model just before that
delta) and the locality against the unedited model so far. This is how sequential drift is
read: a few facts lost, or many near-tie tokens flipping back and forth.

    python -m experiments.delta_drift --data-dir <folder of a promotions run> --limit 20
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import run_cli, set_threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.delta_drift", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N")
    args = parser.parse_args(argv)
    set_threads(1)
    from assistant.llm import ChatLLM
    from editing.deltas import Delta, WeightState
    from editing.probes import load_probes, probe_locality, probe_predictions
    from editing.promote import guard_config
    from store.db import Store

    llm = ChatLLM.load(None, args.data_dir)
    model, tok = llm.model, llm.tokenizer
    probes = load_probes(guard_config().locality_probes)
    state = WeightState(model)
    base = probe_predictions(model, tok, probes)
    previous = base
    rows = Store(args.data_dir / "amend.db").weight_edits("committed")[:args.limit]
    for step, row in enumerate(rows, 1):
        state.apply(Delta.load(args.data_dir / row["delta_path"]), key=row["id"])
        now = probe_predictions(model, tok, probes)
        moved = [i for i, (a, b) in enumerate(zip(previous, now)) if a != b]
        print(f"{step}: weight edit #{row['id']} moved {len(moved)} probes; locality against "
              f"the unedited model {probe_locality(base, now):.3f}", flush=True)
        for i in moved:
            print(f"    {probes[i][0][:60]!r}: {tok.decode(previous[i])[:40]!r} -> "
                  f"{tok.decode(now[i])[:40]!r}")
        previous = now
    return 0


if __name__ == "__main__":
    run_cli(main)
