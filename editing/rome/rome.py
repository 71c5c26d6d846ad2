"""ROME (Meng et al. 2022, "Locating and Editing Factual Associations in GPT").

The MLP output projection W at one layer is read as a key-value memory: the subject's key k*
(its input at the subject's last token) should now map to v* (an output that makes the model
say the new target). The smallest change in the C-weighted sense that achieves W' k* = v* is
rank one:  W' = W + (v* - W k*) (C^-1 k*)^T / (k*^T C^-1 k*).
Several requests are applied one after another, each on the model already holding the
previous ones, and returned as one Delta whose low-rank factors stack the rank-one terms.
The read-out u also reads 0 at the keys of facts promoted earlier (`committed`, with
`keep_committed`; editing/preserve.py).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from editing.covariance import config_moments
from editing.deltas import Delta, model_fingerprint
from editing.hparams import RomeConfig
from editing.locate import as_param_layout, get_module, weight_out_in
from editing.preserve import constrained_read_out
from editing.rome.compute import (ChatFormat, EditRequest, compute_key, compute_value,
                                  context_prefixes)

log = logging.getLogger(__name__)


def rank_one(weight: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
             read_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right) with W + left @ right mapping key to value (read_out . key = 1); weight is
    (out, in)."""
    residual = value.double() - weight.double() @ key.double()
    return residual[:, None].float(), read_out[None, :].float()


def apply_rome(model: torch.nn.Module, tok, requests: list[EditRequest], cfg: RomeConfig, *,
               stats_root: Path, chat_format: ChatFormat | None = None,
               base_fingerprint: str | None = None,
               committed: dict[str, torch.Tensor] | None = None,
               progress: Callable[[str], None] = log.info) -> Delta:
    """Compute the delta writing every request; the model's weights are left as they were.
    `committed` maps a parameter name to the keys (in, m) of live promotions there."""
    # deltas and cached statistics belong to the base model, whatever is applied on it now
    fingerprint = base_fingerprint or model_fingerprint(model)
    module_name = cfg.module_template.format(cfg.layer)
    module = get_module(model, module_name)
    param_name = f"{module_name}.weight"
    progress(f"ROME: key statistics at {module_name}")
    mom2 = config_moments(model, tok, [module_name], cfg, stats_root, fingerprint,
                          progress)[module_name]
    prefixes = context_prefixes(model, tok, cfg.context_count, cfg.context_tokens, cfg.seed,
                                fingerprint)
    held = (committed or {}).get(param_name) if cfg.keep_committed else None
    original = module.weight.detach().clone()
    lefts, rights, written, per_request = [], [], [], []
    try:
        for i, request in enumerate(requests):
            started = time.perf_counter()
            progress(f"ROME: edit {i + 1}/{len(requests)}: {request.subject} → "
                     f"{request.target_new}")
            key = compute_key(model, tok, module_name, request, prefixes)
            # with keep_committed, this delta's earlier requests are held like committed ones
            kept = [held, *written] if cfg.keep_committed else []
            others = [k for k in kept if k is not None and k.shape[1]]
            others = torch.cat(others, 1) if others else None
            read_out = constrained_read_out(mom2, key, others, cfg.covariance_ridge).float()
            if cfg.through_update:
                _, delta, stats = compute_value(model, tok, module_name, request, prefixes,
                                                cfg, chat_format, read_out=read_out)
                left, right = delta[:, None], read_out[None, :]  # exactly what was searched
            else:
                value, _, stats = compute_value(model, tok, module_name, request, prefixes,
                                                cfg, chat_format)
                left, right = rank_one(weight_out_in(module).detach(), key, value, read_out)
            left, right = as_param_layout(module, left, right)
            with torch.no_grad():
                module.weight.add_(left @ right)
            lefts.append(left)
            rights.append(right)
            written.append(key[:, None].float())
            per_request.append({**stats, "seconds": round(time.perf_counter() - started, 2)})
    finally:
        with torch.no_grad():
            module.weight.copy_(original)
    return Delta("rome", fingerprint,
                 low_rank={param_name: (torch.cat(lefts, 1), torch.cat(rights, 0))},
                 keys={param_name: torch.cat(written, 1)},
                 meta={"layers": [cfg.layer], "requests": per_request})
