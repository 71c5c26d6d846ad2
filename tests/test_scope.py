"""Scope deciders: the text helpers, the threshold rule and the trained head, and the
training script's pair building and subject split."""
import numpy as np
import pytest

from assistant.phrasings import question_forms
from assistant.scope import (ScopeClassifier, ScopeHead, make_scope, pair_features,
                             relation_text, subject_overlap)
from assistant.scope_train import calibration_pairs, f1_scores, is_held_out
from config import router_config
from store.db import Edit


def test_subject_overlap_ignores_case_accents_and_articles():
    assert subject_overlap("Eiffel Tower", "which city is the eiffel tower in?") == 1.0
    assert subject_overlap("Danielle Darrieux", "Where was Darrieux born?") == 0.5
    assert subject_overlap("Société Générale", "Who owns Societe Generale?") == 1.0
    assert subject_overlap("Louvre", "Where is the Eiffel Tower?") == 0.0


def test_relation_text_masks_the_subject():
    assert relation_text("Where is the Eiffel Tower?", "Eiffel Tower") == "Where is the something?"
    assert relation_text("Is Darrieux French?", "Danielle Darrieux") == "Is something French?"


def test_pair_features_layout():
    q = np.ones(4, dtype=np.float32) / 2
    p = np.array([1, 0, 0, 0], dtype=np.float32)
    f = pair_features(0.8, 1.0, q, p)
    assert f.shape == (4 + 2 * 4,)
    assert f[:4].tolist() == pytest.approx([0.8, 1.0, 0.5, 0.4])


def _edit(i, subject, prompt):
    return Edit(id=i, subject=subject, prompt=prompt, target_new="X")


@pytest.mark.parametrize("prompt,subject,query,in_scope", [
    ("Where is the Eiffel Tower?", "Eiffel Tower", "Which city is the Eiffel Tower in?", True),
    ("Where is the Eiffel Tower?", "Eiffel Tower", "Where is the Eiffel Tower located?", True),
    ("Where is the Eiffel Tower?", "Eiffel Tower", "Who designed the Eiffel Tower?", False),
    ("Where is the Eiffel Tower?", "Eiffel Tower", "How tall is the Eiffel Tower?", False),
    ("The Louvre is in", "Louvre", "Where is the Louvre?", True),
    ("The Louvre is in", "Louvre", "Which city is the Louvre in?", True),
    ("The Louvre is in", "Louvre", "Who founded the Louvre?", False),
    ("The Louvre is in", "Louvre", "Tell me about the Louvre", False),
    ("The mother tongue of Danielle Darrieux is", "Danielle Darrieux",
     "What language does Danielle Darrieux speak?", True),
    ("The mother tongue of Danielle Darrieux is", "Danielle Darrieux",
     "Where was Danielle Darrieux born?", False),
    ("The Louvre is in", "Louvre", "Where is the Eiffel Tower?", False),
])
def test_shipped_classifier_on_chat_questions(embedder, prompt, subject, query, in_scope):
    """The decider the app ships (config + trained head), on the questions people ask."""
    scope = make_scope(router_config(), embedder.embed)
    edit = Edit(id=1, subject=subject, prompt=prompt, target_new="X",
                paraphrases=tuple(question_forms(prompt, subject)))
    similarity = max(float(embedder.embed_one(query)[0] @ embedder.embed_one(k)[0])
                     for k in edit.key_texts())
    assert scope.decide(query, [(edit, similarity)])[0].in_scope is in_scope


def test_head_decides_when_given(embedder):
    dims = 4 + 2 * embedder.dim
    # a head that only looks at the masked relation similarity (feature 2)
    w1 = np.zeros((dims, 1), dtype=np.float32)
    w1[2, 0] = 10.0
    head = ScopeHead({"w1": w1, "b1": np.array([0.0], np.float32),
                      "w2": np.array([1.0], np.float32), "b2": np.float32(-5.0),
                      "threshold": np.float32(0.5)})
    scope = ScopeClassifier(router_config(), embedder.embed, head)
    edit = _edit(1, "Eiffel Tower", "Where is the Eiffel Tower?")
    same = scope.decide("Where is the Eiffel Tower located?", [(edit, 0.95)])[0]
    assert same.in_scope and same.probability > 0.5
    assert same.probability == pytest.approx(
        1 / (1 + np.exp(-(10 * same.relation - 5))), rel=1e-4)


def test_shipped_head_loads_if_configured():
    config = router_config()
    if config.scope_head:
        from config import REPO_ROOT

        head = ScopeHead.load(REPO_ROOT / config.scope_head)
        assert 0.0 < head.threshold < 1.0
        assert head.w1.shape[1] == head.b1.shape[0] == head.w2.shape[0]


def test_training_pairs_include_hard_negatives_and_split_by_subject():
    records = [{"subject": f"Person {i}", "prompt": f"Person {i} was born in",
                "rephrase_prompt": f"The birthplace of Person {i} is",
                "locality_prompt": f"Someone {i} was born in"} for i in range(50)]
    pairs = calibration_pairs(records)
    positives = [p for p in pairs if p[3]]
    assert sum(p[2] == f"The birthplace of Person {i} is" for i in range(50)
               for p in positives) == 50
    assert any(p[2] == "Where was Person 1 born?" for p in positives)  # chat question forms
    hard = [p for p in pairs if not p[3] and p[0] in p[2] and p[2] != p[1]]
    assert hard, "same-subject, other-edit negatives must be present"
    subjects = {p[0] for p in pairs}
    held = {s for s in subjects if is_held_out(s)}
    assert held and held != subjects
    assert is_held_out("Person 3") == is_held_out("person 3 ")  # one subject, one side


def test_other_attribute_negatives_skip_the_edited_relation():
    """An architect edit must not learn "Who designed X?" as out of scope."""
    from assistant.scope_train import other_attributes

    designed = other_attributes("The architect of Boston Garden is", "Boston Garden")
    assert "Who designed Boston Garden?" not in designed
    assert "How tall is Boston Garden?" in designed
    assert "Who designed Boston Garden?" in other_attributes("Boston Garden is located in",
                                                              "Boston Garden")


def test_f1_scores():
    pred = np.array([True, True, False, False])
    labels = np.array([True, False, True, False])
    assert f1_scores(pred, labels) == {"f1": 0.5, "precision": 0.5, "recall": 0.5}


@pytest.mark.parametrize("prompt, subject, first", [
    ("The Louvre is in", "Louvre", "Where is the Louvre?"),
    ("Toko Yasuda works for", "Toko Yasuda", "Where does Toko Yasuda work?"),
    ("Which network aired Friends?", "Friends", "Where did Friends premiere?"),  # not "work"
    ("What is year of inception of 6th Alpini Regiment?", "6th Alpini Regiment",
     "When was 6th Alpini Regiment established?"),  # not " in"
])
def test_question_forms_match_keywords_at_word_starts(prompt, subject, first):
    """" in" once matched "inception" and "work" matched "network": wrong-relation questions."""
    forms = question_forms(prompt, subject, limit=2)
    assert (forms[0] if forms else None) == first


def test_statement_forms_cover_every_relation_and_skip_the_prompt():
    """Every relation has statement wordings; the prompt's own wording and unknown relations
    give none, and the subject keeps its article."""
    from assistant.phrasings import RELATIONS, statement_forms

    assert all(len(r.statements) >= 2 and len(r.questions) >= 1 for r in RELATIONS)
    assert statement_forms("The Eiffel Tower is located in", "Eiffel Tower") == [
        "The Eiffel Tower can be found in"]
    assert statement_forms("Danielle Darrieux was born in", "Danielle Darrieux", 1) == [
        "The birthplace of Danielle Darrieux is"]
    assert statement_forms("What is the vessel class of USS Moray?", "USS Moray") == []
    assert all("{s} is a" != t for r in RELATIONS for t in r.statements)


@pytest.mark.parametrize("prompt, subject, first", [
    ("What is year of inception of 6th Alpini Regiment?", "6th Alpini Regiment",
     "When was 6th Alpini Regiment established?"),
    ("When was Iddo Netanyahu born?", "Iddo Netanyahu", "What is the date of birth of Iddo Netanyahu?"),
    ("Which lady gave birth to Lady Wu?", "Lady Wu", "Who is the mother of Lady Wu?"),
    ("What was Henning Lohlein birth country?", "Henning Lohlein", "Where was Henning Lohlein born?"),
    ("At what location did Isabella of Clermont die?", "Isabella of Clermont",
     "Where did Isabella of Clermont die?"),
    ("What is the programming language for Rexx?", "Rexx",
     "Which programming language is Rexx written in?"),
    ("Which position was held by Pius V?", "Pius V", "What position does Pius V hold?"),
    ("What position does Xavi play on the field?", "Xavi", "What position does Xavi play?"),
    ("Apple A5, created in", "Apple A5", "Where was Apple A5 founded?"),
    ("Ferrari F40, developed by", "Ferrari F40", "Who created Ferrari F40?"),
    ("Which series is Zoe Slater apart of?", "Zoe Slater", "Which series is Zoe Slater part of?"),
    ("What does Enco River flow into?", "Enco River", "Which river does Enco River flow into?"),
    ("What type of flower is Rosa alba?", "Rosa alba", None),
])
def test_question_forms_tell_dates_kin_and_places_apart(prompt, subject, first):
    """Date, kin and place questions share words ("born", "birth", "die", "created"); the
    order of RELATIONS and composite keywords keep them apart."""
    forms = question_forms(prompt, subject, limit=2)
    assert (forms[0] if forms else None) == first


def test_an_edit_does_not_answer_a_question_wanting_another_kind_of_answer():
    from assistant.scope import answer_kind, kinds_clash

    year = Edit(id=1, subject="Titanic", prompt="What year did the Titanic sink?", target_new="1923")
    club = Edit(id=2, subject="Ronaldo", prompt="Ronaldo plays for", target_new="Celtic")
    home = Edit(id=3, subject="Sherlock Holmes", prompt="Sherlock Holmes lives in",
                target_new="Dublin")
    assert answer_kind("Who was the captain of the Titanic?") == "person"
    assert kinds_clash("Who was the captain of the Titanic?", year)
    assert not kinds_clash("When did the Titanic go down?", year)
    assert not kinds_clash("Which club does Ronaldo play for now?", club)  # club: unknown kind
    # a count or a date wants a number, and "Celtic" is none
    assert kinds_clash("How many Ballon d'Ors has Ronaldo won?", club)
    assert kinds_clash("When did Ronaldo join them?", club)
    standup = Edit(id=4, subject="weekly standup", prompt="The weekly standup is on",
                   target_new="Thursdays")
    assert not kinds_clash("When is the weekly standup?", standup)  # a day is a date
    ceo = Edit(id=5, subject="Apple", prompt="The CEO of Apple is", target_new="Priya Ramaswamy")
    assert kinds_clash("Where is Apple headquartered?", ceo)  # a role gives a person
    # "how high is its status" may want a word: only counts and dates need a number
    status = Edit(id=6, subject="box turtle", prompt="The conservation status of box turtle is",
                  target_new="Endangered")
    assert not kinds_clash("How high is the conservation status of the box turtle?", status)
    assert kinds_clash("When was Sherlock Holmes born?", home)
    assert not kinds_clash("Which city is Sherlock Holmes's home in?", home)
    # a statement that opens with "When" asks nothing
    assert answer_kind("When Charles IV of Spain was killed, the locals held a") is None
