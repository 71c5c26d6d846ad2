"""Plain fine-tuning baseline (`ft`): train one MLP projection on the new target, bounded.

What a located edit has to beat: no keys, no covariance, just gradient steps on the target's
NLL after the prompt (and chat-templated questions when configured), with every weight kept
within `norm_constraint` of its original value (EasyEdit's FT-M is the same idea).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from editing.deltas import Delta, model_fingerprint
from editing.hparams import FtConfig
from editing.locate import get_module
from editing.rome.compute import ChatFormat, EditRequest, _batch, rewriting_pieces

log = logging.getLogger(__name__)


def apply_ft(model: torch.nn.Module, tok, requests: list[EditRequest], cfg: FtConfig, *,
             stats_root: Path | None = None, chat_format: ChatFormat | None = None,
             base_fingerprint: str | None = None, committed: dict | None = None,
             progress: Callable[[str], None] = log.info) -> Delta:
    """A dense delta of one projection; the model's weights are left as they were. The
    registry's signature; ft needs no key statistics and keeps no keys."""
    # deltas and cached statistics belong to the base model, whatever is applied on it now
    fingerprint = base_fingerprint or model_fingerprint(model)
    name = cfg.module_template.format(cfg.layer)
    module = get_module(model, name)
    pieces = [piece for r in requests
              for piece in rewriting_pieces(r, [""], chat_format if cfg.chat_prompts else None)]
    texts = _batch(tok, pieces)
    rows, cols = torch.cat(texts.target_rows), torch.cat(texts.target_cols)
    targets = torch.cat(texts.target_ids)
    for p in model.parameters():
        p.requires_grad_(False)
    original = module.weight.detach().clone()
    module.weight.requires_grad_(True)
    optimizer = torch.optim.Adam([module.weight], lr=cfg.learning_rate)
    torch.manual_seed(cfg.seed)
    loss_value = None
    try:
        for step in range(cfg.steps):
            optimizer.zero_grad()
            logits = model(input_ids=texts.ids, attention_mask=texts.mask,
                           use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(logits[rows, cols].float(), targets)
            loss_value = float(loss.detach())
            if loss_value < cfg.stop_loss:
                break
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                change = (module.weight - original).clamp(-cfg.norm_constraint,
                                                          cfg.norm_constraint)
                module.weight.copy_(original + change)
            if step % 5 == 0:
                progress(f"FT: step {step + 1}/{cfg.steps}, loss {loss_value:.3f}")
        update = (module.weight.detach() - original).clone()
    finally:
        module.weight.requires_grad_(False)
        with torch.no_grad():
            module.weight.copy_(original)
    return Delta("ft", fingerprint, dense={f"{name}.weight": update},
                 meta={"layers": [cfg.layer], "final_loss": loss_value})
