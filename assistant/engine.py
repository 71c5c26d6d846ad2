"""llama.cpp as the chat engine: the same greedy replies, about six times faster on one thread.

torch keeps the float32 weights for editing, scoring and training; chat replies are decoded by
llama.cpp from a GGUF file of those same live weights (written by editing/serving.py). The
prompt tokens, the stop tokens, the repeat blocker and the loop rule stay ChatLLM's, so both
engines follow one decoding rule and only the arithmetic differs.

The binding (`llama-cpp-python`, requirements-engine.txt) is built from source when the app is
installed; where that failed or it is broken the app says so once and chat stays on torch.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

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
                               "the transformers engine. Install it with: pip install -r "
                               "requirements-engine.txt (needs cmake and a C++ compiler)")
    return _missing_reason


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
        """Greedy next tokens after `ids` (the caller stops at stop tokens and loops); the
        blocker's banned tokens are never chosen.

        llama.cpp samples natively (a Python logits processor on every token costs about 8%
        of the speed); on the rare token the blocker bans, the next-best token is taken from
        the same logits and decoding goes on from it, reusing the cache: the same tokens as
        masking before every sample."""
        n_vocab = self._model.n_vocab()
        history = list(ids)
        produced = 0
        with self._lock:
            # no reuse of the previous reply's cache: a prompt evaluated in other batch splits
            # gives other rounding, and the same question must get the same reply every time
            self._model.reset()
            while produced <= max_new_tokens:  # the caller stops first; never run away
                replacement = None
                tokens = self._model.generate(history, temp=0.0, top_k=1, top_p=1.0,
                                              min_p=0.0, repeat_penalty=1.0)
                try:
                    for token in tokens:
                        banned = (blocker.banned(history[-blocker.window:]) if blocker
                                  else ())
                        if token in banned:
                            logits = np.array(np.ctypeslib.as_array(
                                self._model._ctx.get_logits_ith(-1), shape=(n_vocab,)))
                            logits[banned] = -np.inf
                            replacement = int(logits.argmax())
                            break
                        history.append(int(token))
                        produced += 1
                        yield int(token)
                        if produced > max_new_tokens:
                            return
                finally:
                    tokens.close()
                if replacement is None:
                    return
                history.append(replacement)  # decoding resumes after it (cache reused)
                produced += 1
                yield replacement
