"""ROME (Meng et al. 2022, "Locating and Editing Factual Associations in GPT").

The MLP output projection W at one layer is read as a key-value memory: the subject's key k*
(its input at the subject's last token) should now map to v* (an output that makes the model
say the new target). The smallest change in the C-weighted sense that achieves W' k* = v* is
rank one:  W' = W + (v* - W k*) (C^-1 k*)^T / (k*^T C^-1 k*).
Several requests are applied one after another, each on the model already holding the
previous ones, and returned as one Delta whose low-rank factors stack the rank-one terms.
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
from editing.rome.compute import (ChatFormat, EditRequest, compute_keys, compute_value,
                                  context_prefixes, neighbour_requests)

log = logging.getLogger(__name__)


def solve_c(mom2: torch.Tensor, keys: torch.Tensor, ridge: float, weight: float = 1.0,
            extra: torch.Tensor | None = None, basis: torch.Tensor | None = None
            ) -> torch.Tensor:
    """(weight * C + extra)^-1 K for keys as columns (in, n), in float64, with a small ridge
    (relative to weight * C's mean diagonal) for stability. ROME: C^-1 k; MEMIT: extra = K K^T.
    With `basis` (in, m, orthonormal columns B) the solution is kept inside its span:
    B (B^T A B)^-1 B^T K for A the matrix above."""
    c = weight * mom2.double()
    c = c + ridge * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype)
    if extra is not None:
        c = c + extra.double()
    if basis is None:
        return torch.linalg.solve(c, keys.double())
    b = basis.double()
    return b @ torch.linalg.solve(b.T @ c @ b, b.T @ keys.double())


def constrained_read_out(mom2: torch.Tensor, key: torch.Tensor, others: torch.Tensor,
                         ridge: float) -> torch.Tensor:
    """The u of least C-energy (u^T C u) with u . k = 1 and u . o = 0 for each column o of
    `others` (in, m): the rank-one edit then changes nothing at those keys. With no others
    this is C^-1 k / (k^T C^-1 k)."""
    keys = torch.cat([key[:, None], others], 1).double()  # (in, 1 + m)
    solved = solve_c(mom2, keys, ridge)  # C^-1 K
    gram = keys.T @ solved  # K^T C^-1 K
    unit = torch.zeros(keys.shape[1], dtype=torch.float64)
    unit[0] = 1.0
    return solved @ torch.linalg.solve(gram, unit)


def rank_one(weight: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
             read_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right) with W + left @ right mapping key to value (read_out . key = 1); weight is
    (out, in)."""
    residual = value.double() - weight.double() @ key.double()
    return residual[:, None].float(), read_out[None, :].float()


def apply_rome(model: torch.nn.Module, tok, requests: list[EditRequest], cfg: RomeConfig, *,
               stats_root: Path, chat_format: ChatFormat | None = None,
               base_fingerprint: str | None = None,
               progress: Callable[[str], None] = log.info) -> Delta:
    """Compute the delta writing every request; the model's weights are left as they were."""
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
    original = module.weight.detach().clone()
    lefts, rights, per_request = [], [], []
    try:
        for i, request in enumerate(requests):
            started = time.perf_counter()
            progress(f"ROME: edit {i + 1}/{len(requests)}: {request.subject} → "
                     f"{request.target_new}")
            keys = compute_keys(model, tok, module_name,
                                [request, *neighbour_requests(request, cfg.neighbour_keys)],
                                prefixes)
            key = keys[0]
            read_out = constrained_read_out(mom2, key, keys[1:].T, cfg.covariance_ridge).float()
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
            per_request.append({**stats, "seconds": round(time.perf_counter() - started, 2)})
    finally:
        with torch.no_grad():
            module.weight.copy_(original)
    return Delta("rome", fingerprint,
                 low_rank={param_name: (torch.cat(lefts, 1), torch.cat(rights, 0))},
                 meta={"layers": [cfg.layer], "requests": per_request})
