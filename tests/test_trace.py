"""Causal tracing and its heat maps on tiny random Llama and GPT-2 models (no real model)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import processors
from transformers import GPT2Config, GPT2LMHeadModel

from editing.heatmap import (
    CELL_H,
    MAX_WIDTH,
    answer_text,
    caption,
    render_heatmap,
    render_heatmaps,
    trace_title,
)
from editing.trace import (
    CausalTracer,
    TraceModules,
    TraceResult,
    average_indirect_effect,
    subject_token_range,
    trace,
    trace_modules,
)
from errors import InvalidEditError, ModelLoadError
from tests.conftest import make_tiny_model, make_tiny_tokenizer

torch.set_num_threads(1)

PROMPT = "The Eiffel Tower is in"
SUBJECT = "Eiffel Tower"


@pytest.fixture(scope="module")
def tok():
    """The tiny tokenizer, made to prepend a BOS by default: tracing must ask for none."""
    tok = make_tiny_tokenizer()
    bos = tok.convert_tokens_to_ids(tok.bos_token)
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tok.bos_token} $A", special_tokens=[(tok.bos_token, bos)])
    assert tok(PROMPT).input_ids[0] == bos
    return tok


def sensitise(norm: torch.nn.Module, attn_out: list[torch.nn.Module]) -> None:
    """A random model barely reads other positions and predicts almost uniformly; scaling the
    attention outputs and the final norm makes the subject noise move the answer's
    probability by far more (> 1e-3) than the tolerances below (1e-6)."""
    with torch.no_grad():
        norm.weight.mul_(8.0)
        for proj in attn_out:
            proj.weight.mul_(30.0)


@pytest.fixture(scope="module")
def llama(tok):
    model = make_tiny_model(len(tok))
    sensitise(model.model.norm, [layer.self_attn.o_proj for layer in model.model.layers])
    return model


@pytest.fixture(scope="module")
def gpt2(tok):
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=len(tok), n_positions=64)
    model = GPT2LMHeadModel(config).eval()
    sensitise(model.transformer.ln_f, [block.attn.c_proj for block in model.transformer.h])
    return model


@pytest.fixture(params=["llama", "gpt2"])
def model(request, llama, gpt2):
    return {"llama": llama, "gpt2": gpt2}[request.param]


def n_tokens(tok) -> int:
    return len(tok(PROMPT, add_special_tokens=False).input_ids)


def test_trace_modules_by_family(llama, gpt2):
    assert trace_modules(llama) == TraceModules(
        "model.layers.{}", "model.layers.{}.mlp", "model.layers.{}.self_attn", "model.embed_tokens")
    assert trace_modules(gpt2) == TraceModules(
        "transformer.h.{}", "transformer.h.{}.mlp", "transformer.h.{}.attn", "transformer.wte")
    with pytest.raises(ModelLoadError, match="layout"):
        trace_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_subject_range_covers_exactly_the_subject(tok):
    s0, s1 = subject_token_range(tok, PROMPT, SUBJECT)
    pieces = [tok.decode([i]) for i in tok(PROMPT, add_special_tokens=False).input_ids]
    assert "".join(pieces[s0:s1]).strip() == SUBJECT
    assert SUBJECT.split()[0] not in "".join(pieces[:s0] + pieces[s1:])
    assert subject_token_range(tok, PROMPT, "eiffel tower") == (s0, s1)  # any case


def test_missing_subject_raises(llama, tok):
    with pytest.raises(InvalidEditError, match="does not occur"):
        trace(llama, tok, PROMPT, "Louvre")
    with pytest.raises(InvalidEditError):
        trace(llama, tok, PROMPT, "  ")


@pytest.mark.parametrize("kind", ["hidden", "mlp", "attn"])
def test_shapes_and_probabilities(model, tok, kind):
    result = trace(model, tok, PROMPT, SUBJECT, kind=kind, samples=3)
    assert result.kind == kind and result.layers == 2
    assert result.scores.shape == (2, n_tokens(tok))
    assert np.all(result.scores >= 0) and np.all(result.scores <= 1)
    assert 0 < result.clean_prob <= 1 and 0 < result.corrupted_prob <= 1
    assert abs(result.clean_prob - result.corrupted_prob) > 1e-3  # the noise reached it
    # tokens before the subject never see the noise: restoring them changes nothing
    s0, _ = result.subject_range
    assert s0 > 0 and np.allclose(result.scores[:, :s0], result.corrupted_prob)


def test_restoring_everything_gives_back_the_clean_run(model, tok):
    tracer = CausalTracer(model, tok, PROMPT, SUBJECT, samples=4)
    assert abs(tracer.clean_prob - tracer.corrupted_prob) > 1e-3
    all_tokens = range(n_tokens(tok))
    assert tracer.restored_prob("hidden", [0], all_tokens) == pytest.approx(
        tracer.clean_prob, abs=1e-6)
    # the last block's output at the last token decides the prediction alone
    assert tracer.restored_prob("hidden", [1], [n_tokens(tok) - 1]) == pytest.approx(
        tracer.clean_prob, abs=1e-6)
    # restoring nothing is the corrupted run
    assert tracer.restored_prob("mlp", [0, 1], []) == pytest.approx(tracer.corrupted_prob,
                                                                    abs=1e-6)


def test_scores_land_on_their_layer_and_token(model, tok):
    result = trace(model, tok, PROMPT, SUBJECT, kind="hidden", samples=3)
    last = n_tokens(tok) - 1
    # the last block's output matters only at the last token
    assert result.scores[1, last] == pytest.approx(result.clean_prob, abs=1e-6)
    np.testing.assert_allclose(result.scores[1, :last], result.corrupted_prob, atol=1e-6)
    assert abs(result.scores[1, last] - result.corrupted_prob) > 1e-3


def test_windows_are_centred_and_clipped(llama, tok):
    tracer = CausalTracer(llama, tok, PROMPT, SUBJECT, samples=2)
    assert tracer.window(0, 10) == [0, 1] and tracer.window(1, 10) == [0, 1]
    assert tracer.window(0, 2) == [0] and tracer.window(1, 2) == [0, 1]
    assert tracer.window(1, 1) == [1]
    one = tracer.result("mlp", window=1).scores
    masks = torch.eye(n_tokens(tok), dtype=torch.bool)
    np.testing.assert_allclose(one[1], tracer.restored_probs("mlp", [1], masks), atol=1e-7)


def test_replaying_lower_blocks_matches_recomputing_them(model, tok):
    tracer = CausalTracer(model, tok, PROMPT, SUBJECT, samples=3)
    masks = torch.eye(n_tokens(tok), dtype=torch.bool)
    for kind in ("hidden", "mlp", "attn"):
        fast = tracer.restored_probs(kind, [1], masks)
        tracer.skip_lower = False
        slow = tracer.restored_probs(kind, [1], masks)
        tracer.skip_lower = True
        np.testing.assert_allclose(fast, slow, atol=1e-6)


def test_answer_token_and_greedy_default(llama, tok):
    ids = torch.tensor([tok(PROMPT, add_special_tokens=False).input_ids])
    with torch.no_grad():
        probs = torch.softmax(llama(input_ids=ids).logits[0, -1], -1)
    greedy = trace(llama, tok, PROMPT, SUBJECT, samples=2)
    assert greedy.clean_prob == pytest.approx(float(probs.max()), abs=1e-5)
    paris = tok(" Paris", add_special_tokens=False).input_ids[0]
    given = trace(llama, tok, PROMPT, SUBJECT, answer="Paris", samples=2)
    assert given.answer == "Paris"
    assert given.clean_prob == pytest.approx(float(probs[paris]), abs=1e-5)


def test_same_seed_same_scores(llama, tok):
    a = trace(llama, tok, PROMPT, SUBJECT, kind="mlp", samples=3, seed=7)
    b = trace(llama, tok, PROMPT, SUBJECT, kind="mlp", samples=3, seed=7)
    c = trace(llama, tok, PROMPT, SUBJECT, kind="mlp", samples=3, seed=8)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.corrupted_prob == b.corrupted_prob
    assert a.corrupted_prob != c.corrupted_prob


def test_no_special_tokens(llama, tok):
    assert tok.bos_token is not None  # the tiny tokenizer has one: it must not be prepended
    result = trace(llama, tok, PROMPT, SUBJECT, samples=2)
    assert "".join(result.tokens) == PROMPT
    assert not set(tok.all_special_tokens) & set(result.tokens)


def _result(kind: str, scores, corrupted: float, subject=(0, 2), tokens=None, answer="x",
            prompt="", window=1) -> TraceResult:
    scores = np.asarray(scores, dtype=float)
    return TraceResult(tokens=tokens or ["a"] * scores.shape[1], subject_range=subject,
                       answer=answer, kind=kind, scores=scores, clean_prob=0.9,
                       corrupted_prob=corrupted, layers=scores.shape[0], prompt=prompt,
                       window=window)


def test_average_indirect_effect_uses_last_subject_token():
    r1 = _result("mlp", [[0.9, 0.2, 0.9], [0.0, 0.5, 0.0], [0.0, 0.3, 0.0]], 0.1)
    r2 = _result("mlp", [[0.9, 0.1, 0.9], [0.0, 0.3, 0.0], [0.0, 0.4, 0.0]], 0.1)
    summary = average_indirect_effect([r1, r2])
    np.testing.assert_allclose(summary["effect"], [0.05, 0.3, 0.25])
    assert summary["best_layer"] == 1 and summary["records"] == 2
    with pytest.raises(ValueError):
        average_indirect_effect([r1, _result("hidden", r2.scores, 0.1)])


def test_heatmaps_are_written(llama, tok, tmp_path):
    results = [trace(llama, tok, PROMPT, SUBJECT, kind=k, samples=2)
               for k in ("hidden", "mlp", "attn")]
    assert results[1].window == min(10, results[1].layers) and results[0].window == 1
    one = render_heatmap(results[1], tmp_path / "mlp.png")
    with Image.open(one) as image:
        image.load()
        assert image.format == "PNG"
        width, height = image.size
        assert height > n_tokens(tok) * CELL_H
        colours = {c for _, c in image.convert("RGB").getcolors(maxcolors=1 << 20)}
        assert any(g > r + 40 and g > b + 20 for r, g, b in colours)  # green cells drawn
    three = render_heatmaps(results, tmp_path / "sub" / "all.png")
    with Image.open(three) as image:
        image.load()
        assert width <= image.size[0] <= MAX_WIDTH and image.size[1] > n_tokens(tok) * CELL_H
        assert image.text["Title"] == trace_title(results)
        assert f"recalls '{answer_text(results[0])}' for" in image.text["Title"]


PARIS = ["The", " E", "iff", "el", " Tower", " is", " located", " in"]


def _three(layers: int, tokens=PARIS, prompt="The Eiffel Tower is located in"):
    rng = np.random.default_rng(0)
    return [_result(kind, rng.random((layers, len(tokens))) * 0.8, 0.02, subject=(1, 5),
                    tokens=tokens, answer=" Paris", prompt=prompt,
                    window=1 if kind == "hidden" else 10) for kind in ("hidden", "mlp", "attn")]


@pytest.mark.parametrize("layers", [2, 24, 30, 48])
def test_trace_figure_fits_the_admin_tab(layers, tmp_path):
    """Readable in the Admin tab: never wider than MAX_WIDTH (<= 1300 px, so a 1024 px
    window shrinks it little), a row per token tall enough for its label, a title that
    names the prompt and the answer, and a caption per panel saying what was restored."""
    results = _three(layers)
    path = render_heatmaps(results, tmp_path / "trace.png")
    with Image.open(path) as image:
        image.load()
        width, height = image.size
        assert 700 <= width <= MAX_WIDTH <= 1300
        assert len(PARIS) * CELL_H < height < 3 * (len(PARIS) * CELL_H + 260)
        assert image.text["Title"] == ("Where the model recalls 'Paris' for: "
                                       "The Eiffel Tower is located in")
    assert "residual stream" in caption(results[0])
    assert "MLP" in caption(results[1]) and "window of 10 layers" in caption(results[1])
    assert "attention" in caption(results[2])


def test_trace_title_of_a_chat_transcript_names_only_the_last_line():
    prompt = "<|im_start|>user\nWhere is the Eiffel Tower?<|im_end|>\n<|im_start|>assistant\n" \
             "The Eiffel Tower is located in"
    title = trace_title(_three(4, prompt=prompt))
    assert title == "Where the model recalls 'Paris' for: … The Eiffel Tower is located in"


def test_admin_trace_image_uses_a_copy_and_is_cached(tiny_llm, store, embedder, tmp_path):
    """The admin tab's heat map: rendered from a private copy (the live model never carries
    tracing hooks), cached for the same edit and weight state."""
    from PIL import Image

    from assistant.memory import EditMemory
    from assistant.router import Assistant
    from config import router_config
    from editing.deltas import weights_checksum
    from editing.promote import WeightEdits

    memory = EditMemory(store, embedder, None)
    assistant = Assistant(tiny_llm, embedder, store, memory, router_config())
    weights = WeightEdits.for_assistant(assistant, tmp_path)
    edit = store.add_edit("Eiffel Tower", "The Eiffel Tower is in", "Rome")
    before = weights_checksum(tiny_llm.model)
    path = weights.trace_image(edit)
    assert Image.open(path).size[0] > 200
    assert weights_checksum(tiny_llm.model) == before
    assert all(not m._forward_hooks and not m._forward_pre_hooks
               for m in tiny_llm.model.modules())
    mtime = path.stat().st_mtime_ns
    assert weights.trace_image(edit) == path and path.stat().st_mtime_ns == mtime


def test_fact_prompt_traces_the_answer_not_the_end_of_the_question():
    """An edit made in chat is a question; its own next token is <|im_end|>, so the trace
    reads a statement wording, or the chat text and the reply up to the answer."""
    from editing.trace import fact_prompt

    assert fact_prompt("Where is the Eiffel Tower?", "Eiffel Tower", "<chat>",
                       "The Eiffel Tower is in Paris.") == "The Eiffel Tower is located in"
    assert fact_prompt("What is the office wifi password?", "office wifi password", "<chat>",
                       "The office wifi password is Banana42.") == \
        "<chat>The office wifi password is"
    assert fact_prompt("How many floors does the office have?", "office", "<chat>",
                       "The office has 12 floors.") == "<chat>The office has"
    assert fact_prompt("The Eiffel Tower is in", "Eiffel Tower", "<chat>", "") == \
        "The Eiffel Tower is in"
    # nothing that looks like an answer: the question itself, as before
    assert fact_prompt("Is the office open?", "office", "<chat>", "yes it is") == \
        "Is the office open?"
