"""Which layer to edit: causal tracing of the default model over CounterFact prompts.

For the first N records, traces the model's own greedy next token after `prompt` (tracing
explains what the model knows, right or wrong) with the subject's embeddings corrupted, and
averages, per layer, the indirect effect at the subject's last token (restored - corrupted
probability). The layer where the MLP effect peaks is where ROME/MEMIT should write.

    AMEND_DATA_DIR=/tmp/amend-data python -m bench.trace_layers \\
        --data counterfact-train --limit 20 --kinds mlp hidden \\
        --json artifacts/trace_layers.json --png artifacts/trace_example.png
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.common import (
    machine_info,
    machine_line,
    markdown_table,
    run_cli,
    set_threads,
    setup_logging,
    write_json,
)
from errors import AmendError

KINDS = ("hidden", "mlp", "attn")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True,
                        help="CounterFact records (EasyEdit JSON: prompt, subject, ...), or a "
                             "name: counterfact-train, counterfact (looked up as `python -m "
                             "editing.datasets where` shows)")
    parser.add_argument("--limit", type=int, default=20, help="trace the first N records")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=["mlp"],
                        help="states to restore (default: mlp)")
    parser.add_argument("--samples", type=int, default=10, help="noisy copies per prompt")
    parser.add_argument("--window", type=int, default=10, help="layers per mlp/attn window")
    parser.add_argument("--noise", type=float, default=None,
                        help="noise std (default: 3 x the std of the input embeddings)")
    parser.add_argument("--answer", choices=("greedy", "truth"), default="greedy",
                        help="trace the model's greedy next token (default) or the record's "
                             "ground_truth")
    parser.add_argument("--known", action="store_true",
                        help="scan the records in order and trace the first --limit ones whose "
                             "greedy token starts the ground truth (the paper's known facts)")
    parser.add_argument("--scan", type=int, default=3000,
                        help="with --known, look at no more than this many records")
    parser.add_argument("--min-prob", type=float, default=0.05,
                        help="skip records whose traced answer has a lower clean probability")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    parser.add_argument("--png", type=Path, default=None,
                        help="heat map(s) of the first traced record")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def load_records(path: Path, limit: int) -> list[dict[str, Any]]:
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of records")  # noqa: TRY004
    return records[:limit]


def greedy_token(model, tok, prompt: str) -> int:
    """The model's next token after the plain prompt (one cheap forward, for --known)."""
    import torch

    ids = torch.tensor([tok(prompt, add_special_tokens=False).input_ids])
    with torch.inference_mode():
        return int(model(input_ids=ids, logits_to_keep=1).logits[0, -1].argmax())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    set_threads(args.threads)
    from tqdm import tqdm

    from assistant.llm import ChatLLM
    from assistant.records import resolve_data
    from config import default_data_dir
    from editing.heatmap import render_heatmaps
    from editing.trace import CausalTracer, answer_token, average_indirect_effect
    from errors import InvalidEditError

    args.data = resolve_data(args.data)  # before the model loads: a missing file fails fast
    started = time.perf_counter()
    llm = ChatLLM.load(None, default_data_dir())
    load_s = time.perf_counter() - started
    records = load_records(args.data, args.scan if args.known else args.limit)
    results: dict[str, list] = {kind: [] for kind in args.kinds}
    kind_s = {kind: 0.0 for kind in args.kinds}
    skipped: list[dict[str, Any]] = []
    not_known = 0
    traced: list[dict[str, Any]] = []
    trace_started = time.perf_counter()
    bar = tqdm(records, desc="tracing", unit="record")
    for record in bar:
        if args.known and len(traced) >= args.limit:
            break
        prompt, subject = record["prompt"], record["subject"]
        truth = record.get("ground_truth")
        if args.known and (not truth or greedy_token(llm.model, llm.tokenizer, prompt)
                           != answer_token(llm.tokenizer, truth)):
            not_known += 1
            continue
        wanted = truth if args.answer == "truth" else None
        try:
            tracer = CausalTracer(llm.model, llm.tokenizer, prompt, subject, answer=wanted,
                                  samples=args.samples, noise=args.noise, seed=args.seed)
        except InvalidEditError as exc:
            skipped.append({"prompt": prompt, "subject": subject, "reason": str(exc)})
            continue
        if tracer.clean_prob < args.min_prob:
            skipped.append({"prompt": prompt, "subject": subject,
                            "reason": f"clean p({tracer.answer!r}) = {tracer.clean_prob:.3f}"})
            continue
        # does the traced token start the true object? (the paper traces known facts)
        knows = bool(truth) and tracer.answer_id == answer_token(llm.tokenizer, truth)
        entry = {"case_id": record.get("case_id"), "prompt": prompt, "subject": subject,
                 "answer": tracer.answer, "ground_truth": truth, "answer_is_truth": knows,
                 "clean_prob": tracer.clean_prob, "corrupted_prob": tracer.corrupted_prob,
                 "traces": {}}
        for kind in args.kinds:
            t0 = time.perf_counter()
            result = tracer.result(kind, window=args.window)
            kind_s[kind] += time.perf_counter() - t0
            results[kind].append(result)
            entry["traces"][kind] = result.to_dict(digits=4)
        traced.append(entry)
        bar.set_postfix(traced=len(traced), skipped=len(skipped), not_known=not_known)
    bar.close()
    trace_s = time.perf_counter() - trace_started

    if not traced:
        print(f"no record traced ({len(skipped)} skipped)")
        return 1
    summaries = {kind: average_indirect_effect(results[kind]) for kind in args.kinds}
    n_layers = next(iter(summaries.values()))["layers"]
    rows = [[layer] + [summaries[k]["effect"][layer] for k in args.kinds]
            for layer in range(n_layers)]
    headers = ["layer"] + [f"{k} AIE" for k in args.kinds]
    known = sum(e["answer_is_truth"] for e in traced)
    print(f"\nAverage indirect effect at the last subject token ({len(traced)} records traced, "
          f"{len(skipped)} skipped, {not_known} not known, of "
          f"{len(traced) + len(skipped) + not_known} records; answer: {args.answer}, "
          f"{known} of {len(traced)} traced answers start the ground truth; "
          f"samples {args.samples}, window {args.window})\n")
    print(markdown_table(headers, [[r[0]] + [f"{x:+.4f}" for x in r[1:]] for r in rows]))
    print()
    for kind in args.kinds:
        s = summaries[kind]
        print(f"{kind:6s}: best layer {s['best_layer']} (AIE {s['best_effect']:+.4f}); "
              f"mean p clean {s['clean_prob']:.3f}, p corrupted {s['corrupted_prob']:.3f}; "
              f"{kind_s[kind]:.1f} s ({kind_s[kind] / len(traced):.1f} s/record)")
    for item in skipped:
        print(f"skipped: {item['subject']!r} in {item['prompt']!r}: {item['reason']}")
    total_s = time.perf_counter() - started
    print(f"\nmodel load {load_s:.1f} s, tracing {trace_s:.1f} s, total {total_s:.1f} s")
    info = machine_info(args.threads)
    print(machine_line(info))

    if args.png:
        first = [results[kind][0] for kind in args.kinds]
        print(f"wrote {render_heatmaps(first, args.png)}")
    write_json(args.json, {
        "benchmark": "trace_layers", "machine": info, "data": str(args.data),
        "limit": args.limit, "answer": args.answer, "samples": args.samples, "window": args.window,
        "noise": args.noise, "seed": args.seed, "min_prob": args.min_prob,
        "known": args.known,
        "traced": len(traced), "skipped": skipped, "not_known": not_known, "summaries": summaries,
        "seconds": {"load": load_s, "trace": trace_s, "total": total_s, **kind_s},
        "records": traced,
    })
    return 0


if __name__ == "__main__":
    run_cli(main, errors=(AmendError, FileNotFoundError, ValueError, KeyError))
