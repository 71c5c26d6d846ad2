"""Train and compare scope deciders on the training splits, split by subject.

    python -m assistant.scope_train [--limit N] [--write] [--data FILE|NAME ...]

Default data: the zsRE and CounterFact training splits (`assistant.records.train_files`:
../shared/data or the copy `python -m editing.datasets fetch` downloads).

Pairs (edit, query) come from the training records: in scope = the edit's prompt vs its
paraphrase and vs a chat question asking the same (`assistant/phrasings.py`); out of scope =
its neighbourhood prompt about another subject, another edit's prompt, and another edit's
prompt and chat question rewritten about this edit's subject (same subject, other relation:
the hard case). Subjects are hashed into train / held-out so no subject is in both.

Compared on the held-out part: (a) the threshold rule (similarity, subject, masked relation),
(b) the `ScopeHead` MLP over `pair_features`. `--write` ships the head's weights to
assistant/weights/scope_head.npz and points the router config at the better decider.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from assistant.embedder import Embedder
from assistant.phrasings import OTHER_ATTRIBUTES, question_forms, relation_of
from assistant.records import DATA_NAMES, resolve_data
from assistant.scope import ScopeHead, pair_features, relation_text, subject_overlap
from config import CONFIG_DIR, REPO_ROOT, router_config
from errors import AmendError, run_command

DEFAULT_DATA = ("zsre-train", "counterfact-train")  # names for resolve_data
HEAD_PATH = "assistant/weights/scope_head.npz"
HELD_OUT_SHARE = 0.2
GATE_RECALL = 0.99  # the cheap similarity gate in front of the head may drop 1% of positives


def normalise_record(rec: dict) -> dict:
    """CounterFact (prompt, rephrase_prompt, locality_prompt) or zsRE (src, rephrase, loc)."""
    if "src" in rec:
        return {"subject": rec["subject"], "prompt": rec["src"], "rephrase_prompt": rec["rephrase"],
                "locality_prompt": rec["loc"].removeprefix("nq question: ")}
    return rec


def other_attributes(prompt: str, subject: str) -> list[str]:
    """Questions about `subject` that ask something else than `prompt`: the OTHER_ATTRIBUTES
    not of the prompt's own relation ("Who designed X?" is in scope of an architect edit)."""
    own = relation_of(prompt, subject)
    questions = [q.format(s=subject) for q in OTHER_ATTRIBUTES]
    return [q for q in questions if own is None or relation_of(q, subject) is not own]


def calibration_pairs(records: list[dict], seed: int = 0) -> list[tuple[str, str, str, bool]]:
    """(subject, edit prompt, query, in_scope) pairs from CounterFact or zsRE records."""
    rng = random.Random(seed)
    records = [normalise_record(r) for r in records]
    pairs = []
    for rec in records:
        prompt, subject = rec["prompt"], rec["subject"]
        pairs.append((subject, prompt, rec["rephrase_prompt"], True))
        pairs.append((subject, prompt, rec["locality_prompt"], False))
        questions = question_forms(prompt, subject, limit=None)
        if questions:  # chat users ask questions about statement-style edits...
            pairs.append((subject, prompt, rng.choice(questions), True))
            if len(questions) > 1:  # ...and a chat edit stored as a question is asked again
                first, second = rng.sample(questions, 2)
                pairs.append((subject, first, second, True))
                pairs.append((subject, first, rng.choice(other_attributes(first, subject)),
                              False))
        pairs.append((subject, prompt, rng.choice(other_attributes(prompt, subject)), False))
        other = rng.choice(records)
        if other["subject"] == subject:
            continue
        pairs.append((subject, prompt, other["prompt"], False))
        if other["subject"] not in other["prompt"]:
            continue
        # the same subject asked about another relation: the hard case for a router
        swapped = other["prompt"].replace(other["subject"], subject)
        other_questions = question_forms(swapped, subject, limit=None)
        if questions and other_questions == questions:
            continue  # most likely the same relation worded differently: not a negative
        pairs.append((subject, prompt, swapped, False))
        if other_questions:
            pairs.append((subject, prompt, rng.choice(other_questions), False))
    return pairs


def is_held_out(subject: str) -> bool:
    digest = hashlib.sha256(subject.strip().lower().encode()).digest()
    return digest[0] / 256 < HELD_OUT_SHARE


def f1_scores(predictions: np.ndarray, labels: np.ndarray) -> dict:
    tp = int((predictions & labels).sum())
    fp = int((predictions & ~labels).sum())
    fn = int((~predictions & labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": round(f1, 4), "precision": round(precision, 4), "recall": round(recall, 4)}


class PairTable:
    """Similarities and masked vectors of every pair, each distinct text embedded once."""

    def __init__(self, pairs: list[tuple[str, str, str, bool]], embed) -> None:
        texts = sorted({t for s, p, q, _ in pairs
                        for t in (p, q, relation_text(p, s), relation_text(q, s))})
        vectors = dict(zip(texts, embed(texts)))
        self.labels = np.array([label for *_, label in pairs])
        self.sims = np.array([float(vectors[p] @ vectors[q]) for _, p, q, _ in pairs])
        self.overlaps = np.array([subject_overlap(s, q) for s, _, q, _ in pairs])
        self.masked_q = np.stack([vectors[relation_text(q, s)] for s, _, q, _ in pairs])
        self.masked_p = np.stack([vectors[relation_text(p, s)] for s, p, _, _ in pairs])
        self.relations = (self.masked_q * self.masked_p).sum(axis=1)

    def features(self) -> np.ndarray:
        return np.stack([pair_features(s, o, q, p) for s, o, q, p in
                         zip(self.sims, self.overlaps, self.masked_q, self.masked_p)])


def fit_rule(table: PairTable, gate: np.ndarray) -> dict:
    """Grid-search the similarity and relation thresholds of the rule for F1."""
    best = {"f1": -1.0}
    for threshold in np.arange(0.0, 0.96, 0.05):
        for relation_min in np.arange(0.0, 0.96, 0.05):
            pred = gate & (table.sims >= threshold) & (table.relations >= relation_min)
            score = f1_scores(pred, table.labels)
            if score["f1"] > best["f1"]:
                best = {"scope_threshold": round(float(threshold), 2),
                        "relation_threshold": round(float(relation_min), 2), **score}
    return best


def fit_head(features: np.ndarray, labels: np.ndarray, hidden: int = 32, epochs: int = 60,
             seed: int = 0) -> dict[str, np.ndarray]:
    torch.manual_seed(seed)
    x = torch.from_numpy(features)
    y = torch.from_numpy(labels.astype(np.float32))
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    pos_weight = (len(y) - y.sum()) / y.sum().clamp(min=1)  # classes are 1:3
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 256):
            batch = order[start:start + 256]
            opt.zero_grad()
            loss = loss_fn(net(x[batch]).squeeze(-1), y[batch])
            loss.backward()
            opt.step()
    w1, b1 = net[0].weight.detach().numpy().T, net[0].bias.detach().numpy()
    w2, b2 = net[2].weight.detach().numpy()[0], net[2].bias.detach().numpy()[0]
    return {"w1": w1.astype(np.float32), "b1": b1.astype(np.float32),
            "w2": w2.astype(np.float32), "b2": np.float32(b2)}


def best_threshold(probabilities: np.ndarray, gate: np.ndarray, labels: np.ndarray) -> float:
    candidates = np.arange(0.05, 0.96, 0.01)
    scores = [f1_scores(gate & (probabilities >= t), labels)["f1"] for t in candidates]
    return float(candidates[int(np.argmax(scores))])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train and compare scope deciders.")
    parser.add_argument("--data", nargs="+", default=list(DEFAULT_DATA),
                        help=f"record files, or names among {sorted(DATA_NAMES)} "
                             "(default: the two training splits)")
    parser.add_argument("--limit", type=int, default=4000, help="records per file")
    parser.add_argument("--write", action="store_true",
                        help="save the head and point configs/router at the better decider")
    parser.add_argument("--report", type=Path, default=REPO_ROOT / "artifacts" / "scope.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = router_config()
    paths = [resolve_data(value) for value in args.data]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise AmendError(f"no records at {', '.join(missing)}")
    records = [r for path in paths
               for r in json.loads(path.read_text(encoding="utf-8"))[: args.limit]]
    pairs = calibration_pairs(records)
    held = np.array([is_held_out(s) for s, *_ in pairs])
    embedder = Embedder(int8=config.embedding_int8)
    started = time.perf_counter()
    table = PairTable(pairs, lambda texts: embedder.embed(texts, show_progress=True))
    print(f"{len(pairs)} pairs ({int(held.sum())} held out), embedded in "
          f"{time.perf_counter() - started:.0f} s")
    subject_gate = table.overlaps >= config.subject_overlap_min
    train, test = ~held, held

    rule = fit_rule(_subset(table, train), subject_gate[train])
    rule_pred = (subject_gate & (table.sims >= rule["scope_threshold"])
                 & (table.relations >= rule["relation_threshold"]))
    report = {"pairs": len(pairs), "held_out_pairs": int(held.sum()),
              "rule": {**rule, "held_out": f1_scores(rule_pred[test], table.labels[test])}}

    # The head sees what passes the cheap gates; its similarity gate keeps 99% of positives.
    positives = table.sims[train & table.labels]
    sim_gate = float(np.floor(np.quantile(positives, 1 - GATE_RECALL) * 100) / 100)
    gate = subject_gate & (table.sims >= sim_gate)
    features = table.features()
    weights = fit_head(features[train & gate], table.labels[train & gate])
    head = ScopeHead({**weights, "threshold": np.float32(0.5)})
    probabilities = head.probability(features)
    threshold = best_threshold(probabilities[train], gate[train], table.labels[train])
    head_pred = gate & (probabilities >= threshold)
    report["head"] = {"similarity_gate": sim_gate, "threshold": round(threshold, 2),
                      "train": f1_scores(head_pred[train], table.labels[train]),
                      "held_out": f1_scores(head_pred[test], table.labels[test])}
    use_head = report["head"]["held_out"]["f1"] > report["rule"]["held_out"]["f1"]
    report["chosen"] = "head" if use_head else "rule"
    print(json.dumps(report, indent=2))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2))
    if args.write:
        _write(report, {**weights, "threshold": np.float32(threshold)}, use_head)


def _subset(table: PairTable, mask: np.ndarray) -> PairTable:
    sub = object.__new__(PairTable)
    for name in ("labels", "sims", "overlaps", "masked_q", "masked_p", "relations"):
        setattr(sub, name, getattr(table, name)[mask])
    return sub


def _write(report: dict, weights: dict[str, np.ndarray], use_head: bool) -> None:
    path = REPO_ROOT / HEAD_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **weights)
    config_path = CONFIG_DIR / "router" / "all-minilm-l6-v2.json"
    raw = json.loads(config_path.read_text(encoding="utf-8"))
    raw["relation_threshold"] = report["rule"]["relation_threshold"]
    if use_head:
        raw["scope_head"] = HEAD_PATH
        raw["scope_threshold"] = report["head"]["similarity_gate"]
    else:
        raw["scope_head"] = ""
        raw["scope_threshold"] = report["rule"]["scope_threshold"]
    config_path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path} and {config_path} (decider: {report['chosen']})")


if __name__ == "__main__":
    run_command(main)
