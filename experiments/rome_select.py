"""Choose ROME's (or MEMIT's, ft's) hyperparameters on held-out *training* subjects.

Each variant is the shipped config with some fields overridden (JSON objects on the command
line). Every variant edits the same validation records of the train split
(`assistant.records.split_by_subject`; the evaluation sets are never read), one at a time, and is
scored as `editing.evaluate` scores: teacher-forced reliability, generalization and locality,
plus the chat answer to the prompt (chat reliability) and seconds per edit.

    python -m experiments.rome_select --records 10 --variants '{}' '{"stop_loss": 0.2}' \
        --json artifacts/rome-select.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

from bench.common import (add_model_args, load_default_model, markdown_table, run_cli, set_threads,
                          write_json)
from editing.registry import NAMES
from errors import AmendError


def other_probes(valid: dict, edited: list, count: int) -> list[tuple[str, str]]:
    """Locality prompts of validation records not edited here and not among the promotion
    guard's probes (those stay an independent check): a wider locality signal than each
    record's own single prompt."""
    from editing.probes import load_probes

    guard = {prompt for prompt, _ in load_probes()}
    skip = {id(r) for r in edited}
    # sources alternate from the end of each list while both last, then the longer one goes on
    lists = [list(reversed(valid[s])) for s in sorted(valid)]
    records = [rs[i] for i in range(max(map(len, lists), default=0)) for rs in lists
               if i < len(rs)]
    pool = [(p.prompt, p.answer) for r in records if id(r) not in skip
            for p in r.locality if p.prompt not in guard]
    return pool[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.rome_select", description=__doc__)
    parser.add_argument("--method", default="rome", choices=[n for n in NAMES if n != "mend"])
    parser.add_argument("--variants", nargs="+", default=["{}"],
                        help="JSON objects of config fields to override ('{}' = shipped)")
    parser.add_argument("--records", type=int, default=10, help="per source (CF, zsRE)")
    parser.add_argument("--skip", type=int, default=0, help="start at this record per source")
    parser.add_argument("--chat-tokens", type=int, default=24)
    parser.add_argument("--probes", type=int, default=50,
                        help="also score locality on the locality prompts of this many other "
                             "validation records (probe_loc; 0 = off)")
    add_model_args(parser)
    parser.add_argument("--sequential", action="store_true",
                        help="keep every edit (one after another, as promotions are); the "
                             "variant's row then adds the reliability of all edits and probe "
                             "locality at the end")
    parser.add_argument("--verbose", action="store_true", help="print every record's scores")
    args = parser.parse_args(argv)
    set_threads(1)

    from editing.deltas import WeightState
    from editing.methods import load_method
    from assistant.metrics import (contains_answer, locality_baseline, target_log_prob,
                                 teacher_forced_scores, token_accuracy)
    from editing.probes import probe_locality, probe_predictions
    from assistant.records import split_by_subject
    from editing.systems import edit_requests

    llm, root = load_default_model(args.data_dir)
    editor = load_method(args.method, llm, root)
    shipped = editor.cfg
    _, valid = split_by_subject()
    records = [r for source in sorted(valid)
               for r in valid[source][args.skip:args.skip + args.records]]
    state = WeightState(llm.model)
    model, tok = llm.model, llm.tokenizer
    baselines = [locality_baseline(model, tok, r) for r in records]

    def leak(record) -> float:
        """Log-probability of the new target after the record's locality prompts: for
        CounterFact, the same relation about another subject (where an edit bleeds)."""
        return statistics.mean([target_log_prob(model, tok, p.prompt, record.target_new)
                                for p in record.locality] or [0.0])
    leaks = [leak(r) for r in records]
    probes = other_probes(valid, records, args.probes)
    probe_base = probe_predictions(model, tok, probes)
    rows = []
    for variant in args.variants:
        overrides = json.loads(variant)
        editor.cfg = dataclasses.replace(shipped, **overrides)
        scores: dict[str, list[float]] = {}
        started = time.perf_counter()
        for record, base, leak_before in zip(records, baselines, leaks):
            t0, cpu0 = time.perf_counter(), time.process_time()
            delta = editor.edit(llm, edit_requests([record]), progress=lambda _m: None)
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
            state.apply(delta)
            try:
                row = {
                    **teacher_forced_scores(model, tok, record, base),
                    "chat_rel": float(contains_answer(llm.chat(
                        [{"role": "user", "content": record.prompt}],
                        max_new_tokens=args.chat_tokens), record.target_new)),
                    **({"probe_loc": probe_locality(probe_base,
                                                    probe_predictions(model, tok, probes))}
                       if probes else {}),
                    # how far the new target leaked into the locality prompts (nats)
                    "leak": leak(record) - leak_before,
                    "seconds": seconds,
                    # this process's CPU time: on one thread, close to the wall time of an
                    # edit alone on the machine when other jobs share the cores
                    "cpu_s": cpu_seconds,
                    "steps": statistics.mean(r.get("steps", 0)
                                             for r in delta.meta.get("requests", [{}])),
                }
            finally:
                if not args.sequential:
                    state.revert_all()
            for key, value in row.items():
                scores.setdefault(key, []).append(value)
            if args.verbose:
                print(f"  {record.source:11s} {record.subject[:30]:30s} -> "
                      f"{record.target_new[:20]:20s} " +
                      " ".join(f"{k}={v:.2f}" for k, v in row.items()), flush=True)
        summary = {k: round(statistics.mean(v), 3) for k, v in scores.items()}
        if args.sequential:  # what is left of every edit, and of the probes, at the end
            summary["end_rel"] = round(statistics.mean(
                token_accuracy(model, tok, r.prompt, r.target_new) for r in records), 3)
            summary["end_probe_loc"] = round(probe_locality(
                probe_base, probe_predictions(model, tok, probes)), 3)
            state.revert_all()
        for source in sorted(valid):  # per-source generalization (the hard number) and leak
            for key in ("gen", "leak"):
                mine = [g for g, r in zip(scores[key], records) if r.source == source]
                if mine:
                    summary[f"{key}_{source}"] = round(statistics.mean(mine), 3)
        rows.append({"variant": variant, **summary,
                     "total_s": round(time.perf_counter() - started, 1)})
        print(rows[-1], flush=True)
    headers = list(rows[0])
    print(markdown_table(headers, [[row.get(h) for h in headers] for row in rows]))
    if args.json:
        write_json(args.json, {"method": args.method, "records": len(records), "rows": rows,
                               "shipped": dataclasses.asdict(shipped)})
    return 0


if __name__ == "__main__":
    run_cli(main, (AmendError,))
