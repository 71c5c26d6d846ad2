"""FAISS index kinds for the edit memory at 10k and 100k stored edits (issue 35, session 29).

One assistant is built as `bench.routing` builds it; the store is filled with CounterFact
training records (real paraphrases as in-scope queries) topped up with synthetic edits. At each
size the memory is rebuilt once by the product path (timed: embedding dominates), then every
index kind is built from the same key vectors (timed: training and adding only) and swapped
into the memory in turn. For each kind, `Assistant.route` is timed over the same queries (a
third CounterFact paraphrases, a third synthetic paraphrases where there are any, a third
general questions), and two agreements with the exact (flat) index are counted:
  * decision: the queries whose routing decision (memory or base, and the governing edit ids)
    equals flat's;
  * top hit: the queries whose best edit from `EditMemory.search` equals flat's, and the share
    of flat's top-k edits the kind also returns (recall@k).

    python -m experiments.routing_index --edits 10000 100000 --json artifacts/s29/index-kinds.json
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

import faiss
import numpy as np

from assistant.records import find_data_file
from bench.common import build_assistant_in, data_dir, machine_info, median, percentile, \
    run_cli, write_json
from bench.routing import GENERAL_QUESTIONS, counterfact_records, fill_store, synthetic_records


def flat_vectors(index) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, edit ids) held by an IndexIDMap2(IndexFlatIP)."""
    inner = faiss.downcast_index(index.index)
    return inner.reconstruct_n(0, inner.ntotal), faiss.vector_to_array(index.id_map)


def build_kind(kind: dict[str, Any], vecs: np.ndarray, ids: np.ndarray):
    """(index, seconds to build it) for one kind description."""
    d = vecs.shape[1]
    started = time.perf_counter()
    if kind["kind"] == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        index.add_with_ids(vecs, ids)
    elif kind["kind"] == "ivf":
        nlist = kind["nlist"]
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.max_points_per_centroid = kind.get("train_per_list", 64)
        index.train(vecs)
        index.add_with_ids(vecs, ids)
        index.nprobe = kind["nprobe"]
    elif kind["kind"] == "hnsw":
        inner = faiss.IndexHNSWFlat(d, kind["M"], faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = kind["efConstruction"]
        index = faiss.IndexIDMap2(inner)
        index.add_with_ids(vecs, ids)
        inner.hnsw.efSearch = kind["efSearch"]
    else:
        raise ValueError(kind)
    return index, time.perf_counter() - started


def with_param(index, kind: dict[str, Any]) -> None:
    """Set the search-time knob of an already built index (no rebuild)."""
    if kind["kind"] == "ivf":
        index.nprobe = kind["nprobe"]
    elif kind["kind"] == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = kind["efSearch"]


def decision_of(decisions) -> tuple:
    governing = [d for d in decisions if d.in_scope]
    return ("memory", tuple(sorted(d.edit.id for d in governing))) if governing else ("base",)


def run_queries(assistant, queries, kinds: list[tuple[dict, Any]]) -> list[list[dict]]:
    """Rows per kind. Kinds take turns query by query (the first kind rotating), so a spell
    of load from other processes falls on every kind alike."""
    def use(kind, index) -> None:
        with_param(index, kind)
        with assistant.memory._lock:
            assistant.memory.index = index

    for kind, index in kinds:  # warm-up
        use(kind, index)
        for _, text in queries[:10]:
            assistant.route(text)
    rows: list[list[dict]] = [[] for _ in kinds]
    for q, (group, text) in enumerate(queries):
        for j in [(q + i) % len(kinds) for i in range(len(kinds))]:
            use(*kinds[j])
            decisions, timings = assistant.route(text)
            hits = assistant.memory.search(assistant.embedder.embed_one(text),
                                           assistant.config.top_k)
            rows[j].append({"kind": group, "route": timings["route"], "embed": timings["embed"],
                            "search": timings["search"], "scope": timings["scope"],
                            "decision": decision_of(decisions),
                            "hits": [h.edit_id for h in hits]})
    return rows


def compare(rows: list[dict], flat_rows: list[dict]) -> dict[str, Any]:
    def share(pairs, test) -> float:
        pairs = list(pairs)
        return round(sum(test(a, b) for a, b in pairs) / len(pairs), 4) if pairs else float("nan")

    out: dict[str, Any] = {}
    for group in ("all", "counterfact", "synthetic", "general"):
        pairs = [(a, b) for a, b in zip(rows, flat_rows) if group == "all" or a["kind"] == group]
        if not pairs:
            continue
        route = [a["route"] for a, _ in pairs]
        out[group] = {
            "queries": len(pairs), "median_ms": round(median(route), 3),
            "p95_ms": round(percentile(route, 95), 3),
            "search_median_ms": round(median([a["search"] for a, _ in pairs]), 3),
            "embed_median_ms": round(median([a["embed"] for a, _ in pairs]), 3),
            "scope_median_ms": round(median([a["scope"] for a, _ in pairs]), 3),
            "memory_share": share(pairs, lambda a, b: a["decision"][0] == "memory"),
            "decision_agreement": share(pairs, lambda a, b: a["decision"] == b["decision"]),
            "top_hit_agreement": share(pairs, lambda a, b: a["hits"][:1] == b["hits"][:1]),
            "recall_at_k": share(pairs, lambda a, b: (len(set(a["hits"]) & set(b["hits"]))
                                                      / max(1, len(b["hits"])))),
        }
    return out


def make_queries(records, n_real: int, n: int, per_group: int, rng) -> list[tuple[str, str]]:
    real = rng.sample(records[:min(n, n_real)], min(per_group, min(n, n_real)))
    queries = [("counterfact", r["query"]) for r in real]
    if n > n_real:
        queries += [("synthetic", r["query"]) for r in rng.sample(records[n_real:n], per_group)]
    queries += [("general", GENERAL_QUESTIONS[i % len(GENERAL_QUESTIONS)])
                for i in range(per_group)]
    rng.shuffle(queries)
    return queries


def kinds_for(n_vectors: int, args) -> list[dict[str, Any]]:
    nlist = max(16, int(args.lists_per_sqrt * np.sqrt(n_vectors)))
    kinds: list[dict[str, Any]] = [{"kind": "flat"}]
    kinds += [{"kind": "ivf", "nlist": nlist, "nprobe": p} for p in args.nprobe]
    kinds += [{"kind": "hnsw", "M": args.hnsw_m, "efConstruction": args.ef_construction,
               "efSearch": e} for e in args.ef_search]
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.routing_index")
    parser.add_argument("--edits", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--per-group", type=int, default=150,
                        help="queries per group (CounterFact, synthetic, general)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--lists-per-sqrt", type=float, default=2.0,
                        help="IVF lists = this * sqrt(key vectors)")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)
    sizes = sorted(args.edits)
    real = counterfact_records(find_data_file("train", "counterfact"))[:sizes[-1]]
    records = real + synthetic_records(max(0, sizes[-1] - len(real)), args.seed)
    rng = random.Random(args.seed)
    results = []
    with data_dir(None, "routing-index") as data:
        assistant, _ = build_assistant_in(data, None, 1)
        faiss.omp_set_num_threads(1)
        stored = 0
        for n in sizes:
            insert_s = fill_store(assistant, records[stored:n])
            stored = n
            load = open("/proc/loadavg").read().split()[:3]
            started = time.perf_counter()
            assistant.memory.rebuild()
            rebuild_s = time.perf_counter() - started
            vecs, ids = flat_vectors(assistant.memory.index)
            print(f"{n} edits: {len(vecs)} vectors, rebuild {rebuild_s:.1f} s (load {load})",
                  file=sys.stderr, flush=True)
            queries = make_queries(records, len(real), n, args.per_group, rng)
            built: dict[tuple, Any] = {}
            kinds, build_s = [], {}
            for kind in kinds_for(len(vecs), args):
                shape = tuple(sorted((k, v) for k, v in kind.items()
                                     if k not in ("nprobe", "efSearch")))
                if shape not in built:  # the same index serves every value of its search knob
                    built[shape] = build_kind(kind, vecs, ids)
                    print(f"  built {kind} in {built[shape][1]:.1f} s", file=sys.stderr,
                          flush=True)
                kinds.append((kind, built[shape][0]))
                build_s[len(kinds) - 1] = round(built[shape][1], 2)
            load_q = open("/proc/loadavg").read().split()[:3]
            started = time.perf_counter()
            rows = run_queries(assistant, queries, kinds)
            load_end = open("/proc/loadavg").read().split()[:3]
            print(f"  queries took {time.perf_counter() - started:.0f} s (load {load_q} -> "
                  f"{load_end})", file=sys.stderr, flush=True)
            for j, (kind, _) in enumerate(kinds):
                summary = {"edits": n, "vectors": int(len(vecs)), "insert_s": round(insert_s, 1),
                           "product_rebuild_s": round(rebuild_s, 1), "index": kind,
                           "build_s": build_s[j], "loadavg_start": load_q,
                           "loadavg_end": load_end, **compare(rows[j], rows[0])}
                results.append(summary)
                a = summary["all"]
                print(f"  {kind}: build {summary['build_s']} s, median {a['median_ms']} ms, "
                      f"p95 {a['p95_ms']}, search {a['search_median_ms']}, decisions "
                      f"{a['decision_agreement']}, top hit {a['top_hit_agreement']}, "
                      f"recall@k {a['recall_at_k']}", file=sys.stderr, flush=True)
            write_json(args.json, {"experiment": "routing_index", "results": results,
                                   "machine": machine_info(threads=1),
                                   "argv": sys.argv[1:] if argv is None else argv})
            with assistant.memory._lock:  # back to the product's own index for the next size
                assistant.memory.index = kinds[0][1]
            kinds.clear()
            built.clear()
    return 0


if __name__ == "__main__":
    run_cli(main)
