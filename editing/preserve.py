"""What a ROME or MEMIT update must leave in place, and the one solve both methods use.

An update Delta of a projection W changes the output at every key k by Delta k. Two kinds of
keys should see no change:
- the keys of ordinary text, summarised by their second moment C (ROME, MEMIT);
- the keys of facts already promoted into the weights (`committed`): AlphaEdit (Fang et al.,
  ICLR 2025) keeps them in the least-squares solve, so a new promotion does not overwrite an
  earlier one;

With K the new keys (in, n), K_p the committed ones, lambda the weight of C, the update is
Delta = R X^T with X = A^-1 K and A = lambda C + w K_p K_p^T (+ K K^T for MEMIT's batch).
AlphaEdit's other half, projecting the update onto the null space of C, did not ship: SmolLM2's
C has no null space (a flat spectrum), and the projection cost reliability and chat locality
(docs/experiments/2026-12-05-s26-null-space-and-capacity.md; tag exp/s26-unshipped-options).
ROME reads one key
and wants Delta k = r exactly, so its read-out is X / (k . X), and it can hold the committed
keys exactly (u . k_p = 0) instead of by weight.

Deltas stay additive: each keeps the keys it wrote (`Delta.keys`), the next promotion reads the
keys of the deltas live at that moment, and rolling one back subtracts exactly its own update.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch


def committed_keys(deltas: Iterable) -> dict[str, torch.Tensor]:
    """Parameter name -> the keys (in, m) the given (live) deltas wrote there, oldest first."""
    keys: dict[str, list[torch.Tensor]] = {}
    for delta in deltas:
        for name, written in delta.keys.items():
            keys.setdefault(name, []).append(written.float())
    return {name: torch.cat(parts, 1) for name, parts in keys.items()}


def solve_c(mom2: torch.Tensor, keys: torch.Tensor, ridge: float, weight: float = 1.0,
            extra: torch.Tensor | None = None) -> torch.Tensor:
    """(weight * C + extra)^-1 K for keys as columns (in, n), in float64, with a small ridge
    (relative to weight * C's mean diagonal) for stability."""
    c = weight * mom2.double()
    c = c + ridge * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype)
    if extra is not None:
        c = c + extra.double()
    return torch.linalg.solve(c, keys.double())


def batch_read(mom2: torch.Tensor, keys: torch.Tensor, *, ridge: float, weight: float,
               committed: torch.Tensor | None = None,
               committed_weight: float = 1.0) -> torch.Tensor:
    """X (in, n) of the MEMIT/AlphaEdit update Delta = R X^T for new keys K (in, n): the
    least-squares change that moves K by R and keeps C's keys (weight lambda) and the committed
    keys (weight w) where they are."""
    keys = keys.double()
    extra = keys @ keys.T
    if committed is not None and committed.shape[1]:
        held = committed.double()
        extra = extra + committed_weight * (held @ held.T)
    return solve_c(mom2, keys, ridge, weight, extra=extra)


def constrained_read_out(mom2: torch.Tensor, key: torch.Tensor, others: torch.Tensor | None,
                         ridge: float) -> torch.Tensor:
    """ROME's read-out: the u of least C-energy (u^T C u) with u . k = 1 and u . o = 0 for each
    column o of `others` (in, m); the rank-one edit then changes nothing at those keys. With
    no others this is C^-1 k / (k^T C^-1 k)."""
    columns = [key[:, None]] + ([others] if others is not None and others.shape[1] else [])
    keys = torch.cat([c.double() for c in columns], 1)  # (in, 1 + m)
    solved = solve_c(mom2, keys, ridge)  # A^-1 K
    gram = keys.T @ solved  # K^T A^-1 K
    unit = torch.zeros(keys.shape[1], dtype=torch.float64)
    unit[0] = 1.0
    # lstsq: committed keys may be (nearly) parallel to each other
    weights = torch.linalg.lstsq(gram, unit[:, None]).solution[:, 0]
    return solved @ weights
