"""Attention for the packed value search that computes only what the mask allows.

The value search runs a dozen texts packed into one row: each text's suffix attends to its
own prefix (in the key/value cache), to tokens it shares with an earlier text and to its own
earlier tokens, about a tenth of the keys. Dense attention (sdpa or eager) still scores every
query against every key and then masks most of them out; on a zsRE edit that was 13% of the
search's time. Here each text's queries attend only to the keys its mask row allows, which are
gathered once per runner. The masked-out keys would get exactly zero weight in dense attention
too, so the result is the same up to float rounding.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "amend_packed"


@dataclass(frozen=True)
class Layout:
    """Which keys each text's queries read, as one padded batch of texts (index tensors built
    once per runner, so a layer's attention is a few gathers and one sdpa call)."""

    queries: torch.Tensor  # (texts, most queries): positions in the packed row (padding: 0)
    keys: torch.Tensor  # (texts, most keys): positions in cache + packed row (padding: 0)
    mask: torch.Tensor  # additive (texts, 1, most queries, most keys)
    back: torch.Tensor  # for each packed position, its place in the flattened (texts, queries)


_LAYOUT: ContextVar[Layout | None] = ContextVar("amend_packed_layout", default=None)


def layout(allowed: torch.Tensor, owners: torch.Tensor, dtype: torch.dtype) -> Layout:
    """The layout of a boolean (query, key) mask over (cache + packed row) keys. `owners`:
    the text of each query position."""
    texts = torch.unique(owners).tolist()
    rows = [(owners == t).nonzero()[:, 0] for t in texts]
    cols = [allowed[r].any(0).nonzero()[:, 0] for r in rows]
    width_q, width_k = max(len(r) for r in rows), max(len(c) for c in cols)
    queries = torch.zeros(len(texts), width_q, dtype=torch.long)
    keys = torch.zeros(len(texts), width_k, dtype=torch.long)
    # padding queries may read key slot 0 (a row with no key would give NaN); they are dropped
    ok = torch.zeros(len(texts), width_q, width_k, dtype=torch.bool)
    ok[:, :, 0] = True
    back = torch.empty(len(owners), dtype=torch.long)
    for i, (r, c) in enumerate(zip(rows, cols)):
        queries[i, :len(r)], keys[i, :len(c)] = r, c
        ok[i, :len(r)] = False
        ok[i, :len(r), :len(c)] = allowed[r][:, c]
        back[r] = i * width_q + torch.arange(len(r))
    mask = torch.zeros(ok.shape, dtype=dtype).masked_fill(~ok, torch.finfo(dtype).min)
    return Layout(queries, keys, mask[:, None], back)


def packed_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                             value: torch.Tensor, attention_mask: torch.Tensor | None,
                             dropout: float = 0.0, scaling: float | None = None,
                             **kwargs) -> tuple[torch.Tensor, None]:
    """The AttentionInterface function: per text when a packed run is active, else sdpa."""
    active = _LAYOUT.get()
    unusual = kwargs.get("softcap") is not None or kwargs.get("sliding_window") is not None
    if active is None or unusual or dropout or query.shape[0] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    texts, width_q = active.queries.shape
    width_k = active.keys.shape[1]

    def gather(states: torch.Tensor, index: torch.Tensor, width: int) -> torch.Tensor:
        # (1, heads, length, dim) -> (texts, heads, width, dim)
        picked = states[0].index_select(1, index.flatten())
        return picked.view(states.shape[1], texts, width, -1).transpose(0, 1)

    out = torch.nn.functional.scaled_dot_product_attention(
        gather(query, active.queries, width_q), gather(key, active.keys, width_k),
        gather(value, active.keys, width_k), attn_mask=active.mask, scale=scaling,
        enable_gqa=key.shape[1] != query.shape[1])
    # (texts, heads, width_q, dim) -> (1, packed length, heads, dim)
    flat = out.transpose(1, 2).reshape(texts * width_q, query.shape[1], -1)
    return flat.index_select(0, active.back)[None], None


AttentionInterface.register(NAME, packed_attention_forward)


@contextlib.contextmanager
def packed(model: torch.nn.Module, active: Layout) -> Iterator[None]:
    """Run `model` with per-segment attention inside the block. Models whose attention does
    not go through AttentionInterface keep their own and read the dense mask instead."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    switch = before is not None and hasattr(model, "set_attn_implementation") and (
        getattr(model, "_can_set_attn_implementation", lambda: False)())
    token = _LAYOUT.set(active)
    try:
        if switch:
            model.set_attn_implementation(NAME)
        yield
    finally:
        if switch:
            model.set_attn_implementation(before)
        _LAYOUT.reset(token)
