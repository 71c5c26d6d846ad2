"""Scope decision: does a stored edit govern this query?

Two cheap gates first, for every retrieved candidate:
1. retrieval similarity of query and edit prompt reaches `scope_threshold`;
2. the query names the edit's subject (`subject_overlap_min`): this keeps "Where is the
   Louvre?" from being answered by an edit about the Eiffel Tower (same relation, so the
   embeddings are close).
Then the *relation* is compared: query and prompt are embedded again with the subject replaced
by a neutral word, so "How tall is the Eiffel Tower?" is not answered by an edit saying where
the tower is (with the subject in, MiniLM rates those 0.87 similar; masked, 0.40). Either a
threshold on that masked similarity decides, or, when `scope_head` names a trained head, a
small classifier over the similarities and the masked vectors' interactions
(`ScopeHead`, trained by `python -m assistant.scope_train`).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from config import REPO_ROOT, RouterConfig
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
    probability: float | None = None  # the trained head's p(in scope), when one is used


def pair_features(similarity: float, overlap: float, masked_query: np.ndarray,
                  masked_prompt: np.ndarray) -> np.ndarray:
    """The head's input: 4 scalars, then the masked vectors' product and distance."""
    relation = float(masked_query @ masked_prompt)
    scalars = np.array([similarity, overlap, relation, similarity * relation], dtype=np.float32)
    return np.concatenate([scalars, masked_query * masked_prompt,
                           np.abs(masked_query - masked_prompt)]).astype(np.float32)


class ScopeHead:
    """A one-hidden-layer MLP over `pair_features`, with its calibrated decision threshold."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w1, self.b1 = weights["w1"], weights["b1"]  # (F, H), (H,)
        self.w2, self.b2 = weights["w2"], weights["b2"]  # (H,), ()
        self.threshold = float(weights["threshold"])

    @classmethod
    def load(cls, path: Path) -> "ScopeHead":
        with np.load(path) as data:
            return cls({k: data[k] for k in data.files})

    def probability(self, features: np.ndarray) -> np.ndarray:
        """p(in scope) for (N, F) features."""
        hidden = np.maximum(features @ self.w1 + self.b1, 0.0)
        return 1.0 / (1.0 + np.exp(-(hidden @ self.w2 + self.b2)))


class ScopeClassifier:
    """In scope = similar enough, names the subject, and asks about the same relation."""

    def __init__(self, config: RouterConfig, embed: EmbedFn, head: ScopeHead | None = None,
                 masked_keys: Callable[[Edit], np.ndarray] | None = None) -> None:
        self.threshold = config.scope_threshold
        self.overlap_min = config.subject_overlap_min
        self.relation_min = config.relation_threshold
        self.embed = embed
        self.head = head
        self.masked_keys = masked_keys or self._embed_masked_keys
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

    def _embed_masked_keys(self, edit: Edit) -> np.ndarray:
        return np.stack([self._masked_prompt(text, edit.subject) for text in edit.key_texts()])

    def _masked_query(self, query: str, subject: str, cache: dict[str, np.ndarray]) -> np.ndarray:
        masked = relation_text(query, subject)
        if masked not in cache:
            cache[masked] = self.embed([masked])[0]
        return cache[masked]

    def relation_similarity(self, query: str, pairs: list[tuple[str, str]]) -> list[float]:
        """Similarity of `query` to each (prompt, subject) with the subject masked out."""
        cache: dict[str, np.ndarray] = {}
        return [float(self._masked_query(query, subject, cache)
                      @ self._masked_prompt(prompt, subject)) for prompt, subject in pairs]

    def _judge(self, query: str, edit: Edit, similarity: float, overlap: float,
               cache: dict[str, np.ndarray]) -> ScopeDecision:
        """The relation test against each of the edit's key texts; the best one counts."""
        masked_query = self._masked_query(query, edit.subject, cache)
        keys = self.masked_keys(edit)  # (keys, dim)
        relations = (keys @ masked_query).tolist()
        if self.head is None:
            relation = max(relations)
            return ScopeDecision(edit, similarity, overlap, relation,
                                 relation >= self.relation_min)
        features = np.stack([pair_features(similarity, overlap, masked_query, key)
                             for key in keys])
        probabilities = self.head.probability(features)
        best = int(np.argmax(probabilities))
        return ScopeDecision(edit, similarity, overlap, relations[best],
                             bool(probabilities[best] >= self.head.threshold),
                             float(probabilities[best]))

    def decide(self, query: str, candidates: list[tuple[Edit, float]]) -> list[ScopeDecision]:
        """One decision per candidate, in-scope ones first, then by probability/similarity."""
        decisions = []
        cache: dict[str, np.ndarray] = {}
        for edit, similarity in candidates:
            overlap = subject_overlap(edit.subject, query)
            if similarity >= self.threshold and overlap >= self.overlap_min:
                decisions.append(self._judge(query, edit, similarity, overlap, cache))
            else:
                decisions.append(ScopeDecision(edit, similarity, overlap, None, False))
        return sorted(decisions, key=lambda d: (not d.in_scope, -(d.probability or 0.0),
                                                -d.similarity))


def make_scope(config: RouterConfig, embed: EmbedFn,
               masked_keys: Callable[[Edit], np.ndarray] | None = None) -> ScopeClassifier:
    """The classifier the config asks for: with the trained head if `scope_head` names one.

    `masked_keys` supplies an edit's precomputed masked key vectors (the edit memory keeps
    them); without it they are embedded on first use and cached."""
    head = ScopeHead.load(REPO_ROOT / config.scope_head) if config.scope_head else None
    return ScopeClassifier(config, embed, head, masked_keys)


