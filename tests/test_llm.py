"""ChatLLM on a tiny random model: streaming, stop tokens, limits, context truncation,
and loading a user's Hugging Face folder with --model."""
from dataclasses import replace

import pytest

from assistant.llm import ChatLLM, Generation, fix_tokenizer
from errors import ModelNotFoundError
from tests.conftest import make_tiny_tokenizer


def test_stream_grows_and_respects_limit(tiny_llm):
    stats = Generation()
    chunks = list(tiny_llm.stream_chat([{"role": "user", "content": "Where is the Louvre?"}],
                                       max_new_tokens=7, stats=stats))
    assert 0 < stats.new_tokens <= 7
    assert len(chunks) == stats.new_tokens
    assert all(b.startswith(a) or len(b) >= len(a) for a, b in zip(chunks, chunks[1:]))
    assert stats.prompt_tokens > 5


def test_greedy_is_deterministic(tiny_llm):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert tiny_llm.chat(messages, max_new_tokens=10) == tiny_llm.chat(messages, max_new_tokens=10)


def test_stops_at_end_of_turn(tiny_llm):
    ids, _ = tiny_llm.encode_chat([{"role": "user", "content": "Where is the Louvre?"}])
    first = next(tiny_llm.stream_ids(ids, 5))
    tiny_llm.stop_ids.add(first)  # make the model's first greedy token an end-of-turn
    stats = Generation()
    assert list(tiny_llm.stream_ids(ids, 5, stats)) == []
    assert stats.new_tokens == 0


def test_prefill_starts_the_reply(tiny_llm):
    text = tiny_llm.chat([{"role": "user", "content": "Where is the Louvre?"}],
                         prefill="The Louvre is in Madrid.", max_new_tokens=3)
    assert text.startswith("The Louvre is in Madrid.")


def test_long_history_drops_oldest_turns(tiny_llm):
    tiny_llm.config = replace(tiny_llm.config, context_tokens=160, max_new_tokens=16)
    history = []
    for i in range(20):
        history += [{"role": "user", "content": f"Where is the Louvre? {i}"},
                    {"role": "assistant", "content": "The Louvre is in Paris."}]
    ids, truncated = tiny_llm.encode_chat(history + [{"role": "user", "content": "Rome?"}])
    assert truncated
    assert len(ids) <= 160 - 16
    assert "Rome?" in tiny_llm.tokenizer.decode(ids)


def test_huge_message_cut_to_context(tiny_llm):
    tiny_llm.config = replace(tiny_llm.config, context_tokens=256, max_new_tokens=16)
    huge = "Where is the Eiffel Tower? " * 800  # ~20,000 characters
    stats = Generation()
    reply = tiny_llm.chat([{"role": "user", "content": huge}], max_new_tokens=4, stats=stats)
    assert stats.truncated
    assert stats.prompt_tokens <= 256 - 4  # room left for the 4 new tokens
    assert isinstance(reply, str)


def test_fix_tokenizer_removes_prepended_bos():
    tok = make_tiny_tokenizer()
    from tokenizers import processors

    bos = tok.convert_tokens_to_ids("<|im_start|>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)])
    assert tok("Rome").input_ids[0] == bos  # the pitfall: every input gets <|im_start|>
    fix_tokenizer(tok, ("<|im_end|>",))
    assert bos not in tok("Rome").input_ids
    assert tok.eos_token == "<|im_end|>"


def test_load_user_model_folder(tiny_model_dir, tmp_path):
    llm = ChatLLM.load(tiny_model_dir, tmp_path)
    assert llm.name == "tiny-model"
    assert llm.config.system_prompt == "You are a helpful assistant."  # the generic config
    assert isinstance(llm.chat([{"role": "user", "content": "Rome?"}], max_new_tokens=3), str)


def test_missing_model_path_named(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        ChatLLM.load(missing, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        ChatLLM.load(tmp_path / "empty", tmp_path)


@pytest.mark.parametrize("tokens,looping", [
    ([5, 6, 5, 6, 5, 6, 5, 6], True),  # "Rome. Rome. Rome. Rome."
    ([1, 2, 3, 9, 9, 9, 9, 9, 9, 9, 9], True),
    ([1, 0, 0, 0], False),  # digits of a number
    ([4, 5, 6, 4, 5, 6, 4, 5, 6], True),
    ([4, 5, 6, 4, 5, 6, 7], False),
    ([], False),
])
def test_loop_detection(tokens, looping):
    from assistant.llm import is_looping

    assert is_looping(tokens) is looping
