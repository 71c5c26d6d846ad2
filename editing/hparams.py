"""Hyperparameters of the weight-editing methods, one JSON file per method and model family.

Files live in configs/<method>/<family>.json; a model without a family file falls back to
configs/<method>/<model_type>.json (llama, gpt2). Loading checks the layers and module names
against the actual model, so a wrong file fails with a message before any weight is touched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from errors import ConfigError

if TYPE_CHECKING:  # type hints only: the registry and the UI read this module without torch
    import torch


@dataclass(frozen=True)
class RomeConfig:
    """ROME (Meng et al. 2022): one rank-one update of one MLP output projection."""

    layer: int
    module_template: str  # the edited Linear/Conv1D, "{}" = layer (its input is the key)
    context_count: int  # self-generated prefixes the key is averaged over (plus the bare prompt)
    context_tokens: int  # length of each prefix
    steps: int  # gradient steps optimising the value
    learning_rate: float
    kl_factor: float  # weight of the KL term on "{subject} is a" (keeps other properties)
    weight_decay: float  # on |delta|^2 / |v|^2
    clamp_norm_factor: float  # |delta| <= factor * |v|
    stop_loss: float  # stop optimising once every text's target NLL is below this
    chat_prompts: bool  # also optimise over chat-templated questions (chat answers change too)
    covariance_tokens: int  # tokens of self-generated text for the key second moment C
    covariance_fact_tokens: int  # plus this many of shipped fact sentences (editing/key_text)
    covariance_ridge: float  # C + ridge * mean(diag C) * I, for a stable solve
    seed: int
    # search the value through the rank-one edit itself (delta scaled by u . x at every
    # position) instead of at the subject's last token only
    through_update: bool
    raw_questions: bool  # the chat questions also as plain text in the value search
    statement_forms: int  # other statement wordings of the relation in the value search
    optimizer: str  # of the value search: "adam" (steps at learning_rate) or "lbfgs"
    # the update reads 0 at the keys of facts promoted earlier (editing/preserve.py)
    keep_committed: bool = False


@dataclass(frozen=True)
class MemitConfig:
    """MEMIT (Meng et al. 2023): a batch of edits spread over several MLP layers."""

    layers: tuple[int, ...]
    module_template: str
    block_template: str  # decoder block "{}" whose output is the residual stream at a layer
    context_count: int
    context_tokens: int
    steps: int
    learning_rate: float
    kl_factor: float
    weight_decay: float
    clamp_norm_factor: float
    stop_loss: float
    chat_prompts: bool
    covariance_tokens: int
    covariance_fact_tokens: int
    covariance_ridge: float
    covariance_weight: float  # lambda: how strongly C (the preserved keys) resists the update
    seed: int
    raw_questions: bool  # as ROME's: the chat questions also as plain text in the value search
    statement_forms: int  # as ROME's: other statement wordings of the relation
    optimizer: str  # as ROME's: "adam" or "lbfgs"
    keep_committed: bool = False  # as ROME's: the update reads 0 at earlier promotions' keys

    @property
    def layer(self) -> int:
        """The value is optimised at the last layer of the range."""
        return self.layers[-1]


@dataclass(frozen=True)
class FtConfig:
    """Plain fine-tuning baseline: one MLP projection, new-target loss, bounded change."""

    layer: int
    module_template: str
    steps: int
    learning_rate: float
    norm_constraint: float  # each weight may move at most this far from its original value
    stop_loss: float
    chat_prompts: bool
    seed: int


@dataclass(frozen=True)
class MendConfig:
    """MEND (Mitchell et al. 2022): a trained editor maps gradient factors to weight updates."""

    layers: tuple[int, ...]
    module_templates: tuple[str, ...]  # edited projections, "{}" = layer
    rank: int  # hidden width of the low-rank editor MLP
    initial_rate: float  # edit rate before training (one plain gradient step)
    std_floor: float  # smallest standard deviation used to normalise gradient factors
    chat_prompts: bool  # edit texts include chat-templated questions (chat answers change)
    chat_equivalents: bool  # training: a paraphrase asked as a chat question must follow too
    weights: str  # repo-relative safetensors file of the trained editor
    weights_sha256: str  # its checksum, checked on load ("" until one is trained)
    edit_steps: int  # editing: apply the editor this many times, each on the edited model
    edit_scale: float  # editing: each pass's update times this (chosen on held-out subjects)
    # editing: edits whose prompt the passes left unsaid get one more pass at this scale, driven
    # by them alone (0 = never; only batches of at most batch_edits_max edits)
    retry_scale: float
    # editing: a batch larger than batch_edits_max is written as the least-squares merge of its
    # edits' single updates, with this ridge (relative to the mean of the inputs' Gram
    # diagonal; 0 = their plain sum); see editing/mend/apply.py
    merge_ridge: float
    steps: int  # training steps
    batch_edits: int  # edits per training step (applied together, as a batch edit)
    # with a larger value, each step's batch size is drawn from batch_edits..batch_edits_max,
    # so the editor also learns updates that still work when many are summed
    batch_edits_max: int
    learning_rate: float  # editor network (Adam)
    rate_learning_rate: float  # the per-weight log edit rates
    edit_loss_weight: float  # c_edit: new-target NLL on the edit and its paraphrases
    locality_loss_weight: float  # KL to the unedited model on unrelated prompts
    validation_every: int  # steps between held-out checks (and checkpoints)
    seed: int

    @property
    def layer(self) -> int:
        return self.layers[0]


T = TypeVar("T")
VALUE_OPTIMIZERS = {"adam", "lbfgs"}


def edited_layers(cfg) -> tuple[int, ...]:
    """The layers a config edits: MEMIT's range, or the one layer of ROME/ft."""
    return getattr(cfg, "layers", None) or (cfg.layer,)


def edited_modules(cfg) -> list[str]:
    """Module names a config edits, layer by layer."""
    templates = getattr(cfg, "module_templates", None) or (cfg.module_template,)
    return [t.format(layer) for layer in edited_layers(cfg) for t in templates]


def validate_for_model(cfg, model: torch.nn.Module, source: str) -> None:
    layers = edited_layers(cfg)
    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    names = {name for name, _ in model.named_modules()}
    if getattr(cfg, "batch_edits_max", 0) < getattr(cfg, "batch_edits", 0):
        raise ConfigError(f"{source}: batch_edits_max must be at least batch_edits")
    if getattr(cfg, "optimizer", "adam") not in VALUE_OPTIMIZERS:
        raise ConfigError(f"{source}: optimizer must be one of {sorted(VALUE_OPTIMIZERS)}")
    if getattr(cfg, "retry_scale", 0.0) < 0:
        raise ConfigError(f"{source}: retry_scale must be 0 (off) or positive")
    if getattr(cfg, "merge_ridge", 0.0) < 0:
        raise ConfigError(f"{source}: merge_ridge must be 0 (plain sum) or positive")
    for layer in layers:
        if count is not None and not 0 <= layer < count:
            raise ConfigError(f"{source}: layer {layer} is outside the model's 0..{count - 1}")
    for name in edited_modules(cfg):
        if name not in names:
            raise ConfigError(f"{source}: the model has no module '{name}' (module templates)")
