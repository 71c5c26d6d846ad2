"""Chat-style questions for a statement-style edit prompt.

Corrections typed in chat ("Actually the Louvre is in Madrid") and CounterFact records give
statement prefixes ("The Louvre is in"), but people then ask questions ("Where is the
Louvre?"). These phrasings are stored as extra retrieval keys of an edit and used as in-scope
examples when the scope head is trained. The relation is recognised by keywords in the prompt
with the subject masked out, so any wording of a known relation works, not one template.
"""
from __future__ import annotations

import re

# (keywords in the masked prompt, questions about {s}); first match wins, order matters.
# Keywords match at word starts (see _mentions).
RELATIONS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("twin city", "twinned"), ("What is the twin city of {s}?", "Which city is twinned with {s}?")),
    (("language", "speak", "tongue", "writes in", "understand", "spoke"),
     ("What language does {s} speak?", "What is the language of {s}?")),
    (("headquarter",), ("Where is {s} headquartered?", "Where are the headquarters of {s}?")),
    (("continent",), ("Which continent is {s} in?", "On what continent is {s}?")),
    (("citizen", "a native", "nationality"),
     ("What is the nationality of {s}?", "Which country is {s} a citizen of?")),
    (("born",), ("Where was {s} born?", "What is the birthplace of {s}?")),
    (("died", "death", "passed away", "expired", "lost their life", "succumbed"),
     ("Where did {s} die?",)),
    (("occupation", "profession", "expertise", "job"),
     ("What is the occupation of {s}?", "What does {s} do for a living?")),
    (("owned by", "owner"), ("Who owns {s}?",)),
    (("follower", "religion", "faith"), ("What religion is {s} affiliated with?",)),
    (("employ", "work"), ("Where does {s} work?", "Who does {s} work for?")),
    (("position", "plays as", "plays in the"), ("What position does {s} play?",
                                                 "Which position does {s} play?")),
    (("play", "sport", "instrument", "perform", "genre"),
     ("What does {s} play?", "What is {s} known for playing?")),
    (("created", "developed", "product of", "produced", "manufactur", "made by", "founded"),
     ("Who created {s}?", "Who makes {s}?", "Who developed {s}?")),
    (("debut", "premier", "aired", "network", "channel", "released on"),
     ("Where did {s} premiere?", "Which network aired {s}?")),
    (("capital",), ("What is the capital of {s}?",)),
    (("ceo", "chief executive", "leader", "head of", "runs"), ("Who runs {s}?", "Who leads {s}?")),
    (("originat", " from", "native to"), ("Where is {s} from?", "Where does {s} come from?")),
    (("located", "location", "found in", "based in", "situated", "within", " in", ", in",
      "where is", "where are"),
     ("Where is {s}?", "Where is {s} located?", "In which country is {s}?",
      "Which city is {s} in?")),
]


# Questions about attributes no relation above covers: same subject, other relation.
OTHER_ATTRIBUTES = ("How tall is {s}?", "How old is {s}?", "When was {s} built?",
                    "Who designed {s}?", "What is {s} famous for?", "When was {s} founded?",
                    "How big is {s}?", "Tell me about the history of {s}.")


def _subject_phrase(prompt: str, subject: str) -> str:
    """The subject as the prompt writes it, keeping a leading 'the' ("the Louvre")."""
    match = re.search(rf"\b(the\s+)?{re.escape(subject)}", prompt, flags=re.IGNORECASE)
    if match and match.group(1):
        return f"the {subject}"
    return subject


def _mentions(text: str, keyword: str) -> bool:
    """Keywords match at a word start ("work" in "works", not in "network"); one written with a
    leading space is a whole word (" in" is not the start of "inception")."""
    if not keyword[:1].isalpha() and not keyword[:1].isspace():
        return keyword in text  # punctuation-led: as written
    end = r"(?![a-z])" if keyword.startswith(" ") else ""
    return re.search(rf"(?<![a-z]){re.escape(keyword.strip())}{end}", text) is not None


def question_forms(prompt: str, subject: str, limit: int | None = 3) -> list[str]:
    """Up to `limit` other questions asking what `prompt` asks; [] for unknown relations."""
    prompt = prompt.strip()
    if not prompt or subject.lower() not in prompt.lower():
        return []
    masked = re.sub(re.escape(subject), " ", prompt, flags=re.IGNORECASE).lower()
    masked = f" {masked.strip()} "
    phrase = _subject_phrase(prompt, subject)
    for keywords, templates in RELATIONS:
        if any(_mentions(masked, k) for k in keywords):
            questions = [t.format(s=phrase) for t in templates]
            questions = [q[0].upper() + q[1:] for q in questions]
            return [q for q in questions if q.lower() != prompt.lower()][:limit]
    return []
