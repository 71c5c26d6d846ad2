"""The llama.cpp chat engine: which GGUF type to run, and how long a swap takes.

For each GGUF type (f32, f16, bf16, q8_0, q4_1) of the default model's live weights: the time
to write its file and load it, its size, decode tokens/s on general and factual questions
(greedy, one thread, through `ChatLLM.stream_chat` as chat runs), and how many replies are
identical to torch's (transformers, fp32: the engine the app had before). Then the swap a
rollback makes (`ChatEngine.refresh`): the file written and loaded, and loaded when cached.

    python -m bench.engine --json artifacts/bench-engine.json
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench.common import (
    add_model_args,
    load_default_model,
    machine_info,
    machine_line,
    markdown_table,
    run_cli,
    set_threads,
    setup_logging,
    write_json,
)
from bench.throughput import QUESTIONS

FACTS = [
    "What is the capital of France?", "Where is the Eiffel Tower?", "Who wrote Hamlet?",
    "What language is spoken in Brazil?", "Which company makes the iPhone?",
    "What is the largest planet?", "Who painted the Mona Lisa?",
    "What currency does Japan use?", "Where was Albert Einstein born?",
    "What sport does Lionel Messi play?", "Which river flows through Cairo?",
]
TYPES = ["f32", "f16", "bf16", "q8_0", "q4_1"]


def replies(llm, questions: list[str], max_new_tokens: int) -> tuple[list[str], float]:
    """Each question's reply, and decode tokens/s over all of them."""
    from assistant.llm import Generation

    texts, tokens, seconds = [], 0, 0.0
    for question in questions:
        stats = Generation()
        texts.append(llm.chat([{"role": "user", "content": question}],
                              max_new_tokens=max_new_tokens, stats=stats))
        tokens += stats.new_tokens
        seconds += stats.seconds
    return texts, tokens / seconds if seconds else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--types", default=",".join(TYPES),
                        help=f"GGUF types to compare (default {','.join(TYPES)})")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    add_model_args(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    set_threads(1)
    from dataclasses import replace

    from editing.deltas import own_checksum
    from editing.serving import ChatEngine

    llm, root = load_default_model(args.data_dir)
    questions = QUESTIONS + FACTS
    print(f"torch: {len(questions)} questions", file=sys.stderr, flush=True)
    torch_texts, torch_tps = replies(llm, questions, args.max_new_tokens)
    rows: list[dict[str, Any]] = [{"type": "torch (fp32)", "tokens_per_second": torch_tps,
                                   "identical": len(questions)}]
    base_config = llm.config
    for qtype in args.types.split(","):
        llm.config = replace(base_config, engine_gguf_type=qtype)
        engine = ChatEngine(llm, root, "llama.cpp")
        if not engine.uses_llama_cpp:
            raise SystemExit(f"error: llama.cpp cannot serve here: {engine.note}")
        path = engine.path_for(own_checksum(llm.model))
        path.unlink(missing_ok=True)  # time the write as a promotion pays it
        started = time.perf_counter()
        engine.install(engine.build(llm.model, lambda _: None))
        write_s = time.perf_counter() - started
        print(f"{qtype}: written and loaded in {write_s:.1f} s", file=sys.stderr, flush=True)
        texts, tps = replies(llm, questions, args.max_new_tokens)
        same = sum(a == b for a, b in zip(texts, torch_texts))
        rows.append({"type": qtype, "write_and_load_s": round(write_s, 2),
                     "mb": round(path.stat().st_size / 2**20), "tokens_per_second": tps,
                     "speedup": tps / torch_tps, "identical": same,
                     "differing": [[q, t, a] for q, t, a in zip(questions, torch_texts, texts)
                                   if t != a]})
        llm.engine = None
    # the swap a rollback makes, with the shipped type: written + loaded, then cached
    llm.config = base_config
    engine = ChatEngine(llm, root, "llama.cpp")
    engine.path_for(own_checksum(llm.model)).unlink(missing_ok=True)
    engine.refresh(lambda _: None)
    cold = engine.last_swap_seconds
    engine.refresh(lambda _: None)
    warm = engine.last_swap_seconds
    print()
    print(markdown_table(
        ["engine", "file MB", "write + load s", "decode tok/s", "x torch",
         f"replies identical to torch (of {len(questions)})"],
        [[r["type"], r.get("mb", "—"), r.get("write_and_load_s", "—"), r["tokens_per_second"],
          r.get("speedup", 1.0), r["identical"]] for r in rows]))
    print(f"\nswap ({base_config.engine_gguf_type}, as a rollback does): {cold:.2f} s with the "
          f"file written, {warm:.2f} s when cached; max_new_tokens {args.max_new_tokens}")
    info = machine_info(threads=1)
    print(machine_line(info))
    write_json(args.json, {"benchmark": "engine", "machine": info, "rows": rows,
                           "swap_written_s": cold, "swap_cached_s": warm,
                           "max_new_tokens": args.max_new_tokens,
                           "argv": sys.argv[1:] if argv is None else argv})
    return 0


if __name__ == "__main__":
    run_cli(main)
