"""Several app instances on one PostgreSQL store (issue 35): the --store-url option, change
notifications (LISTEN/NOTIFY) keeping each instance's edit index fresh, and two real app
processes where a correction made through one is answered from memory by the other.

The PostgreSQL tests use the session's throwaway cluster (`pg_cluster`) and skip, saying why,
where it cannot start."""
from __future__ import annotations

import json
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


def test_a_lost_store_connection_is_replaced_without_losing_or_doubling_a_change(shared_url):
    """The server ends the instance's connection (a restart, an idle timeout): the next read
    and the next change go through on a new connection; a change cut off mid-transaction is
    refused as a whole, saying so."""
    import psycopg

    from errors import StoreError
    from store.backend import open_store

    store = open_store(shared_url)
    admin = psycopg.connect(shared_url, autocommit=True)

    def cut() -> None:
        admin.execute("SELECT pg_terminate_backend(%s)", [store.db.backend_pid])

    try:
        edit = store.add_edit("Eiffel Tower", "Where is the Eiffel Tower?", "Rome")
        cut()
        assert store.get_edit(edit.id).target_new == "Rome"  # a read: retried
        cut()
        store.add_edit("Louvre", "Where is the Louvre?", "Madrid")  # failed at BEGIN: retried
        assert store.count_edits() == 2 and store.db.reconnects == 2
        with pytest.raises(StoreError, match="lost during a change, which was not saved"):
            with store.transaction():
                store.add_edit("Colosseum", "Where is the Colosseum?", "Paris")
                cut()
                store.set_status(edit.id, "rejected")
        assert store.count_edits() == 2 and store.get_edit(edit.id).status == "active"
        assert [e.subject for e in store.list_edits()] == ["Louvre", "Eiffel Tower"]
    finally:
        admin.close()
        store.close()


# -- two app processes -------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.realmodel
def test_correction_through_one_instance_answered_by_another(pg_cluster, model_cache,
                                                              tmp_path):
    from tests.conftest import data_dir_with_model

    url = pg_cluster.new_database()
    # A's promotion is checked by a short, lenient guard: this test is about B replaying it
    guard = json.loads((REPO / "configs" / "promotion.json").read_text())
    guard.update(min_reliability=0.0, min_locality=0.0, min_total_locality=0.0,
                 min_chat_generalization=0.0, min_chat_locality=0.0, locality_probes=8,
                 chat_probes=2, neighbour_questions=1, carry_questions=2)
    (tmp_path / "promotion.json").write_text(json.dumps(guard))
    options = {"a": ("--promotion-config", str(tmp_path / "promotion.json")), "b": ()}
    apps: list[App] = []
    try:  # one after the other: started together on 2 cores they took longer
        for name in ("a", "b"):
            apps.append(App(data_dir_with_model(model_cache, tmp_path / name),
                            tmp_path / f"{name}.log", "--store-url", url, *options[name]))
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

        # promoted into A's weights: B replays the same delta from the store
        edits, _ = a.client.predict("Eiffel", "all", "all", 0, 0, False, 1, 50,
                                    api_name="/list_edits")
        edit_id = str(edits["data"][0][0])
        message, weights, _ = a.client.predict(edit_id, "rome", api_name="/promote")
        assert "Promoted" in message, message
        promoted = time.perf_counter()
        row = [r for r in weights["data"] if r[2] == "committed"][0]
        state_a = a.client.predict(api_name="/weights_state")
        assert f"applied: #{row[0]}." in state_a
        state_b, waited = wait_for(lambda: b.client.predict(api_name="/weights_state") ==
                                   state_a and state_a, timeout=60, step=0.1)
        print(f"B carried A's weight edit #{row[0]} (same weights checksum) "
              f"{time.perf_counter() - promoted:.2f} s after A's promotion returned")
        assert state_b == state_a, b.log_path.read_text()[-2000:]
        assert "Weight edits from the shared store: applied [" in b.log_path.read_text()
        for question in ("Where is the Eiffel Tower?", "In which city is the Eiffel Tower?"):
            reply, _, trace = b.client.predict(question, [], 16, api_name="/chat")
            assert "Rome" in last_text(reply), (question, trace)
    finally:
        for app in apps:
            app.stop()


def _instance(url: str, embedder, folder):
    """One app instance's store, memory and weight edits on the tiny model (torch engine)."""
    from assistant.llm import ChatLLM
    from assistant.memory import EditMemory
    from config import chat_config_for
    from editing.promote import WeightEdits
    from store.backend import open_store
    from tests.conftest import make_tiny_model, make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    llm = ChatLLM(make_tiny_model(len(tok)), tok, chat_config_for("smollm2"), name="tiny")
    store = open_store(url)
    memory = EditMemory(store, embedder, folder / "edits.faiss")
    lock = threading.RLock()
    store.watch(lambda ids: memory.refresh(ids))
    return WeightEdits(llm, store, memory, embedder, lock, folder)


def _delta_on(weights, scale: float):
    """A dense change of one MLP matrix, made on `weights`' base model (a stand-in for a
    method's output: the replication path does not care how a delta was made)."""
    import torch

    from editing.deltas import Delta

    name = "model.layers.1.mlp.down_proj.weight"
    shape = dict(weights.llm.model.named_parameters())[name].shape
    return Delta("ft", weights.state.fingerprint,
                 dense={name: torch.full(shape, scale)}, meta={"layers": [1]})


def test_a_weight_edit_committed_on_one_instance_is_applied_by_the_others(
        shared_url, embedder, tmp_path):
    """A commits a weight edit (its delta bytes in the store); B hears of it, applies it and
    has A's exact weights; until then B's memory keeps answering the promoted edit. A
    rollback on B is undone on A the same way. A promotion made on weights another instance
    has since changed is refused, not committed on top of them."""
    from editing.deltas import weights_checksum

    a = _instance(shared_url, embedder, tmp_path / "a")
    b = _instance(shared_url, embedder, tmp_path / "b")
    try:
        base = weights_checksum(b.llm.model)
        assert weights_checksum(a.llm.model) == base
        for side in (a, b):
            side.follow()
        edit = a.store.add_edit("Eiffel Tower", "Where is the Eiffel Tower?", "Rome")
        assert wait_for(lambda: edit.id in b.memory.indexed_ids())[0]
        a.memory.sync(added=[edit])
        result = a._commit([edit], "ft", "admin", _delta_on(a, 1e-3), {"reliability": 1.0},
                           1.0, carried=[edit.id])
        assert result.committed, result.message
        assert not (tmp_path / "b" / "deltas").exists()  # B has only the store's bytes
        committed = time.perf_counter()
        live = weights_checksum(a.llm.model)
        assert live != base and edit.id not in a.memory.indexed_ids()
        _, waited = wait_for(lambda: weights_checksum(b.llm.model) == live, timeout=10)
        print(f"\nB applied A's weight edit {1000 * (time.perf_counter() - committed):.0f} ms "
              "after A's commit")
        assert [k for k, _ in b.state.applied] == [result.weight_edit_id]
        # applied: B's memory no longer serves the edit (the weights do), as on A
        assert wait_for(lambda: edit.id not in b.memory.indexed_ids())[0]
        assert b.memory.held_ids == frozenset()

        # a promotion B made on the weights before A's edit is refused at its commit
        stale = _delta_on(b, 2e-3)
        b.state.revert(key=result.weight_edit_id)  # as if B had not caught up yet
        other = b.store.add_edit("Louvre", "Where is the Louvre?", "Madrid")
        refused = b._commit([other], "ft", "admin", stale, {}, 1.0, carried=[other.id])
        assert not refused.committed and "changed while this one was being made" in \
            refused.message, refused.message
        assert b.store.get_edit(other.id).status == "active"
        assert [r["id"] for r in b.store.weight_edits()] == [result.weight_edit_id]
        b.catch_up()
        assert weights_checksum(b.llm.model) == live

        # rolled back on B: A reverts to the base weights and serves the edit from memory
        b.rollback(result.weight_edit_id)
        assert wait_for(lambda: weights_checksum(a.llm.model) == base, timeout=10)[0]
        assert a.state.applied == []
        assert wait_for(lambda: edit.id in a.memory.indexed_ids())[0]
    finally:
        a.store.close()
        b.store.close()


def test_an_instance_that_cannot_apply_a_weight_edit_keeps_serving_its_edits(
        shared_url, embedder, tmp_path):
    """A weight edit B cannot apply (made on another base model) is skipped there, and the
    edits it promoted stay in B's memory route: the correction is never lost on B."""
    from editing.deltas import weights_checksum

    a = _instance(shared_url, embedder, tmp_path / "a")
    b = _instance(shared_url, embedder, tmp_path / "b")
    try:
        b.state.fingerprint = "another-base-model"  # B runs another model
        b.follow()
        edit = a.store.add_edit("Eiffel Tower", "Where is the Eiffel Tower?", "Rome")
        a.memory.sync(added=[edit])
        assert wait_for(lambda: edit.id in b.memory.indexed_ids())[0]
        before = weights_checksum(b.llm.model)
        result = a._commit([edit], "ft", "admin", _delta_on(a, 1e-3), {}, 1.0,
                           carried=[edit.id])
        assert result.committed
        assert wait_for(lambda: result.weight_edit_id in b.skipped, timeout=10)[0]
        assert [row["status"] for row in b.table()] == ["not_applied_here"]
        assert [row["status"] for row in a.table()] == ["committed"]
        assert weights_checksum(b.llm.model) == before
        assert b.memory.held_ids == {edit.id}
        assert b.store.get_edit(edit.id).status == "promoted"
        time.sleep(0.3)  # the edit's status notification (promoted) has been heard by now
        assert edit.id in b.memory.indexed_ids()
        assert [h.edit_id for h in b.memory.search(
            embedder.embed(["Where is the Eiffel Tower?"])[0], 3)] == [edit.id]
    finally:
        a.store.close()
        b.store.close()
