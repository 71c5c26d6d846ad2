"""How a query names a subject: modifiers, typos, possessives, aliases; shared words refused.
Also the follow-up rewriting and one-hop questions built on it."""
from __future__ import annotations

import pytest

from assistant.followups import refers_back, with_subject
from assistant.hops import hop_question, hop_statements
from assistant.naming import AliasTable, find_mention, subject_overlap, table
from assistant.scope import relation_text
from store.db import Edit


@pytest.mark.parametrize("subject, query", [
    ("Louvre", "which city is the famous louvre museum in"),
    ("Louvre", "What's the Louvre's city?"),
    ("Louvre", "where is the Lovre"),  # typo
    ("Eiffel Tower", "where's the Eifel tower"),
    ("Eiffel Tower", "WHERE IS THE EIFFEL TOWER"),
    ("Société Générale", "Who owns Societe Generale?"),
    ("the office wifi password", "where's the wifi password?"),
])
def test_a_subject_is_named_beyond_its_exact_words(subject, query):
    assert subject_overlap(subject, query) >= 0.5


@pytest.mark.parametrize("subject, query", [
    ("Lake Victoria", "How deep is Lake Geneva?"),
    ("Mount Everest", "How tall is Mount Fuji?"),
    ("Acme Bakery", "When was Acme Airlines founded?"),
    ("Acme Bakery", "when was acme airlines founded"),
    ("Paris", "When was the Paris Opera built?"),
    ("Louvre", "Where is the Eiffel Tower?"),
])
def test_a_shared_word_does_not_name_another_subject(subject, query):
    assert subject_overlap(subject, query) == 0.0


def test_a_partial_name_still_counts_where_nothing_contradicts_it():
    assert subject_overlap("Danielle Darrieux", "Where was Darrieux born?") == 0.5
    # punctuation between a capitalised word and the name: not one longer name
    assert subject_overlap("Argosy Glacier",
                           "He played for Warrior. Argosy Glacier is located in") == 1.0


def test_aliases_name_a_subject_and_the_mask_covers_them():
    aliases = AliasTable([{"name": "New York City", "aliases": ["NYC", "the Big Apple"]}])
    assert aliases.aliases_of("New York City") == ["NYC", "the Big Apple"]
    assert aliases.canonical_text("How many people live in the Big Apple?") == \
        "How many people live in the New York City?"
    mention = find_mention("New York City", "How big is the Big Apple?", ("the Big Apple",))
    assert mention is not None and mention.coverage == 1.0
    assert relation_text("How big is the Big Apple?", "New York City", mention) == \
        "How big is something?"


def test_the_shipped_alias_table_knows_common_nicknames():
    names = table()
    assert "Mars" in (names.canonical("the Red Planet") or "")
    assert subject_overlap("Amsterdam", "What is the population of the Dutch capital?") == 1.0


@pytest.mark.parametrize("question, expected", [
    ("And which city is it in again?", "And which city is Louvre in again?"),
    ("what is its address", "what is Louvre's address"),
    ("so where again?", "so where again? (about Louvre)"),
])
def test_follow_ups_get_their_subject_back(question, expected):
    assert refers_back(question)
    assert with_subject(question, "Louvre") == expected


def test_a_self_contained_question_does_not_refer_back():
    assert not refers_back("Where is the Eiffel Tower?")


def _edit(subject: str, prompt: str, target: str) -> Edit:
    return Edit(id=1, subject=subject, prompt=prompt, target_new=target)


def test_one_hop_questions_are_asked_about_the_new_value():
    edit = _edit("Louvre", "Where is the Louvre?", "Madrid")
    assert hop_question("Which country is the Louvre in?", edit) == "Which country is Madrid in?"
    assert hop_question("What language do they speak at the Louvre?", edit) == \
        "What language do they speak at Madrid?"
    # the same relation, another relation, another subject: no hop
    assert hop_question("Which city is the Louvre in?", edit) is None
    assert hop_question("When was the Louvre founded?", edit) is None
    assert hop_question("Which country is the Prado in?", edit) is None
    # the edit itself answers the country
    assert hop_question("Which country is the Louvre in?",
                        _edit("Louvre", "Which country is the Louvre in?", "Spain")) is None
    # an edit that is not about a place does not hop
    assert hop_question("Which country is Jane Roe from?",
                        _edit("Acme", "Who is the CEO of Acme?", "Jane Roe")) is None


def test_place_edits_imply_hop_statements_for_portability():
    assert hop_statements(_edit("Louvre", "Where is the Louvre?", "Madrid")) == [
        ("The Louvre is in the country of", "Madrid is in the country of"),
        ("The Louvre is on the continent of", "Madrid is on the continent of")]
    assert hop_statements(_edit("Acme", "Who is the CEO of Acme?", "Jane Roe")) == []


@pytest.mark.parametrize("subject, query", [
    ("spare keys", "where's the backup key to the house?"),
    ("office wifi password", "quick one - where's the password for the work wi-fi?"),
    ("our office", "which city is our workplace in?"),
    ("IT helpdesk extension", "what number do I ring for tech support at work"),
])
def test_everyday_synonyms_name_a_common_noun_subject(subject, query):
    assert find_mention(subject, query) is not None


def test_a_one_word_subjects_synonym_must_be_used_as_a_noun():
    assert find_mention("our office", "where do you work?") is None


@pytest.mark.parametrize("subject, query", [
    ("nyc", "new yrok city population"),  # a typo inside an alias of two words or more
    ("Hermione Granger", "hermoine's house?"),  # a possessive ends the name
    ("Qantas", "I need to send a letter to Qantas HQ, which city?"),  # an abbreviation after it
    ("Brightwave Labs", "Need the Brightwave Labs CEO's full name"),
    ("boeing 747", "Tell me how many engines a Boeing 747 has"),  # digits: a name, not "a X"
    ("Apple", "Who's the boss over at the iPhone maker?"),  # a description from the table
])
def test_names_written_loosely_are_found(subject, query):
    assert find_mention(subject, query) is not None


@pytest.mark.parametrize("subject, query", [
    ("my manager", "who manages the England men's football team right now?"),  # a word, no typo
    ("Sherlock Holmes", "Where is Katie Holmes from?"),  # a surname alias after another name
    ("Golden Gate Bridge", "Where is Golden Gate Park?"),
    ("boeing 747", "How many engines does a Boeing 737 have?"),  # another number
])
def test_other_names_and_real_words_are_not_taken_for_the_subject(subject, query):
    assert find_mention(subject, query) is None


@pytest.mark.parametrize("question", ["sorry, which year was that?", "what was that number?",
                                      "which door was that by?"])
def test_asking_for_that_again_refers_back(question):
    from assistant.followups import re_asks
    assert refers_back(question) and re_asks(question)
