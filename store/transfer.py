"""Export every edit to JSON and import edits back, all or nothing.

Export writes CounterFact-style fields (`subject`, `prompt`, `target_new`, `ground_truth`,
`rephrase_prompt`) so the file also feeds `editing.evaluate`, plus what the store knows:
id, status, source, hits, creation time, paraphrases and the edit's audit history.

Import validates the whole file before writing anything: bytes that are not UTF-8, text that
is not JSON, records with missing or bad fields are all reported with their record number and
nothing is stored. Records equal to a stored edit (same subject, prompt and target, ignoring
case) are duplicates and skipped; records that give a stored active fact another target are
conflicts, reported and skipped so an import never overrides what an admin approved. The rest
go in one transaction.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from errors import InvalidEditError
from store.db import EDIT_STATUSES, Store, clean_aliases, validate_edit_fields

EXPORT_FORMAT = "amend-edits/1"
MAX_IMPORT_BYTES = 50 * 2 ** 20
MAX_IMPORT_RECORDS = 100_000
IMPORTABLE_STATUSES = ("active", "pending", "rejected")  # promoted/superseded need history


@dataclass
class ImportReport:
    imported: list[int] = field(default_factory=list)  # new edit ids
    duplicates: list[int] = field(default_factory=list)  # record numbers (1-based)
    conflicts: list[str] = field(default_factory=list)  # "record N: ..." lines

    def summary(self) -> str:
        parts = [f"Imported {len(self.imported)} edit(s)"]
        if self.duplicates:
            parts.append(f"skipped {len(self.duplicates)} duplicate(s) (records "
                         f"{', '.join(map(str, self.duplicates[:20]))})")
        if self.conflicts:
            parts.append(f"skipped {len(self.conflicts)} conflict(s): "
                         + "; ".join(self.conflicts[:10]))
        return ". ".join(parts) + "."


def export_edits(store: Store) -> dict[str, Any]:
    """All edits, oldest first, with their history."""
    history: dict[int, list[dict]] = {}
    for row in store.edit_audit():
        history.setdefault(row["edit_id"], []).append(
            {"at": row["created_at"], "actor": row["actor"], "action": row["action"],
             "detail": json.loads(row["detail"])})
    edits = []
    for edit in reversed(store.list_edits(limit=-1)):
        edits.append({
            "id": edit.id, "subject": edit.subject, "prompt": edit.prompt,
            "target_new": edit.target_new, "ground_truth": edit.target_old or "",
            "rephrase_prompt": edit.paraphrases[0] if edit.paraphrases else "",
            "paraphrases": list(edit.paraphrases), "aliases": list(edit.aliases),
            "status": edit.status, "source": edit.source,
            "created_at": edit.created_at, "hits": edit.hits, "supersedes": edit.supersedes,
            "history": history.get(edit.id, []),
        })
    return {"format": EXPORT_FORMAT, "edits": edits}


def export_json(store: Store) -> str:
    return json.dumps(export_edits(store), ensure_ascii=False, indent=1)


@dataclass(frozen=True)
class _Candidate:
    number: int
    subject: str
    prompt: str
    target_new: str
    target_old: str | None
    paraphrases: tuple[str, ...]
    status: str
    aliases: tuple[str, ...] = ()


def parse_import(data: bytes | str) -> list[_Candidate]:
    """Validated records of an export file (or a plain list of CounterFact-style records);
    raises InvalidEditError naming every bad record, so nothing is half-imported."""
    if isinstance(data, bytes):
        if len(data) > MAX_IMPORT_BYTES:
            raise InvalidEditError(f"the file is larger than {MAX_IMPORT_BYTES // 2 ** 20} MB")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEditError(f"the file is not UTF-8 text (byte {exc.start})") from exc
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidEditError(f"the file is not JSON: {exc.msg} at line {exc.lineno}") from exc
    records = raw.get("edits") if isinstance(raw, dict) else raw
    if not isinstance(records, list):
        raise InvalidEditError("expected an export file ({\"edits\": [...]}) or a JSON list "
                               "of records")
    if len(records) > MAX_IMPORT_RECORDS:
        raise InvalidEditError(f"more than {MAX_IMPORT_RECORDS} records")
    problems, candidates = [], []
    for number, record in enumerate(records, 1):
        try:
            candidates.append(_candidate(number, record))
        except InvalidEditError as exc:
            problems.append(f"record {number}: {exc}")
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise InvalidEditError(f"nothing imported; {len(problems)} bad record(s): {shown}{more}")
    return candidates


def _text(record: dict, key: str, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidEditError(f"'{key}' must be text")
    if any(ord(c) < 32 and c not in "\t\n" for c in value):
        raise InvalidEditError(f"'{key}' contains control characters")
    return value.strip()


def _candidate(number: int, record: Any) -> _Candidate:
    if not isinstance(record, dict):
        raise InvalidEditError("not an object")
    subject, prompt = _text(record, "subject"), _text(record, "prompt")
    target = _text(record, "target_new")
    validate_edit_fields(subject, prompt, target)
    status = record.get("status", "active")
    if status not in EDIT_STATUSES:
        raise InvalidEditError(f"unknown status {status!r}")
    paraphrases = record.get("paraphrases") or ([record["rephrase_prompt"]]
                                                if record.get("rephrase_prompt") else [])
    if not isinstance(paraphrases, list) or not all(isinstance(p, str) for p in paraphrases):
        raise InvalidEditError("'paraphrases' must be a list of text")
    aliases = record.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise InvalidEditError("'aliases' must be a list of text")
    return _Candidate(number, subject, prompt, target,
                      _text(record, "ground_truth", required=False) or None,
                      tuple(p.strip() for p in paraphrases if p.strip()),
                      status if status in IMPORTABLE_STATUSES else "active",
                      tuple(clean_aliases(aliases, subject)))


def import_edits(store: Store, data: bytes | str, actor: str = "admin",
                 phrasings: Callable[[str, str], list[str]] | None = None) -> ImportReport:
    """Import an export file; see the module docstring for what is skipped and why.
    `phrasings(prompt, subject)` supplies paraphrases for records that bring none."""
    candidates = parse_import(data)
    report = ImportReport()
    key = lambda s, p: (s.casefold(), p.casefold())  # noqa: E731
    with store.transaction():
        stored = store.edit_facts()
        known = {(*key(s, p), t.casefold()) for _, s, p, t, _ in stored}
        active = {key(s, p): (i, t) for i, s, p, t, status in stored if status == "active"}
        for c in candidates:
            fact = key(c.subject, c.prompt)
            if (*fact, c.target_new.casefold()) in known:
                report.duplicates.append(c.number)
                continue
            if c.status == "active" and fact in active:
                edit_id, target = active[fact]
                report.conflicts.append(f"record {c.number} says '{c.target_new}' where active "
                                        f"edit #{edit_id} says '{target}'")
                continue
            paraphrases = c.paraphrases or (phrasings(c.prompt, c.subject) if phrasings else ())
            edit = store.add_edit(c.subject, c.prompt, c.target_new, target_old=c.target_old,
                                  paraphrases=paraphrases, source="import", actor=actor,
                                  aliases=c.aliases)
            if c.status != "active":
                store.set_status(edit.id, c.status, actor=actor, note="imported")
            report.imported.append(edit.id)
            known.add((*fact, c.target_new.casefold()))
            if c.status == "active":
                active[fact] = (edit.id, c.target_new)
        store.audit(actor, "import", {"imported": len(report.imported),
                                      "duplicates": len(report.duplicates),
                                      "conflicts": len(report.conflicts)})
    return report
