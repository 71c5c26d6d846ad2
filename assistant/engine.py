"""llama.cpp as the chat engine: the same greedy replies, about six times faster on one thread.

torch keeps the float32 weights for editing, scoring and training; chat replies are decoded by
llama.cpp from a GGUF file of those same live weights (written by editing/serving.py). The
prompt tokens, the stop tokens, the repeat blocker and the loop rule stay ChatLLM's, so both
engines follow one decoding rule and only the arithmetic differs.

The binding (`llama-cpp-python`) is built from source when the app is installed; where it is
missing or broken the app says so once and chat stays on torch.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
_missing_reason: str | None = None
_checked = False


def binding_problem() -> str | None:
    """None when llama.cpp can be used; else why not (checked once per process)."""
    global _missing_reason, _checked
    if not _checked:
        _checked = True
        try:
            import llama_cpp  # noqa: F401
        except Exception as exc:  # ImportError, or a shared library that fails to load
            _missing_reason = (f"the llama.cpp binding could not be loaded ({exc}); chat uses "
                               "the transformers engine. Install it with: pip install "
                               "llama-cpp-python (needs cmake and a C++ compiler)")
    return _missing_reason


class _Blocking:
    """The repeat blocker as a llama.cpp logits processor (numpy logits, in place)."""

    def __init__(self, blocker: Any) -> None:
        self.blocker = blocker

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        banned = self.blocker.banned(input_ids[-self.blocker.window:].tolist())
        if banned:
            scores[banned] = -np.inf
        return scores


class LlamaCppEngine:
    """One GGUF file loaded in llama.cpp. A context holds one conversation's cache, so replies
    take turns (`_lock`); the app swaps in a new engine after a weight edit, and a reply in
    flight finishes on the engine it started with."""

    def __init__(self, path: Path, context_tokens: int, threads: int = 1) -> None:
        from llama_cpp import Llama

        self.path = Path(path)
        self._model = Llama(model_path=str(path), n_ctx=context_tokens, n_threads=threads,
                            n_threads_batch=threads, n_batch=512, verbose=False,
                            flash_attn=True)
        self._lock = threading.Lock()

    def stream(self, ids: list[int], max_new_tokens: int, blocker: Any = None
               ) -> Iterator[int]:
        """Greedy next tokens after `ids` (the caller stops at stop tokens and loops);
        the blocker's banned tokens are never chosen."""
        from llama_cpp import LogitsProcessorList

        processors = LogitsProcessorList([_Blocking(blocker)]) if blocker else None
        with self._lock:
            # no reuse of the previous reply's cache: a prompt evaluated in other batch splits
            # gives other rounding, and the same question must get the same reply every time
            self._model.reset()
            for count, token in enumerate(self._model.generate(
                    ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                    logits_processor=processors), 1):
                yield int(token)
                if count >= max_new_tokens + 1:  # the caller stops first; never run away
                    return

    def close(self) -> None:
        model, self._model = self._model, None
        if model is not None:
            model.close()
