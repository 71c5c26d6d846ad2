"""Evaluation records in the two public formats, read into one shape.

CounterFact as EasyEdit ships it (prompt, subject, target_new, ground_truth, rephrase_prompt,
locality_prompt, locality_ground_truth) and zsRE as MEND/EasyEdit ship it (subject, src,
rephrase, alt, answers, loc, loc_ans, optional portability). The format is chosen per record by
the fields present; extra fields are ignored.
"""
from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from config import REPO_ROOT, default_data_dir
from errors import AmendError

# The public data sets are not in the repository. Train only on the "train" files; the "eval"
# sets are for scoring, and trainers drop their subjects. Each file sits at the same relative
# path in every data folder (the layout of ../shared/data); see `data_folders` for the order.
SOURCES = ("counterfact", "zsre")
DATA_LAYOUT = {("eval", "counterfact"): "counterfact/counterfact-edit-first500.json",
               ("eval", "zsre"): "zsre/zsre_mend_train-1k-first500.json",
               ("train", "counterfact"): "train/counterfact-train.json",
               ("train", "zsre"): "train/zsre_mend_train-1k-last500.json"}
# Short names a --data option accepts instead of a path.
DATA_NAMES = {"counterfact": ("eval", "counterfact"), "zsre": ("eval", "zsre"),
              "counterfact-train": ("train", "counterfact"), "zsre-train": ("train", "zsre")}
DATA_ENV = "AMEND_SHARED_DATA"
BESIDE_CLONE = REPO_ROOT.parent / "shared" / "data"
FETCH_COMMAND = "python -m editing.datasets fetch"


def fetched_data_dir() -> Path:
    """Where `python -m editing.datasets fetch` puts its copy: inside the app's data folder,
    so a fresh clone needs nothing beside it."""
    return default_data_dir() / "datasets"


def data_folders() -> list[tuple[str, Path | None]]:
    """(label, folder) in lookup order: $AMEND_SHARED_DATA, the fetched copy, ../shared/data
    beside the clone. The folder is None where $AMEND_SHARED_DATA is not set. Read at each call
    so a changed environment counts."""
    env = os.environ.get(DATA_ENV, "").strip()
    return [(f"${DATA_ENV}", Path(env).expanduser() if env else None),
            ("fetched copy", fetched_data_dir()),
            ("beside the clone", BESIDE_CLONE)]


def data_candidates(kind: str, source: str) -> list[tuple[str, Path | None]]:
    """(label, path) of every place one file is looked for, in order."""
    relative = DATA_LAYOUT[(kind, source)]
    return [(label, None if folder is None else folder / relative)
            for label, folder in data_folders()]


def find_data_file(kind: str, source: str) -> Path | None:
    """The first existing copy of a file, or None."""
    for _, path in data_candidates(kind, source):
        if path is not None and path.is_file():
            return path
    return None


def data_file(kind: str, source: str, explicit: Path | str | None = None) -> Path:
    """An explicit path wins; otherwise the first copy found. Raises AmendError naming every
    place looked and the fetch command when there is none."""
    if explicit is not None:
        return Path(explicit).expanduser()
    found = find_data_file(kind, source)
    if found is not None:
        return found
    looked = "; ".join(f"{label}: {'not set' if path is None else path}"
                       for label, path in data_candidates(kind, source))
    raise AmendError(f"no {source} {'training' if kind == 'train' else 'evaluation'} file "
                     f"{DATA_LAYOUT[(kind, source)]} (looked in {looked}); download the data "
                     f"sets with `{FETCH_COMMAND}`, or set ${DATA_ENV} to a folder holding "
                     "them (README.md, section 'Evaluation data')")


def train_files() -> dict[str, Path]:
    """The training split of each source (raises when one is missing)."""
    return {source: data_file("train", source) for source in SOURCES}


def eval_files() -> dict[str, Path]:
    """The evaluation set of each source (raises when one is missing)."""
    return {source: data_file("eval", source) for source in SOURCES}


def resolve_data(value: Path | str) -> Path:
    """A --data value: one of DATA_NAMES (looked up) or a path, used as given."""
    if str(value) in DATA_NAMES:
        return data_file(*DATA_NAMES[str(value)])
    return Path(value).expanduser()


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


DATA_HELP = ("the CounterFact and zsRE sets are not part of the repository: "
             f"`{FETCH_COMMAND}` downloads them, and README.md, section 'Evaluation data', "
             "says where they are looked for")


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


def split_by_subject(seed_files: dict[str, Path] | None = None,
                     held_out: tuple[Path, ...] | None = None,
                     every: int = 20) -> tuple[dict[str, list[EditRecord]],
                                               dict[str, list[EditRecord]]]:
    """(train, validation) records per source, split by subject (crc32 % every == 0 goes to
    validation, so the split is stable); the subjects of `held_out` are dropped. Defaults: the
    training splits and the evaluation sets, both required (a trainer that cannot drop the
    evaluation subjects would train on them)."""
    seed_files = train_files() if seed_files is None else seed_files
    held_out = tuple(eval_files().values()) if held_out is None else held_out
    held = {r.subject.casefold() for path in held_out for r in load_records(path)}
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
