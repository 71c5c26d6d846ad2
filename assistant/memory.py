"""Edit memory: a FAISS inner-product index over the active edits' key texts.

SQLite is the truth; the index file is a cache. It is saved beside the database together with a
fingerprint of the active edits, and rebuilt (with a log line saying why) when the file is
missing, unreadable, or its fingerprint no longer matches the store.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from assistant.embedder import Embedder
from store.db import Edit, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    edit_id: int
    score: float  # cosine similarity of the query to the edit's closest key text


class EditMemory:
    """Nearest active edits for a query vector; ids in the index are edit ids."""

    def __init__(self, store: Store, embedder: Embedder, index_path: Path | None) -> None:
        self.store = store
        self.embedder = embedder
        self.index_path = Path(index_path) if index_path else None
        self._lock = threading.RLock()
        self.index = self._empty()
        self.rebuilt_reason: str | None = None
        self.load_or_rebuild()

    def _empty(self) -> faiss.IndexIDMap2:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.embedder.dim))

    @property
    def _meta_path(self) -> Path | None:
        return self.index_path.with_suffix(".json") if self.index_path else None

    # -- persistence ----------------------------------------------------------------------
    def load_or_rebuild(self) -> None:
        """Use the saved index if it matches the store, else rebuild it from SQLite."""
        reason = self._load()
        if reason:
            log.warning("Rebuilding the edit index: %s", reason)
            self.rebuild()
        self.rebuilt_reason = reason

    def _load(self) -> str | None:
        """Load the saved index; return why it cannot be used, or None when it was loaded."""
        if self.index_path is None:
            return "no index file configured"
        if not self.index_path.exists() or not self._meta_path.exists():
            return f"{self.index_path.name} is missing"
        try:
            meta = json.loads(self._meta_path.read_text(encoding="utf-8"))
            index = faiss.read_index(str(self.index_path))
        except (RuntimeError, ValueError, OSError) as exc:
            return f"{self.index_path.name} is unreadable ({str(exc).splitlines()[0][:120]})"
        if meta.get("fingerprint") != self.store.active_fingerprint():
            return f"{self.index_path.name} is stale (the store changed since it was saved)"
        if meta.get("embedder") != self.embedder.name or index.d != self.embedder.dim:
            return (f"{self.index_path.name} was built by embedder {meta.get('embedder')!r}, "
                    f"this run uses {self.embedder.name!r}")
        with self._lock:
            self.index = index
        return None

    def save(self) -> None:
        """Write index and fingerprint via temp files so a crash never leaves half a file."""
        if self.index_path is None:
            return
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            tmp = self.index_path.with_suffix(".faiss.tmp")
            faiss.write_index(self.index, str(tmp))
            meta = {"fingerprint": self.store.active_fingerprint(), "embedder": self.embedder.name,
                    "vectors": int(self.index.ntotal)}
            meta_tmp = self._meta_path.with_suffix(".json.tmp")
            meta_tmp.write_text(json.dumps(meta), encoding="utf-8")
            os.replace(tmp, self.index_path)
            os.replace(meta_tmp, self._meta_path)

    def rebuild(self) -> None:
        edits = self.store.active_edits()
        index = self._empty()
        texts, ids = [], []
        for edit in edits:
            for text in edit.key_texts():
                texts.append(text)
                ids.append(edit.id)
        if texts:
            vecs = self.embedder.embed(texts, show_progress=len(texts) > 2000)
            index.add_with_ids(vecs, np.asarray(ids, dtype=np.int64))
        with self._lock:
            self.index = index
        self.save()

    # -- updates ------------------------------------------------------------------------
    def add(self, edit: Edit) -> None:
        self.sync(added=[edit])

    def remove(self, edit_ids: list[int]) -> None:
        self.sync(removed=edit_ids)

    def sync(self, added: list[Edit] = (), removed: list[int] = ()) -> None:
        """Apply a store change to the index: remove ids, add edits, save once."""
        with self._lock:
            if removed:
                self.index.remove_ids(np.asarray(list(removed), dtype=np.int64))
            for edit in added:
                texts = edit.key_texts()
                self.index.add_with_ids(self.embedder.embed(texts),
                                        np.full(len(texts), edit.id, dtype=np.int64))
        self.save()

    # -- queries ------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def search(self, query_vec: np.ndarray, k: int) -> list[Hit]:
        """Best score per edit among the k nearest key vectors, highest first."""
        with self._lock:
            if self.index.ntotal == 0:
                return []
            scores, ids = self.index.search(query_vec.reshape(1, -1), min(k, self.index.ntotal))
        best: dict[int, float] = {}
        for score, edit_id in zip(scores[0], ids[0]):
            if edit_id >= 0 and float(score) > best.get(int(edit_id), -2.0):
                best[int(edit_id)] = float(score)
        return [Hit(i, s) for i, s in sorted(best.items(), key=lambda kv: -kv[1])]
