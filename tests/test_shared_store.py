"""Several app instances on one PostgreSQL store (issue 35): the --store-url option, change
notifications (LISTEN/NOTIFY) keeping each instance's edit index fresh, and two real app
processes where a correction made through one is answered from memory by the other.

The PostgreSQL tests use the session's throwaway cluster (`pg_cluster`) and skip, saying why,
where it cannot start."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from tests.test_e2e import REPO, App, last_text

DEADLINE_S = 1.0  # issue 35: answered from memory by another instance within 1 s


def wait_for(check, timeout: float = 5.0, step: float = 0.005):
    """(check's first truthy value, seconds waited), or (None, timeout)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        value = check()
        if value:
            return value, time.perf_counter() - started
        time.sleep(step)
    return None, timeout


# -- the option --------------------------------------------------------------------------
def test_store_url_from_flag_or_environment(tmp_path, monkeypatch):
    from ui import parse_args

    monkeypatch.delenv("AMEND_STORE_URL", raising=False)
    assert parse_args(["--data-dir", str(tmp_path)]).store_url is None
    monkeypatch.setenv("AMEND_STORE_URL", "postgresql://env@h/db")
    assert parse_args([]).store_url == "postgresql://env@h/db"
    assert parse_args(["--store-url", "postgresql://flag@h/db"]).store_url == \
        "postgresql://flag@h/db"


def test_store_location_defaults_to_the_data_dirs_sqlite_file(tmp_path):
    from assistant.runtime import DB_NAME, store_location
    from config import AppSettings

    assert store_location(AppSettings(data_dir=tmp_path)) == tmp_path / DB_NAME
    url = "postgresql://amend@127.0.0.1:5432/amend"
    assert store_location(AppSettings(data_dir=tmp_path, store_url=url)) == url


@pytest.mark.parametrize("url, says", [
    ("postgresql://amend:s3cret@127.0.0.1:1/amend",
     "cannot open the PostgreSQL store postgresql://amend@127.0.0.1:1/amend"),
    ("/tmp/amend.db", "--store-url takes a URL starting with postgresql://"),
])
def test_bad_store_url_exits_2_before_serving(tmp_path, url, says):
    result = subprocess.run(
        [sys.executable, "ui.py", "--store-url", url, "--data-dir", str(tmp_path / "d")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


# -- notifications -----------------------------------------------------------------------
@pytest.fixture
def shared_url(pg_cluster) -> str:
    return pg_cluster.new_database()


def test_watcher_hears_other_writers_commits_only(shared_url):
    from store.backend import open_store

    a, b = open_store(shared_url), open_store(shared_url)
    heard: list[set[int] | None] = []
    lock = threading.Lock()

    def on_change(ids):
        with lock:
            heard.append(ids)

    watcher = b.watch(on_change)
    try:
        assert wait_for(lambda: heard == [None])[0], "no catch-up call on connecting"
        edit = a.add_edit("Eiffel Tower", "Where is the Eiffel Tower?", "Rome")
        assert wait_for(lambda: {edit.id} in heard)[0]
        # one transaction: one call, after the commit; a rolled-back one: nothing
        with a.transaction():
            a.set_aliases(edit.id, ["the Iron Lady"])
            a.set_status(edit.id, "rejected")
            assert wait_for(lambda: len(heard) > 2, timeout=0.3)[0] is None
        assert wait_for(lambda: len(heard) == 3)[0] and heard[2] == {edit.id}
        with pytest.raises(RuntimeError), a.transaction():
            a.add_edit("Louvre", "Where is the Louvre?", "Madrid")
            raise RuntimeError("rolled back")
        a.record_hits([edit.id])  # a hit count is not a change the index cares about
        b.add_edit("Colosseum", "Where is the Colosseum?", "Paris")  # b's own write
        assert wait_for(lambda: len(heard) > 3, timeout=0.5)[0] is None, heard
        assert watcher.delivered == 2
    finally:
        a.close()
        b.close()
    assert not watcher.listening.is_set()


def test_another_instances_correction_reaches_this_index_within_a_second(
        shared_url, embedder, tmp_path):
    """Store write on A -> commit -> NOTIFY -> B's watcher -> B's EditMemory.refresh: the
    delay measured from A's write returning to B's index holding the edit."""
    from assistant.memory import EditMemory
    from store.backend import open_store

    a, b = open_store(shared_url), open_store(shared_url)
    memory_a = EditMemory(a, embedder, tmp_path / "a" / "edits.faiss")
    memory_b = EditMemory(b, embedder, tmp_path / "b" / "edits.faiss")
    lock = threading.RLock()

    def refresh(ids):
        with lock:
            memory_b.refresh(ids)

    watcher = b.watch(refresh)
    try:
        assert watcher.listening.wait(10)
        delays = []
        for subject, city in (("Eiffel Tower", "Rome"), ("Louvre", "Madrid"),
                              ("Colosseum", "Paris")):
            edit = a.add_edit(subject, f"Where is the {subject}?", city)
            started = time.perf_counter()  # A's transaction has committed
            _, waited = wait_for(lambda e=edit: e.id in memory_b.indexed_ids())
            delays.append(time.perf_counter() - started)
            assert waited < DEADLINE_S, delays
            memory_a.sync(added=[edit])
        # a status change on A takes the edit out of B's index; new aliases re-embed it
        a.set_status(edit.id, "rejected")
        _, waited = wait_for(lambda: edit.id not in memory_b.indexed_ids())
        assert waited < DEADLINE_S
        first = a.list_edits()[-1]
        a.set_aliases(first.id, ["the Iron Lady"])
        query = embedder.embed(["Where is the Iron Lady?"])[0]
        hit, waited = wait_for(lambda: [h for h in memory_b.search(query, 3)
                                        if h.edit_id == first.id and h.score > 0.9])
        assert hit and waited < DEADLINE_S
        print(f"\nnotify -> index delays (s): {[round(d, 3) for d in delays]}; "
              f"last refresh {1000 * watcher.last_seconds:.0f} ms")
        assert max(delays) < DEADLINE_S
        assert memory_b.indexed_ids() == {e.id for e in a.routable_edits()}
    finally:
        a.close()
        b.close()


# -- two app processes -------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.realmodel
def test_correction_through_one_instance_answered_by_another(pg_cluster, model_cache,
                                                              tmp_path):
    from tests.conftest import data_dir_with_model

    url = pg_cluster.new_database()
    apps: list[App] = []
    try:  # one after the other: started together on 2 cores they took longer
        for name in ("a", "b"):
            apps.append(App(data_dir_with_model(model_cache, tmp_path / name),
                            tmp_path / f"{name}.log", "--store-url", url))
        a, b = apps
        question = "Which city is the Eiffel Tower in?"
        reply, trace = b.ask(question, [])  # before: B answers from the base model
        assert "route: **base**" in trace and "Rome" not in last_text(reply)
        history, trace = a.ask("Where is the Eiffel Tower?", [])
        assert "route: **base**" in trace
        history, trace = a.ask("No, it's Rome", history)
        assert "route: **correction**" in trace
        corrected = time.perf_counter()
        # B's index is refreshed by its watcher thread (it logs a line), then B answers
        _, refreshed = wait_for(lambda: "Edit index refreshed from the shared store: "
                                "1 added" in b.log_path.read_text(), timeout=DEADLINE_S)
        assert refreshed < DEADLINE_S, b.log_path.read_text()[-2000:]
        reply, _, trace = b.client.predict(question, [], 16, api_name="/chat")
        answered = time.perf_counter() - corrected
        assert "route: **memory**" in trace, trace
        assert "Rome" in last_text(reply)
        print(f"\nB's index refreshed {1000 * refreshed:.0f} ms and B answered from memory "
              f"{answered:.2f} s after A's correction returned")
        assert answered < DEADLINE_S
    finally:
        for app in apps:
            app.stop()


def test_promotion_is_refused_while_instances_share_the_store(shared_url, tiny_llm, tmp_path):
    """Other instances could neither apply the delta nor keep the promoted edit in their
    memory route: the promotion is refused, said why, and nothing changes."""
    import threading

    from editing.deltas import weights_checksum
    from editing.promote import WeightEdits
    from errors import AmendError
    from store.backend import open_store

    store = open_store(shared_url)
    try:
        edit = store.add_edit("Eiffel Tower", "Where is the Eiffel Tower?", "Rome")
        weights = WeightEdits(tiny_llm, store, None, None, threading.Lock(), tmp_path)
        before = weights_checksum(tiny_llm.model)
        with pytest.raises(AmendError, match="share the store"):
            weights.promote([edit.id], "ft")
        assert store.get_edit(edit.id).status == "active"
        assert store.weight_edits() == []
        assert weights_checksum(tiny_llm.model) == before
    finally:
        store.close()
