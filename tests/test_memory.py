"""The FAISS edit memory: search by edit id, persistence, rebuild when missing/corrupt/stale."""
import json
import logging

import numpy as np

from assistant.memory import EditMemory


def _memory(store, embedder, tmp_path):
    return EditMemory(store, embedder, tmp_path / "edits.faiss")


def test_search_finds_edit_by_id(store, embedder, tmp_path):
    memory = _memory(store, embedder, tmp_path)
    louvre = store.add_edit("Louvre", "The Louvre is in", "Madrid")
    tower = store.add_edit("Eiffel Tower", "The Eiffel Tower is in", "Rome")
    memory.sync(added=[louvre, tower])
    hits = memory.search(embedder.embed_one("Which city is the Eiffel Tower in?"), k=5)
    assert hits[0].edit_id == tower.id
    assert hits[0].score > 0.8 > hits[1].score


def test_paraphrase_keys_collapse_to_one_hit(store, embedder, tmp_path):
    memory = _memory(store, embedder, tmp_path)
    edit = store.add_edit("Louvre", "The Louvre is in", "Madrid",
                          paraphrases=["Where is the Louvre?", "The Louvre museum is located in"])
    memory.sync(added=[edit])
    assert memory.size == 3  # "The Louvre is in" already says what it asks: no filled key
    hits = memory.search(embedder.embed_one("Where is the Louvre?"), k=8)
    assert [h.edit_id for h in hits] == [edit.id]
    assert hits[0].score > 0.99


def test_saved_index_is_reused(store, embedder, tmp_path):
    memory = _memory(store, embedder, tmp_path)
    memory.sync(added=[store.add_edit("Louvre", "The Louvre is in", "Madrid")])
    again = _memory(store, embedder, tmp_path)
    assert again.rebuilt_reason is None
    assert again.size == 1


def test_missing_index_rebuilt_from_store(store, embedder, tmp_path):
    store.add_edit("Louvre", "The Louvre is in", "Madrid")  # stored, never indexed
    memory = _memory(store, embedder, tmp_path)
    assert "missing" in memory.rebuilt_reason
    assert memory.size == 1
    assert (tmp_path / "edits.faiss").exists()


def test_corrupt_index_rebuilt_with_log_line(store, embedder, tmp_path, caplog):
    memory = _memory(store, embedder, tmp_path)
    memory.sync(added=[store.add_edit("Louvre", "The Louvre is in", "Madrid")])
    (tmp_path / "edits.faiss").write_bytes(b"\x00garbage" * 10)
    with caplog.at_level(logging.WARNING, logger="assistant.memory"):
        again = _memory(store, embedder, tmp_path)
    assert "unreadable" in again.rebuilt_reason
    assert any("Rebuilding the edit index" in r.message for r in caplog.records)
    assert again.size == 1


def test_stale_index_rebuilt(store, embedder, tmp_path):
    memory = _memory(store, embedder, tmp_path)
    edit = store.add_edit("Louvre", "The Louvre is in", "Madrid")
    memory.sync(added=[edit])
    store.set_status(edit.id, "rejected")  # the store changed behind the index's back
    again = _memory(store, embedder, tmp_path)
    assert "stale" in again.rebuilt_reason
    assert again.size == 0


def test_remove(store, embedder, tmp_path):
    memory = _memory(store, embedder, tmp_path)
    edit = store.add_edit("Louvre", "The Louvre is in", "Madrid")
    memory.sync(added=[edit])
    memory.sync(removed=[edit.id])
    assert memory.size == 0
    assert memory.search(np.ones((1, embedder.dim), dtype=np.float32), 3) == []


def test_embed_one_matches_batch(embedder):
    one = embedder.embed_one("Which city is the Eiffel Tower in?")
    batch = embedder.embed(["Which city is the Eiffel Tower in?"])
    assert one.shape == (1, embedder.dim)
    assert np.allclose(one, batch, atol=1e-5)
    assert abs(float(np.linalg.norm(one)) - 1.0) < 1e-5


def test_batched_embedding_equals_one_at_a_time(embedder):
    """Bulk embedding (index rebuilds) batches texts of equal token count; each vector must be
    bit for bit the one a query gets alone, repeated texts included (int8: activations are
    quantised per text, not per batch)."""
    texts = ["Where is the Louvre?", "Where is the Prado?", "The Louvre is in",
             "Which city is the Eiffel Tower in?", "Who is the CEO of Acme?", "x",
             "word " * 400, "Where is the Louvre?", "Where is the Prado?"]
    batched = embedder.embed(texts)
    alone = np.concatenate([embedder.embed_one(t) for t in texts])
    if embedder.int8:
        assert np.array_equal(batched, alone)
    else:  # float batches of mixed lengths: padding adds float noise only
        assert np.allclose(batched, alone, atol=1e-5)
    assert np.array_equal(batched[0], batched[7])


def test_masked_keys_stored_reloaded_and_equal_to_fresh(store, embedder, tmp_path):
    from assistant.scope import relation_text

    memory = _memory(store, embedder, tmp_path)
    edit = store.add_edit("Louvre", "The Louvre is in", "Madrid",
                          paraphrases=["Where is the Louvre?"])
    memory.sync(added=[edit])
    fresh = embedder.embed([relation_text(t, "Louvre") for t in edit.key_texts()])
    assert np.allclose(memory.masked_keys(edit), fresh, atol=1e-6)
    again = _memory(store, embedder, tmp_path)
    assert again.rebuilt_reason is None
    assert np.allclose(again.relations[edit.id], fresh, atol=1e-6)


def test_corrupt_relations_file_triggers_rebuild(store, embedder, tmp_path):
    memory = _memory(store, embedder, tmp_path)
    memory.sync(added=[store.add_edit("Louvre", "The Louvre is in", "Madrid")])
    (tmp_path / "edits.relations.npz").write_bytes(b"PK\x03\x04 broken")
    again = _memory(store, embedder, tmp_path)
    assert "unreadable" in again.rebuilt_reason
    assert set(again.relations) == {1}


def test_index_from_an_older_key_scheme_is_rebuilt(store, embedder, tmp_path):
    memory = _memory(store, embedder, tmp_path)
    memory.sync(added=[store.add_edit("Louvre", "The Louvre is in", "Madrid")])
    meta_path = memory.index_path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["key_scheme"] = 1
    meta_path.write_text(json.dumps(meta))
    again = _memory(store, embedder, tmp_path)
    assert "older set of key texts" in again.rebuilt_reason
    assert again.size == 1


def test_statement_edit_is_found_by_what_its_value_is_about(store, embedder, tmp_path):
    """"Mount Everest is" says nothing of height; "Mount Everest is 9,412 metres" does."""
    memory = _memory(store, embedder, tmp_path)
    edit = store.add_edit("Mount Everest", "Mount Everest is", "9,412 metres")
    assert edit.key_texts()[-1] == "Mount Everest is 9,412 metres"
    memory.sync(added=[edit])
    plain = float(embedder.embed_one("how tall is mt everest?")[0] @ embedder.embed_one(edit.prompt)[0])
    hits = memory.search(embedder.embed_one("how tall is mt everest?"), k=8)
    assert hits[0].score > plain


def test_a_saved_index_that_missed_a_key_text_change_is_mended_on_refresh(store, embedder,
                                                                          tmp_path):
    """Another instance changed an edit's aliases; this one saved its index (for another
    change) before re-embedding that edit, then stopped. The saved fingerprint matches the
    store, so the file is loaded, and the first refresh re-embeds the edit from its digest."""
    path = tmp_path / "edits.faiss"
    edit = store.add_edit("Eiffel Tower", "Where is the Eiffel Tower?", "Rome")
    memory = EditMemory(store, embedder, path)
    store.set_aliases(edit.id, ["the Iron Lady"])  # by "another instance": not synced here
    other = store.add_edit("Louvre", "Where is the Louvre?", "Madrid")
    memory.sync(added=[other])  # saved with the store's fingerprint, old vectors of `edit`

    reopened = EditMemory(store, embedder, path)
    assert reopened.rebuilt_reason is None  # the saved file was used
    query = embedder.embed(["Where is the Iron Lady?"])[0]
    assert reopened.search(query, 1)[0].score < 0.9
    assert reopened.refresh(None) == (1, 1)  # re-embedded: removed and added again
    hit = reopened.search(query, 1)[0]
    assert hit.edit_id == edit.id and hit.score > 0.9
    assert reopened.refresh(None) == (0, 0)
