"""The LoRA adapter: off means exactly the base model, on changes it, weights round-trip."""
import pytest
import torch

from assistant.adapter import Adapter
from assistant.counterfactual import text_prompt
from errors import ConfigError
from store.db import Edit

PATTERN = r"model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"


def _logits(llm, text="Where is the Louvre?"):
    ids = llm.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return llm.model(input_ids=ids).logits


def test_off_is_base_on_differs_and_always_switches_back(tiny_llm):
    before = _logits(tiny_llm)
    adapter = Adapter(tiny_llm.model, PATTERN, rank=4, alpha=8.0)
    assert len(adapter.layers) == 4  # 2 layers x (q, v)
    assert torch.equal(_logits(tiny_llm), before)
    with adapter.active():
        assert torch.equal(_logits(tiny_llm), before)  # B starts at zero: a no-op
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(0.5)
    with adapter.active():
        assert not torch.allclose(_logits(tiny_llm), before)
    with pytest.raises(RuntimeError):
        with adapter.active():
            raise RuntimeError("boom")
    assert torch.equal(_logits(tiny_llm), before)  # off again after the error


def test_save_load_round_trip(tiny_llm, tmp_path):
    adapter = Adapter(tiny_llm.model, PATTERN, rank=4, alpha=8.0)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_()
    adapter.save(tmp_path / "a.safetensors")
    with adapter.active():
        expected = _logits(tiny_llm)
    from tests.conftest import make_tiny_model

    other = make_tiny_model(len(tiny_llm.tokenizer))
    tiny_llm.model = other
    loaded = Adapter(other, PATTERN, rank=4, alpha=8.0)
    loaded.load(tmp_path / "a.safetensors")
    with loaded.active():
        assert torch.allclose(_logits(tiny_llm), expected)
    wrong_rank = Adapter(make_tiny_model(len(tiny_llm.tokenizer)), PATTERN, rank=2, alpha=4.0)
    with pytest.raises(ConfigError, match="shape"):
        wrong_rank.load(tmp_path / "a.safetensors")


def test_remove_restores_plain_layers(tiny_llm):
    originals = {n: m for n, m in tiny_llm.model.named_modules()
                 if isinstance(m, torch.nn.Linear)}
    adapter = Adapter(tiny_llm.model, PATTERN, rank=4, alpha=8.0)
    adapter.remove()
    assert {n: m for n, m in tiny_llm.model.named_modules()
            if isinstance(m, torch.nn.Linear)} == originals


def test_pattern_must_match(tiny_llm):
    with pytest.raises(ConfigError, match="matches no Linear"):
        Adapter(tiny_llm.model, r"transformer\.h\.\d+\.attn", rank=4, alpha=8.0)


def test_text_prompt_layout():
    louvre = Edit(id=1, subject="Louvre", prompt="The Louvre is in", target_new="Madrid")
    tower = Edit(id=2, subject="Eiffel Tower", prompt="Where is the Eiffel Tower?",
                 target_new="Rome")
    assert text_prompt([louvre, tower], "Which city is the Louvre in?") == (
        "New Fact: The Louvre is in Madrid.\n"
        "New Fact: Q: Where is the Eiffel Tower? A: Rome.\n"
        "Prompt: Q: Which city is the Louvre in? A:")
    assert text_prompt([louvre], "The Louvre is located in") == (
        "New Fact: The Louvre is in Madrid.\nPrompt: The Louvre is located in")
