"""The promotion guard's chat checks: what a user will see after a weight edit.

Teacher-forced tokens after a completion prompt missed both failures users met: an `ft`
promotion that answered "Paris" again to the question the user had just corrected, and ROME
edits that changed the chat reply about an unrelated neighbour. So the guard also generates
greedy chat replies on the edited copy:
- each edit's question and paraphrases, in a fresh chat and after a short conversation that
  holds the old answer: an edit is *carried* by the weights only when every reply states its
  new answer, and only carried edits leave the memory route;
- general questions and questions about neighbouring subjects with the same relation, whose
  replies must keep their first sentence, where the answer is (chat locality; the share of
  replies kept word for word is reported beside it).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from assistant import naming
from assistant.phrasings import question_forms
from config import REPO_ROOT
from assistant.metrics import contains_answer

CHAT_PROBES_PATH = REPO_ROOT / "editing" / "data" / "chat_probes.json"


def load_chat_probes(limit: int | None = None) -> list[str]:
    """The guard's general chat questions, the first `limit` (or all)."""
    raw = json.loads(CHAT_PROBES_PATH.read_text(encoding="utf-8"))["questions"]
    return raw[:limit]


def carry_questions(edit, limit: int) -> list[str]:
    """The edit's own question, then its stored paraphrases, then generated question forms:
    the questions the weights must answer before the edit leaves the memory route."""
    found = [edit.prompt, *edit.paraphrases,
             *question_forms(edit.prompt, edit.subject, None, edit.target_new)]
    unique = list(dict.fromkeys(q.strip() for q in found if q.strip()))
    return unique[:max(limit, 1)]


def _subject_pattern(subject: str) -> re.Pattern:
    return re.compile(r"\b(?:the\s+)?%s\b" % re.escape(subject), flags=re.IGNORECASE)


def neighbour_questions(edit, names: list[str], limit: int) -> list[str]:
    """The edit's question about other subjects (`names`, nearest first): the same relation
    asked of neighbours, whose answers the edit must not change."""
    pattern = _subject_pattern(edit.subject)
    if not pattern.search(edit.prompt):
        return []
    own = {naming.AliasTable.key(n) for n in (edit.subject, *edit.aliases)}
    out = []
    for name in names:
        if naming.AliasTable.key(name) in own:
            continue
        out.append(pattern.sub(lambda _: name, edit.prompt, count=1))
        if len(out) >= limit:
            break
    return out


class NeighbourNames:
    """Names from the shipped alias table nearest to a subject by embedding: the subjects an
    edit is most likely to spill onto ("the Colosseum" beside "the Eiffel Tower")."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder

    def nearest(self, subject: str, k: int) -> list[str]:
        names, vectors = _embedded_names(self.embedder)
        if not names:
            return []
        scores = vectors @ self.embedder.embed_one(subject).reshape(-1)
        order = np.argsort(-scores)[:k + 4]  # a few spare for the subject's own names
        return [names[i] for i in order]


@lru_cache(maxsize=2)
def _embedded_names(embedder) -> tuple[list[str], np.ndarray]:
    names = naming.table().names()
    return names, embedder.embed(names)


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def first_sentence(reply: str) -> str:
    """The reply's first sentence, where a chat answer states its fact ("100.0" does not end
    it). Chat locality compares these: a 135M model's greedy reply often drifts in its last
    words after any weight change, while the answer the user reads stays the same."""
    match = _SENTENCE_END.search(reply)
    return " ".join((reply[:match.start()] if match else reply).split())


def where_they_differ(before: str, after: str, limit: int = 70) -> tuple[str, str]:
    """Both replies from a few words before their first difference: a long shared opening,
    cut at `limit`, would show the admin two identical strings."""
    start = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b),
                 min(len(before), len(after)))
    cut = before.rfind(" ", 0, max(start - 20, 0)) + 1 if start > 40 else 0
    lead = "…" if cut else ""
    return lead + _short(before[cut:], limit), lead + _short(after[cut:], limit)


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass
class ChatBaseline:
    """Replies of the model before the edit: the old answers and the locality questions."""

    old_answers: dict[int, str] = field(default_factory=dict)  # edit id -> reply to its question
    locality: dict[str, str] = field(default_factory=dict)  # question -> reply


@dataclass(frozen=True)
class ChatGuardConfig:
    chat_tokens: int  # reply length
    carry_questions: int  # per edit: its question and paraphrases checked
    chat_probes: int  # general questions for chat locality
    neighbour_questions: int  # per promotion: same relation, nearby subjects


class ChatGuard:
    """Free-generation chat checks of an edited model copy against its replies before."""

    def __init__(self, config: ChatGuardConfig, embedder) -> None:
        self.config = config
        self.neighbours = NeighbourNames(embedder)

    def locality_questions(self, edits) -> list[str]:
        per_edit = max(1, self.config.neighbour_questions // max(len(edits), 1))
        questions = list(load_chat_probes(self.config.chat_probes))
        for edit in edits:
            if len(questions) >= self.config.chat_probes + self.config.neighbour_questions:
                break
            names = self.neighbours.nearest(edit.subject, per_edit)
            questions += neighbour_questions(edit, names, per_edit)
        return list(dict.fromkeys(questions))

    def _ask(self, work, question: str, before: list[dict] = (),
             replies: dict[str, str] | None = None) -> str:
        """The greedy reply; a fresh question's reply is looked up in (and added to)
        `replies` when given, so one promotion never generates it twice."""
        if before or replies is None:
            messages = [*before, {"role": "user", "content": question}]
            return work.chat(messages, max_new_tokens=self.config.chat_tokens)
        if question not in replies:
            replies[question] = self._ask(work, question)
        return replies[question]

    def baseline(self, work, edits, progress=lambda _m: None,
                 questions: list[str] | None = None) -> ChatBaseline:
        """Replies before the edit (call on the unedited copy): the old answers to the edits'
        questions, and replies to `questions` (default: all locality questions)."""
        result = ChatBaseline()
        for edit in edits:
            result.old_answers[edit.id] = self._ask(work, edit.prompt)
        if questions is None:
            questions = self.locality_questions(edits)
        for i, question in enumerate(questions, 1):
            progress(f"Chat replies before the edit: {i}/{len(questions)}")
            result.locality[question] = self._ask(work, question)
        return result

    def score(self, work, edits, baseline: ChatBaseline, progress=lambda _m: None,
              replies: dict[str, str] | None = None) -> tuple[dict, list[int]]:
        """(chat scores, ids of the edits the weights carry), on the edited copy; `replies`
        holds fresh replies of this copy already generated (question -> reply)."""
        fresh, in_conversation, carried = [], [], []
        for n, edit in enumerate(edits, 1):
            progress(f"Chat answers after the edit: edit {n}/{len(edits)}")
            context = [{"role": "user", "content": edit.prompt},
                       {"role": "assistant", "content": baseline.old_answers.get(edit.id, "")}]
            ok = True
            for question in carry_questions(edit, self.config.carry_questions):
                said = contains_answer(self._ask(work, question, replies=replies),
                                       edit.target_new)
                again = contains_answer(self._ask(work, question, context), edit.target_new)
                fresh.append(float(said))
                in_conversation.append(float(again))
                ok = ok and said and again
            if ok:
                carried.append(edit.id)
        questions = list(baseline.locality)
        same, exact, changed = [], [], []
        for i, question in enumerate(questions, 1):
            progress(f"Chat replies after the edit: {i}/{len(questions)}")
            reply = self._ask(work, question, replies=replies)
            exact.append(float(reply == baseline.locality[question]))
            kept = first_sentence(reply) == first_sentence(baseline.locality[question])
            same.append(float(kept))
            if not kept:
                before, after = where_they_differ(baseline.locality[question], reply)
                changed.append(f"{question} {before!r} → {after!r}")
        mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
        scores = {"chat_generalization": mean(fresh + in_conversation),
                  "chat_generalization_fresh": mean(fresh),
                  "chat_generalization_in_conversation": mean(in_conversation),
                  "chat_locality": mean(same), "chat_locality_exact": mean(exact),
                  "chat_locality_questions": len(same),
                  "chat_locality_changed": changed[:5],  # shown to the admin
                  "carried": len(carried)}
        return scores, carried
