"""Weight editing (deltas, locating, configs, key statistics, ROME, MEMIT, FT, Editor) on tiny
random Llama and GPT-2 models (no real model)."""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from config import CONFIG_DIR, chat_config_for, load_config
from editing import covariance
from editing.covariance import second_moments
from editing.deltas import (
    Delta,
    DeltaError,
    WeightState,
    model_fingerprint,
    weights_checksum,
)
from editing.ft import apply_ft
from editing.registry import METHODS, load_method_config
from editing.locate import (
    as_param_layout,
    get_module,
    hooked,
    is_transposed,
    subject_last_tokens,
    weight_out_in,
)
from editing.memit.memit import apply_memit
from editing.promote import below
from editing.methods import Editor, load_method
from editing.rome import attention, compute
from editing.rome.rome import apply_rome
from editing.rome.compute import EditRequest, compute_key, compute_keys, context_prefixes
from editing.preserve import batch_read, committed_keys, constrained_read_out, solve_c
from editing.rome.rome import rank_one
from errors import ConfigError, InvalidEditError
from tests.conftest import make_tiny_model, make_tiny_tokenizer

torch.set_num_threads(1)

LLAMA_DOWN = "model.layers.{}.mlp.down_proj"
GPT2_PROJ = "transformer.h.{}.mlp.c_proj"
# The subject ends each prompt, so the edited MLP output at the subject's last token feeds the
# prediction of the target directly: in a 2-layer random model, attention from later tokens back
# to the subject carries almost nothing, and an edit of the last layer could not reach them.
EIFFEL = EditRequest("Eiffel Tower", "Where is the Eiffel Tower", "Rome")
LOUVRE = EditRequest("Louvre", "Which city is the Louvre", "Madrid")


def QUIET(_message: str) -> None:
    pass


def sharpen(model: torch.nn.Module, factor: float = 10.0) -> torch.nn.Module:
    """At init (std 0.02) the tied embeddings keep every logit within ~0.6 of uniform, so no
    edit could move a target's probability much; scaled weights give a model with opinions."""
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.mul_(factor)
    return model


@pytest.fixture(scope="module")
def tok():
    return make_tiny_tokenizer()


@pytest.fixture(scope="module")
def stats_root(tmp_path_factory) -> Path:
    """Key statistics shared by the tests of this module (keyed by model fingerprint)."""
    return tmp_path_factory.mktemp("stats")


def llama(tok, seed: int = 0) -> torch.nn.Module:
    return sharpen(make_tiny_model(len(tok), seed=seed))


def gpt2(tok) -> torch.nn.Module:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=len(tok), n_positions=256)
    return sharpen(GPT2LMHeadModel(config).eval())


def write_config(tmp_path: Path, method: str, family: str, **overrides) -> Path:
    """A per-test hyperparameter file: the shipped one, shrunk to the tiny models."""
    raw = json.loads((CONFIG_DIR / method / f"{family}.json").read_text())
    shared = {"covariance_tokens": 1500, "steps": 40, "context_count": 2,
              "context_tokens": 4, "weight_decay": 0.05}
    # covariance_weight: the shipped 15000 suits C from 40k tokens of a 135M model; on the
    # tiny one it leaves the edit at ~+0.05 nats, 1.0 lets it through (+4 nats)
    small = {"rome": {**shared, "layer": 1},
             "memit": {**shared, "layers": [0, 1], "covariance_weight": 1.0},
             "ft": {"layer": 1, "steps": 40, "learning_rate": 0.01,
                    "norm_constraint": 0.05}}[method]
    raw.update(small, **overrides)
    path = tmp_path / f"{method}-{family}-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(raw))
    return path


def target_logprob(model, tok, request: EditRequest) -> float:
    """Mean log-probability of the target's tokens after the prompt."""
    prompt = tok(request.prompt, add_special_tokens=False).input_ids
    target = tok(" " + request.target_new, add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + target]), use_cache=False).logits[0]
    log_probs = torch.log_softmax(logits.float(), -1)
    return float(torch.stack([log_probs[len(prompt) - 1 + i, t]
                              for i, t in enumerate(target)]).mean())


def random_delta(model, fingerprint: str, names: list[str], seed: int, dense: bool = False,
                 rank: int = 2) -> Delta:
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    delta = Delta("test", fingerprint, meta={"seed": seed})
    for name in names:
        out, inp = params[name].shape
        if dense:
            delta.dense[name] = torch.randn(out, inp, generator=gen) * 0.1
        else:
            delta.low_rank[name] = (torch.randn(out, rank, generator=gen) * 0.1,
                                    torch.randn(rank, inp, generator=gen) * 0.1)
    return delta


# -- deltas ---------------------------------------------------------------------------------
def test_delta_save_load_round_trip(tmp_path, tok):
    model = make_tiny_model(len(tok))
    fp = model_fingerprint(model)
    delta = random_delta(model, fp, ["model.layers.0.mlp.down_proj.weight"], seed=1)
    delta.dense["model.layers.1.mlp.down_proj.weight"] = torch.randn(32, 64)
    delta.meta = {"layers": [0, 1], "requests": [{"steps": 3, "nll": 0.5}]}
    delta.keys["model.layers.0.mlp.down_proj.weight"] = torch.randn(64, 2)  # not an update
    path = delta.save(tmp_path / "sub" / "edit.delta")
    assert path.exists()
    assert not (tmp_path / "sub" / "edit.delta.partial").exists()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["edit.delta"]
    loaded = Delta.load(path)
    assert (loaded.method, loaded.base_fingerprint, loaded.meta) == ("test", fp, delta.meta)
    assert loaded.names == delta.names
    for name, (left, right) in delta.low_rank.items():
        assert torch.equal(loaded.low_rank[name][0], left)
        assert torch.equal(loaded.low_rank[name][1], right)
    for name, update in delta.dense.items():
        assert torch.equal(loaded.dense[name], update)
    assert torch.equal(loaded.keys["model.layers.0.mlp.down_proj.weight"],
                       delta.keys["model.layers.0.mlp.down_proj.weight"])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_delta_load_rejects_a_damaged_file(tmp_path, tok, damage):
    model = make_tiny_model(len(tok))
    path = random_delta(model, model_fingerprint(model), ["model.layers.0.mlp.down_proj.weight"],
                        seed=1).save(tmp_path / "edit.delta")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a delta" * 20,
                      "empty": b""}[damage])
    with pytest.raises(DeltaError):
        Delta.load(path)
    with pytest.raises(DeltaError):
        Delta.load(tmp_path / "missing.delta")


def test_delta_load_rejects_a_lone_factor(tmp_path):
    from safetensors.torch import save_file

    save_file({"w::left": torch.ones(2, 1)}, str(tmp_path / "x.delta"),
              metadata={"method": "rome", "base_fingerprint": "f", "meta": "{}"})
    with pytest.raises(DeltaError, match="missing"):
        Delta.load(tmp_path / "x.delta")


def test_low_rank_update_is_left_times_right(tok):
    model = make_tiny_model(len(tok))
    name = "model.layers.0.mlp.down_proj.weight"
    delta = random_delta(model, model_fingerprint(model), [name], seed=3, rank=3)
    left, right = delta.low_rank[name]
    assert delta.update(name).shape == (32, 64)
    assert torch.allclose(delta.update(name), left @ right)
    base = dict(model.named_parameters())[name].detach().clone()
    WeightState(model).apply(delta)
    assert torch.equal(dict(model.named_parameters())[name], base + left @ right)
    assert delta.norm() == pytest.approx(float((left @ right).norm()), rel=1e-5)


def test_apply_then_revert_is_bit_identical(tok):
    model = make_tiny_model(len(tok))
    before = weights_checksum(model)
    base = copy.deepcopy(model.state_dict())
    state = WeightState(model)
    names = ["model.layers.0.mlp.down_proj.weight", "model.layers.1.self_attn.o_proj.weight"]
    delta = random_delta(model, state.fingerprint, names, seed=4)
    state.apply(delta, key="a")
    assert weights_checksum(model) != before
    assert state.revert() is delta
    assert weights_checksum(model) == before
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, base[name]), name
    with pytest.raises(DeltaError):
        state.revert()


def test_revert_middle_delta_equals_fresh_replay(tok):
    names = ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight",
             "model.layers.0.self_attn.q_proj.weight"]
    model = make_tiny_model(len(tok))
    state = WeightState(model)
    fp = state.fingerprint
    d1 = random_delta(model, fp, names[:2], seed=1)
    d2 = random_delta(model, fp, names, seed=2, dense=True)
    d3 = random_delta(model, fp, names[1:], seed=3)
    for key, delta in (("1", d1), ("2", d2), ("3", d3)):
        state.apply(delta, key=key)
    assert state.revert("2") is d2
    assert [k for k, _ in state.applied] == ["1", "3"]

    fresh = make_tiny_model(len(tok))
    replay = WeightState(fresh)
    replay.apply(d1, "1")
    replay.apply(d3, "3")
    assert weights_checksum(model) == weights_checksum(fresh)
    for (name, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters()):
        assert torch.equal(a, b), name
    with pytest.raises(DeltaError, match="not applied"):
        state.revert("2")
    state.revert_all()
    assert weights_checksum(model) == weights_checksum(make_tiny_model(len(tok)))


def test_fingerprint_ignores_the_counterfactual_adapter(tok):
    """Wrapping layers with the adapter, or retraining it, keeps the base model's identity."""
    from assistant.adapter import Adapter

    model = make_tiny_model(len(tok))
    plain = model_fingerprint(model)
    adapter = Adapter(model, r".*self_attn\.(q|v)_proj", rank=2, alpha=4.0)
    assert model_fingerprint(model) == plain
    with torch.no_grad():
        for param in adapter.parameters():
            param.add_(1.0)
    assert model_fingerprint(model) == plain
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.base.weight.add_(1.0)
    assert model_fingerprint(model) != plain


def test_delta_from_another_base_model_is_refused(tok):
    model = make_tiny_model(len(tok))
    other = make_tiny_model(len(tok), seed=1)
    assert model_fingerprint(model) != model_fingerprint(other)
    assert model_fingerprint(model) == model_fingerprint(make_tiny_model(len(tok)))
    before = weights_checksum(model)
    state = WeightState(model)
    delta = random_delta(other, model_fingerprint(other), ["model.layers.0.mlp.down_proj.weight"],
                         seed=1)
    with pytest.raises(DeltaError, match="another base model"):
        state.apply(delta)
    bad_name = random_delta(model, state.fingerprint, [], seed=1)
    bad_name.dense["model.nope.weight"] = torch.zeros(2, 2)
    with pytest.raises(DeltaError, match="no parameter"):
        state.apply(bad_name)
    bad_shape = Delta("x", state.fingerprint, dense={"model.layers.0.mlp.down_proj.weight":
                                                     torch.zeros(64, 32)})
    with pytest.raises(DeltaError, match="shape"):
        state.apply(bad_shape)
    assert weights_checksum(model) == before and state.applied == []


# -- locate ---------------------------------------------------------------------------------
def _token_text(tok, text: str, index: int) -> str:
    ids = tok(text, add_special_tokens=False).input_ids
    return tok.decode([ids[index]])


def test_subject_last_tokens(tok):
    text = "The Eiffel Tower is in Paris."
    [index] = subject_last_tokens(tok, text, "The Eiffel Tower")
    assert _token_text(tok, text, index) == " Tower"
    assert subject_last_tokens(tok, text, "Eiffel Tower") == [index]
    # a subject ending inside a token points at that token
    assert subject_last_tokens(tok, text, "Eiffel Tow") == [index]
    # case-insensitive fallback
    assert subject_last_tokens(tok, "the eiffel tower is in", "The Eiffel Tower") == [
        len(tok("the eiffel tower", add_special_tokens=False).input_ids) - 1]
    assert subject_last_tokens(tok, text, "the EIFFEL tower") == [index]
    twice = "The Louvre is in Paris. Which city is the Louvre in?"
    first, second = subject_last_tokens(tok, twice, "Louvre")
    assert first < second
    assert _token_text(tok, twice, first) == " Louvre" == _token_text(tok, twice, second)
    with pytest.raises(InvalidEditError):
        subject_last_tokens(tok, text, "Madrid")


def test_conv1d_layout(tok):
    model = gpt2(tok)
    conv = get_module(model, GPT2_PROJ.format(0))
    linear = get_module(llama(tok), LLAMA_DOWN.format(0))
    assert is_transposed(conv) and not is_transposed(linear)
    assert tuple(conv.weight.shape) == (128, 32)  # (in, out)
    w = weight_out_in(conv)
    assert tuple(w.shape) == (32, 128)
    assert w.data_ptr() == conv.weight.data_ptr()  # a view
    x = torch.randn(128)
    with torch.no_grad():
        assert torch.allclose(w @ x, conv(x[None])[0] - conv.bias, atol=1e-5)
    assert weight_out_in(linear) is linear.weight
    left, right = torch.randn(32, 2), torch.randn(2, 128)
    a, b = as_param_layout(conv, left, right)
    assert tuple((a @ b).shape) == tuple(conv.weight.shape)
    assert torch.allclose(a @ b, (left @ right).T, atol=1e-6)
    l2, r2 = torch.randn(32, 2), torch.randn(2, 64)
    assert as_param_layout(linear, l2, r2) == (l2, r2)


# -- hparams --------------------------------------------------------------------------------
def test_config_layer_out_of_range(tmp_path, tok):
    model = make_tiny_model(len(tok))
    path = write_config(tmp_path, "rome", "smollm2", layer=2)
    with pytest.raises(ConfigError, match="layer 2") as info:
        load_method_config("rome", "x", model, path)
    assert str(path) in str(info.value)
    path = write_config(tmp_path, "memit", "smollm2", layers=[0, 5])
    with pytest.raises(ConfigError, match="layer 5") as info:
        load_method_config("memit", "x", model, path)
    assert str(path) in str(info.value)
    path = write_config(tmp_path, "ft", "smollm2", layer=-1)
    with pytest.raises(ConfigError, match=str(path)):
        load_method_config("ft", "x", model, path)


def test_config_bad_module_and_fields(tmp_path, tok):
    model = make_tiny_model(len(tok))
    path = write_config(tmp_path, "rome", "smollm2", module_template="model.layers.{}.mlp.nope")
    with pytest.raises(ConfigError, match="module template") as info:
        load_method_config("rome", "x", model, path)
    assert str(path) in str(info.value)
    # the llama template on GPT-2
    with pytest.raises(ConfigError, match="no module"):
        load_method_config("rome", "x", gpt2(tok), write_config(tmp_path, "rome", "llama"))
    path = write_config(tmp_path, "memit", "smollm2", mom2_samples=5)
    with pytest.raises(ConfigError, match="mom2_samples") as info:
        load_method_config("memit", "x", model, path)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="'steps'"):
        load_method_config("ft", "x", model, write_config(tmp_path, "ft", "smollm2", steps="9"))
    raw = json.loads(write_config(tmp_path, "rome", "smollm2").read_text())
    del raw["seed"]
    (tmp_path / "missing.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="seed"):
        load_method_config("rome", "x", model, tmp_path / "missing.json")
    path = write_config(tmp_path, "rome", "smollm2", optimizer="sgd")
    with pytest.raises(ConfigError, match="optimizer") as info:
        load_method_config("rome", "x", model, path)
    assert str(path) in str(info.value)
    cfg = load_method_config("memit", "x", model, write_config(tmp_path, "memit", "smollm2"))
    assert cfg.layers == (0, 1) and cfg.layer == 1
    gpt2_cfg = load_method_config("rome", "x", gpt2(tok),
                                  write_config(tmp_path, "rome", "gpt2", layer=0))
    assert gpt2_cfg.module_template == GPT2_PROJ


@pytest.mark.parametrize("method", ["rome", "memit", "ft"])
@pytest.mark.parametrize("family", ["smollm2", "llama", "gpt2"])
def test_shipped_configs_load(method, family):
    cfg = load_config(METHODS[method].config_type, CONFIG_DIR / method / f"{family}.json")
    assert isinstance(cfg, METHODS[method].config_type)
    assert "{}" in cfg.module_template
    assert (".c_proj" in cfg.module_template) == (family == "gpt2")


# -- covariance -----------------------------------------------------------------------------
def test_second_moments_cached(tmp_path, tok, monkeypatch):
    torch.manual_seed(0)
    model = make_tiny_model(len(tok))
    fp = model_fingerprint(model)
    names = [LLAMA_DOWN.format(0), LLAMA_DOWN.format(1)]
    moments = second_moments(model, tok, names, 1500, 0, tmp_path, fp, QUIET)
    for name in names:
        c = moments[name]
        assert c.shape == (64, 64) and c.dtype == torch.float32
        assert torch.allclose(c, c.T, atol=1e-7)
        eig = torch.linalg.eigvalsh(c.double())
        assert eig.min() >= -1e-6 * eig.max() and eig.max() > 0
    folder = tmp_path / "stats" / fp
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted(["corpus-1500-0.safetensors"] +
                           [f"{n}.mom2-1500-0.safetensors" for n in names])

    ids, mask = covariance.corpus(model, tok, 1500, 0, tmp_path, fp)
    # loaded tensors may be memory-mapped from the file, which this test overwrites in place
    ids, mask = ids.clone(), mask.clone()
    assert int(mask.sum()) >= 1500 and ids.shape == mask.shape

    def fail(*_args, **_kwargs):
        raise AssertionError("recomputed instead of loading the cache")

    monkeypatch.setattr(covariance, "key_second_moments", fail)
    monkeypatch.setattr(covariance, "sample_corpus", fail)
    again = second_moments(model, tok, names, 1500, 0, tmp_path, fp, QUIET)
    for name in names:
        assert torch.equal(again[name], moments[name])
    monkeypatch.undo()

    # a corrupted cache file is recomputed (from the cached corpus: same result)
    damaged = folder / f"{names[1]}.mom2-1500-0.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:40])
    monkeypatch.setattr(covariance, "sample_corpus", fail)
    redone = second_moments(model, tok, names, 1500, 0, tmp_path, fp, QUIET)
    assert torch.allclose(redone[names[1]], moments[names[1]], atol=1e-7)
    assert torch.equal(redone[names[0]], moments[names[0]])
    assert not list(folder.glob("*.partial"))
    # and so is a corrupted corpus
    monkeypatch.undo()
    (folder / "corpus-1500-0.safetensors").write_bytes(b"garbage")
    ids2, mask2 = covariance.corpus(model, tok, 1500, 0, tmp_path, fp)
    assert torch.equal(ids2, ids) and torch.equal(mask2, mask)


def test_fact_sentences_join_the_plain_moments(tmp_path, tok):
    """C with fact sentences = the token-weighted mix of the cached plain C and the sentences'
    own second moment; cached under its own name, and the plain C is not recomputed."""
    from editing.key_text import KEY_SENTENCES

    torch.manual_seed(0)
    model = make_tiny_model(len(tok))
    fp = model_fingerprint(model)
    name = LLAMA_DOWN.format(0)
    plain = second_moments(model, tok, [name], 1500, 0, tmp_path, fp, QUIET)[name]
    mixed = second_moments(model, tok, [name], 1500, 0, tmp_path, fp, QUIET, fact_tokens=300)
    fact_ids, fact_mask = covariance.fact_sentences(tok, 300)
    lines = KEY_SENTENCES.read_text(encoding="utf-8").splitlines()
    first = tok(lines[0], add_special_tokens=False).input_ids
    assert fact_ids[0, :len(first)].tolist() == first and int(fact_mask[0].sum()) == len(first)
    assert 300 <= int(fact_mask.sum()) < 300 + 80
    facts = covariance.key_second_moments(model, [name], fact_ids, fact_mask)[name]
    _, mask = covariance.corpus(model, tok, 1500, 0, tmp_path, fp)
    n, m = int(mask.sum()), int(fact_mask.sum())
    assert torch.allclose(mixed[name], (plain * n + facts * m) / (n + m), atol=1e-6)
    assert (mixed[name] - plain).norm() > 1e-3 * plain.norm()
    cached = sorted(p.name for p in (tmp_path / "stats" / fp).glob("*.mom2-*"))
    assert len(cached) == 2 and any("-facts300-" in c for c in cached)


# -- ROME -----------------------------------------------------------------------------------
def test_rank_one_maps_key_to_value():
    gen = torch.Generator().manual_seed(0)
    weight, key, value = (torch.randn(8, 12, generator=gen), torch.randn(12, generator=gen),
                          torch.randn(8, generator=gen))
    a = torch.randn(40, 12, generator=gen)
    mom2 = a.T @ a / 40
    c_inv_key = solve_c(mom2, key[:, None], 1e-4)[:, 0]
    assert c_inv_key.dtype == torch.float64
    ridged = mom2.double() + 1e-4 * mom2.diagonal().mean() * torch.eye(12, dtype=torch.float64)
    assert torch.allclose(ridged @ c_inv_key, key.double(), atol=1e-8)
    read_out = constrained_read_out(mom2, key, torch.zeros(12, 0), 1e-4)
    assert torch.allclose(read_out, c_inv_key / (c_inv_key @ key.double()), atol=1e-10)
    left, right = rank_one(weight, key, value, read_out)
    assert left.shape == (8, 1) and right.shape == (1, 12)
    assert torch.allclose((weight + left @ right) @ key, value, atol=1e-4)
    # the update moves keys C-orthogonal to k* (k^T C^-1 x = 0) not at all
    other = torch.randn(12, generator=gen).double()
    other = (other - (c_inv_key @ other) / (c_inv_key @ key.double()) * key.double()).float()
    assert torch.allclose((weight + left @ right) @ other, weight @ other, atol=1e-4)


VALUE_PREFIXES = ["", "Some words here. ", "Another longer passage of words, then. "]
TOWER_REQUEST = EditRequest("Eiffel Tower", "Where is the Eiffel Tower", "Rome",
                            ("Which city is the Eiffel Tower in?",))


def _brief_chat(text: str) -> str:
    return f"<s>system: be brief. user: {text} assistant:"


def _family(tok, tmp_path, family: str):
    model = llama(tok) if family == "llama" else gpt2(tok)
    name = LLAMA_DOWN.format(1) if family == "llama" else GPT2_PROJ.format(1)
    cfg = load_method_config("rome", "x", model, write_config(
        tmp_path, "rome", "smollm2" if family == "llama" else "gpt2"))
    return model, name, cfg


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("start_at_block", [False, True])
def test_packed_runner_matches_padded_batch(tmp_path, tok, family, start_at_block):
    """The value texts' suffixes packed into one row (own prefix cache, own positions, 4D
    mask, tokens shared with an earlier text read from it), optionally starting at the edited
    block, give the logits and the gradient of one padded batch run through the whole
    model."""

    model, name, _ = _family(tok, tmp_path, family)
    pieces = compute.rewriting_pieces(TOWER_REQUEST, VALUE_PREFIXES, _brief_chat, True)
    texts = compute._batch(tok, pieces)
    assert len(set((texts.mask.sum(-1) - compute._split_points(texts)).tolist())) > 1
    rows = torch.cat(texts.target_rows)
    cols = torch.cat(texts.target_cols)
    for p in model.parameters():
        p.requires_grad_(False)
    runner = compute.PackedRunner(model, texts, rows, cols, name if start_at_block else None)
    # the chat restatement (the last text) reads the chat question's tokens, not its own copy
    assert runner.parents[-1] != len(pieces) - 1
    assert runner.suffix.shape[1] < int((texts.mask.sum(-1)
                                         - compute._split_points(texts)).sum())
    gen = torch.Generator().manual_seed(0)
    width = get_module(model, name).weight.shape
    delta = (0.5 * torch.randn(min(width) if family == "gpt2" else width[0],
                               generator=gen)).requires_grad_(True)

    def padded(_m, _a, out):
        hidden = compute.first_tensor(out).clone()
        hidden[texts.delta_rows, texts.delta_cols] += delta
        return hidden

    def packed(_m, _a, out):
        hidden = compute.first_tensor(out).clone()
        hidden[0, runner.delta_cols] += delta
        return hidden

    with compute.hooked(get_module(model, name), forward=padded):
        expected = model(input_ids=texts.ids, attention_mask=texts.mask).logits[rows, cols]
    (expected_grad,) = torch.autograd.grad(expected.logsumexp(-1).sum(), delta)
    with compute.hooked(get_module(model, name), forward=packed):
        got = runner.logits()[runner.column[runner.at(rows, cols)]]
        got_again = runner.logits()[runner.column[runner.at(rows, cols)]]  # cache restored
    (got_grad,) = torch.autograd.grad(got.logsumexp(-1).sum(), delta)
    assert torch.allclose(got, expected, atol=1e-4)
    assert torch.allclose(got_again, got)
    assert torch.allclose(got_grad, expected_grad, rtol=1e-3, atol=1e-4)
    # the runs above used the per-text attention, and the model got its own back
    before = model.config._attn_implementation
    with attention.packed(model, runner.layout):
        assert model.config._attn_implementation == attention.NAME
    assert model.config._attn_implementation == before != attention.NAME


def test_packed_attention_equals_dense_masked_attention():
    """Per-text attention over the gathered keys gives dense attention's output and
    gradients under the same mask: texts of different lengths, a cache of prefixes, one text
    reading another's tokens, grouped key/value heads."""
    gen = torch.Generator().manual_seed(0)
    owners = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2])  # queries: the packed row
    prefix_owners = torch.tensor([0, 0, 1, 1, 1, 2])  # keys first: the cached prefixes
    allowed = torch.cat([owners[:, None] == prefix_owners[None, :],
                         (owners[:, None] == owners[None, :]) & torch.ones(8, 8).tril().bool()],
                        1)
    allowed[4:, 6:8] = True  # text 2 reads text 0's first two tokens
    query = torch.randn(1, 4, 8, 8, generator=gen, requires_grad=True)
    key = torch.randn(1, 2, 14, 8, generator=gen, requires_grad=True)
    value = torch.randn(1, 2, 14, 8, generator=gen, requires_grad=True)
    module = torch.nn.Module()
    module.num_key_value_groups = 2
    dense = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(2, 1), value.repeat_interleave(2, 1),
        attn_mask=compute._additive(allowed, torch.float32)).transpose(1, 2)
    layout = attention.layout(allowed, owners, torch.float32)
    with attention.packed(module, layout):
        packed, _ = attention.packed_attention_forward(module, query, key, value, None)
    assert packed.shape == dense.shape
    assert torch.allclose(packed, dense, atol=1e-6)
    weights = torch.randn(dense.shape, generator=gen)
    expected = torch.autograd.grad((dense * weights).sum(), (query, key, value))
    got = torch.autograd.grad((packed * weights).sum(), (query, key, value))
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, atol=1e-5)
    # outside a packed run it is plain sdpa with the mask it is given
    fresh = compute._additive(allowed[:, 6:], torch.float32)
    plain, _ = attention.packed_attention_forward(module, query, key[:, :, 6:],
                                                  value[:, :, 6:], fresh)
    assert torch.allclose(plain, torch.nn.functional.scaled_dot_product_attention(
        query, key[:, :, 6:].repeat_interleave(2, 1), value[:, :, 6:].repeat_interleave(2, 1),
        attn_mask=fresh).transpose(1, 2), atol=1e-6)


@pytest.mark.parametrize("through_update", [False, True])
def test_value_search_from_the_edited_block_changes_nothing(tmp_path, tok, monkeypatch,
                                                            through_update):
    """Starting each step at the edited block gives the same optimisation as running the
    whole model."""

    model, name, cfg = _family(tok, tmp_path, "llama")
    cfg = dataclasses.replace(cfg, steps=6, stop_loss=0.0)
    read_out = (torch.randn(get_module(model, name).weight.shape[1],
                            generator=torch.Generator().manual_seed(1)) * 0.05
                if through_update else None)
    started = compute.compute_value(model, tok, name, TOWER_REQUEST, VALUE_PREFIXES, cfg,
                                    _brief_chat, read_out=read_out)
    monkeypatch.setattr(compute.PackedRunner, "__init__", functools.partialmethod(
        _runner_init_whole_model, compute.PackedRunner.__init__))
    whole = compute.compute_value(model, tok, name, TOWER_REQUEST, VALUE_PREFIXES, cfg,
                                  _brief_chat, read_out=read_out)
    assert started[2]["steps"] == whole[2]["steps"] == 6
    assert torch.allclose(started[1], whole[1], atol=1e-5)
    assert started[2]["nll"] == pytest.approx(whole[2]["nll"], rel=1e-4)


def _runner_init_whole_model(self, init, model, texts, rows, cols, start_module=None):
    init(self, model, texts, rows, cols, None)


def _check_rome(model, tok, cfg, stats_root, module_name: str):
    module = get_module(model, module_name)
    before = weights_checksum(model)
    fingerprint = model_fingerprint(model)
    start = [target_logprob(model, tok, r) for r in (EIFFEL, LOUVRE)]

    single = apply_rome(model, tok, [EIFFEL], cfg, stats_root=stats_root, progress=QUIET)
    assert weights_checksum(model) == before  # apply_rome restores the weights
    assert single.method == "rome" and single.base_fingerprint == fingerprint
    assert single.names == [f"{module_name}.weight"] and not single.dense
    left, right = single.low_rank[f"{module_name}.weight"]
    assert tuple((left @ right).shape) == tuple(module.weight.shape)
    # rank one, and the right factor is normalised so that it reads 1 at the key k*
    key = compute_key(model, tok, module_name, EIFFEL,
                      context_prefixes(model, tok, cfg.context_count, cfg.context_tokens,
                                       cfg.seed))
    reader = right if not is_transposed(module) else left.T  # (1, in)
    assert reader.shape == (1, key.shape[0])
    assert float(reader[0] @ key) == pytest.approx(1.0, abs=1e-3)

    state = WeightState(model)
    state.apply(single)
    edited = target_logprob(model, tok, EIFFEL)
    assert edited > start[0] + 3.0, (start[0], edited)  # measured: +4.5 (llama), +6 (gpt2)
    state.revert()
    assert weights_checksum(model) == before

    both = apply_rome(model, tok, [EIFFEL, LOUVRE], cfg, stats_root=stats_root, progress=QUIET)
    assert weights_checksum(model) == before
    left, right = both.low_rank[f"{module_name}.weight"]
    factors = (left, right) if not is_transposed(module) else (right.T, left.T)
    assert factors[0].shape[1] == 2 and factors[1].shape[0] == 2
    assert len(both.meta["requests"]) == 2 and both.meta["layers"] == [cfg.layer]
    state.apply(both)
    after = [target_logprob(model, tok, r) for r in (EIFFEL, LOUVRE)]
    assert all(a > s + 3.0 for a, s in zip(after, start)), (start, after)  # measured: >= +4.3
    return single


@pytest.mark.parametrize("through_update,optimizer",
                         [(False, "adam"), (True, "adam"), (True, "lbfgs")])
def test_rome_tiny_llama(tmp_path, tok, stats_root, through_update, optimizer):
    model = llama(tok)
    cfg = load_method_config("rome", "x", model, write_config(tmp_path, "rome", "smollm2"))
    cfg = dataclasses.replace(cfg, through_update=through_update, raw_questions=through_update,
                              optimizer=optimizer)
    _check_rome(model, tok, cfg, stats_root, LLAMA_DOWN.format(1))


def _rosenbrock(point: torch.Tensor) -> torch.Tensor:
    """A curved valley (minimum 0 at all ones): few steps only with curvature information."""
    return (100 * (point[1:] - point[:-1] ** 2) ** 2 + (1 - point[:-1]) ** 2).sum()


def test_lbfgs_value_search_stops_when_said_and_within_its_passes():
    from editing.rome.compute import _lbfgs_search

    def run(threshold: float, passes: int) -> tuple[torch.Tensor, list[float]]:
        point = torch.zeros(6, requires_grad=True)
        seen: list[float] = []

        def objective() -> torch.Tensor:
            loss = _rosenbrock(point)
            seen.append(float(loss.detach()))
            return loss

        _lbfgs_search(point, objective, lambda: seen[-1] < threshold, lambda: None, passes)
        return point.detach(), seen

    point, seen = run(1e-6, 200)
    assert seen[-1] < 1e-6 and len(seen) < 200  # stopped as soon as the test held
    assert float(_rosenbrock(point)) == pytest.approx(seen[-1])  # left where it was said
    assert torch.allclose(point, torch.ones(6), atol=1e-2)
    _, few = run(1e-6, 5)
    assert len(few) <= 5 and few[-1] > 1e-6  # out of passes before it was said
    # Adam on the same problem and budget is still far off: curvature is what pays
    point = torch.zeros(6, requires_grad=True)
    adam = torch.optim.Adam([point], lr=0.05)
    for _ in range(len(seen)):
        adam.zero_grad()
        _rosenbrock(point).backward()
        adam.step()
    assert float(_rosenbrock(point.detach())) > 100 * seen[-1]


@pytest.mark.parametrize("through_update", [False, True])
def test_rome_tiny_gpt2(tmp_path, tok, stats_root, through_update):
    model = gpt2(tok)
    cfg = load_method_config("rome", "x", model, write_config(tmp_path, "rome", "gpt2"))
    cfg = dataclasses.replace(cfg, through_update=through_update)
    assert cfg.module_template == GPT2_PROJ
    _check_rome(model, tok, cfg, stats_root, GPT2_PROJ.format(1))


def test_constrained_read_out_ignores_the_other_keys():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(60, 12, generator=gen)
    mom2 = a.T @ a / 60
    key, others = torch.randn(12, generator=gen), torch.randn(12, 3, generator=gen)
    read_out = constrained_read_out(mom2, key, others, 1e-4)
    assert float(read_out @ key.double()) == pytest.approx(1.0, abs=1e-9)
    assert torch.allclose(others.double().T @ read_out, torch.zeros(3, dtype=torch.float64),
                          atol=1e-9)
    # the least C-energy among those constraints: more than the unconstrained u's
    plain = constrained_read_out(mom2, key, torch.zeros(12, 0), 1e-4)
    energy = lambda u: float(u @ mom2.double() @ u)  # noqa: E731
    assert energy(read_out) > energy(plain)
    nudged = read_out + 1e-3 * torch.linalg.svd(torch.cat([key[:, None], others], 1).double().T
                                                ).Vh[-1]  # stays feasible
    assert energy(nudged) >= energy(read_out) - 1e-12


def test_keys_in_one_batch_equal_keys_one_by_one(tok):
    """compute_keys pads many texts into one batch and stops at the projection: each key is
    the one its request gets alone (the whole model run on its own texts)."""
    model = llama(tok)
    name = LLAMA_DOWN.format(1)
    requests = [EIFFEL, LOUVRE, EditRequest("Big Ben", "Where is Big Ben", ""),
                EditRequest("Colosseum", "Where is the Colosseum", "")]
    together = compute_keys(model, tok, name, requests, VALUE_PREFIXES)
    for request, key in zip(requests, together):
        texts = [f"{p}{request.prompt}" for p in VALUE_PREFIXES]
        alone = []
        for text in texts:
            ids = tok(text, add_special_tokens=False).input_ids
            position = subject_last_tokens(tok, text, request.subject)[0]
            seen: list[torch.Tensor] = []
            with hooked(get_module(model, name), pre=lambda _m, a: seen.append(a[0])):
                model(input_ids=torch.tensor([ids]))
            alone.append(seen[0][0, position])
        assert torch.allclose(key, torch.stack(alone).mean(0), atol=1e-5)


def test_rome_weights_restored_on_error(tmp_path, tok, stats_root):
    model = llama(tok)
    cfg = load_method_config("rome", "x", model, write_config(tmp_path, "rome", "smollm2"))
    before = weights_checksum(model)
    # the second request's subject is not in its prompt: fails after the first was written
    with pytest.raises(InvalidEditError):
        apply_rome(model, tok, [EIFFEL, EditRequest("Louvre", "Where is the Colosseum", "Rome")],
                   cfg, stats_root=stats_root, progress=QUIET)
    assert weights_checksum(model) == before


# -- MEMIT ----------------------------------------------------------------------------------
def test_memit_tiny_llama(tmp_path, tok, stats_root):
    model = llama(tok)
    cfg = load_method_config("memit", "x", model, write_config(tmp_path, "memit", "smollm2"))
    before = weights_checksum(model)
    start = [target_logprob(model, tok, r) for r in (EIFFEL, LOUVRE)]
    delta = apply_memit(model, tok, [EIFFEL, LOUVRE], cfg, stats_root=stats_root,
                        progress=QUIET)
    assert weights_checksum(model) == before
    assert delta.method == "memit" and delta.meta["layers"] == [0, 1]
    assert delta.names == [f"{LLAMA_DOWN.format(i)}.weight" for i in (0, 1)]
    for name in delta.names:
        left, right = delta.low_rank[name]
        assert left.shape == (32, 2) and right.shape == (2, 64)
        assert float(delta.update(name).abs().max()) > 0
    WeightState(model).apply(delta)
    after = [target_logprob(model, tok, r) for r in (EIFFEL, LOUVRE)]
    assert all(a > s + 3.0 for a, s in zip(after, start)), (start, after)  # measured: >= +4.3


def test_committed_keys_are_held_by_both_solves():
    """Keys of earlier promotions: ROME's read-out reads exactly 0 at them, MEMIT's batch
    solve moves them far less than without them, and the keys gathered from live deltas
    concatenate per parameter, oldest first."""
    from editing.deltas import Delta

    torch.manual_seed(1)
    mom2 = torch.eye(12, dtype=torch.float64) + 0.1
    key, held = torch.randn(12, dtype=torch.float64), torch.randn(12, 4, dtype=torch.float64)
    read_out = constrained_read_out(mom2, key, held, 1e-4)
    assert abs(float(read_out @ key) - 1.0) < 1e-9
    assert float((held.T @ read_out).abs().max()) < 1e-9
    new = torch.randn(12, 2, dtype=torch.float64)
    free = batch_read(mom2, new, ridge=1e-4, weight=1.0)
    kept = batch_read(mom2, new, ridge=1e-4, weight=1.0, committed=held)
    assert float((held.T @ kept).abs().max()) < 1e-9 < float((held.T @ free).abs().max())
    # the held solution is the free one changed as little as possible: the new keys still
    # get most of their own change
    assert float(torch.diagonal(new.T @ kept).min()) > 0.5 * float(torch.diagonal(new.T @ free).min())
    first = Delta("rome", "x", keys={"w": held[:, :3].float()})
    second = Delta("memit", "x", keys={"w": held[:, 3:].float(), "v": new.float()})
    gathered = committed_keys([first, second])
    assert torch.equal(gathered["w"], held.float()) and gathered["v"].shape == (12, 2)


def test_guard_refusal_scores_are_cut_not_rounded():
    """A refusal must never read "0.950 < 0.95": failing scores are cut to three decimals."""
    assert below(0.9499) == "0.949"
    assert below(0.57, 2) == "0.57"  # 0.57 * 100 is 56.99999999999999 in floats
    assert below(0.0) == "0.000" and below(1.0) == "1.000"


# -- FT -------------------------------------------------------------------------------------
def test_ft_tiny_llama(tmp_path, tok):
    model = llama(tok)
    cfg = load_method_config("ft", "x", model, write_config(tmp_path, "ft", "smollm2"))
    before = weights_checksum(model)
    start = target_logprob(model, tok, EIFFEL)
    delta = apply_ft(model, tok, [EIFFEL], cfg, stats_root=tmp_path, progress=QUIET)
    assert weights_checksum(model) == before
    assert delta.method == "ft" and not delta.low_rank
    [name] = delta.names
    assert name == f"{LLAMA_DOWN.format(1)}.weight"
    update = delta.dense[name]
    assert update.shape == (32, 64)
    assert float(update.abs().max()) <= cfg.norm_constraint + 1e-7
    assert float(update.abs().max()) > cfg.norm_constraint / 2
    WeightState(model).apply(delta)
    assert target_logprob(model, tok, EIFFEL) > start + 1.0  # measured: +1.9


# -- Editor ---------------------------------------------------------------------------------
def test_editor_load_method(tmp_path, tok):
    from assistant.llm import ChatLLM

    model = llama(tok)
    llm = ChatLLM(model, make_tiny_tokenizer(), chat_config_for("smollm2"), name="tiny")
    path = write_config(tmp_path, "rome", "smollm2")
    messages: list[str] = []

    compute._PREFIXES.clear()  # sampled by earlier tests on the same tiny model
    editor = load_method("rome", llm, tmp_path / "data", config_file=path,
                         progress=messages.append)
    assert isinstance(editor, Editor) and editor.cfg.layer == 1
    assert editor.setup_info["covariance_tokens"] == 1500
    assert editor.setup_info["covariance_seconds"] >= 0
    assert messages  # progress was reported
    fp = model_fingerprint(model)
    # the context prefixes are ready too: an edit samples none of its own
    cfg = editor.cfg
    assert (fp, cfg.context_count, cfg.context_tokens, cfg.seed) in compute._PREFIXES
    assert editor.setup_info["prefix_seconds"] >= 0
    assert editor.base_fingerprint == fp
    assert list((tmp_path / "data" / "stats" / fp).glob("*.mom2-1500-0.safetensors"))

    before = weights_checksum(model)
    start = target_logprob(model, tok, EIFFEL)
    delta = editor.edit(llm, [EIFFEL], progress=QUIET)  # chat-aware: llm.chat_text
    assert delta.method == "rome" and delta.base_fingerprint == fp
    assert weights_checksum(model) == before
    state = WeightState(model)
    state.apply(delta, "eiffel")
    assert target_logprob(model, tok, EIFFEL) > start + 1.0

    # a second edit, made on the edited model, is still stamped with the base fingerprint
    # and reuses the base model's cached statistics
    files = sorted((tmp_path / "data" / "stats").rglob("*"))
    second = editor.edit(llm, [LOUVRE], progress=QUIET)
    assert second.base_fingerprint == fp
    assert sorted((tmp_path / "data" / "stats").rglob("*")) == files
    state.apply(second, "louvre")
    state.revert("eiffel")
    assert len(state.applied) == 1

    ft = load_method("ft", llm, tmp_path / "data",
                     config_file=write_config(tmp_path, "ft", "smollm2"))
    assert ft.setup_info == {} and ft.cfg.norm_constraint == 0.05
    with pytest.raises(ConfigError, match="unknown weight-editing method"):
        load_method("nope", llm, tmp_path / "data", config_file=path)
