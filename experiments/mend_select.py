"""Choose MEND's edit-time settings (passes, scale) on held-out *training* subjects.

The editor is trained for one pass at full scale; at edit time more passes raise reliability
and a smaller scale protects locality. This sweeps both on validation subjects of the train
split (`assistant.records.split_by_subject`; the evaluation sets are never read) and prints
reliability / generalization / locality per setting, as the training validation scores them.

    python -m experiments.mend_select --checkpoint <data>/checkpoints/mend-smollm2.pt \
        --json artifacts/mend-select.json
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

from bench.common import (add_model_args, load_default_model, markdown_table, run_cli, set_threads,
                          write_json)
from errors import AmendError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.mend_select", description=__doc__)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="training checkpoint (default: the shipped editor)")
    parser.add_argument("--records", type=int, default=60, help="per source (CF, zsRE)")
    parser.add_argument("--passes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.7, 0.5])
    parser.add_argument("--retry-scales", type=float, nargs="+", default=[0.0],
                        help="retry_scale values (0 = no extra pass for unlanded edits)")
    parser.add_argument("--overrides", type=json.loads, nargs="+", default=[{}],
                        help="config fields to replace, one JSON object per variant "
                             "(e.g. '{\"merge_ridge\": 0.03}')")
    add_model_args(parser)
    args = parser.parse_args(argv)
    set_threads(1)
    import torch

    from editing.registry import load_method_config
    from editing.mend.apply import load_editor, new_editor
    from editing.mend.train import as_example, validate
    from assistant.records import split_by_subject

    llm, _ = load_default_model(args.data_dir)
    cfg = load_method_config("mend", llm.family, llm.model)
    if args.checkpoint:
        editor = new_editor(llm.model, cfg)
        editor.load_state_dict(torch.load(args.checkpoint)["editor"])
        editor.eval()
    else:
        editor = load_editor(llm.model, cfg)
    _, valid = split_by_subject()
    held = {source: [as_example(r, llm.chat_text) for r in valid[source][:args.records]]
            for source in sorted(valid)}
    rows = []
    for overrides, passes, scale, retry in itertools.product(
            args.overrides, args.passes, args.scales, args.retry_scales):
        setting = dataclasses.replace(cfg, edit_steps=passes, edit_scale=scale,
                                      retry_scale=retry, **overrides)
        started = time.perf_counter()
        scores = {}
        for source, examples in held.items():  # each source's scores, then their mean
            part = validate(llm.model, llm.tokenizer, editor, examples, setting, llm.chat_text)
            scores.update({f"{source}_{key}": value for key, value in part.items()})
        for key in part:
            scores[key] = round(sum(scores[f"{source}_{key}"] for source in held) / len(held), 4)
        rows.append({"overrides": json.dumps(overrides), "passes": passes, "scale": scale,
                     "retry_scale": retry, **scores,
                     "seconds": round(time.perf_counter() - started, 1)})
        print(rows[-1], flush=True)
    print(markdown_table(list(rows[0]), [list(r.values()) for r in rows]))
    write_json(args.json, {"benchmark": "mend_select",
                           "records": sum(map(len, held.values())), "rows": rows})
    return 0


if __name__ == "__main__":
    run_cli(main, (AmendError,))
