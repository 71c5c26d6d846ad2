"""Generation throughput: the raw model vs the same model behind the router.

For a fixed list of general questions, greedy decoding, `--max-new-tokens` (64):
  * raw:          `assistant.llm.stream_chat([question])` straight on the ChatLLM;
  * router/base:  `assistant.reply([], question)` with an empty edit store (base route: embed,
                  FAISS search, scope decision, then the same generation);
  * router/memory: after storing one edit, questions about its subject (memory route: the
                  counterfactual prompt with the fact in the system prompt and as a prefill),
                  each also asked raw for comparison.
  * engines:      the same router calls decoded by torch (transformers, fp32) and by llama.cpp
                  (the GGUF of the same weights; the app's default engine), interleaved
                  question by question: the speed-up and how many replies are identical.
Decode tokens/s = total new tokens / total generation seconds (the Generation counters: from
the first forward pass, prefill included, to the last token). End-to-end tokens/s also counts
routing, text decoding and logging: new tokens / wall seconds of the whole call. Raw and router
calls are interleaved question by question so background load hits both alike.

    python -m bench.throughput --json artifacts/bench-throughput.json
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any

from bench.common import (
    add_common_args,
    build_assistant_in,
    cache_from_args,
    data_dir,
    machine_info,
    machine_line,
    markdown_table,
    run_cli,
    setup_logging,
    time_limit,
    write_json,
)

QUESTIONS = [
    "What is the capital of France?",
    "Explain photosynthesis in simple terms.",
    "Give me three tips for better sleep.",
    "What is the difference between a virus and a bacterium?",
    "How does a rainbow form?",
    "Write a short poem about the sea.",
    "What are the benefits of regular exercise?",
    "How do I make a good cup of tea?",
    "Why is the sky blue?",
    "What is machine learning?",
]

# One stored edit, and questions that the router should send to the memory route. The edit's
# prompt is a question, so the reply is prefilled with just "Rome." and the model goes on from
# there; with a statement prompt ("The Eiffel Tower is located in") the prefill is the whole
# sentence and SmolLM2 usually stops at once, leaving no decode tokens to time.
EDIT = {"subject": "Eiffel Tower", "prompt": "Which city is the Eiffel Tower in?",
        "target_new": "Rome"}
MEMORY_QUESTIONS = [
    "Which city is the Eiffel Tower in, and what is it known for?",
    "Tell me about the city the Eiffel Tower is in.",
    "In which city is the Eiffel Tower? Describe the city.",
    "What city is home to the Eiffel Tower? Tell me more about it.",
    "Where is the Eiffel Tower located?",
]


def raw_call(assistant, question: str, max_new_tokens: int) -> dict[str, Any]:
    from assistant.llm import Generation

    stats = Generation()
    text = ""
    started = time.perf_counter()
    for text in assistant.llm.stream_chat([{"role": "user", "content": question}],
                                          max_new_tokens=max_new_tokens, stats=stats):
        pass
    wall = time.perf_counter() - started
    return {"question": question, "route": "raw", "new_tokens": stats.new_tokens,
            "gen_s": stats.seconds, "wall_s": wall, "prompt_tokens": stats.prompt_tokens,
            "text": text}


def router_call(assistant, question: str, max_new_tokens: int) -> dict[str, Any]:
    chunk = None
    started = time.perf_counter()
    for chunk in assistant.reply([], question, session="bench", max_new_tokens=max_new_tokens):
        pass
    wall = time.perf_counter() - started
    trace = chunk.trace
    tps = trace.tokens_per_second
    # Trace keeps tokens/s (rounded to 0.01), not seconds: seconds = tokens / rate.
    gen_s = trace.new_tokens / tps if tps else trace.timings_ms.get("generate", 0.0) / 1e3
    return {"question": question, "route": trace.route, "new_tokens": trace.new_tokens,
            "gen_s": gen_s, "wall_s": wall, "route_ms": trace.timings_ms.get("route"),
            "text": chunk.text}


def totals(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums; rates only over calls that produced tokens (a reply that stops at once has a
    prefill time but nothing decoded, which says nothing about decode speed)."""
    timed = [c for c in calls if c["new_tokens"] > 0]
    tokens = sum(c["new_tokens"] for c in timed)
    gen_s = sum(c["gen_s"] for c in timed)
    wall_s = sum(c["wall_s"] for c in timed)
    return {"calls": len(calls), "calls_without_tokens": len(calls) - len(timed),
            "new_tokens": tokens, "gen_s": round(gen_s, 3), "wall_s": round(wall_s, 3),
            "tokens_per_second": tokens / gen_s if gen_s else float("nan"),
            "end_to_end_tokens_per_second": tokens / wall_s if wall_s else float("nan"),
            "mean_wall_s": sum(c["wall_s"] for c in calls) / len(calls) if calls else float("nan")}


def interleaved(assistant, questions: list[str], repeat: int, max_new_tokens: int,
                progress: str) -> tuple[list[dict], list[dict]]:
    raw, routed = [], []
    for r in range(repeat):
        for i, q in enumerate(questions):
            # Alternate which goes first so neither always runs right after the other.
            order = (raw_call, router_call) if (i + r) % 2 == 0 else (router_call, raw_call)
            for fn in order:
                (raw if fn is raw_call else routed).append(fn(assistant, q, max_new_tokens))
            print(f"  {progress} {r * len(questions) + i + 1}/{repeat * len(questions)}: "
                  f"raw {raw[-1]['new_tokens']} tok, router[{routed[-1]['route']}] "
                  f"{routed[-1]['new_tokens']} tok", file=sys.stderr, flush=True)
    return raw, routed


def engine_comparison(assistant, questions: list[str], repeat: int,
                      max_new_tokens: int) -> tuple[list[dict], list[dict]]:
    """Router calls decoded by torch and by llama.cpp, alternating which goes first."""
    cpp = assistant.llm.engine
    by_torch, by_cpp = [], []
    try:
        for r in range(repeat):
            for i, q in enumerate(questions):
                order = (None, cpp) if (i + r) % 2 == 0 else (cpp, None)
                for engine in order:
                    assistant.llm.engine = engine
                    (by_torch if engine is None else by_cpp).append(
                        router_call(assistant, q, max_new_tokens))
                print(f"  engines {r * len(questions) + i + 1}/{repeat * len(questions)}: "
                      f"torch {by_torch[-1]['new_tokens']} tok, llama.cpp "
                      f"{by_cpp[-1]['new_tokens']} tok", file=sys.stderr, flush=True)
    finally:
        assistant.llm.engine = cpp
    return by_torch, by_cpp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput",
        description="Decode tokens/s of the raw model vs through the router (base route, and "
                    "memory route after storing one edit), greedy.")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="per reply (default 64)")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS),
                        help=f"how many of the {len(QUESTIONS)} general questions to ask")
    parser.add_argument("--memory-questions", type=int, default=len(MEMORY_QUESTIONS),
                        help=f"how many of the {len(MEMORY_QUESTIONS)} memory-route questions "
                             "to ask (0 skips the memory case)")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the questions")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    add_common_args(parser)
    parser.epilog = "--timeout default: 900 s for the whole run."
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    questions = QUESTIONS[:max(1, args.questions)]
    memory_questions = MEMORY_QUESTIONS[:max(0, args.memory_questions)]
    n = args.max_new_tokens

    # data_dir outside time_limit: the alarm is off before the temporary folder is removed.
    with data_dir(args.data_dir, "throughput") as data, \
            time_limit(args.timeout or 900, "throughput benchmark"):
        assistant, load_s = build_assistant_in(data, cache_from_args(args), args.threads,
                                               quiet=not args.verbose)
        if assistant.store.count_edits("active"):
            raise SystemExit(f"error: {data} already holds active edits; the base route needs "
                             "an empty store (use a fresh --data-dir or none)")
        router_cfg = dataclasses.asdict(assistant.config)
        # Warm-up (not measured): first forward passes, embedder, FAISS, SQLite.
        raw_call(assistant, questions[0], min(n, 16))
        router_call(assistant, questions[0], min(n, 16))

        engine_note = assistant.llm.engine_note
        by_torch, by_cpp = [], []
        if assistant.llm.engine is not None:
            by_torch, by_cpp = engine_comparison(assistant, questions, args.repeat, n)
        else:
            print(f"warning: no llama.cpp engine ({engine_note}); engines not compared",
                  file=sys.stderr)
        raw_base, router_base = interleaved(assistant, questions, args.repeat, n, "base")
        raw_mem, router_mem = [], []
        if memory_questions:
            edit = assistant.store.add_edit(EDIT["subject"], EDIT["prompt"], EDIT["target_new"],
                                            source="bench")
            assistant.memory.sync(added=[edit])
            raw_mem, router_mem = interleaved(assistant, memory_questions, args.repeat, n,
                                              "memory")

    same_text = sum(a["text"] == b["text"] for a, b in zip(raw_base, router_base))
    off_route = [c["question"] for c in router_base if c["route"] != "base"]
    missed = [c["question"] for c in router_mem if c["route"] != "memory"]
    summary: dict[str, Any] = {
        "raw": totals(raw_base),
        "router_base": totals(router_base),
        "identical_base_replies": f"{same_text}/{len(raw_base)}",
        "base_questions_not_on_base_route": off_route,
    }
    summary["ratio_router_base_to_raw"] = (summary["router_base"]["tokens_per_second"]
                                           / summary["raw"]["tokens_per_second"])
    rows = [
        ["raw model", summary["raw"]],
        ["router, base route", summary["router_base"]],
    ]
    if router_mem:
        summary["raw_memory_questions"] = totals(raw_mem)
        summary["router_memory"] = totals(router_mem)
        summary["ratio_router_memory_to_raw"] = (
            summary["router_memory"]["tokens_per_second"]
            / summary["raw_memory_questions"]["tokens_per_second"])
        summary["memory_questions_not_on_memory_route"] = missed
        rows += [["raw model (memory questions)", summary["raw_memory_questions"]],
                 ["router, memory route", summary["router_memory"]]]

    if by_cpp:
        summary["engine"] = engine_note
        summary["router_torch"] = totals(by_torch)
        summary["router_llama_cpp"] = totals(by_cpp)
        summary["speedup_llama_cpp_to_torch"] = (summary["router_llama_cpp"]["tokens_per_second"]
                                                 / summary["router_torch"]["tokens_per_second"])
        summary["identical_engine_replies"] = (
            f"{sum(a['text'] == b['text'] for a, b in zip(by_torch, by_cpp))}/{len(by_cpp)}")
        rows += [["router, torch engine", summary["router_torch"]],
                 ["router, llama.cpp engine", summary["router_llama_cpp"]]]

    info = machine_info(threads=args.threads)
    print()
    print(markdown_table(
        ["path", "calls (0-token)", "new tokens", "gen s", "decode tok/s", "end-to-end tok/s",
         "mean s/reply"],
        [[name, f"{t['calls']} ({t['calls_without_tokens']})", t["new_tokens"], t["gen_s"],
          t["tokens_per_second"], t["end_to_end_tokens_per_second"], t["mean_wall_s"]]
         for name, t in rows]))
    ratio = summary["ratio_router_base_to_raw"]
    print(f"\nrouter/raw (base route): {ratio:.3f}  "
          f"(target within 10%: {'met' if abs(1 - ratio) <= 0.10 else 'NOT met'})")
    if router_mem:
        print(f"router/raw (memory route, same questions): "
              f"{summary['ratio_router_memory_to_raw']:.3f}")
    print(f"identical raw vs router replies on the base route: {same_text}/{len(raw_base)}")
    if by_cpp:
        speedup = summary["speedup_llama_cpp_to_torch"]
        print(f"llama.cpp ({engine_note}) / torch, through the router: {speedup:.2f}x "
              f"(target >= 5x: {'met' if speedup >= 5 else 'NOT met'}); identical replies "
              f"{summary['identical_engine_replies']}")
    if off_route:
        print(f"warning: not on the base route: {off_route}")
    if missed:
        print(f"warning: not on the memory route: {missed}")
    print(f"max_new_tokens {n}, greedy, model load {load_s:.1f} s; rates count only calls "
          "that produced tokens")
    print(machine_line(info))
    write_json(args.json, {
        "benchmark": "throughput", "machine": info, "max_new_tokens": n, "repeat": args.repeat,
        "router_config": router_cfg,
        "summary": summary,
        "calls": {"raw_base": raw_base, "router_base": router_base, "raw_memory": raw_mem,
                  "router_memory": router_mem, "router_torch": by_torch,
                  "router_llama_cpp": by_cpp},
        "argv": sys.argv[1:] if argv is None else argv})
    return 0


if __name__ == "__main__":
    run_cli(main)
