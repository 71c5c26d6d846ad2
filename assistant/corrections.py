"""Read a plain-language chat message as a correction of a fact.

The editor needs a structured edit (subject, prompt, target_new), but users type things like
"No, it's Rome". Simple, predictable rules (no model) are used here so that every failure can be
explained back to the user as a Clarification instead of silently storing a wrong edit.

Rules, in order:
1. Questions (ending in "?"), chit-chat ("no worries", "nope, that's all"), instructions and
   statements about oneself are not corrections (None): the chat answers them normally.
2. A correction must say so: an opener ("no", "wrong", "actually", "remember that", "fyi", "the
   correct answer is", ...; see _OPENERS), possibly after "hmm," or "sorry, but"; or "actually"
   early or last in the message; or a contrast that rejects the last answer ("It's Ottawa, not
   Toronto"). A bare statement ("The Eiffel Tower is in Rome") is chat, not an edit.
3. If the rest states a full fact ("the Eiffel Tower is in Rome"), it is split at its verb: the
   subject is the entity on the left ("the <relation> of X" -> X, "X's <relation>" -> X), the
   target is what follows the last preposition/article/adverb in the lowercase run after the
   verb ("is now in Rome" -> "Rome"), else the whole right side; the prompt is the statement up
   to the target. "Meta owns it" or "the CEO is Jane Roe" answer the last question instead.
4. Otherwise the rest answers the previous question ("he was born in Bonn" -> "Bonn"): the
   subject is the main name in that question and the prompt is the question. An answer that
   cannot answer it ("No, that's what I thought"; a lowercase "a long story" where a name is
   due) is chat, and a fact with neither a name nor a number ("short answers are better") is
   an opinion: both are None.
Accuracy on a labelled message set: `python -m bench.corrections` (tests/data/corrections.jsonl).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from store.db import MAX_PROMPT_CHARS as MAX_QUESTION  # one set of limits for parser and store
from store.db import MAX_SUBJECT_CHARS as MAX_SUBJECT
from store.db import MAX_TARGET_CHARS as MAX_ANSWER

_MAX_MESSAGE = 2000  # longer messages are not corrections; the cap also bounds the work done


@dataclass(frozen=True)
class Correction:
    """One fact edit: the prompt mentions the subject and should now continue with target_new."""

    subject: str
    prompt: str
    target_new: str
    target_old: str | None = None


@dataclass(frozen=True)
class Clarification:
    """Asked back instead of guessing, so that a misread message never becomes a wrong edit."""

    question: str


from assistant import naming
from assistant.correction_lexicon import (  # noqa: F401  (vocabulary used by the rules)
    _ACTUALLY_RE,
    _ADVERBS,
    _AFFIRM_RE,
    _ARTICLES,
    _ASK_ANSWER,
    _ASK_FACT,
    _ASK_LONG,
    _ASK_NEGATED,
    _ASK_SUBJECT,
    _BAD_SUBJECTS,
    _CHITCHAT,
    _CLOSING_RE,
    _CONNECTORS,
    _CONTEXT_PREP_RE,
    _CONTRAST_RES,
    _EXAMPLE,
    _FILLER_RE,
    _FIRST_PERSON,
    _HEDGE_RE,
    _INSTRUCTION_WORDS,
    _INTERJECTION_RE,
    _IRREGULAR,
    _KINDS,
    _LEAD_RE,
    _MEASURE_RE,
    _NEGATIONS,
    _NEG_ANY_RE,
    _NOT_OPENER_RE,
    _OPENERS,
    _OPENER_RE,
    _POSSESSIVES,
    _PRONOUN_TARGETS,
    _QUESTION_WORDS,
    _QUOTES,
    _SPLIT_WORDS,
    _STATEMENT_ONLY,
    _SUFFIX_RE,
    _TAIL_RE,
    _TITLES,
    _VERB_RE,
    _VERB_WORDS,
    _WH_TAIL_RE,
    _WORD_RE,
    _ACTOR_RE,
    _ASK_LEAD_RE,
    _BARE_LEAD_RE,
    _BARE_SUFFIX_RE,
    _EMBEDDED_RE,
    _LAUGH_RE,
    _MEMORY_SUFFIX_RE,
    _META_SUBJECT_RE,
    _MY_OUR,
    _PERSON_ROLES,
    _INTERJECTIONS,
    _UPDATE_LEAD_RE,
    _WH_WORD_RE,
    _DATE_RE,
    _MONTH_RE,
    _NOT_NAMES,
    _NUMBER_RE,
    _NUMBER_WORD_RE,
    _UNSURE_RE,
)


def _normalize(text: object) -> str:
    """Collapse whitespace and drop control/format characters so the rules see plain text."""
    if not isinstance(text, str):
        return ""
    text = text.replace("\u2019", "'")  # curly apostrophes would defeat "it's" / "X's" matching
    return " ".join("".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
                    .split())


def _clean(text: str) -> str:
    """Strip surrounding quotes and trailing punctuation from a target or subject."""
    prev = None
    while prev != text:
        prev = text
        text = text.strip().rstrip(".!?,;:\u2026").strip(_QUOTES).strip()
    return text


def _meaningful(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _is_question(text: str) -> bool:
    return text.rstrip(" )\"'").endswith(("?", "\uff1f"))


def _asked(text: str) -> bool:
    """The last message asked something, with or without its "?" ("what is the alarm code")."""
    return _is_question(text) or bool(_WH_WORD_RE.match(text.strip()))


def _participle(word: str) -> bool:
    """Rough test for a verb form such as 'built', 'founded', 'born' (no dictionary needed)."""
    return word.endswith(("ed", "en")) or word in _IRREGULAR


def _name_like(text: str) -> bool:
    """Has a capital letter or digit, or letters of a script without case (Chinese, Arabic)."""
    return any(ch.isdigit() or ch.isalpha() and not ch.islower() for ch in text)


def _strip_article(text: str) -> str:
    head, _, tail = text.partition(" ")
    return tail.strip() if head.lower() in _ARTICLES and tail.strip() else text


# -- is it a correction at all? ---------------------------------------------------------------
def _split_openers(text: str) -> tuple[list[str], str]:
    """Openers at the start of the message ("No, actually, ...") and the rest after them."""
    openers: list[str] = []
    rest = text
    hesitation = _INTERJECTION_RE.match(rest)
    if hesitation and _OPENER_RE.match(rest[hesitation.end():]):  # "Hmm, no. It's Canberra"
        rest = rest[hesitation.end():]
    while (m := _OPENER_RE.match(rest)) and not _NOT_OPENER_RE.match(rest) and len(openers) < 4:
        openers.append(" ".join(m.group(1).lower().split()))
        rest = rest[m.end():]
    return openers, rest


def is_correction_like(message: str) -> bool:
    """True when the message opens like a correction, so an unreadable one deserves a question back.

    Questions and polite phrases that merely start with "no" ("No worries") are excluded.
    """
    text = _normalize(message)
    if not text or _is_question(text) or _NOT_OPENER_RE.match(text):
        return False
    return bool(_split_openers(text)[0])


def _implicit_correction(text: str, last_answer: str | None) -> str | None:
    """The claim of a message that corrects without an opener: a late "actually" ("It's
    actually Rome", "Ankara, actually") or a contrast naming the last answer ("Rome, not Paris")."""
    m = _ACTUALLY_RE.fullmatch(text)
    if m and (not _clean(m["right"]) or len(m["left"].split()) <= 3):
        return _clean(f"{m['left']} {m['right']}")
    answer = _normalize(last_answer).casefold()
    for pattern in _CONTRAST_RES:
        m = pattern.fullmatch(_clean(text))
        neg = _clean(m["neg"]).casefold() if m else ""
        if neg and re.search(r"(?<!\w)%s(?!\w)" % re.escape(neg), answer):
            return _clean(m["pos"])
    return None


def _reads_as_chat(rest: str) -> bool:
    """Closings, instructions and statements about oneself that happen to follow an opener."""
    if _CLOSING_RE.match(rest) or re.search(r"\bplease\b", rest, re.I):
        return True
    if re.fullmatch(r"(?:it|that|this)\s+[a-z]+", rest, re.I):  # "it depends", "that helps"
        return True
    words = rest.split()
    first_word = words[0].lower().strip(",.:;!") if words else ""
    name_like = len(words) > 1 and words[0][:1].isupper() and words[1][:1].isupper()
    return (first_word in _INSTRUCTION_WORDS or first_word in _FIRST_PERSON) and not name_like


# -- subjects ---------------------------------------------------------------------------------
def _name_runs(text: str, skip_question_word: bool) -> list[tuple[int, int, int]]:
    """Spans (word_count, start, end) of capitalised-word runs such as 'Leonardo da Vinci'."""
    words = list(_WORD_RE.finditer(text))
    runs: list[tuple[int, int, int]] = []
    start = end = count = 0
    pending = 0  # connectors seen since the last capitalised word of the run
    for i, m in enumerate(words):
        w = m.group()
        gap = text[words[i - 1].end():m.start()] if i else ""
        if count and gap.strip():  # punctuation between words ends a run
            runs.append((count, start, end))
            count = pending = 0
        first_skip = (i == 0 and skip_question_word
                      and w.lower().split("'")[0] in _QUESTION_WORDS)  # "What's", "Where"
        capital = (w[0].isupper() and not first_skip and w not in ("The", "A", "An")
                   and (w != "I" or count > 0))  # "World War I", but not "I think"
        nxt = words[i + 1].group() if i + 1 < len(words) else ""
        if capital or (w[0].isdigit() and (count or nxt[:1].isupper())):  # "2018 FIFA World Cup"
            if not count:
                start = m.start()
            count += pending + 1
            pending = 0
            end = m.end() - 2 if w.endswith("'s") else m.end()
            if w.endswith("'s"):  # a possessive ends the name: "Darrieux's mother tongue"
                runs.append((count, start, end))
                count = 0
        elif count and w.lower() in _CONNECTORS:
            pending += 1
        elif count:
            runs.append((count, start, end))
            count = pending = 0
    if count:
        runs.append((count, start, end))
    return runs


def _drop_relation(name: str) -> str:
    """'CEO of Acme' / 'symbol for gold' -> the entity after of/for; 'Bank of America' stays."""
    parts = re.split(r"\s(?:of|for)\s", name, maxsplit=1)
    if len(parts) < 2:
        return name
    head, tail = parts
    last = head.split()[-1] if head.split() else ""
    if (any(w[0].islower() for w in head.split()) or head.lower() in _TITLES
            or (last.isupper() and 2 <= len(last) <= 5)):
        return _strip_article(tail.strip())
    return name


def _subject_from_question(question: str) -> str | None:
    """The entity a question is about: its longest capitalised name, else the tail noun phrase.
    An aside after the question mark ("... in? I keep blanking") is not part of it."""
    if "?" in question[:-1]:
        question = question[:question.index("?") + 1]
    runs = _name_runs(question, skip_question_word=True)
    if runs:
        best = max(runs, key=lambda r: (r[0], -r[1]))  # longest; ties go to the first
        subject = _drop_relation(_clean(question[best[1]:best[2]]))
        return subject if _meaningful(subject) else None
    # All lowercase: "what is the capital of france" -> "france", "who wrote hamlet" ->
    # "hamlet", "when was the eiffel tower built" -> "eiffel tower".
    q = _ASK_LEAD_RE.sub("", _clean(question))
    q = re.sub(r"^(who|what|where|when|how|which)'s\b", r"\1 is", q, flags=re.I)
    around = _EMBEDDED_RE.match(q) or _ACTOR_RE.match(q)  # "who my manager is"
    if around:
        words = around["np"].split()
        if len(words) > 1 and words[0].lower() in _ARTICLES:
            words = words[1:]
        subject = " ".join(words)
        if _meaningful(subject) and subject.lower() not in _BAD_SUBJECTS:
            return subject
    tail, wh = _TAIL_RE.match(q), _WH_TAIL_RE.match(q)
    words = (tail.group(1) if tail else wh.group(2) if wh else "").split()
    if words and wh and wh.group(1).lower() in ("do", "does", "did"):
        words = words[:-1]  # "when did the titanic sink": the last word is the verb
    while words and (_participle(words[-1]) or words[-1] in _SPLIT_WORDS):
        words = words[:-1]
    if len(words) > 1 and words[0] in _KINDS:  # "the novel 1984" -> "1984"
        words = words[1:]
    if len(words) > 1 and words[0].lower() in _SPLIT_WORDS - _ARTICLES:  # "on the flag"
        words = words[1:]
    subject = _strip_article(" ".join(words))
    return subject if _meaningful(subject) and subject.lower() not in _BAD_SUBJECTS else None


def _subject_from_left(left: str) -> str | None:
    """The entity on the left of a statement's verb, or None when it is a pronoun or not a name."""
    core = _strip_article(_clean(left))
    possessive = re.match(r"(.+?)'s\b", core)
    words = _clean(possessive.group(1) if possessive else _drop_relation(core)).split()
    while len(words) > 1 and words[-1].lower() in _ADVERBS:  # "Lionel Messi now plays ..."
        words.pop()
    subject = " ".join(words)
    bare = re.sub(r"'(?:s|re|ll|d|ve|m)$", "", subject.lower())  # "They're based in ..."
    own = len(words) > 1 and words[0].lower() in _MY_OUR  # "our standup", "my landlord"
    if (not _meaningful(subject) or bare in _BAD_SUBJECTS or len(words) > 10
            or words[0].lower() in _POSSESSIVES and not own or len(subject) > MAX_SUBJECT):
        return None
    return subject


# -- statements and replies -------------------------------------------------------------------
def _find_verb(text: str) -> tuple[int, int] | None:
    """Span of the statement's main verb: a known verb, or a verb-like word right after a name
    ("Toko Yasuda drums for ..."), whichever comes first; a non-verb-like word after the name
    ("Inner Circle railway line can ...") is used only when no known verb is found."""
    m = _VERB_RE.search(text)
    best = (m.start(), m.end()) if m and m.start() > 0 else None
    runs = _name_runs(text, skip_question_word=False)
    lead = text[:runs[0][1]].strip().lower() if runs else "x"
    if runs and lead in ("", "the"):
        after = re.match(r"(?:'s)?\s+([a-z]+)\s+\S", text[runs[0][2]:])
        word = after.group(1) if after else ""
        if word and word not in _SPLIT_WORDS | _CONNECTORS | _ADVERBS:
            span = (runs[0][2] + after.start(1), runs[0][2] + after.end(1))
            verb_like = word.endswith("s") or _participle(word)
            if best is None or (span[0] < best[0] and verb_like):
                best = span
    return best


def _known_name_end(text: str) -> int:
    """Where a name from the alias table that opens the text ends (0 when none does)."""
    words = list(re.finditer(r"[\w'-]+", text[:80]))
    start = 1 if words and words[0].group().lower() == "the" else 0
    for end in range(min(len(words), start + 5), start + 1, -1):  # two words or more
        if naming.table().canonical(text[words[start].start():words[end - 1].end()]):
            return words[end - 1].end()
    return 0


def _parse_statement(text: str) -> tuple[str, str, str] | None:
    """(subject, prompt, target) of a full statement such as 'the Louvre is in Madrid'.
    "PERSON is the ROLE of ORG" is about ORG ("Dana Whitlock is the CEO of Brightwave")."""
    text = re.sub(r"(\w)'s\s+(?=(?:on|in|at|now|located|based|held|played)\b)", r"\1 is ",
                  text)  # "wimbledon's on clay" -> "wimbledon is on clay"
    role = re.fullmatch(r"(?P<who>[A-Z][\w.'-]*(?:\s+[A-Z][\w.'-]*){0,3})\s+(?P<verb>is|was)\s+"
                        r"(?:now\s+)?the\s+(?P<role>(?:[a-z]+\s+){0,2}?[A-Za-z]+)\s+(?P<rel>of|at|for)\s+"
                        r"(?P<org>\S.*?)(?:\s+now)?", text)
    if role and role["role"].split()[-1].lower() in _PERSON_ROLES:
        org = _strip_article(_clean(role["org"]))
        return org, f"The {role['role']} {role['rel']} {role['org'].rstrip()} {role['verb']}", \
            role["who"]
    verb = _find_verb(text)
    known = _known_name_end(text)
    if verb and verb[0] < known:  # "angel falls is in brazil": "falls" is part of a name
        verb = _find_verb(text[known:])
        verb = (verb[0] + known, verb[1] + known) if verb else None
    subject = _subject_from_left(text[:verb[0]]) if verb else None
    if subject is None:
        return None
    tokens = list(re.finditer(r"\S+", text[verb[1]:]))
    target_start = verb[1] + tokens[0].start() if tokens else len(text)
    for k, tok in enumerate(tokens):
        w = tok.group()
        if not (w.isalpha() and w.islower()):
            break
        if (w in _SPLIT_WORDS or w in _ADVERBS) and k < len(tokens) - 1:
            target_start = verb[1] + tokens[k + 1].start()
    # "won his Nobel Prize in 1930": the value is the date or name after the last preposition
    tail = re.search(r"\s(?:in|on|at|by|from|since|during|for)\s+(\d[\d,./-]*|[A-Z][\w.'-]*"
                     r"(?:\s+[A-Z][\w.'-]*)*)[.!]*$", text[target_start:])
    if tail and tail.start() > 0:
        target_start += tail.start(1)
    named = re.match(r"(?:called|named|taught by|run by|done by)\s+", text[target_start:], re.I)
    if named:  # "Our cat is called Pickles": the value is the name
        target_start += named.end()
    prompt = text[:target_start].rstrip(" ,:;-" + _QUOTES)
    prompt = re.sub(r"\s+(?:actually|really|now)\s+", " ", prompt, flags=re.I)
    first = prompt[:1].upper()
    if len(first) == 1 and first.casefold() == prompt[:1].casefold():
        prompt = first + prompt[1:]
    return subject, prompt, text[target_start:]


def _answer_from_reply(text: str) -> str:
    """The bare answer in a reply to the last question: "he was born in Rome" -> "Rome"."""
    affirm = _AFFIRM_RE.fullmatch(text)
    if affirm:
        text = affirm.group(1)
    lead = _LEAD_RE.match(text)
    if lead:
        text = text[lead.end():]
        verb = re.match(r"([a-z]+)\s+(?=\S)", text)
        # "they play opera", "it's located in Oslo"; not "it's the capital of Italy"
        if lead["pron"] and verb and (_participle(verb.group(1)) or not lead["aux"] and
                                      verb.group(1) not in _SPLIT_WORDS | _ADVERBS):
            text = text[verb.end():]
    prep = _CONTEXT_PREP_RE.match(text)
    return text[prep.end():] if prep else text


# A comment after the value: ", they reassigned everyone", "this year", "from now on".
_AFTERTHOUGHT_RE = re.compile(
    r"(?:,\s*(?:they|we|he|she|it|i|you|so|because|since)\b.*"
    r"|\s+(?:this|next) (?:year|time|week|month|season)|\s+these days|\s+from now on"
    r"|\s+for now)$", re.I)


def _tidy_target(text: str) -> str:
    """Drop what is not the value: 'a goaltender', 'the Nile', 'Rome now', '330 m tall'."""
    text = _AFTERTHOUGHT_RE.sub("", _clean(text))  # "B17 now, they reassigned everyone"
    words = _clean(text).split()
    while len(words) > 1 and (words[0].lower() in ("a", "an") or words[0] == "the" and
                              words[1][:1].isupper()):
        words.pop(0)
    while len(words) > 1 and words[-1].lower().strip(".,!") in _ADVERBS:
        words.pop()
    target = _clean(" ".join(words))
    measure = _MEASURE_RE.fullmatch(target)
    return measure.group(1) if measure else target


# -- the old answer ---------------------------------------------------------------------------
_OLD_MAX_WORDS = 6  # a fallback clause longer than this is a sentence, not an answer


def _folded_words(text: str) -> set[str]:
    return {re.sub(r"'s$", "", w.casefold()) for w in _WORD_RE.findall(text)}


def _sentence_start(text: str, pos: int) -> bool:
    before = text[:pos].rstrip().rstrip(_QUOTES + "*")
    return not before or before[-1] in ".!?:\n"


def _asked_names(question: str) -> set[str]:
    """Last words of the names in the question ("Beethoven", "F40" of "Ferrari F40"): a reply
    name ending the same way is the subject again; "Apple" answering "Who created the Apple
    A5?" is not. A question without names gives all its words."""
    runs = _name_runs(question, skip_question_word=True)
    heads = {re.sub(r"'s$", "", _WORD_RE.findall(question[start:end])[-1].casefold())
             for _, start, end in runs if _WORD_RE.findall(question[start:end])}
    return heads or _folded_words(question)


def _old_name(reply: str, question: str, new: str) -> str | None:
    """The first capitalised name in the reply that is not the question's subject again."""
    heads = _asked_names(question)
    for _, start, end in _name_runs(reply, skip_question_word=False):
        words = list(_WORD_RE.finditer(reply, start, end))
        if _sentence_start(reply, start):  # "It is in Paris", "In Paris": no name in "It"/"In"
            while words and words[0].group().casefold() in _NOT_NAMES | _SPLIT_WORDS:
                words.pop(0)
        if not words:
            continue
        name = reply[words[0].start():end]
        if re.sub(r"'s$", "", words[-1].group().casefold()) in heads or \
                name.casefold() == new.casefold():
            continue  # the subject ("The Eiffel Tower is ..."), or the new answer itself
        return name
    return None


def _old_number(reply: str, asked: set[str], new: str) -> str | None:
    """The reply's date or number in the shape of the new one ("1889" for "1887", "8,849
    metres" for "9,412 metres"); a number the question holds ("Apollo 11") is not it."""
    number = _NUMBER_RE.search(new)
    digits = len(re.sub(r"\D", "", number.group())) if number else 0
    unit = re.match(r"\S*\d\S*\s+([a-z]+)", new, re.I)
    patterns = ([_DATE_RE] if _MONTH_RE.search(new) else []) + [_NUMBER_RE, _NUMBER_WORD_RE]
    for pattern in patterns:
        found = [m for m in pattern.finditer(reply)
                 if m.group().casefold() not in asked and m.group().casefold() != new.casefold()]
        if pattern is _NUMBER_RE and digits:  # same number of digits first: a year for a year
            found.sort(key=lambda m: len(re.sub(r"\D", "", m.group())) != digits)
        if found:
            m = found[0]
            after = re.match(r"\s+([a-z]+)", reply[m.end():], re.I)
            if unit and after and after.group(1).casefold().rstrip("s") == \
                    unit.group(1).casefold().rstrip("s"):
                return reply[m.start():m.end() + after.end()]
            return m.group()
    return None


def _old_clause(reply: str, asked: set[str]) -> str | None:
    """The first clause of the reply without what echoes the question: "The sky is blue,
    mostly" -> "blue"; None when nothing short is left."""
    sentence = re.split(r"(?<=[.!?])\s+|\n", reply.strip(), maxsplit=1)[0]
    words = re.split(r"\s*[,;:(\u2013\u2014]\s*|\s+-\s+", sentence, maxsplit=1)[0].split()

    def echo(word: str) -> bool:
        w = re.sub(r"'s$", "", word.casefold().strip(".!?\"'"))
        return (w in asked | _SPLIT_WORDS | _VERB_WORDS | _NOT_NAMES or w.rstrip("s") in asked
                or bool(_VERB_RE.fullmatch(w)) or word.islower() and _participle(w))

    i = 0
    while i < len(words) and echo(words[i]):
        i += 1
    if i and words[i - 1].casefold() in _ARTICLES:
        i -= 1  # keep the article: "a forward"
    rest = words[i:]
    cut = next((j for j, w in enumerate(rest) if j and w.casefold() in _SPLIT_WORDS - _ARTICLES),
               len(rest))
    old = _clean(" ".join(rest[:cut]))
    return old if _meaningful(old) and len(old.split()) <= _OLD_MAX_WORDS else None


def old_answer(reply: str | None, question: str | None, new_target: str,
               cased: bool = True) -> str | None:
    """The short answer in the assistant's last reply that the correction replaces: "Paris"
    from "The Eiffel Tower is located in Paris, France." when the user says "No, it's Rome".

    The edit stores this as target_old (exported as ground_truth), so it must be the span
    that plays the role the new target plays: a number or date for a number (None when the
    reply has none), else the first name that is not the question's subject again (cased=False:
    the writer types in lowercase, so "rome" is a name too), else a short first clause. None
    for a reply that gave no answer ("I'm not sure ..."). The whole reply stays in the turn log.
    """
    reply = _normalize(reply)
    if not reply or _UNSURE_RE.match(reply) or _is_question(reply.split(". ")[0]):
        return None
    asked = _folded_words(question or "")
    new = _clean(new_target)
    if re.search(r"\d", new) or _NUMBER_WORD_RE.fullmatch(new):
        old = _old_number(reply, asked, new)  # no number in the reply: no old number either
    else:
        name = _old_name(reply, question or "", new) if _name_like(new) or not cased else None
        old = name or _old_clause(reply, asked)
    old = _clean(old or "")
    return old[:MAX_ANSWER] or None


# -- public API -------------------------------------------------------------------------------
def parse_correction(message: str, last_question: str | None = None,
                     last_answer: str | None = None) -> Correction | Clarification | None:
    """Read a chat message as a correction of the last answer or as a stated fact.

    None: the message is not a correction (a question, chit-chat, an instruction) and should be
    answered normally. last_question/last_answer give context to short replies ("No, it's Rome").
    """
    text = _normalize(message)
    if not text or _is_question(text) or _NOT_OPENER_RE.match(text):
        return None
    if _WH_WORD_RE.search(text) and not _split_openers(text)[0]:
        return None  # a question without its "?": "big bens clock tower is in which city"
    if len(text) > _MAX_MESSAGE:
        return Clarification(_ASK_LONG) if is_correction_like(text) else None
    suffix = _MEMORY_SUFFIX_RE.fullmatch(text)
    if suffix and not _split_openers(text)[0]:  # "The Louvre is in Madrid, remember that."
        text = f"remember that {suffix['claim']}"
    openers, rest = _split_openers(text)
    question = _normalize(last_question)[:_MAX_MESSAGE] or None
    if not openers:
        implicit = _implicit_correction(text, last_answer)
        if implicit is None:
            value = _bare_answer(text, question, last_answer) if question else None
            if value is not None:
                return _build(value, False, False, not text.islower(), question, last_answer)
            if question and _restates_subject(text, question, last_answer):
                rest = _BARE_SUFFIX_RE.sub("", _SUFFIX_RE.sub("", _clean(text)))
                return _build(rest, False, False, not text.islower(), question, last_answer)
            update = _plain_update(text)
            if update is not None:
                return _build(update, True, False, not text.islower(), question, last_answer)
            return None
        openers, rest = ["actually"], implicit
    rest = _LAUGH_RE.sub("", rest)
    rest = _FILLER_RE.sub("", _SUFFIX_RE.sub("", _clean(rest)))  # "..., not Paris", "thanks"
    if len(rest.split()) >= 3:
        rest = _BARE_SUFFIX_RE.sub("", rest)  # "the saxophone not drums"
    hedge = _HEDGE_RE.match(rest)
    rest = _clean(rest[hedge.end():] if hedge else rest)
    told = openers[0] in _STATEMENT_ONLY  # "remember that", "fyi": the user states a fact
    owned = rest and rest.split()[0].lower() in _MY_OUR and (told or _about_question(rest, question))
    if rest and _reads_as_chat(rest) and not owned:  # "No, our landlord is Gerald Haddad": a fact
        return None  # "Actually, tell me about Rome"; but "Actually, Will Smith is ..." is a fact
    if _NEG_ANY_RE.search(rest):
        # "it's not Rome, it's Paris": keep the positive last clause; a lone negation says
        # what is wrong but not what is right.
        parts = re.split(r"\s*[,;]\s*(?:but\s+)?|\s+but\s+", rest)
        if len(parts) < 2 or _NEG_ANY_RE.search(parts[-1]) or not parts[-1].strip():
            return Clarification(_ASK_NEGATED)
        rest = parts[-1].strip()
    if not rest:
        if set(openers) <= {"no", "nope", "nah"} and question is None:
            return None  # a bare "no" with nothing asked before is just a reply
        negation = any(o in _NEGATIONS for o in openers)
        return Clarification(_ASK_ANSWER if negation and question else _ASK_FACT)
    strong = any(o in _NEGATIONS and o not in ("no", "nope", "nah") for o in openers)
    return _build(rest, told, strong, not text.islower(), question, last_answer)


def _plain_update(text: str) -> str | None:
    """A statement that announces a change without an opener: "Oh and the office is on the
    9th floor now." (a full statement about a named or owned thing, ending in "now")."""
    rest = _clean(_UPDATE_LEAD_RE.sub("", text))
    if not re.search(r"\bnow$", rest, re.I) or rest.split()[0].lower() in _FIRST_PERSON - _MY_OUR:
        return None
    statement = _parse_statement(rest)
    return rest if statement is not None else None


def _about_question(rest: str, question: str | None) -> bool:
    """A statement about something the last question named ("No, our landlord is Gerald" after
    "What's our landlord called?"), not news about oneself after another topic."""
    statement = _parse_statement(rest) if question else None
    if statement is None:
        return False
    asked = {re.sub(r"'s$", "", w.casefold()) for w in _WORD_RE.findall(question)}
    return bool({w.casefold() for w in statement[0].split()} - _MY_OUR - _ARTICLES & asked)


def _restates_subject(text: str, question: str, last_answer: str | None) -> bool:
    """A plain statement right after a question, about what the question asked, that the
    last answer did not give: "Messi is a goalkeeper." after "What position does Lionel Messi
    play?"."""
    words = _clean(text).split()
    if _is_question(text) or not _asked(question) or len(text) > 200 or \
            words[:1] and words[0].lower() in _INSTRUCTION_WORDS:  # "tell me my parking spot"
        return False
    statement = _parse_statement(_clean(text))
    # the question's subject, else its words ("Can you remember our cat's name?")
    q_subject = _subject_from_question(question) or _WORD_RE.sub(
        lambda m: re.sub(r"'s$", "", m.group()), question)
    if statement is None or not q_subject:
        return False
    subject, prompt, target = statement
    same = {w.casefold() for w in subject.split()} & \
        {re.sub(r"'s$", "", w.casefold()) for w in q_subject.split()} - _MY_OUR - _ARTICLES
    target = _tidy_target(target)
    if not (same and target) or target.casefold() in _normalize(last_answer).casefold():
        return False
    wh = question.split()[0].lower().split("'")[0]
    if wh == "where":  # "Where is the Louvre?" is not answered by "The Louvre is a museum."
        last = [w for w in prompt.lower().split() if w not in _ARTICLES][-1:]
        return bool(last) and last[0] in _SPLIT_WORDS - _ARTICLES
    if wh == "when":
        return bool(re.search(r"\d", target))
    if wh == "who":  # a name, or any value from someone who types in lowercase
        return _name_like(target) or text.islower()
    return True


def _bare_value(text: str) -> str:
    """The value in a short reply: "7 rings, not 5" -> "7 rings"; "38 euros a month now, they
    raised it" -> "38 euros a month now"; "Not Cambridge, Chicago" -> "Chicago"."""
    text = _clean(_LAUGH_RE.sub("", text))
    contrast = _CONTRAST_RES[0].fullmatch(text)
    if contrast:
        return _clean(contrast["pos"])
    text = _SUFFIX_RE.sub("", text)
    head, comma, _ = text.partition(",")
    numeric = comma and head.split() and head.split()[0][:1].isdigit()  # "7 rings, ..."
    return _clean(head if numeric else text)


def _bare_answer(text: str, question: str, last_answer: str | None) -> str | None:
    """The value of a short reply to a question that gives another answer, with no opener:
    "It's Lyon.", "They're in Leeds", or just "Lyon." (every word a name or number); None
    when the message is not such a reply."""
    if _is_question(text) or not _asked(question) or len(text.split()) > 10:
        return None
    lead = _BARE_LEAD_RE.match(text)
    answer = _bare_value(text[lead.end():] if lead else text)
    if lead:  # "it's 38 euros a month now, they raised it": the comment after the comma goes
        answer = _clean(answer.partition(",")[0])
    words = answer.split()
    if words and words[0].lower().strip(",.!") in _INTERJECTIONS:
        return None
    if not words or len(words) > (6 if lead else 4) or \
            any(w.lower().strip(",.!'") in _CHITCHAT for w in words):
        return None
    if lead is None and not (words[0][:1].isdigit() or
                             all(w[:1].isupper() or w[:1].isdigit() for w in words)):
        return None
    if not (_name_like(answer) or lead is not None and text.islower()):  # "its at elmfield park"
        return None
    if re.search(r"\b(?:I|me|my|you|your|we|our)\b", answer):
        return None
    core = _answer_from_reply(answer)
    return None if _normalize(core).casefold() in _normalize(last_answer).casefold() else answer


def _opinion(prompt: str, target: str) -> bool:
    """An evaluation rather than a fact: a short predicate straight after the verb ("short
    answers are *better*"), not a place or thing ("the keys are in *the watering can*")."""
    last = prompt.split()[-1].lower() if prompt.split() else ""
    return len(target.split()) <= 2 and last not in _SPLIT_WORDS


def _fits_question(answer: str, question: str, last_answer: str | None, cased: bool) -> bool:
    """Whether a reply's answer could answer the question. A value never speaks of the people
    chatting ("what I thought"). Where a name or number is wanted, a lowercase leftover ("again",
    "a long story") from a writer who uses capitals is chat: who/where/when want one, and so does
    a question whose last answer was one ("The capital of France is Paris.": all its words that
    are not in the question, not function words and not sentence-initial are capitalised)."""
    if re.search(r"\b(?:my|me|you|your|we|our|us)\b|(?<![\w.])I(?![\w.])", answer):
        return False
    if not cased or _name_like(answer):
        return True
    if question.split()[0].lower() in ("who", "where", "when"):
        return False
    asked = {re.sub(r"'s$", "", w.casefold()) for w in _WORD_RE.findall(question)}
    new = [w for sentence in re.split(r"[.!?;:]\s+", _normalize(last_answer))
           for w in _WORD_RE.findall(sentence)[1:]
           if re.sub(r"'s$", "", w.casefold()) not in asked | _SPLIT_WORDS | _VERB_WORDS]
    return not new or not all(_name_like(w[0]) for w in new)


def _build(rest: str, statement_only: bool, strong: bool, cased: bool, question: str | None,
           last_answer: str | None) -> Correction | Clarification | None:
    """Turn the claim after the openers into a Correction, or ask back, or decline (None).

    strong: an explicit "that's wrong" (not a bare "no"), so a reply without an answer is asked
    about rather than taken for chat. cased: the writer uses capital letters at all."""
    statement = None if _AFFIRM_RE.fullmatch(rest) else _parse_statement(rest)
    q_subject = _subject_from_question(question) if question else None
    if statement is not None and q_subject:
        subject, _, target = statement
        if _clean(target).lower() in _PRONOUN_TARGETS:  # "Meta owns it": Meta is the answer
            statement, rest = None, subject
        elif (_strip_article(_clean(target)).casefold() in question.casefold()
              and subject.casefold() not in question.casefold() and _name_like(subject)):
            statement, rest = None, subject  # "Jane Roe is the CEO" answers "Who is the CEO?"
        elif (subject.casefold() != q_subject.casefold() and subject.casefold() in
              question.casefold() and _strip_article(subject).lower() in _TITLES):
            statement, rest = None, target  # "the CEO is now Jane Roe" answers the question
    if statement is not None and _META_SUBJECT_RE.search(statement[0]):
        return None  # "the Bell Labs thing was just curiosity": talk about the chat
    if statement is not None:
        subject, prompt, target = statement
        old = last_answer if question and subject.casefold() in question.casefold() else None
        known = f"{question or ''} {prompt}"  # words the reply may echo: not the old answer
    elif statement_only and not (question and _LEAD_RE.match(rest)):
        return Clarification(_ASK_FACT)  # "It was founded in 1972, keep that in mind" answers
    else:
        target, old, known = _answer_from_reply(rest), last_answer, question
    target = _tidy_target(target)
    old = old_answer(old, known, target, cased)
    if _WH_WORD_RE.search(target):
        return None  # "the Louvre is in which city": asked, not told
    if not _meaningful(target):
        return Clarification(_ASK_ANSWER if question or statement else _ASK_FACT)
    if all(w.strip(",.!'") in _CHITCHAT for w in target.lower().split()):
        return None  # "No, it's fine" / "Actually that's really helpful" are not facts
    if statement is not None and cased and not statement_only and \
            not _name_like(f"{subject} {target}") and _opinion(prompt, target):
        return None  # "Actually, short answers are better": no name, no number: an opinion
    if len(target) > MAX_ANSWER:
        return Clarification(f"The new answer is too long ({len(target)} characters; at most "
                             f"{MAX_ANSWER}). Please give a short answer, {_EXAMPLE}.")
    if question and statement is None and not _fits_question(target, question, last_answer,
                                                             cased):
        return Clarification(_ASK_ANSWER) if strong else None  # "Wrong again", "No, carry on"
    if statement is not None:
        return Correction(subject, prompt, target, old) if len(prompt) <= MAX_QUESTION else \
            Clarification(_ASK_LONG)
    if question is None:
        return Clarification(_ASK_FACT)
    if q_subject is None or len(q_subject) > MAX_SUBJECT or len(question) > MAX_QUESTION:
        return Clarification(_ASK_SUBJECT)
    return Correction(q_subject, question, target, old)


def named_in(text: str) -> bool:
    """Whether the text names something (a capitalised name past its first word)."""
    text = _normalize(text)
    return any(not (count == 1 and not text[:start].strip())  # a capital first word is no name
               for count, start, _ in _name_runs(text, skip_question_word=True))


def subject_of_question(question: str) -> str | None:
    """The entity a question is about (its longest name), or None."""
    return _subject_from_question(_normalize(question))


def correction_from_form(subject: str, question: str, answer: str) -> Correction | Clarification:
    """Validate the correction form; a Clarification names the field to fix and why."""
    fields = (("subject", subject, MAX_SUBJECT, "Eiffel Tower"),
              ("question", question, MAX_QUESTION, "Where is the Eiffel Tower?"),
              ("answer", answer, MAX_ANSWER, "Rome"))
    values = []
    for name, value, limit, example in fields:
        value = value.strip() if isinstance(value, str) else ""
        if not value:
            return Clarification(f"The {name} field is empty. Please fill it in, "
                                 f"for example: '{example}'.")
        if len(value) > limit:
            return Clarification(f"The {name} field is too long ({len(value)} characters; "
                                 f"at most {limit}). Please shorten it.")
        values.append(value)
    subj, q, a = values
    if subj.casefold() not in q.casefold():
        return Clarification(f"The subject '{subj}' does not appear in the question. The question "
                             "must mention the subject, for example: subject 'Eiffel Tower', "
                             "question 'Where is the Eiffel Tower?'.")
    return Correction(subject=subj, prompt=q, target_new=a)
