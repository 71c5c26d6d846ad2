"""Edit memory: a FAISS inner-product index over the active edits' key texts.

SQLite is the truth; the index file is a cache. It is saved beside the database together with a
fingerprint of the active edits, and rebuilt (with a log line saying why) when the file is
missing, unreadable, or its fingerprint no longer matches the store.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from assistant.embedder import Embedder
from assistant.naming import find_mention
from assistant.scope import relation_text
from errors import EditNotFoundError
from store.db import KEY_SCHEME, Edit, Store

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
        # Per edit, its key texts embedded with the subject masked (the scope's relation test
        # needs them on every in-scope query; computing them here keeps that off the hot path).
        self.relations: dict[int, np.ndarray] = {}
        self.rebuilt_reason: str | None = None
        # promoted edits whose weight edit this instance's weights do not carry (yet: another
        # instance committed it; or never: made on another base model) are still served
        # here; the weight edits set this to ask the store and their own state each time
        self.held: Callable[[], frozenset[int]] = frozenset
        # per indexed edit, a digest of what its vectors were made from (`key_digest`): the
        # saved file's fingerprint says the store matched at the save, and these say what
        # the index holds, so a later refresh re-embeds an edit whose key texts changed
        self.digests: dict[int, str] = {}
        self.load_or_rebuild()

    def _empty(self) -> faiss.IndexIDMap2:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.embedder.dim))

    @property
    def _meta_path(self) -> Path | None:
        return self.index_path.with_suffix(".json") if self.index_path else None

    @property
    def _relations_path(self) -> Path | None:
        return self.index_path.with_suffix(".relations.npz") if self.index_path else None

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
            relations = _read_relations(self._relations_path)
        except (RuntimeError, ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
            return f"{self.index_path.name} is unreadable ({str(exc).splitlines()[0][:120]})"
        if meta.get("fingerprint") != self.store.routable_fingerprint():
            return f"{self.index_path.name} is stale (the store changed since it was saved)"
        if meta.get("key_scheme", 1) != KEY_SCHEME:
            return f"{self.index_path.name} was built from an older set of key texts"
        if meta.get("embedder") != self.embedder.name or index.d != self.embedder.dim:
            return (f"{self.index_path.name} was built by embedder {meta.get('embedder')!r}, "
                    f"this run uses {self.embedder.name!r}")
        with self._lock:
            self.index = index
            self.relations = relations
            self.digests = {int(k): v for k, v in (meta.get("digests") or {}).items()}
        return None

    def save(self) -> None:
        """Write index and fingerprint via temp files so a crash never leaves half a file."""
        if self.index_path is None:
            return
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            tmp = self.index_path.with_suffix(".faiss.tmp")
            faiss.write_index(self.index, str(tmp))
            meta = {"fingerprint": self.store.routable_fingerprint(), "embedder": self.embedder.name,
                    "key_scheme": KEY_SCHEME,
                    "vectors": int(self.index.ntotal), "digests": self.digests}
            meta_tmp = self._meta_path.with_suffix(".json.tmp")
            meta_tmp.write_text(json.dumps(meta), encoding="utf-8")
            relations_tmp = self._relations_path.with_suffix(".tmp")
            _write_relations(relations_tmp, self.relations)
            os.replace(tmp, self.index_path)
            os.replace(relations_tmp, self._relations_path)
            os.replace(meta_tmp, self._meta_path)  # last: it vouches for the other two

    def _embed_edits(self, edits: list[Edit]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """(key vectors, their edit ids, masked key vectors per edit) for `edits`."""
        texts = [text for edit in edits for text in edit.key_texts()]
        masked = [relation_text(text, edit.subject, find_mention(edit.subject, text, edit.aliases))
                  for edit in edits for text in edit.key_texts()]
        # one call: the embedder embeds a text once however often it comes (masked texts
        # repeat across edits of one relation) and batches texts of equal length together
        both = self.embedder.embed(texts + masked, show_progress=len(texts) > 2000)
        # a copy: the per-edit masked arrays are views, which must not keep the key vectors
        # (copied into the index) alive with them
        vecs, masked_vecs = both[:len(texts)], both[len(texts):].copy()
        ids = np.asarray([edit.id for edit in edits for _ in edit.key_texts()], dtype=np.int64)
        per_edit, start = [], 0
        for edit in edits:
            per_edit.append(masked_vecs[start:start + len(edit.key_texts())])
            start += len(edit.key_texts())
        return vecs, ids, per_edit

    @property
    def held_ids(self) -> frozenset[int]:
        return self.held()

    def routable(self) -> list[Edit]:
        """The edits this index serves: the store's routable ones and the held ones."""
        edits = self.store.routable_edits()
        for edit_id in sorted(self.held_ids - {edit.id for edit in edits}):
            try:
                edit = self.store.get_edit(edit_id)
            except EditNotFoundError:
                continue
            if edit.status == "promoted":
                edits.append(edit)
        return edits

    def rebuild(self) -> None:
        edits = self.routable()
        index = self._empty()
        relations: dict[int, np.ndarray] = {}
        if edits:
            vecs, ids, masked = self._embed_edits(edits)
            index.add_with_ids(vecs, ids)
            relations = {edit.id: m for edit, m in zip(edits, masked)}
        with self._lock:
            self.index = index
            self.relations = relations
            self.digests = {edit.id: key_digest(edit) for edit in edits}
        self.save()

    # -- updates ------------------------------------------------------------------------
    def sync(self, added: list[Edit] = (), removed: list[int] = ()) -> None:
        """Apply a store change to the index: remove ids, add edits, save once."""
        added = list(added)
        vecs, ids, masked = self._embed_edits(added) if added else (None, None, [])
        with self._lock:
            if removed:
                self.index.remove_ids(np.asarray(list(removed), dtype=np.int64))
                for edit_id in removed:
                    self.relations.pop(edit_id, None)
                    self.digests.pop(edit_id, None)
            if added:
                self.index.add_with_ids(vecs, ids)
                self.relations.update({edit.id: m for edit, m in zip(added, masked)})
                self.digests.update({edit.id: key_digest(edit) for edit in added})
        self.save()

    def indexed_ids(self) -> set[int]:
        with self._lock:
            return {int(i) for i in faiss.vector_to_array(self.index.id_map)}

    def refresh(self, changed: set[int] | None = None) -> tuple[int, int]:
        """Catch up with changes another writer made to the store (another app instance on a
        shared PostgreSQL store): edits now routable and not indexed are added, indexed ones
        no longer routable removed, and the `changed` ids still routable re-embedded (their
        key texts may differ). `changed` None (a start, a reconnect: anything may have been
        missed): every indexed edit whose key texts differ from what its vectors were made
        from is re-embedded. Returns (added, removed). The owner runs this under the lock
        that keeps store and memory in step."""
        routable = {edit.id: edit for edit in self.routable()}
        indexed = self.indexed_ids()
        stale: set[int] = set()
        if changed is None:
            with self._lock:  # an index saved before digests were kept: ids compared only
                saved = {i: self.digests[i] for i in indexed & set(routable)
                         if i in self.digests}
            stale = {i for i, digest in saved.items() if digest != key_digest(routable[i])}
        redo = (set(changed or ()) | stale) & indexed & set(routable)
        removed = sorted((indexed - set(routable)) | redo)
        added = [routable[i] for i in sorted((set(routable) - indexed) | redo)]
        if added or removed:
            self.sync(added=added, removed=removed)
        return len(added), len(removed)

    def masked_keys(self, edit: Edit) -> np.ndarray:
        """(keys, dim) masked key vectors of an edit: stored ones, else computed now."""
        stored = self.relations.get(edit.id)
        if stored is not None and len(stored) == len(edit.key_texts()):
            return stored
        return self._embed_edits([edit])[2][0]

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


def key_digest(edit: Edit) -> str:
    """What an edit's vectors are made from (its subject and key texts), in 12 hex digits."""
    text = "\x1f".join([edit.subject, *edit.key_texts()])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _write_relations(path: Path, relations: dict[int, np.ndarray]) -> None:
    ids = np.asarray(sorted(relations), dtype=np.int64)
    counts = np.asarray([len(relations[i]) for i in ids], dtype=np.int64)
    vectors = (np.concatenate([relations[i] for i in ids]) if len(ids)
               else np.zeros((0, 0), dtype=np.float32))
    with open(path, "wb") as handle:
        np.savez(handle, ids=ids, counts=counts, vectors=vectors)


def _read_relations(path: Path) -> dict[int, np.ndarray]:
    if not path.exists():
        raise OSError(f"{path.name} is missing")
    with np.load(path) as data:
        ids, counts, vectors = data["ids"], data["counts"], data["vectors"]
    if int(counts.sum()) != len(vectors):
        raise ValueError(f"{path.name} does not add up")
    relations, start = {}, 0
    for edit_id, count in zip(ids.tolist(), counts.tolist()):
        relations[edit_id] = vectors[start:start + count]
        start += count
    return relations
