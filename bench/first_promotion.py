"""Time from pressing Promote to the first editing step, on a fresh data folder.

Issue 31's target: on a fresh install the first ROME/MEMIT promotion starts editing within
60 s (it used to wait about 12–20 min for key statistics). One chat correction ("Where is the
Eiffel Tower?" → Rome) is promoted with `--method`; every progress line is timed, and the
first line of the method's editing step ("ROME: edit 1/1", "MEMIT: target 1/1") is the figure.

    python -m bench.first_promotion --method rome --json artifacts/first-promotion-rome.json
"""
from __future__ import annotations

import argparse
import time

from bench.common import (add_common_args, build_assistant_in, cache_from_args, data_dir,
                          machine_info, machine_line, run_cli, setup_logging, time_limit,
                          write_json)

FIRST_EDIT_STEP = {"rome": "ROME: edit 1/", "memit": "MEMIT: target 1/"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_promotion", description=__doc__)
    parser.add_argument("--method", default="rome", choices=sorted(FIRST_EDIT_STEP))
    parser.add_argument("--threads", type=int, default=1)
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    from assistant.corrections import Correction

    with data_dir(args.data_dir, "first-promotion") as data, \
            time_limit(args.timeout or 3600, "first-promotion benchmark"):
        assistant, _ = build_assistant_in(data, cache_from_args(args), args.threads,
                                          quiet=not args.verbose)
        if assistant.weights.state.applied or (data / "stats").exists():
            raise SystemExit(f"error: {data} is not fresh (key statistics or weight edits in "
                             "it); use a new --data-dir")
        edit, _ = assistant.add_edit(Correction("Eiffel Tower", "Where is the Eiffel Tower?",
                                                "Rome"), source="bench")
        lines: list[tuple[float, str]] = []
        started = time.perf_counter()

        def progress(message: str) -> None:
            lines.append((round(time.perf_counter() - started, 2), message))
            print(f"{lines[-1][0]:8.1f} s  {message}", flush=True)

        result = assistant.weights.promote([edit.id], args.method, actor="bench",
                                           progress=progress)
        total = time.perf_counter() - started
    first = next((t for t, m in lines if m.startswith(FIRST_EDIT_STEP[args.method])), None)
    summary = {"method": args.method, "first_edit_step_s": first, "total_s": round(total, 1),
               "committed": result.committed, "message": result.message,
               "target_s": 60, "met": first is not None and first <= 60}
    print(f"first editing step after {first} s (target ≤ 60 s: "
          f"{'met' if summary['met'] else 'not met'}); whole promotion {total:.1f} s; "
          f"{result.message}")
    print(machine_line(machine_info(args.threads)))
    write_json(args.json, {"benchmark": "first_promotion", "machine": machine_info(args.threads),
                           "summary": summary, "progress": lines, "scores": result.scores})
    return 0


if __name__ == "__main__":
    run_cli(main)
