"""The SQLite store: the single source of truth for edits, conversation turns and the audit log.

sqlite-utils gives the schema helpers; every multi-step write runs in `db.atomic()` so a crash
leaves either the whole change or none of it. Migrations are named and recorded in the
`_migrations` table so an old data directory is upgraded in place, once.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from errors import EditNotFoundError, InvalidEditError, StoreError

EDIT_STATUSES = ("active", "pending", "promoted", "superseded", "rejected")
MAX_SUBJECT_CHARS = 200
MAX_PROMPT_CHARS = 500
MAX_TARGET_CHARS = 200


# A statement prompt ending in one of these already says what it asks ("The Louvre is in").
_PREPOSITIONS = frozenset("in at on from by for to of with near under into inside since "
                          "during".split())
KEY_SCHEME = 2  # version of Edit.key_texts(); a saved index built by another is rebuilt


@dataclass(frozen=True)
class Edit:
    """One stored correction: `prompt` (which names `subject`) should be answered `target_new`."""

    id: int
    subject: str
    prompt: str
    target_new: str
    target_old: str | None = None
    paraphrases: tuple[str, ...] = ()
    status: str = "active"
    source: str = "chat"
    created_at: float = 0.0
    hits: int = 0
    last_hit_at: float | None = None
    supersedes: int | None = None
    session: str | None = None  # shared mode: the chat session a pending correction serves
    aliases: tuple[str, ...] = ()  # other names of the subject ("the Big Apple"), admin-editable
    # promoted, but the weights alone did not answer its question and paraphrases in chat:
    # the memory route keeps serving it, so a promotion never loses a correction
    backstop: bool = False

    @property
    def routable(self) -> bool:
        """Whether the memory route may serve this edit (pending ones: their session only)."""
        return self.status in ("active", "pending") or (self.status == "promoted"
                                                         and self.backstop)

    @property
    def statement(self) -> str:
        """The fact as one sentence, used in prompts and confirmations."""
        if self.prompt.rstrip().endswith("?"):
            return f"{self.prompt.strip()} Answer: {self.target_new}."
        return f"{self.prompt.strip()} {self.target_new}."

    def key_texts(self) -> list[str]:
        """Texts embedded for retrieval: the prompt, any paraphrases, the prompt with each
        alias in place of the subject ("Where is the Big Apple?"), and a statement prompt with
        its value ("Mount Everest is 9,412 metres": the value says what "is" is about).
        Changing these texts means bumping KEY_SCHEME, so saved indexes are rebuilt."""
        by_alias = [re.sub(r"\b(?:the\s+)?%s" % re.escape(self.subject), alias, self.prompt,
                           count=1, flags=re.I)
                    for alias in self.aliases if self.subject.casefold() in self.prompt.casefold()]
        last = self.prompt.rstrip().rsplit(None, 1)[-1].lower() if self.prompt.strip() else ""
        filled = [] if self.prompt.rstrip().endswith("?") or last in _PREPOSITIONS else \
            [f"{self.prompt.rstrip()} {self.target_new}"]
        return [self.prompt, *self.paraphrases, *by_alias, *filled]


def _edit_from_row(row: dict[str, Any]) -> Edit:
    return Edit(
        id=row["id"],
        subject=row["subject"],
        prompt=row["prompt"],
        target_new=row["target_new"],
        target_old=row["target_old"],
        paraphrases=tuple(json.loads(row["paraphrases"] or "[]")),
        status=row["status"],
        source=row["source"],
        created_at=row["created_at"],
        hits=row["hits"],
        last_hit_at=row["last_hit_at"],
        supersedes=row["supersedes"],
        session=row.get("session"),
        aliases=tuple(json.loads(row.get("aliases") or "[]")),
        backstop=bool(row.get("backstop") or 0),
    )


def _m0001_initial(db: sqlite_utils.Database) -> None:
    db["edits"].create(
        {
            "id": int, "subject": str, "prompt": str, "target_new": str, "target_old": str,
            "paraphrases": str, "status": str, "source": str, "created_at": float,
            "hits": int, "last_hit_at": float, "supersedes": int,
        },
        pk="id",
        not_null={"subject", "prompt", "target_new", "status", "source", "created_at", "hits"},
        defaults={"hits": 0, "paraphrases": "[]"},
    )
    db["edits"].create_index(["status"])
    db["edits"].create_index(["subject"])
    db["turns"].create(
        {"id": int, "session": str, "created_at": float, "role": str, "content": str,
         "route": str, "edit_ids": str, "trace": str},
        pk="id",
    )
    db["turns"].create_index(["session"])
    db["audit"].create(
        {"id": int, "created_at": float, "actor": str, "action": str, "edit_id": int,
         "detail": str},
        pk="id",
    )
    db["weight_edits"].create(
        {"id": int, "method": str, "edit_ids": str, "layers": str, "delta_path": str,
         "base_fingerprint": str, "scores": str, "status": str, "created_at": float},
        pk="id",
    )


def _m0002_weight_edit_details(db: sqlite_utils.Database) -> None:
    """Weight edits keep the checksum of the weights they produce, their cost and a note."""
    table = db["weight_edits"]
    table.add_column("checksum", str)
    table.add_column("seconds", float)
    table.add_column("note", str)


def _m0003_edit_session(db: sqlite_utils.Database) -> None:
    """Shared mode: a correction made in chat stays pending, serving only its own session."""
    db["edits"].add_column("session", str)


def _m0004_edit_aliases(db: sqlite_utils.Database) -> None:
    """Other names of an edit's subject, so "the Big Apple" finds an edit about New York."""
    db["edits"].add_column("aliases", str, not_null_default="[]")


def _m0005_edit_backstop(db: sqlite_utils.Database) -> None:
    """A promoted edit the weights do not carry in chat stays in the memory route."""
    db["edits"].add_column("backstop", int, not_null_default=0)


def _m0006_weight_deltas(db: sqlite_utils.Database) -> None:
    """A weight edit's delta bytes live in the store, committed with its row: every instance
    of a shared store replays the same deltas, and no delta file can be lost apart from it."""
    db["weight_deltas"].create({"weight_edit_id": int, "data": bytes, "sha256": str},
                               pk="weight_edit_id", not_null={"data", "sha256"})


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("0001_initial", _m0001_initial),
    ("0002_weight_edit_details", _m0002_weight_edit_details),
    ("0003_edit_session", _m0003_edit_session),
    ("0004_edit_aliases", _m0004_edit_aliases),
    ("0005_edit_backstop", _m0005_edit_backstop),
    ("0006_weight_deltas", _m0006_weight_deltas),
]
ROUTABLE_SQL = "(status IN ('active', 'pending') OR (status = 'promoted' AND backstop = 1))"
MAX_ALIASES = 20
WEIGHT_EDIT_STATUSES = ("committed", "rolled_back")


@dataclass
class Store:
    """Edits, turns and audit entries in one SQLite file (or in memory for tests)."""

    path: Path | str = ":memory:"
    # read only: no folder made, no migration, no WAL switch, every write refused by SQLite;
    # for commands that read a running app's data dir (python -m editing.export)
    read_only: bool = False
    db: sqlite_utils.Database = field(init=False)
    _lock: threading.RLock = field(init=False, default_factory=threading.RLock)

    def __post_init__(self) -> None:
        if self.read_only:
            if not Path(self.path).is_file():
                raise StoreError(f"no database at {self.path}")
            target, uri = f"{Path(self.path).resolve().as_uri()}?mode=ro", True
        else:
            if str(self.path) != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            target, uri = str(self.path), False
        # One connection shared by Gradio's worker threads; the lock serialises its use.
        conn = sqlite3.connect(target, check_same_thread=False, uri=uri)
        # Unicode-aware case folding for subject matching (SQLite's NOCASE folds ASCII only).
        conn.create_function("casefold", 1, lambda t: t.casefold() if t else t,
                             deterministic=True)
        self.db = sqlite_utils.Database(conn)
        try:
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            if self.read_only:
                return
            if str(self.path) != ":memory:":
                self.db.enable_wal()
            self.db.execute("PRAGMA foreign_keys=on")
            self.migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(
                f"the database {self.path} is damaged ({exc}); it was left as it is: restore "
                "a backup, or move it aside to start with an empty store") from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Several store calls as one transaction (they nest as savepoints): all or nothing."""
        with self._lock, self.db.atomic():
            yield

    # -- schema -------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply migrations not yet recorded; returns the names applied now."""
        with self._lock:
            table = self.db["_migrations"]
            if not table.exists():
                table.create({"name": str, "applied_at": float}, pk="name")
            done = {row["name"] for row in table.rows}
            applied = []
            for name, step in MIGRATIONS:
                if name in done:
                    continue
                with self.db.atomic():
                    step(self.db)
                    table.insert({"name": name, "applied_at": time.time()})
                applied.append(name)
            return applied

    def applied_migrations(self) -> list[str]:
        return [row["name"] for row in self.db["_migrations"].rows_where(order_by="name")]

    def integrity_ok(self) -> bool:
        with self._lock:
            return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        self.db.close()

    def watch(self, on_change: Callable[[set[int] | None], None],
              what: str = "edits") -> object | None:
        """Report other writers' changes to edits or weight edits (see `PostgresStore.watch`).
        A SQLite file has one app instance, so there is no one else to hear from: None."""
        return None

    # -- edits --------------------------------------------------------------------------
    def add_edit(
        self,
        subject: str,
        prompt: str,
        target_new: str,
        *,
        target_old: str | None = None,
        paraphrases: Iterable[str] = (),
        source: str = "chat",
        supersedes: Iterable[int] = (),
        actor: str = "user",
        status: str = "active",
        session: str | None = None,
        aliases: Iterable[str] = (),
    ) -> Edit:
        """Validate and store an edit; edits it supersedes are marked in the same transaction.
        Shared mode stores chat corrections as `pending` with the `session` they serve."""
        subject, prompt, target_new = subject.strip(), prompt.strip(), target_new.strip()
        validate_edit_fields(subject, prompt, target_new)
        aliases = clean_aliases(aliases, subject)
        if status not in ("active", "pending"):
            raise InvalidEditError(f"a new edit is active or pending, not '{status}'")
        now = time.time()
        old_ids = list(supersedes)
        with self._lock, self.db.atomic():
            for old in old_ids:  # fail before inserting anything
                self._require(old)
            edit_id = self.db["edits"].insert(
                {
                    "subject": subject, "prompt": prompt, "target_new": target_new,
                    "target_old": target_old, "paraphrases": json.dumps(list(paraphrases)),
                    "status": status, "source": source, "created_at": now, "hits": 0,
                    "supersedes": old_ids[0] if old_ids else None, "session": session,
                    "aliases": json.dumps(aliases),
                }
            ).last_pk
            self._audit(actor, "create", edit_id, {"source": source, "target_new": target_new})
            self._supersede(actor, edit_id, old_ids)
        return self.get_edit(edit_id)

    def get_edit(self, edit_id: int) -> Edit:
        with self._lock:
            return _edit_from_row(self._require(edit_id))

    def _require(self, edit_id: int) -> dict[str, Any]:
        try:
            return self.db["edits"].get(edit_id)
        except sqlite_utils.db.NotFoundError as exc:
            raise EditNotFoundError(f"no edit with id {edit_id}") from exc

    def list_edits(
        self, status: str | None = None, search: str | None = None, limit: int = 200,
        offset: int = 0,
    ) -> list[Edit]:
        """Newest first; `search` matches subject, prompt or targets (case-insensitive)."""
        clauses, params = [], []
        if status:
            clauses.append("status = ?")
            params.append(status)
        if search:
            like = f"%{search.strip()}%"
            clauses.append("(subject LIKE ? OR prompt LIKE ? OR target_new LIKE ? "
                           "OR coalesce(target_old, '') LIKE ?)")
            params += [like] * 4
        where = " AND ".join(clauses) or None
        with self._lock:
            rows = self.db["edits"].rows_where(
                where, params, order_by="id desc", limit=limit, offset=offset
            )
            return [_edit_from_row(r) for r in rows]

    def query_edits(self, *, status: str | None = None, source: str | None = None,
                    min_hits: int = 0, max_age_days: float | None = None,
                    search: str | None = None, conflicts_only: bool = False, page: int = 1,
                    page_size: int = 50) -> tuple[list[Edit], int]:
        """One page of edits (newest first) matching every given filter, and the total count.

        `search` matches subject, prompt and targets (case-insensitive); `conflicts_only`
        keeps edits that give the same fact as another active or pending edit a different
        answer.
        """
        clauses, params = [], []
        if status:
            clauses.append("status = ?")
            params.append(status)
        if source:
            clauses.append("source = ?")
            params.append(source)
        if min_hits:
            clauses.append("hits >= ?")
            params.append(int(min_hits))
        if max_age_days is not None:
            clauses.append("created_at >= ?")
            params.append(time.time() - float(max_age_days) * 86400)
        if search:
            like = f"%{search.strip()}%"
            clauses.append("(subject LIKE ? OR prompt LIKE ? OR target_new LIKE ? "
                           "OR coalesce(target_old, '') LIKE ?)")
            params += [like] * 4
        if conflicts_only:
            ids = sorted(self.conflict_ids()) or [-1]
            clauses.append(f"id IN ({','.join('?' * len(ids))})")
            params += ids
        where = " AND ".join(clauses) or "1 = 1"
        page_size = max(1, min(int(page_size), 500))
        offset = (max(1, int(page)) - 1) * page_size
        with self._lock:
            total = self.db.execute(f"SELECT count(*) FROM edits WHERE {where}",
                                    params).fetchone()[0]
            rows = self.db["edits"].rows_where(where, params, order_by="id desc",
                                               limit=page_size, offset=offset)
            return [_edit_from_row(r) for r in rows], total

    def conflict_ids(self) -> set[int]:
        """Active or pending edits whose fact (subject and prompt, ignoring case) another
        active or pending edit answers differently."""
        with self._lock:
            rows = self.db.execute(
                "SELECT a.id FROM edits a JOIN edits b ON a.id != b.id "
                "AND casefold(a.subject) = casefold(b.subject) "
                "AND casefold(a.prompt) = casefold(b.prompt) "
                "AND casefold(a.target_new) != casefold(b.target_new) "
                "WHERE a.status IN ('active', 'pending') AND b.status IN ('active', 'pending')"
            ).fetchall()
        return {r[0] for r in rows}

    def edit_history(self, edit_id: int) -> dict[str, Any]:
        """Everything known about one edit: the row, its audit trail (created, superseded,
        approved, promoted, rolled back...), the chat turns it answered, its weight edits."""
        with self._lock:
            edit = _edit_from_row(self._require(edit_id))
            audit = list(self.db["audit"].rows_where("edit_id = ?", [edit_id], order_by="id"))
            mentions = list(self.db["audit"].rows_where(
                "edit_id IS NULL AND detail LIKE ?", [f"%{edit_id}%"], order_by="id"))
            turns = [t for t in self.db["turns"].rows_where(
                "edit_ids LIKE ?", [f"%{edit_id}%"], order_by="id desc", limit=200)
                if edit_id in json.loads(t["edit_ids"] or "[]")][:50]
            weights = [w for w in self.weight_edits() if edit_id in w["edit_ids"]]
        mentions = [m for m in mentions
                    if edit_id in (json.loads(m["detail"] or "{}").get("edits") or [])]
        return {"edit": edit, "audit": audit + mentions, "turns": turns,
                "weight_edits": weights}

    def supersede(self, keep_id: int, old_ids: Iterable[int], actor: str = "admin") -> None:
        """Mark `old_ids` as replaced by `keep_id` (merging duplicates), in one transaction."""
        old = [i for i in dict.fromkeys(old_ids) if i != keep_id]
        with self._lock, self.db.atomic():
            self._require(keep_id)
            self._supersede(actor, keep_id, old)

    def active_edits(self) -> list[Edit]:
        with self._lock:
            rows = self.db["edits"].rows_where("status = 'active'", order_by="id")
            return [_edit_from_row(r) for r in rows]

    def active_edits_about(self, subject: str) -> list[Edit]:
        """Active edits whose subject is `subject`, ignoring case (Unicode-aware)."""
        with self._lock:
            rows = self.db["edits"].rows_where(
                "status = 'active' AND casefold(subject) = ?", [subject.strip().casefold()],
                order_by="id")
            return [_edit_from_row(r) for r in rows]

    def routable_edits(self) -> list[Edit]:
        """Edits the memory route may use: active ones, promoted ones the weights do not carry
        (backstop), and pending ones (each serving only the chat session that made it, in
        shared mode)."""
        with self._lock:
            rows = self.db["edits"].rows_where(ROUTABLE_SQL, order_by="id")
            return [_edit_from_row(r) for r in rows]

    def routable_fingerprint(self) -> str:
        """Changes whenever the set of routable edits (or their key texts) changes."""
        with self._lock:
            rows = self.db.execute(
                "SELECT id, prompt, paraphrases, aliases FROM edits "
                f"WHERE {ROUTABLE_SQL} ORDER BY id").fetchall()
        digest = hashlib.sha256()
        for row in rows:
            digest.update(json.dumps(row).encode())
        return digest.hexdigest()

    def set_status(self, edit_id: int, status: str, *, actor: str = "admin",
                   note: str = "", supersedes: Iterable[int] = ()) -> Edit:
        """Change an edit's status; edits it supersedes are marked in the same transaction."""
        if status not in EDIT_STATUSES:
            raise InvalidEditError(f"unknown status '{status}'; use one of {EDIT_STATUSES}")
        with self._lock, self.db.atomic():
            before = self._require(edit_id)["status"]
            self.db["edits"].update(edit_id, {"status": status})
            self._audit(actor, f"status:{before}->{status}", edit_id, {"note": note})
            self._supersede(actor, edit_id, supersedes)
        return self.get_edit(edit_id)

    def _supersede(self, actor: str, edit_id: int, old_ids: Iterable[int]) -> None:
        """Mark edits replaced by `edit_id`; call inside the caller's transaction."""
        for old in old_ids:
            self._require(old)
            self.db["edits"].update(old, {"status": "superseded"})
            self._audit(actor, "supersede", old, {"by": edit_id})

    def set_aliases(self, edit_id: int, aliases: Iterable[str], actor: str = "admin") -> Edit:
        """Replace an edit's aliases (validated; audited)."""
        with self._lock, self.db.atomic():
            row = self._require(edit_id)
            cleaned = clean_aliases(aliases, row["subject"])
            self.db["edits"].update(edit_id, {"aliases": json.dumps(cleaned)})
            self._audit(actor, "aliases", edit_id, {"aliases": cleaned})
        return self.get_edit(edit_id)

    def record_hits(self, edit_ids: Iterable[int]) -> None:
        ids = list(edit_ids)
        if not ids:
            return
        now = time.time()
        with self._lock, self.db.atomic():
            for edit_id in ids:
                self.db.execute(
                    "UPDATE edits SET hits = hits + 1, last_hit_at = ? WHERE id = ?",
                    [now, edit_id],
                )

    def count_edits(self, status: str | None = None) -> int:
        with self._lock:
            if status is None:
                return self.db["edits"].count
            return self.db.execute(
                "SELECT count(*) FROM edits WHERE status = ?", [status]
            ).fetchone()[0]

    # -- weight edits (promotions) ------------------------------------------------------
    def add_weight_edit(self, *, method: str, edit_ids: list[int], layers: list[int],
                        delta_path: str, base_fingerprint: str, scores: dict[str, Any],
                        checksum: str, seconds: float, actor: str = "admin",
                        backstop_ids: Iterable[int] = (), delta_bytes: bytes | None = None,
                        applied: list[int] | None = None) -> int:
        """Record a committed weight edit and mark its edits promoted, in one transaction;
        those in `backstop_ids` (not carried by the weights in chat) stay in the memory route.
        `delta_bytes` (the delta's file) is stored with the row, so any instance can replay it.

        This row is the commit point of a promotion: at start-up only committed rows are
        replayed. `applied`: the committed weight edits the delta was made on top of; when
        the store's committed list differs (another instance of a shared store committed or
        rolled one back meanwhile), nothing is written and WeightEditConflict says which.
        """
        backstop_ids = set(backstop_ids)
        with self._lock, self.db.atomic():
            self._lock_weight_edits()
            if applied is not None:
                now = [r[0] for r in self.db.execute(
                    "SELECT id FROM weight_edits WHERE status = 'committed' ORDER BY id")]
                if now != list(applied):
                    raise WeightEditConflict(
                        "the committed weight edits changed while this one was being made "
                        f"(now {_ids(now)}, it was made on {_ids(applied)})")
            for edit_id in edit_ids:
                self._require(edit_id)
            row_id = self.db["weight_edits"].insert(
                {"method": method, "edit_ids": json.dumps(edit_ids),
                 "layers": json.dumps(layers), "delta_path": delta_path,
                 "base_fingerprint": base_fingerprint, "scores": json.dumps(scores),
                 "status": "committed", "created_at": time.time(), "checksum": checksum,
                 "seconds": seconds, "note": ""}).last_pk
            if delta_bytes is not None:
                self.db["weight_deltas"].insert(
                    {"weight_edit_id": row_id, "data": bytes(delta_bytes),
                     "sha256": hashlib.sha256(delta_bytes).hexdigest()})
            for edit_id in edit_ids:
                before = self._require(edit_id)["status"]
                held = edit_id in backstop_ids
                self.db["edits"].update(edit_id, {"status": "promoted", "backstop": int(held)})
                self._audit(actor, f"status:{before}->promoted", edit_id,
                            {"weight_edit": row_id, "method": method,
                             "memory_backstop": held})
            self._audit(actor, f"promote:{method}", None,
                        {"weight_edit": row_id, "edits": edit_ids, "scores": scores})
            return row_id

    def weight_edits(self, status: str | None = None) -> list[dict[str, Any]]:
        """Weight edits in the order they were made (the order they are replayed in)."""
        with self._lock:
            where, params = ("status = ?", [status]) if status else (None, [])
            rows = list(self.db["weight_edits"].rows_where(where, params, order_by="id"))
        for row in rows:
            row["edit_ids"] = json.loads(row["edit_ids"])
            row["layers"] = json.loads(row["layers"])
            row["scores"] = json.loads(row["scores"] or "{}")
        return rows

    def weight_delta_bytes(self, weight_edit_id: int) -> bytes | None:
        """The delta file stored with a weight edit (None for one committed before the store
        kept them: its file in the data dir is all there is); StoreError if it is damaged."""
        with self._lock:
            row = self.db.execute("SELECT data, sha256 FROM weight_deltas WHERE "
                                  "weight_edit_id = ?", [weight_edit_id]).fetchone()
        if row is None:
            return None
        data = bytes(row[0])
        if hashlib.sha256(data).hexdigest() != row[1]:
            raise StoreError(f"the stored delta of weight edit #{weight_edit_id} is damaged "
                             "(its checksum differs)")
        return data

    def _lock_weight_edits(self) -> None:
        """Inside a transaction: keep other writers of weight edits out until it ends (one
        SQLite file has one writer at a time already; see PostgresStore)."""

    def get_weight_edit(self, weight_edit_id: int) -> dict[str, Any]:
        rows = [r for r in self.weight_edits() if r["id"] == weight_edit_id]
        if not rows:
            raise EditNotFoundError(f"no weight edit #{weight_edit_id}")
        return rows[0]

    def rollback_weight_edit(self, weight_edit_id: int, actor: str = "admin") -> list[int]:
        """Mark a weight edit rolled back; its still-promoted edits go back to the memory
        route (active). Returns those edit ids."""
        restored = []
        with self._lock, self.db.atomic():
            self._lock_weight_edits()
            row = self.get_weight_edit(weight_edit_id)  # read under the lock: no two undo it
            if row["status"] != "committed":
                raise InvalidEditError(
                    f"weight edit #{weight_edit_id} is already {row['status']}")
            self.db["weight_edits"].update(weight_edit_id, {"status": "rolled_back"})
            for edit_id in row["edit_ids"]:
                if self._require(edit_id)["status"] == "promoted":
                    self.db["edits"].update(edit_id, {"status": "active", "backstop": 0})
                    self._audit(actor, "status:promoted->active", edit_id,
                                {"weight_edit": weight_edit_id})
                    restored.append(edit_id)
            self._audit(actor, "rollback", None, {"weight_edit": weight_edit_id})
        return restored

    def note_weight_edit(self, weight_edit_id: int, note: str) -> None:
        with self._lock, self.db.atomic():
            self.db["weight_edits"].update(weight_edit_id, {"note": note})

    def audit(self, actor: str, action: str, detail: dict[str, Any],
              edit_id: int | None = None) -> None:
        """An audit entry on its own (e.g. a promotion the guard refused)."""
        with self._lock, self.db.atomic():
            self._audit(actor, action, edit_id, detail)

    # -- turns and audit ----------------------------------------------------------------
    def log_turn(self, session: str, role: str, content: str,
                 trace: dict[str, Any] | None = None) -> int:
        trace = trace or {}
        with self._lock, self.db.atomic():
            return self.db["turns"].insert(
                {"session": session, "created_at": time.time(), "role": role,
                 "content": content, "route": trace.get("route"),
                 "edit_ids": json.dumps(trace.get("edit_ids", [])),
                 "trace": json.dumps(trace)}
            ).last_pk

    def turns(self, session: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            where, params = ("session = ?", [session]) if session else (None, [])
            return list(self.db["turns"].rows_where(where, params, order_by="id desc",
                                                    limit=limit))

    def _audit(self, actor: str, action: str, edit_id: int | None,
               detail: dict[str, Any]) -> None:
        self.db["audit"].insert(
            {"created_at": time.time(), "actor": actor, "action": action, "edit_id": edit_id,
             "detail": json.dumps(detail)}
        )

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db["audit"].rows_where(order_by="id desc", limit=limit))

    def edit_audit(self) -> list[dict[str, Any]]:
        """Every audit entry that names an edit, oldest first (an export's history)."""
        with self._lock:
            return list(self.db["audit"].rows_where("edit_id IS NOT NULL", order_by="id"))

    def edit_facts(self) -> list[tuple[int, str, str, str, str]]:
        """(id, subject, prompt, target_new, status) of every edit: what an import compares."""
        with self._lock:
            return [tuple(row) for row in self.db.execute(
                "SELECT id, subject, prompt, target_new, status FROM edits ORDER BY id")]


class WeightEditConflict(StoreError):
    """Another writer changed the committed weight edits while a promotion was being made."""


def _ids(ids: Iterable[int]) -> str:
    return ", ".join(f"#{i}" for i in ids) or "none"


def validate_edit_fields(subject: str, prompt: str, target_new: str) -> None:
    """Reject edits that could not be retrieved or answered sensibly."""
    for name, value, limit in (("subject", subject, MAX_SUBJECT_CHARS),
                               ("prompt", prompt, MAX_PROMPT_CHARS),
                               ("target", target_new, MAX_TARGET_CHARS)):
        if not value:
            raise InvalidEditError(f"the {name} is empty")
        if len(value) > limit:
            raise InvalidEditError(f"the {name} is longer than {limit} characters")
    if subject.lower() not in prompt.lower():
        raise InvalidEditError(f"the prompt '{prompt}' does not mention the subject '{subject}'")


def clean_aliases(aliases: Iterable[str], subject: str) -> list[str]:
    """Aliases as stored: trimmed, without the subject itself or repeats; refused when too long
    or too many (InvalidEditError says which)."""
    cleaned: list[str] = []
    seen = {subject.strip().casefold()}
    for alias in aliases:
        alias = " ".join(str(alias).split())
        if not alias or alias.casefold() in seen:
            continue
        if len(alias) > MAX_SUBJECT_CHARS:
            raise InvalidEditError(f"the alias '{alias[:40]}...' is too long ({len(alias)} "
                                   f"characters; at most {MAX_SUBJECT_CHARS})")
        seen.add(alias.casefold())
        cleaned.append(alias)
    if len(cleaned) > MAX_ALIASES:
        raise InvalidEditError(f"an edit can have at most {MAX_ALIASES} aliases "
                               f"({len(cleaned)} given)")
    return cleaned
