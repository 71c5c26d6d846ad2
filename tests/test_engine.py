"""llama.cpp as the chat engine, on the tiny model: the same greedy tokens as torch from a
GGUF of the same weights, the repeat blocker obeyed, a swap that leaves a reply in flight on
its engine, and torch kept (and the reason said) where llama.cpp cannot serve."""
from __future__ import annotations

import subprocess
import sys

import pytest

from editing.deltas import own_checksum
from editing.serving import ChatEngine
from tests.test_export import PROMPTS

needs_binding = pytest.mark.skipif(
    __import__("assistant.engine", fromlist=["x"]).binding_problem() is not None,
    reason="the llama.cpp binding is not installed (pip install -r requirements-engine.txt)")


def f32_engine(tiny_llm, tmp_path) -> ChatEngine:
    tiny_llm.config = tiny_llm.config.__class__(**{**tiny_llm.config.__dict__,
                                                   "engine_gguf_type": "f32"})
    engine = ChatEngine(tiny_llm, tmp_path, wanted="llama.cpp")
    assert engine.uses_llama_cpp, engine.note
    return engine


@needs_binding
def test_llama_cpp_decodes_the_same_tokens_as_torch(tiny_llm, tmp_path):
    torch_replies = [list(tiny_llm.stream_ids(tiny_llm.encode_chat(
        [{"role": "user", "content": p}])[0], 12)) for p in PROMPTS]
    engine = f32_engine(tiny_llm, tmp_path)
    engine.start()
    assert tiny_llm.engine is not None
    assert tiny_llm.engine.path.name == f"{own_checksum(tiny_llm.model)}-f32.gguf"
    cpp_replies = [list(tiny_llm.stream_ids(tiny_llm.encode_chat(
        [{"role": "user", "content": p}])[0], 12)) for p in PROMPTS]
    assert cpp_replies == torch_replies
    assert tiny_llm.engine_note == "llama.cpp (f32)"


@needs_binding
def test_a_reply_in_flight_finishes_on_its_engine(tiny_llm, tmp_path):
    engine = f32_engine(tiny_llm, tmp_path)
    engine.start()
    ids = tiny_llm.encode_chat([{"role": "user", "content": PROMPTS[0]}])[0]
    expected = list(tiny_llm.stream_ids(ids, 12))
    old = tiny_llm.engine
    stream = tiny_llm.stream_ids(ids, 12)
    first = next(stream)
    tiny_llm.model.model.layers[1].mlp.down_proj.weight.data.mul_(-40.0)  # new weights ...
    engine.refresh()  # ... and their engine, swapped in mid-reply
    assert tiny_llm.engine is not old and engine.last_swap_seconds is not None
    assert [first, *stream] == expected  # the reply started on the old engine ends on it
    after = list(tiny_llm.stream_ids(ids, 12))
    assert after != expected  # the test means something: the new weights answer otherwise
    tiny_llm.engine = None
    assert after == list(tiny_llm.stream_ids(ids, 12))  # the new engine: the new weights


def test_torch_serves_where_llama_cpp_cannot(tiny_llm, tmp_path):
    assert ChatEngine(tiny_llm, tmp_path, wanted="torch").note == "torch (as configured)"
    tiny_llm.model.config.model_type = "gpt2"
    engine = ChatEngine(tiny_llm, tmp_path, wanted="llama.cpp")
    engine.start()
    assert tiny_llm.engine is None and "Llama-architecture" in engine.note
    # without the binding: said once, in words a user can act on
    code = ("import sys; sys.modules['llama_cpp'] = None\n"
            "from assistant.engine import binding_problem\n"
            "print(binding_problem())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "pip install -r requirements-engine.txt" in out and "transformers engine" in out


class _BanFirst:
    """A blocker that bans whatever token llama.cpp would pick first (for the test below)."""

    window = 4

    def __init__(self, token: int, prompt_length: int) -> None:
        self.token, self.prompt_length, self.calls = token, prompt_length, 0

    def banned(self, ids: list[int]) -> list[int]:
        self.calls += 1
        return [self.token] if self.calls == 1 else []


@needs_binding
def test_llama_cpp_obeys_bans_and_repeats_itself_exactly(tiny_llm, tmp_path):
    engine = f32_engine(tiny_llm, tmp_path)
    engine.start()
    cpp = tiny_llm.engine
    asks = [tiny_llm.encode_chat([{"role": "user", "content": p}])[0] for p in PROMPTS]
    first = [list(cpp.stream(ids, 8)) for ids in asks]
    # the same question after other ones: the same tokens (no cache carried between replies)
    assert [list(cpp.stream(ids, 8)) for ids in reversed(asks)] == first[::-1]
    ban = _BanFirst(first[0][0], len(asks[0]))
    banned_reply = list(cpp.stream(asks[0], 8, ban))
    assert ban.calls >= 1 and banned_reply[0] != first[0][0]
    # after the replaced token, decoding goes on greedily from it
    assert list(cpp.stream(asks[0] + banned_reply[:1], 7)) == banned_reply[1:]
