"""Keep llama.cpp decoding exactly the live weights: a GGUF file per weight state, written
once, loaded, and swapped in with each weight edit.

torch holds the float32 weights that promotions edit; chat replies come from llama.cpp
(assistant/engine.py), about four to five times faster on one thread. The two must never
disagree about which weights are live, so:

- start-up: after the committed deltas are replayed, the GGUF of those weights is loaded
  (written first if no earlier run left it; files are named by the weights' checksum, so a
  restart reuses them);
- promotion: the GGUF is written from the checked copy *before* the commit, and the commit
  swaps it in under the same write lock that changes the torch weights: no reply ever sees the
  new torch weights with the old GGUF or the reverse;
- rollback: the GGUF of the reverted weights is written and swapped in under that write lock
  (replies wait for the swap; `ChatEngine.last_swap_seconds` says how long).

A reply already streaming finishes on the engine it started with. Where llama.cpp cannot serve
(the binding is missing, the model is not Llama-shaped, the config says "torch") chat stays on
torch, and `note` says why, once.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from assistant.engine import LlamaCppEngine, binding_problem
from assistant.llm import ChatLLM
from editing.deltas import own_checksum, own_weights
from editing.gguf_file import QTYPES, GGUFExportError, write_gguf

log = logging.getLogger(__name__)
logging.getLogger("gguf.gguf_writer").setLevel(logging.WARNING)  # it logs every file it opens
GGUF_DIR = Path("models") / "gguf"  # under the data dir; shared by data dirs that share models/
KEEP_FILES = 3  # the live file and the last few states (a rollback often returns to one)
Progress = Callable[[str], None]


class ChatEngine:
    """Which engine decodes chat replies, and the GGUF files behind llama.cpp."""

    def __init__(self, llm: ChatLLM, data_dir: Path, wanted: str | None = None,
                 threads: int = 1) -> None:
        self.llm = llm
        self.folder = Path(data_dir) / GGUF_DIR
        self.wanted = wanted or llm.config.engine
        self.gguf_type = llm.config.engine_gguf_type
        self.threads = threads
        self.last_swap_seconds: float | None = None
        self.note = self._problem() or f"llama.cpp ({self.gguf_type})"
        llm.engine_note = self.note

    def _problem(self) -> str | None:
        if self.wanted != "llama.cpp":
            return "torch (as configured)"
        if self.gguf_type not in QTYPES:
            return f"torch: unknown engine_gguf_type {self.gguf_type!r}"
        if getattr(self.llm.model.config, "model_type", None) != "llama":
            return "torch: llama.cpp here serves Llama-architecture models only"
        problem = binding_problem()
        return f"torch: {problem}" if problem else None

    @property
    def uses_llama_cpp(self) -> bool:
        return self.note.startswith("llama.cpp")

    def path_for(self, checksum: str) -> Path:
        return self.folder / f"{checksum}-{self.gguf_type}.gguf"

    def build(self, model: torch.nn.Module, progress: Progress = log.info
              ) -> LlamaCppEngine | None:
        """An engine decoding `model`'s weights (the live model or a checked copy), its GGUF
        written if no earlier run left one; None when chat stays on torch."""
        if not self.uses_llama_cpp:
            return None
        checksum = own_checksum(model)
        path = self.path_for(checksum)
        if not path.exists():
            progress(f"Writing the chat engine's GGUF of these weights ({self.gguf_type})")
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
            try:
                write_gguf(model, own_weights(model), self.llm.tokenizer, partial,
                           self.gguf_type, template=self.llm.gguf_source)
                os.replace(partial, path)  # atomic: a reader never sees half a file
            except (OSError, GGUFExportError):
                partial.unlink(missing_ok=True)
                raise
        os.utime(path)  # most recently used: kept by `tidy`
        return LlamaCppEngine(path, self.llm.config.context_tokens, self.threads)

    def install(self, engine: LlamaCppEngine | None) -> None:
        """Make `engine` decode every reply from now on (call under the weights write lock
        when the torch weights change with it)."""
        self.llm.engine = engine

    def start(self, progress: Progress = log.info) -> None:
        """Load the engine for the live weights (after the replay); torch on any failure."""
        if not self.uses_llama_cpp:
            log.info("Chat replies: %s", self.note)
            return
        started = time.perf_counter()
        try:
            with self.llm.weights_lock.read():
                engine = self.build(self.llm.model, progress)
        except Exception as exc:  # a broken binding or disk: chat must still answer
            self.note = f"torch: the llama.cpp engine failed to start ({exc})"
            self.llm.engine_note = self.note
            log.warning("Chat replies: %s", self.note)
            return
        self.install(engine)
        self.tidy()
        log.info("Chat replies: %s, ready in %.1f s", self.note,
                 time.perf_counter() - started)

    def refresh(self, progress: Progress = log.info) -> None:
        """Swap in the engine of the live weights as they are now; the caller holds the
        weights write lock (replies wait, none sees stale weights)."""
        if not self.uses_llama_cpp:
            return
        started = time.perf_counter()
        self.install(self.build(self.llm.model, progress))
        self.last_swap_seconds = round(time.perf_counter() - started, 2)
        self.tidy()

    def tidy(self) -> None:
        """Delete all but the KEEP_FILES most recently used GGUF files (a file still loaded
        by an engine stays readable until that engine is gone)."""
        if not self.folder.exists():
            return
        files = sorted(self.folder.glob("*.gguf"), key=lambda p: p.stat().st_mtime,
                       reverse=True)
        live = getattr(self.llm.engine, "path", None)
        for old in files[KEEP_FILES:]:
            if old != live:
                old.unlink(missing_ok=True)


def serve(llm: ChatLLM, data_dir: Path, wanted: str | None = None, threads: int = 1,
          progress: Progress = log.info) -> ChatEngine:
    """Start the chat engine on `llm`'s weights as they are (benchmarks and evaluations that
    build the model themselves decode as the app does); returns it, `note` saying which."""
    engine = ChatEngine(llm, data_dir, wanted, threads)
    engine.start(progress)
    return engine
