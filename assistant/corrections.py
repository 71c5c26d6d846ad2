"""Read a plain-language chat message as a correction of a fact.

The editor needs a structured edit (subject, prompt, target_new), but users type things like
"No, it's Rome". Simple, predictable rules (no model) are used here so that every failure can be
explained back to the user as a Clarification instead of silently storing a wrong edit.

Rules, in order:
1. Questions (ending in "?"), chit-chat ("no worries", "thanks") and instructions are not
   corrections (None): the chat answers them normally. A correction must open with an opener
   such as "no", "wrong", "actually", "remember that", "fyi" (see _OPENERS).
2. If the rest states a full fact ("the Eiffel Tower is in Rome"), it is split at the first verb:
   the subject is the entity on the left ("the <relation> of X" -> X, "X's <relation>" -> X),
   the target is what follows the last preposition/article in the lowercase run right after the
   verb ("is in Rome" -> "Rome", "plays the guitar" -> "guitar"), else the whole right side
   ("is Jane Roe" -> "Jane Roe"). The prompt is the statement up to the target.
3. Otherwise the rest is an answer to the previous question ("it's in Rome" -> "Rome"): the
   subject is the longest capitalised name in that question and the prompt is the question.
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


_EXAMPLE = "for example: 'The Eiffel Tower is in Rome'"
_ASK_FACT = f"I could not tell which fact to change. Please write it as 'X is Y', {_EXAMPLE}."
_ASK_ANSWER = ("I understood that my last answer was wrong, but not what the right answer is. "
               "What is the right answer? For example: 'No, it's Rome'.")
_ASK_NEGATED = ("You told me what is not true, but not what is. What is the right answer? "
                f"Please write it as 'X is Y', {_EXAMPLE}.")
_ASK_SUBJECT = ("I could not tell what your last question was about. Please write the whole fact "
                f"as 'X is Y', {_EXAMPLE}.")
_ASK_LONG = ("That message is too long to read as a correction. Please write the fact in one "
             f"short sentence, {_EXAMPLE}.")

_NEGATIONS = set(
    "no|nope|nah|wrong|wrong answer|incorrect|not quite|false|not right|not correct|not true|"
    "that's wrong|that is wrong|thats wrong|that's incorrect|that is incorrect|that's not right|"
    "that is not right|that's not correct|that is not correct|that's not true|that is not true|"
    "you're wrong|you are wrong".split("|"))
# These announce a new fact; they never borrow the previous question as context.
_STATEMENT_ONLY = set("remember|remember that|please remember|please remember that|note|"
                      "note that|please note|please note that|fyi|for your information".split("|"))
_OPENERS = _NEGATIONS | _STATEMENT_ONLY | {"actually", "correction", "in fact"}
_OPENER_RE = re.compile(r"(%s)(?![\w'])[\s,.:;!\-\u2013\u2014]*" % "|".join(
    re.escape(o) for o in sorted(_OPENERS, key=len, reverse=True)), re.I)
_NOT_OPENER_RE = re.compile(
    r"(?:no|nah|nope)[\s,.!]+(?:worries|problem|problems|thanks|thank you|idea|need|one|clue|"
    r"rush|biggie|matter|doubt|kidding|way|offen[cs]e)\b|not (?:quite )?sure\b|"
    r"(?:please )?(?:remember|note) to\b", re.I)

_QUESTION_WORDS = set("who what where which when why how whose whom is are was were does do did "
                      "can could has have had will would should tell give show explain describe "
                      "name list please in on at from".split())
_INSTRUCTION_WORDS = set("tell write explain give show list describe translate summarize "
                         "summarise please can could would will help answer make create find "
                         "search what where who when why how which do does did should shall may "
                         "let's lets let stop continue go try".split())
_FIRST_PERSON = set("i i'm im i'd i'll i've we we're me my our".split())
_CHITCHAT = set("fine ok okay great nice cool thanks good perfect sure yes nevermind whatever "
                "alright right correct true wrong false it that so".split()) | {
    "thank you", "never mind", "all right"}
_BAD_SUBJECTS = set("it he she they that this there these those i you we one answer truth "
                    "everything nothing something all here which who what where when how why"
                    .split()) | {"right answer", "correct answer", "real answer", "actual answer"}
_POSSESSIVES = set("my your our their his her its".split())
_CONNECTORS = set("of the de da di del della der den van von du la le les and & y bin al dos das"
                  .split())
_ARTICLES = {"the", "a", "an"}
_SPLIT_WORDS = set("in of by for at from to on into with as near about".split()) | _ARTICLES
# Relation words that, before "of", mark "the <relation> of X" rather than a name like
# "Bank of America".
_TITLES = set("president king queen mayor governor chancellor capital founder author ceo leader "
              "head director chairman owner pope emperor prince princess minister chair creator"
              .split()) | {"prime minister"}

_VERBS = ("is are was were has have had plays played speaks spoke works worked lives lived "
          "founded wrote created invented owns owned directed designed painted composed leads led "
          "runs ran died married belongs belonged means lies flows borders won sings sang makes "
          "made produces produced developed built discovered became remains contains includes "
          "uses costs weighs measures stands teaches studied studies attended joined heads "
          "manages represents supports hosts originated comes came").split()
_VERB_RE = re.compile(r"\b(?:%s)\b" % "|".join(_VERBS), re.I)
_WORD_RE = re.compile(r"\w(?:[\w'&.-]*\w)?")
_HEDGE_RE = re.compile(r"(?:i think|i believe|i'm pretty sure|i am pretty sure|i'm sure|"
                       r"i am sure|pretty sure)(?![\w'])[\s,:]*", re.I)
_LEAD_RE = re.compile(
    r"(?:(?:the\s+)?(?:(?:right|correct|real|actual|true)\s+)?answer\s+(?:is|was|should be)|"
    r"(?:it|that|this|he|she|they)(?:'s|'re|\s+(?:is|was|are|were|(?:should|must|would|will|"
    r"might) be|has been|had been|[a-z]+ed|[a-z]+s))?|its|(?:should|must) be)(?=\s|$)\s*", re.I)
_CONTEXT_PREP_RE = re.compile(r"(?:[a-z]+\s+){0,3}?(?:in|at|on|by|from|to|for|into|near)\s+(?=\S)")
_AFFIRM_RE = re.compile(r"(.+?)\s+is\s+(?:the\s+)?(?:correct|right)(?:\s+(?:one|answer))?", re.I)
_NEG_ANY_RE = re.compile(r"\b(?:not|never|no longer|isn't|wasn't|aren't|weren't|doesn't|"
                         r"didn't|don't)(?![\w'])", re.I)
_SUFFIX_RE = re.compile(r"\s*[,;]\s*(?:not|rather than|instead of)\s.*$", re.I)
_TAIL_RE = re.compile(r".*\b(?:of|is|was)\s+(?:(?:the|an?)\s+)?(\S.*)", re.I)
_QUOTES = "\"'`\u201c\u201d\u2018\u00ab\u00bb"


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


def is_correction_like(message: str) -> bool:
    """True when the message opens like a correction, so an unreadable one deserves a question back.

    Questions and polite phrases that merely start with "no" ("No worries") are excluded.
    """
    text = _normalize(message)
    if not text or _is_question(text) or _NOT_OPENER_RE.match(text):
        return False
    return bool(_OPENER_RE.match(text))


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
        first_skip = i == 0 and skip_question_word and w.lower() in _QUESTION_WORDS
        capital = w[0].isupper() and not first_skip and w not in ("I", "The", "A", "An")
        if capital or (count and w[0].isdigit()):
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


def _subject_from_question(question: str) -> str | None:
    """The entity a question is about: its longest capitalised name, else the tail noun phrase."""
    runs = _name_runs(question, skip_question_word=True)
    if runs:
        best = max(runs, key=lambda r: (r[0], -r[1]))  # longest; ties go to the first
        subject = _clean(question[best[1]:best[2]])
        return subject if _meaningful(subject) else None
    tail = _TAIL_RE.match(question)  # "what is the capital of france?" -> "france"
    subject = _clean(tail.group(1)) if tail else ""
    return subject if _meaningful(subject) else None


def _strip_article(text: str) -> str:
    head, _, tail = text.partition(" ")
    return tail.strip() if head.lower() in _ARTICLES and tail.strip() else text


def _subject_from_left(left: str) -> str | None:
    """The entity on the left of a statement's verb, or None when it is a pronoun or not a name."""
    core = _strip_article(_clean(left))
    possessive = re.match(r"(.+?)'s\b", core)
    if possessive:
        core = possessive.group(1)
    elif " of " in core:
        head, tail = core.split(" of ", 1)
        last = head.split()[-1] if head.split() else ""
        if (any(w[0].islower() for w in head.split()) or head.lower() in _TITLES
                or (last.isupper() and 2 <= len(last) <= 5)):
            core = _strip_article(tail.strip())
    subject = _clean(core)
    words = subject.lower().split()
    if (not _meaningful(subject) or subject.lower() in _BAD_SUBJECTS or len(words) > 10
            or words[0] in _POSSESSIVES or len(subject) > MAX_SUBJECT):
        return None
    return subject


def _find_verb(text: str) -> tuple[int, int] | None:
    """Span of the statement's main verb: a known verb, or the lowercase word after a name."""
    m = _VERB_RE.search(text)
    best = (m.start(), m.end()) if m and m.start() > 0 else None
    runs = _name_runs(text, skip_question_word=False)
    lead = text[:runs[0][1]].strip().lower() if runs else "x"
    if runs and lead in ("", "the"):
        after = re.match(r"\s+([a-z]+)\s+\S", text[runs[0][2]:])
        if after and after.group(1) not in _SPLIT_WORDS | _CONNECTORS:
            span = (runs[0][2] + after.start(1), runs[0][2] + after.end(1))
            if best is None or span[0] < best[0]:
                best = span
    return best


def _parse_statement(text: str) -> tuple[str, str, str] | None:
    """(subject, prompt, target) of a full statement such as 'the Louvre is in Madrid'."""
    verb = _find_verb(text)
    if verb is None:
        return None
    subject = _subject_from_left(text[:verb[0]])
    if subject is None:
        return None
    tokens = list(re.finditer(r"\S+", text[verb[1]:]))
    target_start = verb[1] + tokens[0].start() if tokens else len(text)
    for k, tok in enumerate(tokens):
        w = tok.group()
        if not (w.isalpha() and w.islower()):
            break
        if w in _SPLIT_WORDS and k < len(tokens) - 1:
            target_start = verb[1] + tokens[k + 1].start()
    prompt = text[:target_start].rstrip(" ,:;-" + _QUOTES)
    first = prompt[:1].upper()
    if len(first) == 1 and first.casefold() == prompt[:1].casefold():
        prompt = first + prompt[1:]
    return subject, prompt, text[target_start:]


def _answer_from_reply(text: str) -> str:
    """The bare answer in a reply to the last question: "it's in Rome" -> "Rome"."""
    affirm = _AFFIRM_RE.fullmatch(text)
    if affirm:
        text = affirm.group(1)
    text = text[_LEAD_RE.match(text).end():] if _LEAD_RE.match(text) else text
    prep = _CONTEXT_PREP_RE.match(text)
    if prep:
        text = text[prep.end():]
    return text


def parse_correction(message: str, last_question: str | None = None,
                     last_answer: str | None = None) -> Correction | Clarification | None:
    """Read a chat message as a correction of the last answer or as a stated fact.

    None: the message is not a correction (a question, chit-chat, an instruction) and should be
    answered normally. last_question/last_answer give context to short replies ("No, it's Rome").
    """
    text = _normalize(message)
    if not text or _is_question(text) or _NOT_OPENER_RE.match(text):
        return None
    if len(text) > _MAX_MESSAGE:
        return Clarification(_ASK_LONG) if is_correction_like(text) else None
    openers: list[str] = []
    rest = text
    while (m := _OPENER_RE.match(rest)) and len(openers) < 4:  # "No, actually, ..."
        openers.append(" ".join(m.group(1).lower().split()))
        rest = rest[m.end():]
    if not openers:
        return None
    question = _normalize(last_question)[:_MAX_MESSAGE] or None
    rest = _SUFFIX_RE.sub("", _clean(rest))
    if _NEG_ANY_RE.search(rest):
        # "it's not Rome, it's Paris": keep the positive last clause; a lone negation says
        # what is wrong but not what is right.
        parts = re.split(r"\s*[,;]\s*(?:but\s+)?|\s+but\s+", rest)
        if len(parts) < 2 or _NEG_ANY_RE.search(parts[-1]) or not parts[-1].strip():
            return Clarification(_ASK_NEGATED)
        rest = parts[-1].strip()
    hedge = _HEDGE_RE.match(rest)
    rest = rest[hedge.end():] if hedge else rest
    if not rest:
        if set(openers) <= {"no", "nope", "nah"} and question is None:
            return None  # a bare "no" with nothing asked before is just a reply
        negation = any(o in _NEGATIONS for o in openers)
        return Clarification(_ASK_ANSWER if negation and question else _ASK_FACT)
    words = rest.split()
    first_word = words[0].lower().strip(",.:;!")
    name_like = len(words) > 1 and words[0][:1].isupper() and words[1][:1].isupper()
    if (first_word in _INSTRUCTION_WORDS or first_word in _FIRST_PERSON) and not name_like:
        return None  # "Actually, tell me about Rome"; but "Actually, Will Smith is ..." is a fact

    statement = None if _AFFIRM_RE.fullmatch(rest) else _parse_statement(rest)
    if statement is not None:
        subject, prompt, target = statement
        old = last_answer if question and subject.casefold() in question.casefold() else None
    else:
        if openers[0] in _STATEMENT_ONLY:
            return Clarification(_ASK_FACT)
        target, old = _answer_from_reply(rest), last_answer
    target = _clean(target)
    if not _meaningful(target):
        return Clarification(_ASK_ANSWER if question or statement else _ASK_FACT)
    if target.lower() in _CHITCHAT:
        return None  # "No, it's fine" / "Actually that's great" are not facts
    if len(target) > MAX_ANSWER:
        return Clarification(f"The new answer is too long ({len(target)} characters; at most "
                             f"{MAX_ANSWER}). Please give a short answer, {_EXAMPLE}.")
    if statement is not None:
        return Correction(subject, prompt, target, old)
    if question is None:
        return Clarification(_ASK_FACT)
    subject = _subject_from_question(question)
    if subject is None or len(subject) > MAX_SUBJECT or len(question) > MAX_QUESTION:
        return Clarification(_ASK_SUBJECT)
    return Correction(subject, question, target, old)


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
