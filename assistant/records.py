"""Evaluation records in the two public formats, read into one shape.

CounterFact as EasyEdit ships it (prompt, subject, target_new, ground_truth, rephrase_prompt,
locality_prompt, locality_ground_truth) and zsRE as MEND/EasyEdit ship it (subject, src,
rephrase, alt, answers, loc, loc_ans, optional portability). The format is chosen per record by
the fields present; extra fields are ignored.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

from config import REPO_ROOT
from errors import AmendError

# The public data sets beside the clone (../shared/data): train only on TRAIN_FILES; the
# evaluation sets are for scoring, and trainers drop their subjects.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
TRAIN_FILES = {"counterfact": SHARED_DATA / "train" / "counterfact-train.json",
               "zsre": SHARED_DATA / "train" / "zsre_mend_train-1k-last500.json"}
EVAL_FILES = {"counterfact": SHARED_DATA / "counterfact" / "counterfact-edit-first500.json",
              "zsre": SHARED_DATA / "zsre" / "zsre_mend_train-1k-first500.json"}


@dataclass(frozen=True)
class Probe:
    """A prompt and the answer expected after it."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class EditRecord:
    subject: str
    prompt: str
    target_new: str
    ground_truth: str
    rephrases: tuple[str, ...] = ()
    locality: tuple[Probe, ...] = ()
    portability: tuple[Probe, ...] = ()
    source: str = ""  # "counterfact" or "zsre"


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _portability(raw) -> tuple[Probe, ...]:
    """EasyEdit keeps portability as {prompt, ground_truth} or lists of them."""
    probes = []
    for item in _as_list(raw):
        if isinstance(item, dict) and "prompt" in item:
            answers = _as_list(item.get("ground_truth") or item.get("answer"))
            flat = [a[0] if isinstance(a, list) else a for a in answers]
            if flat:
                probes.append(Probe(str(item["prompt"]), str(flat[0])))
    return tuple(probes)


def parse_record(raw: dict) -> EditRecord:
    """One record of either format; raises AmendError naming what is missing."""
    if {"src", "alt", "answers"} <= raw.keys():
        loc = str(raw.get("loc", "")).removeprefix("nq question: ")
        return EditRecord(
            subject=raw["subject"], prompt=raw["src"], target_new=raw["alt"],
            ground_truth=_as_list(raw["answers"])[0] if raw["answers"] else "",
            rephrases=tuple(_as_list(raw.get("rephrase"))),
            locality=(Probe(loc, raw["loc_ans"]),) if loc and raw.get("loc_ans") else (),
            portability=_portability(raw.get("portability")), source="zsre")
    if {"prompt", "subject", "target_new"} <= raw.keys():
        locality = ()
        if raw.get("locality_prompt") and raw.get("locality_ground_truth"):
            locality = (Probe(raw["locality_prompt"], raw["locality_ground_truth"]),)
        return EditRecord(
            subject=raw["subject"], prompt=raw["prompt"], target_new=raw["target_new"],
            ground_truth=raw.get("ground_truth", ""),
            rephrases=tuple(_as_list(raw.get("rephrase_prompt"))), locality=locality,
            portability=_portability(raw.get("portability")), source="counterfact")
    raise AmendError(f"record is neither CounterFact nor zsRE format: fields {sorted(raw)}")


DATA_HELP = ("the CounterFact and zsRE sets are not part of the repository: README.md, "
             "section 'Evaluation data', says where to get them and where to put them")


def load_records(path: Path, limit: int | None = None) -> list[EditRecord]:
    if not Path(path).exists():
        raise AmendError(f"no records at {path}: {DATA_HELP}")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AmendError(f"cannot read records from {path}: {exc}") from exc
    if not isinstance(data, list):
        raise AmendError(f"{path}: expected a JSON list of records")
    return [parse_record(r) for r in data[:limit]]


def split_by_subject(seed_files: dict[str, Path] = TRAIN_FILES,
                     eval_files: tuple[Path, ...] = tuple(EVAL_FILES.values()),
                     every: int = 20) -> tuple[dict[str, list[EditRecord]],
                                               dict[str, list[EditRecord]]]:
    """(train, validation) records per source, split by subject (crc32 % every == 0 goes to
    validation, so the split is stable); the evaluation sets' subjects are dropped."""
    held = {r.subject.casefold() for path in eval_files if path.exists()
            for r in load_records(path)}
    train: dict[str, list[EditRecord]] = {}
    valid: dict[str, list[EditRecord]] = {}
    for source, path in seed_files.items():
        for record in load_records(path):
            key = record.subject.casefold()
            if key in held or not record.locality:
                continue
            side = valid if zlib.crc32(key.encode()) % every == 0 else train
            side.setdefault(source, []).append(record)
    return train, valid
