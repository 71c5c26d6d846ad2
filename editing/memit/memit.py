"""MEMIT (Meng et al. 2023, "Mass-Editing Memory in a Transformer").

For a batch of facts, first find for each the change delta_i of the residual stream at the
last layer of the range that makes the model say the target (ROME's value search, shared in
editing/rome/compute.py). Then walk the layers in order: at layer l, with K the subjects' keys
there (columns) and R the part of the remaining change this layer should carry (the residual
still missing at the last layer, divided by the layers left), the least-squares update that
also keeps the keys summarised by C is
    Delta_l = R K^T (lambda C + K K^T)^-1.
Each layer's update is applied before the next layer's keys are read, so later layers see it.

With `keep_committed` the update reads 0 at the keys of facts promoted earlier (AlphaEdit's
idea, held exactly); the solve is shared with ROME (editing/preserve.py).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from editing.covariance import config_moments
from editing.deltas import Delta, model_fingerprint
from editing.hparams import MemitConfig
from editing.locate import as_param_layout, first_tensor, get_module, hooked, subject_last_tokens
from editing.preserve import batch_read
from editing.rome.compute import (ChatFormat, EditRequest, compute_keys, compute_value,
                                  context_prefixes)

log = logging.getLogger(__name__)


@torch.no_grad()
def _block_outputs(model: torch.nn.Module, tok, block_name: str,
                   requests: list[EditRequest]) -> torch.Tensor:
    """The residual stream after `block_name` at each bare prompt's subject token (n, d)."""
    rows = []
    for request in requests:
        ids = tok(request.prompt, add_special_tokens=False).input_ids
        position = subject_last_tokens(tok, request.prompt, request.subject)[0]
        captured: list[torch.Tensor] = []
        with hooked(get_module(model, block_name),
                    forward=lambda _m, _a, out, into=captured: into.append(
                        first_tensor(out).detach())):
            model(input_ids=torch.tensor([ids]), use_cache=False)
        rows.append(captured[0][0, position])
    return torch.stack(rows)


def apply_memit(model: torch.nn.Module, tok, requests: list[EditRequest], cfg: MemitConfig, *,
                stats_root: Path, chat_format: ChatFormat | None = None,
                base_fingerprint: str | None = None,
                committed: dict[str, torch.Tensor] | None = None,
                progress: Callable[[str], None] = log.info) -> Delta:
    """One delta writing all requests at once; the model's weights are left as they were.
    `committed` maps a parameter name to the keys (in, m) of live promotions there."""
    # deltas and cached statistics belong to the base model, whatever is applied on it now
    fingerprint = base_fingerprint or model_fingerprint(model)
    targets, stats = memit_targets(model, tok, requests, cfg, stats_root=stats_root,
                                   chat_format=chat_format, fingerprint=fingerprint,
                                   progress=progress)
    return memit_update(model, tok, requests, cfg, targets, stats, stats_root=stats_root,
                        fingerprint=fingerprint, committed=committed, progress=progress)


def memit_targets(model: torch.nn.Module, tok, requests: list[EditRequest], cfg: MemitConfig,
                  *, stats_root: Path, chat_format: ChatFormat | None, fingerprint: str,
                  progress: Callable[[str], None] = log.info
                  ) -> tuple[torch.Tensor, list[dict]]:
    """The residual stream each request needs after the last edited layer (n, d), found by
    the value search; the costly half of MEMIT, independent of the covariance weight."""
    names = [cfg.module_template.format(layer) for layer in cfg.layers]
    prefixes = context_prefixes(model, tok, cfg.context_count, cfg.context_tokens, cfg.seed,
                                fingerprint)
    deltas, stats = [], []
    for i, request in enumerate(requests):
        progress(f"MEMIT: target {i + 1}/{len(requests)}: {request.subject} → "
                 f"{request.target_new}")
        _, delta, info = compute_value(model, tok, names[-1], request, prefixes, cfg,
                                       chat_format)
        deltas.append(delta)
        stats.append(info)
    last_block = cfg.block_template.format(cfg.layer)
    return _block_outputs(model, tok, last_block, requests) + torch.stack(deltas), stats


def memit_update(model: torch.nn.Module, tok, requests: list[EditRequest], cfg: MemitConfig,
                 targets: torch.Tensor, stats: list[dict], *, stats_root: Path,
                 fingerprint: str, committed: dict[str, torch.Tensor] | None = None,
                 progress: Callable[[str], None] = log.info) -> Delta:
    """Spread the change towards `targets` over the layers, lowest first (see the module
    docstring); the model's weights are left as they were."""
    names = [cfg.module_template.format(layer) for layer in cfg.layers]
    last_block = cfg.block_template.format(cfg.layer)
    progress(f"MEMIT: key statistics at layers {list(cfg.layers)}")
    mom2 = config_moments(model, tok, names, cfg, stats_root, fingerprint, progress)
    prefixes = context_prefixes(model, tok, cfg.context_count, cfg.context_tokens, cfg.seed,
                                fingerprint)
    originals = {name: get_module(model, name).weight.detach().clone() for name in names}
    low_rank: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    written: dict[str, torch.Tensor] = {}
    try:
        for position, name in enumerate(names):
            progress(f"MEMIT: updating {name} ({position + 1}/{len(names)})")
            module = get_module(model, name)
            keys = compute_keys(model, tok, name, requests, prefixes).T.double()  # (in, n)
            current = _block_outputs(model, tok, last_block, requests)
            residual = ((targets - current) / (len(names) - position)).T.double()  # (out, n)
            held = (committed or {}).get(f"{name}.weight") if cfg.keep_committed else None
            right = batch_read(mom2[name], keys, ridge=cfg.covariance_ridge,
                               weight=cfg.covariance_weight, committed=held).T  # (n, in)
            written[f"{name}.weight"] = keys.float()
            left, right = as_param_layout(module, residual.float(), right.float())
            with torch.no_grad():
                module.weight.add_(left @ right)
            low_rank[f"{name}.weight"] = (left, right)
    finally:
        with torch.no_grad():
            for name, weight in originals.items():
                get_module(model, name).weight.copy_(weight)
    return Delta("memit", fingerprint, low_rank=low_rank, keys=written,
                 meta={"layers": list(cfg.layers), "requests": stats})
