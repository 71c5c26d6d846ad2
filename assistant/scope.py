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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from assistant.naming import Mention, content_words, find_mention, subject_overlap  # noqa: F401
from config import REPO_ROOT, RouterConfig
from store.db import Edit

MASK = "something"
MAX_CACHED_PROMPTS = 50_000
EmbedFn = Callable[[list[str]], np.ndarray]


def relation_text(text: str, subject: str, mention: Mention | None = None) -> str:
    """The text with the subject (or where it names it: words, typo, alias) replaced by a
    neutral word."""
    masked = re.sub(re.escape(subject), MASK, text, flags=re.IGNORECASE)
    if masked != text:
        return masked
    mention = mention or find_mention(subject, text)
    if mention is not None:
        return mention.masked(text, MASK)
    for word in content_words(subject):
        masked = re.sub(rf"\b{re.escape(word)}\b", MASK, masked, flags=re.IGNORECASE)
    return masked


# What kind of answer a question wants, from its first question phrase. A question wanting
# a person does not ask what an edit giving a year says ("Who was the captain of the
# Titanic?" vs "What year did the Titanic sink?"); unknown kinds never veto.
_ASKS = (("person", re.compile(r"\b(?:who|whom|whose)\b", re.I)),
         ("number", re.compile(r"\b(?:when|how (?:many|much|old|tall|long|big|high|far|deep)|"
                               r"what (?:year|date|time|day)|which (?:year|date|day)|"
                               r"in what year|in which year)\b", re.I)),
         ("place", re.compile(r"\b(?:where|what (?:city|country|town|state|continent)|"
                              r"which (?:city|country|town|state|continent))\b", re.I)))
_ASKS_AT_START = re.compile(r"^(?:who|whom|whose|when|where|what|which|how|in what|in which)\b",
                            re.I)
_PLACE_PREPOSITION = re.compile(r"\b(?:in|at|from|near)\s*$", re.I)


def answer_kind(question: str) -> str | None:
    """person / number / place for a question whose first question phrase says so (a
    statement that starts "When X was killed, ..." asks nothing)."""
    text = question.strip()
    if not text.endswith("?") and ("," in text or not _ASKS_AT_START.match(text)):
        return None
    found = [(m.start(), kind) for kind, pattern in _ASKS
             for m in [pattern.search(question)] if m]
    return min(found)[1] if found else None


def edit_kind(edit: Edit) -> str | None:
    """The kind of answer an edit gives: its question's, else read off a statement: digits in
    its target (a number), a place preposition at its end (a place), or a role it names ("The
    CEO of Apple is": a person)."""
    if "?" in edit.prompt:  # a question, perhaps with an aside after it ("... in? silly, I know")
        return answer_kind(edit.prompt[:edit.prompt.index("?") + 1])
    if any(ch.isdigit() for ch in edit.target_new):
        return "number"
    if _PLACE_PREPOSITION.search(edit.prompt):
        return "place"
    role = _ROLE.search(edit.prompt)
    return "person" if role and re.search(r"\b(?:is|was)\s*$", edit.prompt) else None


# Words that can answer "when" or "how many" without a digit ("on Tuesdays", "seven").
_NUMERIC_WORDS = re.compile(
    r"\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
    r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|"
    r"seventy|eighty|ninety|hundred|thousand|million|billion|dozen|half|once|twice|none|"
    r"january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|"
    r"mondays?|tuesdays?|wednesdays?|thursdays?|fridays?|saturdays?|sundays?|weekends?|"
    r"weekdays?|daily|weekly|monthly|yearly|annually|spring|summer|autumn|fall|winter|"
    r"morning|afternoon|evening|night|noon|midday|midnight|dawn|dusk|christmas|easter|"
    r"century|decade|ago|bc|ad|today|tomorrow|yesterday|never|always)\b", re.I)
# A statement about a role ("The CEO of Apple is", "My dentist is") gives a person.
_ROLE = re.compile(
    r"\b(?:ceo|president|founder|co-founder|author|writer|director|manager|boss|head|chair|"
    r"chairman|chairwoman|leader|owner|mayor|governor|captain|coach|drummer|singer|guitarist|"
    r"bassist|dentist|doctor|gp|accountant|lawyer|teacher|landlord|landlady|neighbour|"
    r"neighbor|prime minister|king|queen|pope|inventor|creator|composer|painter|architect|"
    r"designer|presenter|host|voice actor)s?\b", re.I)


# Questions only a number or a date answers ("how high is its status" may want a word).
_COUNT = re.compile(r"^(?:\W*\w+\W+){0,3}?(?:how (?:many|much|old)|when|"
                    r"(?:in )?(?:what|which) year)\b", re.I)


def _numeric(value: str) -> bool:
    return any(ch.isdigit() for ch in value) or bool(_NUMERIC_WORDS.search(value))


def kinds_clash(query: str, edit: Edit) -> bool:
    """The query wants another kind of answer than the edit gives: a person, a place, or a
    number or date that the edit's value ("goalkeeper", "the back door") cannot be."""
    asked, given = answer_kind(query), edit_kind(edit)
    if asked == "number" and _COUNT.search(query) and not _numeric(edit.target_new):
        return True
    return asked is not None and given is not None and asked != given


@dataclass(frozen=True)
class ScopeDecision:
    edit: Edit
    similarity: float
    overlap: float
    relation: float | None  # None when the first two tests already failed
    in_scope: bool
    probability: float | None = None  # the trained head's p(in scope), when one is used
    query: str = ""  # the text decided on (a follow-up with its subject put back in)


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
        self._plain: dict[str, np.ndarray] = {}  # key texts and named queries, unmasked

    def _masked_prompt(self, prompt: str, subject: str) -> np.ndarray:
        key = (prompt, subject)
        if key not in self._masked_prompts:
            if len(self._masked_prompts) >= MAX_CACHED_PROMPTS:
                self._masked_prompts.clear()
            self._masked_prompts[key] = self.embed([relation_text(prompt, subject)])[0]
        return self._masked_prompts[key]

    def _embed_masked_keys(self, edit: Edit) -> np.ndarray:
        return np.stack([self._masked_prompt(text, edit.subject) for text in edit.key_texts()])

    def _masked_query(self, query: str, subject: str, cache: dict[str, np.ndarray],
                      mention: Mention | None = None) -> np.ndarray:
        masked = relation_text(query, subject, mention)
        if masked not in cache:
            cache[masked] = self.embed([masked])[0]
        return cache[masked]

    def _named_similarity(self, query: str, edit: Edit, mention: Mention) -> float:
        """Similarity of the query to the edit's key texts with the mention written as the
        subject: a typo, alias or synonym ("wimbeldon", "tech support") lowers the plain
        similarity although the query names the subject."""
        named = mention.masked(query, edit.subject)
        if named == query:
            return 0.0
        texts = edit.key_texts()
        missing = [t for t in (named, *texts) if t not in self._plain]
        if missing:
            if len(self._plain) >= MAX_CACHED_PROMPTS:
                self._plain.clear()
            self._plain.update(zip(missing, self.embed(missing)))
        return float(max(self._plain[named] @ self._plain[t] for t in texts))

    def relation_similarity(self, query: str, pairs: list[tuple[str, str]]) -> list[float]:
        """Similarity of `query` to each (prompt, subject) with the subject masked out."""
        cache: dict[str, np.ndarray] = {}
        return [float(self._masked_query(query, subject, cache)
                      @ self._masked_prompt(prompt, subject)) for prompt, subject in pairs]

    def _judge(self, query: str, edit: Edit, similarity: float, mention: Mention,
               cache: dict[str, np.ndarray]) -> ScopeDecision:
        """The relation test against each of the edit's key texts; the best one counts."""
        overlap = mention.coverage
        masked_query = self._masked_query(query, edit.subject, cache, mention)
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
            mention = find_mention(edit.subject, query, edit.aliases)
            overlap = mention.coverage if mention else 0.0
            if mention is not None and similarity < self.threshold <= similarity + 0.2:
                similarity = max(similarity, self._named_similarity(query, edit, mention))
            if similarity >= self.threshold and overlap >= self.overlap_min and \
                    not kinds_clash(query, edit):
                decisions.append(self._judge(query, edit, similarity, mention, cache))
            else:
                decisions.append(ScopeDecision(edit, similarity, overlap, None, False))
        decisions = [replace(d, query=query) for d in decisions]
        return sorted(decisions, key=lambda d: (not d.in_scope, -(d.probability or 0.0),
                                                -d.similarity))


def make_scope(config: RouterConfig, embed: EmbedFn,
               masked_keys: Callable[[Edit], np.ndarray] | None = None) -> ScopeClassifier:
    """The classifier the config asks for: with the trained head if `scope_head` names one.

    `masked_keys` supplies an edit's precomputed masked key vectors (the edit memory keeps
    them); without it they are embedded on first use and cached."""
    head = ScopeHead.load(REPO_ROOT / config.scope_head) if config.scope_head else None
    return ScopeClassifier(config, embed, head, masked_keys)


