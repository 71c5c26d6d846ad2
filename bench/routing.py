"""Routing overhead with many stored edits: embed + FAISS search + scope decision.

For each `--edits` size N (ascending; edits are added incrementally), the store is filled with
N edits, the FAISS index is rebuilt from it (setup: timed and reported separately, not part of
the overhead), and `Assistant.route(query)` is timed over `--queries` queries (default 200):
half are in-scope paraphrases of stored edits (CounterFact `rephrase_prompt`s of stored
records), half unrelated general questions, shuffled with a fixed seed. The figure is
`timings_ms["route"]` (embed + search + scope) as the app measures it; medians of the stages
and the share of queries routed to memory are reported as well.

Edits come from CounterFact records (`--data`, default the CounterFact training split,
train/counterfact-train.json: 10,000 records, looked up as `python -m editing.datasets where`
shows); `--synthetic` (or a size beyond the file) uses
generated ones ("The capital of Vorland-17 is" ...) instead.

    python -m bench.routing --edits 1000 10000 --json artifacts/bench-routing.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from assistant.records import FETCH_COMMAND, find_data_file
from bench.common import (
    add_common_args,
    build_assistant_in,
    cache_from_args,
    data_dir,
    machine_info,
    machine_line,
    markdown_table,
    median,
    percentile,
    run_cli,
    setup_logging,
    time_limit,
    write_json,
)

WARMUP_QUERIES = 10

GENERAL_QUESTIONS = [
    "What is the capital of France?", "Explain photosynthesis in simple terms.",
    "Give me three tips for better sleep.", "How does a rainbow form?",
    "Write a short poem about the sea.", "What are the benefits of regular exercise?",
    "How do I make a good cup of tea?", "Why is the sky blue?", "What is machine learning?",
    "How many legs does a spider have?", "What is the boiling point of water at sea level?",
    "Can you recommend a good book for a long flight?", "How do vaccines work?",
    "What is the difference between weather and climate?", "How do I change a flat tyre?",
    "What causes the seasons on Earth?", "Translate 'good morning' into Spanish.",
    "What is a prime number?", "How do airplanes stay in the air?",
    "Summarise the plot of Romeo and Juliet.", "What should I pack for a weekend hike?",
    "How can I improve my handwriting?", "What is the Pythagorean theorem?",
    "Why do cats purr?", "How long should I boil an egg?", "What is inflation?",
    "Give me a recipe for pancakes.", "How does the internet work?",
    "What are black holes?", "How do I start learning to play the guitar?",
    "What is the tallest mountain in the world?", "Explain how a bicycle gear works.",
    "What is a healthy breakfast?", "Why do leaves change colour in autumn?",
    "How do I write a cover letter?", "What is the speed of light?",
    "Tell me a joke about computers.", "How do bees make honey?",
    "What are some ways to reduce stress?", "What is the water cycle?",
    "How do I keep houseplants alive?", "What is a haiku? Write one.",
    "Why is exercise good for the brain?", "How does a refrigerator keep food cold?",
    "What is the difference between a lake and a pond?", "How do I apologise to a friend?",
    "What is compound interest?", "Name three famous painters.",
    "How do magnets work?", "What is the best way to learn a new language?",
]

# Made-up subjects for --synthetic: "{prefix}{suffix}-{n}" is unique and not a real name.
_PREFIXES = ["Vor", "Kel", "Stra", "Mun", "Tal", "Oro", "Bex", "Quil", "Dran", "Fen", "Lis",
             "Pav", "Rhu", "Sel", "Tor", "Ulm", "Wex", "Yar", "Zan", "Cor"]
_SUFFIXES = ["land", "ia", "ovar", "ith", "enko", "ara", "ston", "mere", "dal", "ique"]
_RELATIONS = [  # (prompt, paraphrase, targets)
    ("The capital of {x} is", "What is the capital city of {x}?",
     ["Paris", "Lima", "Oslo", "Accra", "Hanoi", "Quito"]),
    ("{x} was born in", "Where was {x} born?", ["Vienna", "Lagos", "Osaka", "Porto", "Cairo"]),
    ("{x} works for", "Who employs {x}?", ["Google", "Siemens", "Toyota", "Nestle", "BBC"]),
    ("The official language of {x} is", "Which language is spoken officially in {x}?",
     ["French", "Swahili", "Finnish", "Tamil", "Dutch"]),
    ("{x} plays the", "Which instrument does {x} play?", ["piano", "violin", "drums", "harp"]),
    ("{x} is a citizen of", "Which country is {x} a citizen of?",
     ["Chile", "Norway", "Kenya", "Japan", "Canada"]),
]


def target_ms(n_edits: int) -> float:
    """The issues' targets: median <= 15 ms up to 10k stored edits (issue 30), 50 ms beyond
    (issue 35: 100k)."""
    return 15.0 if n_edits <= 10_000 else 50.0


def counterfact_records(path: Path) -> list[dict[str, str]]:
    """Records usable as edits: the prompt must name the subject (the store's rule)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    out = []
    for rec in raw:
        subject, prompt = rec.get("subject", "").strip(), rec.get("prompt", "").strip()
        if subject and prompt and rec.get("target_new") and subject.lower() in prompt.lower():
            out.append({"subject": subject, "prompt": prompt,
                        "target_new": rec["target_new"].strip(),
                        "query": (rec.get("rephrase_prompt") or prompt).strip()})
    return out


def synthetic_records(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        subject = f"{rng.choice(_PREFIXES)}{rng.choice(_SUFFIXES)}-{i}"
        prompt, query, targets = rng.choice(_RELATIONS)
        out.append({"subject": subject, "prompt": prompt.format(x=subject),
                    "target_new": rng.choice(targets), "query": query.format(x=subject)})
    return out


def fill_store(assistant, records: list[dict[str, str]]) -> float:
    """Add records as active edits in one transaction; seconds taken."""
    from assistant.phrasings import question_forms

    started = time.perf_counter()
    store = assistant.store
    with store._lock, store.db.atomic():  # one commit instead of one per edit
        for rec in records:
            store.add_edit(rec["subject"], rec["prompt"], rec["target_new"], source="bench",
                           actor="bench",  # the chat phrasings the app stores with every edit
                           paraphrases=question_forms(rec["prompt"], rec["subject"]))
    return time.perf_counter() - started


def make_queries(stored: list[dict[str, str]], n: int, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, text): n // 2 paraphrases of stored edits, the rest general questions, shuffled."""
    n_in = n // 2
    picks = rng.sample(stored, n_in) if n_in <= len(stored) else rng.choices(stored, k=n_in)
    general = [GENERAL_QUESTIONS[i % len(GENERAL_QUESTIONS)] for i in range(n - n_in)]
    queries = [("in-scope", r["query"]) for r in picks] + [("general", q) for q in general]
    rng.shuffle(queries)
    return queries


def measure(assistant, queries: list[tuple[str, str]]) -> list[dict[str, Any]]:
    for _, text in queries[:WARMUP_QUERIES]:  # warm-up: caches, allocator, first SQLite reads
        assistant.route(text)
    out = []
    for kind, text in queries:
        decisions, timings = assistant.route(text)
        out.append({"kind": kind, "query": text, **{k: round(v, 4) for k, v in timings.items()},
                    "memory": any(d.in_scope for d in decisions)})
    return out


def summarise(n_edits: int, vectors: int, insert_s: float, build_s: float,
              samples: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(rows: list[dict[str, Any]]) -> dict[str, float]:
        route = [r["route"] for r in rows]
        return {"queries": len(rows), "median_ms": median(route), "p95_ms": percentile(route, 95),
                "max_ms": max(route) if route else float("nan"),
                "embed_median_ms": median([r["embed"] for r in rows]),
                "search_median_ms": median([r["search"] for r in rows]),
                "scope_median_ms": median([r["scope"] for r in rows]),
                "memory_share": (sum(r["memory"] for r in rows) / len(rows)) if rows else 0.0}

    return {"edits": n_edits, "index_vectors": vectors, "insert_s": round(insert_s, 2),
            "index_build_s": round(build_s, 2), "all": stats(samples),
            "in_scope": stats([s for s in samples if s["kind"] == "in-scope"]),
            "general": stats([s for s in samples if s["kind"] == "general"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.routing",
        description="Routing overhead (embed + FAISS search + scope decision, as "
                    "Assistant.route times it) with N stored edits; median and p95.")
    parser.add_argument("--edits", type=int, nargs="+", default=[1000, 10000],
                        help="stored-edit counts to measure at (default: 1000 10000)")
    parser.add_argument("--queries", type=int, default=200,
                        help="timed queries per size, half in scope (default 200)")
    parser.add_argument("--data", type=Path, default=None,
                        help="CounterFact-format records for the edits and paraphrases "
                             "(default: the CounterFact training split, where found)")
    parser.add_argument("--synthetic", action="store_true",
                        help="generated edits instead of CounterFact records")
    parser.add_argument("--seed", type=int, default=0, help="query sampling seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    add_common_args(parser)
    parser.epilog = "--timeout default: 1800 s for the whole run."
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    sizes = sorted(set(n for n in args.edits if n > 0))
    if not sizes:
        parser.error("--edits needs at least one positive count")
    biggest = sizes[-1]
    if args.data is None:
        args.data = find_data_file("train", "counterfact")
    if args.synthetic or args.data is None or not args.data.exists():
        if not args.synthetic:
            print(f"note: {args.data or 'the CounterFact training split'} not found (see "
                  f"`{FETCH_COMMAND}`); using synthetic edits", file=sys.stderr)
        records, source = synthetic_records(biggest, args.seed), "synthetic"
    else:
        records, source = counterfact_records(args.data), f"counterfact ({args.data.name})"
        if len(records) < biggest:
            print(f"note: {args.data.name} has {len(records)} usable records; topping up with "
                  f"{biggest - len(records)} synthetic edits", file=sys.stderr)
            records += synthetic_records(biggest - len(records), args.seed)
            source += " + synthetic"
    records = records[:biggest]
    rng = random.Random(args.seed)

    results, raw_samples = [], {}
    # data_dir outside time_limit: the alarm is off before the temporary folder is removed.
    with data_dir(args.data_dir, "routing") as data, \
            time_limit(args.timeout or 1800, "routing benchmark"):
        assistant, load_s = build_assistant_in(data, cache_from_args(args), args.threads,
                                               quiet=not args.verbose)
        if assistant.store.count_edits():
            raise SystemExit(f"error: {data} already holds edits; use a fresh --data-dir or none")
        router_cfg = dataclasses.asdict(assistant.config)
        stored = 0
        for n in sizes:
            insert_s = fill_store(assistant, records[stored:n])
            stored = n
            started = time.perf_counter()
            assistant.memory.rebuild()  # setup, not measured as overhead
            build_s = time.perf_counter() - started
            queries = make_queries(records[:n], args.queries, rng)
            samples = measure(assistant, queries)
            summary = summarise(n, assistant.memory.size, insert_s, build_s, samples)
            results.append(summary)
            raw_samples[str(n)] = samples
            summary["load_avg"] = [round(x, 2) for x in os.getloadavg()]
            print(f"  {n} edits: index built in {build_s:.1f} s, route median "
                  f"{summary['all']['median_ms']:.2f} ms, p95 {summary['all']['p95_ms']:.2f} ms "
                  f"(load average {summary['load_avg']})", file=sys.stderr, flush=True)

    info = machine_info(threads=args.threads)
    print()
    print(markdown_table(
        ["edits", "index build (s)", "route median (ms)", "route p95 (ms)", "embed med",
         "search med", "scope med", "in-scope med / p95", "general med / p95",
         "memory route: in-scope / general"],
        [[r["edits"], r["index_build_s"], r["all"]["median_ms"], r["all"]["p95_ms"],
          r["all"]["embed_median_ms"], r["all"]["search_median_ms"],
          r["all"]["scope_median_ms"],
          f"{r['in_scope']['median_ms']:.2f} / {r['in_scope']['p95_ms']:.2f}",
          f"{r['general']['median_ms']:.2f} / {r['general']['p95_ms']:.2f}",
          f"{r['in_scope']['memory_share']:.0%} / {r['general']['memory_share']:.0%}"]
         for r in results]))
    for r in results:
        target = target_ms(r["edits"])
        ok = r["all"]["median_ms"] <= target
        print(f"target median <= {target:g} ms at {r['edits']} edits: "
              f"{'met' if ok else 'NOT met'}")
    print(f"{args.queries} queries per size (+{WARMUP_QUERIES} warm-up), edits: {source}; "
          f"model load {load_s:.1f} s")
    print(machine_line(info))
    write_json(args.json, {"benchmark": "routing", "machine": info, "edits_source": source,
                           "router_config": router_cfg,
                           "queries": args.queries, "seed": args.seed, "results": results,
                           "samples": raw_samples,
                           "argv": sys.argv[1:] if argv is None else argv})
    return 0


if __name__ == "__main__":
    run_cli(main)
