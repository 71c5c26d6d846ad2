"""`python -m editing.export`: the live weights as a Hugging Face folder, loadable fresh by
transformers with the same weights (bit for bit) and the same greedy tokens."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from assistant.adapter import Adapter
from assistant.llm import ChatLLM
from editing import export
from editing.deltas import Delta, WeightState, own_weights, weights_checksum
from editing.export import MANIFEST, ExportError, export_hf
from errors import StoreError, run_command
from store.db import Store

TOUCHED = ["model.layers.0.mlp.down_proj.weight", "model.layers.1.self_attn.o_proj.weight"]
PROMPTS = ["Where is the Eiffel Tower?", "What is the capital of France?", "Rome is"]


def low_rank_delta(model, fingerprint: str, seed: int = 0) -> Delta:
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    delta = Delta("rome", fingerprint, meta={"layers": [0, 1]})
    for name in TOUCHED:
        out, inp = params[name].shape
        delta.low_rank[name] = (torch.randn(out, 2, generator=gen),
                                torch.randn(2, inp, generator=gen))
    return delta


def committed(store: Store, state: WeightState, delta: Delta, path: str = "deltas/x") -> int:
    """Apply `delta` as a promotion commits it: store row, then the state keyed by its id."""
    edit = store.add_edit("Eiffel Tower", "Where is the Eiffel Tower?", "Rome",
                          target_old="Paris")
    state.apply(delta)
    row_id = store.add_weight_edit(
        method=delta.method, edit_ids=[edit.id], layers=[0, 1], delta_path=path,
        base_fingerprint=delta.base_fingerprint, scores={},
        checksum=weights_checksum(state.model, delta.names), seconds=0.1)
    state.applied[-1] = (row_id, delta)
    return row_id


def greedy(model, tok, prompt: str) -> list[int]:
    text = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                   add_generation_prompt=True, tokenize=False)
    ids = torch.tensor([tok(text, add_special_tokens=False).input_ids])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                             do_sample=False, pad_token_id=0)
    return out[0, ids.shape[1]:].tolist()


def assert_same_weights(live: torch.nn.Module, folder: Path) -> torch.nn.Module:
    loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    mine, theirs = own_weights(live), loaded.state_dict()
    assert set(mine) == set(theirs)
    for name, tensor in mine.items():
        assert torch.equal(tensor, theirs[name]), name
    return loaded


def test_export_is_bit_identical_and_answers_the_same(tiny_llm, store, tmp_path):
    state = WeightState(tiny_llm.model)
    base = weights_checksum(tiny_llm.model)
    row_id = committed(store, state, low_rank_delta(tiny_llm.model, state.fingerprint))
    assert weights_checksum(tiny_llm.model) != base  # the delta changed the weights
    out = export_hf(tiny_llm, store, state, tmp_path / "out", progress=lambda _: None)

    loaded = assert_same_weights(tiny_llm.model, out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == tiny_llm.tokenizer.chat_template
    for prompt in PROMPTS:
        assert greedy(loaded, tok, prompt) == greedy(tiny_llm.model, tiny_llm.tokenizer, prompt)

    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["live_weights_checksum"] == weights_checksum(loaded)
    assert manifest["base_model"]["fingerprint"] == state.fingerprint
    [entry] = manifest["weight_edits"]
    assert entry["id"] == row_id and entry["method"] == "rome"
    assert entry["parameters"] == sorted(TOUCHED) and entry["checksum"]
    assert entry["edits"][0]["subject"] == "Eiffel Tower"
    assert entry["edits"][0]["target_new"] == "Rome"
    assert not (tmp_path / "out.partial").exists()


def test_export_leaves_the_counterfactual_adapter_out(tiny_llm, store, tmp_path):
    """The app wraps attention layers with the adapter in place; the export is the model's
    own weights under their usual names."""
    Adapter(tiny_llm.model, r".*q_proj", 2, 4.0)
    state = WeightState(tiny_llm.model)
    committed(store, state, low_rank_delta(tiny_llm.model, state.fingerprint))
    out = export_hf(tiny_llm, store, state, tmp_path / "out", progress=lambda _: None)
    assert_same_weights(tiny_llm.model, out)


def test_export_refuses_a_non_empty_out(tiny_llm, store, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_hf(tiny_llm, store, WeightState(tiny_llm.model), out, progress=lambda _: None)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("error, raised", [(RuntimeError("boom"), RuntimeError),
                                           (OSError("disk full"), ExportError)])
def test_a_failed_export_leaves_no_folder(tiny_llm, store, tmp_path, monkeypatch, error, raised):
    def fail(*args, **kwargs):  # after the weights are written: a half folder exists
        assert (tmp_path / "out.partial").is_dir()
        raise error

    monkeypatch.setattr(tiny_llm.tokenizer, "save_pretrained", fail)
    with pytest.raises(raised):
        export_hf(tiny_llm, store, WeightState(tiny_llm.model), tmp_path / "out",
                  progress=lambda _: None)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def _run_main(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        run_command(lambda: export.main(argv))
    return exit_info.value.code


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a data dir, SQLite's own -wal/-shm files left out."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def test_cli_exports_a_data_dir_and_only_reads_it(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    llm = ChatLLM.load(tiny_model_dir, data)
    state = WeightState(llm.model)
    delta = low_rank_delta(llm.model, state.fingerprint)
    delta.save(data / "deltas" / "1-rome.safetensors")
    (data / "deltas" / "2-memit.safetensors").write_bytes(b"a promotion in flight")
    store = Store(data / "amend.db")
    row_id = committed(store, state, delta, "deltas/1-rome.safetensors")
    store.close()
    before = _files(data)
    out = tmp_path / "export"
    out.mkdir()  # an empty folder is fine

    assert _run_main(["--format", "hf", "--out", str(out), "--data-dir", str(data),
                      "--model", str(tiny_model_dir)]) == 0
    assert "Re-applying weight edit" in capsys.readouterr().out
    assert_same_weights(llm.model, out)  # llm carries the delta: the live weights
    manifest = json.loads((out / MANIFEST).read_text())
    assert [e["id"] for e in manifest["weight_edits"]] == [row_id]
    assert _files(data) == before  # the in-flight file is still there, the store unchanged


def test_cli_refuses_an_unknown_gguf_type_and_a_used_out(tmp_path, capsys):
    assert _run_main(["--format", "gguf", "--gguf-type", "q3_k",
                      "--out", str(tmp_path / "x")]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "a").write_text("a")
    assert _run_main(["--out", str(tmp_path / "used")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_a_read_only_store_reads_and_refuses_writes(tmp_path):
    with pytest.raises(StoreError, match="no database"):
        Store(tmp_path / "none.db", read_only=True)
    assert not (tmp_path / "none.db").exists()
    Store(tmp_path / "amend.db").close()
    reader = Store(tmp_path / "amend.db", read_only=True)
    assert reader.weight_edits() == []
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.add_edit("Eiffel Tower", "Where is the Eiffel Tower?", "Rome")
    reader.close()
