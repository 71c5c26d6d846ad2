"""Promotion into the real SmolLM2's weights: commit through the guard, chat answers from the
weights with the memory route out of the way, replay after a restart, rollback to the exact
base weights, refusal by the guard, a delta from another base model refused at start, and a
MEMIT batch of two corrections promoted and rolled back.

The shipped configs run as they are: the default model's key statistics ship with the code
(editing/data/stats/), so no test computes them.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from editing.deltas import weights_checksum
from tests.conftest import data_dir_with_model

pytestmark = pytest.mark.realmodel

EIFFEL = ("Eiffel Tower", "The Eiffel Tower is located in the city of", "Rome")


def _test_guard():
    """The shipped guard with fewer chat questions (CI time) and no chat floors: these tests
    are about committing, replaying and rolling back; the chat checks have their own test."""
    from editing.promote import guard_config

    return replace(guard_config(), chat_probes=2, neighbour_questions=1, carry_questions=2,
                   min_chat_generalization=0.0, min_chat_locality=0.0)


@pytest.fixture(scope="session")
def stats_cache(tmp_path_factory) -> Path:
    """Key statistics shared by the tests (computed once, as one data dir would)."""
    return tmp_path_factory.mktemp("stats")


@pytest.fixture
def app(tmp_path, model_cache, embedder, stats_cache):
    """A real assistant (SQLite file, FAISS index, real models) over a private model copy."""
    from assistant.llm import ChatLLM
    from assistant.memory import EditMemory
    from assistant.router import Assistant
    from config import router_config
    from editing.promote import WeightEdits
    from editing.serving import serve
    from store.db import Store

    torch.set_num_threads(1)
    data_dir = data_dir_with_model(model_cache, tmp_path / "data")
    (data_dir / "stats").symlink_to(stats_cache, target_is_directory=True)

    def start():
        llm = ChatLLM.load(None, data_dir)
        store = Store(data_dir / "amend.db")
        memory = EditMemory(store, embedder, data_dir / "edits.faiss")
        assistant = Assistant(llm, embedder, store, memory, router_config())
        assistant.weights = WeightEdits.for_assistant(assistant, data_dir,
                                                      guard=_test_guard())
        assistant.weights.replay()
        assistant.weights.engine = serve(llm, data_dir)  # as build_app does
        assistant.weights.follow()
        return assistant

    return start


def _engine_matches(assistant) -> None:
    """Chat replies come from llama.cpp's file of exactly the live torch weights (or from
    torch itself where the binding is missing, as the app falls back)."""
    from editing.deltas import own_checksum

    engine = assistant.llm.engine
    if engine is None:
        assert assistant.llm.engine_note.startswith("torch"), assistant.llm.engine_note
        return
    assert engine.path.name.startswith(own_checksum(assistant.llm.model)), engine.path


def _ask(assistant, question: str) -> tuple[str, str]:
    chunks = list(assistant.reply([], question, session="t", max_new_tokens=24))
    return chunks[-1].text, chunks[-1].trace.route


def _exports_answer_as_the_app(assistant, tmp_path) -> None:
    """Round trips: the HF export, loaded fresh by transformers, and the GGUF export, loaded in
    llama.cpp, answer the promoted fact and unrelated questions as the app does (f16: the
    engine's own bytes, so the same replies; q8_0: the promoted fact's answer only)."""
    from transformers import AutoModelForCausalLM

    from assistant.engine import LlamaCppEngine
    from assistant.llm import ChatLLM
    from editing.export import export_gguf, export_hf

    questions = [EIFFEL[1], "What is the capital of Japan?", "Who wrote Romeo and Juliet?"]
    llm = assistant.llm

    def replies(model_llm) -> list[str]:
        return [model_llm.chat([{"role": "user", "content": q}], max_new_tokens=24)
                for q in questions]

    app_replies = replies(llm)  # the app's base route as the user gets it
    assert "Rome" in app_replies[0]
    folder = export_hf(llm, assistant.store, assistant.weights, tmp_path / "hf")
    fresh = ChatLLM(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32),
                    llm.tokenizer, llm.config)
    engine, llm.engine = llm.engine, None
    try:
        assert replies(fresh) == replies(llm)  # bit-identical weights: torch's replies
    finally:
        llm.engine = engine
    if engine is None:
        return  # no llama.cpp here: the GGUF round trip needs it
    for qtype in ("f16", "q8_0"):
        path = export_gguf(llm, assistant.store, assistant.weights, tmp_path / qtype, qtype)
        fresh.engine = LlamaCppEngine(path, llm.config.context_tokens)
        got = replies(fresh)
        if qtype == "f16":  # the engine's tensors (plus the manifest): the app's replies
            assert got == app_replies
        assert "Rome" in got[0], (qtype, got)


def test_promote_answer_from_weights_restart_and_rollback(app, tmp_path):
    from assistant.corrections import Correction

    from editing.probes import load_probes, probe_predictions

    assistant = app()
    base_checksum = weights_checksum(assistant.llm.model)
    probes = load_probes(assistant.weights.guard.locality_probes)
    base_probes = probe_predictions(assistant.llm.model, assistant.llm.tokenizer, probes)
    before, _ = _ask(assistant, EIFFEL[1])
    assert "Rome" not in before
    edit, _ = assistant.add_edit(Correction(*EIFFEL), source="test")

    result = assistant.weights.promote([edit.id], "rome")
    assert result.committed, result.message
    assert result.scores["reliability"] >= 0.9 and result.scores["locality"] >= 0.95
    assert assistant.store.get_edit(edit.id).status == "promoted"
    _engine_matches(assistant)  # swapped in with the commit, not after it
    answer, route = _ask(assistant, EIFFEL[1])
    assert route == "base"  # the memory route retired the edit: this is the weights talking
    assert "Rome" in answer
    edited_checksum = weights_checksum(assistant.llm.model)
    assert edited_checksum != base_checksum
    row = assistant.store.weight_edits("committed")[0]
    assert row["method"] == "rome" and row["edit_ids"] == [edit.id]

    _exports_answer_as_the_app(assistant, tmp_path)

    restarted = app()  # a new process would do exactly this: load base, replay
    assert weights_checksum(restarted.llm.model) == edited_checksum
    _engine_matches(restarted)
    assert "Rome" in _ask(restarted, EIFFEL[1])[0]

    # the guard's cumulative check reads the unedited model's answers under the replayed delta
    other, _ = restarted.add_edit(Correction("Great Wall", "The Great Wall of China is in",
                                             "Mexico"), source="test")
    restarted.weights.guard = replace(restarted.weights.guard, min_reliability=0.0,
                                      min_locality=0.0, min_total_locality=1.01)
    refused = restarted.weights.promote([other.id], "mend")  # the quickest edit (CI time)
    assert not refused.committed and "unedited model" in refused.message, refused.message
    assert 0.0 <= refused.scores["total_locality"] <= 1.0
    assert restarted.weights._base_probes[tuple(probes)] == base_probes
    assert weights_checksum(restarted.llm.model) == edited_checksum  # swapped back exactly
    _engine_matches(restarted)  # the refused edit's engine never went live

    message = restarted.weights.rollback(row["id"])
    assert "Rolled back" in message
    assert weights_checksum(restarted.llm.model) == base_checksum  # bit-identical base
    _engine_matches(restarted)
    assert restarted.store.get_edit(edit.id).status == "active"  # back to the memory route
    assert _ask(restarted, EIFFEL[1])[1] == "memory"
    assert weights_checksum(app().llm.model) == base_checksum  # and after another restart


def test_guard_refusal_leaves_everything_as_it_was(app):
    from assistant.corrections import Correction

    assistant = app()
    base_checksum = weights_checksum(assistant.llm.model)
    edit, _ = assistant.add_edit(Correction(*EIFFEL), source="test")
    assistant.weights.guard = replace(assistant.weights.guard, min_reliability=1.01)
    result = assistant.weights.promote([edit.id], "rome")
    assert not result.committed
    assert "reliability" in result.message
    assert weights_checksum(assistant.llm.model) == base_checksum
    assert assistant.store.get_edit(edit.id).status == "active"
    assert assistant.store.weight_edits() == []
    assert any(r["action"] == "promote-refused:rome" for r in assistant.store.audit_log())


def test_delta_from_another_base_model_is_refused_at_start(app):
    """A committed delta stamped with another base model's fingerprint (written here directly:
    how it got there does not matter) is named at start-up and not applied."""
    from assistant.corrections import Correction
    from editing.deltas import Delta

    assistant = app()
    base_checksum = weights_checksum(assistant.llm.model)
    edit, _ = assistant.add_edit(Correction(*EIFFEL), source="test")
    name = "model.layers.4.mlp.down_proj.weight"
    out_features, in_features = assistant.llm.model.get_parameter(name).shape
    delta = Delta("rome", "0" * 16,  # as if made on another model
                  low_rank={name: (torch.randn(out_features, 1), torch.randn(1, in_features))})
    delta.save(assistant.weights.data_dir / "deltas" / "foreign.safetensors")
    assistant.store.add_weight_edit(method="rome", edit_ids=[edit.id], layers=[4],
                                    delta_path="deltas/foreign.safetensors",
                                    base_fingerprint="0" * 16, scores={}, checksum="",
                                    seconds=0.0)
    restarted = app()
    assert any("another base model" in m for m in restarted.weights.messages)
    assert weights_checksum(restarted.llm.model) == base_checksum  # nothing applied
    # the weights do not carry the promoted edit, so the memory route still answers it
    assert restarted.memory.held_ids == {edit.id}
    assert [row["status"] for row in restarted.weights.table()] == ["not_applied_here"]
    answer, route = _ask(restarted, EIFFEL[1])
    assert route == "memory" and "Rome" in answer, (route, answer)


def test_memit_batch_promotion_answers_from_weights_and_rolls_back(app):
    """The shipped MEMIT config (value search with its question and statement wordings) writes
    two corrections in one delta that passes the guard, and rolls back exactly."""
    from assistant.corrections import Correction

    assistant = app()
    base_checksum = weights_checksum(assistant.llm.model)
    eiffel, _ = assistant.add_edit(Correction(*EIFFEL), source="test")
    wall, _ = assistant.add_edit(Correction("Great Wall of China",
                                            "The Great Wall of China is located in", "Mexico"),
                                 source="test")
    result = assistant.weights.promote([eiffel.id, wall.id], "memit")
    assert result.committed, result.message
    assert result.scores["reliability"] >= 0.9 and result.scores["locality"] >= 0.95
    assert {assistant.store.get_edit(i).status for i in (eiffel.id, wall.id)} == {"promoted"}
    answer, route = _ask(assistant, EIFFEL[1])
    assert route == "base" and "Rome" in answer
    row = assistant.store.weight_edits("committed")[0]
    assert row["method"] == "memit" and sorted(row["edit_ids"]) == sorted([eiffel.id, wall.id])

    assert "Rolled back" in assistant.weights.rollback(row["id"])
    assert weights_checksum(assistant.llm.model) == base_checksum
    assert {assistant.store.get_edit(i).status for i in (eiffel.id, wall.id)} == {"active"}


def test_promotion_never_loses_a_chat_correction(app):
    """The failure users met: ask, correct in chat, promote with ft. The shipped guard's chat
    checks refuse this ft delta (it answers "Paris" after the old answer, and changes
    unrelated replies), where the teacher-forced checks alone would let it through. Forced
    through, the memory backstop keeps the correction: tests/test_e2e.py, for every method."""
    from editing.promote import guard_config

    assistant = app()
    history: list[dict] = []

    def say(message: str) -> tuple[str, str]:
        nonlocal history
        for history, chunk in assistant.chat_turn(history, message, session="t",
                                                  max_new_tokens=24):
            pass
        return history[-1]["content"], chunk.trace.route

    assert "Rome" not in say("Where is the Eiffel Tower?")[0]
    assert say("No, it's in Rome.")[1] == "correction"
    edit = assistant.store.routable_edits()[0]

    small = replace(guard_config(), chat_probes=2, neighbour_questions=1, carry_questions=2)
    assistant.weights.guard = small
    refused = assistant.weights.promote([edit.id], "ft")
    assert not refused.committed, refused.message
    assert "chat" in refused.message  # a chat check said no, not only teacher-forced tokens
    assert refused.scores["chat_generalization_in_conversation"] < 1.0
    assert assistant.store.get_edit(edit.id).status == "active"
    answer, route = say("Which city is the Eiffel Tower in?")
    assert route == "memory" and "Rome" in answer, (route, answer)
