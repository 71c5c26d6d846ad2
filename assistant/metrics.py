"""Teacher-forced metrics as EasyEdit defines them, so our numbers compare with its tables.

Token accuracy: feed `prompt + " " + target`, and count the target positions where the model's
argmax (from the previous position) is the target token. Locality compares those argmax tokens
on an unrelated prompt + its true answer before and after an edit.
"""
from __future__ import annotations

import resource

import torch
from transformers import PreTrainedTokenizerBase


def _target_ids(tok: PreTrainedTokenizerBase, prompt: str,
                target: str) -> tuple[list[int], list[int]]:
    prompt_ids = tok(prompt, add_special_tokens=False).input_ids
    full_ids = tok(f"{prompt} {target}", add_special_tokens=False).input_ids
    # The space before the target may merge differently: take what follows the prompt's tokens.
    if full_ids[: len(prompt_ids)] != prompt_ids:
        target_ids = tok(f" {target}", add_special_tokens=False).input_ids
        return prompt_ids, target_ids
    return prompt_ids, full_ids[len(prompt_ids):]


@torch.inference_mode()
def _target_logits(model: torch.nn.Module, tok: PreTrainedTokenizerBase, prompt: str,
                   target: str) -> tuple[torch.Tensor | None, list[int]]:
    """(logits predicting each target token (len(target), vocab), the target tokens),
    teacher-forced; (None, []) for an empty target."""
    prompt_ids, target_ids = _target_ids(tok, prompt, target)
    if not target_ids:
        return None, []
    logits = model(input_ids=torch.tensor([prompt_ids + target_ids])).logits[0]  # (T, vocab)
    start = len(prompt_ids) - 1
    return logits[start:start + len(target_ids)], target_ids


def predicted_target_tokens(model: torch.nn.Module, tok: PreTrainedTokenizerBase, prompt: str,
                            target: str) -> tuple[list[int], list[int]]:
    """(argmax tokens at the target positions, the target tokens), teacher-forced."""
    logits, target_ids = _target_logits(model, tok, prompt, target)
    if logits is None:
        return [], []
    return logits.argmax(-1).tolist(), target_ids


def token_accuracy(model: torch.nn.Module, tok: PreTrainedTokenizerBase, prompt: str,
                   target: str) -> float:
    predicted, target_ids = predicted_target_tokens(model, tok, prompt, target)
    if not target_ids:
        return 0.0
    return sum(p == t for p, t in zip(predicted, target_ids)) / len(target_ids)


def target_log_prob(model: torch.nn.Module, tok: PreTrainedTokenizerBase, prompt: str,
                    target: str) -> float:
    """Mean log-probability of the target's tokens after the prompt, teacher-forced: a
    continuous signal where token accuracy only flips (how far an edit's target has leaked
    into another subject's prompt, say)."""
    logits, target_ids = _target_logits(model, tok, prompt, target)
    if logits is None:
        return 0.0
    log_probs = torch.log_softmax(logits.float(), -1)
    return float(log_probs[torch.arange(len(target_ids)), torch.tensor(target_ids)].mean())


@torch.no_grad()
def greedy_words(model: torch.nn.Module, tok: PreTrainedTokenizerBase, prompt: str,
                 max_tokens: int = 6) -> str:
    """The model's own greedy continuation of a completion prompt, up to the first
    punctuation: what it believes comes next ("Madrid is in the country of" -> "Spain")."""
    ids = tok(prompt, return_tensors="pt").input_ids
    out = []
    for _ in range(max_tokens):
        logits = model(input_ids=ids).logits[0, -1]
        token = int(logits.argmax())
        if token == tok.eos_token_id:
            break
        out.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        text = tok.decode(out)
        if any(mark in text for mark in ".,;\n"):
            break
    text = tok.decode(out)
    for mark in ".,;\n":
        text = text.split(mark)[0]
    return text.strip()


def unchanged_share(before: list[int], after: list[int]) -> float:
    """Locality: the share of argmax tokens an edit left as they were."""
    if not before:
        return 1.0
    return sum(a == b for a, b in zip(before, after)) / len(before)


def contains_answer(reply: str, answer: str) -> bool:
    """Chat metrics: does the reply state the answer (case-insensitive)?"""
    return answer.strip().lower() in reply.lower()


def locality_baseline(model: torch.nn.Module, tok: PreTrainedTokenizerBase,
                      record) -> list[list[int]]:
    """The unedited model's argmax tokens on each of a record's locality probes."""
    return [predicted_target_tokens(model, tok, p.prompt, p.answer)[0] for p in record.locality]


def teacher_forced_scores(model: torch.nn.Module, tok: PreTrainedTokenizerBase, record,
                          baseline: list[list[int]]) -> dict[str, float]:
    """Reliability, generalization and locality of an `EditRecord` on the model as it is
    (edited), against `locality_baseline` taken before the edit; no chat generations."""
    return {
        "rel": token_accuracy(model, tok, record.prompt, record.target_new),
        "gen": sum(token_accuracy(model, tok, p, record.target_new)
                   for p in record.rephrases) / max(len(record.rephrases), 1),
        "loc": sum(unchanged_share(b, predicted_target_tokens(model, tok, p.prompt, p.answer)[0])
                   for p, b in zip(record.locality, baseline)) / max(len(baseline), 1),
    }


def peak_rss_mb() -> float:
    """Efficiency: peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
