"""The parts of a MEND edit shared by training and by `apply_mend`.

- `TextBatch`: texts whose continuation is scored (a prefix, then a target that may be "").
- `gradient_factors`: one forward/backward pass of the frozen model on the edit texts, returning
  each edited weight's gradient factors (layer inputs u and output gradients delta, per token).
  Only the layers from the lowest edited weight up take part in the backward pass.
- `edited`: forward hooks adding sum_t delta~_t u~_t^T to the edited weights, differentiably
  (the edit is never written into the weights while training).
- `from_block` (in `editing.locate`, shared with ROME): training runs the edited model on the
  same batch as the gradient pass, so the blocks below the lowest edited one give the same
  result; it restarts from their captured output and runs only the blocks above (on SmolLM2,
  3 of 30).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from editing.locate import block_input, block_position, first_tensor, get_module


@dataclass
class TextBatch:
    """Padded token ids; for each text the positions whose logits predict its target."""

    ids: torch.Tensor
    mask: torch.Tensor
    rows: torch.Tensor  # (K,) text index of each scored position
    cols: torch.Tensor  # (K,) position whose logits predict the target token
    targets: torch.Tensor  # (K,) the target token there
    texts: int

    def per_text_mean(self, values: torch.Tensor,
                      rows: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of a per-scored-position value within each text: (texts,). `rows` names the
        text of each value when they are a subset of the scored positions."""
        rows = self.rows if rows is None else rows
        sums = torch.zeros(self.texts, dtype=values.dtype).index_add(0, rows, values)
        counts = torch.zeros(self.texts).index_add(0, rows, torch.ones(len(rows)))
        return sums / counts.clamp_min(1)


def text_batch(tok, pieces: list[tuple[str, str]], pad_id: int | None = None) -> TextBatch:
    """pieces: (prefix, target text as it follows the prefix, e.g. " Paris")."""
    rows, cols, targets, encoded = [], [], [], []
    for row, (prefix, target) in enumerate(pieces):
        prefix_ids = tok(prefix, add_special_tokens=False).input_ids
        target_ids = tok(target, add_special_tokens=False).input_ids if target else []
        encoded.append(prefix_ids + target_ids)
        for offset, token in enumerate(target_ids):
            rows.append(row)
            cols.append(len(prefix_ids) - 1 + offset)
            targets.append(token)
    width = max(len(e) for e in encoded)
    pad = pad_id if pad_id is not None else (tok.pad_token_id or 0)
    return TextBatch(ids=torch.tensor([e + [pad] * (width - len(e)) for e in encoded]),
                     mask=torch.tensor([[1] * len(e) + [0] * (width - len(e))
                                        for e in encoded]),
                     rows=torch.tensor(rows, dtype=torch.long),
                     cols=torch.tensor(cols, dtype=torch.long),
                     targets=torch.tensor(targets, dtype=torch.long), texts=len(pieces))


@contextlib.contextmanager
def only_scored_logits(model: torch.nn.Module, batch: TextBatch) -> Iterator[None]:
    """Compute vocabulary logits only at the scored positions (the output projection over
    49k tokens is a fifth of the model's cost); the model returns them as (1, K, vocab)."""
    head = model.get_output_embeddings()

    def pre(_module, args):
        hidden = args[0]
        return (hidden[batch.rows, batch.cols].unsqueeze(0),) + tuple(args[1:])

    handle = head.register_forward_pre_hook(pre)
    try:
        yield
    finally:
        handle.remove()


def scored_logits(model: torch.nn.Module, batch: TextBatch) -> torch.Tensor:
    """(K, vocab) float logits at the batch's scored positions."""
    with only_scored_logits(model, batch):
        out = model(input_ids=batch.ids, attention_mask=batch.mask, use_cache=False)
    return out.logits[0].float()


@contextlib.contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """No parameter of the base model records gradients (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def lowest_module(names: list[str]) -> str:
    """The edited module in the lowest block."""
    return min(names, key=lambda name: block_position(None, name, locate=False)[2])


def gradient_factors(model: torch.nn.Module, names: list[str], batch: TextBatch,
                     text_weights: torch.Tensor, extra_logits: bool = False,
                     hidden: dict[str, torch.Tensor] | None = None):
    """Per edited weight: (u, delta) at every real token of the texts that carry a loss.

    The loss is sum_text weight_text * mean NLL of the text's target. Returns the factors and
    the (detached) logits at all scored positions, so one pass can also give the base model's
    predictions for texts with weight 0 (locality texts). With `hidden`, the input of the
    lowest edited block is stored there under "hidden" (for `from_block`).
    """
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def capture(name: str):
        def hook(_module, args, output):
            inputs[name] = args[0].detach()
            out = first_tensor(output)
            if not out.requires_grad:  # the lowest edited layer: start the graph here
                out = out.detach().requires_grad_()
            outputs[name] = out
            return out
        return hook

    handles = [get_module(model, n).register_forward_hook(capture(n)) for n in names]
    recording = (block_input(model, lowest_module(names), hidden) if hidden is not None
                 else contextlib.nullcontext())
    try:
        with recording:
            logits = scored_logits(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    nll = F.cross_entropy(logits, batch.targets, reduction="none")
    loss = (batch.per_text_mean(nll) * text_weights).sum()
    grads = torch.autograd.grad(loss, [outputs[n] for n in names])
    keep = loss_positions(batch, text_weights)
    factors = {n: (inputs[n][keep], g[keep].detach()) for n, g in zip(names, grads)}
    return factors, (logits.detach() if extra_logits else None)


def loss_positions(batch: TextBatch, text_weights: torch.Tensor) -> torch.Tensor:
    """Mask of (text, position) pairs that can influence a weighted text's loss: real tokens
    up to the last scored position of a text whose weight is not zero."""
    last = torch.full((batch.texts,), -1, dtype=torch.long)
    last = last.scatter_reduce(0, batch.rows, batch.cols, reduce="amax")
    positions = torch.arange(batch.ids.shape[1]).unsqueeze(0)
    return ((positions <= last.unsqueeze(1)) & batch.mask.bool()
            & (text_weights != 0).unsqueeze(1))


@contextlib.contextmanager
def edited(model: torch.nn.Module,
           updates: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Run the model as if W += left @ right for each named weight (left: out x N, right:
    N x in), by adding (x @ right^T) @ left^T to the outputs; gradients flow to the factors."""
    def hook_for(left: torch.Tensor, right: torch.Tensor):
        def hook(_module, args, output):
            x = args[0]
            change = (x.to(right.dtype) @ right.T) @ left.T
            if isinstance(output, tuple):
                return (output[0] + change.to(output[0].dtype),) + tuple(output[1:])
            return output + change.to(output.dtype)
        return hook

    handles = [get_module(model, name).register_forward_hook(hook_for(*factors))
               for name, factors in updates.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def editor_updates(editor, factors: dict[str, tuple[torch.Tensor, torch.Tensor]],
                   track: bool = False) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """MEND's update of each weight as (left, right) factors in (out, in) layout:
    W' = W - rate * sum_t delta~_t u~_t^T."""
    updates = {}
    for name, (u, delta) in factors.items():
        u_new, delta_new = editor.transform(name, u, delta, track=track)
        updates[name] = (-(editor.rate(name) * delta_new).T, u_new)
    return updates
