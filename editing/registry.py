"""Every weight-editing method in one table that every caller reads: its name, hyperparameter
class, apply function, whether it writes a batch as one edit, and what it needs prepared once
per model.

Each apply function has the same signature (`ApplyFn`) and returns a `Delta`, leaving the
model's weights as it found them. The table names the function by module and attribute, and
`Method.apply` imports it on first use: the UI and the command lines read the names here
without loading torch (seconds of start-up before the page is served).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from config import CONFIG_DIR, load_config
from editing.hparams import FtConfig, MemitConfig, MendConfig, RomeConfig, validate_for_model
from errors import ConfigError

if TYPE_CHECKING:
    import torch

    from editing.deltas import Delta
    from editing.rome.compute import ChatFormat, EditRequest


class ApplyFn(Protocol):
    """The one signature of every method: requests in, one Delta out, the model unchanged.
    `stats_root`: where key statistics are cached; `committed`: parameter name -> keys of live
    promotions to keep in place (methods with no keys ignore both)."""

    def __call__(self, model: torch.nn.Module, tok, requests: list[EditRequest], cfg, *,
                 stats_root: Path | None, chat_format: ChatFormat | None,
                 base_fingerprint: str | None, committed: dict | None,
                 progress: Callable[[str], None]) -> Delta: ...


@dataclass(frozen=True)
class Method:
    name: str
    config_type: type
    function: str  # "module:attribute" of its ApplyFn
    batches: bool  # a batch of edits is one joint solve (else one edit after another)
    prepares: str  # what is readied once per model: "key statistics", "trained editor" or ""

    @property
    def apply(self) -> ApplyFn:
        module, _, attribute = self.function.partition(":")
        return getattr(importlib.import_module(module), attribute)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("rome", RomeConfig, "editing.rome.rome:apply_rome", False, "key statistics"),
    Method("memit", MemitConfig, "editing.memit.memit:apply_memit", True, "key statistics"),
    Method("mend", MendConfig, "editing.mend.apply:apply_mend", True, "trained editor"),
    Method("ft", FtConfig, "editing.ft:apply_ft", False, ""),
)}
NAMES: tuple[str, ...] = tuple(METHODS)


def method(name: str) -> Method:
    """The registry entry of `name`, or a message listing the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown weight-editing method '{name}'; "
                          f"choose one of {', '.join(NAMES)}") from None


def config_path(name: str, family: str, model: torch.nn.Module) -> Path:
    """configs/<method>/<family>.json, else configs/<method>/<model_type>.json."""
    folder = CONFIG_DIR / name
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    for candidate in (family, model_type):
        if candidate and (folder / f"{candidate}.json").exists():
            return folder / f"{candidate}.json"
    raise ConfigError(f"no {name} hyperparameters for model family '{family}' (model type "
                      f"'{model_type}'): add {folder / (model_type or family)}.json")


def load_method_config(name: str, family: str, model: torch.nn.Module,
                       path: Path | None = None):
    """The validated config of method `name` for this model (or from an explicit file)."""
    path = path or config_path(name, family, model)
    cfg = load_config(method(name).config_type, path)
    validate_for_model(cfg, model, str(path))
    return cfg
