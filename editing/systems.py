"""Edited systems the evaluation harness can score: one class per route or method.

Every system offers the same five things, so `editing/evaluate.py` has no per-method branches:
`apply(records)`, `revert()`, `scorer(prompt) -> Scorer` (which model to run, on what text,
inside which context, for teacher-forced metrics), `chat(question) -> reply`, and
`extra_metrics()`.
Weight-editing methods (issues 4-5) register here with the same protocol.
"""
from __future__ import annotations

import contextlib
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from assistant.corrections import Correction
from assistant.counterfactual import text_prompt
from assistant.embedder import Embedder
from assistant.llm import ChatLLM
from assistant.memory import EditMemory
from assistant.phrasings import question_forms
from assistant.records import EditRecord
from assistant.router import Assistant
from assistant.runtime import load_counterfactual_adapter
from config import default_data_dir, router_config
from editing.deltas import WeightState
from editing.serving import serve
from editing.methods import load_method
from editing.preserve import committed_keys
from editing.registry import METHODS as REGISTRY
from editing.rome.compute import EditRequest
from store.db import Store

log = logging.getLogger(__name__)


@dataclass
class Scorer:
    """Run `model` on `text` inside `context` (e.g. with the counterfactual adapter on)."""

    model: torch.nn.Module
    text: str
    context: contextlib.AbstractContextManager = field(default_factory=contextlib.nullcontext)


class EditedSystem(Protocol):
    name: str
    tokenizer: object

    def apply(self, records: list[EditRecord]) -> None: ...
    def revert(self) -> None: ...
    def scorer(self, prompt: str) -> Scorer: ...
    def chat(self, question: str, history: list[dict] = ()) -> str: ...
    def extra_metrics(self) -> dict: ...


class MemorySystem:
    """The SERAC route: edits stored in an (in-memory) edit memory, answered by the router."""

    name = "memory"

    def __init__(self, assistant: Assistant, chat_tokens: int = 32) -> None:
        self.assistant = assistant
        self.tokenizer = assistant.llm.tokenizer
        self.chat_tokens = chat_tokens
        self._applied: list[int] = []
        self._route_ms: list[float] = []
        self._routes: dict[str, int] = {"memory": 0, "base": 0}

    @classmethod
    def load(cls, chat_tokens: int = 32, data_dir: Path | None = None,
             engine: str | None = None) -> "MemorySystem":
        """The default base model and embedder, with a fresh in-memory store and index; chat
        decoded by `engine` (None: the chat config's, as the app)."""

        config = router_config()
        root = Path(data_dir) if data_dir else default_data_dir()
        llm = ChatLLM.load(None, root)
        serve(llm, root, engine)
        embedder = Embedder(int8=config.embedding_int8)
        store = Store(":memory:")
        memory = EditMemory(store, embedder, index_path=None)
        adapter = load_counterfactual_adapter(llm.model, llm.family, log.info)
        return cls(Assistant(llm, embedder, store, memory, config, adapter), chat_tokens)

    def apply(self, records: list[EditRecord]) -> None:
        for record in records:
            edit, _ = self.assistant.add_edit(
                Correction(record.subject, record.prompt, record.target_new,
                                 record.ground_truth or None), source="eval")
            self._applied.append(edit.id)

    def revert(self) -> None:
        for edit_id in self._applied:
            if self.assistant.store.get_edit(edit_id).status == "active":
                self.assistant.review.set_status(edit_id, "rejected", actor="eval")
        self._applied = []

    def scorer(self, prompt: str) -> Scorer:
        decisions, timings = self.assistant.route(prompt)
        self._route_ms.append(timings["route"])
        governing = [d for d in decisions if d.in_scope]
        self._routes["memory" if governing else "base"] += 1
        model = self.assistant.llm.model
        if not governing:
            return Scorer(model, prompt)
        counterfactual = self.assistant.counterfactual
        edits = self.assistant.compose(governing)
        return Scorer(model, text_prompt(edits, prompt), counterfactual.scoring())

    def chat(self, question: str, history: list[dict] = ()) -> str:
        chunks = list(self.assistant.reply(list(history), question, session="eval",
                                           max_new_tokens=self.chat_tokens))
        return chunks[-1].text

    def extra_metrics(self) -> dict:
        total = sum(self._routes.values()) or 1
        return {"routing_ms": statistics.median(self._route_ms) if self._route_ms else None,
                "memory_route_share": self._routes["memory"] / total}


def edit_requests(records: list[EditRecord]) -> list:
    """Records as weight-edit requests, with chat questions for chat-aware values."""
    return [EditRequest(r.subject, r.prompt, r.target_new,
                        tuple(question_forms(r.prompt, r.subject, limit=2)))
            for r in records]


class WeightEditSystem:
    """A weight-editing method (rome, memit, ft, mend) on the base model, no memory route.

    Single-edit mode: one delta per record, reverted after scoring. Sequential mode: for
    one-fact methods (rome, ft) one delta per record applied in turn, as sequential
    promotions would; for batch methods (memit, mend) one delta for all records.
    """

    def __init__(self, method: str, llm, stats_root: Path, chat_tokens: int = 32,
                 batch: bool = False, config_file: Path | None = None) -> None:

        self.name = method
        self.llm = llm
        self.tokenizer = llm.tokenizer
        self.chat_tokens = chat_tokens
        self.batch = batch
        self.state = WeightState(llm.model)
        self.editor = load_method(method, llm, stats_root, config_file,
                                  base_fingerprint=self.state.fingerprint)
        self._edit_seconds: list[float] = []

    @classmethod
    def factory(cls, method: str, batch: bool = False) -> Callable[..., "WeightEditSystem"]:
        def load(chat_tokens: int = 32, data_dir: Path | None = None,
                 config_file: Path | None = None, engine: str | None = None
                 ) -> "WeightEditSystem":

            root = Path(data_dir) if data_dir else default_data_dir()
            if engine not in (None, "torch"):
                raise ValueError("weight-edit evaluations decode with torch: each edit would "
                                 "need a new GGUF (--engine torch)")
            return cls(method, ChatLLM.load(None, root), root, chat_tokens, batch, config_file)
        return load

    def apply(self, records: list[EditRecord]) -> None:
        requests = edit_requests(records)
        groups = [requests] if self.batch else [[r] for r in requests]
        for group in groups:  # each edit keeps the earlier ones' keys, as promotions do
            live = committed_keys(delta for _, delta in self.state.applied)
            self.state.apply(self.editor.edit(self.llm, group, committed=live))

    def revert(self) -> None:
        self.state.revert_all()

    def scorer(self, prompt: str) -> Scorer:
        return Scorer(self.llm.model, prompt)

    def chat(self, question: str, history: list[dict] = ()) -> str:
        return self.llm.chat([*history, {"role": "user", "content": question}],
                             max_new_tokens=self.chat_tokens)

    def extra_metrics(self) -> dict:
        return dict(self.editor.setup_info)


# name -> factory(chat_tokens=...) building the system with the default model
METHODS: dict[str, Callable[..., EditedSystem]] = {
    "memory": MemorySystem.load,
    **{name: WeightEditSystem.factory(name, batch=m.batches) for name, m in REGISTRY.items()},
}
