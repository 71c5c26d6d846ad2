"""The Assistant's three routes on a tiny model, the real embedder and a real SQLite store."""
import pytest

from assistant.corrections import Correction
from assistant.memory import EditMemory
from assistant.router import EMPTY_HINT, Assistant
from errors import InvalidEditError
from config import router_config


@pytest.fixture
def assistant(tiny_llm, embedder, tmp_path):
    from store.db import Store

    store = Store(tmp_path / "amend.db")
    memory = EditMemory(store, embedder, tmp_path / "edits.faiss")
    yield Assistant(tiny_llm, embedder, store, memory, router_config())
    store.close()


def final(assistant, history, message, **kw):
    chunks = list(assistant.reply(history, message, **kw))
    return chunks[-1]


def test_empty_message_hints_and_stores_nothing(assistant):
    for message in ("", "   ", "\n\t"):
        chunk = final(assistant, [], message)
        assert chunk.text == EMPTY_HINT and chunk.trace.route == "hint"
    assert assistant.store.count_edits() == 0
    assert assistant.store.turns() == []


def test_correct_then_ask_in_scope_and_paraphrase(assistant):
    history = [{"role": "user", "content": "Where is the Eiffel Tower?"},
               {"role": "assistant", "content": "The Eiffel Tower is in Paris."}]
    stored = final(assistant, history, "No, it's Rome")
    assert stored.trace.route == "correction"
    edit = assistant.store.get_edit(stored.trace.edit_ids[0])
    assert (edit.subject, edit.target_new, edit.target_old) == ("Eiffel Tower", "Rome", "Paris")
    # the whole reply stays in the conversation, as the user saw it
    assert "Rome" in stored.text
    for question in ("Which city is the Eiffel Tower in?", "Where is the Eiffel Tower located?"):
        answer = final(assistant, [], question, max_new_tokens=4)
        assert answer.trace.route == "memory"
        assert answer.trace.edit_ids == [edit.id]
        assert "Rome" in answer.text
        assert answer.trace.timings_ms["route"] > 0
    assert assistant.store.get_edit(edit.id).hits == 2


def test_unrelated_question_answered_exactly_as_before(assistant):
    question = "What is the capital of France?"
    before = final(assistant, [], question, max_new_tokens=8)
    final(assistant, [], "Actually the Louvre is in Madrid")
    after = final(assistant, [], question, max_new_tokens=8)
    assert after.trace.route == "base" and before.trace.route == "base"
    assert after.text == before.text


def test_same_relation_other_subject_not_in_scope(assistant):
    final(assistant, [], "Actually the Louvre is in Madrid")
    answer = final(assistant, [], "Where is the Eiffel Tower?", max_new_tokens=4)
    assert answer.trace.route == "base"
    assert answer.trace.candidates[0]["in_scope"] is False


def test_new_correction_supersedes_same_fact(assistant):
    first = final(assistant, [], "Actually the Louvre is in Madrid").trace.edit_ids[0]
    second = final(assistant, [], "No, the Louvre is in Lisbon")
    assert "replaces edit #%d" % first in second.text
    assert assistant.store.get_edit(first).status == "superseded"
    answer = final(assistant, [], "Where is the Louvre?", max_new_tokens=4)
    assert "Lisbon" in answer.text and "Madrid" not in answer.text


def test_unreadable_correction_asks_back_and_stores_nothing(assistant):
    for message in ("No, it's", "Actually,", "Remember that blah"):
        chunk = final(assistant, [], message)
        assert chunk.trace.route == "clarify", message
        assert chunk.text.strip()
    assert assistant.store.count_edits() == 0


def test_huge_message_gets_a_notice(assistant):
    chunk = final(assistant, [], "Where is the Eiffel Tower? " * 800, max_new_tokens=4)
    assert chunk.trace.route == "base"
    assert "too long" in chunk.trace.notice
    assert chunk.text.startswith("_(Note:")


def test_reject_and_reactivate(assistant):
    edit, _ = assistant.add_edit(Correction("Louvre", "The Louvre is in", "Madrid"), "form")
    assistant.review.set_status(edit.id, "rejected")
    assert final(assistant, [], "Where is the Louvre?", max_new_tokens=3).trace.route == "base"
    newer, _ = assistant.add_edit(Correction("Louvre", "The Louvre is in", "Lisbon"), "form")
    assistant.review.set_status(edit.id, "active")  # reactivating replaces the newer twin
    assert assistant.store.get_edit(newer.id).status == "superseded"
    answer = final(assistant, [], "Where is the Louvre?", max_new_tokens=3)
    assert answer.trace.edit_ids == [edit.id]


def test_edits_compose_one_hop(assistant):
    louvre, _ = assistant.add_edit(Correction("Louvre", "The Louvre is in", "Madrid"), "form")
    madrid, _ = assistant.add_edit(Correction("Madrid", "Madrid is in", "Portugal"), "form")
    other, _ = assistant.add_edit(Correction("Lisbon", "Lisbon is in", "Spain"), "form")
    answer = final(assistant, [], "Which city is the Louvre in?", max_new_tokens=3)
    assert answer.trace.edit_ids == [louvre.id, madrid.id]  # the hop, and nothing unrelated
    messages = assistant.counterfactual.messages([], "Which country is the Louvre in?",
                                                 [louvre, madrid])
    assert "Louvre is in Madrid" in messages[0]["content"]
    assert "Madrid is in Portugal" in messages[0]["content"]
    assert other.id not in answer.trace.edit_ids


def test_form_correction_validates(assistant):
    text, trace = assistant.correct_from_form("Louvre", "Where is the Eiffel Tower?", "Rome")
    assert trace.route == "clarify" and "subject" in text.lower()
    text, trace = assistant.correct_from_form("Louvre", "Where is the Louvre?", "Rome")
    assert trace.route == "correction"
    assert assistant.store.get_edit(trace.edit_ids[0]).source == "form"


def test_turns_logged_with_route(assistant):
    final(assistant, [], "Where is the Louvre?", session="s1", max_new_tokens=3)
    rows = assistant.store.turns("s1")
    assert [r["role"] for r in rows] == ["assistant", "user"]
    assert rows[0]["route"] == "base"


def test_admin_change_target_merge_and_bulk(assistant):
    edit, _ = assistant.add_edit(Correction("Eiffel Tower", "The Eiffel Tower is in", "Rome"),
                                 source="chat")
    new = assistant.review.change_target(edit.id, "Madrid")
    assert new.supersedes == edit.id and assistant.store.get_edit(edit.id).status == "superseded"
    assert "Madrid" in final(assistant, [], "Where is the Eiffel Tower?").text
    with pytest.raises(InvalidEditError):
        assistant.review.change_target(edit.id, "Oslo")  # superseded: not editable
    other = assistant.store.add_edit("Eiffel Tower", "The Eiffel Tower is in", "Oslo",
                                     source="import")
    assert assistant.review.merge(new.id, [other.id]).id == new.id
    assert assistant.store.get_edit(other.id).status == "superseded"
    with pytest.raises(InvalidEditError):
        assistant.review.merge(new.id, [new.id])
    lines = assistant.review.bulk_status([new.id, 999], "rejected")
    assert lines[0] == f"#{new.id}: rejected" and "999" in lines[1]
    assert assistant.memory.size == 0
    assert assistant.review.bulk_status([new.id], "rejected") == [
        f"#{new.id}: already rejected; nothing changed"]


def test_promotion_candidates_say_why_they_are_not_ready(assistant, tmp_path):
    from editing.promote import WeightEdits

    weights = WeightEdits.for_assistant(assistant, tmp_path)
    edit, _ = assistant.add_edit(Correction("Eiffel Tower", "The Eiffel Tower is in", "Rome"),
                                 source="chat")
    [(shown, ready, why)] = weights.suggestions()
    need = weights.guard.suggest_min_hits
    assert shown.id == edit.id and not ready
    assert why == f"not yet: asked 0 of {need} times needed"
    for _ in range(need):
        assistant.store.record_hits([edit.id])
    [(_, ready, why)] = weights.suggestions()
    assert ready and why.startswith(f"ready: asked {need} times")


def test_shared_mode_corrections_serve_only_their_session_until_approved(assistant):
    assistant.shared = True
    assistant.add_edit(Correction("Louvre", "The Louvre is in", "Madrid"), source="admin")
    history = [{"role": "user", "content": "Where is the Eiffel Tower?"},
               {"role": "assistant", "content": "The Eiffel Tower is in Paris."}]
    stored = final(assistant, history, "No, it's Rome", session="alice")
    edit = assistant.store.get_edit(stored.trace.edit_ids[0])
    assert (edit.status, edit.session) == ("pending", "alice")
    assert "admin" in stored.text
    question = "Which city is the Eiffel Tower in?"
    mine = final(assistant, [], question, session="alice", max_new_tokens=4)
    assert mine.trace.route == "memory" and mine.trace.edit_ids == [edit.id]
    theirs = final(assistant, [], question, session="bob", max_new_tokens=4)
    assert theirs.trace.route == "base"
    # a pending correction about an approved fact does not take it away from others
    final(assistant, [], "Remember that the Louvre is in Lisbon", session="mallory")
    louvre = final(assistant, [], "Where is the Louvre?", session="bob", max_new_tokens=4)
    assert louvre.trace.route == "memory" and "Madrid" in louvre.text
    assistant.review.set_status(edit.id, "active")  # the admin approves
    theirs = final(assistant, [], question, session="bob", max_new_tokens=4)
    assert theirs.trace.route == "memory" and theirs.trace.edit_ids == [edit.id]
    # the index survives a rebuild with the pending edit in it
    assistant.memory.rebuild()
    assert final(assistant, [], "Where is the Louvre?", session="mallory",
                 max_new_tokens=4).trace.route == "memory"


# --- natural phrasing (issue 30): how people refer to a corrected subject ------------------------

def _route_in_scope(assistant, question, context=()):
    decisions, _ = assistant.route(question, context=list(context))
    return [d.edit.subject for d in decisions if d.in_scope]


def test_follow_ups_are_routed_to_the_conversations_subject(assistant):
    assistant.add_edit(Correction("Louvre", "Where is the Louvre?", "Madrid"), source="chat")
    assistant.add_edit(Correction("Eiffel Tower", "Where is the Eiffel Tower?", "Rome"),
                       source="chat")
    talk = ["Where is the Louvre?", "No, it's in Madrid now."]
    assert _route_in_scope(assistant, "And which city is it in again?", talk) == ["Louvre"]
    assert _route_in_scope(assistant, "sorry, what city was that again?", talk) == ["Louvre"]
    # a newer question about something else: "it" means that now
    later = [*talk, "Where is the Eiffel Tower?"]
    assert _route_in_scope(assistant, "And which city is it in again?", later) == \
        ["Eiffel Tower"]
    # no conversation, nothing to refer back to
    assert _route_in_scope(assistant, "And which city is it in again?") == []


def test_typos_modifiers_and_aliases_reach_the_edit(assistant):
    edit, _ = assistant.add_edit(Correction("New York City", "How many people live in New York City?",
                                            "2 million"), source="chat")
    assert "the Big Apple" in edit.aliases  # learned from the shipped alias table
    for question in ("how many people live in new yrok city", "How many people live in NYC?",
                     "How many people live in the Big Apple?"):
        assert _route_in_scope(assistant, question) == ["New York City"], question


def test_one_hop_question_is_answered_about_the_new_value(assistant):
    assistant.add_edit(Correction("Louvre", "Where is the Louvre?", "Madrid"), source="chat")
    decisions, _ = assistant.route("Which country is the Louvre in?")
    edit, text = assistant._hop(decisions)
    assert (edit.subject, text) == ("Louvre", "Which country is Madrid in?")
    chunk = final(assistant, [], "Which country is the Louvre in?")
    assert chunk.trace.route == "memory" and "one hop" in chunk.trace.notice


def test_a_self_contained_question_is_answered_without_the_conversation(assistant):
    """The reply to an unrelated question is the reply it gets in a fresh chat."""
    history = [{"role": "user", "content": "Where is the Louvre?"},
               {"role": "assistant", "content": "Madrid."}]
    alone = final(assistant, [], "What is the capital of France?").text
    assert final(assistant, history, "What is the capital of France?").text == alone
