"""MEND's editor network (Mitchell et al. 2022, "Fast Model Editing at Scale").

The fine-tuning gradient of a weight W (out x in) on a batch is a sum of rank-one terms
delta_t u_t^T, one per token t: u_t is the layer's input, delta_t the loss gradient at its output.
MEND learns a map g(u_t, delta_t) -> (u~_t, delta~_t) and edits with
W' = W - lr * sum_t delta~_t u~_t^T, so an edit is one forward/backward pass plus a small MLP.

One `FactorTransform` serves every edited weight of the same (in, out) shape; each weight gets
its own input normalisation, scale and shift of the hidden layer, and learned edit rate. The
transform is a residual low-rank MLP whose second matrix starts at zero, and its output is
mapped back to the input scale, so an untrained editor is exactly one gradient step.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from errors import ConfigError


class RunningMoments(nn.Module):
    """Per-dimension mean and variance over every token seen in training (frozen after)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("m2", torch.zeros(size))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Chan et al.'s parallel update of mean and sum of squared deviations."""
        n = x.shape[0]
        if n == 0:
            return
        batch_mean = x.mean(0)
        batch_m2 = ((x - batch_mean) ** 2).sum(0)
        total = self.count + n
        diff = batch_mean - self.mean
        self.mean += diff * (n / total).float()
        self.m2 += batch_m2 + diff ** 2 * (self.count * n / total).float()
        self.count.copy_(total)

    def std(self, floor: float) -> torch.Tensor:
        if self.count < 2:
            return torch.ones_like(self.mean)
        return (self.m2 / (self.count - 1)).sqrt().clamp_min(floor)


class FactorTransform(nn.Module):
    """g(u, delta): a residual low-rank MLP over the normalised concatenation [u, delta]."""

    def __init__(self, in_features: int, out_features: int, rank: int, weights: list[str],
                 std_floor: float) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        size = in_features + out_features
        self.weights = list(weights)  # names of the parameters this transform serves
        self.std_floor = std_floor
        self.down = nn.Linear(size, rank)
        self.up = nn.Linear(rank, size, bias=False)
        nn.init.zeros_(self.up.weight)  # identity at the start
        self.scale = nn.Parameter(torch.ones(len(weights), rank))
        self.shift = nn.Parameter(torch.zeros(len(weights), rank))
        self.moments = nn.ModuleList(RunningMoments(size) for _ in weights)

    def forward(self, weight: str, u: torch.Tensor, delta: torch.Tensor,
                track: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Transformed factors of one weight's gradient; u: (N, in), delta: (N, out)."""
        index = self.weights.index(weight)
        z = torch.cat([u, delta], dim=-1).float()
        moments = self.moments[index]
        if track:
            moments.update(z)
        mean, std = moments.mean, moments.std(self.std_floor)
        normal = (z - mean) / std
        hidden = torch.relu(self.down(normal) * self.scale[index] + self.shift[index])
        out = (normal + self.up(hidden)) * std + mean
        return out[:, :self.in_features], out[:, self.in_features:]


class MendEditor(nn.Module):
    """All transforms of one model, plus one learned edit rate per edited weight."""

    def __init__(self, shapes: dict[str, tuple[int, int]], rank: int, initial_rate: float,
                 std_floor: float) -> None:
        """shapes: edited weight name -> (in_features, out_features)."""
        super().__init__()
        self.shapes = dict(shapes)
        groups: dict[tuple[int, int], list[str]] = {}
        for name, shape in self.shapes.items():
            groups.setdefault(shape, []).append(name)
        self.transforms = nn.ModuleDict({
            f"{i}x{o}": FactorTransform(i, o, rank, names, std_floor)
            for (i, o), names in groups.items()})
        self.log_rates = nn.ParameterDict({
            _key(name): nn.Parameter(torch.tensor(float(initial_rate)).log())
            for name in self.shapes})

    def rate(self, weight: str) -> torch.Tensor:
        return self.log_rates[_key(weight)].exp()

    def transform(self, weight: str, u: torch.Tensor, delta: torch.Tensor,
                  track: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        i, o = self.shapes[weight]
        return self.transforms[f"{i}x{o}"](weight, u, delta, track)

    # -- storage ------------------------------------------------------------------------
    def save(self, path: Path, meta: dict) -> str:
        """Write the editor atomically; returns the file's sha256."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        partial = path.with_suffix(path.suffix + ".partial")
        save_file(tensors, str(partial),
                  metadata={"shapes": json.dumps(self.shapes), "meta": json.dumps(meta)})
        partial.replace(path)
        return file_sha256(path)

    def load_tensors(self, path: Path) -> dict:
        """Load trained tensors into this editor; returns the file's meta."""
        try:
            with safe_open(str(path), framework="pt") as handle:
                header = handle.metadata() or {}
            tensors = load_file(str(path))
        except (OSError, SafetensorError) as exc:
            raise ConfigError(f"cannot read the MEND editor {path}: {exc}") from exc
        saved = {k: tuple(v) for k, v in json.loads(header.get("shapes", "{}")).items()}
        if saved != self.shapes:
            raise ConfigError(f"the MEND editor {path} was trained for other weights "
                              f"({sorted(saved)}) than this config edits ({sorted(self.shapes)})")
        self.load_state_dict(tensors)
        return json.loads(header.get("meta", "{}"))


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys may not contain dots


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
