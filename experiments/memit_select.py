"""Choose MEMIT's covariance weight λ for a batch, on held-out *training* subjects.

The value search (MEMIT's costly half) does not depend on λ, so it runs once for the batch
(cached with `--targets`); each λ then only spreads the update over the layers and is scored
teacher-forced on every record of the batch: reliability, generalization, locality.

    python -m experiments.memit_select --batch 50 --weights 500 1000 3000 --fact-tokens 0 40000 \
        --targets artifacts/select/memit-targets.pt --json artifacts/select/memit.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from bench.common import (add_model_args, load_default_model, markdown_table, run_cli, set_threads,
                          write_json)
from errors import AmendError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.memit_select", description=__doc__)
    parser.add_argument("--batch", type=int, default=50, help="edits in the batch")
    parser.add_argument("--weights", type=float, nargs="+", default=[1000.0, 3000.0])
    parser.add_argument("--fact-tokens", type=int, nargs="+", default=None,
                        help="covariance_fact_tokens values to try (default: the config's)")
    parser.add_argument("--overrides", default="{}",
                        help="JSON object of config fields to change first (value search too)")
    parser.add_argument("--targets", type=Path, default=None, help="cache of the value search")
    add_model_args(parser)
    args = parser.parse_args(argv)
    set_threads(1)
    import torch

    from editing.deltas import WeightState
    from editing.memit.memit import memit_targets, memit_update
    from editing.methods import load_method
    from assistant.metrics import locality_baseline, teacher_forced_scores
    from assistant.records import split_by_subject
    from editing.systems import edit_requests

    llm, root = load_default_model(args.data_dir)
    editor = load_method("memit", llm, root)
    editor.cfg = dataclasses.replace(editor.cfg, **json.loads(args.overrides))
    _, valid = split_by_subject()
    # CounterFact and zsRE alternate, as far as each has records
    pool = [r for pair in zip(valid["counterfact"], valid["zsre"]) for r in pair]
    pool += valid["counterfact"][len(valid["zsre"]):]
    records = pool[:args.batch]
    requests = edit_requests(records)
    model, tok = llm.model, llm.tokenizer
    started = time.perf_counter()
    if args.targets and args.targets.exists():
        saved = torch.load(args.targets)
        targets, stats = saved["targets"], saved["stats"]
    else:
        targets, stats = memit_targets(model, tok, requests, editor.cfg, stats_root=root,
                                       chat_format=llm.chat_text,
                                       fingerprint=editor.base_fingerprint)
        if args.targets:
            args.targets.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"targets": targets, "stats": stats}, args.targets)
    value_seconds = time.perf_counter() - started
    print(f"value search: {len(records)} edits in {value_seconds:.0f} s", flush=True)
    baselines = [locality_baseline(model, tok, r) for r in records]
    state = WeightState(model)
    rows = []
    grid = [(f, w) for f in args.fact_tokens or [editor.cfg.covariance_fact_tokens]
            for w in args.weights]
    for facts, weight in grid:
        cfg = dataclasses.replace(editor.cfg, covariance_weight=weight,
                                  covariance_fact_tokens=facts)
        t0 = time.perf_counter()
        delta = memit_update(model, tok, requests, cfg, targets, stats, stats_root=root,
                             fingerprint=editor.base_fingerprint, progress=lambda _m: None)
        update_seconds = time.perf_counter() - t0
        state.apply(delta)
        try:
            scores = [teacher_forced_scores(model, tok, r, base)
                      for r, base in zip(records, baselines)]
        finally:
            state.revert_all()
        rows.append({"covariance_fact_tokens": facts, "covariance_weight": weight,
                     **{k: round(statistics.mean(s[k] for s in scores), 3)
                        for k in ("rel", "gen", "loc")},
                     "update_s": round(update_seconds, 1)})
        print(rows[-1], flush=True)
    headers = list(rows[0])
    print(markdown_table(headers, [[row[h] for h in headers] for row in rows]))
    if args.json:
        write_json(args.json, {"records": len(records), "value_seconds": value_seconds,
                               "rows": rows, "config": dataclasses.asdict(editor.cfg)})
    return 0


if __name__ == "__main__":
    run_cli(main, (AmendError,))
