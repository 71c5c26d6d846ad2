"""An admin's actions on stored edits: approve or reject, a new target, merge duplicates,
other names, import. Each changes the store and the edit memory as one step under the
assistant's `edits_lock`, so the index never disagrees with the store."""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from assistant.corrections import Correction
from assistant.memory import EditMemory
from assistant.phrasings import question_forms
from errors import AmendError, InvalidEditError
from store.db import Edit, Store
from store import transfer


def serialised(method: Callable) -> Callable:
    """Run under the owner's `edits_lock`: a store change and the matching index update
    happen as one step, so two admins acting at once cannot leave the index disagreeing
    with the store (e.g. an approved edit missing from the index)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.edits_lock:
            return method(self, *args, **kwargs)
    return wrapper


class Review:
    """Admin actions over one store and its edit memory."""

    def __init__(self, store: Store, memory: EditMemory, edits_lock: threading.RLock,
                 same_fact: Callable[[Correction], list[Edit]]) -> None:
        self.store = store
        self.memory = memory
        self.edits_lock = edits_lock
        self._same_fact = same_fact  # active edits holding the same fact (the router's rule)

    @serialised
    def set_aliases(self, edit_id: int, aliases: list[str], actor: str = "admin") -> Edit:
        """An admin's list of other names for an edit's subject (replaces the old list)."""
        edit = self.store.set_aliases(edit_id, aliases, actor=actor)
        if edit.routable:
            self.memory.sync(added=[edit], removed=[edit_id])
        return edit

    @serialised
    def change_target(self, edit_id: int, target: str, actor: str = "admin") -> Edit:
        """An admin's fix of an edit's answer: a new edit that supersedes the old one (the
        old stays in the history)."""
        edit = self.store.get_edit(edit_id)
        if edit.status not in ("active", "pending"):
            raise InvalidEditError(f"edit #{edit_id} is {edit.status}; only active or pending "
                                   "edits can get a new target")
        new = self.store.add_edit(edit.subject, edit.prompt, target, target_old=edit.target_old,
                                  paraphrases=edit.paraphrases, source="admin",
                                  supersedes=[edit_id], actor=actor, aliases=edit.aliases)
        self.memory.sync(added=[new], removed=[edit_id])
        return new

    @serialised
    def merge(self, keep_id: int, other_ids: list[int], actor: str = "admin") -> Edit:
        """Keep one edit, mark the others superseded by it (duplicates, resolved conflicts)."""
        keep = self.store.get_edit(keep_id)
        others = [self.store.get_edit(i) for i in other_ids if i != keep_id]
        if not others:
            raise InvalidEditError("name at least one other edit to merge into the kept one")
        self.store.supersede(keep_id, [e.id for e in others], actor=actor)
        if keep.status != "active":
            keep = self.set_status(keep_id, "active", actor=actor)
        self.memory.sync(removed=[e.id for e in others])
        return keep

    def bulk_status(self, edit_ids: list[int], status: str,
                    actor: str = "admin") -> list[str]:
        """Set many edits' status; each one succeeds or fails on its own, with a line."""
        lines = []
        for edit_id in dict.fromkeys(edit_ids):
            try:
                if self.store.get_edit(edit_id).status == status:
                    lines.append(f"#{edit_id}: already {status}; nothing changed")
                    continue
                edit = self.set_status(edit_id, status, actor=actor)
                lines.append(f"#{edit.id}: {edit.status}")
            except AmendError as exc:
                lines.append(f"#{edit_id}: {exc}")
        return lines

    @serialised
    def import_edits(self, data: bytes | str, actor: str = "admin") -> transfer.ImportReport:
        """Import an export file (all or nothing) and index the imported active edits."""
        report = transfer.import_edits(self.store, data, actor=actor, phrasings=question_forms)
        added = [self.store.get_edit(i) for i in report.imported]
        self.memory.sync(added=[e for e in added if e.status == "active"])
        return report

    @serialised
    def set_status(self, edit_id: int, status: str, actor: str = "admin") -> Edit:
        """Reject or reactivate an edit and keep the index in step.

        Reactivating supersedes whichever active edit now holds the same fact, as a new
        correction would, so one fact never has two active answers.
        """
        if status != "active":
            edit = self.store.set_status(edit_id, status, actor=actor)
            self.memory.sync(removed=[edit_id])
            return edit
        edit = self.store.get_edit(edit_id)
        twins = [t for t in self._same_fact(Correction(edit.subject, edit.prompt,
                                                       edit.target_new)) if t.id != edit_id]
        edit = self.store.set_status(edit_id, "active", actor=actor,
                                     supersedes=[t.id for t in twins])
        self.memory.sync(added=[edit], removed=[edit_id, *(t.id for t in twins)])
        return edit
