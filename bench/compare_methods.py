"""Methods side by side: the same records through each route or method, one table.

    python -m bench.compare_methods --methods memory mend rome --limit 50 \
        --json artifacts/compare.json

Every method runs `editing.evaluate` in single-edit mode (each record applied, scored and
reverted alone) on the first `--limit` records of each data set (the evaluation sets, never
trained on), so the numbers are those of `python -m editing.evaluate --method M`, only
gathered into one table. `--data-dir` must hold the converted model (and, for ROME/MEMIT,
the cached key statistics, else they are computed first and reported apart).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.common import (fmt, machine_info, machine_line, markdown_table, run_cli,
                          set_threads, setup_logging, write_json)
from errors import AmendError

# the evaluation sets, looked up (assistant.records.data_file) when the run starts
DATA_SETS = {"zsRE": "zsre", "CounterFact": "counterfact"}
COLUMNS = ("reliability", "generalization", "locality", "chat_reliability",
           "chat_generalization", "chat_locality", "seconds_per_edit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_methods", description=__doc__)
    parser.add_argument("--methods", nargs="+", default=["memory", "mend", "rome"])
    parser.add_argument("--limit", type=int, default=50, help="first N records of each set")
    parser.add_argument("--sets", nargs="+", default=list(DATA_SETS), choices=list(DATA_SETS))
    parser.add_argument("--chat-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data folder with the converted model (default: the app's)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    set_threads(args.threads)
    if args.data_dir:
        os.environ["AMEND_DATA_DIR"] = str(args.data_dir)
    from editing.evaluate import evaluate
    from assistant.records import data_file, load_records
    from editing.systems import METHODS

    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {sorted(METHODS)}")
    paths = {name: data_file("eval", DATA_SETS[name]) for name in args.sets}  # fail early
    results = []
    for method in args.methods:
        started = time.perf_counter()
        system = METHODS[method](chat_tokens=args.chat_tokens)
        setup = round(time.perf_counter() - started, 1)
        for name in args.sets:
            records = load_records(paths[name], args.limit)
            print(f"{method} on {name}: {len(records)} records", flush=True)
            result = evaluate(system, records)
            results.append({"method": method, "data": name, "records": len(records),
                            "setup_seconds": setup, "summary": result["summary"]})
        del system
    rows = [[r["method"], r["data"], r["records"],
             *[fmt(r["summary"].get(c), 3 if c != "seconds_per_edit" else 2) for c in COLUMNS]]
            for r in results]
    print(markdown_table(["method", "data", "records", *COLUMNS], rows))
    info = machine_info(args.threads)
    print(machine_line(info))
    write_json(args.json, {"benchmark": "compare_methods", "machine": info,
                           "limit": args.limit, "results": results})
    return 0


if __name__ == "__main__":
    run_cli(main, (AmendError,))
