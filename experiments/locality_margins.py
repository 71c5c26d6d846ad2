"""Why a ROME edit fails locality: a near-tie in the unedited model, or the edit reading the
locality prompt?

For each record's locality probes, the unedited model's margin between its top two tokens at
each answer position (the smallest over the answer); a margin of a hundredth of a nat flips
under any edit. For the records named with --edit, the shipped ROME edit is made and, along
each locality prompt, u . x (how strongly the rank-one edit reads that position; about 0.7 at
the edited subject) and the change in the new target's log-probability after it.

    python -m experiments.locality_margins --data counterfact --limit 50 --edit 13 46

(--data: a records file, or a name such as `counterfact`, looked up as `python -m
editing.datasets where` shows)
"""
from __future__ import annotations

import argparse

from bench.common import add_model_args, load_default_model, run_cli, set_threads, write_json
from errors import AmendError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.locality_margins",
                                     description=__doc__)
    parser.add_argument("--data", required=True,
                        help="records file, or counterfact / zsre (the evaluation sets)")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--show", type=int, default=10, help="print the N smallest margins")
    parser.add_argument("--edit", type=int, nargs="*", default=[],
                        help="record indices to edit with ROME and trace")
    add_model_args(parser)
    args = parser.parse_args(argv)
    set_threads(1)

    import torch

    from editing.locate import get_module, hooked
    from editing.methods import load_method
    from assistant.metrics import _target_logits, target_log_prob
    from assistant.records import load_records, resolve_data
    from editing.systems import edit_requests

    args.data = resolve_data(args.data)
    llm, root = load_default_model(args.data_dir)
    model, tok = llm.model, llm.tokenizer
    records = load_records(args.data, args.limit)
    margins = []
    with torch.no_grad():
        for index, record in enumerate(records):
            for probe in record.locality:
                logits, _ = _target_logits(model, tok, probe.prompt, probe.answer)
                if logits is None:
                    continue
                top = logits.float().log_softmax(-1).topk(2, -1)
                gap = top.values[:, 0] - top.values[:, 1]
                at = int(gap.argmin())
                margins.append({"record": index, "prompt": probe.prompt,
                                "margin": round(float(gap[at]), 4),
                                "top_two": [tok.decode(t) for t in top.indices[at]]})
    margins.sort(key=lambda m: m["margin"])
    for m in margins[:args.show]:
        print(f"{m['margin']:.3f} nats  record {m['record']:3d}  {m['prompt']!r}  {m['top_two']}")

    traces = []
    editor = load_method("rome", llm, root)
    module = get_module(model, editor.cfg.module_template.format(editor.cfg.layer))
    for index in args.edit:
        record = records[index]
        delta = editor.edit(llm, edit_requests([record]), progress=lambda _m: None)
        (left, right), = delta.low_rank.values()
        read_out = right[0]
        for text in [record.prompt, *(p.prompt for p in record.locality)]:
            captured: dict = {}

            def read(_module, inputs, _out=captured):
                _out["x"] = inputs[0][0]

            ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
            with torch.no_grad(), hooked(module, pre=read):
                model(input_ids=ids)
            reads = (captured["x"] @ read_out).tolist()
            before = target_log_prob(model, tok, text, record.target_new)
            with torch.no_grad():
                module.weight.add_(left @ right)
            try:
                after = target_log_prob(model, tok, text, record.target_new)
            finally:
                with torch.no_grad():
                    module.weight.sub_(left @ right)
            traces.append({"record": index, "prompt": text, "edited": text == record.prompt,
                           "max_abs_read": round(max(map(abs, reads)), 3),
                           "target_logprob": [round(before, 3), round(after, 3)]})
            print(f"record {index:3d} {'edit ' if text == record.prompt else 'local'} "
                  f"{text!r}: max |u.x| {traces[-1]['max_abs_read']:.2f}, "
                  f"log p({record.target_new!r}) {before:.2f} -> {after:.2f}")
    write_json(args.json, {"data": str(args.data), "margins": margins, "traces": traces})
    return 0


if __name__ == "__main__":
    run_cli(main, (AmendError,))
