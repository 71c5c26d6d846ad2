"""Scope decision v0: does a stored edit govern this query?

A candidate governs the query when three things hold:
1. retrieval similarity of query and edit prompt reaches a threshold;
2. the query names the edit's subject: this keeps "Where is the Louvre?" from being answered by
   an edit about the Eiffel Tower (same relation, so the embeddings are close);
3. the *relation* matches: query and prompt are compared again with the subject replaced by
   a neutral word, so "How tall is the Eiffel Tower?" is not answered by an edit saying where
   the tower is (with the subject in, MiniLM rates those 0.87 similar; masked, 0.40).
A trained classifier replaces this rule in a later issue.

`python -m assistant.scope --calibrate` picks the thresholds that maximise F1 on pairs built
from ../shared/data/train (in scope: an edit's prompt vs its paraphrase; out of scope: its
neighbourhood prompt about another subject, other edits' prompts, and other edits' prompts
rewritten about this edit's subject).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from config import CONFIG_DIR, RouterConfig, router_config
from store.db import Edit

_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = {"the", "a", "an", "of", "de", "la", "le", "von", "van", "and", "&", "in", "on", "for"}
MASK = "something"
MAX_CACHED_PROMPTS = 50_000
EmbedFn = Callable[[list[str]], np.ndarray]


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def _content_words(subject: str) -> list[str]:
    words = _WORD.findall(_fold(subject))
    return [w for w in words if w not in _STOP] or words


def subject_overlap(subject: str, query: str) -> float:
    """Share of the subject's content words that occur in the query (accents and case ignored)."""
    subject_words = _content_words(subject)
    if not subject_words:
        return 0.0
    query_words = set(_WORD.findall(_fold(query)))
    return sum(w in query_words for w in subject_words) / len(subject_words)


def relation_text(text: str, subject: str) -> str:
    """The text with the subject (or its words) replaced by a neutral word."""
    masked = re.sub(re.escape(subject), MASK, text, flags=re.IGNORECASE)
    if masked != text:
        return masked
    for word in _content_words(subject):
        masked = re.sub(rf"\b{re.escape(word)}\b", MASK, masked, flags=re.IGNORECASE)
    return masked


@dataclass(frozen=True)
class ScopeDecision:
    edit: Edit
    similarity: float
    overlap: float
    relation: float | None  # None when the first two tests already failed
    in_scope: bool


class ThresholdScope:
    """In scope = similar enough, names the subject, and asks about the same relation."""

    def __init__(self, config: RouterConfig, embed: EmbedFn) -> None:
        self.threshold = config.scope_threshold
        self.overlap_min = config.subject_overlap_min
        self.relation_min = config.relation_threshold
        self.embed = embed
        # Masked prompt vectors, keyed by (prompt, subject): edits are few and stable, so
        # each prompt is embedded once rather than on every query.
        self._masked_prompts: dict[tuple[str, str], np.ndarray] = {}

    def _masked_prompt(self, prompt: str, subject: str) -> np.ndarray:
        key = (prompt, subject)
        if key not in self._masked_prompts:
            if len(self._masked_prompts) >= MAX_CACHED_PROMPTS:
                self._masked_prompts.clear()
            self._masked_prompts[key] = self.embed([relation_text(prompt, subject)])[0]
        return self._masked_prompts[key]

    def relation_similarity(self, query: str, pairs: list[tuple[str, str]]) -> list[float]:
        """Similarity of `query` to each (prompt, subject) with the subject masked out."""
        masked_queries: dict[str, np.ndarray] = {}
        scores = []
        for prompt, subject in pairs:
            masked = relation_text(query, subject)
            if masked not in masked_queries:
                masked_queries[masked] = self.embed([masked])[0]
            scores.append(float(masked_queries[masked] @ self._masked_prompt(prompt, subject)))
        return scores

    def decide(self, query: str, candidates: list[tuple[Edit, float]]) -> list[ScopeDecision]:
        """One decision per candidate, in-scope ones first, then by similarity."""
        gated, decisions = [], []
        for edit, similarity in candidates:
            overlap = subject_overlap(edit.subject, query)
            if similarity >= self.threshold and overlap >= self.overlap_min:
                gated.append((edit, similarity, overlap))
            else:
                decisions.append(ScopeDecision(edit, similarity, overlap, None, False))
        if gated:
            relations = self.relation_similarity(
                query, [(edit.prompt, edit.subject) for edit, _, _ in gated])
            for (edit, similarity, overlap), relation in zip(gated, relations):
                decisions.append(ScopeDecision(edit, similarity, overlap, relation,
                                               relation >= self.relation_min))
        return sorted(decisions, key=lambda d: (not d.in_scope, -d.similarity))


# -- calibration ---------------------------------------------------------------------------
def normalise_record(rec: dict) -> dict:
    """CounterFact (prompt, rephrase_prompt, locality_prompt) or ZsRE (src, rephrase, loc)."""
    if "src" in rec:
        return {"subject": rec["subject"], "prompt": rec["src"], "rephrase_prompt": rec["rephrase"],
                "locality_prompt": rec["loc"].removeprefix("nq question: ")}
    return rec


def calibration_pairs(records: list[dict], seed: int = 0) -> list[tuple[str, str, str, bool]]:
    """(subject, edit prompt, query, in_scope) pairs from CounterFact or ZsRE records."""
    rng = random.Random(seed)
    records = [normalise_record(r) for r in records]
    pairs = []
    for rec in records:
        prompt, subject = rec["prompt"], rec["subject"]
        pairs.append((subject, prompt, rec["rephrase_prompt"], True))
        pairs.append((subject, prompt, rec["locality_prompt"], False))
        other = rng.choice(records)
        if other["subject"] != subject:
            pairs.append((subject, prompt, other["prompt"], False))
            # the same subject asked about another relation: the hard case for a router
            if other["subject"] in other["prompt"]:
                pairs.append((subject, prompt, other["prompt"].replace(other["subject"], subject),
                              False))
    return pairs


def _f1(predictions: np.ndarray, labels: np.ndarray) -> dict:
    tp = int((predictions & labels).sum())
    fp = int((predictions & ~labels).sum())
    fn = int((~predictions & labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


def calibrate(records: list[dict], overlap_min: float, embed: EmbedFn) -> dict:
    """Grid-search both thresholds of the full rule for the best F1."""
    pairs = calibration_pairs(records)
    prompts, queries = embed([p[1] for p in pairs]), embed([p[2] for p in pairs])
    sims = (prompts * queries).sum(axis=1)
    masked_p = embed([relation_text(p[1], p[0]) for p in pairs])
    masked_q = embed([relation_text(p[2], p[0]) for p in pairs])
    relations = (masked_p * masked_q).sum(axis=1)
    gate = np.array([subject_overlap(s, q) >= overlap_min for s, _, q, _ in pairs])
    labels = np.array([p[3] for p in pairs])
    best = {"f1": -1.0}
    for threshold in np.arange(0.0, 0.96, 0.05):
        for relation_min in np.arange(0.0, 0.96, 0.05):
            pred = gate & (sims >= threshold) & (relations >= relation_min)
            score = _f1(pred, labels)
            if score["f1"] > best["f1"] + 1e-9:
                best = {"scope_threshold": round(float(threshold), 2),
                        "relation_threshold": round(float(relation_min), 2), **score}
    best["pairs"] = len(pairs)
    best["positives"] = int(labels.sum())
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Calibrate the v0 scope threshold.")
    parser.add_argument("--calibrate", action="store_true", help="run the calibration")
    train = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"
    parser.add_argument("--data", type=Path, nargs="+",
                        default=[train / "zsre_mend_train-1k-last500.json",
                                 train / "counterfact-train.json"],
                        help="training records (CounterFact or ZsRE format)")
    parser.add_argument("--limit", type=int, default=500, help="records to use from each file")
    parser.add_argument("--write", action="store_true", help="store the threshold in the config")
    args = parser.parse_args(argv)
    if not args.calibrate:
        parser.print_help()
        return
    from assistant.embedder import Embedder

    config = router_config()
    records = [rec for path in args.data
               for rec in json.loads(path.read_text(encoding="utf-8"))[: args.limit]]
    embedder = Embedder(int8=config.embedding_int8)
    result = calibrate(records, config.subject_overlap_min,
                       lambda texts: embedder.embed(texts, show_progress=True))
    print(json.dumps(result, indent=2))
    if args.write:
        path = CONFIG_DIR / "router" / "all-minilm-l6-v2.json"
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["scope_threshold"] = result["scope_threshold"]
        raw["relation_threshold"] = result["relation_threshold"]
        path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        print(f"wrote the thresholds to {path}")


if __name__ == "__main__":
    main()
