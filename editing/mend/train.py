"""Train the MEND editor on CPU.

    python -m editing.mend.train [--minutes M] [--steps N] [--resume] [--write]

Each step takes `batch_edits` training records (or, with `batch_edits_max`, a number drawn
between the two) and edits them together: one forward/backward pass of the frozen model on the
edit texts gives the gradient factors, the editor turns them into an update, and the loss on
the *edited* model is the new target's NLL on the edit texts and their paraphrases (plus chat
questions) and the KL to the unedited model on unrelated prompts (the records' locality
prompts), as in the paper. Only the editor learns.

Records come from the CounterFact and zsRE training splits (`assistant.records.train_files`:
../shared/data or the copy `python -m editing.datasets fetch` downloads); any whose subject
also occurs in the evaluation sets is dropped, and 5% of the remaining subjects are held out for the
validation curve. Checkpoints go to <data>/checkpoints (resume with --resume); --write saves
the editor to the path in configs/mend/<family>.json and records its sha256 there.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from assistant.llm import ChatLLM
from assistant.phrasings import question_forms
from assistant.records import EditRecord, split_by_subject
from config import CONFIG_DIR, REPO_ROOT, default_data_dir
from editing.hparams import MendConfig, edited_modules
from editing.locate import block_input, from_block
from editing.mend.apply import edit_texts, edit_updates, editor_path, new_editor
from editing.mend.core import (edited, editor_updates, frozen, gradient_factors, lowest_module,
                               scored_logits, text_batch)
from editing.registry import load_method_config
from editing.rome.compute import ChatFormat, EditRequest
from errors import run_command

ZSRE_SHARE = 0.3  # zsRE has 500 training records to CounterFact's 10,000


@dataclass(frozen=True)
class Example:
    """One training edit: what to write, paraphrases that must follow, prompts that must not."""

    request: EditRequest
    equivalents: tuple[tuple[str, str], ...]
    unrelated: tuple[tuple[str, str], ...]
    chat_equivalents: tuple[tuple[str, str], ...] = ()  # long (system prompt): own batch


def as_example(record: EditRecord, chat_format: ChatFormat | None,
               chat_equivalents: bool = False) -> Example:

    target = record.target_new.strip()
    chat = ()
    if chat_equivalents and chat_format is not None and record.rephrases:
        chat = ((chat_format(record.rephrases[0]), target),)
    return Example(
        EditRequest(record.subject, record.prompt, target,
                    tuple(question_forms(record.prompt, record.subject, limit=2))),
        tuple((p, " " + target) for p in record.rephrases),
        tuple((p.prompt, " " + p.answer.strip()) for p in record.locality), chat)


def step_loss(model, tok, editor, names: list[str], examples: list[Example],
              cfg: MendConfig, chat_format: ChatFormat | None) -> tuple[torch.Tensor, dict]:
    """The MEND training loss of one batch of edits applied together.

    The short texts (edits, which carry the fine-tuning loss, their paraphrases and the
    unrelated prompts) form one batch, whose gradient pass also gives the unedited model's
    logits for the KL and the input of the lowest edited block, from which the edited pass
    runs. Chat-templated paraphrases are much longer and go in a second batch rather than
    padding every short text to their length.
    """
    pieces, weights = edit_texts([e.request for e in examples], chat_format, cfg.chat_prompts)
    equivalents = [q for e in examples for q in e.equivalents]
    unrelated = [u for e in examples for u in e.unrelated]
    batch = text_batch(tok, pieces + equivalents + unrelated)
    text_weights = torch.cat([weights, torch.zeros(len(equivalents) + len(unrelated))])
    hidden: dict[str, torch.Tensor] = {}
    factors, base_logits = gradient_factors(model, names, batch, text_weights,
                                            extra_logits=True, hidden=hidden)
    updates = editor_updates(editor, factors, track=editor.training)
    lowest = lowest_module(names)
    with edited(model, updates), from_block(model, lowest, hidden["hidden"]):
        logits = scored_logits(model, batch)
    targets = len(pieces) + len(equivalents)
    scored = batch.rows < targets
    nll = F.cross_entropy(logits[scored], batch.targets[scored], reduction="none")
    text_nll = [batch.per_text_mean(nll, batch.rows[scored])[:targets]]
    chat = [q for e in examples for q in e.chat_equivalents]
    if chat:
        chat_batch = text_batch(tok, chat)
        chat_hidden: dict[str, torch.Tensor] = {}
        with torch.no_grad(), block_input(model, lowest, chat_hidden):
            model(input_ids=chat_batch.ids, attention_mask=chat_batch.mask, use_cache=False,
                  logits_to_keep=1)
        with edited(model, updates), from_block(model, lowest, chat_hidden["hidden"]):
            chat_logits = scored_logits(model, chat_batch)
        chat_nll = F.cross_entropy(chat_logits, chat_batch.targets, reduction="none")
        text_nll.append(chat_batch.per_text_mean(chat_nll))
    edit_loss = torch.cat(text_nll).mean()
    kl = F.kl_div(logits[~scored].log_softmax(-1), base_logits[~scored].log_softmax(-1),
                  log_target=True, reduction="batchmean")
    loss = cfg.edit_loss_weight * edit_loss + cfg.locality_loss_weight * kl
    return loss, {"edit": float(edit_loss.detach()), "kl": float(kl.detach())}


@torch.no_grad()
def _accuracy(logits: torch.Tensor, batch, row: int) -> float:
    picked = batch.rows == row
    return float((logits[picked].argmax(-1) == batch.targets[picked]).float().mean())


def validate(model, tok, editor, examples: list[Example],
             cfg: MendConfig, chat_format: ChatFormat | None, batch: int = 0) -> dict:
    """Single edits on held-out subjects: reliability, generalization, locality (teacher
    forced, as the evaluation harness defines them), each edit made as `apply_mend` makes it
    (retry pass included). With `batch`, also the same scores of the first `batch` examples
    edited together (as `batch_*`)."""
    scores: dict[str, list[float]] = {}

    def edit_and_score(together: list[Example], prefix: str) -> None:
        updates, _ = edit_updates(model, tok, editor, [e.request for e in together], cfg,
                                  chat_format)
        for example in together:
            for key, value in _edit_scores(model, tok, updates, example).items():
                scores.setdefault(prefix + key, []).append(value)

    for example in examples:
        edit_and_score([example], "")
    if batch > 1:
        edit_and_score(examples[:batch], "batch_")
    return {k: round(sum(v) / len(v), 4) for k, v in scores.items() if v}


@torch.no_grad()
def _edit_scores(model, tok, updates, example: Example) -> dict[str, float]:
    """One example's teacher-forced scores with `updates` applied."""
    probes = [(example.request.prompt, " " + example.request.target_new)]
    probes += [q for q in example.equivalents[:1]]
    probes += list(example.unrelated[:1])
    batch = text_batch(tok, probes)
    before = scored_logits(model, batch)
    with edited(model, updates):
        after = scored_logits(model, batch)
    scores = {"reliability": _accuracy(after, batch, 0)}
    if len(probes) == 3:
        scores["generalization"] = _accuracy(after, batch, 1)
    last = batch.rows == len(probes) - 1
    scores["locality"] = float((after[last].argmax(-1) == before[last].argmax(-1)).float().mean())
    return scores


def record_checksum(family: str, digest: str) -> Path:
    """Write the shipped editor's sha256 into its config file (other fields untouched)."""
    path = CONFIG_DIR / "mend" / f"{family}.json"
    data = json.loads(path.read_text())
    data["weights_sha256"] = digest
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the MEND editor network.")
    parser.add_argument("--model", type=Path, default=None,
                        help="Hugging Face model folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--config", type=Path, default=None, help="hyperparameter file")
    parser.add_argument("--steps", type=int, default=None, help="override the config's steps")
    parser.add_argument("--minutes", type=float, default=60.0, help="time budget")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--validation-records", type=int, default=24)
    parser.add_argument("--write", action="store_true", help="ship the editor in the repo")
    parser.add_argument("--report", type=Path, default=REPO_ROOT / "artifacts" / "mend_train.json")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or default_data_dir()
    llm = ChatLLM.load(args.model, data_dir)
    model, tok = llm.model, llm.tokenizer
    model.eval()
    cfg = load_method_config("mend", llm.family, model, args.config)
    names = edited_modules(cfg)
    chat_format = llm.chat_text if cfg.chat_prompts or cfg.chat_equivalents else None
    torch.manual_seed(cfg.seed)
    editor = new_editor(model, cfg)
    network = [p for n, p in editor.named_parameters() if not n.startswith("log_rates")]
    optimiser = torch.optim.Adam([
        {"params": network, "lr": cfg.learning_rate},
        {"params": list(editor.log_rates.parameters()), "lr": cfg.rate_learning_rate}])
    steps = args.steps or cfg.steps
    checkpoint = data_dir / "checkpoints" / f"mend-{llm.family}.pt"
    start, curve, validation = 0, [], []
    if args.resume and checkpoint.exists():
        state = torch.load(checkpoint)
        editor.load_state_dict(state["editor"])
        optimiser.load_state_dict(state["optimiser"])
        start, curve, validation = state["step"], state["curve"], state["validation"]
    train, valid = split_by_subject()
    rng = random.Random(cfg.seed + start)
    held_out = [as_example(r, chat_format)
                for source in sorted(valid)
                for r in valid[source][:args.validation_records // max(len(valid), 1)]]
    print(f"training records: {sum(map(len, train.values()))}, validation subjects held out: "
          f"{sum(map(len, valid.values()))}; editing {len(names)} weights; "
          f"{sum(p.numel() for p in editor.parameters()):,} editor parameters")

    def save_checkpoint(step: int) -> None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"editor": editor.state_dict(), "optimiser": optimiser.state_dict(),
                    "step": step, "curve": curve, "validation": validation}, checkpoint)

    deadline = time.monotonic() + args.minutes * 60
    started = time.monotonic()
    bar = tqdm(range(start, steps), desc="Training MEND", initial=start, total=steps)
    with frozen(model):
        for step in bar:
            source = "zsre" if "zsre" in train and rng.random() < ZSRE_SHARE else "counterfact"
            pool = train.get(source) or next(iter(train.values()))
            # a fixed size draws nothing, so such runs keep the record sequence they had
            size = (rng.randint(cfg.batch_edits, cfg.batch_edits_max)
                    if cfg.batch_edits_max > cfg.batch_edits else cfg.batch_edits)
            examples = [as_example(rng.choice(pool), chat_format, cfg.chat_equivalents)
                        for _ in range(size)]
            editor.train()
            loss, parts = step_loss(model, tok, editor, names, examples, cfg, chat_format)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(editor.parameters(), 1.0)
            optimiser.step()
            curve.append({"step": step + 1, "loss": round(float(loss), 4), **{
                k: round(v, 4) for k, v in parts.items()}})
            recent = curve[-20:]
            bar.set_postfix(edit=f"{sum(c['edit'] for c in recent) / len(recent):.3f}",
                            kl=f"{sum(c['kl'] for c in recent) / len(recent):.4f}")
            done = step + 1 == steps or time.monotonic() > deadline
            if (step + 1) % cfg.validation_every == 0 or done:
                editor.eval()
                scores = validate(model, tok, editor, held_out, cfg, chat_format,
                                  batch=cfg.batch_edits_max)
                validation.append({"step": step + 1,
                                   "minutes": round((time.monotonic() - started) / 60, 2),
                                   **scores})
                tqdm.write(f"step {step + 1}: held-out {scores}")
                save_checkpoint(step + 1)
            if time.monotonic() > deadline:
                print(f"time budget reached at step {step + 1}")
                break
    report = {"steps_done": len(curve),  # the curve of a resumed run starts at step 1
              "minutes": round((time.monotonic() - started) / 60, 2),
              "validation": validation, "loss_curve": curve, "threads": args.threads,
              "rates": {n: float(editor.rate(n)) for n in names}}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report))
    print(json.dumps({"validation": validation[-1:], "rates": report["rates"]}, indent=2))
    if args.write:
        path = editor_path(cfg) if args.config is None else REPO_ROOT / cfg.weights
        digest = editor.save(path, {"family": llm.family, "steps": len(curve),
                                    "validation": validation[-1:] or None})
        print(f"wrote {path.relative_to(REPO_ROOT)} (sha256 {digest})")
        if args.config is None:
            print(f"recorded the checksum in {record_checksum(llm.family, digest)}")


if __name__ == "__main__":
    run_command(main)
