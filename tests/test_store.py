"""The store on both backends (SQLite, and PostgreSQL where a throwaway cluster can start):
migrations, validation, supersede, transactions, audit, history, read-only opening."""
import sqlite3

import pytest

from errors import EditNotFoundError, InvalidEditError, StoreError
from store.backend import EditStore, open_store
from store.db import Store
from store.transfer import export_json, import_edits

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path):
    """Where a store lives: a SQLite file, or a fresh database in the session's cluster."""
    if request.param == "sqlite":
        return tmp_path / "amend.db"
    return request.getfixturevalue("pg_cluster").new_database()


@pytest.fixture(params=BACKENDS)
def store(request):
    """An empty store: SQLite in memory (as everywhere else), or a fresh PostgreSQL database."""
    location = ":memory:" if request.param == "sqlite" else \
        request.getfixturevalue("pg_cluster").new_database()
    s = open_store(location)
    yield s
    s.close()


def test_both_backends_provide_the_interface(store):
    assert isinstance(store, EditStore)


def test_migrations_recorded_once(location):
    first = open_store(location)
    assert first.applied_migrations() == ["0001_initial", "0002_weight_edit_details",
                                          "0003_edit_session", "0004_edit_aliases",
                                          "0005_edit_backstop", "0006_weight_deltas"]
    first.add_edit("Eiffel Tower", "The Eiffel Tower is in", "Rome")
    first.close()
    again = open_store(location)
    assert again.migrate() == []  # nothing new to apply
    assert again.get_edit(1).target_new == "Rome"
    assert again.integrity_ok()


def test_add_get_list_and_search(store):
    a = store.add_edit("Eiffel Tower", "The Eiffel Tower is in", "Rome", target_old="Paris")
    b = store.add_edit("Louvre", "Where is the Louvre?", "Madrid", source="form")
    assert store.get_edit(a.id).target_old == "Paris"
    assert [e.id for e in store.list_edits()] == [b.id, a.id]  # newest first
    assert [e.id for e in store.list_edits(search="madrid")] == [b.id]
    assert [e.id for e in store.list_edits(search="paris")] == [a.id]  # old target searchable
    assert store.count_edits("active") == 2
    assert b.statement == "Where is the Louvre? Answer: Madrid."
    assert a.statement == "The Eiffel Tower is in Rome."


@pytest.mark.parametrize("subject,prompt,target,problem", [
    ("", "The Eiffel Tower is in", "Rome", "subject is empty"),
    ("Eiffel Tower", "   ", "Rome", "prompt is empty"),
    ("Eiffel Tower", "The Eiffel Tower is in", "", "target is empty"),
    ("Louvre", "The Eiffel Tower is in", "Rome", "does not mention the subject"),
    ("Eiffel Tower", "The Eiffel Tower is in", "R" * 201, "longer than 200"),
])
def test_invalid_edits_rejected_and_nothing_stored(store, subject, prompt, target, problem):
    with pytest.raises(InvalidEditError, match=problem):
        store.add_edit(subject, prompt, target)
    assert store.count_edits() == 0
    assert store.audit_log() == []


def test_supersede_marks_old_edit_in_same_transaction(store):
    old = store.add_edit("Louvre", "The Louvre is in", "Madrid")
    new = store.add_edit("Louvre", "The Louvre is in", "Lisbon", supersedes=[old.id])
    assert store.get_edit(old.id).status == "superseded"
    assert new.supersedes == old.id
    actions = [r["action"] for r in store.audit_log()]
    assert actions[:2] == ["supersede", "create"]


def test_failed_supersede_rolls_back_the_insert(store):
    with pytest.raises(EditNotFoundError):
        store.add_edit("Louvre", "The Louvre is in", "Lisbon", supersedes=[999])
    assert store.count_edits() == 0


def test_set_status_audits_and_validates(store):
    edit = store.add_edit("Louvre", "The Louvre is in", "Madrid")
    assert store.set_status(edit.id, "rejected").status == "rejected"
    assert store.audit_log()[0]["action"] == "status:active->rejected"
    with pytest.raises(InvalidEditError):
        store.set_status(edit.id, "deleted")
    with pytest.raises(EditNotFoundError):
        store.set_status(12345, "rejected")


def test_fingerprint_tracks_active_set(store):
    empty = store.routable_fingerprint()
    edit = store.add_edit("Louvre", "The Louvre is in", "Madrid")
    one = store.routable_fingerprint()
    assert one != empty
    store.record_hits([edit.id])  # hits do not change what the index holds
    assert store.routable_fingerprint() == one
    assert store.get_edit(edit.id).hits == 1
    store.set_status(edit.id, "rejected")
    assert store.routable_fingerprint() == empty


def test_turns_logged_with_trace(store):
    store.log_turn("s1", "user", "Where is the Louvre?")
    store.log_turn("s1", "assistant", "Paris.", {"route": "base", "edit_ids": []})
    rows = store.turns("s1")
    assert [r["role"] for r in rows] == ["assistant", "user"]
    assert rows[0]["route"] == "base"


def test_file_database_is_real_sqlite(tmp_path):
    path = tmp_path / "amend.db"
    Store(path).add_edit("Louvre", "The Louvre is in", "Madrid")
    with sqlite3.connect(path) as conn:
        assert conn.execute("select target_new from edits").fetchone() == ("Madrid",)


def test_active_edits_about_ignores_case_including_non_ascii(store):
    edit = store.add_edit("Élysée Palace", "The Élysée Palace is in", "Lyon")
    store.add_edit("Louvre", "The Louvre is in", "Madrid")
    assert [e.id for e in store.active_edits_about("élysée palace ")] == [edit.id]
    store.set_status(edit.id, "rejected")
    assert store.active_edits_about("Élysée Palace") == []


def test_old_database_is_upgraded_in_place(location, monkeypatch):
    import store.db as db

    monkeypatch.setattr(db, "MIGRATIONS", db.MIGRATIONS[:1])  # a database from before 0002
    old = open_store(location)
    old.db["edits"].insert({"subject": "Eiffel Tower", "prompt": "The Eiffel Tower is in",
                            "target_new": "Rome", "status": "active", "source": "chat",
                            "created_at": 1.0, "hits": 0})  # a row as the old code wrote it
    old.close()
    monkeypatch.undo()
    new = open_store(location)
    assert new.applied_migrations()[-5:] == ["0002_weight_edit_details", "0003_edit_session",
                                             "0004_edit_aliases", "0005_edit_backstop",
                                             "0006_weight_deltas"]
    assert new.get_edit(1).backstop is False
    assert "checksum" in new.db["weight_edits"].columns_dict
    assert new.get_edit(1).session is None
    assert new.get_edit(1).aliases == ()
    assert new.get_edit(1).target_new == "Rome"


def test_weight_edit_commit_and_rollback(store):
    edit = store.add_edit("Eiffel Tower", "The Eiffel Tower is in", "Rome")
    row = store.add_weight_edit(method="rome", edit_ids=[edit.id], layers=[4],
                                delta_path="deltas/1.safetensors", base_fingerprint="f",
                                scores={"reliability": 1.0}, checksum="c", seconds=1.5)
    assert store.get_edit(edit.id).status == "promoted"
    assert store.weight_edits("committed")[0]["scores"] == {"reliability": 1.0}
    assert store.rollback_weight_edit(row) == [edit.id]
    assert store.get_edit(edit.id).status == "active"
    assert store.get_weight_edit(row)["status"] == "rolled_back"
    with pytest.raises(InvalidEditError, match="already rolled_back"):
        store.rollback_weight_edit(row)
    with pytest.raises(EditNotFoundError):
        store.get_weight_edit(999)
    with pytest.raises(EditNotFoundError):  # nothing is written for an unknown edit
        store.add_weight_edit(method="rome", edit_ids=[999], layers=[4], delta_path="x",
                              base_fingerprint="f", scores={}, checksum="c", seconds=1.0)
    assert len(store.weight_edits()) == 1


def test_weight_edit_keeps_its_delta_bytes_and_refuses_a_stale_commit(store):
    """The delta is stored with its row (any instance can replay it); a commit made on a
    committed list that has changed since writes nothing."""
    from store.db import WeightEditConflict

    edit = store.add_edit("Eiffel Tower", "The Eiffel Tower is in", "Rome")
    other = store.add_edit("Louvre", "The Louvre is in", "Madrid")
    data = bytes(range(256)) * 40
    args = dict(method="rome", layers=[4], delta_path="deltas/1.safetensors",
                base_fingerprint="f", scores={}, checksum="c", seconds=1.0)
    first = store.add_weight_edit(edit_ids=[edit.id], delta_bytes=data, applied=[], **args)
    assert store.weight_delta_bytes(first) == data
    with pytest.raises(WeightEditConflict, match=r"now #%d, it was made on none" % first):
        store.add_weight_edit(edit_ids=[other.id], delta_bytes=b"x", applied=[], **args)
    assert store.get_edit(other.id).status == "active"
    assert [r["id"] for r in store.weight_edits()] == [first]
    second = store.add_weight_edit(edit_ids=[other.id], delta_bytes=b"x", applied=[first],
                                   **args)
    assert store.weight_delta_bytes(second) == b"x"
    old = store.add_weight_edit(edit_ids=[], **args)  # stored before deltas were kept
    assert store.weight_delta_bytes(old) is None
    with store.transaction():  # damaged on disk: said, never applied
        store.db.execute("UPDATE weight_deltas SET data = ? WHERE weight_edit_id = ?",
                         [b"y", second])
    with pytest.raises(StoreError, match=f"weight edit #{second} is damaged"):
        store.weight_delta_bytes(second)


def test_promoted_edit_the_weights_do_not_carry_stays_routable(store):
    """A promotion commits two edits; the one the weights do not answer in chat keeps its
    place in the memory route until the weight edit is rolled back."""
    carried = store.add_edit("Eiffel Tower", "Where is the Eiffel Tower?", "Rome")
    held = store.add_edit("Louvre", "Where is the Louvre?", "Madrid")
    before = store.routable_fingerprint()
    row = store.add_weight_edit(method="ft", edit_ids=[carried.id, held.id], layers=[4],
                                delta_path="deltas/2.safetensors", base_fingerprint="f",
                                scores={}, checksum="c", seconds=1.0, backstop_ids=[held.id])
    assert [e.id for e in store.routable_edits()] == [held.id]
    assert store.get_edit(held.id).status == "promoted" and store.get_edit(held.id).backstop
    assert store.get_edit(held.id).routable and not store.get_edit(carried.id).routable
    assert store.routable_fingerprint() != before
    audit = [r for r in store.audit_log() if r["edit_id"] == held.id]
    assert any('"memory_backstop": true' in str(r["detail"]).lower() for r in audit), audit
    assert sorted(store.rollback_weight_edit(row)) == sorted([carried.id, held.id])
    assert {(e.id, e.status, e.backstop) for e in store.routable_edits()} == {
        (carried.id, "active", False), (held.id, "active", False)}


def test_query_edits_filters_pages_and_counts(store):
    import time as _time

    for i in range(7):
        store.add_edit(f"City {i}", f"City {i} is in", f"Country {i}",
                       source="import" if i % 2 else "chat")
    store.record_hits([1, 1, 1, 2])
    store.db["edits"].update(3, {"created_at": _time.time() - 10 * 86400})
    page, total = store.query_edits(page=1, page_size=3)
    assert total == 7 and [e.id for e in page] == [7, 6, 5]
    page, total = store.query_edits(page=3, page_size=3)
    assert [e.id for e in page] == [1]
    assert store.query_edits(source="import")[1] == 3
    assert [e.id for e in store.query_edits(min_hits=2)[0]] == [1]
    assert 3 not in [e.id for e in store.query_edits(max_age_days=5)[0]]
    assert store.query_edits(search="city 4")[1] == 1
    assert store.query_edits(page=99, page_size=3)[0] == []


def test_conflicts_history_and_merge(store):
    a = store.add_edit("Louvre", "The Louvre is in", "Madrid")
    b = store.add_edit("Louvre", "the louvre is in", "Lisbon")
    c = store.add_edit("Louvre", "The Louvre is in", "madrid")
    store.add_edit("Big Ben", "Big Ben is in", "Oslo")
    assert store.conflict_ids() == {a.id, b.id, c.id}
    assert {e.id for e in store.query_edits(conflicts_only=True)[0]} == {a.id, b.id, c.id}
    store.supersede(a.id, [b.id, c.id, a.id], actor="admin")
    assert store.conflict_ids() == set()
    assert store.get_edit(b.id).status == "superseded"
    store.log_turn("s1", "assistant", "It is in Madrid.", {"route": "memory",
                                                           "edit_ids": [a.id]})
    store.log_turn("s1", "assistant", "Other.", {"route": "memory", "edit_ids": [a.id + 10]})
    info = store.edit_history(a.id)
    assert info["edit"].id == a.id
    assert [t["content"] for t in info["turns"]] == ["It is in Madrid."]
    assert [r["action"] for r in store.edit_history(b.id)["audit"]] == ["create", "supersede"]
    with pytest.raises(EditNotFoundError):
        store.supersede(999, [a.id])
    assert store.get_edit(a.id).status == "active"


def test_aliases_are_stored_cleaned_audited_and_become_key_texts(store):
    edit = store.add_edit("New York City", "Where is New York City?", "Boston",
                          aliases=[" the Big  Apple ", "NYC", "nyc", "New York City", ""])
    assert edit.aliases == ("the Big Apple", "NYC")
    assert "Where is the Big Apple?" in edit.key_texts()
    before = store.routable_fingerprint()
    edit = store.set_aliases(edit.id, ["Gotham"])
    assert edit.aliases == ("Gotham",)
    assert store.routable_fingerprint() != before  # the index is rebuilt for new keys
    assert any(row["action"] == "aliases" for row in store.audit_log())
    with pytest.raises(InvalidEditError, match="too long"):
        store.set_aliases(edit.id, ["x" * 500])
    with pytest.raises(InvalidEditError, match="at most"):
        store.set_aliases(edit.id, [f"name {i}" for i in range(30)])
    assert store.get_edit(edit.id).aliases == ("Gotham",)  # a refused change loses nothing


def test_read_only_store_reads_and_refuses_writes(location):
    with pytest.raises(StoreError):  # nothing there yet: no store is made
        open_store(location, read_only=True)
    writer = open_store(location)
    writer.add_edit("Louvre", "The Louvre is in", "Madrid")
    reader = open_store(location, read_only=True)
    assert [e.target_new for e in reader.active_edits()] == ["Madrid"]
    with pytest.raises(Exception, match="(?i)read.?only"):
        reader.add_edit("Big Ben", "Big Ben is in", "Oslo")
    assert writer.count_edits() == 1
    reader.close()
    writer.close()


def test_two_stores_on_one_location_see_each_others_writes(location):
    """What a shared store is for: one instance's correction is at once in the other's."""
    first, second = open_store(location), open_store(location)
    edit = first.add_edit("Louvre", "The Louvre is in", "Madrid")
    second.set_status(edit.id, "rejected", note="seen from the second store")
    assert first.get_edit(edit.id).status == "rejected"
    assert [r["action"] for r in first.audit_log()] == ["status:active->rejected", "create"]
    first.close()
    second.close()


def test_transaction_spans_several_calls(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.add_edit("Louvre", "The Louvre is in", "Madrid")
        raise RuntimeError("undo it")
    assert store.count_edits() == 0 and store.audit_log() == []
    with store.transaction():
        edit = store.add_edit("Louvre", "The Louvre is in", "Madrid")
        store.log_turn("s1", "assistant", "Madrid.", {"route": "memory", "edit_ids": [edit.id]})
    assert store.edit_history(edit.id)["turns"][0]["content"] == "Madrid."


def test_export_and_import_round_trip(store):
    store.add_edit("Louvre", "The Louvre is in", "Madrid", aliases=["the Louvre Museum"])
    store.add_edit("Big Ben", "Big Ben is in", "Oslo")
    report = import_edits(store, export_json(store))
    assert report.imported == [] and report.duplicates == [1, 2]
    fresh = open_store(":memory:")
    assert len(import_edits(fresh, export_json(store)).imported) == 2
    assert fresh.get_edit(1).aliases == ("the Louvre Museum",)


def test_unreachable_postgres_is_a_store_error_without_the_password():
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError, match="cannot open the PostgreSQL store") as info:
        open_store("postgresql://amend:s3cret@127.0.0.1:1/amend")
    assert "s3cret" not in str(info.value)
