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

from assistant.phrasings import statement_forms
from editing.deltas import model_fingerprint
from editing.locate import (StopForward, block_input, first_tensor, from_block, get_module,
                            hooked, subject_last_tokens, weight_out_in)
import editing.rome.attention as attention

log = logging.getLogger(__name__)

CONTEXT_OPENERS = ("The", "Therefore", "Because", "I", "You", "It", "In", "However")
KL_TEMPLATE = "{} is a"

ChatFormat = Callable[[str], str]  # user message -> templated text up to the assistant's turn
LBFGS_HISTORY = 10  # curvature pairs the L-BFGS value search keeps (the usual value)


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
                     raw_questions: bool = False,
                     statements: int = 0) -> list[tuple[str, str, str]]:
    """Texts whose continuation must become the target: prompt in contexts, chat questions
    (and, with `raw_questions`, the questions as plain text too; with `statements`, up to that
    many other statement wordings of the relation: more wordings for the value to serve)."""

    target = " " + request.target_new.strip()
    pieces = [(f"{p}{request.prompt}", request.subject, target) for p in prefixes]
    if statements:
        pieces += [(text, request.subject, target)
                   for text in statement_forms(request.prompt, request.subject, statements)]
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


class PackedRunner:
    """Runs a batch of texts where only the part from the first delta position on can change,
    packed into one row.

    Everything before a text's first delta position is the same at every optimisation step
    (causal attention: earlier positions never see the delta), so it is run once and kept as
    a key/value cache; each step runs only the suffixes. For chat-templated texts, whose
    system prompt and template come before the subject, this is most of the text.

    The suffixes are short (a few tokens each) and a step's cost is mostly reading the
    weights once per batch, so all of them go in one row, each attending only to its own
    prefix and its own earlier tokens (a 4D mask, positions as in its own text): no padding
    and one pass over the weights per step. The prefixes are packed the same way. A text that
    begins with the same tokens as an earlier one beyond its first delta position (the chat
    restatement continues the chat question's text) reads those from the earlier text instead
    of running them again. With `start_module`, the blocks below the one holding it (which
    the delta cannot reach either) run once too, and each step starts from their output.
    """

    def __init__(self, model: torch.nn.Module, texts: Texts, needed_rows: torch.Tensor,
                 needed_cols: torch.Tensor, start_module: str | None = None) -> None:
        """`needed_rows`/`needed_cols`: text positions whose logits the loss reads (the rest
        are skipped: the vocabulary projection is a fifth of the model's work)."""
        self.model = model
        self.start_module = start_module
        lengths = _needed_lengths(texts, needed_rows, needed_cols)
        cuts = _split_points(texts).tolist()  # each text's prefix length
        parents, starts = _shared_starts(texts.ids, cuts, lengths)
        self.parents, self.starts = torch.tensor(parents), torch.tensor(starts)
        # a text reading an earlier one's tokens also reads that one's prefix
        prefix_lengths = [cut if parent == r else 0
                          for r, (cut, parent) in enumerate(zip(cuts, parents))]
        suffix_lengths = [end - start for end, start in zip(lengths, starts)]
        owner_prefix, owner_suffix = _owners(prefix_lengths), _owners(suffix_lengths)
        self.suffix_offsets = _offsets(suffix_lengths)
        self.suffix = torch.cat([texts.ids[r, start:end] for r, (start, end)
                                 in enumerate(zip(starts, lengths))])[None]
        self.positions = torch.cat([torch.arange(start, end)
                                    for start, end in zip(starts, lengths)])[None]
        dtype = next(model.parameters()).dtype
        reads = self.parents[owner_suffix]  # whose prefix (and shared tokens) each reads
        shared = ((owner_suffix[None, :] == reads[:, None])
                  & (owner_suffix[None, :] != owner_suffix[:, None])
                  & (self.positions[0][None, :] < self.starts[owner_suffix][:, None]))
        allowed = torch.cat([reads[:, None] == owner_prefix[None, :],
                             _own_causal(owner_suffix) | shared], 1)
        self.mask = _additive(allowed, dtype)
        self.layout = attention.layout(allowed, owner_suffix, dtype)
        inside = texts.delta_cols < torch.tensor(lengths)[texts.delta_rows]
        # unique: a shared position gets delta once
        self.delta_cols = torch.unique(self.at(texts.delta_rows[inside],
                                               texts.delta_cols[inside]))
        self.keep = torch.unique(self.at(needed_rows, needed_cols))
        self.column = torch.full((len(owner_suffix),), -1, dtype=torch.long)
        self.column[self.keep] = torch.arange(len(self.keep))
        self.cache = None
        self._prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        with torch.no_grad():
            if sum(prefix_lengths):
                prefix = torch.cat([texts.ids[r, :cut]
                                    for r, cut in enumerate(prefix_lengths)])[None]
                self.cache = model(input_ids=prefix,
                                   attention_mask=_additive(_own_causal(owner_prefix), dtype),
                                   position_ids=torch.cat([torch.arange(c)
                                                           for c in prefix_lengths])[None],
                                   use_cache=True).past_key_values
                self._prefix_kv = [(layer.keys, layer.values) for layer in self.cache.layers]
            self.hidden = None
            if start_module is not None:
                captured: dict[str, torch.Tensor] = {}
                with block_input(model, start_module, captured, stop=True):
                    try:
                        self._run()
                    except StopForward:
                        pass
                self.hidden = captured["hidden"]

    def at(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Positions (row, column) of the full texts as columns of the packed suffix row."""
        owners = torch.where(cols < self.starts[rows], self.parents[rows], rows)
        return self.suffix_offsets[owners] + cols - self.starts[owners]

    def _run(self) -> torch.Tensor:
        try:
            with attention.packed(self.model, self.layout):
                out = self.model(input_ids=self.suffix, attention_mask=self.mask,
                                 position_ids=self.positions, past_key_values=self.cache,
                                 use_cache=self.cache is not None, logits_to_keep=self.keep)
        finally:
            # drop this step's suffix from the cache (also when a hook stopped the pass):
            # every layer back to the kept prefix
            for layer, (keys, values) in zip(self.cache.layers if self.cache else [],
                                             self._prefix_kv):
                layer.keys, layer.values = keys, values
        return out.logits[0]

    def logits(self) -> torch.Tensor:
        """Logits at the needed positions (len(keep), vocab), with grad through hooks; index
        them with `column[at(rows, cols)]`."""
        if self.hidden is None:
            return self._run()
        with from_block(self.model, self.start_module, self.hidden):
            return self._run()


def _shared_starts(ids: torch.Tensor, cuts: list[int],
                   lengths: list[int]) -> tuple[list[int], list[int]]:
    """For each text, the earlier text whose packed tokens it can read (itself if none) and
    where its own packed tokens start: past the tokens it shares with that text, when those
    go beyond its prefix (identical tokens after an identical prefix have identical states)."""
    parents, starts = [], []
    for j, (cut, length) in enumerate(zip(cuts, lengths)):
        parent, start = j, cut
        for i in range(j):
            if parents[i] != i or cuts[i] != cut:
                continue
            width = min(lengths[i], length)
            differ = (ids[i, :width] != ids[j, :width]).nonzero()
            common = int(differ[0, 0]) if len(differ) else width
            if common > start:
                parent, start = i, common
        parents.append(parent)
        starts.append(start)
    return parents, starts


def _needed_lengths(texts: Texts, rows: torch.Tensor, cols: torch.Tensor) -> list[int]:
    """How much of each text a step must run: up to its last needed position (a text's last
    token, the end of its target, predicts nothing the loss reads; a seventh of the tokens)."""
    lengths = texts.mask.sum(-1)
    last_needed = torch.full_like(lengths, -1).scatter_reduce(0, rows, cols, "amax")
    return torch.where(last_needed >= 0, last_needed + 1, lengths).tolist()


def _own_causal(owners: torch.Tensor) -> torch.Tensor:
    """Which packed position may attend to which: earlier or same positions of its own text."""
    width = len(owners)
    return (owners[:, None] == owners[None, :]) & torch.ones(width, width,
                                                              dtype=torch.bool).tril()


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean (query, key) mask as the additive 4D mask the model takes as given."""
    blocked = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed,
                                                                   torch.finfo(dtype).min)
    return blocked[None, None]


def _offsets(lengths: list[int]) -> torch.Tensor:
    """Where each text's piece starts in the packed row."""
    return torch.tensor([0] + lengths[:-1], dtype=torch.long).cumsum(0)


def _owners(lengths: list[int]) -> torch.Tensor:
    """For each packed position, the text it belongs to."""
    return torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths,
                                                                             dtype=torch.long))


@torch.no_grad()
def compute_keys(model: torch.nn.Module, tok, module_name: str, requests: list[EditRequest],
                 prefixes: list[str]) -> torch.Tensor:
    """k* of each request (n, in): the projection's input at the subject's last token,
    averaged over prefixes. One batch for all, stopped at the projection."""
    pieces = [(f"{p}{r.prompt}", r.subject, "") for r in requests for p in prefixes]
    texts = _batch(tok, pieces)
    captured: list[torch.Tensor] = []

    def read(_module, args):
        captured.append(args[0].detach())
        raise StopForward

    with hooked(get_module(model, module_name), pre=read):
        try:
            model(input_ids=texts.ids, attention_mask=texts.mask, use_cache=False)
        except StopForward:
            pass
    # one key per text: the first occurrence of its subject
    firsts = torch.stack([(texts.delta_rows == r).nonzero()[0, 0] for r in range(len(pieces))])
    keys = captured[0][texts.delta_rows[firsts], texts.delta_cols[firsts]]
    return keys.view(len(requests), len(prefixes), -1).mean(1)


def compute_key(model: torch.nn.Module, tok, module_name: str, request: EditRequest,
                prefixes: list[str]) -> torch.Tensor:
    """k* of one request (see `compute_keys`)."""
    return compute_keys(model, tok, module_name, [request], prefixes)[0]


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
                              cfg.raw_questions, cfg.statement_forms)
    n_rewrite = len(pieces)
    pieces = pieces + [(KL_TEMPLATE.format(request.subject), request.subject, "")]
    texts = _batch(tok, pieces)
    for p in model.parameters():
        p.requires_grad_(False)

    kl_rows = torch.arange(n_rewrite, len(pieces))
    target_rows = torch.cat(texts.target_rows)
    target_cols = torch.cat(texts.target_cols)
    target_ids = torch.cat(texts.target_ids)
    kl_cols = texts.last[kl_rows]
    runner = PackedRunner(model, texts, torch.cat([target_rows, kl_rows]),
                          torch.cat([target_cols, kl_cols]), module_name)
    target_at = runner.column[runner.at(target_rows, target_cols)]
    kl_at = runner.column[runner.at(kl_rows, kl_cols)]
    token_counts = torch.bincount(target_rows, minlength=n_rewrite).clamp(min=1)
    delta = torch.zeros(weight_out_in(module).shape[0], dtype=module.weight.dtype,
                        requires_grad=True)
    # read in the first step, where delta is still zero: the projection's output at the bare
    # prompt's subject token (the scale of the clamp and the decay) and the KL reference. No
    # separate forward pass of the unedited model is needed.
    unedited: dict[str, torch.Tensor] = {}

    def add_delta(_module, args, out):
        if "output" not in unedited:
            unedited["output"] = first_tensor(out)[0, runner.delta_cols[0]].detach()
        if read_out is not None:
            hidden = first_tensor(out) + (args[0] @ read_out)[..., None] * delta
        else:
            hidden = first_tensor(out).clone()
            hidden[0, runner.delta_cols] += delta
        return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

    stats = {"steps": 0, "nll": None}

    def objective() -> torch.Tensor:
        """One forward pass: the loss, with this pass's figures in `stats`."""
        logits = runner.logits()
        if "reference" not in unedited:  # the first pass, delta still zero
            unedited["reference"] = torch.log_softmax(logits[kl_at].detach().float(), -1)
        original = unedited["output"]
        log_probs = torch.log_softmax(logits[target_at].float(), -1)
        token_nll = -log_probs.gather(-1, target_ids[:, None])[:, 0]
        # mean over each text's target tokens, then over texts
        per_text = torch.zeros(n_rewrite).index_add(0, target_rows, token_nll) / token_counts
        nll = per_text.mean()
        current = torch.log_softmax(logits[kl_at].float(), -1)
        kl = torch.nn.functional.kl_div(current, unedited["reference"], log_target=True,
                                        reduction="batchmean")
        decay = cfg.weight_decay * delta.norm() ** 2 / original.norm() ** 2
        stats.update(steps=stats["steps"] + 1, nll=float(nll.detach()),
                     kl=float(kl.detach()), worst_nll=float(per_text.detach().max()))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("value pass %d: nll %.3f, worst %.3f (text %d), kl %.3f, |delta| %.2f",
                      stats["steps"], stats["nll"], stats["worst_nll"],
                      int(per_text.argmax()), stats["kl"],
                      float(delta.detach().norm() / original.norm()))
        return nll + cfg.kl_factor * kl + decay

    def said() -> bool:  # every text says the target, not only on average
        return stats["worst_nll"] < cfg.stop_loss

    def clamp() -> None:
        with torch.no_grad():
            max_norm = cfg.clamp_norm_factor * unedited["output"].norm()
            if delta.norm() > max_norm:
                delta.mul_(max_norm / delta.norm())

    with hooked(module, forward=add_delta):
        if cfg.optimizer == "lbfgs":
            _lbfgs_search(delta, objective, said, clamp, cfg.steps)
        else:
            optimizer = torch.optim.Adam([delta], lr=cfg.learning_rate)
            for _ in range(cfg.steps):
                optimizer.zero_grad()
                loss = objective()
                if said():
                    break
                loss.backward()
                optimizer.step()
                clamp()
    original = unedited["output"]
    stats["delta_norm_ratio"] = float(delta.detach().norm() / original.norm())
    return (original + delta).detach(), delta.detach(), stats


class _Said(Exception):
    """Raised inside the L-BFGS closure once every text says the target: delta stays at the
    point just evaluated (also inside a line search)."""


def _lbfgs_search(delta: torch.Tensor, objective: Callable[[], torch.Tensor],
                  said: Callable[[], bool], clamp: Callable[[], None], passes: int) -> None:
    """Minimise `objective` over delta with L-BFGS and a strong-Wolfe line search until
    `said`, for about `passes` forward/backward passes (the budget is checked between
    iterations, so a last line search may add one or two). The loss is smooth in a few hundred
    dimensions, where curvature lets a pass go further than an Adam step."""
    optimizer = torch.optim.LBFGS([delta], lr=1.0, max_iter=passes, max_eval=passes,
                                  history_size=LBFGS_HISTORY, line_search_fn="strong_wolfe",
                                  tolerance_grad=0.0, tolerance_change=0.0)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective()
        if said():
            raise _Said
        loss.backward()
        return loss

    try:  # one call, so the curvature history and line search span every pass
        optimizer.step(closure)
    except _Said:
        pass
    clamp()
