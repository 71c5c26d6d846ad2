"""Many facts promoted one batch after another through the real guard, then all of them scored.

Records (CounterFact and zsRE, interleaved) become edits as chat corrections would, and each
batch of `--batch` is promoted with `--method` through `WeightEdits.promote` (edit on a copy,
guard, commit or refuse; a committed edit the weights do not carry stays in memory as the
backstop). At the end every offered fact is scored on the final state with the evaluation
harness's metrics (teacher-forced and free-generation chat), twice: the weights alone (the
base model as edited, no memory route) and the system (weights + memory backstop, as the chat
answers). Locality compares against the unedited model's answers, read before the first
promotion.

`--plain` runs the same facts in the same order a second time with the method's AlphaEdit
options off (committed keys, null space: editing/preserve.py), as the comparison row.
With `--data-dir` the run keeps its state there after every batch and resumes where it
stopped when started again with the same arguments.

    python -m bench.promotions --method memit --batch 10 --limit 40 --plain --data-dir DIR
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from assistant.records import resolve_data
from bench.common import (add_common_args, build_assistant_in, cache_from_args, data_dir,
                          machine_info, machine_line, markdown_table, run_cli, setup_logging,
                          time_limit, write_json)
from editing.registry import NAMES
from errors import AmendError

DEFAULT_DATA = ["counterfact", "zsre"]  # the evaluation sets (assistant.records.resolve_data)
# the options editing/preserve.py adds, off: the plain method
PLAIN = {"rome": {"keep_committed": False}, "memit": {"keep_committed": False}}
WEIGHT_METRICS = ("reliability", "generalization", "locality", "chat_reliability",
                  "chat_generalization", "chat_locality_first_sentence")
SYSTEM_METRICS = ("chat_reliability", "chat_generalization",
                  "chat_generalization_in_conversation", "chat_locality_first_sentence")


class LiveWeights:
    """The running assistant's model alone (base + committed deltas), no memory route: what
    the weights carry."""

    name = "weights"

    def __init__(self, assistant, chat_tokens: int) -> None:
        self.llm = assistant.llm
        self.tokenizer = assistant.llm.tokenizer
        self.chat_tokens = chat_tokens

    def scorer(self, prompt: str):
        from editing.systems import Scorer

        return Scorer(self.llm.model, prompt)

    def chat(self, question: str, history: list[dict] = ()) -> str:
        return self.llm.chat([*history, {"role": "user", "content": question}],
                             max_new_tokens=self.chat_tokens)


def interleaved(paths: list[Path], limit: int):
    """Records of each file in turn (first of each, then second of each, ...), `limit` in all."""
    from assistant.records import load_records

    sources = [load_records(p) for p in paths]
    out = []
    for i in range(max(len(s) for s in sources)):
        out.extend(s[i] for s in sources if i < len(s))
    return out[:limit]


def _save(path: Path, state: dict) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(state))
    os.replace(partial, path)


def unedited_baselines(path: Path, records, system) -> list:
    """What the unedited model answers on each record: read from `path`, or asked now (before
    any promotion) and kept there, so a resumed or second arm compares against the same."""
    from editing.evaluate import Baseline, baseline

    if path.exists():
        saved = json.loads(path.read_text())
        if len(saved) >= len(records):
            return [Baseline(**b) for b in saved[:len(records)]]
    baselines = []
    for i, record in enumerate(records, 1):
        baselines.append(baseline(system, record))
        if i % 10 == 0 or i == len(records):
            print(f"unedited answers: {i}/{len(records)}", flush=True)
    _save(path, [asdict(b) for b in baselines])
    return baselines


def run_arm(name: str, folder: Path, records, overrides: dict, args) -> dict:
    """Promote every batch (resuming after the last saved one), then score all facts."""
    from assistant.corrections import Correction
    from editing.evaluate import score
    from editing.registry import config_path
    from editing.systems import MemorySystem

    folder.mkdir(parents=True, exist_ok=True)
    progress_file = folder / "progress.json"
    state = json.loads(progress_file.read_text()) if progress_file.exists() else {"rows": []}
    assistant, _ = build_assistant_in(folder, cache_from_args(args), args.threads,
                                      quiet=not args.verbose)
    weights = assistant.weights
    if not state["rows"] and weights.state.applied:
        raise SystemExit(f"error: {folder} holds promotions this run did not make; "
                         "use a fresh --data-dir")
    # before any promotion of this arm, so the model is the unedited one
    baselines = unedited_baselines(folder.parent / "baselines.json", records,
                                   LiveWeights(assistant, args.chat_tokens))
    if overrides:
        shipped = json.loads(config_path(args.method, assistant.llm.family,
                                         assistant.llm.model).read_text())
        changed = folder / f"{args.method}-config.json"
        changed.write_text(json.dumps({**shipped, **overrides}))
        weights.use_config_file(args.method, changed)
    batches = [records[i:i + args.batch] for i in range(0, len(records), args.batch)]
    started, timed = time.perf_counter(), 0
    for number, batch in enumerate(batches, 1):
        if number <= len(state["rows"]):
            continue  # promoted before a restart
        timed += 1
        edits = [assistant.add_edit(Correction(r.subject, r.prompt, r.target_new),
                                    source="bench")[0] for r in batch]
        t0 = time.perf_counter()
        result = weights.promote([e.id for e in edits], args.method, actor="bench")
        state["rows"].append({"batch": number, "edits": [e.id for e in edits],
                              "committed": result.committed,
                              "seconds": round(time.perf_counter() - t0, 1),
                              "message": result.message})
        _save(progress_file, state)
        offered = sum(len(r["edits"]) for r in state["rows"])
        rate = (time.perf_counter() - started) / timed
        print(f"[{name}] batch {number}/{len(batches)} "
              f"{'committed' if result.committed else 'refused'} in "
              f"{state['rows'][-1]['seconds']} s ({offered} facts offered; about "
              f"{(len(batches) - number) * rate / 60:.0f} min of promotions left)", flush=True)
    committed = sum(len(r["edits"]) for r in state["rows"] if r["committed"])
    promoted = [assistant.store.get_edit(i) for r in state["rows"] if r["committed"]
                for i in r["edits"]]
    carried = sum(e.status == "promoted" and not e.backstop for e in promoted)
    if "scores" not in state:
        systems = {"weights": LiveWeights(assistant, args.chat_tokens),
                   "system": MemorySystem(assistant, args.chat_tokens)}
        per_record: dict[str, list[dict]] = {k: [] for k in systems}
        for i, (record, base) in enumerate(zip(records, baselines), 1):
            for key, system in systems.items():
                per_record[key].append(score(system, record, base))
            if i % 10 == 0 or i == len(records):
                print(f"[{name}] scoring: {i}/{len(records)}", flush=True)
        state["scores"] = {key: {m: _mean([r[m] for r in rows if r[m] is not None])
                                 for m in WEIGHT_METRICS + SYSTEM_METRICS}
                           for key, rows in per_record.items()}
        state["per_record"] = per_record  # to see which facts and probes moved
        _save(progress_file, state)
    return {"arm": name, "offered": len(records), "committed": committed, "carried": carried,
            "promotion_seconds": round(sum(r["seconds"] for r in state["rows"]), 1),
            "scores": state["scores"], "rows": state["rows"]}


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.promotions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="rome", choices=NAMES)
    parser.add_argument("--data", nargs="+", default=DEFAULT_DATA,
                        help="record files or names (counterfact, zsre, counterfact-train, "
                             "zsre-train), interleaved (default: the CounterFact and zsRE "
                             "evaluation sets)")
    parser.add_argument("--limit", type=int, default=1000, help="facts offered in all")
    parser.add_argument("--batch", type=int, default=1, help="facts per promotion")
    parser.add_argument("--plain", action="store_true",
                        help="also run the same facts with the AlphaEdit options off")
    parser.add_argument("--overrides", default="{}",
                        help="JSON object of method config fields to change (experiments)")
    parser.add_argument("--chat-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    args.data = [resolve_data(value) for value in args.data]
    records = interleaved(args.data, args.limit)
    arms = [("shipped", json.loads(args.overrides))]
    if args.plain:
        arms.append(("plain", {**json.loads(args.overrides), **PLAIN.get(args.method, {})}))
    results = []
    with data_dir(args.data_dir, "promotions") as data, \
            time_limit(args.timeout or 4 * 3600, "promotions benchmark"):
        for name, overrides in arms:
            results.append(run_arm(name, data / name, records, overrides, args))
    headers = ["arm", "offered", "committed", "carried"] + \
        [f"weights {m}" for m in WEIGHT_METRICS] + [f"system {m}" for m in SYSTEM_METRICS] + \
        ["promotion s"]
    print(markdown_table(headers, [
        [r["arm"], r["offered"], r["committed"], r["carried"]]
        + [r["scores"]["weights"][m] for m in WEIGHT_METRICS]
        + [r["scores"]["system"][m] for m in SYSTEM_METRICS] + [r["promotion_seconds"]]
        for r in results]))
    info = machine_info(args.threads)
    print(machine_line(info))
    write_json(args.json, {"benchmark": "promotions", "method": args.method,
                           "batch": args.batch, "data": [str(p) for p in args.data],
                           "machine": info, "arms": results})
    return 0


if __name__ == "__main__":
    run_cli(main, (AmendError,))
