"""Follow-up questions that lean on the conversation: "And which city is it in again?".

People name a subject once and then say "it", "its", "there", or leave it out. When a question
refers back like that and no stored edit governs it as written, the router asks again with the
subject put back in: the topic is the newest earlier user message that names a stored edit's
subject, unless a newer question named something else first (then "it" means that).
"""
from __future__ import annotations

import re

_PRONOUN = re.compile(r"\b(its|it|he|him|his|she|her|they|them|their|there)\b", re.I)
_CUE = re.compile(r"^\s*(?:and|so|also|wait|hmm|ok|okay|sorry|what about|how about)\b|\bagain\b|"
                  r"\b(?:was|is) that\b|"
                  r"\byou (?:said|say)\b|\bremind me\b", re.I)
_POSSESSIVE = {"its", "his", "their"}
_QUESTION_START = re.compile(r"^\s*(?:who|what|when|where|which|why|how|is|are|was|were|do|does|"
                             r"did|can|could|tell me|name)\b", re.I)


def refers_back(question: str) -> bool:
    """The question uses a pronoun or a follow-up cue, so it may mean an earlier subject."""
    return bool(_PRONOUN.search(question) or _CUE.search(question))


def with_subject(question: str, subject: str) -> str:
    """The question with its first pronoun replaced by the subject, else the subject added."""
    m = _PRONOUN.search(question)
    if m is None:
        return f"{question.rstrip()} (about {subject})"
    word = m.group(1).lower()
    if word in _POSSESSIVE:
        replacement = f"{subject}'s"
    elif word == "there":
        replacement = f"in {subject}"
    elif word == "her":  # possessive before a noun ("her birthday"), else the object
        following = question[m.end():].lstrip()
        replacement = f"{subject}'s" if re.match(r"[a-z]", following) and not re.match(
            r"(?:and|to|in|on|at|for|from|with|about|again)\b", following) else subject
    else:
        replacement = subject
    return question[:m.start()] + replacement + question[m.end():]


# Asking for the value just given again: "what city was that again?", "say the house again?"
_REASK = re.compile(r"\bagain\b|\bwhat was (?:that|it)\b|\bsay (?:that|it)\b|\brepeat\b|"
                    r"\b(?:you|u) (?:said|say)\b|\bremind me\b|\bwhich one was (?:that|it)\b|"
                    r"\bwhat (?:was|is) (?:the|her|his|its|their) (?:name|number|year|date|city|"
                    r"place)\b|\bspell\b|\b(?:which|what) \w+ (?:was|is) (?:that|it)\b|"
                    r"\bwhat was that\b", re.I)


def re_asks(question: str) -> bool:
    """The question asks for the value the conversation just gave, again."""
    return bool(_REASK.search(question))


def is_question(message: str) -> bool:
    return message.rstrip().endswith("?") or bool(_QUESTION_START.match(message))
