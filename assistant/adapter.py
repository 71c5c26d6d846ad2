"""A low-rank adapter (LoRA, Hu et al. 2021) that can be switched on and off in place.

The counterfactual model is the base model plus this adapter: one copy of the weights in
memory, the adapter's small matrices added only while `active()` is entered. Off, every
wrapped layer computes exactly the base layer, so the base route is untouched.
"""
from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from errors import ConfigError


class LoRALinear(torch.nn.Module):
    """y = W x + scale * B (A x), the second term only while enabled."""

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_a = torch.nn.Parameter(torch.randn(rank, base.in_features) / base.in_features ** 0.5)
        self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank))  # starts as a no-op
        self.enabled = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.enabled:
            y = y + (x @ self.lora_a.T @ self.lora_b.T) * self.scale
        return y


class Adapter:
    """LoRA layers injected into a model's Linear modules whose names match `pattern`."""

    def __init__(self, model: torch.nn.Module, pattern: str, rank: int, alpha: float) -> None:
        self.model = model
        self.layers: dict[str, LoRALinear] = {}
        self._lock = threading.RLock()
        regex = re.compile(pattern)
        targets = [(name, module) for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and regex.fullmatch(name)]
        if not targets:
            raise ConfigError(f"adapter pattern {pattern!r} matches no Linear layer of the model")
        for name, module in targets:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            wrapped = LoRALinear(module, rank, alpha)
            setattr(parent, child, wrapped)
            self.layers[name] = wrapped

    def remove(self) -> None:
        """Put the original Linear layers back: the model is as it was before the adapter."""
        for name, layer in self.layers.items():
            parent_name, _, child = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            setattr(parent, child, layer.base)
        self.layers = {}

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for layer in self.layers.values() for p in (layer.lora_a, layer.lora_b)]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The adapter on for the duration; one user at a time, always switched back off."""
        with self._lock:
            for layer in self.layers.values():
                layer.enabled = True
            try:
                yield
            finally:
                for layer in self.layers.values():
                    layer.enabled = False

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, layer in self.layers.items():
            out[f"{name}.lora_a"] = layer.lora_a.detach().contiguous()
            out[f"{name}.lora_b"] = layer.lora_b.detach().contiguous()
        return out

    def save(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), str(path))

    def load(self, path: Path) -> None:
        """Load weights saved by `save`, checking every layer and shape is accounted for."""
        self.load_tensors(load_file(str(path)), source=str(path))

    def load_tensors(self, tensors: dict[str, torch.Tensor], source: str = "adapter") -> None:
        path = source
        expected = self.state_dict()
        if set(tensors) != set(expected):
            missing = sorted(set(expected) - set(tensors))[:3]
            extra = sorted(set(tensors) - set(expected))[:3]
            raise ConfigError(f"{path}: adapter does not fit this model (missing {missing}, "
                              f"unexpected {extra})")
        with torch.no_grad():
            for name, layer in self.layers.items():
                for part in ("lora_a", "lora_b"):
                    value = tensors[f"{name}.{part}"]
                    target = getattr(layer, part)
                    if value.shape != target.shape:
                        raise ConfigError(f"{path}: {name}.{part} has shape {tuple(value.shape)},"
                                          f" expected {tuple(target.shape)}")
                    target.copy_(value)
