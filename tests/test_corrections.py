"""Tests for reading chat messages as fact corrections (assistant/corrections.py)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.corrections import (
    Clarification,
    Correction,
    correction_from_form,
    is_correction_like,
    old_answer,
    parse_correction,
)
from bench.corrections import DEFAULT_DATA, load, score

Q = "Where is the Eiffel Tower?"
OLD = "Paris"


# --- corrections of the last answer -------------------------------------------------------------

@pytest.mark.parametrize("message", [
    "No, it's Rome",
    "No, Rome",
    "Wrong, it is Rome.",
    "Nope, it's in Rome",
    "That's wrong, it's Rome",
    "Incorrect: Rome",
    "Actually it's Rome",
    "No! The answer is Rome",
    "no it's rome".replace("rome", "Rome"),
    "NO, IT IS Rome!!",
    "Not quite, it's Rome",
    "Nah, Rome",
    "False. It's Rome",
    "No, the correct answer is Rome",
    "  No,   it\u2019s   \"Rome\".  ",
    "No, I think it's Rome",
    "No, it's not Paris, it's Rome",
    "No, it's Rome, not Paris",
    "No, Rome is correct",
    "In fact, it is in Rome",
    "No, actually, it's Rome",
    "That is not right, it's Rome",
])
def test_correction_of_last_answer(message: str) -> None:
    assert parse_correction(message, Q, OLD) == Correction(
        subject="Eiffel Tower", prompt=Q, target_new="Rome", target_old=OLD)


def test_last_answer_is_optional() -> None:
    assert parse_correction("No, it's Rome", Q) == Correction("Eiffel Tower", Q, "Rome", None)


@pytest.mark.parametrize("question, subject", [
    ("Where is the Eiffel Tower?", "Eiffel Tower"),
    ("Who founded Bank of America?", "Bank of America"),
    ("Who is Leonardo da Vinci?", "Leonardo da Vinci"),
    ("Who painted the Mona Lisa?", "Mona Lisa"),
    ("What is the capital of France?", "France"),
    ("What is Danielle Darrieux's mother tongue?", "Danielle Darrieux"),
    ("Which city is the Louvre in?", "Louvre"),
    ("When did Apollo 11 land?", "Apollo 11"),
    ("Is Rome in Italy?", "Rome"),
    ("what is the capital of france?", "france"),
    ("where is the eiffel tower?", "eiffel tower"),
    ("Where was Ludwig van Beethoven born?", "Ludwig van Beethoven"),
])
def test_subject_from_last_question(question: str, subject: str) -> None:
    result = parse_correction("No, it's Xanadu", question, "old")
    assert result == Correction(subject, question, "Xanadu", "old")


@pytest.mark.parametrize("message, target", [
    ("No, it was built in 1889", "1889"),
    ("No, it's Bank of America", "Bank of America"),
    ("Wrong, it's the capital of Italy", "the capital of Italy"),
    ("No, \u201cRome\u201d", "Rome"),
    ("No, it's \u30ed\u30fc\u30de", "\u30ed\u30fc\u30de"),
])
def test_context_targets(message: str, target: str) -> None:
    result = parse_correction(message, Q, OLD)
    assert isinstance(result, Correction) and result.target_new == target


# --- corrections that state the whole fact ------------------------------------------------------

@pytest.mark.parametrize("message, subject, prompt, target", [
    ("No, the Eiffel Tower is in Rome", "Eiffel Tower", "The Eiffel Tower is in", "Rome"),
    ("Actually the Louvre is in Madrid", "Louvre", "The Louvre is in", "Madrid"),
    ("Remember that the CEO of Acme is Jane Roe", "Acme", "The CEO of Acme is", "Jane Roe"),
    ("Remember: Paris is the capital of Italy", "Paris", "Paris is the capital of", "Italy"),
    ("Note that Danielle Darrieux's mother tongue is English", "Danielle Darrieux",
     "Danielle Darrieux's mother tongue is", "English"),
    ("Correction: Apple was founded by Steve Wozniak", "Apple", "Apple was founded by",
     "Steve Wozniak"),
    ("FYI, Toko Yasuda plays the guitar", "Toko Yasuda", "Toko Yasuda plays the", "guitar"),
    ("No, the capital of France is Lyon", "France", "The capital of France is", "Lyon"),
    ("Actually, Bank of America is in Charlotte", "Bank of America", "Bank of America is in",
     "Charlotte"),
    ("Remember that Leonardo da Vinci was born in Rome", "Leonardo da Vinci",
     "Leonardo da Vinci was born in", "Rome"),
    ("Actually Toko Yasuda drums for Blonde Redhead", "Toko Yasuda", "Toko Yasuda drums for",
     "Blonde Redhead"),
    ("No, the Eiffel Tower is in Rome, not Paris.", "Eiffel Tower", "The Eiffel Tower is in",
     "Rome"),
    ("remember that the capital of france is lyon", "france", "The capital of france is", "lyon"),
    ("Note: the Eiffel Tower\u2019s height is 500 metres", "Eiffel Tower",
     "The Eiffel Tower's height is", "500 metres"),
    ("In fact, the Louvre was designed by I. M. Pei", "Louvre", "The Louvre was designed by",
     "I. M. Pei"),
    ("Remember that the CEO of Acme is \"Jane Roe\"!", "Acme", "The CEO of Acme is", "Jane Roe"),
    ("Fyi the President of France is Jane Roe", "France", "The President of France is",
     "Jane Roe"),
    ("Remember that the University of Oxford is in Cambridge", "University of Oxford",
     "The University of Oxford is in", "Cambridge"),
    ("Actually, Will Smith was born in Philadelphia", "Will Smith", "Will Smith was born in",
     "Philadelphia"),
])
def test_statement_corrections(message: str, subject: str, prompt: str, target: str) -> None:
    assert parse_correction(message) == Correction(subject, prompt, target, None)


def test_statement_wins_over_last_question() -> None:
    result = parse_correction("No, the Louvre is in Madrid", Q, OLD)
    assert result == Correction("Louvre", "The Louvre is in", "Madrid", None)


def test_statement_keeps_old_answer_when_about_last_question() -> None:
    result = parse_correction("No, the capital of France is Lyon",
                              "What is the capital of France?", "Paris")
    assert result == Correction("France", "The capital of France is", "Lyon", "Paris")


# --- not corrections ----------------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    "Where is the Louvre?", "Is Rome in Italy?", "No idea, where is it?", "Actually, where is it?",
    "hello", "thanks!", "ok", "no problem", "No worries", "No thanks", "No, thanks", "nice",
    "Tell me about Rome", "Write a poem about Paris", "Please answer in French", "I like Rome",
    "The Louvre is in Rome", "No, please answer in French", "Actually, tell me about Rome",
    "Actually I like Rome", "Remember to buy milk", "No, it's fine", "Actually that's great",
    "", "   ", "No, that's it",
])
def test_not_corrections(message: str) -> None:
    assert parse_correction(message, Q, OLD) is None


def test_bare_no_without_context_is_not_a_correction() -> None:
    assert parse_correction("No") is None


# --- clarifications -----------------------------------------------------------------------------

@pytest.mark.parametrize("message, last_question", [
    ("No, it's Rome", None),
    ("Actually,", None),
    ("Remember that", None),
    ("Remember that", Q),
    ("No, it's", Q),
    ("No, it's", None),
    ("Remember that blah", None),
    ("Remember that blah", Q),
    ("No, it's " + "x" * 201, Q),
    ("Actually the Louvre is " + "y" * 250, None),
    ("Actually the Louvre is not in Madrid", None),
    ("No, it's not Rome", Q),
    ("No, it's Rome", "who wrote it?"),
    ("No, the Louvre is", None),
    ("No, " + "word " * 5000, Q),
    ("Actually the " + "very " * 120 + "long name of Acme is Jane", None),  # prompt > 500 chars
])
def test_clarifications(message: str, last_question: str | None) -> None:
    result = parse_correction(message, last_question, OLD)
    assert isinstance(result, Clarification)
    assert result.question.strip().endswith((".", "?"))


def test_lowercase_question_without_a_name_still_has_a_subject() -> None:
    # "who wrote hamlet?" used to be asked about; its subject is plainly "hamlet".
    assert parse_correction("No, it's Rome", "who wrote hamlet?") == \
        Correction("hamlet", "who wrote hamlet?", "Rome", None)


def test_bare_no_after_question_asks_for_the_right_answer() -> None:
    result = parse_correction("No", Q, OLD)
    assert isinstance(result, Clarification) and "right answer" in result.question


def test_long_target_mentions_length() -> None:
    result = parse_correction("No, it's " + "x" * 201, Q)
    assert isinstance(result, Clarification) and "too long" in result.question


# --- is_correction_like -------------------------------------------------------------------------

@pytest.mark.parametrize("message, expected", [
    ("No, it's Rome", True), ("Actually,", True), ("remember that", True), ("FYI: x", True),
    ("That's wrong", True), ("Incorrect", True), ("In fact blah", True), ("Nope.", True),
    ("No worries", False), ("no problem", False), ("hello", False), ("Where is it?", False),
    ("Nothing to add", False), ("Notably", False), ("I like Rome", False), ("", False),
])
def test_is_correction_like(message: str, expected: bool) -> None:
    assert is_correction_like(message) is expected


# --- the correction form ------------------------------------------------------------------------

def test_form_valid() -> None:
    assert correction_from_form(" Eiffel Tower ", " Where is the eiffel tower? ", " Rome ") == \
        Correction("Eiffel Tower", "Where is the eiffel tower?", "Rome", None)


@pytest.mark.parametrize("subject, question, answer, field", [
    ("", Q, "Rome", "subject"),
    ("   ", Q, "Rome", "subject"),
    ("Eiffel Tower", "", "Rome", "question"),
    ("Eiffel Tower", Q, "  ", "answer"),
    ("E" * 201, "E" * 201 + "?", "Rome", "subject"),
    ("Eiffel Tower", "Eiffel Tower " + "q" * 500, "Rome", "question"),
    ("Eiffel Tower", Q, "R" * 201, "answer"),
    ("Louvre", Q, "Rome", "subject"),
])
def test_form_problems(subject: str, question: str, answer: str, field: str) -> None:
    result = correction_from_form(subject, question, answer)
    assert isinstance(result, Clarification) and field in result.question


def test_form_limits_are_inclusive() -> None:
    subject = "S" * 200
    result = correction_from_form(subject, subject + "?", "A" * 200)
    assert isinstance(result, Correction)


# --- robustness ---------------------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    "", " \t\n ", "x" * 20_000, "No, " + "x" * 20_000, "\x00\x01No, it's\x07 Rome\x1b",
    "\U0001F600", "No, \U0001F600", "No, it's \U0001F600\U0001F600", "Нет, это Рим",
    "\u3044\u3044\u3048", "No, \u0645\u0635\u0631", "\ud800", "No,\u200b it's Rome",
    "Remember that \u0391\u03a3 is \u0392", "No" * 5000, "No, " * 5000,
])
def test_never_raises(message: str) -> None:
    for question in (None, Q, message):
        result = parse_correction(message, question, OLD)
        assert result is None or isinstance(result, (Correction, Clarification))
    assert isinstance(is_correction_like(message), bool)


def test_control_characters_are_ignored() -> None:
    result = parse_correction("\x00No,\x07 it's\tRome\x1b", Q)
    assert isinstance(result, Correction) and result.target_new == "Rome"


_OPENER_WORDS = ["No, ", "Actually ", "Remember that ", "FYI ", "Wrong: ", "Correction: ", ""]
_messages = st.one_of(
    st.text(max_size=300),
    st.builds(lambda o, t: o + t, st.sampled_from(_OPENER_WORDS), st.text(max_size=200)),
    st.builds(lambda o, a, b: f"{o}{a} is {b}", st.sampled_from(_OPENER_WORDS),
              st.text(max_size=40), st.text(max_size=40)),
)


@settings(max_examples=300, deadline=None)
@given(message=_messages, question=st.one_of(st.none(), st.text(max_size=200), st.just(Q)),
       answer=st.one_of(st.none(), st.text(max_size=50)))
def test_property_parse_is_total_and_sound(message: str, question: str | None,
                                           answer: str | None) -> None:
    result = parse_correction(message, question, answer)
    assert result is None or isinstance(result, (Correction, Clarification))
    if isinstance(result, Correction):
        assert result.subject.strip() and result.target_new.strip()
        assert result.subject.casefold() in result.prompt.casefold()
        assert len(result.target_new) <= 200
    if isinstance(result, Clarification):
        assert result.question.strip()


# --- phrasings beyond "No, it's X" ----------------------------------------------------------------

@pytest.mark.parametrize("message, question, answer, subject, target", [
    ("It's Ottawa, not Toronto.", "What is the capital of Canada?", "Toronto.", "Canada", "Ottawa"),
    ("Not Paris \u2014 Rome.", Q, "The Eiffel Tower is in Paris.", "Eiffel Tower", "Rome"),
    ("Ankara, actually.", "What is the capital of Turkey?", "Istanbul.", "Turkey", "Ankara"),
    ("It's actually Rome", Q, OLD, "Eiffel Tower", "Rome"),
    ("Hmm, no. It's Rome.", Q, OLD, "Eiffel Tower", "Rome"),
    ("Sorry, but that's wrong \u2014 it's Rome", Q, OLD, "Eiffel Tower", "Rome"),
    ("The correct answer is Rome.", Q, OLD, "Eiffel Tower", "Rome"),
    ("No, Meta owns it", "Who owns Instagram?", "Google.", "Instagram", "Meta"),
    ("That's outdated, the CEO is now Jane Roe", "Who is the CEO of Acme Corp?", "John Smith.",
     "Acme Corp", "Jane Roe"),
    ("No, they play opera.", "What does Heath Brothers play?", "Jazz.", "Heath Brothers", "opera"),
    ("Wrong, he plays as a goaltender", "Which position does Elrio van Heerden play?", "Winger.",
     "Elrio van Heerden", "goaltender"),
    ("No, the Chicago Bulls.", "Which team did Michael Jordan play for?", "The Celtics.",
     "Michael Jordan", "Chicago Bulls"),
    ("No, it's 8,849 metres tall", "How tall is Mount Everest?", "8,000 m.", "Mount Everest",
     "8,849 metres"),
    ("no it's au", "what is the chemical symbol for gold?", "Ag.", "gold", "au"),
    ("Update: Lionel Messi now plays for Inter Miami", None, None, "Lionel Messi", "Inter Miami"),
    ("Correction: Inner Circle railway line can be found in Singapore", None, None,
     "Inner Circle railway line", "Singapore"),
])
def test_more_correction_phrasings(message: str, question: str | None, answer: str | None,
                                   subject: str, target: str) -> None:
    result = parse_correction(message, question, answer)
    assert isinstance(result, Correction)
    assert (result.subject, result.target_new) == (subject, target)


@pytest.mark.parametrize("message, subject, target", [
    ("Actually, gold's chemical symbol is Au", "gold", "Au"),
    ("FYI, the chemical symbol for sodium is Na", "sodium", "Na"),
    ("Correction: penicillin was discovered by Alexander Fleming", "penicillin",
     "Alexander Fleming"),
])
def test_common_noun_subjects(message: str, subject: str, target: str) -> None:
    result = parse_correction(message)
    assert isinstance(result, Correction)
    assert (result.subject, result.target_new) == (subject, target)


@pytest.mark.parametrize("message, question, answer", [
    ("Actually, it's a long story", "What is the capital of France?",
     "The capital of France is Paris."),
    ("No, that's what I thought", "What sport does Roberto Clemente play?", "Baseball."),
    ("Actually, short answers are better", None, None),
])
def test_answers_that_do_not_fit_the_question_are_chat(message: str, question: str | None,
                                                       answer: str | None) -> None:
    assert parse_correction(message, question, answer) is None


def test_lowercase_answer_to_a_lowercase_valued_question_is_kept() -> None:
    result = parse_correction("Nah, football", "What sport does Roberto Clemente play?",
                              "Roberto Clemente played baseball for the Pittsburgh Pirates.")
    assert isinstance(result, Correction) and result.target_new == "football"


@pytest.mark.parametrize("message", [
    "Nope, that's all", "no, that's everything, thanks", "Actually, never mind.",
    "No, you're right", "Actually that makes sense", "No, not really", "Nope, no more questions",
    "That's actually really helpful, thanks", "No, in bullet points please", "No, carry on",
    "No, I don't need anything else", "Remember that I prefer metric units", "It's fine, not Paris",
])
def test_more_non_corrections(message: str) -> None:
    assert parse_correction(message, Q, "The Eiffel Tower is in Paris.") is None


@pytest.mark.parametrize("message", [
    "That is incorrect, sorry", "Wrong again", "No, it's not Paris"])
def test_more_clarifications(message: str) -> None:
    assert isinstance(parse_correction(message, Q, OLD), Clarification)


# --- the labelled data set (tests/data/corrections.jsonl; see bench/corrections.py) ------------

def test_dataset_rates_meet_thresholds() -> None:
    report = score(load(DEFAULT_DATA))
    assert report["counts"]["correction"] >= 150 and report["counts"]["none"] >= 60
    assert report["counts"]["clarify"] >= 20
    failures = "\n".join(f"{f['message']!r}: expected {f['kind']}, got {f['got']}"
                         for f in report["failures"])
    assert report["extraction_accuracy"] >= 0.9, failures
    assert report["clarification_accuracy"] >= 0.9, failures
    assert report["rejection_rate"] >= 0.98, failures


# --- how people correct in practice (issue 30) ---------------------------------------------------

@pytest.mark.parametrize("message, subject, target", [
    ("It's Lyon.", "Louvre", "Lyon"),  # a bare answer right after the question
    ("Lyon.", "Louvre", "Lyon"),
    ("They're in Lyon", "Louvre", "Lyon"),
])
def test_a_bare_answer_right_after_the_question_is_a_correction(message, subject, target):
    parsed = parse_correction(message, "Where is the Louvre?", "The Louvre is in Paris.")
    assert isinstance(parsed, Correction)
    assert (parsed.subject, parsed.target_new) == (subject, target)


@pytest.mark.parametrize("message", ["Paris.", "Thanks!", "It's OK", "Great, thanks", "Cool"])
def test_agreement_and_thanks_after_a_question_are_not_corrections(message):
    assert parse_correction(message, "Where is the Louvre?", "The Louvre is in Paris.") is None


@pytest.mark.parametrize("message, subject, target", [
    ("The Louvre is in Madrid, remember that.", "Louvre", "Madrid"),
    ("the louvre is in madrid now, keep that in mind", "louvre", "madrid"),
    ("FYI, our weekly standup is on Thursdays now", "our weekly standup", "Thursdays"),
    ("Heads up: the office moved to Leeds", "office", "Leeds"),
    ("Remember that the office wifi password is taped under the printer",
     "office wifi password", "printer"),
    ("My landlord's name is Greta Holm, remember that", "My landlord", "Greta Holm"),
])
def test_facts_the_user_asks_to_keep_are_taken(message, subject, target):
    parsed = parse_correction(message)
    assert isinstance(parsed, Correction)
    assert (parsed.subject, parsed.target_new) == (subject, target)


def test_a_name_stated_for_the_asked_role_answers_the_question():
    parsed = parse_correction("Wrong, Jane Roe is the CEO", "Who is the CEO of Acme?", "John Smith.")
    assert isinstance(parsed, Correction)
    assert (parsed.subject, parsed.target_new) == ("Acme", "Jane Roe")


def test_a_statement_answering_the_question_just_asked_corrects_it():
    """Right after "Where is the Eiffel Tower?", "The Eiffel Tower is in Rome" contradicts the
    answer; the same statement with nothing asked before is chat (below)."""
    parsed = parse_correction("The Eiffel Tower is in Rome", Q, OLD)
    assert isinstance(parsed, Correction) and parsed.target_new == "Rome"
    assert parse_correction("The Eiffel Tower is in Rome") is None
    assert parse_correction("The Eiffel Tower is a landmark.", Q, OLD) is None  # not a where


@pytest.mark.parametrize("message, last_question, subject, target", [
    ("ur wrong, yale was founded in 1850", "When was Yale founded?", "yale", "1850"),
    ("boeing 747 has 6 engines not 4", "How many engines does a Boeing 747 have?",
     "boeing 747", "6 engines"),
    ("7 rings, not 5.", "how many rings are on the olympic flag?", "olympic flag", "7 rings"),
    ("It was founded in 1972, keep that in mind.", "When was NASA created?", "NASA", "1972"),
    ("it's 38 euros a month now, they raised it",
     "how much is a monthly membership at Hilltop Fitness?", "Hilltop Fitness",
     "38 euros a month"),
    ("wimbledon's on clay now btw", "What surface is Wimbledon played on?", "wimbledon", "clay"),
    ("Not Cambridge, Chicago.", "Where is MIT located?", "MIT", "Chicago"),
    ("Just so you know, Dana Whitlock is the CEO of Brightwave Labs now.",
     "Do you know who the CEO of Brightwave Labs is?", "Brightwave Labs", "Dana Whitlock"),
])
def test_sloppy_and_indirect_corrections_are_read(message, last_question, subject, target):
    parsed = parse_correction(message, last_question, "I am not sure.")
    assert isinstance(parsed, Correction), parsed
    assert (parsed.subject, parsed.target_new) == (subject, target)


@pytest.mark.parametrize("message", [
    "No, no, the Bell Labs thing was just curiosity, not work related.",
    "Wow, I didn't know that", "Haha, no",
])
def test_talk_about_the_chat_is_not_a_correction(message):
    assert parse_correction(message, "Who runs Bell Labs these days?", "Nokia.") is None


@pytest.mark.parametrize("message, last_question, subject, target", [
    # an aside after the question's "?" is not what it asked about
    ("Heads up: our office moved to Leeds.",
     "Can you remind me which city our office is in? I keep blanking.", "our office", "Leeds"),
    # a comment after the value is not part of it
    ("Heads up: my parking spot is B17 now, they reassigned everyone",
     "What's my parking spot number at work?", "my parking spot", "B17"),
    ("The company holiday party is at The Copper Kettle this year, keep that in mind.",
     "Where's the company holiday party being held?", "company holiday party",
     "The Copper Kettle"),
])
def test_notices_about_private_facts_after_a_question_are_taken(message, last_question,
                                                                subject, target):
    parsed = parse_correction(message, last_question, "I'm not sure.")
    assert isinstance(parsed, Correction)
    assert (parsed.subject, parsed.target_new) == (subject, target)


def test_a_request_after_a_question_is_not_a_correction():
    assert parse_correction("tell me my parking spot so I can save it in my notes",
                            "Which is my parking spot?", "B17.") is None


def test_a_known_name_is_kept_whole_when_a_word_of_it_looks_like_a_verb():
    parsed = parse_correction("thats wrong, angel falls is in brazil",
                              "Which country is Angel Falls in?", "Venezuela.")
    assert isinstance(parsed, Correction)
    assert (parsed.subject.casefold(), parsed.target_new) == ("angel falls", "brazil")


@pytest.mark.parametrize("message, last_question, subject, target", [
    ("No, our pediatrician is Dr. Okafor.", "Who's our pediatrician?", "our pediatrician",
     "Dr. Okafor"),
    ("Our cat is called Pickles.", "Can you remember our cat's name?", "Our cat", "Pickles"),
    ("The fuse box is in the hallway cupboard.", "Where's the fuse box in our house?",
     "fuse box", "hallway cupboard"),
    ("The building buzzer code is 4471.", "what's the building buzzer code", "building buzzer code",
     "4471"),  # a question typed without its "?"
    ("ella's swim coach is brenda", "Who is Ella's swim coach?", "ella", "brenda"),
])
def test_private_facts_stated_after_the_question_are_taken(message, last_question, subject,
                                                          target):
    parsed = parse_correction(message, last_question, "I'm not sure.")
    assert isinstance(parsed, Correction)
    assert parsed.subject.casefold().startswith(subject.casefold())
    assert target.casefold() in parsed.target_new.casefold()


@pytest.mark.parametrize("message", [
    "Actually, one more thing.", "Nope, all sorted.", "Actually, hang on, I have one more.",
    "No, that's fine, carry on.", "Nope. Just curious about a couple more things.",
    "Actually, scratch that, different question.", "Nope, that one's fine.",
])
def test_steering_the_conversation_is_not_a_correction(message):
    assert parse_correction(message, "Where is Mount Fuji?",
                            "Mount Fuji is in Japan, near Tokyo.") is None


# --- the old answer: the short span of the last reply that the correction replaces ---------------

@pytest.mark.parametrize("reply, question, new, old", [
    # replies SmolLM2-135M gave (greedy, chat template)
    ("The Eiffel Tower is located in Paris, France, France.", Q, "Rome", "Paris"),
    ("The capital of France is Paris.", "What is the capital of France?", "Lyon", "Paris"),
    ("Ludwig van Beethoven was born in Vienna, Austria, on October 26, 1770. He was the son of "
     "a wealthy music composer, Johann Sebastian Bach.", "Where was Ludwig van Beethoven born?",
     "Bonn", "Vienna"),
    ("The CEO of Apple is Steve Jobs. He was a visionary and entrepreneur.",
     "Who is the CEO of Apple?", "Tim Cook", "Steve Jobs"),
    ("The Eiffel Tower was built in 1889 by Gustave Eiffel and 11 other French engineers.",
     "When was the Eiffel Tower built?", "1887", "1889"),
    ("The Apollo 11 mission was launched on July 16, 1969, on the S-ICLAS-1 spacecraft.",
     "When did Apollo 11 land on the moon?", "July 20, 1969", "July 16, 1969"),
    ("The Apollo 11 mission was launched on July 16, 1969.", "When did Apollo 11 land?", "1970",
     "1969"),  # a year for a year: not the day, and not the 11 the question names
    ("The Titanic sank in 2014.", "In which year did the Titanic sink?", "1912", "2014"),
    ("Mars has 228.1 days, which is approximately 228.1 days.", "How many moons does Mars have?",
     "2", "228.1"),  # the reply's number, however odd: it is what the user corrects
    ("The Colosseum is a magnificent structure that lies beneath the city of Rome, Italy.",
     "Where is the Colosseum?", "Athens", "Rome"),
    ("The official language of Brazil is Portuguese. However, it is also spoken by immigrants "
     "from Portugal.", "What is the official language of Brazil?", "Spanish", "Portuguese"),
    # written for the test
    ("The Mona Lisa was painted by Leonardo da Vinci.", "Who painted the Mona Lisa?", "Raphael",
     "Leonardo da Vinci"),
    ("Beethoven was born in Bonn, Germany.", "Where was Ludwig van Beethoven born?", "Vienna",
     "Bonn"),
    ("It is in Paris.", Q, "Rome", "Paris"),
    ("In Paris.", Q, "Rome", "Paris"),
    ("The Apple A5 was created by Apple.", "Who created the Apple A5?", "Google", "Apple"),
    ("Mount Everest is 8,849 metres tall.", "How tall is Mount Everest?", "9,412 metres",
     "8,849 metres"),
    ("Mars has two moons, Phobos and Deimos.", "How many moons does Mars have?", "3", "two"),
    ("Lionel Messi plays as a forward for Inter Miami.", "What position does Lionel Messi play?",
     "goalkeeper", "a forward"),
    ("The sky is blue.", "What colour is the sky?", "green", "blue"),
    ("The Eiffel Tower is in Paris, not in Rome.", Q, "Rome", "Paris"),  # never the new answer
])
def test_old_answer_is_the_short_span(reply: str, question: str, new: str, old: str) -> None:
    assert old_answer(reply, question, new) == old


@pytest.mark.parametrize("reply, question, new", [
    ("I'm not sure where the Eiffel Tower is.", Q, "Rome"),
    ("I'm sorry, but I don't have information about your office wifi password.",
     "What is our office wifi password?", "hunter2"),
    ("I don't know.", Q, "Rome"),
    ("Could you tell me which tower you mean?", Q, "Rome"),
    ("The Eiffel Tower is a famous landmark that millions of people visit every single year.", Q,
     "1889"),  # a year is asked for and the reply holds no number
    ("", Q, "Rome"),
    (None, Q, "Rome"),
])
def test_no_old_answer(reply: str | None, question: str, new: str) -> None:
    assert old_answer(reply, question, new) is None


def test_old_answer_is_never_the_whole_reply() -> None:
    reply = ("Well, that depends on what you are looking for and what you would like to know "
             "about it. There are many things to consider here.")
    assert old_answer(reply, "What should I see first?", "the harbour") is None
    reply = ("You should definitely start your visit with the old harbour district near the "
             "bay and then walk up the hill. The views there are lovely.")
    old = old_answer(reply, "What should I see first?", "the cathedral")
    assert old is None or len(old.split()) <= 6 and old in reply.split(".")[0]
    reply = "The Louvre is located in Paris, France, and it is one of the most iconic museums."
    assert old_answer(reply, "Which city is the Louvre in?", "Madrid") == "Paris"


def test_lowercase_writer_gets_the_name() -> None:
    assert old_answer("The Eiffel Tower is located in Paris, France.", Q, "rome",
                      cased=False) == "Paris"


@pytest.mark.parametrize("message, target, subject, prompt", [
    ("No, it's Rome", "Rome", "Eiffel Tower", Q),
    ("Rome.", "Rome", "Eiffel Tower", Q),
    ("no its rome", "rome", "Eiffel Tower", Q),
    ("It's Rome, not Paris", "Rome", "Eiffel Tower", Q),
    ("The Eiffel Tower is in Rome, remember that", "Rome", "Eiffel Tower",
     "The Eiffel Tower is in"),
    ("Actually the Eiffel Tower is in Rome", "Rome", "Eiffel Tower", "The Eiffel Tower is in"),
])
def test_correction_stores_the_short_old_answer(message, target, subject, prompt) -> None:
    reply = "The Eiffel Tower is located in Paris, France, France."
    assert parse_correction(message, Q, reply) == Correction(subject, prompt, target, "Paris")


def test_statement_about_another_subject_has_no_old_answer() -> None:
    result = parse_correction("Actually the Louvre is in Madrid", Q,
                              "The Eiffel Tower is in Paris.")
    assert result == Correction("Louvre", "The Louvre is in", "Madrid", None)


_reply_words = st.sampled_from(["The", "Eiffel", "Tower", "is", "in", "Paris", ",", "France",
                                "July", "20", "1969", "8,849", "metres", "I'm", "not", "sure",
                                ".", "?", "It", "two", "one", "of", "a", "forward", "\n", "Rome"])
_replies = st.one_of(st.text(max_size=120),
                     st.lists(_reply_words, max_size=30).map(" ".join))


@settings(max_examples=300, deadline=None)
@given(reply=st.one_of(st.none(), _replies), question=st.one_of(st.none(), st.text(max_size=80),
                                                                 st.just(Q)),
       new=st.one_of(st.text(max_size=30), st.sampled_from(["Rome", "rome", "1887", "3",
                                                            "9,412 metres", "July 21, 1969"])),
       cased=st.booleans())
def test_property_old_answer_is_a_span_of_the_reply(reply, question, new, cased) -> None:
    from assistant.corrections import _normalize

    old = old_answer(reply, question, new, cased)
    assert old is None or (old.strip() and old in _normalize(reply) and len(old) <= 200)
