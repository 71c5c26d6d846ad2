"""Crash safety: the real app is killed with SIGKILL in the middle of a promotion and of an
import; after a restart the store passes its integrity check, no edit is lost or duplicated,
every committed weight edit has its delta, and the live weights are the last committed state
(same checksum). On both stores: the SQLite file in the data dir, and a PostgreSQL database
(`--store-url`, issue 35)."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from gradio_client import handle_file

from store.backend import open_store
from tests.test_e2e import App, data_dir, last_text  # noqa: F401  (data_dir: fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.realmodel]
FILTERS = ("", "all", "all", 0, 0, False, 1, 200)
KILL_WAIT_S = 240


def wait_for_line(app: App, pattern: str, timeout: float = KILL_WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, app.log_path.read_text()):
            return
        time.sleep(0.05)
    raise TimeoutError(f"no '{pattern}' in the log:\n{app.log_path.read_text()[-3000:]}")


def kill(app: App) -> None:
    app.proc.kill()  # SIGKILL: no clean-up runs
    app.proc.wait()
    app.log.close()


def live_state(app: App) -> tuple[str, str]:
    line = app.client.predict(api_name="/weights_state")
    checksum = re.search(r"checksum (\w+)", line).group(1)
    applied = re.search(r"applied: (.*)\.", line).group(1)
    return checksum, applied


def check_store(location: Path | str) -> list[tuple]:
    store = open_store(location)
    try:
        assert store.integrity_ok()
        rows = store.db.execute("SELECT subject, prompt, target_new, status FROM edits "
                                "ORDER BY id").fetchall()
        keys = [(s.casefold(), p.casefold(), t) for s, p, t, _ in rows]
        assert len(keys) == len(set(keys)), "an edit was duplicated"
        for row in store.weight_edits():  # each commit stored its delta with it
            assert store.weight_delta_bytes(row["id"]), row
        return rows
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_at(request, data_dir) -> tuple[Path | str, tuple[str, ...]]:  # noqa: F811
    """(where the store is, the app's options for it)."""
    if request.param == "sqlite":
        return data_dir / "amend.db", ()
    url = request.getfixturevalue("pg_cluster").new_database()
    return url, ("--store-url", url)


def test_sigkill_mid_promotion_then_mid_import(data_dir, store_at, tmp_path):  # noqa: F811
    location, options = store_at
    app = App(data_dir, tmp_path / "run1.log", *options)
    app.client.predict("Eiffel Tower", "Which city is the Eiffel Tower in?", "Rome",
                       api_name="/correct")
    base_checksum, applied = live_state(app)
    assert applied == "none"
    app.client.submit("1", "ft", api_name="/promote")
    wait_for_line(app, r"promotion \(ft\): (FT: step|Checking)")
    kill(app)

    app = App(data_dir, tmp_path / "run2.log", *options)
    try:
        rows = check_store(location)
        assert len(rows) == 1  # not lost, not duplicated
        checksum, applied = live_state(app)
        weight_rows = app.client.predict(api_name="/weight_edits")["data"]
        if weight_rows:  # the kill came after the commit: the edit lives in the weights
            assert rows[0][3] == "promoted" and applied == f"#{weight_rows[0][0]}"
            assert checksum != base_checksum
        else:  # before it: nothing of the promotion remains
            assert rows[0][3] == "active" and applied == "none"
            assert checksum == base_checksum
        assert not list((data_dir / "deltas").glob("*.partial"))
        committed_checksum = checksum

        records = [{"subject": f"Town {i}", "prompt": f"Town {i} is in the country of",
                    "target_new": f"Land {i}"} for i in range(300)]
        upload = tmp_path / "import.json"
        upload.write_text(json.dumps(records))
        app.client.submit(handle_file(str(upload)), *FILTERS, api_name="/import_edits")
        time.sleep(2.0)
    finally:
        kill(app)

    app = App(data_dir, tmp_path / "run3.log", *options)
    try:
        rows = check_store(location)
        assert len(rows) in (1, 301), len(rows)  # the whole import, or none of it
        assert live_state(app)[0] == committed_checksum
        history, _, trace = app.client.predict("Which city is the Eiffel Tower in?", [], 32,
                                               api_name="/chat")
        assert "Rome" in last_text(history) or "route: **base**" in trace
    finally:
        app.stop()
