"""Promotion: move stable corrections from the edit memory into the base model's weights.

The live weights are always "base + committed deltas in order". A promotion never touches
them while it works: the delta is computed and checked on a private copy of the model, so
chat goes on answering from the committed weights. Only when the guard passes is the delta
added to the live weights under the write lock (milliseconds; replies hold the read lock for
their whole generation) and committed by one store transaction that records it, its delta
bytes, and marks its edits promoted. A crash before that transaction leaves at most an orphan
cache file, which start-up deletes; after it, start-up replays the delta from the store.

Several instances may share one store (PostgreSQL): a weight edit committed or rolled back by
one reaches the others through a notification, and each applies it to its own weights
(`WeightEdits.catch_up`). Until it has, the edits it promoted stay in that instance's memory
route (`EditMemory.held_ids`), so no instance ever stops answering a correction.
"""
from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from assistant.hops import hop_statements
from assistant.llm import ChatLLM
from assistant.metrics import (contains_answer, greedy_words, peak_rss_mb,
                               token_accuracy)
from config import CONFIG_DIR, load_config
from editing.chat_guard import ChatBaseline, ChatGuard, ChatGuardConfig
from editing.deltas import (Delta, DeltaError, WeightState, weights_checksum,
                            write_atomically)
from editing.heatmap import render_heatmaps
from editing.methods import Editor, load_method
from editing.preserve import committed_keys
from editing.probes import load_probes, probe_locality, probe_predictions
from editing import registry
from editing.rome.compute import EditRequest
from editing.trace import fact_prompt, trace
from errors import AmendError, InvalidEditError, StoreError
from store.db import WeightEditConflict

log = logging.getLogger(__name__)

DELTA_DIR = "deltas"
Progress = Callable[[str], None]


def below(score: float, digits: int = 3) -> str:
    """A failing score cut (not rounded) to `digits` decimals, so that 0.9499 reads 0.949 and a
    refusal never says "0.950 < 0.95"."""
    scale = 10 ** digits
    # the 1e-9 keeps float products such as 0.57 * 100 = 56.99999999999999 at 57
    return f"{math.floor(score * scale + 1e-9) / scale:.{digits}f}"


@dataclass(frozen=True)
class GuardConfig:
    """When a promotion may commit, and which edits are suggested for it."""

    min_reliability: float  # mean token accuracy of the new targets after their prompts
    min_locality: float  # share of unchanged argmax tokens on the fixed locality probes
    # the same share against the unedited base model, with this edit on top of every committed
    # one: sequential edits each within min_locality can still drift far together
    min_total_locality: float
    suggest_min_hits: int  # an edit is "ready" once asked about this many times...
    suggest_min_age_hours: float  # ...and this old
    chat_tokens: int  # reply length for the chat checks
    locality_probes: int  # how many of the shipped probes the guard reads
    # what a user sees (editing/chat_guard.py): greedy chat replies on the edited copy
    min_chat_generalization: float  # the edits' questions and paraphrases, fresh and after
    # a conversation holding the old answer, answered with the new target
    min_chat_locality: float  # general and neighbour questions replied to exactly as before
    carry_questions: int  # per edit: its question and paraphrases asked
    chat_probes: int  # general chat questions
    neighbour_questions: int  # per promotion: the edits' questions about nearby subjects

    def chat(self) -> ChatGuardConfig:
        return ChatGuardConfig(self.chat_tokens, self.carry_questions, self.chat_probes,
                               self.neighbour_questions)


def guard_config(path: Path | None = None) -> GuardConfig:
    """The guard's thresholds from `path`, or the shipped configs/promotion.json."""
    return load_config(GuardConfig, path or CONFIG_DIR / "promotion.json")


@dataclass
class PromotionResult:
    committed: bool
    message: str
    weight_edit_id: int | None = None
    scores: dict | None = None


def is_question(prompt: str) -> bool:
    return prompt.rstrip().endswith("?")


def edit_request(edit) -> EditRequest:
    return EditRequest(edit.subject, edit.prompt, edit.target_new,
                       tuple(edit.paraphrases[:2]))


class WeightEdits:
    """The live weight state of the running app: replay, promote, roll back.

    It needs the model (`llm`, with its weights lock), the store, the edit memory (edits
    leave or re-enter the memory route), the embedder (the chat guard's neighbour names) and
    the lock that keeps store and memory in step (`edits_lock`); nothing else of the
    assistant."""

    def __init__(self, llm, store, memory, embedder, edits_lock, data_dir: Path,
                 guard: GuardConfig | None = None,
                 config_files: dict[str, Path] | None = None) -> None:
        self.llm = llm
        self.store = store
        self.memory = memory
        self.edits_lock = edits_lock
        self.data_dir = Path(data_dir)
        self.guard = guard or guard_config()
        self.state = WeightState(self.llm.model)  # fingerprint of the base, before replay
        self._editors: dict[str, Editor] = {}
        self._config_files = config_files or {}  # method -> hyperparameter file (tests)
        self._busy = threading.Lock()  # one promotion or rollback at a time
        self._base_probes: dict[tuple, list[list[int]]] = {}  # the unedited model's answers
        self.chat_guard = ChatGuard(self.guard.chat(), embedder)
        self._chat_before: dict[tuple, dict[str, str]] = {}  # weight state -> question -> reply
        self.messages: list[str] = []
        self.engine = None  # editing.serving.ChatEngine: llama.cpp kept on the live weights
        # committed weight edits not applied here (made on another base model, unreadable):
        # id -> why; their edits stay in the memory route
        self.skipped: dict[int, str] = {}

    @classmethod
    def for_assistant(cls, assistant, data_dir: Path, **options) -> "WeightEdits":
        """The weight edits of a running Assistant's model, store and memory."""
        return cls(assistant.llm, assistant.store, assistant.memory, assistant.embedder,
                   assistant.edits_lock, data_dir, **options)

    # -- start-up ---------------------------------------------------------------------------
    def replay(self, progress: Progress = log.info, tidy: bool = True) -> list[str]:
        """Re-apply committed deltas in order; refuse (and say so) any made on another model.
        `tidy` deletes delta files no committed row names; a reader of a running app's data
        dir (editing/export.py) passes False, as such a file may be a promotion in flight."""
        rows = self.store.weight_edits("committed")
        known = {Path(r["delta_path"]).name for r in self.store.weight_edits()}
        folder = self.data_dir / DELTA_DIR
        for orphan in folder.glob("*.safetensors*") if folder.exists() and tidy else []:
            if orphan.name not in known:  # written by a promotion that never committed
                orphan.unlink()
                log.info("removed uncommitted delta file %s", orphan.name)
        messages = []
        with self.llm.weights_lock.write():
            for row in rows:
                progress(f"Re-applying weight edit #{row['id']} ({row['method']})")
                messages += self._apply_row(row)
        for message in messages:
            log.warning(message)
        self.messages = messages
        return messages

    def _load_delta(self, row: dict) -> Delta:
        """A committed weight edit's delta: from the store (the truth, and the only copy
        another instance has), else from the file of a row stored before the store kept
        delta bytes."""
        try:
            data = self.store.weight_delta_bytes(row["id"])
        except StoreError as exc:
            raise DeltaError(str(exc)) from exc
        if data is not None:
            return Delta.from_bytes(data, f"of weight edit #{row['id']}")
        return Delta.load(self.data_dir / row["delta_path"])

    def _apply_row(self, row: dict, delta: Delta | None = None) -> list[str]:
        """Apply one committed row to the live weights (the caller holds the write lock);
        what went wrong, as messages. A row that cannot be applied is `skipped`."""
        try:
            delta = delta or self._load_delta(row)
            self.state.apply(delta, key=row["id"])
        except DeltaError as exc:
            return [self._skip(row, exc)]
        if row.get("checksum") and weights_checksum(
                self.llm.model, delta.names) != row["checksum"]:
            return [f"Weight edit #{row['id']}: the weights differ from those recorded at "
                    "promotion (another torch build?)"]
        return []

    def _skip(self, row: dict, exc: DeltaError) -> str:
        """Record a committed row these weights cannot carry; the message saying so."""
        self.skipped[row["id"]] = str(exc)
        return (f"Weight edit #{row['id']} not applied: {exc}; its edits stay in the memory "
                "route")

    # -- several instances on one store ------------------------------------------------------
    def follow(self, progress: Progress = log.info) -> bool:
        """Keep the memory route answering every committed edit this instance's weights do
        not carry, and (on a shared store) apply the weight edits other instances commit or
        roll back as they do. True when listening to other instances."""
        self.memory.held = self.unapplied_edit_ids
        watching = self.store.watch(lambda ids: self.catch_up(), what="weights") is not None
        if watching:
            progress("Listening for other instances' weight edits")
        if watching or self.memory.held_ids:
            # the saved index, or the edit watcher's first refresh (made before `held` was
            # set), may lack the held edits; alone and with none held, it is right already
            with self.edits_lock:
                self.memory.refresh(None)
        return watching

    def unapplied_edit_ids(self) -> frozenset[int]:
        """The edits of committed weight edits these weights do not carry: the memory route
        keeps serving them (read from the store each time, so an edit another instance has
        just promoted is held before this one hears of its weight edit)."""
        applied = {key for key, _ in self.state.applied}
        return frozenset(edit_id for row in self.store.weight_edits("committed")
                         if row["id"] not in applied for edit_id in row["edit_ids"])

    def catch_up(self, progress: Progress = log.info) -> list[str]:
        """Make the live weights the store's committed weight edits, in order: revert those
        rolled back elsewhere, apply those committed elsewhere. The new weights (and
        llama.cpp's file of them) are prepared on a copy while chat goes on; the swap takes
        the write lock for milliseconds. Returns what went wrong, as messages."""
        with self._busy:  # after a promotion or rollback running here
            started = time.perf_counter()
            rows = self.store.weight_edits("committed")
            wanted = {row["id"] for row in rows}
            applied = [key for key, _ in self.state.applied]
            self.skipped = {k: why for k, why in self.skipped.items() if k in wanted}
            gone = [key for key in applied if key not in wanted]
            new, messages = [], []
            for row in rows:
                if row["id"] in applied or row["id"] in self.skipped:
                    continue
                try:
                    delta = self._load_delta(row)
                    self.state.check(delta)
                except DeltaError as exc:
                    messages.append(self._skip(row, exc))
                    continue
                new.append((row, delta))
            engine = None
            if (gone or new) and self.engine is not None and self.engine.uses_llama_cpp:
                work = self._work_copy()
                fork = self.state.fork(work.model)
                for key in gone:
                    fork.revert(key=key)
                for row, delta in new:
                    fork.apply(delta, key=row["id"])
                engine = self.engine.build(work.model, progress)
                del work, fork
            with self.edits_lock:
                with self.llm.weights_lock.write():
                    for key in gone:
                        self.state.revert(key=key)
                    for row, delta in new:
                        messages += self._apply_row(row, delta)
                    if engine is not None:
                        self.engine.install(engine)
                self.memory.refresh(None)
            if engine is not None:
                self.engine.tidy()
            if gone or new:
                log.info("Weight edits from the shared store: applied %s, rolled back %s "
                         "(%.2f s)", [row["id"] for row, _ in new] or "none", gone or "none",
                         time.perf_counter() - started)
            for message in messages:
                log.warning(message)
            return messages

    # -- suggestions ------------------------------------------------------------------------
    def suggestions(self) -> list[tuple[object, bool, str]]:
        """Every active edit with whether it is ready to promote and why (or why not yet):
        asked about often enough, old enough, alone on its fact. Ready ones first. An admin
        may promote any active edit; this only says which have proved stable."""
        now = time.time()
        need_hits, need_age = self.guard.suggest_min_hits, self.guard.suggest_min_age_hours
        rows = []
        for edit in self.store.active_edits():
            age_h = (now - edit.created_at) / 3600
            same = [e for e in self.store.active_edits_about(edit.subject) if e.id != edit.id]
            conflict = any(e.prompt.strip().lower() == edit.prompt.strip().lower() for e in same)
            waiting = []
            if edit.hits < need_hits:
                waiting.append(f"asked {edit.hits} of {need_hits} times needed")
            if age_h < need_age:
                waiting.append(f"{age_h:.1f} of {need_age:g} h old")
            if conflict:
                waiting.append("another active edit answers the same question")
            ready = not waiting
            why = (f"ready: asked {edit.hits} times, {age_h:.1f} h old, no conflict" if ready
                   else "not yet: " + "; ".join(waiting))
            rows.append((edit, ready, why))
        return sorted(rows, key=lambda row: (not row[1], row[0].id))

    # -- promotion --------------------------------------------------------------------------
    def use_config_file(self, method: str, path: Path) -> None:
        """Edit with `method`'s hyperparameters from `path` from now on (experiments)."""
        self._config_files[method] = Path(path)
        self._editors.pop(method, None)

    def _editor(self, method: str, progress: Progress) -> Editor:
        if method not in self._editors:
            self._editors[method] = load_method(
                method, self.llm, self.data_dir, self._config_files.get(method), progress,
                base_fingerprint=self.state.fingerprint)
        return self._editors[method]

    def _work_copy(self):
        """A private copy of the live model (base + committed deltas) to edit and check."""
        with self.llm.weights_lock.read():
            model = copy.deepcopy(self.llm.model)
        return ChatLLM(model, self.llm.tokenizer, self.llm.config, name=self.llm.name,
                       family=self.llm.family)

    def promote(self, edit_ids: list[int], method: str, actor: str = "admin",
                progress: Progress = log.info) -> PromotionResult:
        """Edit, check against the guard, and commit or discard. Never half-applies."""
        registry.method(method)  # an unknown name fails here, naming the known ones
        edits = [self.store.get_edit(i) for i in dict.fromkeys(edit_ids)]
        if not edits:
            raise InvalidEditError("select at least one edit to promote")
        not_active = [f"#{e.id} ({e.status})" for e in edits if e.status != "active"]
        if not_active:
            raise InvalidEditError(f"only active edits can be promoted: {', '.join(not_active)}")
        if not self._busy.acquire(blocking=False):
            raise AmendError("another promotion or rollback is running; try again when it ends")
        def report(message: str) -> None:  # the UI's bar, and the command line's log
            if progress is not log.info:
                log.info("promotion (%s): %s", method, message)
            progress(message)

        try:
            return self._promote(edits, method, actor, report)
        finally:
            self._busy.release()

    def _promote(self, edits, method: str, actor: str, progress: Progress) -> PromotionResult:
        started = time.perf_counter()
        editor = self._editor(method, progress)
        work = self._work_copy()
        probes = load_probes(self.guard.locality_probes)
        progress("Reading the locality probes before the edit")
        before = probe_predictions(work.model, work.tokenizer, probes)
        base = self._base_probe_tokens(work, probes, before)
        requests = [edit_request(e) for e in edits]
        try:
            delta = editor.edit(work, requests, progress,
                                committed=committed_keys(d for _, d in self.state.applied))
        except (AmendError, RuntimeError, ValueError) as exc:
            return self._refuse(edits, method, actor, f"the {method} edit failed: {exc}")
        edit_seconds = time.perf_counter() - started
        on_copy = WeightState(work.model, fingerprint=self.state.fingerprint)
        on_copy.apply(delta)
        engine = None
        if self.engine is not None and self.engine.uses_llama_cpp:
            # chat replies come from llama.cpp: the guard reads the replies the user will see
            progress("Writing the chat engine's file of the edited weights")
            try:
                engine = self.engine.build(work.model, progress)
            except Exception as exc:  # disk full, a broken binding: nothing is committed
                return self._refuse(edits, method, actor,
                                    f"the chat engine's file could not be written: {exc}")
            work.engine = engine
        progress("Checking the edited model")
        replies: dict[str, str] = {}  # fresh chat replies of the edited copy, asked once
        scores = self._score(work, edits, probes, before, base, replies)
        scores.update(seconds=round(edit_seconds, 2), delta_norm=round(delta.norm(), 4),
                      peak_rss_mb=round(peak_rss_mb()))
        failed = self._teacher_forced_failures(scores)
        carried: list[int] = []
        if not failed:  # a delta the token checks refuse needs no chat replies (~30 s)
            with on_copy.on_base(work.model):  # the copy as it was before this edit
                work.engine = self.llm.engine  # ... which the live engine decodes
                chat_before = self._chat_baseline(work, edits, progress)
                work.engine = engine
            chat_scores, carried = self.chat_guard.score(work, edits, chat_before, progress,
                                                         replies)
            scores.update(chat_scores)
            failed = self._chat_failures(scores)
        if failed:
            return self._refuse(edits, method, actor, "; ".join(failed), scores)
        return self._commit(edits, method, actor, delta, scores, time.perf_counter() - started,
                            carried, engine)

    def _teacher_forced_failures(self, scores: dict) -> list[str]:
        failed = []
        if scores["reliability"] < self.guard.min_reliability:
            failed.append(f"reliability {below(scores['reliability'])} < "
                          f"{self.guard.min_reliability}")
        if scores["locality"] < self.guard.min_locality:
            failed.append(f"locality {below(scores['locality'])} < {self.guard.min_locality}")
        elif scores["total_locality"] < self.guard.min_total_locality:
            failed.append(f"locality against the unedited model "
                          f"{below(scores['total_locality'])} < {self.guard.min_total_locality} "
                          "(the weight edits already committed have used up the margin; roll "
                          "some back to make room)")
        return failed

    def _chat_failures(self, scores: dict) -> list[str]:
        failed = []
        if (scores["chat_generalization"] or 0.0) < self.guard.min_chat_generalization:
            failed.append(f"chat generalization {below(scores['chat_generalization'] or 0.0)} "
                          f"< {self.guard.min_chat_generalization} (the edited model does not "
                          "answer the edits' questions and paraphrases with the new answers)")
        if (scores["chat_locality"] or 0.0) < self.guard.min_chat_locality:
            failed.append(f"chat locality {below(scores['chat_locality'] or 0.0)} < "
                          f"{self.guard.min_chat_locality} (replies to unrelated questions "
                          "changed their first sentence)")
        return failed

    def _state_key(self) -> tuple:
        return tuple(key for key, _ in self.state.applied)

    def _chat_baseline(self, work, edits, progress: Progress) -> ChatBaseline:
        """Chat replies of the live weights before the edit; replies to the locality
        questions are kept per weight state, so a second promotion asks only new ones."""
        known = self._chat_before.setdefault(self._state_key(), {})
        questions = self.chat_guard.locality_questions(edits)
        missing = [q for q in questions if q not in known]
        fresh = self.chat_guard.baseline(work, edits, progress, missing)
        known.update(fresh.locality)
        fresh.locality = {q: known[q] for q in questions}
        return fresh

    def _base_probe_tokens(self, work, probes, current: list[list[int]]) -> list[list[int]]:
        """The unedited model's probe predictions (`current` when nothing is committed),
        computed on the work copy with the base weights swapped in; once per process."""
        if not self.state.applied:
            return current
        key = tuple(probes)
        if key not in self._base_probes:
            with self.state.on_base(work.model) as model:
                self._base_probes[key] = probe_predictions(model, work.tokenizer, probes)
        return self._base_probes[key]

    def _score(self, work, edits, probes, before, base,
               replies: dict[str, str]) -> dict:
        """Teacher-forced scores and chat reliability of the edited copy; the fresh chat
        replies it generates go into `replies` (question -> reply) for the chat guard."""
        model, tok = work.model, work.tokenizer
        after = probe_predictions(model, tok, probes)
        locality = probe_locality(before, after)

        def says(question: str, target: str) -> float:
            if question not in replies:
                replies[question] = work.chat([{"role": "user", "content": question}],
                                              max_new_tokens=self.guard.chat_tokens)
            return float(contains_answer(replies[question], target))

        chat = [says(e.prompt, e.target_new) for e in edits]
        # A completion prompt ("The Eiffel Tower is in") is scored as EasyEdit does, by the
        # target's token accuracy right after it; a question made in chat ("Where is the
        # Eiffel Tower?") by whether the chat answer to it states the target, since no raw
        # continuation of a question starts with its answer. Paraphrases are scored the same
        # way (their chat scores, fresh and after the old answer, are the chat guard's).
        reliability = [said if is_question(e.prompt) else
                       token_accuracy(model, tok, e.prompt, e.target_new)
                       for e, said in zip(edits, chat)]
        generalization = [says(q, e.target_new) if is_question(q) else
                          token_accuracy(model, tok, q, e.target_new)
                          for e in edits for q in e.paraphrases[:1]]
        # one-hop probes from the edits themselves: after "the Louvre is in Madrid", the
        # model should put the Louvre in whatever country it puts Madrid in
        portability = []
        for e in edits:
            for about_subject, about_target in hop_statements(e):
                expected = greedy_words(model, tok, about_target)
                if expected:
                    portability.append(token_accuracy(model, tok, about_subject, " " + expected))
        mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
        return {"reliability": mean(reliability), "generalization": mean(generalization),
                "locality": round(locality, 4),
                "total_locality": round(probe_locality(base, after), 4),
                "portability": mean(portability),
                "chat_reliability": mean(chat), "edits": len(edits),
                "locality_probes": len(probes)}

    def _refuse(self, edits, method: str, actor: str, reason: str,
                scores: dict | None = None) -> PromotionResult:
        self.store.audit(actor, f"promote-refused:{method}",
                         {"edits": [e.id for e in edits], "reason": reason, "scores": scores})
        return PromotionResult(False, f"Not promoted: {reason}. The weights are unchanged and "
                               "the edits stay in the memory route.", scores=scores)

    def _commit(self, edits, method: str, actor: str, delta: Delta, scores: dict,
                seconds: float, carried: list[int], engine=None) -> PromotionResult:
        name = f"{int(time.time() * 1000)}-{method}.safetensors"
        relative = f"{DELTA_DIR}/{name}"
        data = delta.to_bytes()
        write_atomically(self.data_dir / relative, data)  # a local copy, for inspection
        made_on = sorted([key for key, _ in self.state.applied] + list(self.skipped))
        with self.edits_lock, self.llm.weights_lock.write():
            self.state.apply(delta, key=None)
            try:
                checksum = weights_checksum(self.llm.model, delta.names)
                row_id = self.store.add_weight_edit(
                    method=method, edit_ids=[e.id for e in edits],
                    layers=delta.meta.get("layers", []), delta_path=relative,
                    base_fingerprint=delta.base_fingerprint, scores=scores,
                    checksum=checksum, seconds=round(seconds, 2), actor=actor,
                    backstop_ids=[e.id for e in edits if e.id not in carried],
                    delta_bytes=data, applied=made_on)
            except BaseException as exc:
                self.state.revert()
                (self.data_dir / relative).unlink(missing_ok=True)
                if isinstance(exc, WeightEditConflict):  # another instance came first
                    return self._refuse(edits, method, actor,
                                        f"{exc}; promote again on the weights as they are now",
                                        scores)
                raise
            self.state.applied[-1] = (row_id, delta)
            if engine is not None:  # llama.cpp's file of these same weights, written before
                self.engine.install(engine)
            # only edits the weights answer in chat leave the memory route; the rest stay
            # served from memory (backstop) while this weight edit is live
            self.memory.sync(removed=list(carried))
        held = [f"#{e.id}" for e in edits if e.id not in carried]
        message = f"Promoted {len(edits)} edit(s) with {method} as weight edit #{row_id}."
        if held:
            message += (f" The weights alone do not answer {', '.join(held)} in chat (its "
                        "question or a paraphrase, fresh or after the old answer), so the "
                        "memory route keeps answering it.")
        return PromotionResult(True, message, row_id, scores)

    # -- rollback ---------------------------------------------------------------------------
    def rollback(self, weight_edit_id: int, actor: str = "admin") -> str:
        """Undo any committed weight edit; its edits return to the memory route."""
        if not self._busy.acquire(blocking=False):
            raise AmendError("a promotion or rollback is running; try again when it ends")
        try:
            with self.edits_lock:
                restored = self.store.rollback_weight_edit(weight_edit_id, actor)
                with self.llm.weights_lock.write():
                    try:
                        self.state.revert(key=weight_edit_id)
                    except DeltaError:
                        pass  # never applied here (refused at start-up): nothing to undo
                    if self.engine is not None:  # replies wait for llama.cpp's new file
                        self.engine.refresh()
                self.skipped.pop(weight_edit_id, None)
                # backstop edits were never out of the index: re-add all without duplicates
                self.memory.sync(added=[self.store.get_edit(i) for i in restored],
                                           removed=restored)
            return (f"Rolled back weight edit #{weight_edit_id}; "
                    f"{len(restored)} edit(s) are back in the memory route.")
        finally:
            self._busy.release()

    def trace_image(self, edit, progress: Progress = log.info) -> Path:
        """Causal-trace heat map (hidden, MLP, attention) of the edit's prompt on a copy of
        the live model, for the admin tab; cached per edit and weight state."""
        key = "-".join(str(k) for k, _ in self.state.applied) or "base"
        path = self.data_dir / "traces" / f"edit{edit.id}-{key}.png"
        if path.exists():
            return path
        results = []
        work = self._work_copy()  # tracing installs hooks: never on the model chat is using
        reply = ""
        if is_question(edit.prompt):
            progress(f"Causal trace of edit #{edit.id}: reading the model's answer")
            reply = work.chat([{"role": "user", "content": edit.prompt}],
                              max_new_tokens=self.guard.chat_tokens)
        prompt = fact_prompt(edit.prompt, edit.subject, work.chat_text(edit.prompt), reply)
        for step, kind in enumerate(("hidden", "mlp", "attn"), 1):
            progress(f"Causal trace of edit #{edit.id}: {kind} states ({step}/3)")
            results.append(trace(work.model, work.tokenizer, prompt, edit.subject, kind=kind))
        path.parent.mkdir(parents=True, exist_ok=True)
        return render_heatmaps(results, path)

    def live_state(self) -> str:
        """One line an admin can compare across restarts: which weight edits are applied,
        and the exact checksum of the weights chat is using now."""
        with self.llm.weights_lock.read():
            checksum = weights_checksum(self.llm.model)
            applied = [key for key, _ in self.state.applied]
        listed = ", ".join(f"#{k}" for k in applied) or "none"
        return f"Live weights: checksum {checksum}; weight edits applied: {listed}."

    def table(self) -> list[dict]:
        """The weight edits for the Admin tab; one committed elsewhere that these weights
        cannot carry reads "not applied here" (its edits are answered from memory)."""
        rows = []
        for row in self.store.weight_edits():
            status = "not_applied_here" if row["id"] in self.skipped else row["status"]
            rows.append({"id": row["id"], "method": row["method"], "status": status,
                         "edits": row["edit_ids"], "layers": row["layers"],
                         **{k: v for k, v in row["scores"].items()
                            if k in ("reliability", "generalization", "locality",
                                     "total_locality", "portability", "chat_reliability",
                                     "chat_generalization", "chat_locality", "carried",
                                     "seconds", "peak_rss_mb")}})
        return rows

