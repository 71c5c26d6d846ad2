"""Counterfactual answers: reply to an in-scope question with the governing edits in hand.

Chat: a 135M model mostly ignores facts given only in the system prompt (1 of 4 in a probe),
so the reply is also *started* with the edit's statement and the model continues from there:
the corrected fact is always said, in the chat's own turn, and the model may add to it.
Text mode (teacher-forced metrics, completions): the facts are written before the prompt and
the base model runs with the trained LoRA adapter on (`assistant/adapter.py`), which learned
on the CounterFact and zsRE training splits to answer from the fact that governs the prompt.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from assistant.adapter import Adapter
from assistant.llm import ChatLLM, Generation
from config import RouterConfig
from store.db import Edit


def _is_question(text: str) -> bool:
    return text.rstrip().endswith("?")


def _as_fact(edit: Edit) -> str:
    """Question edits read as a Q/A pair, statement edits as the completed sentence."""
    if _is_question(edit.prompt):
        return f"Q: {edit.prompt.strip()} A: {edit.target_new}."
    return edit.statement


def answer_prefill(edit: Edit) -> str:
    """How the reply starts: the edit as a sentence, or just the answer for question prompts."""
    if _is_question(edit.prompt):
        return f"{edit.target_new}."
    return edit.statement


def text_prompt(edits: list[Edit], prompt: str) -> str:
    """Plain-text input of the counterfactual model: the facts, then the prompt.

    The "New Fact: ... Prompt: ..." layout (after IKE, Zheng et al. 2023) made even the base
    model copy the edited answer far more often than the bare statement did (reliability
    0.975 vs 0.713 on 40 CounterFact records, 0.935 vs 0.759 on 40 zsRE records); the adapter
    is trained on exactly this layout.
    """
    facts = "".join(f"New Fact: {_as_fact(e)}\n" for e in edits)
    query = f"Q: {prompt.strip()} A:" if _is_question(prompt) else prompt.strip()
    return f"{facts}Prompt: {query}"


class CounterfactualModel:
    """Answers with edits in hand; several edits about one subject are all given as facts."""

    def __init__(self, llm: ChatLLM, config: RouterConfig,
                 adapter: Adapter | None = None) -> None:
        self.llm = llm
        self.system_template = config.counterfactual_system_prompt
        self.adapter = adapter  # trained LoRA for text-mode answers; None: the base model

    def messages(self, history: list[dict[str, str]], question: str,
                 edits: list[Edit]) -> list[dict[str, str]]:
        facts = " ".join(e.statement for e in edits)
        system = {"role": "system", "content": self.system_template.format(facts=facts)}
        turns = [m for m in history if m["role"] != "system"]
        return [system, *turns, {"role": "user", "content": question}]

    def scoring(self) -> contextlib.AbstractContextManager:
        """Context in which `self.llm.model` is the counterfactual model (adapter on)."""
        return self.adapter.active() if self.adapter else contextlib.nullcontext()

    def stream(self, history: list[dict[str, str]], question: str, edits: list[Edit],
               max_new_tokens: int | None = None,
               stats: Generation | None = None) -> Iterator[str]:
        """Reply text so far; the first governing edit starts the reply."""
        return self.llm.stream_chat(self.messages(history, question, edits),
                                    prefill=answer_prefill(edits[0]),
                                    max_new_tokens=max_new_tokens, stats=stats)
