"""`apply_mend`: requests in, a low-rank `Delta` out: one forward/backward pass per editor
pass (plus one for the edits a retry pass serves).

The edit texts are the ones ROME optimises over (`rewriting_pieces`: the prompt, and when the
config says so chat-templated questions), so training and editing see the same inputs.

A batch larger than the editor was trained on is not the sum of its edits' updates: at the last
blocks every prompt's inputs look alike, so each of 20 summed updates also fires on the other
19 prompts and the sum overshoots (zsRE batch of 20: reliability 0.256). Instead each edit is
computed alone, and one update per weight is fitted to reproduce, at every edit's own tokens,
the change its single update makes there (`merged_updates`, a ridge least squares in the dual).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from config import REPO_ROOT
from editing.deltas import Delta, model_fingerprint
from editing.hparams import MendConfig, edited_modules
from editing.locate import (StopForward, as_param_layout, block_position, get_module,
                            hooked, weight_out_in)
from editing.mend.core import (TextBatch, edited, editor_updates, frozen, gradient_factors,
                               loss_positions, scored_logits, text_batch)
from editing.mend.network import MendEditor, file_sha256
from editing.rome.compute import ChatFormat, EditRequest, rewriting_pieces
from errors import ConfigError

log = logging.getLogger(__name__)

_EDITORS: dict[tuple, MendEditor] = {}


def new_editor(model: torch.nn.Module, cfg: MendConfig) -> MendEditor:
    """An untrained editor for the weights the config names (one gradient step as is)."""
    shapes = {}
    for name in edited_modules(cfg):
        out_features, in_features = weight_out_in(get_module(model, name)).shape
        shapes[name] = (int(in_features), int(out_features))
    return MendEditor(shapes, cfg.rank, cfg.initial_rate, cfg.std_floor)


def editor_path(cfg: MendConfig) -> Path:
    return REPO_ROOT / cfg.weights


def load_editor(model: torch.nn.Module, cfg: MendConfig, path: Path | None = None) -> MendEditor:
    """The trained editor of this config, checksum checked; cached per file and content."""
    path = Path(path) if path else editor_path(cfg)
    if not path.exists():
        raise ConfigError(f"no trained MEND editor at {path}: train one with "
                          "`python -m editing.mend.train --write`")
    digest = file_sha256(path)
    if path == editor_path(cfg) and cfg.weights_sha256 and digest != cfg.weights_sha256:
        raise ConfigError(f"the MEND editor {path} does not match its checksum in the config "
                          f"(sha256 {digest[:12]}..., expected {cfg.weights_sha256[:12]}...); "
                          "restore the file or retrain it")
    key = (str(path), digest, tuple(edited_modules(cfg)))
    if key not in _EDITORS:
        editor = new_editor(model, cfg)
        editor.load_tensors(path)
        editor.eval()
        for p in editor.parameters():
            p.requires_grad_(False)
        _EDITORS[key] = editor
    return _EDITORS[key]


def edit_texts(requests: list[EditRequest], chat_format: ChatFormat | None,
               chat_prompts: bool) -> tuple[list[tuple[str, str]], torch.Tensor]:
    """(prefix, target) texts of all requests and per-text loss weights (1 / texts of its
    edit, so each edit pulls with the same strength however many texts it has)."""
    pieces, weights = [], []
    for request in requests:
        own = [(prefix, target) for prefix, _, target in
               rewriting_pieces(request, [""], chat_format if chat_prompts else None)]
        pieces += own
        weights += [1.0 / len(own)] * len(own)
    return pieces, torch.tensor(weights)


def edit_batch(tok, requests: list[EditRequest], cfg: MendConfig,
               chat_format: ChatFormat | None) -> tuple[TextBatch, torch.Tensor]:
    """The requests' edit texts as one batch and the per-text loss weights."""
    pieces, weights = edit_texts(requests, chat_format, cfg.chat_prompts)
    return text_batch(tok, pieces), weights


Updates = dict[str, tuple[torch.Tensor, torch.Tensor]]


def ridge_dual_solve(x: torch.Tensor, rhs: torch.Tensor, ridge: float) -> torch.Tensor:
    """(X X^T + r I)^-1 rhs, r = `ridge` times the mean of X X^T's diagonal: the dual side of
    a least-squares update fitted at the inputs X (rows), so the ridge is scale-free."""
    gram = x @ x.T
    gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    return torch.linalg.solve(gram, rhs)


def mend_updates(model: torch.nn.Module, editor: MendEditor, names: list[str], batch,
                 weights: torch.Tensor, passes: int, scale: float = 1.0,
                 start: Updates | None = None) -> Updates:
    """The edit as (left, right) factors per weight, (out, in) layout. Each pass reads the
    gradient of the model as edited so far (from `start`, if given) and adds `scale` times
    the editor's update."""
    updates: Updates = dict(start or {})
    for _ in range(passes):
        with frozen(model), edited(model, updates):
            factors, _ = gradient_factors(model, names, batch, weights)
        with torch.no_grad():
            step = editor_updates(editor, factors)
            step = {name: (left * scale, right) for name, (left, right) in step.items()}
        updates = {name: (torch.cat([updates[name][0], left], 1),
                          torch.cat([updates[name][1], right], 0)) if name in updates
                   else (left, right) for name, (left, right) in step.items()}
    return updates


@torch.no_grad()
def unlanded(model: torch.nn.Module, tok, requests: list[EditRequest],
             updates: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> list[EditRequest]:
    """The requests whose prompt the edited model does not yet continue with the target
    (teacher forced: every target token must be the top prediction)."""
    batch = text_batch(tok, [(r.prompt, " " + r.target_new.strip()) for r in requests])
    with edited(model, updates):
        right = scored_logits(model, batch).argmax(-1) == batch.targets
    said = batch.per_text_mean(right.float()) == 1.0
    return [r for r, done in zip(requests, said.tolist()) if not done]


def edit_updates(model: torch.nn.Module, tok, editor: MendEditor, requests: list[EditRequest],
                 cfg: MendConfig, chat_format: ChatFormat | None = None
                 ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], int]:
    """The update writing `requests` (all in one step, `cfg.edit_steps` passes), then, with
    `cfg.retry_scale`, one more pass at that scale driven only by the requests the first
    left unsaid: (updates, how many were retried). An edit that does not land is refused by
    the promotion guard; a smaller second step lands most of them at a small cost in
    locality. Only batches the editor was trained on (up to `batch_edits_max`) are retried:
    a larger batch's first pass already damages the model, and a second pass read from that
    model makes it worse (a batch of 20 on zsRE: reliability 0.256 -> 0.050; BENCHMARKS.md)."""
    names = edited_modules(cfg)
    batch, weights = edit_batch(tok, requests, cfg, chat_format)
    updates = mend_updates(model, editor, names, batch, weights, cfg.edit_steps, cfg.edit_scale)
    retry = cfg.retry_scale > 0 and len(requests) <= cfg.batch_edits_max
    missed = unlanded(model, tok, requests, updates) if retry else []
    if missed:
        batch, weights = edit_batch(tok, missed, cfg, chat_format)
        updates = mend_updates(model, editor, names, batch, weights, 1, cfg.retry_scale,
                               start=updates)
    return updates, len(missed)


@torch.no_grad()
def module_inputs(model: torch.nn.Module, name: str, batch: TextBatch, weights: torch.Tensor,
                  updates: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The inputs of module `name` at the tokens that carry a text's loss (N, in), with
    `updates` applied below it; the forward stops at the module."""
    captured: dict[str, torch.Tensor] = {}

    def pre(_module, args):
        captured["x"] = args[0].detach()
        raise StopForward

    with edited(model, updates), hooked(get_module(model, name), pre=pre):
        try:
            model(input_ids=batch.ids, attention_mask=batch.mask, use_cache=False)
        except StopForward:
            pass
    return captured["x"][loss_positions(batch, weights)]


def merged_updates(model: torch.nn.Module, tok, editor: MendEditor, requests: list[EditRequest],
                   cfg: MendConfig, chat_format: ChatFormat | None = None,
                   progress: Callable[[str], None] = log.info
                   ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], int]:
    """One update per weight for a batch, fitted to its edits' single updates: (updates, how
    many single edits were retried).

    Weight by weight from the lowest block up, with the merged updates below already in
    place: X stacks the weight's inputs at every edit's loss tokens, R the change each edit's
    own update makes at its own tokens, and the merge is dW = R^T (X X^T + r I)^-1 X, the
    smallest update (Frobenius) that reproduces R up to the ridge r (relative to the mean of
    X X^T's diagonal). Each edit then moves its own prompt as it would alone, and nothing
    else is asked of the update."""
    singles, batches, retried = [], [], 0
    for i, request in enumerate(requests):
        progress(f"MEND: edit {i + 1}/{len(requests)} alone: {request.subject} → "
                 f"{request.target_new}")
        update, missed = edit_updates(model, tok, editor, [request], cfg, chat_format)
        singles.append(update)
        retried += missed
        batches.append(edit_batch(tok, [request], cfg, chat_format))
    names = sorted(edited_modules(cfg),  # stable: forward order inside a block is kept
                   key=lambda name: block_position(None, name, locate=False)[2])
    merged: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name in names:
        progress(f"MEND: merging the batch at {name}")
        inputs, changes = [], []
        for (batch, weights), single in zip(batches, singles):
            x = module_inputs(model, name, batch, weights, merged).double()
            left, right = single[name]
            inputs.append(x)
            changes.append((x @ right.double().T) @ left.double().T)
        x, change = torch.cat(inputs), torch.cat(changes)  # (N, in), (N, out)
        merged[name] = (ridge_dual_solve(x, change, cfg.merge_ridge).T.float(), x.float())
    return merged, retried


def apply_mend(model: torch.nn.Module, tok, requests: list[EditRequest], cfg: MendConfig, *,
               stats_root: Path | None = None, chat_format: ChatFormat | None = None,
               base_fingerprint: str | None = None, committed: dict | None = None,
               progress: Callable[[str], None] = log.info) -> Delta:
    """The registry's signature (editing/registry.py) with the shipped trained editor; MEND
    needs no key statistics and keeps no keys (`stats_root`, `committed` unused)."""
    return mend_delta(model, tok, requests, cfg, load_editor(model, cfg),
                      chat_format=chat_format, base_fingerprint=base_fingerprint,
                      progress=progress)


def mend_delta(model: torch.nn.Module, tok, requests: list[EditRequest], cfg: MendConfig,
               editor: MendEditor, *, chat_format: ChatFormat | None = None,
               base_fingerprint: str | None = None,
               progress: Callable[[str], None] = log.info) -> Delta:
    """One delta writing every request (a batch edit) with `editor`; the model is left
    unchanged."""
    fingerprint = base_fingerprint or model_fingerprint(model)
    merge = len(requests) > cfg.batch_edits_max and cfg.merge_ridge > 0
    progress(f"MEND: {len(requests)} edit(s), {cfg.edit_steps} pass(es)"
             + (", each alone, then merged" if merge else ""))
    if merge:
        updates, retried = merged_updates(model, tok, editor, requests, cfg, chat_format,
                                          progress)
    else:
        updates, retried = edit_updates(model, tok, editor, requests, cfg, chat_format)
    if retried:
        progress(f"MEND: {retried} edit(s) not yet said after the first step: one more pass "
                 f"at scale {cfg.retry_scale}")
    low_rank = {}
    for name, (left, right) in updates.items():
        module = get_module(model, name)
        dtype = module.weight.dtype
        low_rank[f"{name}.weight"] = as_param_layout(module, left.to(dtype).contiguous(),
                                                     right.to(dtype).contiguous())
    return Delta("mend", fingerprint, low_rank=low_rank,
                 meta={"layers": list(cfg.layers), "edits": len(requests),
                       "passes": cfg.edit_steps, "scale": cfg.edit_scale, "retried": retried,
                       "merged": merge,
                       "rank": int(next(iter(updates.values()))[1].shape[0])})
