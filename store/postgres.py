"""The PostgreSQL store: the same `Store`, its methods and migrations, on a shared server.

Many app instances can share one PostgreSQL database, where SQLite is one file per app.
Rather than a second copy of every store method, `PostgresStore` keeps `Store`'s methods and
gives them `PgDatabase`, a small stand-in for the part of sqlite-utils they use (`execute`,
`atomic`, and a table's `insert`, `get`, `update`, `rows_where`, `create`, `add_column`...).
The store's SQL is written for SQLite; the stand-in maps its three differences: `?`
placeholders become `%s`, `LIKE` becomes `ILIKE ... ESCAPE ''` (SQLite's LIKE ignores case
and has no escape character), and `casefold()` is a SQL function the store creates (`lower`,
Unicode-aware under a UTF-8 database, as Python's casefold is for all but a few letters).
Columns keep SQLite's values: ids are identity columns, times are epoch seconds (double
precision), JSON stays text, so callers see the same Python values on either backend.
"""
from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlite_utils.db
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from errors import StoreError
from store.db import MIGRATIONS, Store

PG_TYPES = {int: "bigint", str: "text", float: "double precision", bytes: "bytea"}
PY_TYPES = {"bigint": int, "integer": int, "smallint": int, "text": str,
            "double precision": float, "real": float, "bytea": bytes}
MIGRATION_LOCK = 0x616D656E64  # pg_advisory_lock key: instances starting at once migrate in turn
TABLES = ("edits", "turns", "audit", "weight_edits", "weight_deltas")
NOTIFY_CHANNEL = "amend_edits"  # payload: the id of an edit that changed (see NOTIFY_SQL)
WEIGHTS_CHANNEL = "amend_weights"  # payload: the id of a weight edit committed or rolled back
CHANNELS = {"edits": NOTIFY_CHANNEL, "weights": WEIGHTS_CHANNEL}
# Every change to an edit that the memory route can see (a new edit, a status, its key texts,
# its session or backstop flag; not its hit count) notifies NOTIFY_CHANNEL from a trigger,
# so inside the writing transaction, whichever store method wrote: PostgreSQL delivers the
# notification to the listening instances when that transaction commits, never before and
# never for a rolled-back one, and sends one per edit id per transaction.
# the columns whose change the memory route sees (those the table has: an old store is
# migrated first, and the triggers are installed again when a migration adds one)
NOTIFY_COLUMNS = ("subject", "prompt", "target_new", "paraphrases", "status", "session",
                  "aliases", "backstop")
NOTIFY_SQL = f"""
CREATE OR REPLACE FUNCTION amend_notify_edit() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('{NOTIFY_CHANNEL}', OLD.id::text);
  ELSE
    PERFORM pg_notify('{NOTIFY_CHANNEL}', NEW.id::text);
  END IF;
  RETURN NULL;
END $fn$;
DROP TRIGGER IF EXISTS amend_edits_notify ON edits;
CREATE TRIGGER amend_edits_notify AFTER INSERT OR DELETE ON edits
  FOR EACH ROW EXECUTE FUNCTION amend_notify_edit();
DROP TRIGGER IF EXISTS amend_edits_notify_update ON edits;
CREATE TRIGGER amend_edits_notify_update AFTER UPDATE ON edits FOR EACH ROW
  WHEN (({{old}}) IS DISTINCT FROM ({{new}}))
  EXECUTE FUNCTION amend_notify_edit();
CREATE OR REPLACE FUNCTION amend_notify_weight_edit() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_notify('{WEIGHTS_CHANNEL}', NEW.id::text);
  RETURN NULL;
END $fn$;
DROP TRIGGER IF EXISTS amend_weight_edits_notify ON weight_edits;
CREATE TRIGGER amend_weight_edits_notify AFTER INSERT OR UPDATE OF status ON weight_edits
  FOR EACH ROW EXECUTE FUNCTION amend_notify_weight_edit();
"""
# the trigger set above; a new version is installed anew (v2: weight edits notify too)
NOTIFY_VERSION = "amend_notify_v2"

log = logging.getLogger(__name__)
_LIKE = re.compile(r"\bLIKE\s+\?")


def to_postgres_sql(sql: str) -> str:
    """SQLite-flavoured SQL from `store.db` as PostgreSQL runs it (see the module docstring)."""
    sql = _LIKE.sub("ILIKE ? ESCAPE ''", sql)
    return sql.replace("%", "%%").replace("?", "%s")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "a PostgreSQL server (unreadable URL)"
    return (f"postgresql://{info.get('user', '')}@{info.get('host', 'localhost')}:"
            f"{info.get('port', 5432)}/{info.get('dbname', '')}")


class PgDatabase:
    """One psycopg connection shaped like the part of `sqlite_utils.Database` the store uses.

    A connection lost while idle (the server restarted, a network cut, an idle timeout) is
    replaced on next use: a read that fails that way, or a transaction that fails at its
    BEGIN, is retried once on a new connection, as neither can have changed anything. A
    connection lost inside a transaction fails that transaction (the server rolls it back),
    and the next call connects anew."""

    def __init__(self, conn: psycopg.Connection,
                 connect: Callable[[], psycopg.Connection] | None = None) -> None:
        self.conn = conn
        self._connect = connect
        self._depth = 0  # transactions open on this connection (savepoints nested inside)
        self._pks: dict[str, str] = {}
        self.reconnects = 0

    @property
    def backend_pid(self) -> int:
        return self.conn.info.backend_pid

    def _reconnect(self) -> None:
        if self._connect is None or self._depth:
            raise StoreError("the connection to the PostgreSQL store was lost")
        with contextlib.suppress(psycopg.Error):
            self.conn.close()
        try:
            self.conn = self._connect()
        except psycopg.Error as exc:
            raise StoreError(f"the PostgreSQL store cannot be reached: {str(exc).strip()}"
                             ) from exc
        self.reconnects += 1
        log.warning("Reconnected to the PostgreSQL store")

    def _lost(self) -> bool:
        return self.conn.closed or self.conn.broken

    def run(self, sql: str, params: Sequence[Any] = (), *,
            row_factory: Any = None) -> psycopg.Cursor:
        """Execute PostgreSQL-flavoured SQL; outside a transaction a lost connection is
        replaced first, and a read is retried once on a new one."""
        if self._lost() and not self._depth:
            self._reconnect()
        safe = not self._depth and sql.lstrip()[:6].upper() == "SELECT"
        try:
            cur = self.conn.cursor(row_factory=row_factory) if row_factory else self.conn
            return cur.execute(sql, list(params))
        except psycopg.OperationalError:
            if not (safe and self._lost()):
                raise
        self._reconnect()
        cur = self.conn.cursor(row_factory=row_factory) if row_factory else self.conn
        return cur.execute(sql, list(params))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self.run(to_postgres_sql(sql), params)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.run(to_postgres_sql(sql), params, row_factory=dict_row).fetchall()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """A transaction; nested, a savepoint (as sqlite-utils' `atomic`)."""
        if not self._depth:
            if self._lost():
                self._reconnect()
            transaction = self.conn.transaction()
            try:
                transaction.__enter__()  # BEGIN: failing here, nothing was done: retry
            except psycopg.OperationalError:
                if not self._lost():
                    raise
                self._reconnect()
                transaction = self.conn.transaction()
                transaction.__enter__()
        else:
            transaction = self.conn.transaction()
            transaction.__enter__()
        self._depth += 1
        outermost = self._depth == 1
        try:
            yield
        except BaseException as exc:
            self._depth -= 1
            try:
                suppressed = transaction.__exit__(type(exc), exc, exc.__traceback__)
            except psycopg.OperationalError:
                suppressed = False  # the rollback could not be sent: the server rolls back
            if suppressed:
                return
            if outermost and isinstance(exc, psycopg.OperationalError) and self._lost():
                raise StoreError("the connection to the PostgreSQL store was lost during a "
                                 "change, which was not saved; try again") from exc
            raise
        else:
            self._depth -= 1
            try:
                transaction.__exit__(None, None, None)
            except psycopg.OperationalError as exc:
                if outermost and self._lost():
                    raise StoreError("the connection to the PostgreSQL store was lost while "
                                     "saving a change; check whether it was saved") from exc
                raise

    def __getitem__(self, name: str) -> PgTable:
        return PgTable(self, name)

    def pk(self, table: str) -> str:
        if table not in self._pks:
            row = self.run(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
                "i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass "
                "AND i.indisprimary", [_quote(table)]).fetchone()
            if row is None:
                raise StoreError(f"table {table} has no primary key")
            self._pks[table] = row[0]
        return self._pks[table]

    def close(self) -> None:
        self.conn.close()


@dataclass
class PgTable:
    """One table, with the sqlite-utils `Table` methods the store and its migrations call."""

    db: PgDatabase
    name: str

    @property
    def q(self) -> str:
        return _quote(self.name)

    def exists(self) -> bool:
        return self.db.run("SELECT to_regclass(%s) IS NOT NULL",
                                    [self.q]).fetchone()[0]

    def create(self, columns: dict[str, type], pk: str = "id", not_null: Sequence[str] = (),
               defaults: dict[str, Any] | None = None) -> PgTable:
        parts = []
        for col, kind in columns.items():
            if col == pk and kind is int:
                parts.append(f"{_quote(col)} bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
                continue
            part = f"{_quote(col)} {PG_TYPES[kind]}"
            if col == pk:
                part += " PRIMARY KEY"
            if col in (defaults or {}):
                part += f" DEFAULT {_literal(defaults[col])}"
            if col in not_null:
                part += " NOT NULL"
            parts.append(part)
        self.db.run(f"CREATE TABLE {self.q} ({', '.join(parts)})")
        return self

    def create_index(self, columns: Sequence[str]) -> None:
        index = _quote(f"idx_{self.name}_{'_'.join(columns)}")
        self.db.run(
            f"CREATE INDEX {index} ON {self.q} ({', '.join(map(_quote, columns))})")

    def add_column(self, name: str, kind: type, not_null_default: Any = None) -> None:
        extra = "" if not_null_default is None else \
            f" NOT NULL DEFAULT {_literal(not_null_default)}"
        self.db.run(
            f"ALTER TABLE {self.q} ADD COLUMN {_quote(name)} {PG_TYPES[kind]}{extra}")

    @property
    def columns_dict(self) -> dict[str, type]:
        rows = self.db.run(
            "SELECT column_name, data_type FROM information_schema.columns WHERE "
            "table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            [self.name]).fetchall()
        return {name: PY_TYPES.get(kind, str) for name, kind in rows}

    def insert(self, row: dict[str, Any]) -> PgTable:
        """Insert one row; its primary key is then `last_pk`, as in sqlite-utils."""
        cols = ", ".join(map(_quote, row))
        marks = ", ".join(["%s"] * len(row))
        pk = self.db.pk(self.name)
        self.last_pk = self.db.run(
            f"INSERT INTO {self.q} ({cols}) VALUES ({marks}) RETURNING {_quote(pk)}",
            list(row.values())).fetchone()[0]
        return self

    def get(self, pk_value: Any) -> dict[str, Any]:
        rows = self.db.rows(f"SELECT * FROM {self.q} WHERE {_quote(self.db.pk(self.name))} = ?",
                            [pk_value])
        if not rows:
            raise sqlite_utils.db.NotFoundError
        return rows[0]

    def update(self, pk_value: Any, values: dict[str, Any]) -> PgTable:
        sets = ", ".join(f"{_quote(col)} = %s" for col in values)
        cur = self.db.run(
            f"UPDATE {self.q} SET {sets} WHERE {_quote(self.db.pk(self.name))} = %s",
            [*values.values(), pk_value])
        if cur.rowcount == 0:
            raise sqlite_utils.db.NotFoundError
        return self

    def rows_where(self, where: str | None = None, where_args: Sequence[Any] = (),
                   order_by: str | None = None, limit: int | None = None,
                   offset: int | None = None) -> Iterator[dict[str, Any]]:
        sql = f"SELECT * FROM {self.q}"
        if where:
            sql += f" WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None and limit >= 0:  # SQLite's LIMIT -1: all rows
            sql += f" LIMIT {int(limit)}"
        if offset:
            sql += f" OFFSET {int(offset)}"
        yield from self.db.rows(sql, where_args or ())

    @property
    def rows(self) -> Iterator[dict[str, Any]]:
        return self.rows_where()

    @property
    def count(self) -> int:
        return self.db.run(f"SELECT count(*) FROM {self.q}").fetchone()[0]


@dataclass(repr=False)
class PostgresStore(Store):
    """`Store` on a PostgreSQL database named by a `postgresql://` URL in `path`.

    Read only: every transaction is READ ONLY (the server refuses writes) and nothing is
    migrated. One connection in autocommit mode, behind `Store`'s lock; `transaction()` and
    every multi-step write are one PostgreSQL transaction, nested ones savepoints.
    """

    _watchers: list[EditWatcher] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        url = str(self.path)
        extra = {"options": "-c default_transaction_read_only=on"} if self.read_only else {}
        def connect() -> psycopg.Connection:
            return psycopg.connect(url, autocommit=True, application_name="amend",
                                   connect_timeout=10, **extra)

        try:
            conn = connect()
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the PostgreSQL store {describe(url)}: "
                             f"{str(exc).strip()}") from exc
        self.db = PgDatabase(conn, connect)  # type: ignore[assignment]
        try:
            if self.read_only:
                if not self.db["_migrations"].exists():
                    raise StoreError(f"no Amend store in {describe(url)}")
                return
            self.migrate()
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"could not prepare the PostgreSQL store {describe(url)}: "
                             f"{str(exc).strip()}") from exc
        except BaseException:
            conn.close()
            raise

    def __repr__(self) -> str:  # the URL may hold a password
        return f"PostgresStore({describe(str(self.path))!r}, read_only={self.read_only})"

    def migrate(self) -> list[str]:
        """`Store.migrate` (the same named migrations, the same `_migrations` table) under an
        advisory lock, so instances that start together apply each migration once."""
        with self._lock:
            conn = self.db.conn
            conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
            try:
                exists = conn.execute(
                    "SELECT to_regprocedure('casefold(text)') IS NOT NULL").fetchone()[0]
                if not exists:
                    conn.execute("CREATE FUNCTION casefold(text) RETURNS text LANGUAGE sql "
                                 "IMMUTABLE STRICT AS 'SELECT lower($1)'")
                applied = super().migrate()
                self._install_notify()
                return applied
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])

    def _install_notify(self) -> None:
        """The edit-change triggers (NOTIFY_SQL), once per database and version."""
        conn = self.db.conn
        columns = [c for c in NOTIFY_COLUMNS if c in self.db["edits"].columns_dict]
        version = f"{NOTIFY_VERSION}: {', '.join(columns)}"
        installed = conn.execute(
            "SELECT obj_description(to_regclass('edits'), 'pg_class')").fetchone()[0]
        if installed == version:
            return
        with conn.transaction():
            conn.execute(NOTIFY_SQL.format(old=", ".join(f"OLD.{c}" for c in columns),
                                           new=", ".join(f"NEW.{c}" for c in columns)))
            conn.execute(f"COMMENT ON TABLE edits IS '{version}'")

    def watch(self, on_change: Callable[[set[int] | None], None],
              what: str = "edits") -> EditWatcher | None:
        """Call `on_change(ids)` from a listener thread whenever another connection (an
        other app instance, an admin script) commits a change to edits (`what="edits"`: edit
        ids) or to the committed weight edits (`"weights"`: weight edit ids), and
        `on_change(None)` on (re)connecting, when changes may have been missed. Changes made
        through this store are not reported: its owner updates its own state as it writes."""
        if self.read_only:
            return None
        watcher = EditWatcher(str(self.path), on_change, channel=CHANNELS[what],
                              ignore_pid=lambda: self.db.backend_pid).start()
        self._watchers.append(watcher)
        return watcher

    def close(self) -> None:
        for watcher in self._watchers:
            watcher.stop()
        self._watchers.clear()
        super().close()

    def _lock_weight_edits(self) -> None:
        """Instances commit and roll back weight edits one at a time: the committed list a
        promotion checks stays as read until its transaction ends (reads go on meanwhile)."""
        self.db.run("LOCK TABLE weight_edits IN EXCLUSIVE MODE")

    def integrity_ok(self) -> bool:
        """Every table answers and every migration is recorded (the server keeps its own
        pages consistent; there is no PRAGMA integrity_check to run)."""
        with self._lock:
            try:
                for table in TABLES:
                    self.db.execute(f"SELECT count(*) FROM {_quote(table)}").fetchone()
                done = set(self.applied_migrations())
            except psycopg.Error:
                return False
        return all(name in done for name, _ in MIGRATIONS)


class EditWatcher:
    """A thread on its own connection, LISTENing on `channel` (NOTIFY_CHANNEL: edits;
    WEIGHTS_CHANNEL: weight edits): each notification from another backend becomes
    `on_change({ids})`; notifications that arrive together (one transaction that superseded
    several edits) are passed in one call. Lost connections are retried every `retry_s`, and
    each (re)connection calls `on_change(None)`: catch up."""

    def __init__(self, url: str, on_change: Callable[[set[int] | None], None], *,
                 channel: str = NOTIFY_CHANNEL,
                 ignore_pid: Callable[[], int] | None = None,
                 retry_s: float = 2.0) -> None:
        self.url = url
        self.on_change = on_change
        self.channel = channel
        self.ignore_pid = ignore_pid
        self.retry_s = retry_s
        self.listening = threading.Event()
        self.last_seconds: float | None = None  # how long the last on_change took
        self.delivered = 0  # on_change calls with ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="amend-store-watch",
                                        daemon=True)

    def start(self) -> EditWatcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _deliver(self, ids: set[int] | None) -> None:
        started = time.perf_counter()
        try:
            self.on_change(ids)
        except Exception:  # a failed refresh must not end the listening
            log.exception("refreshing after a store change failed")
        self.last_seconds = time.perf_counter() - started
        if ids:
            self.delivered += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=10,
                                     application_name="amend-watch") as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self.listening.set()
                    self._deliver(None)
                    while not self._stop.is_set():
                        ids: set[int] = set()
                        for note in conn.notifies(timeout=0.5, stop_after=1):
                            self._take(note, ids)
                        if ids:  # a transaction's notifications arrive together: drain them
                            for note in conn.notifies(timeout=0.01):
                                self._take(note, ids)
                        if ids:
                            self._deliver(ids)
            except psycopg.Error as exc:
                self.listening.clear()
                if self._stop.is_set():
                    return
                log.warning("lost the store's change notifications from %s (%s); retrying "
                            "in %.0f s", describe(self.url), str(exc).strip()[:200],
                            self.retry_s)
                self._stop.wait(self.retry_s)
        self.listening.clear()

    def _take(self, note: psycopg.Notify, ids: set[int]) -> None:
        if self.ignore_pid is not None and note.pid == self.ignore_pid():
            return
        try:
            ids.add(int(note.payload))
        except ValueError:
            log.warning("unreadable store notification %r", note.payload)
