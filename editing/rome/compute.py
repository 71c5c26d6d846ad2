"""Keys and values of located edits, shared by ROME and MEMIT.

key k*: the input of the edited projection at the subject's last token, averaged over short
self-generated prefixes so it stands for the subject in any context.
value v*: what the projection should output there so the model says the new target. Found by
gradient descent on an additive vector delta at that position (the weights stay frozen), with
the target's NLL after the prompt (and, chat-aware, after chat-templated questions), a KL term
on "{subject} is a" that keeps the subject's other properties, weight decay and a norm clamp.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from editing.deltas import model_fingerprint
from editing.locate import (block_input, first_tensor, from_block, get_module, hooked,
                            subject_last_tokens)

log = logging.getLogger(__name__)

CONTEXT_OPENERS = ("The", "Therefore", "Because", "I", "You", "It", "In", "However")
KL_TEMPLATE = "{} is a"

ChatFormat = Callable[[str], str]  # user message -> templated text up to the assistant's turn


@dataclass(frozen=True)
class EditRequest:
    """One fact to write: the prompt contains the subject; the target follows the prompt."""

    subject: str
    prompt: str
    target_new: str
    questions: tuple[str, ...] = ()  # chat questions asking the same (for chat-aware values)


@dataclass
class Texts:
    """A batch of texts, where delta goes in each, and which positions carry the target."""

    ids: torch.Tensor
    mask: torch.Tensor
    delta_rows: torch.Tensor
    delta_cols: torch.Tensor
    target_rows: list[torch.Tensor] = field(default_factory=list)  # per text
    target_cols: list[torch.Tensor] = field(default_factory=list)
    target_ids: list[torch.Tensor] = field(default_factory=list)
    last: torch.Tensor | None = None  # index of each text's last real token


_PREFIXES: dict[tuple, list[str]] = {}


def context_prefixes(model: torch.nn.Module, tok, count: int, length: int, seed: int,
                     fingerprint: str | None = None) -> list[str]:
    """Short passages the model writes itself; "" (the bare prompt) comes first.

    Made once per base model (fingerprint) and setting: later edits, and the private copies
    promotions work on, reuse them instead of sampling again.
    """
    key = (fingerprint or model_fingerprint(model), count, length, seed)
    if key not in _PREFIXES:
        _PREFIXES[key] = _sample_prefixes(model, tok, count, length, seed)
    return list(_PREFIXES[key])


@torch.no_grad()
def _sample_prefixes(model: torch.nn.Module, tok, count: int, length: int,
                     seed: int) -> list[str]:
    generator = torch.Generator().manual_seed(seed)
    prefixes = [""]
    for i in range(count):
        ids = tok(CONTEXT_OPENERS[i % len(CONTEXT_OPENERS)], add_special_tokens=False).input_ids
        for _ in range(length):
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
            ids.append(int(torch.multinomial(torch.softmax(logits.float(), -1), 1,
                                             generator=generator)))
        text = tok.decode(ids, skip_special_tokens=True).replace("\n", " ").strip()
        prefixes.append(text.replace("{", "").replace("}", "") + ". ")
    return prefixes


def _batch(tok, pieces: list[tuple[str, str, str]]) -> Texts:
    """pieces: (text before the target, subject, target); the target may be ""."""
    rows, delta_rows, delta_cols = [], [], []
    targets: list[tuple[int, list[int], int]] = []
    for row, (prefix, subject, target) in enumerate(pieces):
        prefix_ids = tok(prefix, add_special_tokens=False).input_ids
        target_ids = tok(target, add_special_tokens=False).input_ids if target else []
        for col in subject_last_tokens(tok, prefix, subject):
            delta_rows.append(row)
            delta_cols.append(col)
        rows.append(prefix_ids + target_ids)
        targets.append((len(prefix_ids), target_ids, row))
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    texts = Texts(ids=torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
                  mask=torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
                  delta_rows=torch.tensor(delta_rows), delta_cols=torch.tensor(delta_cols),
                  last=torch.tensor([len(r) - 1 for r in rows]))
    for start, target_ids, row in targets:
        if target_ids:
            # the logit at position i predicts token i + 1
            texts.target_rows.append(torch.full((len(target_ids),), row))
            texts.target_cols.append(torch.arange(start - 1, start - 1 + len(target_ids)))
            texts.target_ids.append(torch.tensor(target_ids))
    return texts


def rewriting_pieces(request: EditRequest, prefixes: list[str],
                     chat_format: ChatFormat | None,
                     raw_questions: bool = False) -> list[tuple[str, str, str]]:
    """Texts whose continuation must become the target: prompt in contexts, chat questions
    (and, with `raw_questions`, the questions as plain text too: more wordings of the relation
    for the value to serve)."""
    target = " " + request.target_new.strip()
    pieces = [(f"{p}{request.prompt}", request.subject, target) for p in prefixes]
    if raw_questions:
        pieces += [(question, request.subject, target) for question in request.questions]
    if chat_format is not None:
        answer = request.target_new.strip()
        for question in (request.prompt, *request.questions):
            pieces.append((chat_format(question), request.subject, answer))
        if not request.prompt.rstrip().endswith("?"):
            # the chat model often restates the prompt before answering
            pieces.append((chat_format(request.prompt) + request.prompt, request.subject,
                           target))
    return pieces


def _split_points(texts: Texts) -> torch.Tensor:
    """Each text's first delta position: where the part that can change begins."""
    return torch.stack([texts.delta_cols[texts.delta_rows == r].min()
                        for r in range(texts.ids.shape[0])])


class SuffixRunner:
    """Runs a batch of texts where only the part from the first delta position on can change.

    Everything before a text's first subject token is the same at every optimisation step
    (causal attention: earlier positions never see the delta), so it is run once and kept as
    a key/value cache; each step runs only the suffixes. For chat-templated texts, whose
    system prompt and template come before the subject, this is most of the text. With
    `start_module`, the blocks below the one holding it (which the delta cannot reach either)
    run once too, and each step starts from their output.
    """

    def __init__(self, model: torch.nn.Module, texts: Texts, needed: torch.Tensor,
                 start_module: str | None = None) -> None:
        """`needed`: suffix-local columns whose logits the loss reads (the rest are skipped:
        the vocabulary projection is a fifth of the model's work)."""
        self.model = model
        self.start_module = start_module
        lengths = texts.mask.sum(-1)
        self.split = _split_points(texts)
        self.prefix_width = int(self.split.max())
        self.suffix_width = int((lengths - self.split).max())
        pad = 0  # masked out everywhere
        rows = len(lengths)
        prefix = torch.full((rows, self.prefix_width), pad)
        prefix_mask = torch.zeros((rows, self.prefix_width), dtype=torch.long)
        suffix = torch.full((rows, self.suffix_width), pad)
        suffix_mask = torch.zeros((rows, self.suffix_width), dtype=torch.long)
        for r in range(rows):
            cut, end = int(self.split[r]), int(lengths[r])
            if cut:
                prefix[r, -cut:] = texts.ids[r, :cut]
                prefix_mask[r, -cut:] = 1
            suffix[r, :end - cut] = texts.ids[r, cut:end]
            suffix_mask[r, :end - cut] = 1
        self.suffix = suffix
        self.mask = torch.cat([prefix_mask, suffix_mask], -1)
        self.positions = self.split[:, None] + torch.arange(self.suffix_width)[None, :]
        self.delta_rows = texts.delta_rows
        self.delta_cols = self.local(texts.delta_rows, texts.delta_cols)
        self.keep = torch.unique(needed)
        self.column = torch.full((self.suffix_width,), -1, dtype=torch.long)
        self.column[self.keep] = torch.arange(len(self.keep))
        self.cache = None
        self._prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        with torch.no_grad():
            if self.prefix_width:
                positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
                self.cache = model(input_ids=prefix, attention_mask=prefix_mask,
                                   position_ids=positions, use_cache=True).past_key_values
                self._prefix_kv = [(layer.keys, layer.values) for layer in self.cache.layers]
            self.hidden = None
            if start_module is not None:
                captured: dict[str, torch.Tensor] = {}
                with block_input(model, start_module, captured):
                    self._run()
                self.hidden = captured["hidden"]

    def local(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Columns of the full texts as columns of the suffix batch."""
        return cols - self.split[rows]

    def _run(self) -> torch.Tensor:
        out = self.model(input_ids=self.suffix, attention_mask=self.mask,
                         position_ids=self.positions, past_key_values=self.cache,
                         use_cache=self.cache is not None, logits_to_keep=self.keep)
        # drop this step's suffix from the cache: every layer back to the kept prefix
        for layer, (keys, values) in zip(self.cache.layers if self.cache else [],
                                         self._prefix_kv):
            layer.keys, layer.values = keys, values
        return out.logits

    def logits(self) -> torch.Tensor:
        """Logits at the needed columns (rows, len(keep), vocab), with grad through hooks;
        index them with `column[local_col]`."""
        if self.hidden is None:
            return self._run()
        with from_block(self.model, self.start_module, self.hidden):
            return self._run()


@torch.no_grad()
def compute_key(model: torch.nn.Module, tok, module_name: str, request: EditRequest,
                prefixes: list[str]) -> torch.Tensor:
    """k*: the projection's input at the subject's last token, averaged over prefixes."""
    texts = _batch(tok, [(f"{p}{request.prompt}", request.subject, "") for p in prefixes])
    captured: list[torch.Tensor] = []
    with hooked(get_module(model, module_name),
                pre=lambda _m, args: captured.append(args[0].detach())):
        model(input_ids=texts.ids, attention_mask=texts.mask, use_cache=False)
    keys = captured[0][texts.delta_rows, texts.delta_cols]
    # one key per prefix: the first occurrence of the subject in each text
    firsts = [int((texts.delta_rows == r).nonzero()[0]) for r in range(len(prefixes))]
    return keys[firsts].mean(0)


# A batch costs about this many tokens' work beyond its (padded) tokens: reading the weights
# once and the per-layer Python overhead. Texts of very different lengths go in separate
# batches when the padding they save outweighs this.
BATCH_OVERHEAD_TOKENS = 12


def length_groups(lengths: list[int], overhead: int = BATCH_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices split into batches of similar length, minimising padded tokens + overhead.

    The best split of the length-sorted order into contiguous runs (dynamic programming).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = [0.0] + [float("inf")] * len(order)  # best[j]: cost of the first j sorted texts
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(j):
            cost = best[i] + (j - i) * lengths[order[j - 1]] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(order)
    while j:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


@dataclass
class _Group:
    """Some of the value texts, run as one batch; rows are mapped back to the full list."""

    runner: SuffixRunner
    target_rows: torch.Tensor  # local rows and columns of target tokens
    target_cols: torch.Tensor
    target_ids: torch.Tensor
    token_text: torch.Tensor  # each target token's text (index in the full list)
    kl_rows: torch.Tensor  # local rows of KL texts, their columns, and their full-list index
    kl_cols: torch.Tensor
    kl_index: torch.Tensor


def _group(model: torch.nn.Module, tok, pieces: list[tuple[str, str, str]], indices: list[int],
           kl_indices: set[int], start_module: str) -> _Group:
    texts = _batch(tok, [pieces[i] for i in indices])
    split = _split_points(texts)
    rows = torch.cat(texts.target_rows) if texts.target_rows else torch.zeros(0, dtype=torch.long)
    cols = (torch.cat(texts.target_cols) - split[rows] if texts.target_rows
            else torch.zeros(0, dtype=torch.long))
    kl_local = torch.tensor([r for r, i in enumerate(indices) if i in kl_indices],
                            dtype=torch.long)
    kl_cols = texts.last[kl_local] - split[kl_local]
    runner = SuffixRunner(model, texts, torch.cat([cols, kl_cols]), start_module)
    index = torch.tensor(indices)
    return _Group(runner, rows, runner.column[cols],
                  torch.cat(texts.target_ids) if texts.target_ids else rows,
                  index[rows], kl_local, runner.column[kl_cols], index[kl_local])


def compute_value(model: torch.nn.Module, tok, module_name: str, request: EditRequest,
                  prefixes: list[str], cfg, chat_format: ChatFormat | None = None,
                  read_out: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """v*: the projection output at the subject's last token that makes the model say the
    target; returns (v*, the change delta = v* - current output, stats). `cfg` has steps,
    learning_rate, kl_factor, weight_decay, clamp_norm_factor, stop_loss, chat_prompts,
    raw_questions.

    With `read_out` (u, in the projection's input space), delta is searched through the
    rank-one edit W + delta u^T itself: every position from the first subject token on gets
    (u . x) delta, as the edited weight will give it. Otherwise delta is added at the subject's
    last token only, and the edit reproduces it where the key matches k*.
    """
    module = get_module(model, module_name)
    pieces = rewriting_pieces(request, prefixes, chat_format if cfg.chat_prompts else None,
                              cfg.raw_questions)
    n_rewrite = len(pieces)
    pieces = pieces + [(KL_TEMPLATE.format(request.subject), request.subject, "")]
    kl_indices = set(range(n_rewrite, len(pieces)))
    texts = _batch(tok, pieces)
    for p in model.parameters():
        p.requires_grad_(False)

    # the projection's current output at the bare prompt's subject token, and the KL reference
    outputs: list[torch.Tensor] = []
    with torch.no_grad(), hooked(module, forward=lambda _m, _a, out: outputs.append(
            first_tensor(out).detach())):
        logits = model(input_ids=texts.ids, attention_mask=texts.mask, use_cache=False).logits
    kl_rows = torch.tensor(sorted(kl_indices))
    reference = torch.log_softmax(logits[kl_rows, texts.last[kl_rows]].float(), -1)
    original = outputs[0][texts.delta_rows[0], texts.delta_cols[0]]
    max_norm = cfg.clamp_norm_factor * original.norm()
    del logits

    suffix_lengths = (texts.mask.sum(-1) - _split_points(texts)).tolist()
    groups = [_group(model, tok, pieces, indices, kl_indices, module_name)
              for indices in length_groups(suffix_lengths, BATCH_OVERHEAD_TOKENS)]
    token_counts = torch.bincount(torch.cat([g.token_text for g in groups]),
                                  minlength=n_rewrite)[:n_rewrite].clamp(min=1)
    delta = torch.zeros_like(original, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=cfg.learning_rate)
    active: list[SuffixRunner] = [groups[0].runner]  # the group being run (one slot)

    def add_delta(_module, args, out):
        if read_out is not None:
            hidden = first_tensor(out) + (args[0] @ read_out)[..., None] * delta
        else:
            runner = active[0]
            hidden = first_tensor(out).clone()
            hidden[runner.delta_rows, runner.delta_cols] += delta
        return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

    stats = {"steps": 0, "nll": None, "batches": len(groups)}
    with hooked(module, forward=add_delta):
        for step in range(cfg.steps):
            optimizer.zero_grad()
            per_text = torch.zeros(n_rewrite)
            current, kl_order = [], []
            for group in groups:
                active[0] = group.runner
                logits = group.runner.logits()
                if len(group.target_rows):
                    log_probs = torch.log_softmax(
                        logits[group.target_rows, group.target_cols].float(), -1)
                    token_nll = -log_probs.gather(-1, group.target_ids[:, None])[:, 0]
                    per_text = per_text.index_add(0, group.token_text, token_nll)
                if len(group.kl_rows):
                    current.append(torch.log_softmax(
                        logits[group.kl_rows, group.kl_cols].float(), -1))
                    kl_order.append(group.kl_index)
            # mean over each text's target tokens, then over texts
            per_text = per_text / token_counts
            nll = per_text.mean()
            order = torch.argsort(torch.cat(kl_order))
            kl = torch.nn.functional.kl_div(torch.cat(current)[order], reference,
                                            log_target=True, reduction="batchmean")
            decay = cfg.weight_decay * delta.norm() ** 2 / original.norm() ** 2
            loss = nll + cfg.kl_factor * kl + decay
            stats.update(steps=step + 1, nll=float(nll.detach()), kl=float(kl.detach()),
                         worst_nll=float(per_text.detach().max()))
            if stats["worst_nll"] < cfg.stop_loss:  # every text says the target, not the mean
                break
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                if delta.norm() > max_norm:
                    delta.mul_(max_norm / delta.norm())
    stats["delta_norm_ratio"] = float(delta.detach().norm() / original.norm())
    return (original + delta).detach(), delta.detach(), stats
