"""Finding things inside a model and a prompt: modules by name, subject tokens, hooks.

Kept apart from the methods so ROME, MEMIT, fine-tuning and tracing agree on where "the
subject's last token" is and on how a Linear (out x in) or a GPT-2 Conv1D (in x out) is read.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

import torch
from transformers import PreTrainedTokenizerBase

from errors import InvalidEditError, ModelLoadError


def get_module(model: torch.nn.Module, name: str) -> torch.nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        raise ModelLoadError(f"the model has no module '{name}'; check the editing config's "
                             "module templates for this model family")
    return modules[name]


def is_transposed(module: torch.nn.Module) -> bool:
    """GPT-2's Conv1D keeps its weight as (in, out); nn.Linear as (out, in)."""
    return type(module).__name__ == "Conv1D"


def weight_out_in(module: torch.nn.Module) -> torch.Tensor:
    """The module's weight as (out, in), a view (no copy)."""
    return module.weight.T if is_transposed(module) else module.weight


def as_param_layout(module: torch.nn.Module, left: torch.Tensor,
                    right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-rank factors of an (out, in) update, rearranged for the parameter's own layout."""
    return (right.T.contiguous(), left.T.contiguous()) if is_transposed(module) else (left, right)


def subject_spans(text: str, subject: str) -> list[tuple[int, int]]:
    """Character spans of every occurrence of the subject: exact case, else any case (spans
    are positions in `text` itself, so they stay right where case folding changes lengths)."""
    if not subject:
        return []
    pattern = re.escape(subject)
    spans = [m.span() for m in re.finditer(pattern, text)]
    return spans or [m.span() for m in re.finditer(pattern, text, flags=re.IGNORECASE)]


def subject_last_tokens(tok: PreTrainedTokenizerBase, text: str, subject: str) -> list[int]:
    """Token index of the last token of each subject occurrence in `text`."""
    spans = subject_spans(text, subject)
    if not spans:
        raise InvalidEditError(f"the subject '{subject}' does not occur in '{text}'")
    offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    positions = []
    for _, end in spans:
        # the token that holds the subject's last character
        index = next((i for i, (a, b) in enumerate(offsets) if a < end <= b), None)
        if index is None:
            index = max(i for i, (a, _) in enumerate(offsets) if a < end)
        positions.append(index)
    return positions


@contextlib.contextmanager
def hooked(module: torch.nn.Module, *, forward: Callable | None = None,
           pre: Callable | None = None) -> Iterator[None]:
    """Temporarily register a forward (and/or pre-forward) hook."""
    handles = []
    if forward is not None:
        handles.append(module.register_forward_hook(forward))
    if pre is not None:
        handles.append(module.register_forward_pre_hook(pre))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def first_tensor(output):
    return output[0] if isinstance(output, tuple) else output


def block_position(model: torch.nn.Module | None, module_name: str,
                   locate: bool = True) -> tuple[torch.nn.Module | None, str, int]:
    """(parent, attribute, index): where the decoder block holding `module_name` sits, e.g.
    model.model, "layers", 27 for "model.layers.27.mlp.up_proj" (GPT-2: transformer, "h")."""
    match = re.match(r"^(.*?)\.(\d+)\.", module_name)
    if match is None:
        raise ValueError(f"'{module_name}' is not inside a numbered block list")
    parent_path, _, attribute = match.group(1).rpartition(".")
    parent = (get_module(model, parent_path) if parent_path else model) if locate else None
    return parent, attribute, int(match.group(2))


class StopForward(Exception):
    """Raised by a hook once what it wanted is read: the blocks above need not run."""


@contextlib.contextmanager
def block_input(model: torch.nn.Module, module_name: str,
                store: dict[str, torch.Tensor], stop: bool = False) -> Iterator[None]:
    """Record the hidden states entering the block that holds `module_name`; with `stop`,
    the forward pass ends there (raises `StopForward`: catch it around the call)."""
    parent, attribute, index = block_position(model, module_name)

    def pre(_module, args):
        store["hidden"] = args[0].detach()
        if stop:
            raise StopForward

    handle = getattr(parent, attribute)[index].register_forward_pre_hook(pre)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def from_block(model: torch.nn.Module, module_name: str,
               hidden: torch.Tensor) -> Iterator[None]:
    """Run only the blocks from the one holding `module_name` up, fed with `hidden` (that
    block's input, captured by `block_input` on the same batch) instead of the lower blocks'
    output. Valid while nothing below that block is edited."""
    parent, attribute, index = block_position(model, module_name)
    blocks = getattr(parent, attribute)

    def pre(_module, args):
        return (hidden,) + tuple(args[1:])

    handle = blocks[index].register_forward_pre_hook(pre)
    setattr(parent, attribute, torch.nn.ModuleList(list(blocks)[index:]))
    try:
        yield
    finally:
        setattr(parent, attribute, blocks)
        handle.remove()
