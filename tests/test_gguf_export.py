"""`--format gguf`: the live weights as one GGUF file. Read back by two loaders that are not
ours (transformers' GGUF reader, and llama.cpp where its binding is installed), the file gives
the same weights and the same greedy tokens as the app's model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gguf import GGUFReader
from transformers import AutoModelForCausalLM

from editing.deltas import WeightState, own_weights
from editing.export import MANIFEST, ExportError, export_gguf
from editing.gguf_file import MANIFEST_KEY, GGUFExportError, gguf_name, to_gguf_rows
from tests.test_export import PROMPTS, committed, greedy, low_rank_delta
from store.db import Store


def live_with_one_delta(tiny_llm):
    store = Store(":memory:")
    state = WeightState(tiny_llm.model)
    row_id = committed(store, state, low_rank_delta(tiny_llm.model, state.fingerprint))
    return store, state, row_id


def test_rows_permute_as_llama_cpp_expects():
    # per head: HF keeps the rotary halves [a0 a1 | b0 b1]; GGUF interleaves [a0 b0 a1 b1]
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)
    assert to_gguf_rows(rows, heads=2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert gguf_name("model.layers.3.mlp.down_proj.weight") == "blk.3.ffn_down.weight"
    with pytest.raises(GGUFExportError, match="Llama"):
        gguf_name("transformer.h.0.attn.c_attn.weight")


def test_f32_gguf_reloads_with_the_same_weights_and_tokens(tiny_llm, tmp_path):
    store, state, row_id = live_with_one_delta(tiny_llm)
    path = export_gguf(tiny_llm, store, state, tmp_path / "out", "f32")
    assert path.parent == tmp_path / "out" and path.name == "tiny-f32.gguf"
    reader = GGUFReader(path)
    embedded = json.loads(bytes(reader.fields[MANIFEST_KEY].parts[-1]).decode())
    on_disk = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert embedded["weight_edits"][0]["id"] == row_id == on_disk["weight_edits"][0]["id"]
    assert on_disk["format"] == "gguf" and on_disk["gguf"]["type"] == "f32"
    assert reader.fields["tokenizer.chat_template"].contents() == tiny_llm.tokenizer.chat_template

    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                  dtype=torch.float32).eval()
    mine = own_weights(tiny_llm.model)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, mine[name]), name  # the delta included, bit for bit
    for prompt in PROMPTS:
        assert greedy(loaded, tiny_llm.tokenizer, prompt) == \
            greedy(tiny_llm.model, tiny_llm.tokenizer, prompt)


def test_quantised_gguf_is_smaller_and_close(tiny_llm, tmp_path):
    store, state, _ = live_with_one_delta(tiny_llm)
    exact = export_gguf(tiny_llm, store, state, tmp_path / "f32", "f32")
    small = export_gguf(tiny_llm, store, state, tmp_path / "f16", "f16")
    assert small.stat().st_size < 0.6 * exact.stat().st_size
    loaded = AutoModelForCausalLM.from_pretrained(small.parent, gguf_file=small.name,
                                                  dtype=torch.float32).eval()
    mine = own_weights(tiny_llm.model)
    worst = max(float((t - mine[n]).abs().max()) for n, t in loaded.state_dict().items())
    assert 0 < worst < 1e-2


def test_refusals_leave_nothing(tiny_llm, tmp_path):
    store, state, _ = live_with_one_delta(tiny_llm)
    with pytest.raises(ExportError, match="unknown GGUF type"):
        export_gguf(tiny_llm, store, state, tmp_path / "a", "q3_k")
    tiny_llm.model.config.model_type = "gpt2"  # not a Llama: no names to map
    with pytest.raises(ExportError, match="Llama"):
        export_gguf(tiny_llm, store, state, tmp_path / "b", "f32")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.realmodel
def test_smollm2_maps_onto_the_shipped_gguf_exactly(real_llm):
    """The default model's weights, mapped to GGUF, equal the shipped file's tensors
    de-quantised (names, Q/K row order, shapes), and re-quantised to the shipped type give the
    shipped bytes: the mapping is llama.cpp's own."""
    from gguf.quants import dequantize

    from editing.gguf_file import encode, tensors

    shipped = {t.name: t for t in GGUFReader(real_llm.gguf_source).tensors}
    mapped = dict(tensors(own_weights(real_llm.model), real_llm.model.config))
    assert set(mapped) == set(shipped)
    for name, data in mapped.items():
        expected = dequantize(shipped[name].data, shipped[name].tensor_type)
        assert np.array_equal(data, expected.reshape(data.shape)), name
    for name in ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.7.ffn_down.weight",
                 "token_embd.weight"):
        stored, kind = encode(name, mapped[name], "q4_1")
        assert kind == shipped[name].tensor_type
        assert stored.tobytes() == bytes(shipped[name].data), name
