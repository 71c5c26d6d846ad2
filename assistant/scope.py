"""Scope decision v0: does a stored edit govern this query?

A candidate governs the query when its retrieval similarity reaches a calibrated threshold and
the query names the edit's subject. The subject check is what keeps "Where is the Louvre?" from
being answered by an edit about the Eiffel Tower: both share the relation, so their embeddings
are close, but only one names the subject. A trained classifier replaces this in a later issue.

`python -m assistant.scope --calibrate` picks the threshold that maximises F1 on pairs built
from ../shared/data/train (in scope: an edit's prompt vs its paraphrase; out of scope: its
neighbourhood prompt about another subject, and other edits' prompts).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from config import CONFIG_DIR, RouterConfig, router_config
from store.db import Edit

_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = {"the", "a", "an", "of", "de", "la", "le", "von", "van", "and", "&", "in", "on", "for"}


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _WORD.findall(text.lower())


def subject_overlap(subject: str, query: str) -> float:
    """Share of the subject's content words that occur in the query (accents and case ignored)."""
    subject_words = [w for w in _words(subject) if w not in _STOP] or _words(subject)
    if not subject_words:
        return 0.0
    query_words = set(_words(query))
    return sum(w in query_words for w in subject_words) / len(subject_words)


@dataclass(frozen=True)
class ScopeDecision:
    edit: Edit
    similarity: float
    overlap: float
    in_scope: bool


class ThresholdScope:
    """In scope = similarity >= threshold and enough of the subject named in the query."""

    def __init__(self, config: RouterConfig) -> None:
        self.threshold = config.scope_threshold
        self.overlap_min = config.subject_overlap_min

    def decide(self, query: str, candidates: list[tuple[Edit, float]]) -> list[ScopeDecision]:
        """One decision per candidate, best first (in-scope ones before the rest)."""
        decisions = []
        for edit, similarity in candidates:
            overlap = subject_overlap(edit.subject, query)
            in_scope = similarity >= self.threshold and overlap >= self.overlap_min
            decisions.append(ScopeDecision(edit, similarity, overlap, in_scope))
        return sorted(decisions, key=lambda d: (not d.in_scope, -d.similarity))


# -- calibration ---------------------------------------------------------------------------
def calibration_pairs(records: list[dict], seed: int = 0) -> list[tuple[str, str, str, bool]]:
    """(subject, edit prompt, query, in_scope) pairs from CounterFact-format records."""
    rng = random.Random(seed)
    pairs = []
    for rec in records:
        prompt, subject = rec["prompt"], rec["subject"]
        pairs.append((subject, prompt, rec["rephrase_prompt"], True))
        pairs.append((subject, prompt, rec["locality_prompt"], False))
        other = rng.choice(records)
        if other["subject"] != subject:
            pairs.append((subject, prompt, other["prompt"], False))
    return pairs


def calibrate(records: list[dict], overlap_min: float, embed) -> dict:
    """Pick the similarity threshold maximising F1 of the full rule on the given records."""
    pairs = calibration_pairs(records)
    prompts = embed([p[1] for p in pairs])
    queries = embed([p[2] for p in pairs])
    sims = (prompts * queries).sum(axis=1)
    gate = [subject_overlap(s, q) >= overlap_min for s, _, q, _ in pairs]
    labels = [p[3] for p in pairs]
    best = {"f1": -1.0}
    for step in range(0, 96):
        threshold = step / 100
        tp = fp = fn = 0
        for sim, ok, label in zip(sims, gate, labels):
            pred = ok and sim >= threshold
            tp += pred and label
            fp += pred and not label
            fn += (not pred) and label
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if f1 > best["f1"]:
            best = {"threshold": threshold, "f1": f1, "precision": precision, "recall": recall}
    best["pairs"] = len(pairs)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Calibrate the v0 scope threshold.")
    parser.add_argument("--calibrate", action="store_true", help="run the calibration")
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "train"
                        / "counterfact-train.json", help="CounterFact-format training records")
    parser.add_argument("--limit", type=int, default=3000, help="records to use")
    parser.add_argument("--write", action="store_true", help="store the threshold in the config")
    args = parser.parse_args(argv)
    if not args.calibrate:
        parser.print_help()
        return
    from assistant.embedder import Embedder

    config = router_config()
    records = json.loads(args.data.read_text(encoding="utf-8"))[: args.limit]
    embedder = Embedder()
    result = calibrate(records, config.subject_overlap_min,
                       lambda texts: embedder.embed(texts, show_progress=True))
    print(json.dumps(result, indent=2))
    if args.write:
        path = CONFIG_DIR / "router" / "all-minilm-l6-v2.json"
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["scope_threshold"] = result["threshold"]
        path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        print(f"wrote scope_threshold={result['threshold']} to {path}")


if __name__ == "__main__":
    main()
