"""Weight-editing methods behind one interface, for the evaluator and the promotion service.

An `Editor` binds a method to a loaded model and its per-family hyperparameters, does the
one-off preparation (the key statistics C for ROME/MEMIT, timed and reported apart from the
edits) and turns a list of requests into a `Delta`.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from editing.covariance import config_moments
from editing.deltas import Delta, model_fingerprint
from editing.hparams import edited_modules
from editing.mend.apply import load_editor
from editing.registry import load_method_config, method
from editing.rome.compute import EditRequest, context_prefixes

log = logging.getLogger(__name__)


@dataclass
class Editor:
    method: str
    cfg: object
    stats_root: Path
    base_fingerprint: str  # of the unedited base model: stamps deltas, keys cached statistics
    setup_info: dict = field(default_factory=dict)

    def prepare(self, llm, progress: Callable[[str], None] = log.info) -> None:
        """Compute (or load from cache) what every edit needs, once: the key statistics C of
        ROME/MEMIT, or MEND's trained editor (checksum checked)."""
        needs = method(self.method).prepares
        if needs == "trained editor":
            started = time.perf_counter()
            load_editor(llm.model, self.cfg)
            self.setup_info = {"editor_load_seconds": round(time.perf_counter() - started, 2)}
            return
        if needs != "key statistics":
            return
        names = edited_modules(self.cfg)
        started = time.perf_counter()
        config_moments(llm.model, llm.tokenizer, names, self.cfg, self.stats_root,
                       self.base_fingerprint, progress)
        moments_done = time.perf_counter()
        # the context prefixes keys are averaged over: sampled once per base model
        context_prefixes(llm.model, llm.tokenizer, self.cfg.context_count,
                         self.cfg.context_tokens, self.cfg.seed, self.base_fingerprint)
        self.setup_info = {"covariance_seconds": round(moments_done - started, 1),
                           "covariance_tokens": self.cfg.covariance_tokens,
                           "covariance_fact_tokens": self.cfg.covariance_fact_tokens,
                           "prefix_seconds": round(time.perf_counter() - moments_done, 2)}

    def edit(self, llm, requests: list[EditRequest],
             progress: Callable[[str], None] = log.info,
             committed: dict | None = None) -> Delta:
        """The delta writing these requests into `llm` (a ChatLLM: model, tokenizer,
        chat_text); the model itself is left unchanged. `committed`: parameter name -> keys
        of live promotions, which ROME and MEMIT keep in place (editing/preserve.py)."""
        apply = method(self.method).apply
        return apply(llm.model, llm.tokenizer, requests, self.cfg, stats_root=self.stats_root,
                     chat_format=llm.chat_text, base_fingerprint=self.base_fingerprint,
                     progress=progress, committed=committed)


def load_method(name: str, llm, stats_root: Path, config_file: Path | None = None,
                progress: Callable[[str], None] = log.info,
                base_fingerprint: str | None = None) -> Editor:
    """The method's editor for this model, prepared (key statistics ready)."""
    cfg = load_method_config(name, llm.family, llm.model, config_file)  # unknown name: says so
    editor = Editor(name, cfg, Path(stats_root),
                    base_fingerprint or model_fingerprint(llm.model))
    editor.prepare(llm, progress)
    return editor
