"""The second moment C = E[k k^T] of the keys (inputs) of an edited projection.

ROME and MEMIT use C to make an update touch the edited key and as little else as possible.
Nothing may be downloaded here, so the text comes from the model itself: sampled at
temperature 1 from common sentence openers, its tokens follow the model's own idea of natural
text, which is what C should describe. The sampled token ids and each layer's C are cached in
the data directory (keyed by the model fingerprint), so this runs once per model and layer.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from editing.locate import get_module, hooked
from editing.key_text import KEY_SENTENCES
from editing.stats_bundle import shipped_moment

log = logging.getLogger(__name__)

# Sentence openers the samples start from: a spread of topics and registers.
OPENERS = ("The", "In", "A", "It", "This", "When", "He", "She", "They", "We", "There", "After",
           "According to", "During", "Many", "One of the", "History", "Science", "The city of",
           "Born in", "Music", "Football", "The company", "Scientists", "Yesterday", "My",
           "If you", "How to", "Why", "Today", "Water", "Language")
SAMPLE_TOKENS = 128  # tokens per sampled passage
SAMPLE_BATCH = 64

Progress = Callable[[str], None]


def _cache_dir(root: Path, fingerprint: str) -> Path:
    path = Path(root) / "stats" / fingerprint
    path.mkdir(parents=True, exist_ok=True)
    return path


@torch.no_grad()
def sample_corpus(model: torch.nn.Module, tok, n_tokens: int, seed: int,
                  progress: Progress = log.info) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of passages the model writes itself, about n_tokens real tokens in all."""
    generator = torch.Generator().manual_seed(seed)
    stop_ids = {i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None}
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    passages: list[torch.Tensor] = []
    total = 0
    bar = tqdm(total=n_tokens, desc="Sampling text for C", unit="tok", mininterval=2.0)
    started = time.perf_counter()
    while total < n_tokens:
        openers = [OPENERS[(len(passages) + i) % len(OPENERS)] for i in range(SAMPLE_BATCH)]
        rows = [tok(o, add_special_tokens=False).input_ids for o in openers]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        past, step_ids, alive = None, ids, torch.ones(len(rows), dtype=torch.bool)
        out_ids, out_mask = [ids], [mask]
        for _ in range(SAMPLE_TOKENS):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1]:]
            out = model(input_ids=step_ids, attention_mask=mask, position_ids=positions,
                        past_key_values=past, use_cache=True)
            past = out.past_key_values
            probs = torch.softmax(out.logits[:, -1].float(), -1)
            nxt = torch.multinomial(probs, 1, generator=generator)[:, 0]
            for stop in stop_ids:
                alive &= nxt != stop
            nxt = torch.where(alive, nxt, torch.full_like(nxt, pad))
            out_ids.append(nxt[:, None])
            out_mask.append(alive[:, None].long())
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], -1)
            step_ids = nxt[:, None]
            if not alive.any():
                break
        batch_mask = torch.cat(out_mask, -1)
        passages.append(torch.stack([torch.cat(out_ids, -1), batch_mask]))
        added = int(batch_mask.sum())
        total += added
        bar.update(added)
        progress(f"Sampling text for the key statistics: {min(total, n_tokens)}/{n_tokens} "
                 "tokens")
    bar.close()
    width = max(p.shape[-1] for p in passages)
    padded = [torch.nn.functional.pad(p, (0, width - p.shape[-1])) for p in passages]
    both = torch.cat(padded, 1)
    log.info("sampled %d tokens in %.0f s", total, time.perf_counter() - started)
    return both[0], both[1]


def corpus(model: torch.nn.Module, tok, n_tokens: int, seed: int, cache_root: Path,
           fingerprint: str, progress: Progress = log.info) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached self-sampled corpus of this model (sampled on first use)."""
    path = _cache_dir(cache_root, fingerprint) / f"corpus-{n_tokens}-{seed}.safetensors"
    if path.exists():
        try:
            data = load_file(str(path))
            return data["ids"], data["mask"]
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError):
            log.warning("the cached corpus %s is unreadable; sampling again", path)
    ids, mask = sample_corpus(model, tok, n_tokens, seed, progress)
    partial = path.with_suffix(".partial")
    save_file({"ids": ids.contiguous(), "mask": mask.contiguous()}, str(partial))
    partial.replace(path)
    return ids, mask


@torch.no_grad()
def key_second_moments(model: torch.nn.Module, module_names: list[str], ids: torch.Tensor,
                       mask: torch.Tensor, batch: int = 8,
                       progress: Progress = log.info) -> dict[str, torch.Tensor]:
    """E[k k^T] of each module's input over the real (unmasked) tokens of the corpus."""
    sums: dict[str, torch.Tensor] = {}
    counts = {name: 0 for name in module_names}
    current_mask: list[torch.Tensor] = []

    def collector(name: str):
        def pre(_module, args):
            keys = args[0].detach().double()
            keep = current_mask[0].bool()
            chosen = keys[keep]
            sums[name] = sums.get(name, 0) + chosen.T @ chosen
            counts[name] += chosen.shape[0]
        return pre

    with contextlib.ExitStack() as stack:
        for name in module_names:
            stack.enter_context(hooked(get_module(model, name), pre=collector(name)))
        starts = range(0, ids.shape[0], batch)
        for i, start in enumerate(tqdm(starts, desc="Key statistics", mininterval=2.0)):
            rows, rows_mask = ids[start:start + batch], mask[start:start + batch]
            width = int(rows_mask.any(0).nonzero().max()) + 1 if rows_mask.any() else 1
            rows, rows_mask = rows[:, :width], rows_mask[:, :width]
            current_mask[:] = [rows_mask]
            model(input_ids=rows, attention_mask=rows_mask, use_cache=False)
            if i % 5 == 0:
                progress(f"Key statistics: passage batch {i + 1}/{len(starts)}")
    return {name: (sums[name] / max(counts[name], 1)).float() for name in module_names}


def fact_sentences(tok, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask): the first shipped factual sentences (editing/key_text), about n_tokens
    tokens, one per row from position 0 as a bare prompt is read."""

    rows, total = [], 0
    for line in KEY_SENTENCES.read_text(encoding="utf-8").splitlines():
        if total >= n_tokens:
            break
        ids = tok(line, add_special_tokens=False).input_ids
        if ids:
            rows.append(ids)
            total += len(ids)
    width = max((len(r) for r in rows), default=1)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows] or [[0]])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows] or [[0]])
    return ids, mask


def _facts_tag(fact_tokens: int) -> str:
    """Cache-name part naming the factual sentences in C (their count and file content)."""
    if not fact_tokens:
        return ""

    digest = hashlib.sha256(KEY_SENTENCES.read_bytes()).hexdigest()[:8]
    return f"-facts{fact_tokens}-{digest}"


def _file_name(name: str, n_tokens: int, seed: int, fact_tokens: int) -> str:
    return f"{name}.mom2-{n_tokens}-{seed}{_facts_tag(fact_tokens)}.safetensors"


def cache_file_name(name: str, cfg) -> str:
    """The cache (and shipped bundle) file name of C for module `name` under a config."""
    return _file_name(name, cfg.covariance_tokens, cfg.seed, cfg.covariance_fact_tokens)


def second_moments(model: torch.nn.Module, tok, module_names: list[str], n_tokens: int,
                   seed: int, cache_root: Path, fingerprint: str,
                   progress: Progress = log.info, fact_tokens: int = 0,
                   shipped: bool = True) -> dict[str, torch.Tensor]:
    """C for each named module, from the cache, the shipped bundle (`shipped`) or computed
    (and cached) now: over n_tokens of self-sampled text plus, with `fact_tokens`, that many
    tokens of shipped fact sentences (each token weighs the same)."""
    folder = _cache_dir(cache_root, fingerprint)
    result: dict[str, torch.Tensor] = {}
    missing = []
    for name in module_names:
        path = folder / _file_name(name, n_tokens, seed, fact_tokens)
        try:
            result[name] = load_file(str(path))["mom2"]
            continue
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError):
            pass
        bundled = shipped_moment(fingerprint, path.name) if shipped else None
        if bundled is None:
            missing.append(name)
            continue
        progress(f"Key statistics for {name}: shipped with the app")
        partial = path.with_suffix(".partial")
        save_file({"mom2": bundled.contiguous()}, str(partial), metadata={"source": "shipped"})
        partial.replace(path)
        result[name] = bundled
    if missing:
        started = time.perf_counter()
        ids, mask = corpus(model, tok, n_tokens, seed, cache_root, fingerprint, progress)
        tokens = int(mask.sum())
        if fact_tokens:  # the sampled text's part is the plain C, itself cached
            computed = second_moments(model, tok, missing, n_tokens, seed, cache_root,
                                      fingerprint, progress, shipped=shipped)
            fact_ids, fact_mask = fact_sentences(tok, fact_tokens)
            facts = key_second_moments(model, missing, fact_ids, fact_mask, progress=progress)
            added = int(fact_mask.sum())
            computed = {name: (computed[name] * tokens + facts[name] * added) / (tokens + added)
                        for name in missing}
            tokens += added
        else:
            computed = key_second_moments(model, missing, ids, mask, progress=progress)
        for name, mom2 in computed.items():
            path = folder / _file_name(name, n_tokens, seed, fact_tokens)
            partial = path.with_suffix(".partial")
            save_file({"mom2": mom2.contiguous()}, str(partial),
                      metadata={"tokens": str(tokens)})
            partial.replace(path)
            result[name] = mom2
        log.info("key statistics for %s over %d tokens in %.0f s", missing, tokens,
                 time.perf_counter() - started)
    return result


def config_moments(model: torch.nn.Module, tok, module_names: list[str], cfg, cache_root: Path,
                   fingerprint: str, progress: Progress = log.info,
                   shipped: bool = True) -> dict[str, torch.Tensor]:
    """`second_moments` as a ROME/MEMIT config asks for it (covariance_tokens, seed,
    covariance_fact_tokens)."""
    return second_moments(model, tok, module_names, cfg.covariance_tokens, cfg.seed,
                          cache_root, fingerprint, progress, cfg.covariance_fact_tokens,
                          shipped)
