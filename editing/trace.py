"""Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT").

Why: ROME/MEMIT write a fact into the MLP of one layer, and the right layer is the one whose
state at the subject's last token carries the fact. Causal tracing measures that directly:

1. clean run: the prompt as is; the answer token's probability at the last position;
2. corrupted runs: Gaussian noise added to the input embeddings of the subject's tokens
   (`samples` noisy copies, one batch, fixed by `seed`) - the model mostly loses the answer;
3. restored runs: the corrupted runs again, but one module's clean output is put back at one
   token (kind "hidden": the output of decoder block l; "mlp"/"attn": that sublayer's output in
   a window of `window` layers centred on l). The probability that comes back is the state's
   indirect effect.

Everything goes through forward hooks on modules found by name (`TraceModules`), so any
Llama- or GPT-2-style Hugging Face model works without model-specific forward code.

Speed: the rows that restore different tokens at the same layer(s) share one batch, and the
blocks below the first restored layer are the same in every corrupted run, so they are replayed
from the one corrupted run instead of being recomputed (`CausalTracer.skip_lower`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from assistant.phrasings import statement_forms
from editing.locate import first_tensor, subject_spans
from errors import InvalidEditError, ModelLoadError

KINDS = ("hidden", "mlp", "attn")
NOISE_SCALE = 3.0  # default noise std = this x the std of the input-embedding matrix (paper: 3)
MAX_BATCH_TOKENS = 4096  # rows x prompt tokens per forward; bounds memory on long prompts


@dataclass(frozen=True)
class TraceModules:
    """Names of the modules tracing hooks; "{}" stands for the layer index."""

    layer_template: str
    mlp_template: str
    attn_template: str
    embed: str


# (block, mlp, attention, embedding) name suffixes per family; a wrapper (e.g. PEFT's
# "base_model.model.") may add a prefix.
_FAMILIES = (
    ("model.layers.{}", "model.layers.{}.mlp", "model.layers.{}.self_attn", "model.embed_tokens"),
    ("transformer.h.{}", "transformer.h.{}.mlp", "transformer.h.{}.attn", "transformer.wte"),
)


def trace_modules(model: torch.nn.Module) -> TraceModules:
    """Recognise a Llama-style or GPT-2-style model by its module names."""
    names = {name for name, _ in model.named_modules()}
    for layer, mlp, attn, embed in _FAMILIES:
        first = layer.format(0)
        hits = sorted((n for n in names if n == first or n.endswith("." + first)), key=len)
        for hit in hits:
            prefix = hit[: len(hit) - len(first)]
            needed = [prefix + mlp.format(0), prefix + attn.format(0), prefix + embed]
            if all(n in names for n in needed):
                return TraceModules(prefix + layer, prefix + mlp, prefix + attn, prefix + embed)
    raise ModelLoadError(
        f"causal tracing does not know the layout of {type(model).__name__}: expected Llama-style "
        "modules (model.layers.N.mlp / .self_attn, model.embed_tokens) or GPT-2-style ones "
        "(transformer.h.N.mlp / .attn, transformer.wte)"
    )


def count_layers(model: torch.nn.Module, modules: TraceModules) -> int:
    names = {name for name, _ in model.named_modules()}
    n = 0
    while modules.layer_template.format(n) in names:
        n += 1
    return n


@dataclass
class TraceResult:
    """Scores of one traced prompt for one kind of state."""

    tokens: list[str]  # decoded prompt tokens
    subject_range: tuple[int, int]  # token indices [start, end) of the subject
    answer: str
    kind: str  # "hidden" | "mlp" | "attn"
    scores: np.ndarray  # (layers, tokens): answer probability with that state restored
    clean_prob: float
    corrupted_prob: float
    layers: int
    prompt: str = ""
    window: int = 1  # layers restored together around each layer (mlp/attn); 1 for hidden

    def to_dict(self, digits: int = 5) -> dict[str, Any]:
        return {
            "prompt": self.prompt, "tokens": self.tokens,
            "subject_range": list(self.subject_range), "answer": self.answer,
            "kind": self.kind, "layers": self.layers, "window": self.window,
            "clean_prob": round(self.clean_prob, digits),
            "corrupted_prob": round(self.corrupted_prob, digits),
            "scores": np.round(self.scores, digits).tolist(),
        }


# -- tokens ------------------------------------------------------------------------------------
def subject_char_span(prompt: str, subject: str) -> tuple[int, int]:
    """Character span of the subject in the prompt: exact case first, then any case."""
    subject = subject.strip()
    if not subject:
        raise InvalidEditError("the subject is empty")
    spans = subject_spans(prompt, subject)
    if not spans:
        raise InvalidEditError(f"the subject {subject!r} does not occur in the prompt {prompt!r}")
    return spans[0]


def _offsets(tok: PreTrainedTokenizerBase, prompt: str, ids: list[int]) -> list[tuple[int, int]]:
    if getattr(tok, "is_fast", False):
        enc = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(o) for o in enc["offset_mapping"]]
    # Slow tokenizers: character ends from decoding growing prefixes (approximate but monotone).
    ends = [len(tok.decode(ids[: i + 1])) for i in range(len(ids))]
    return list(zip([0] + ends[:-1], ends))


def subject_token_range(tok: PreTrainedTokenizerBase, prompt: str,
                        subject: str) -> tuple[int, int]:
    """Token indices [start, end) of the tokens that overlap the subject's characters."""
    c0, c1 = subject_char_span(prompt, subject)
    ids = tok(prompt, add_special_tokens=False).input_ids
    hit = [i for i, (a, b) in enumerate(_offsets(tok, prompt, ids)) if b > a and a < c1 and b > c0]
    if not hit:
        raise InvalidEditError(f"the subject {subject!r} maps to no token of {prompt!r}")
    return hit[0], hit[-1] + 1


def answer_token(tok: PreTrainedTokenizerBase, answer: str) -> int:
    """First token of " answer": what the model predicts right after the prompt."""
    if not answer.strip():
        raise InvalidEditError("the answer is empty")
    ids = tok(" " + answer.strip(), add_special_tokens=False).input_ids
    if not ids:
        raise InvalidEditError(f"the answer {answer!r} encodes to no token")
    return ids[0]


# -- hooks -------------------------------------------------------------------------------------
def _with_first(output: Any, value: torch.Tensor) -> Any:
    return (value,) + tuple(output[1:]) if isinstance(output, tuple) else value


@contextlib.contextmanager
def _hooks(model: torch.nn.Module,
           hooks: dict[str, Callable[[Any], Any | None]]) -> Iterator[None]:
    """Forward hooks by module name; a hook gets the output and may return a replacement."""
    handles = []
    try:
        for name, fn in hooks.items():
            module = model.get_submodule(name)
            handles.append(module.register_forward_hook(
                lambda _m, _args, out, fn=fn: fn(out)))
        yield
    finally:
        for handle in handles:
            handle.remove()


class _Replay(torch.nn.Module):
    """Stands in for a decoder block below the restored layers: returns that block's recorded
    corrupted output, repeated for every group of rows, without computing anything."""

    def __init__(self, output: Any, repeats: int) -> None:
        super().__init__()
        self.output = output
        self.repeats = repeats

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        h = first_tensor(self.output)
        return _with_first(self.output, h.repeat(self.repeats, *([1] * (h.dim() - 1))))


@contextlib.contextmanager
def _replayed(model: torch.nn.Module, template: str, outputs: list[Any],
              upto: int, repeats: int) -> Iterator[None]:
    """Swap blocks [0, upto) for _Replay modules; put the real ones back afterwards."""
    swapped = []
    try:
        for i in range(upto):
            parent_name, _, child = template.format(i).rpartition(".")
            parent = model.get_submodule(parent_name)
            swapped.append((parent, child, parent.get_submodule(child)))
            setattr(parent, child, _Replay(outputs[i], repeats))
        yield
    finally:
        for parent, child, original in reversed(swapped):
            setattr(parent, child, original)


# -- tracing -----------------------------------------------------------------------------------
class CausalTracer:
    """One prompt's clean and corrupted runs, kept so that many restorations can reuse them.

    While a run is in progress the model carries hooks (and, with skip_lower, stand-in blocks),
    so do not trace a model that another thread is generating with at the same time.
    """

    def __init__(self, model: torch.nn.Module, tok: PreTrainedTokenizerBase, prompt: str,
                 subject: str, answer: str | None = None, samples: int = 10,
                 noise: float | None = None, seed: int = 0,
                 modules: TraceModules | None = None) -> None:
        if samples < 1:
            raise ValueError("samples must be at least 1")
        self.model = model.eval()
        self.tok = tok
        self.prompt = prompt
        self.subject = subject
        self.samples = samples
        self.modules = modules or trace_modules(model)
        self.n_layers = count_layers(model, self.modules)
        self.skip_lower = True  # replay the unchanged lower blocks (False: recompute; for tests)
        self.ids = tok(prompt, add_special_tokens=False).input_ids
        if not self.ids:
            raise InvalidEditError("the prompt is empty")
        self.tokens = [tok.decode([i]) for i in self.ids]
        self.subject_range = subject_token_range(tok, prompt, subject)
        embed = model.get_submodule(self.modules.embed)
        self.device = embed.weight.device
        if noise is None:
            noise = NOISE_SCALE * float(embed.weight.detach().float().std())
        self.noise_std = float(noise)
        s0, s1 = self.subject_range
        gen = torch.Generator().manual_seed(seed)
        self.noise = (torch.randn((samples, s1 - s0, embed.weight.shape[1]), generator=gen)
                      * self.noise_std).to(self.device, embed.weight.dtype)
        self._clean_run(answer)
        self._corrupted_run()

    # runs ---------------------------------------------------------------------------------
    def _forward(self, rows: int) -> torch.Tensor:
        """Last-position next-token distributions, (rows, vocab)."""
        ids = torch.tensor([self.ids] * rows, device=self.device)
        try:
            out = self.model(input_ids=ids, use_cache=False, logits_to_keep=1)
        except TypeError:  # models without logits_to_keep
            out = self.model(input_ids=ids, use_cache=False)
        return torch.softmax(out.logits[:, -1].float(), dim=-1)

    def _templates(self) -> dict[str, str]:
        m = self.modules
        return {"hidden": m.layer_template, "mlp": m.mlp_template, "attn": m.attn_template}

    @torch.inference_mode()
    def _clean_run(self, answer: str | None) -> None:
        self.clean: dict[str, list[torch.Tensor | None]] = {
            k: [None] * self.n_layers for k in KINDS}
        hooks = {}
        for kind, template in self._templates().items():
            for layer in range(self.n_layers):
                def keep(out: Any, kind: str = kind, layer: int = layer) -> None:
                    self.clean[kind][layer] = first_tensor(out)[0].detach().clone()
                hooks[template.format(layer)] = keep
        with _hooks(self.model, hooks):
            probs = self._forward(1)[0]
        if answer is None:
            self.answer_id = int(probs.argmax())
            self.answer = self.tok.decode([self.answer_id]).strip()
        else:
            self.answer_id = answer_token(self.tok, answer)
            self.answer = answer.strip()
        self.clean_prob = float(probs[self.answer_id])

    def _noise_hook(self, groups: int) -> Callable[[Any], Any]:
        s0, s1 = self.subject_range

        def add_noise(out: Any) -> Any:
            h = first_tensor(out).clone()
            view = h.view(groups, self.samples, *h.shape[1:])
            view[:, :, s0:s1] += self.noise
            return _with_first(out, h)
        return add_noise

    @torch.inference_mode()
    def _corrupted_run(self) -> None:
        self.corrupted_blocks: list[Any] = [None] * self.n_layers
        hooks: dict[str, Callable[[Any], Any | None]] = {self.modules.embed: self._noise_hook(1)}
        for layer in range(self.n_layers):
            def keep(out: Any, layer: int = layer) -> None:
                self.corrupted_blocks[layer] = out
            hooks[self.modules.layer_template.format(layer)] = keep
        with _hooks(self.model, hooks):
            probs = self._forward(self.samples)
        self.corrupted_prob = float(probs[:, self.answer_id].mean())

    @torch.inference_mode()
    def restored_probs(self, kind: str, layers: Sequence[int], masks: torch.Tensor) -> np.ndarray:
        """Mean answer probability over the noisy samples for each row of `masks` (groups,
        tokens; True = restore the clean `kind` output at that token in every layer of
        `layers`)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        layers = sorted({int(layer) for layer in layers})
        if not layers or layers[0] < 0 or layers[-1] >= self.n_layers:
            raise ValueError(f"layers must lie in [0, {self.n_layers}): {layers}")
        masks = torch.as_tensor(masks, dtype=torch.bool, device=self.device)
        if masks.dim() != 2 or masks.shape[1] != len(self.ids):
            raise ValueError(f"masks must be (groups, {len(self.ids)}), not {tuple(masks.shape)}")
        per_batch = max(1, MAX_BATCH_TOKENS // (self.samples * len(self.ids)))
        found = []
        for start in range(0, masks.shape[0], per_batch):
            found.append(self._restore_batch(kind, layers, masks[start:start + per_batch]))
        return np.concatenate(found)

    def _restore_batch(self, kind: str, layers: list[int], masks: torch.Tensor) -> np.ndarray:
        groups = masks.shape[0]
        where = masks[:, None, :, None]  # (groups, 1, tokens, 1) over (groups, samples, T, D)
        hooks: dict[str, Callable[[Any], Any | None]] = {
            self.modules.embed: self._noise_hook(groups)}
        template = self._templates()[kind]
        for layer in layers:
            clean = self.clean[kind][layer]

            def restore(out: Any, clean: torch.Tensor = clean) -> Any:
                h = first_tensor(out)
                view = h.view(groups, self.samples, *h.shape[1:])
                return _with_first(out, torch.where(where, clean, view).view_as(h))
            hooks[template.format(layer)] = restore
        upto = layers[0] if self.skip_lower else 0
        with _replayed(self.model, self.modules.layer_template, self.corrupted_blocks, upto,
                       groups), _hooks(self.model, hooks):
            probs = self._forward(groups * self.samples)
        return probs[:, self.answer_id].view(groups, self.samples).mean(1).cpu().numpy()

    def restored_prob(self, kind: str, layers: Sequence[int], tokens: Sequence[int]) -> float:
        """Answer probability with `kind` restored at `tokens` in `layers` (one setting)."""
        mask = torch.zeros((1, len(self.ids)), dtype=torch.bool)
        mask[0, list(tokens)] = True
        return float(self.restored_probs(kind, layers, mask)[0])

    def window(self, layer: int, window: int) -> list[int]:
        """The `window` layers centred on `layer`, clipped to the model."""
        lo = layer - window // 2
        return list(range(max(0, lo), min(self.n_layers, lo + max(1, window))))

    def result(self, kind: str = "hidden", window: int = 10) -> TraceResult:
        """Scores for every (layer, token): single layers for "hidden", windows otherwise."""
        n_tokens = len(self.ids)
        scores = np.full((self.n_layers, n_tokens), self.corrupted_prob, dtype=np.float64)
        # Tokens before the subject never see the noise (causal attention): restoring them
        # changes nothing, so their score is the corrupted probability without a run.
        first = self.subject_range[0]
        masks = torch.eye(n_tokens, dtype=torch.bool)[first:]
        for layer in range(self.n_layers):
            layers = [layer] if kind == "hidden" else self.window(layer, window)
            scores[layer, first:] = self.restored_probs(kind, layers, masks)
        return TraceResult(tokens=list(self.tokens), subject_range=self.subject_range,
                           answer=self.answer, kind=kind, scores=scores,
                           clean_prob=self.clean_prob, corrupted_prob=self.corrupted_prob,
                           layers=self.n_layers, prompt=self.prompt,
                           window=1 if kind == "hidden" else min(window, self.n_layers))


def fact_prompt(prompt: str, subject: str, chat_text: str, reply: str) -> str:
    """The text whose next token is the fact's answer, for tracing an edit.

    A completion prompt ("The Eiffel Tower is in") is traced as it is. A question's own next
    token is the end of the user's turn, so a question is traced through another statement
    wording of its relation ("The Eiffel Tower is located in"), else through the chat text
    and the model's reply up to the first word the question did not name that looks like an
    answer (a capitalised word or a number): "...assistant\nThe Eiffel Tower is located in"."""
    if not prompt.rstrip().endswith("?"):
        return prompt
    forms = statement_forms(prompt, subject, 1)
    if forms:
        return forms[0]
    asked = {w.strip(".,?!'\"").lower() for w in prompt.split()}
    words = reply.split(" ")
    for i, word in enumerate(words[1:], 1):
        clean = word.strip(".,?!'\"()")
        if clean and clean.lower() not in asked and (clean[0].isupper() or
                                                     any(c.isdigit() for c in clean)):
            return chat_text + " ".join(words[:i])
    return prompt


def trace(model: torch.nn.Module, tok: PreTrainedTokenizerBase, prompt: str, subject: str,
          answer: str | None = None, kind: str = "hidden", samples: int = 10,
          noise: float | None = None, window: int = 10, seed: int = 0) -> TraceResult:
    """Causal trace of one prompt: where in the network the answer is carried.

    `answer` None traces the model's own greedy next token (what it knows, right or wrong).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    tracer = CausalTracer(model, tok, prompt, subject, answer=answer, samples=samples,
                          noise=noise, seed=seed)
    return tracer.result(kind, window)


def average_indirect_effect(results: list[TraceResult]) -> dict[str, Any]:
    """Per layer, the mean over prompts of (restored - corrupted) probability at the subject's
    last token, and the layer where it peaks: where the edit should write."""
    if not results:
        raise ValueError("no trace results to average")
    kinds = {r.kind for r in results}
    layers = {r.layers for r in results}
    if len(kinds) != 1 or len(layers) != 1:
        raise ValueError(f"results mix kinds {sorted(kinds)} or layer counts {sorted(layers)}")
    effects = np.array([r.scores[:, r.subject_range[1] - 1] - r.corrupted_prob for r in results])
    mean = effects.mean(axis=0)
    best = int(mean.argmax())
    return {"kind": kinds.pop(), "records": len(results), "layers": layers.pop(),
            "effect": [float(x) for x in mean], "best_layer": best,
            "best_effect": float(mean[best]),
            "clean_prob": float(np.mean([r.clean_prob for r in results])),
            "corrupted_prob": float(np.mean([r.corrupted_prob for r in results]))}
