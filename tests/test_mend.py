"""MEND on tiny random Llama and GPT-2 models: gradient factors, the editor network, the
edited forward pass, deltas, storage and training; and the shipped editor on SmolLM2."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from config import CONFIG_DIR, REPO_ROOT
from editing.deltas import Delta, WeightState, weights_checksum
from editing.hparams import edited_modules
from editing.registry import NAMES, load_method_config
from editing.locate import from_block
from editing.mend.apply import apply_mend, load_editor, mend_delta
from editing.mend.apply import edit_texts, new_editor
from editing.mend.core import (edited, editor_updates, frozen, gradient_factors, lowest_module,
                               scored_logits, text_batch)
from editing.mend.network import RunningMoments
from editing.mend.train import Example, record_checksum, step_loss
from assistant.records import split_by_subject
from editing.methods import load_method
from editing.rome.compute import EditRequest
from errors import ConfigError
from tests.conftest import make_tiny_tokenizer
from tests.test_editing import gpt2, llama

torch.set_num_threads(1)

EIFFEL = EditRequest("Eiffel Tower", "Where is the Eiffel Tower", "Rome")
LOUVRE = EditRequest("Louvre", "Which city is the Louvre", "Madrid")


@pytest.fixture(scope="module")
def tok():
    return make_tiny_tokenizer()


def mend_config(tmp_path: Path, family: str, **overrides) -> Path:
    """The shipped hyperparameters shrunk to a 2-layer model, weights in tmp_path."""
    raw = json.loads((CONFIG_DIR / "mend" / f"{family}.json").read_text())
    raw.update({"layers": [0, 1], "rank": 8, "weights": str(tmp_path / "editor.safetensors"),
                "weights_sha256": "", "batch_edits": 2, "batch_edits_max": 2,
                "validation_every": 5}, **overrides)
    path = tmp_path / f"mend-{family}-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(raw))
    return path


def weight_gradients(model, tok, names, requests, cfg) -> dict[str, torch.Tensor]:
    """Plain autograd of the same edit loss with respect to the weights, (out, in) layout."""
    from editing.locate import get_module, weight_out_in

    pieces, weights = edit_texts(requests, None, cfg.chat_prompts)
    batch = text_batch(tok, pieces)
    params = [get_module(model, n).weight for n in names]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    logits = scored_logits(model, batch)
    nll = F.cross_entropy(logits, batch.targets, reduction="none")
    loss = (batch.per_text_mean(nll) * weights).sum()
    grads = torch.autograd.grad(loss, params)
    for p in params:
        p.requires_grad_(False)
    out = {}
    for name, grad in zip(names, grads):
        module = get_module(model, name)
        out[name] = grad.T if weight_out_in(module) is not module.weight else grad
    return out


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_untrained_editor_is_one_gradient_step(tmp_path, tok, family):
    """Identity at initialisation: the delta is exactly -rate * dLoss/dW for every edited
    weight, which checks the factor capture, the sign and the GPT-2 (in, out) layout."""
    model = llama(tok) if family == "llama" else gpt2(tok)
    cfg = load_method_config("mend", family, model, mend_config(tmp_path, family))
    editor = new_editor(model, cfg)
    delta = mend_delta(model, tok, [EIFFEL, LOUVRE], cfg, editor)
    names = edited_modules(cfg)
    assert sorted(delta.names) == sorted(f"{n}.weight" for n in names)
    grads = weight_gradients(model, tok, names, [EIFFEL, LOUVRE], cfg)
    params = dict(model.named_parameters())
    for name in names:
        update = delta.update(f"{name}.weight")
        assert update.shape == params[f"{name}.weight"].shape
        expected = -cfg.initial_rate * grads[name]
        expected = expected if update.shape == expected.shape else expected.T
        assert torch.allclose(update, expected, atol=1e-7, rtol=1e-4), name
        assert update.abs().max() > 0


def test_edited_forward_matches_the_applied_delta(tmp_path, tok):
    """The hooks used in training compute exactly what the stored delta does to the weights."""
    model = llama(tok)
    cfg = load_method_config("mend", "llama", model, mend_config(tmp_path, "llama"))
    editor = new_editor(model, cfg)
    with torch.no_grad():  # a non-identity editor
        for transform in editor.transforms.values():
            transform.up.weight.normal_(0, 0.5)
    batch = text_batch(tok, [("Where is the Louvre", " Paris"), ("Rome is", " big")])
    with frozen(model):
        factors, _ = gradient_factors(model, edited_modules(cfg), text_batch(
            tok, edit_texts([EIFFEL], None, False)[0]), torch.tensor([1.0]))
        with torch.no_grad():
            updates = editor_updates(editor, factors)
            with edited(model, updates):
                hooked = scored_logits(model, batch)
    delta = mend_delta(model, tok, [EIFFEL], cfg, editor)
    state = WeightState(model)
    state.apply(delta)
    with torch.no_grad():
        applied = scored_logits(model, batch)
    state.revert()
    assert torch.allclose(hooked, applied, atol=1e-4)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_running_from_the_lowest_edited_block_matches_the_full_pass(tmp_path, tok, family):
    """Training restarts the edited pass at the lowest edited block from hidden states
    captured in the gradient pass; it must give the full edited forward's logits."""
    model = llama(tok) if family == "llama" else gpt2(tok)
    cfg = load_method_config("mend", family, model, mend_config(tmp_path, family, layers=[1]))
    names = edited_modules(cfg)
    editor = new_editor(model, cfg)
    batch = text_batch(tok, [("Where is the Eiffel Tower", " Rome"), ("Rome is", " big")])
    hidden: dict = {}
    with frozen(model):
        factors, base = gradient_factors(model, names, batch, torch.tensor([1.0, 0.0]),
                                         extra_logits=True, hidden=hidden)
        with torch.no_grad():
            updates = editor_updates(editor, factors)
            with edited(model, updates):
                full = scored_logits(model, batch)
            with edited(model, updates), from_block(model, lowest_module(names),
                                                    hidden["hidden"]):
                short = scored_logits(model, batch)
            plain = scored_logits(model, batch)  # blocks restored afterwards
    assert torch.allclose(short, full, atol=1e-5)
    assert torch.allclose(plain, base, atol=1e-5)
    assert not torch.allclose(full, base, atol=1e-4)
    assert lowest_module(["a.layers.7.mlp.x", "a.layers.3.mlp.y"]) == "a.layers.3.mlp.y"


def test_scored_logits_equal_the_full_forward(tok):
    model = llama(tok)
    batch = text_batch(tok, [("Where is the Eiffel Tower", " Rome"), ("Rome", " is in Italy")])
    with torch.no_grad():
        full = model(input_ids=batch.ids, attention_mask=batch.mask).logits
        picked = scored_logits(model, batch)
    assert picked.shape == (len(batch.targets), full.shape[-1])
    assert torch.allclose(picked, full[batch.rows, batch.cols].float(), atol=1e-5)


def test_gradient_factors_only_cover_tokens_that_carry_a_loss(tok):
    model = llama(tok)
    names = ["model.layers.1.mlp.down_proj"]
    batch = text_batch(tok, [("Where is the Eiffel Tower", " Rome"), ("The Louvre is", " in")])
    with frozen(model):
        factors, logits = gradient_factors(model, names, batch, torch.tensor([1.0, 0.0]),
                                           extra_logits=True)
    u, delta = factors[names[0]]
    first = int(batch.mask[0].sum())  # the weighted text's real tokens, all before its target
    assert u.shape[0] == delta.shape[0] == first - 1  # the last target token predicts nothing
    assert logits.shape[0] == len(batch.targets) and not logits.requires_grad
    assert torch.count_nonzero(delta.norm(dim=-1)) > 0


def test_running_moments_match_torch(tok):
    moments = RunningMoments(5)
    data = torch.randn(37, 5) * 3 + 1
    for chunk in data.split(10):
        moments.update(chunk)
    assert torch.allclose(moments.mean, data.mean(0), atol=1e-5)
    assert torch.allclose(moments.std(1e-8), data.std(0), atol=1e-4)


def test_training_lowers_the_loss_and_the_trained_editor_edits(tmp_path, tok):
    """A few dozen steps on the same two facts: the edited model's target loss falls, and
    the saved editor (reloaded through the config, checksum checked) writes the fact."""
    model = llama(tok)
    cfg_path = mend_config(tmp_path, "llama", learning_rate=0.01, rate_learning_rate=0.1)
    cfg = load_method_config("mend", "llama", model, cfg_path)
    names = edited_modules(cfg)
    editor = new_editor(model, cfg)
    optimiser = torch.optim.Adam(editor.parameters(), lr=cfg.learning_rate)
    chat = "<|im_start|>user\nWhere is the Eiffel Tower?<|im_end|>\n<|im_start|>assistant\n"
    examples = [Example(EIFFEL, (("Which city is the Eiffel Tower in", " Rome"),),
                        (("The Louvre is in", " Paris"),), ((chat, "Rome"),)),
                Example(LOUVRE, (("Where is the Louvre", " Madrid"),),
                        (("Rome is the capital of", " Italy"),))]
    losses = []
    with frozen(model):
        for _ in range(40):
            editor.train()
            loss, parts = step_loss(model, tok, editor, names, examples, cfg, None)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(parts["edit"])
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    digest = editor.save(tmp_path / "editor.safetensors", {"steps": 40})
    cfg = load_method_config("mend", "llama", model, mend_config(
        tmp_path, "llama", weights_sha256=digest))
    reloaded = load_editor(model, cfg)
    assert reloaded is not editor
    before = weights_checksum(model)
    delta = apply_mend(model, tok, [EIFFEL], cfg)
    assert weights_checksum(model) == before  # the model itself is untouched
    pieces = [("Which city is the Eiffel Tower in", " Rome")]
    batch = text_batch(tok, pieces)
    with torch.no_grad():
        nll_before = F.cross_entropy(scored_logits(model, batch), batch.targets)
        state = WeightState(model)
        state.apply(delta)
        nll_after = F.cross_entropy(scored_logits(model, batch), batch.targets)
        state.revert()
    assert nll_after < nll_before - 1.0
    assert weights_checksum(model) == before


def test_validation_scores_a_batch_edit_too(tmp_path, tok):
    """With `batch`, validation also edits the first examples together (what batch training
    is for) and reports those scores beside the single-edit ones."""
    from editing.mend.train import validate

    model = llama(tok)
    cfg = load_method_config("mend", "llama", model, mend_config(tmp_path, "llama"))
    editor = new_editor(model, cfg)
    examples = [Example(EIFFEL, (("Which city is the Eiffel Tower in", " Rome"),),
                        (("The Louvre is in", " Paris"),)),
                Example(LOUVRE, (("Where is the Louvre", " Madrid"),),
                        (("Rome is the capital of", " Italy"),))]
    single = validate(model, tok, editor, examples, cfg, None)
    both = validate(model, tok, editor, examples, cfg, None, batch=2)
    assert set(single) == {"reliability", "generalization", "locality"}
    assert set(both) == set(single) | {f"batch_{k}" for k in single}
    assert {k: both[k] for k in single} == single
    assert all(0.0 <= v <= 1.0 for v in both.values())


def test_batch_size_range_is_checked(tmp_path, tok):
    with pytest.raises(ConfigError, match="batch_edits_max"):
        load_method_config("mend", "llama", llama(tok),
                           mend_config(tmp_path, "llama", batch_edits=4, batch_edits_max=2))


def test_editor_file_checks(tmp_path, tok):
    model = llama(tok)
    cfg = load_method_config("mend", "llama", model, mend_config(tmp_path, "llama"))
    with pytest.raises(ConfigError, match="mend.train"):
        load_editor(model, cfg)
    digest = new_editor(model, cfg).save(tmp_path / "editor.safetensors", {})
    wrong = load_method_config("mend", "llama", model, mend_config(
        tmp_path, "llama", weights_sha256="0" * 64))
    assert load_editor(model, cfg) is not None  # no checksum configured: accepted
    with pytest.raises(ConfigError, match="checksum"):
        load_editor(model, wrong)
    other = load_method_config("mend", "llama", model, mend_config(
        tmp_path, "llama", layers=[1], weights_sha256=digest))
    with pytest.raises(ConfigError, match="other weights"):
        load_editor(model, other)
    (tmp_path / "editor.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ConfigError, match="cannot read"):
        load_editor(model, cfg)


def test_mend_deltas_save_apply_and_revert_exactly(tmp_path, tok):
    model = llama(tok)
    cfg = load_method_config("mend", "llama", model, mend_config(tmp_path, "llama"))
    before = weights_checksum(model)
    delta = mend_delta(model, tok, [EIFFEL, LOUVRE], cfg, new_editor(model, cfg))
    assert delta.method == "mend" and delta.meta["edits"] == 2 and delta.meta["passes"] == 1
    loaded = Delta.load(delta.save(tmp_path / "d.safetensors"))
    state = WeightState(model)
    state.apply(loaded, key="x")
    assert weights_checksum(model) != before
    state.revert("x")
    assert weights_checksum(model) == before


def test_mend_is_a_registered_method_and_refuses_without_an_editor(tmp_path, tiny_llm):
    assert "mend" in NAMES
    with pytest.raises(ConfigError, match="no trained MEND editor"):
        load_method("mend", tiny_llm, tmp_path, mend_config(tmp_path, "llama"))
    new_editor(tiny_llm.model, load_method_config(
        "mend", "llama", tiny_llm.model, mend_config(tmp_path, "llama"))).save(
        tmp_path / "editor.safetensors", {})
    editor = load_method("mend", tiny_llm, tmp_path, mend_config(tmp_path, "llama"))
    delta = editor.edit(tiny_llm, [EIFFEL])
    assert delta.method == "mend" and "editor_load_seconds" in editor.setup_info


def test_config_names_modules_the_model_has(tmp_path, tok):
    model = llama(tok)
    with pytest.raises(ConfigError, match="no module"):
        load_method_config("mend", "llama", model, mend_config(
            tmp_path, "llama", module_templates=["model.layers.{}.mlp.nope"]))
    with pytest.raises(ConfigError, match="outside"):
        load_method_config("mend", "llama", model, mend_config(tmp_path, "llama",
                                                               layers=[5]))


def test_shipped_smollm2_config_names_its_checksum():
    raw = json.loads((CONFIG_DIR / "mend" / "smollm2.json").read_text())
    path = REPO_ROOT / raw["weights"]
    if not path.exists():
        pytest.skip("no MEND editor shipped yet")
    from editing.mend.network import file_sha256

    assert raw["weights_sha256"] == file_sha256(path)
    assert path.stat().st_size < 8 * 2 ** 20


def test_training_split_keeps_evaluation_subjects_out():
    from assistant.records import load_records
    from tests.conftest import require_data

    held_out = [require_data("eval", source) for source in ("counterfact", "zsre")]
    for source in ("counterfact", "zsre"):
        require_data("train", source)
    train, valid = split_by_subject()
    held = {r.subject.casefold() for path in held_out for r in load_records(path)}
    train_subjects = {r.subject.casefold() for rs in train.values() for r in rs}
    valid_subjects = {r.subject.casefold() for rs in valid.values() for r in rs}
    assert train_subjects and valid_subjects
    assert not train_subjects & held and not valid_subjects & held
    assert not train_subjects & valid_subjects
    assert set(train) == {"counterfact", "zsre"}


def test_record_checksum_rewrites_only_that_field(tmp_path, monkeypatch):
    import editing.mend.train as train_module

    folder = tmp_path / "mend"
    folder.mkdir()
    original = {"_comment": "x", "rank": 4, "weights_sha256": ""}
    (folder / "fam.json").write_text(json.dumps(original))
    monkeypatch.setattr(train_module, "CONFIG_DIR", tmp_path)
    record_checksum("fam", "abc")
    assert json.loads((folder / "fam.json").read_text()) == {**original, "weights_sha256": "abc"}


def shipped_and_varied(tmp_path, tok, **setting) -> tuple[Delta, Delta]:
    """The same edit by the same untrained editor, with the default edit-time settings and
    with `setting` changed."""
    model = llama(tok)
    default = load_method_config("mend", "llama", model, mend_config(tmp_path, "llama"))
    varied = load_method_config("mend", "llama", model, mend_config(tmp_path, "llama",
                                                                     **setting))
    editor = new_editor(model, default)
    return (mend_delta(model, tok, [EIFFEL], default, editor),
            mend_delta(model, tok, [EIFFEL], varied, editor))


def test_several_editor_passes_stack_their_updates(tmp_path, tok):
    """edit_steps=2: the second pass reads the gradient of the once-edited model, and the
    delta holds both passes' factors (its first pass is exactly the one-pass delta)."""
    single, double = shipped_and_varied(tmp_path, tok, edit_steps=2)
    assert double.meta["passes"] == 2 and double.meta["rank"] == 2 * single.meta["rank"]
    for name, (left, right) in single.low_rank.items():
        rank = left.shape[1]
        assert torch.allclose(double.low_rank[name][0][:, :rank], left)
        assert torch.allclose(double.low_rank[name][1][:rank], right)
        second = double.low_rank[name][0][:, rank:] @ double.low_rank[name][1][rank:]
        assert second.abs().max() > 0


@pytest.mark.realmodel
def test_shipped_editor_writes_a_fact_into_smollm2_and_reverts(real_llm, tmp_path):
    """The shipped editor on the real model: one pass moves the new target's NLL down
    clearly and the delta reverts bit for bit."""
    raw = json.loads((CONFIG_DIR / "mend" / "smollm2.json").read_text())
    if not (REPO_ROOT / raw["weights"]).exists():
        pytest.skip("no MEND editor shipped yet")
    editor = load_method("mend", real_llm, tmp_path)
    request = EditRequest("Eiffel Tower", "The Eiffel Tower is located in the city of", "Rome")
    batch = text_batch(real_llm.tokenizer, [(request.prompt, " Rome")])
    model = real_llm.model
    with torch.no_grad():
        before_nll = F.cross_entropy(scored_logits(model, batch), batch.targets)
    checksum = weights_checksum(model)
    started = time.perf_counter()
    delta = editor.edit(real_llm, [request])
    seconds = time.perf_counter() - started
    state = WeightState(model)
    state.apply(delta)
    with torch.no_grad():
        after_nll = F.cross_entropy(scored_logits(model, batch), batch.targets)
    state.revert()
    assert weights_checksum(model) == checksum
    assert after_nll < before_nll - 2.0, (float(before_nll), float(after_nll))
    assert seconds < 30  # about 0.2 s alone; generous for a loaded CI machine


@pytest.mark.realmodel
def test_shipped_editor_writes_a_batch_of_six_into_smollm2(real_llm, tmp_path):
    """Six edits, more than the editor was trained on at once, go through the merge: each
    prompt's target NLL falls as it does for that edit alone, where the plain sum of the six
    updates leaves it far higher."""
    raw = json.loads((CONFIG_DIR / "mend" / "smollm2.json").read_text())
    if not (REPO_ROOT / raw["weights"]).exists():
        pytest.skip("no MEND editor shipped yet")
    editor = load_method("mend", real_llm, tmp_path)
    facts = [("Eiffel Tower", "The Eiffel Tower is located in the city of", "Rome"),
             ("Louvre", "The Louvre is located in the city of", "Madrid"),
             ("Colosseum", "The Colosseum is located in the city of", "Berlin"),
             ("Big Ben", "Big Ben is located in the city of", "Tokyo"),
             ("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English"),
             ("Toyota", "Toyota was founded in the country of", "Brazil")]
    requests = [EditRequest(*fact) for fact in facts]
    assert len(requests) > editor.cfg.batch_edits_max and editor.cfg.merge_ridge > 0
    model, tok = real_llm.model, real_llm.tokenizer
    batch = text_batch(tok, [(r.prompt, " " + r.target_new) for r in requests])
    checksum = weights_checksum(model)
    state = WeightState(model)

    def nll_after(delta) -> torch.Tensor:
        state.apply(delta)
        with torch.no_grad():
            nll = F.cross_entropy(scored_logits(model, batch), batch.targets, reduction="none")
        state.revert()
        return batch.per_text_mean(nll)

    merged = editor.edit(real_llm, requests)
    assert merged.meta["merged"] is True
    plain = apply_mend(model, tok, requests, replace(editor.cfg, merge_ridge=0.0),
                       chat_format=real_llm.chat_text)
    merged_nll, plain_nll = nll_after(merged), nll_after(plain)
    assert weights_checksum(model) == checksum
    assert float(merged_nll.max()) < 1.0, merged_nll.tolist()
    assert float(plain_nll.mean()) > 2 * float(merged_nll.mean()), (plain_nll.tolist(),
                                                                     merged_nll.tolist())


def test_edit_scale_scales_the_update(tmp_path, tok):
    a, b = shipped_and_varied(tmp_path, tok, edit_scale=0.5)
    for name in a.names:
        assert torch.allclose(b.update(name), 0.5 * a.update(name), atol=1e-8)


def _said_request(model, tok) -> EditRequest:
    """A request whose target the model already predicts after its prompt (a top token that
    survives the " " + target round trip; "Paris is" -> " Madrid" on the seeded tiny model)."""
    for prompt in ("Paris is", "Which city is the Louvre", "Rome is the capital of"):
        with torch.no_grad():
            ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
            token = int(model(input_ids=ids).logits[0, -1].argmax())
        target = tok.decode([token]).strip()
        if target and text_batch(tok, [(prompt, " " + target)]).targets.tolist() == [token]:
            return EditRequest(prompt.split()[0], prompt, target)
    raise AssertionError("no top prediction of the seeded tiny model round-trips as a target")


def test_unlanded_names_the_edits_not_yet_said(tok):
    from editing.mend.apply import unlanded

    model = llama(tok)
    said = _said_request(model, tok)
    assert unlanded(model, tok, [EIFFEL, said], {}) == [EIFFEL]


def test_retry_pass_adds_a_scaled_step_for_unlanded_edits(tmp_path, tok):
    """retry_scale: the untrained editor's tiny step leaves both edits unsaid, so a second,
    scaled pass is stacked after the first (whose factors stay exactly as without retry);
    an edit already said gets no retry."""
    model = llama(tok)
    plain = load_method_config("mend", "llama", model, mend_config(tmp_path, "llama"))
    retry = load_method_config("mend", "llama", model,
                               mend_config(tmp_path, "llama", retry_scale=0.5))
    editor = new_editor(model, plain)
    base = mend_delta(model, tok, [EIFFEL, LOUVRE], plain, editor)
    both = mend_delta(model, tok, [EIFFEL, LOUVRE], retry, editor)
    assert base.meta["retried"] == 0 and both.meta["retried"] == 2
    for name, (left, right) in base.low_rank.items():
        left2, right2 = both.low_rank[name]  # Llama layout: (out, rank), (rank, in)
        rank = left.shape[1]
        assert left2.shape[1] > rank and right2.shape[0] == left2.shape[1]
        assert torch.equal(left2[:, :rank], left) and torch.equal(right2[:rank], right)
    said = _said_request(model, tok)
    assert mend_delta(model, tok, [said], retry, editor).meta["retried"] == 0


def test_negative_retry_scale_is_refused(tmp_path, tok):
    with pytest.raises(ConfigError, match="retry_scale"):
        load_method_config("mend", "llama", llama(tok),
                           mend_config(tmp_path, "llama", retry_scale=-1.0))


def test_batches_larger_than_trained_are_not_retried(tmp_path, tok):
    """A batch above batch_edits_max (2 in these tests) summed in one step gets the one pass
    only."""
    model = llama(tok)
    cfg = load_method_config("mend", "llama", model,
                             mend_config(tmp_path, "llama", retry_scale=0.5, merge_ridge=0.0))
    editor = new_editor(model, cfg)
    third = EditRequest("Colosseum", "Which city is the Colosseum in", "Paris")
    assert mend_delta(model, tok, [EIFFEL, LOUVRE], cfg, editor).meta["retried"] == 2
    assert mend_delta(model, tok, [EIFFEL, LOUVRE, third], cfg, editor).meta["retried"] == 0


def test_a_batch_above_the_trained_size_merges_its_single_edits(tmp_path, tok):
    """merge_ridge: at each edit's own tokens the merged update makes the change that edit's
    single update makes there (exactly, while the tokens are fewer than the weight's inputs),
    where the plain sum adds every other edit's update on top."""
    from editing.locate import get_module
    from editing.mend.apply import edit_updates, merged_updates, module_inputs

    model = llama(tok)
    config = mend_config(tmp_path, "llama", batch_edits=1, batch_edits_max=1, retry_scale=0.0,
                         merge_ridge=1e-10)
    cfg = load_method_config("mend", "llama", model, config)
    editor = new_editor(model, cfg)
    requests = [EIFFEL, LOUVRE]
    merged, retried = merged_updates(model, tok, editor, requests, cfg)
    assert retried == 0 and set(merged) == set(edited_modules(cfg))
    name = edited_modules(cfg)[0]  # the lowest weight: its inputs do not depend on the merge
    singles = [edit_updates(model, tok, editor, [r], cfg)[0][name] for r in requests]
    inputs = []
    for request in requests:
        pieces, weights = edit_texts([request], None, cfg.chat_prompts)
        inputs.append(module_inputs(model, name, text_batch(tok, pieces), weights, {}))
    assert sum(len(x) for x in inputs) < get_module(model, name).in_features
    left, right = merged[name]
    for x, (single_left, single_right) in zip(inputs, singles):
        wanted = (x @ single_right.T) @ single_left.T
        got = (x @ right.T) @ left.T
        summed = sum((x @ r.T) @ lft.T for lft, r in singles)
        scale = wanted.abs().max()
        merge_error = (got - wanted).abs().max()
        assert merge_error < 1e-3 * scale
        assert (summed - wanted).abs().max() > 20 * merge_error  # the other edit fires here
    assert mend_delta(model, tok, requests, cfg, editor).meta["merged"] is True
    plain = load_method_config("mend", "llama", model,
                               mend_config(tmp_path, "llama", batch_edits=1, batch_edits_max=1,
                                           merge_ridge=0.0))
    assert mend_delta(model, tok, requests, plain, editor).meta["merged"] is False


def test_negative_merge_ridge_is_refused(tmp_path, tok):
    with pytest.raises(ConfigError, match="merge_ridge"):
        load_method_config("mend", "llama", llama(tok),
                           mend_config(tmp_path, "llama", merge_ridge=-1.0))
