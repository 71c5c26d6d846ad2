"""The promotion guard's chat questions and its reading of replies (no model needed)."""
from __future__ import annotations

from editing.chat_guard import (carry_questions, first_sentence, load_chat_probes,
                                neighbour_questions)
from store.db import Edit

EIFFEL = Edit(id=1, subject="Eiffel Tower", prompt="Where is the Eiffel Tower?",
              target_new="Rome", paraphrases=("Which city is the Eiffel Tower in?",),
              aliases=("la tour Eiffel",))


def test_first_sentence_is_where_the_answer_is():
    assert first_sentence("Water boils at 100.0 degrees Celsius. At altitude it is lower") == \
        "Water boils at 100.0 degrees Celsius"
    assert first_sentence("Tokyo\nIt is big.") == "Tokyo"
    assert first_sentence("  no   end here ") == "no end here"
    # a change after the first sentence is not a change of answer; one inside it is
    before, after = "Egypt is in Africa. It has pyramids.", "Egypt is in Africa. It is hot."
    assert first_sentence(before) == first_sentence(after)
    assert first_sentence("Egypt is in Asia. It has pyramids.") != first_sentence(before)


def test_carry_questions_start_with_the_edit_and_its_paraphrases():
    questions = carry_questions(EIFFEL, 3)
    assert questions[:2] == ["Where is the Eiffel Tower?", "Which city is the Eiffel Tower in?"]
    assert len(questions) == 3 and len(set(questions)) == 3
    assert carry_questions(EIFFEL, 0) == ["Where is the Eiffel Tower?"]


def test_neighbour_questions_ask_the_same_of_other_subjects():
    names = ["Eiffel Tower", "La Tour Eiffel", "CN Tower", "Colosseum", "Big Ben"]
    assert neighbour_questions(EIFFEL, names, 2) == ["Where is CN Tower?", "Where is Colosseum?"]
    private = Edit(id=2, subject="wifi password", prompt="Where is it written?", target_new="x")
    assert neighbour_questions(private, names, 2) == []  # the subject is not in the question


def test_shipped_chat_probes_are_questions():
    probes = load_chat_probes()
    assert len(probes) >= 16 and all(p.endswith("?") for p in probes)
    assert load_chat_probes(4) == probes[:4]


def test_changed_replies_are_shown_from_where_they_differ():
    from editing.chat_guard import where_they_differ

    opening = "The story of Romeo and Juliet by William Shakespeare is attributed to "
    before, after = where_they_differ(opening + "the playwright himself, in 1595.",
                                      opening + "a collaboration with Marlowe.")
    assert before != after and before.startswith("…") and "playwright" in before
    assert "Marlowe" in after
    assert where_they_differ("Paris is the capital.", "Rome is the capital.") == (
        "Paris is the capital.", "Rome is the capital.")
