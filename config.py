"""Typed settings and per-model hyperparameter files.

Hyperparameters live in JSON files under configs/ (one per model family) and are loaded into
frozen dataclasses here, validated field by field, so a typo in a file fails at start-up with a
message naming the file and the field instead of surfacing later as odd behaviour.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent
CONFIG_DIR = REPO_ROOT / "configs"
DATA_DIR_ENV = "AMEND_DATA_DIR"
STORE_URL_ENV = "AMEND_STORE_URL"

T = TypeVar("T")


ENGINES = ("llama.cpp", "torch")


@dataclass(frozen=True)
class ChatConfig:
    """How the base model is prompted and how much it may read and write."""

    system_prompt: str
    context_tokens: int  # prompt + reply budget; the model may accept more, CPU time says less
    max_new_tokens: int
    stop_tokens: tuple[str, ...]  # any of these ends a reply (end-of-turn for chat models)
    # longest n-gram whose immediate repeat is forbidden ("France, France"); 0: allow all
    max_repeat_ngram: int
    # who decodes chat replies: "llama.cpp" (a GGUF of the live weights; torch where the
    # binding is missing or the model is not Llama-shaped) or "torch"
    engine: str
    engine_gguf_type: str  # how that GGUF stores the weights (f16: chosen in BENCHMARKS.md)

    def __post_init__(self) -> None:
        if self.max_repeat_ngram < 0 or self.max_repeat_ngram == 1:
            raise ConfigError(f"chat config: max_repeat_ngram must be 0 (off) or at least 2, "
                              f"got {self.max_repeat_ngram}")
        if self.engine not in ENGINES:
            raise ConfigError(f"chat config: engine must be one of {ENGINES}, "
                              f"got {self.engine!r}")


@dataclass(frozen=True)
class RouterConfig:
    """Edit-memory retrieval and the v0 scope rule, per embedding model."""

    embedding_model: str
    embedding_int8: bool  # dynamic int8 embedder: 2.7x faster queries on CPU
    top_k: int  # candidates fetched from FAISS before the scope decision
    scope_threshold: float  # cosine similarity at or above which a candidate may govern a query
    subject_overlap_min: float  # share of the subject's words that must appear in the query
    relation_threshold: float  # similarity of query and prompt with the subject masked out
    scope_head: str  # trained head (repo-relative .npz) deciding instead of relation_threshold
    supersede_threshold: float  # relation similarity at which a same-subject edit is replaced
    counterfactual_system_prompt: str  # "{facts}" is replaced by the governing edits


@dataclass(frozen=True)
class CounterfactualConfig:
    """The counterfactual model's LoRA adapter and how it is trained, per model family."""

    adapter_pattern: str  # regex over module names: the Linear layers that get an adapter
    rank: int
    alpha: float
    learning_rate: float
    steps: int
    batch_size: int
    max_distractors: int  # other facts placed beside the governing one in training inputs
    seed: int
    weights: str  # repo-relative safetensors file of the trained adapter


@dataclass(frozen=True)
class AppSettings:
    """Run-time settings from the command line and environment (not hyperparameters)."""

    data_dir: Path
    model_path: Path | None = None  # None: the default SmolLM2 GGUF, converted once
    threads: int = 1  # two torch threads stall on 2-core machines (23 vs 8 tokens/s measured)
    host: str = "127.0.0.1"
    port: int = 7860
    max_new_tokens: int | None = None  # None: the chat config's value
    shared: bool = False  # reachable by others: admin password, per-session corrections
    promotion_config: Path | None = None  # the promotion guard's thresholds (default shipped)
    engine: str | None = None  # None: the chat config's engine ("llama.cpp" or "torch")
    # a postgresql:// URL: the edits live in that database, shared by every instance given
    # it; None: the SQLite file in data_dir. (The edit index stays a per-data-dir cache.)
    store_url: str | None = None


def default_data_dir() -> Path:
    """Per-user data folder, overridable by AMEND_DATA_DIR (the --data-dir flag wins over both)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "amend"


def default_store_url() -> str | None:
    """The store URL from AMEND_STORE_URL (the --store-url flag wins), or None: SQLite."""
    return os.environ.get(STORE_URL_ENV) or None


def _check_type(name: str, value: Any, annotation: str, source: str) -> Any:
    expected = {"str": str, "int": int, "float": (int, float), "tuple[str, ...]": list,
                "tuple[int, ...]": list, "bool": bool}
    want = expected.get(annotation)
    if want is None:
        return value
    if (isinstance(value, bool) and want is not bool) or not isinstance(value, want):
        raise ConfigError(f"{source}: field '{name}' should be {annotation}, got {value!r}")
    if annotation.startswith("tuple["):
        item = str if annotation == "tuple[str, ...]" else int
        if not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{source}: field '{name}' should be a list of {item.__name__}")
        return tuple(value)
    if annotation == "float":
        return float(value)
    return value


def load_config(cls: type[T], path: Path) -> T:
    """Load a frozen dataclass from a JSON file, rejecting missing, unknown or mistyped fields."""
    source = str(path)
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {source}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    raw.pop("_comment", None)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    missing = sorted(name for name in fields if name not in raw)
    if unknown or missing:
        raise ConfigError(f"{source}: unknown fields {unknown}, missing fields {missing}")
    values = {name: _check_type(name, raw[name], str(f.type), source) for name, f in fields.items()}
    return cls(**values)


def chat_config_for(family: str) -> ChatConfig:
    """The chat config for a model family, falling back to the generic one."""
    path = CONFIG_DIR / "chat" / f"{family}.json"
    if not path.exists():
        path = CONFIG_DIR / "chat" / "default.json"
    return load_config(ChatConfig, path)


def counterfactual_config(family: str) -> CounterfactualConfig | None:
    """The adapter config of a model family, or None when the family has none."""
    path = CONFIG_DIR / "counterfactual" / f"{family}.json"
    return load_config(CounterfactualConfig, path) if path.exists() else None


def router_config(name: str = "all-minilm-l6-v2") -> RouterConfig:
    return load_config(RouterConfig, CONFIG_DIR / "router" / f"{name}.json")
