"""One-hop questions: what follows from a correction plus what the model knows of the new value.

After "the Louvre is in Madrid", "Which country is the Louvre in?" should say Spain. The edit
does not say so, but the model knows which country Madrid is in. So a question that names an
edited place-like subject and asks for a property that places inherit from where they are
(country, continent, language, currency, time zone, region) is rewritten about the edit's new
value ("Which country is Madrid in?") and answered by the base model. The same property asked
by the edit itself ("Which country is the Louvre in?" when that is what was corrected) is not a
hop: the edit answers it directly.
"""
from __future__ import annotations

import re

from assistant.naming import find_mention
from store.db import Edit

# Properties a thing takes from the place it is in.
_INHERITED = re.compile(
    r"\b(?:country|countries|nation|continent|language|languages|speak|spoken|currency|"
    r"money|time ?zone|state|province|region|hemisphere|flag|anthem)\b", re.I)
# Edits that say where something is (their prompt, subject masked).
_PLACE_EDIT = re.compile(
    r"\b(?:where|located|location|situated|city|town|based|headquarter\w*|lives?|lived|"
    r"moved|relocated|capital|country|in which|sits?|found in|home of|is in|are in)\b", re.I)


def _place_edit(edit: Edit) -> tuple[bool, str | None]:
    """(whether the edit says where its subject is, the inherited property its own prompt
    already asks, lowercased, if any)."""
    prompt = edit.prompt.replace(edit.subject, " ")
    own = _INHERITED.search(prompt)
    return bool(_PLACE_EDIT.search(prompt)), own.group(0).lower() if own else None


def hop_question(question: str, edit: Edit) -> str | None:
    """The question asked about the edit's new value instead of its subject, when it asks for
    a property the subject takes from where the edit now puts it; else None."""
    asked = _INHERITED.search(question)
    if asked is None:
        return None
    place, own = _place_edit(edit)
    if not place or own == asked.group(0).lower():
        return None
    mention = find_mention(edit.subject, question)
    if mention is None or mention.coverage < 0.5:
        return None
    before = question[:mention.start]
    if re.search(r"\bthe\s+$", before, re.I):  # "the Louvre" -> "Madrid", not "the Madrid"
        before = re.sub(r"\bthe\s+$", "", before, flags=re.I)
    return before + edit.target_new + question[mention.end:]


# Completion prompts of a hop, for scoring a promotion's portability (teacher-forced).
HOP_STATEMENTS = ("{x} is in the country of", "{x} is on the continent of")


def hop_statements(edit: Edit) -> list[tuple[str, str]]:
    """(prompt about the subject, the same prompt about the new value) for each hop a place
    edit implies, e.g. ("The Louvre is in the country of", "Madrid is in the country of");
    empty for edits that do not say where something is."""
    place, own = _place_edit(edit)
    if not place:
        return []
    with_the = re.search(r"\bthe\s+%s" % re.escape(edit.subject), edit.prompt, re.I)
    subject = f"The {edit.subject}" if with_the or edit.subject[:1].islower() else edit.subject
    return [(template.format(x=subject), template.format(x=edit.target_new))
            for template in HOP_STATEMENTS if own is None or own not in template]
