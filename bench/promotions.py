"""Sequential promotions through the guard, as an admin would make them one after another.

Each record becomes an edit (as a chat correction would), is promoted alone with `--method`
through `WeightEdits.promote` (edit on a copy, guard, commit or refuse), and every
`--every` promotions (and at the end) the live model is checked: reliability of *all* edits
committed so far (token accuracy of the target after the prompt) and locality on the fixed
probes against the base model. This is where sequential editing collapses if it does.

    python -m bench.promotions --method rome --limit 100 --json artifacts/promotions-rome.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.common import (REPO_ROOT, add_common_args, build_assistant_in, cache_from_args,
                          data_dir, machine_info, machine_line, markdown_table, run_cli,
                          setup_logging, time_limit, write_json)

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "zsre" / "zsre_mend_train-1k-first500.json"


def live_scores(assistant, promoted: list, probes, base_tokens) -> dict:
    from editing.metrics import token_accuracy
    from editing.promote import probe_locality, probe_predictions

    llm = assistant.llm
    reliability = [token_accuracy(llm.model, llm.tokenizer, e.prompt, e.target_new)
                   for e in promoted]
    after = probe_predictions(llm.model, llm.tokenizer, probes)
    return {"promoted": len(promoted),
            "reliability": sum(reliability) / len(reliability) if reliability else None,
            "locality": probe_locality(base_tokens, after)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.promotions", description=__doc__)
    parser.add_argument("--method", default="rome", choices=["rome", "memit", "mend", "ft"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--every", type=int, default=10, help="check the live model this often")
    parser.add_argument("--threads", type=int, default=1)
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    from assistant.corrections import Correction
    from editing.promote import load_probes, probe_predictions
    from editing.records import load_records

    records = load_records(args.data, args.limit)
    rows, checks = [], []
    with data_dir(args.data_dir, "promotions") as data, \
            time_limit(args.timeout or 4 * 3600, "promotions benchmark"):
        assistant, _ = build_assistant_in(data, cache_from_args(args), args.threads,
                                          quiet=not args.verbose)
        if assistant.store.count_edits():
            raise SystemExit(f"error: {data} already holds edits; use a fresh --data-dir")
        weights = assistant.weights
        probes = load_probes(weights.guard.locality_probes)
        llm = assistant.llm
        base_tokens = probe_predictions(llm.model, llm.tokenizer, probes)
        promoted = []
        for i, record in enumerate(records, 1):
            edit, _ = assistant.add_edit(Correction(record.subject, record.prompt,
                                                    record.target_new), source="bench")
            started = time.perf_counter()
            result = weights.promote([edit.id], args.method, actor="bench")
            rows.append({"step": i, "edit": edit.id, "committed": result.committed,
                         "seconds": round(time.perf_counter() - started, 2),
                         "scores": result.scores, "message": result.message})
            if result.committed:
                promoted.append(edit)
            print(f"{i}/{len(records)} {'committed' if result.committed else 'refused'} "
                  f"in {rows[-1]['seconds']} s: {record.subject} → {record.target_new}"
                  + ("" if result.committed else f" ({result.message})"), flush=True)
            if i % args.every == 0 or i == len(records):
                checks.append({"step": i, **live_scores(assistant, promoted, probes,
                                                        base_tokens)})
                print(json.dumps(checks[-1]), flush=True)
    committed = sum(r["committed"] for r in rows)
    table = markdown_table(
        ["after promotions", "committed", "reliability (all committed)", "locality"],
        [[c["step"], c["promoted"], f"{c['reliability']:.3f}" if c["reliability"] is not None
          else "-", f"{c['locality']:.3f}"] for c in checks])
    print(f"\n{args.method}: {committed}/{len(rows)} promotions committed; "
          f"mean {sum(r['seconds'] for r in rows) / max(len(rows), 1):.1f} s per promotion")
    print(table)
    info = machine_info(args.threads)
    print(machine_line(info))
    write_json(args.json, {"benchmark": "promotions", "method": args.method,
                           "data": str(args.data), "machine": info, "rows": rows,
                           "checks": checks})
    return 0


if __name__ == "__main__":
    run_cli(main)
