"""What a ROME or MEMIT update must leave in place, and the one solve both methods use.

An update Delta = R X^T of a projection W changes the output at every key k by R (X^T k). Two
kinds of keys should see no change:
- the keys of ordinary text, summarised by their second moment C: X = A^-1 K with
  A = lambda C (+ K K^T for MEMIT's batch), the least change in the C-weighted sense;
- the keys of facts already promoted into the weights (`committed`, K_p): with
  `keep_committed`, X is then changed as little as possible (in the A-norm) so that
  K_p^T X = 0 exactly (`held_solve`): a new promotion leaves every earlier promoted fact's
  key mapping to what it mapped to. This is AlphaEdit's (Fang et al., ICLR 2025) "keep the
  earlier edits' keys in the solve", held exactly instead of by a weight: beside lambda C a
  weight of 1 on K_p K_p^T changed nothing measurable (session 26).
AlphaEdit's other half, projecting the update onto the null space of C, did not ship: SmolLM2's
C has no null space (a flat spectrum), and the projection cost reliability and chat locality
(docs/experiments/2026-12-05-s26-null-space-and-capacity.md; tag exp/s26-unshipped-options).

ROME reads one key and wants Delta k* = r exactly, so its read-out is the held X scaled to
u . k* = 1 (`constrained_read_out`). Deltas stay additive: each keeps the keys it wrote
(`Delta.keys`), the next promotion reads the keys of the deltas live at that moment, and
rolling one back subtracts exactly its own update.
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


def held_solve(mom2: torch.Tensor, keys: torch.Tensor, committed: torch.Tensor | None, *,
               ridge: float, weight: float = 1.0,
               extra: torch.Tensor | None = None) -> torch.Tensor:
    """X = A^-1 K (A = weight * C + extra, as `solve_c`) changed as little as possible in the
    A-norm so that K_p^T X = 0 for the committed keys K_p (in, m): the edit then reads nothing
    at them. One solve serves K and K_p."""
    keys = keys.double()
    if committed is None or not committed.shape[1]:
        return solve_c(mom2, keys, ridge, weight, extra=extra)
    held = committed.double()
    solved = solve_c(mom2, torch.cat([keys, held], 1), ridge, weight, extra=extra)
    x, a_inv_held = solved[:, :keys.shape[1]], solved[:, keys.shape[1]:]
    gram = held.T @ a_inv_held  # K_p^T A^-1 K_p
    # lstsq: committed keys may be (nearly) parallel to each other
    return x - a_inv_held @ torch.linalg.lstsq(gram, held.T @ x).solution


def batch_read(mom2: torch.Tensor, keys: torch.Tensor, *, ridge: float, weight: float,
               committed: torch.Tensor | None = None) -> torch.Tensor:
    """X (in, n) of MEMIT's update Delta = R X^T for new keys K (in, n): the least-squares
    change that moves K by R and keeps C's keys (weight lambda) where they are, held at 0 on
    the committed keys when given."""
    keys = keys.double()
    return held_solve(mom2, keys, committed, ridge=ridge, weight=weight, extra=keys @ keys.T)


def constrained_read_out(mom2: torch.Tensor, key: torch.Tensor, others: torch.Tensor | None,
                         ridge: float) -> torch.Tensor:
    """ROME's read-out: the u of least C-energy (u^T C u) with u . k = 1 and u . o = 0 for each
    column o of `others` (in, m); the rank-one edit then changes nothing at those keys. With
    no others this is C^-1 k / (k^T C^-1 k)."""
    x = held_solve(mom2, key[:, None], others, ridge=ridge)[:, 0]
    return x / (key.double() @ x)
