"""Weight deltas: what a weight edit changes, as an object that can be saved, applied, reverted.

Every method (ROME, MEMIT, fine-tuning, MEND) returns a `Delta`: for each parameter it touches,
either low-rank factors (`left @ right` has the parameter's shape) or a dense tensor. The
effective model is always "base weights + committed deltas, applied in order", so:

- apply/revert of the latest delta is exact (the touched parameters are snapshotted first);
- rolling back any delta (not only the last) restores the touched parameters from the base
  snapshot and re-applies the remaining deltas in order, which is bit-identical to a fresh
  start-up replay (the same float operations in the same order);
- a delta records the fingerprint of the base model it was made on, and is refused elsewhere.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from assistant.adapter import LoRALinear
from errors import AmendError

FINGERPRINT_SAMPLES = 4096  # values sampled per tensor: enough to tell two models apart


class DeltaError(AmendError):
    """A delta cannot be applied here (another base model, missing parameter, bad file)."""


@dataclass
class Delta:
    """Parameter updates of one weight edit; `low_rank[name] = (left, right)`. `keys[name]`
    (in, n): the keys the edit wrote at that parameter, which later promotions keep in place
    (editing/preserve.py); not part of the update."""

    method: str
    base_fingerprint: str
    low_rank: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    dense: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    keys: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return sorted(set(self.low_rank) | set(self.dense))

    def update(self, name: str) -> torch.Tensor:
        """The full update of one parameter (float32)."""
        if name in self.low_rank:
            left, right = self.low_rank[name]
            return left.float() @ right.float()
        return self.dense[name].float()

    def norm(self) -> float:
        return float(sum(self.update(n).norm() ** 2 for n in self.names) ** 0.5)

    # -- storage ------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The delta as a safetensors file's bytes (what the store keeps with its row)."""
        tensors: dict[str, torch.Tensor] = {}
        for name, (left, right) in self.low_rank.items():
            tensors[f"{name}::left"] = left.contiguous()
            tensors[f"{name}::right"] = right.contiguous()
        for name, update in self.dense.items():
            tensors[f"{name}::dense"] = update.contiguous()
        for name, keys in self.keys.items():
            tensors[f"{name}::keys"] = keys.contiguous()
        header = {"method": self.method, "base_fingerprint": self.base_fingerprint,
                  "meta": json.dumps(self.meta)}
        return save(tensors, metadata=header)

    def save(self, path: Path) -> Path:
        """Write atomically (temporary file, then rename) so a crash leaves no half file."""
        return write_atomically(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: Path) -> "Delta":
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise DeltaError(f"cannot read the weight delta {path}: {exc}") from exc
        return cls.from_bytes(data, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "the stored delta") -> "Delta":
        """The delta in `data` (a safetensors file's bytes); DeltaError if they are damaged."""
        try:
            tensors = load(data)
            (size,) = struct.unpack("<Q", data[:8])  # the header's length, then the header
            header = json.loads(data[8:8 + size]).get("__metadata__") or {}
            meta = json.loads(header.get("meta", "{}"))
        # a damaged file raises SafetensorError, which is not an OSError/ValueError
        except (OSError, ValueError, RuntimeError, SafetensorError, struct.error) as exc:
            raise DeltaError(f"cannot read the weight delta {where}: {exc}") from exc
        delta = cls(header.get("method", "?"), header.get("base_fingerprint", ""), meta=meta)
        for key, tensor in tensors.items():
            name, _, part = key.rpartition("::")
            if part == "dense":
                delta.dense[name] = tensor
            elif part == "keys":
                delta.keys[name] = tensor
            elif part in ("left", "right"):
                pair = delta.low_rank.setdefault(name, (None, None))  # type: ignore[arg-type]
                delta.low_rank[name] = (tensor, pair[1]) if part == "left" else (pair[0], tensor)
            else:
                raise DeltaError(f"{where}: unexpected tensor {key}")
        if any(a is None or b is None for a, b in delta.low_rank.values()):
            raise DeltaError(f"{where}: a low-rank factor is missing")
        return delta


def write_atomically(path: Path, data: bytes) -> Path:
    """`data` at `path` through a temporary file, synced, then renamed: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    return path


def own_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's own tensors under their unwrapped names, adapter matrices left out.

    The counterfactual adapter wraps attention layers in place (`x.base.weight` plus
    `x.lora_a`/`x.lora_b`); the base model's identity must not depend on it, or retraining
    the adapter would orphan every stored weight edit and every cached key statistic.
    """

    wrapped = {name for name, module in model.named_modules() if isinstance(module, LoRALinear)}
    own = {}
    for name, tensor in model.state_dict().items():
        owner, _, leaf = name.rpartition(".")
        if owner in wrapped:  # lora_a / lora_b: the adapter's own
            continue
        outer = owner.removesuffix(".base")
        if outer != owner and outer in wrapped:  # x.base.weight is the model's x.weight
            name = f"{outer}.{leaf}"
        own[name] = tensor
    return own


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the architecture and a strided sample of every weight.

    Cheap enough to compute at every start (no full pass over the weights), and two models
    (or the same model before and after an edit) differ in it. An adapter switched into the
    model in place does not change it (see `own_weights`).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(own_weights(model).items()):
        flat = tensor.detach().reshape(-1)
        step = max(flat.numel() // FINGERPRINT_SAMPLES, 1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(flat[::step][:FINGERPRINT_SAMPLES].float().numpy().tobytes())
    return digest.hexdigest()[:16]


def _tensors_checksum(tensors: dict[str, torch.Tensor], names: list[str] | None = None) -> str:
    digest = hashlib.sha256()
    for name in sorted(names if names is not None else tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def weights_checksum(model: torch.nn.Module, names: list[str] | None = None) -> str:
    """Exact hash of the named parameters (all when None): 'same weights' means same bytes."""
    return _tensors_checksum(dict(model.named_parameters()), names)


def own_checksum(model: torch.nn.Module) -> str:
    """Exact hash of the model's own weights, adapter left out (`own_weights`): the chat
    engine's GGUF cache key, the same whether or not the adapter is wrapped in."""
    return _tensors_checksum(own_weights(model))


class WeightState:
    """The base weights of every parameter any delta touched, and the deltas now applied.

    Apply and revert go through here, so the model is always base + applied deltas in order.
    """

    def __init__(self, model: torch.nn.Module, fingerprint: str | None = None) -> None:
        self.model = model
        # of the base model; pass it when `model` is a copy that already carries deltas
        self.fingerprint = fingerprint or model_fingerprint(model)
        self._params = dict(model.named_parameters())
        self._base: dict[str, torch.Tensor] = {}  # untouched copies, taken before first change
        self.applied: list[tuple[object, Delta]] = []  # (key, delta) in order

    def fork(self, model: torch.nn.Module) -> "WeightState":
        """This state for `model`, a copy of this state's model: the same base values and
        applied deltas, so applying and reverting on it gives the weights the same steps
        would give here (to prepare a change on a copy while chat goes on)."""
        other = WeightState(model, fingerprint=self.fingerprint)
        other._base = dict(self._base)  # base copies are never changed in place: shared
        other.applied = list(self.applied)
        return other

    def _param(self, name: str) -> torch.nn.Parameter:
        if name not in self._params:
            raise DeltaError(f"the model has no parameter '{name}'")
        return self._params[name]

    @contextlib.contextmanager
    def on_base(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """`model` (a copy of this one) with every touched parameter at its base value for
        the duration, then put back: to ask the unedited model something."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            saved = {name: params[name].detach().clone() for name in self._base}
            for name, base in self._base.items():
                params[name].copy_(base)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    params[name].copy_(value)

    def check(self, delta: Delta) -> None:
        if delta.base_fingerprint != self.fingerprint:
            raise DeltaError(
                f"this {delta.method} edit was made on another base model (fingerprint "
                f"{delta.base_fingerprint}, this model is {self.fingerprint}); it is not applied")
        for name in delta.names:
            param = self._param(name)
            if tuple(delta.update(name).shape) != tuple(param.shape):
                raise DeltaError(f"delta shape for {name} does not match the model")

    @torch.no_grad()
    def apply(self, delta: Delta, key: object = None) -> None:
        """Add the delta to the weights (after checking it belongs to this model)."""
        self.check(delta)
        for name in delta.names:
            param = self._param(name)
            if name not in self._base:
                self._base[name] = param.detach().clone()
            param.add_(delta.update(name).to(param.dtype))
        self.applied.append((key, delta))

    @torch.no_grad()
    def _restore(self, names: set[str]) -> None:
        for name in names:
            if name in self._base:
                self._param(name).copy_(self._base[name])

    @torch.no_grad()
    def revert(self, key: object = None) -> Delta:
        """Remove one applied delta (the last when key is None) and replay the later ones."""
        if not self.applied:
            raise DeltaError("no weight edit is applied")
        index = len(self.applied) - 1 if key is None else next(
            (i for i, (k, _) in enumerate(self.applied) if k == key), None)
        if index is None:
            raise DeltaError(f"weight edit {key} is not applied")
        _, removed = self.applied.pop(index)
        touched = set(removed.names)
        self._restore(touched)
        for _, delta in self.applied:
            for name in delta.names:
                if name in touched:
                    param = self._param(name)
                    param.add_(delta.update(name).to(param.dtype))
        return removed

    def revert_all(self) -> None:
        self._restore(set(self._base))
        self.applied = []
