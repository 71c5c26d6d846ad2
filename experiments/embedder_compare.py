"""The sentence-transformers embedder against the hand-written one it replaced, in one run.

The baseline is assistant/embedder.py as it was at `--baseline-rev` (plain transformers: BERT,
mean pooling, L2 norm), loaded from git beside today's module. For fp32 and int8 it reports:
  * cosine of old and new vectors of the same texts (CounterFact and zsRE prompts, paraphrases
    and locality prompts), batched as `embed` does and one at a time as `embed_one` does;
  * ms per `embed_one` over `--queries` short queries on `--threads` torch threads, the old and
    the new embedder interleaved query by query (so machine load hits both alike);
  * the memory route's decisions with the shipped router config (int8 unless the config says
    otherwise): `--records` CounterFact and zsRE records stored as edits, all at once
    (sequential) and one at a time (single, as editing.evaluate does by default); each record's
    prompt, paraphrases and locality prompts are routed by both; agreement = same governing
    edit ids. The language model is not needed for routing and is not loaded.

    python -m experiments.embedder_compare --records 100 --json artifacts/embedder-compare.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO_ROOT, run_cli, set_threads, write_json

DATA = REPO_ROOT.parent / "shared" / "data"
FILES = {"counterfact": DATA / "counterfact" / "counterfact-edit-first500.json",
         "zsre": DATA / "zsre" / "zsre_mend_train-1k-first500.json"}


def baseline_module(rev: str):
    """assistant/embedder.py at `rev`, imported under another name."""
    source = subprocess.run(["git", "-C", str(REPO_ROOT), "show", f"{rev}:assistant/embedder.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="embedder-baseline-")) / "embedder_baseline.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("embedder_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def texts_of(records) -> list[str]:
    out = []
    for r in records:
        out += [r.prompt, *r.rephrases, *(p.prompt for p in r.locality)]
    return list(dict.fromkeys(out))


def cosine_rows(old, new, texts: list[str]) -> dict:
    import numpy as np

    batch = np.sum(old.embed(texts) * new.embed(texts), axis=1)
    single = np.asarray([float(old.embed_one(t)[0] @ new.embed_one(t)[0]) for t in texts[:100]])
    return {"texts": len(texts), "batch_min": float(batch.min()), "batch_mean": float(batch.mean()),
            "one_min": float(single.min()), "one_mean": float(single.mean())}


def latency(embedders: dict, queries: list[str], warmup: int = 10) -> dict:
    """Median and p90 ms per embed_one, every embedder on each query in turn (order rotated)."""
    times = {name: [] for name in embedders}
    names = list(embedders)
    for i, query in enumerate(queries):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            t0 = time.perf_counter()
            embedders[name].embed_one(query)
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: {"median_ms": statistics.median(v),
                   "p90_ms": statistics.quantiles(v, n=10)[-1], "n": len(v)}
            for name, v in times.items()}


def route_all(embedder, records, mode: str) -> list[dict]:
    """Per routed question: its kind, its record, and the governing edit's record index."""
    from assistant.corrections import Correction
    from assistant.memory import EditMemory
    from assistant.router import Assistant
    from config import router_config
    from store.db import Store

    store = Store(":memory:")
    assistant = Assistant(None, embedder, store, EditMemory(store, embedder, None),
                          router_config())
    record_of: dict[int, int] = {}

    def add(i, r):
        edit, _ = assistant.add_edit(Correction(r.subject, r.prompt, r.target_new,
                                                r.ground_truth or None), source="eval")
        record_of[edit.id] = i
        return edit

    def ask(i, r):
        rows = []
        for kind, questions in (("prompt", [r.prompt]), ("paraphrase", r.rephrases),
                                ("locality", [p.prompt for p in r.locality])):
            for q in questions:
                decisions, _ = assistant.route(q)
                governing = sorted(record_of.get(d.edit.id, -1) for d in decisions if d.in_scope)
                rows.append({"record": i, "kind": kind, "question": q, "governing": governing})
        return rows

    out = []
    if mode == "sequential":
        for i, r in enumerate(records):
            add(i, r)
        for i, r in enumerate(records):
            out += ask(i, r)
    else:
        for i, r in enumerate(records):
            edit = add(i, r)
            out += ask(i, r)
            assistant.review.set_status(edit.id, "rejected", actor="eval")
    return out


def route_summary(rows: list[dict]) -> dict:
    def share(kind, test):
        these = [r for r in rows if r["kind"] == kind]
        return sum(test(r) for r in these) / len(these) if these else None
    right = lambda r: r["record"] in r["governing"]  # noqa: E731
    return {"questions": len(rows),
            "prompt_governed_by_its_edit": share("prompt", right),
            "paraphrase_governed_by_its_edit": share("paraphrase", right),
            "locality_routed_to_memory": share("locality", lambda r: bool(r["governing"]))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.embedder_compare",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-rev", default="388a4c9",
                        help="git revision whose assistant/embedder.py is the baseline")
    parser.add_argument("--texts", type=int, default=400, help="texts for the cosine check")
    parser.add_argument("--queries", type=int, default=210,
                        help="single queries timed (the first 10 are warm-up)")
    parser.add_argument("--records", type=int, default=100,
                        help="records per data set for the routing comparison (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    from assistant.embedder import Embedder
    from assistant.records import load_records
    from config import router_config

    old_mod = baseline_module(args.baseline_rev)
    embedders = {"old_fp32": old_mod.Embedder(), "new_fp32": Embedder(),
                 "old_int8": old_mod.Embedder(int8=True), "new_int8": Embedder(int8=True)}
    records = {name: load_records(path) for name, path in FILES.items()}
    texts = texts_of([r for rs in records.values() for r in rs])
    random.Random(args.seed).shuffle(texts)
    result: dict = {"baseline_rev": args.baseline_rev, "threads": args.threads}

    result["cosine"] = {v: cosine_rows(embedders[f"old_{v}"], embedders[f"new_{v}"],
                                       texts[:args.texts]) for v in ("fp32", "int8")}
    result["cosine"]["new_int8_vs_new_fp32"] = cosine_rows(embedders["new_fp32"],
                                                           embedders["new_int8"],
                                                           texts[:args.texts])
    print(json.dumps(result["cosine"], indent=1), file=sys.stderr)
    short = [t for t in texts if len(t) <= 80][:args.queries]
    result["latency"] = latency(embedders, short)
    print(json.dumps(result["latency"], indent=1), file=sys.stderr)

    if args.records:
        variant = "int8" if router_config().embedding_int8 else "fp32"
        result["routing"] = {"embedder": variant}
        for data, recs in records.items():
            for mode in ("sequential", "single"):
                t = time.perf_counter()
                old_rows = route_all(embedders[f"old_{variant}"], recs[:args.records], mode)
                new_rows = route_all(embedders[f"new_{variant}"], recs[:args.records], mode)
                same = sum(a["governing"] == b["governing"] for a, b in zip(old_rows, new_rows))
                differ = [{"question": a["question"], "kind": a["kind"], "old": a["governing"],
                           "new": b["governing"]}
                          for a, b in zip(old_rows, new_rows) if a["governing"] != b["governing"]]
                entry = {"old": route_summary(old_rows), "new": route_summary(new_rows),
                         "agreement": same / len(old_rows), "differ": differ,
                         "seconds": round(time.perf_counter() - t, 1)}
                result["routing"][f"{data}/{mode}"] = entry
                print(f"{data}/{mode}: agreement {entry['agreement']:.4f} "
                      f"({len(differ)} differ of {len(old_rows)}); old {entry['old']}; "
                      f"new {entry['new']}", file=sys.stderr, flush=True)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    run_cli(main, ())
