"""The assistant: route each message to a correction, the edit memory, or the base model.

    message ──► correction? ──yes──► store edit (superseding its twin) ──► confirmation
                   │ no
                   ▼
    embed ──► FAISS top-k ──► scope decision ──in scope──► counterfactual answer (edits in hand)
                                   │ none in scope
                                   ▼
                              base model answer

Every reply carries a Trace (route, edit ids, scores, timings) that the UI shows under the
answer and the store logs with the turn.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from assistant.adapter import Adapter
from assistant.corrections import (Clarification, Correction, correction_from_form, named_in,
                                   parse_correction, subject_of_question)
from assistant.counterfactual import CounterfactualModel
from assistant import naming
from assistant.embedder import Embedder
from assistant.hops import hop_question
from assistant.followups import is_question, re_asks, refers_back, with_subject
from assistant.llm import ChatLLM, Generation
from assistant.memory import EditMemory
from assistant.phrasings import question_forms
from assistant.review import Review, serialised
from assistant.scope import ScopeDecision, make_scope, subject_overlap
from config import RouterConfig
from errors import EditNotFoundError, InvalidEditError
from store.db import MAX_ALIASES, Edit, Store

log = logging.getLogger(__name__)

EMPTY_HINT = ("Type a question, or correct my last answer in plain words "
              "(for example: \"No, it's Rome\" or \"Actually, the Louvre is in Madrid\").")


@dataclass
class Trace:
    """Why a reply is what it is; logged with the turn and shown under the answer."""

    route: str  # base | memory | correction | clarify | hint
    edit_ids: list[int] = field(default_factory=list)
    score: float | None = None
    candidates: list[dict] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    new_tokens: int = 0
    tokens_per_second: float = 0.0
    notice: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def badge(self) -> str:
        """One line for the UI."""
        parts = [f"route: **{self.route}**"]
        if self.edit_ids:
            parts.append(f"edits: {', '.join('#' + str(i) for i in self.edit_ids)}")
        if self.score is not None:
            parts.append(f"score: {self.score:.2f}")
        if "route" in self.timings_ms:
            parts.append(f"routing: {self.timings_ms['route']:.1f} ms")
        if self.new_tokens:
            parts.append(f"{self.new_tokens} tokens at {self.tokens_per_second:.1f}/s")
        if self.notice:
            parts.append(self.notice)
        return " · ".join(parts)


@dataclass
class ReplyChunk:
    text: str
    trace: Trace | None = None  # set on the final chunk


def message_text(content: object) -> str:
    """Plain text of a chat message's content (Gradio may send a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return " ".join(message_text(part) for part in content)
    return "" if content is None else str(content)


def plain_history(history: list[dict]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": message_text(m.get("content"))}
            for m in history or [] if m.get("role") in ("user", "assistant")]


class Assistant:
    """Chat, corrections and routing over one base model and one edit store."""

    def __init__(self, llm: ChatLLM, embedder: Embedder, store: Store, memory: EditMemory,
                 config: RouterConfig, adapter: Adapter | None = None) -> None:
        self.llm = llm
        self.embedder = embedder
        self.store = store
        self.memory = memory
        self.config = config
        self.scope = make_scope(config, embedder.embed, memory.masked_keys)
        self.counterfactual = CounterfactualModel(llm, config, adapter)
        self.weights = None  # editing.promote.WeightEdits, set by the runtime at start-up
        # shared mode: chat corrections stay pending and serve only their own session until
        # an admin approves them, so one user cannot change what others are told
        self.shared = False
        self.edits_lock = threading.RLock()
        self.review = Review(store, memory, self.edits_lock, self._same_fact)

    def refresh_memory(self, changed: set[int] | None = None) -> None:
        """Bring the edit index up to date with changes other instances made to a shared
        store (called by the store's watcher thread with the edit ids it was told of)."""
        started = time.perf_counter()
        with self.edits_lock:
            added, removed = self.memory.refresh(changed)
        if added or removed:
            log.info("Edit index refreshed from the shared store: %d added, %d removed "
                     "(%.0f ms)", added, removed, 1000 * (time.perf_counter() - started))

    # -- routing --------------------------------------------------------------------------
    def route(self, question: str, session: str | None = None,
              context: list[str] = ()) -> tuple[list[ScopeDecision], dict[str, float]]:
        """Scope decisions for the nearest active edits (and the pending edits this session
        made), with per-stage timings in ms.

        `context` holds the conversation's earlier user messages: a follow-up that refers back
        ("where is it again?") and is governed by nothing as written is routed again with the
        conversation's subject put back in."""
        t0 = time.perf_counter()
        decisions, timings = self._route_text(question, session)
        if context and not any(d.in_scope for d in decisions) and refers_back(question):
            topic = self._topic(list(context), session)
            if topic is not None:
                resolved, _ = self._route_text(with_subject(question, topic.subject), session)
                if any(d.in_scope for d in resolved):
                    decisions = resolved
                elif re_asks(question) and not named_in(question):
                    # "what city was that again?": the value the conversation is about
                    decisions = [ScopeDecision(topic, 1.0, 1.0, None, True, query=question),
                                 *decisions]
        timings["route"] = (time.perf_counter() - t0) * 1e3
        return decisions, timings

    def _hits(self, text: str) -> tuple[list, float]:
        """Nearest edits for `text`, also searched with any alias in it written as its usual
        name ("the Big Apple" -> "New York City"); (hits, embedding ms)."""
        t0 = time.perf_counter()
        vec = self.embedder.embed_one(text)
        embed_ms = (time.perf_counter() - t0) * 1e3
        hits = self.memory.search(vec, self.config.top_k)
        canonical = naming.table().canonical_text(text)
        if canonical is not None:
            t1 = time.perf_counter()
            other = self.embedder.embed_one(canonical)
            embed_ms += (time.perf_counter() - t1) * 1e3
            best = {h.edit_id: h for h in hits}
            for hit in self.memory.search(other, self.config.top_k):
                if hit.edit_id not in best or hit.score > best[hit.edit_id].score:
                    best[hit.edit_id] = hit
            hits = sorted(best.values(), key=lambda h: -h.score)
        return hits, embed_ms

    def _route_text(self, question: str,
                    session: str | None) -> tuple[list[ScopeDecision], dict[str, float]]:
        t0 = time.perf_counter()
        hits, embed_ms = self._hits(question)
        t1 = time.perf_counter()
        candidates = []
        for hit in hits:
            edit = self._routable_edit(hit.edit_id, session)
            if edit is not None:
                candidates.append((edit, hit.score))
        decisions = self.scope.decide(question, candidates)
        t2 = time.perf_counter()
        return decisions, {"embed": embed_ms, "search": (t1 - t0) * 1e3 - embed_ms,
                           "scope": (t2 - t1) * 1e3}

    def _topic(self, earlier: list[str], session: str | None) -> Edit | None:
        """The stored edit the conversation is about: its subject named by the newest earlier
        user message that names one, unless a newer question named something else."""
        for message in reversed(earlier[-4:]):
            hits, _ = self._hits(message)
            for hit in hits:
                edit = self._routable_edit(hit.edit_id, session)
                if edit is None:
                    continue
                mention = naming.find_mention(edit.subject, message, edit.aliases)
                if mention is not None and mention.coverage >= self.config.subject_overlap_min:
                    return edit
            if is_question(message) and subject_of_question(message):
                return None  # "it" now means what that question was about
        return None

    def _routable_edit(self, edit_id: int, session: str | None) -> Edit | None:
        try:
            edit = self.store.get_edit(edit_id)
        except EditNotFoundError:  # the index knows an id the store lost: a stale cache
            return None
        if edit.status == "pending":
            return edit if session is not None and edit.session == session else None
        # active, promoted with the memory route as its backstop, or promoted into weights
        # this instance does not carry (yet)
        return edit if edit.routable or edit.id in self.memory.held_ids else None

    # -- chat -----------------------------------------------------------------------------
    def reply(self, history: list[dict], message: str, session: str = "local",
              max_new_tokens: int | None = None) -> Iterator[ReplyChunk]:
        """Stream the reply to one user message; the last chunk carries the trace."""
        message = message_text(message).strip()
        if not message:
            yield ReplyChunk(EMPTY_HINT, Trace(route="hint"))
            return
        turns = plain_history(history)
        last_question = next((m["content"] for m in reversed(turns) if m["role"] == "user"), None)
        last_answer = next((m["content"] for m in reversed(turns)
                            if m["role"] == "assistant"), None)
        parsed = parse_correction(message, last_question, last_answer)
        if parsed is not None:
            text, trace = self._handle_correction(parsed, source="chat", session=session)
            self._log(session, message, text, trace)
            yield ReplyChunk(text, trace)
            return
        yield from self._answer(turns, message, session, max_new_tokens)

    def chat_turn(self, history: list[dict], message: str, session: str = "local",
                  max_new_tokens: int | None = None) -> Iterator[tuple[list[dict], ReplyChunk]]:
        """One Chat-tab turn: the history with the user's message and the reply so far.

        The Chat tab and `bench.conversations` both go through here, so a scripted
        conversation keeps its history exactly as the tab does (every user message and every
        reply, corrections' confirmations included)."""
        prior = list(history or [])
        updated = prior + [{"role": "user", "content": message},
                           {"role": "assistant", "content": ""}]
        for chunk in self.reply(prior, message, session=session, max_new_tokens=max_new_tokens):
            updated[-1] = {"role": "assistant", "content": chunk.text}
            yield updated, chunk

    def _answer(self, turns: list[dict[str, str]], question: str, session: str,
                max_new_tokens: int | None) -> Iterator[ReplyChunk]:
        earlier = [m["content"] for m in turns if m["role"] == "user"]
        decisions, timings = self.route(question, session, context=earlier)
        # A question that stands on its own is answered on its own: a 135M model given the
        # conversation repeats earlier answers (corrected facts included) into replies about
        # something else. Follow-ups ("where is it again?") keep the conversation.
        if not refers_back(question):
            turns = []
        governing = [d for d in decisions if d.in_scope]
        stats = Generation()
        hop = self._hop(decisions)
        if hop is not None:
            edit, hop_text = hop
            trace = Trace(route="memory", edit_ids=[edit.id],
                          score=next(d.similarity for d in decisions if d.edit.id == edit.id),
                          notice=f"one hop: answered about {edit.target_new} "
                                 f"({edit.subject} → {edit.target_new})")
            stream = self.llm.stream_chat([{"role": "user", "content": hop_text}],
                                          max_new_tokens=max_new_tokens, stats=stats)
        elif governing:
            edits = self.compose(governing)
            trace = Trace(route="memory", edit_ids=[e.id for e in edits],
                          score=governing[0].similarity)
            stream = self.counterfactual.stream(turns, question, edits, max_new_tokens, stats)
        else:
            trace = Trace(route="base")
            messages = [*turns, {"role": "user", "content": question}]
            stream = self.llm.stream_chat(messages, max_new_tokens=max_new_tokens, stats=stats)
        trace.candidates = [{"edit_id": d.edit.id, "similarity": round(d.similarity, 3),
                             "subject_overlap": round(d.overlap, 2),
                             "relation": None if d.relation is None else round(d.relation, 3),
                             "in_scope": d.in_scope}
                            for d in decisions[:3]]
        text = ""
        started = time.perf_counter()
        for text in stream:
            yield ReplyChunk(text)
        timings["generate"] = (time.perf_counter() - started) * 1e3
        trace.timings_ms = {k: round(v, 2) for k, v in timings.items()}
        trace.new_tokens = stats.new_tokens
        trace.tokens_per_second = round(stats.tokens_per_second, 2)
        if stats.truncated:
            trace.notice = ("your message or the conversation was too long for the model's "
                            f"context ({self.llm.config.context_tokens} tokens): the oldest "
                            "part was dropped or the message was cut")
            text = f"_(Note: {trace.notice}.)_\n\n{text}"
        if trace.route == "memory":
            self.store.record_hits(trace.edit_ids)
        self._log(session, question, text, trace)
        yield ReplyChunk(text, trace)

    def _hop(self, decisions: list[ScopeDecision]) -> tuple[Edit, str] | None:
        """An edit whose subject the question names and whose new value the question asks
        about one step further ("Which country is the Louvre in?" after Louvre → Madrid)."""
        for d in decisions:
            if d.overlap >= self.config.subject_overlap_min:
                text = hop_question(d.query, d.edit)
                if text is not None:
                    return d.edit, text
        return None

    def compose(self, governing: list[ScopeDecision]) -> list[Edit]:
        """The best in-scope edit, the other in-scope edits sharing its subject, and one hop
        further: edits about what those now say ("Louvre → Madrid" brings "Madrid → Portugal")."""
        first = governing[0].edit
        chosen = [first, *(d.edit for d in governing[1:]
                           if subject_overlap(first.subject, d.edit.subject) >= 1.0)]
        seen = {e.id for e in chosen}
        for edit in list(chosen):
            for hop in self.store.active_edits_about(edit.target_new):
                if hop.id not in seen:
                    chosen.append(hop)
                    seen.add(hop.id)
        return chosen

    def _log(self, session: str, question: str, answer: str, trace: Trace) -> None:
        self.store.log_turn(session, "user", question)
        self.store.log_turn(session, "assistant", answer, trace.as_dict())

    # -- corrections ----------------------------------------------------------------------
    def correct_from_form(self, subject: str, question: str, answer: str,
                          session: str = "local") -> tuple[str, Trace]:
        """The correction form: validate, store, confirm (or explain what is wrong)."""
        parsed = correction_from_form(subject, question, answer)
        text, trace = self._handle_correction(parsed, source="form", session=session)
        self._log(session, f"[correction form] {subject} | {question} | {answer}", text, trace)
        return text, trace

    def _handle_correction(self, parsed: Correction | Clarification, source: str,
                           session: str = "local") -> tuple[str, Trace]:
        if isinstance(parsed, Clarification):
            return parsed.question, Trace(route="clarify")
        try:
            if self.shared:
                edit = self.add_pending(parsed, source, session)
                return (f"Got it — I'll use this in our conversation: **{edit.statement}** "
                        f"(edit #{edit.id}). An admin reviews it before anyone else is told "
                        "so."), Trace(route="correction", edit_ids=[edit.id])
            edit, replaced = self.add_edit(parsed, source)
        except InvalidEditError as exc:
            return (f"I could not store that correction: {exc}. Please rephrase it as "
                    "'<subject> is <answer>'."), Trace(route="clarify")
        text = f"Got it — I'll remember: **{edit.statement}** (edit #{edit.id})"
        if replaced:
            text += f". This replaces edit {', '.join('#' + str(e.id) for e in replaced)}"
            text += f" ({replaced[0].target_new})"
        return text + ".", Trace(route="correction", edit_ids=[edit.id])

    @serialised
    def add_edit(self, correction: Correction, source: str) -> tuple[Edit, list[Edit]]:
        """Store a correction, superseding active edits on the same subject and question."""
        twins = self._same_fact(correction)
        edit = self.store.add_edit(
            correction.subject, correction.prompt, correction.target_new,
            target_old=correction.target_old, source=source,
            paraphrases=question_forms(correction.prompt, correction.subject,
                                       target=correction.target_new),
            supersedes=[t.id for t in twins], aliases=self._aliases(correction, twins),
        )
        self.memory.sync(added=[edit], removed=[t.id for t in twins])
        return edit, twins

    @serialised
    def add_pending(self, correction: Correction, source: str, session: str) -> Edit:
        """Shared mode: store a correction that serves only `session` until approved (it
        supersedes nothing: others keep the answers an admin approved)."""
        edit = self.store.add_edit(
            correction.subject, correction.prompt, correction.target_new,
            target_old=correction.target_old, source=source, status="pending", session=session,
            paraphrases=question_forms(correction.prompt, correction.subject,
                                       target=correction.target_new),
            aliases=self._aliases(correction, []))
        self.memory.sync(added=[edit])
        return edit

    @staticmethod
    def _aliases(correction: Correction, twins: list[Edit]) -> list[str]:
        """Other names the subject goes by: the shipped table's, and those an admin gave the
        edits this one replaces."""
        known = [a for twin in twins for a in twin.aliases]
        names = dict.fromkeys([*known, *naming.table().aliases_of(correction.subject)])
        names.pop(correction.subject, None)
        return list(names)[:MAX_ALIASES]  # the store keeps at most this many

    def _same_fact(self, correction: Correction) -> list[Edit]:
        same_subject = self.store.active_edits_about(correction.subject)
        if not same_subject:
            return []
        relations = self.scope.relation_similarity(
            correction.prompt, [(e.prompt, e.subject) for e in same_subject])
        return [e for e, r in zip(same_subject, relations)
                if e.prompt.strip().lower() == correction.prompt.strip().lower()
                or r >= self.config.supersede_threshold]
