"""Chat-style questions (and other statement wordings) for a statement-style edit prompt.

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

# Statement prefixes of the same relations, keyed by each relation's first keyword: more
# wordings of the relation for a weight edit's value search (the value then serves the
# relation, not one sentence). None is "{s} is a", the KL prompt that keeps other properties.
STATEMENTS: dict[str, tuple[str, ...]] = {
    "twin city": ("The twin city of {s} is", "{s} is twinned with"),
    "language": ("The language of {s} is", "{s} speaks the language"),
    "headquarter": ("{s} is headquartered in", "The headquarters of {s} are in"),
    "continent": ("{s} is on the continent of", "{s} lies in"),
    "citizen": ("{s} is a citizen of", "The nationality of {s} is"),
    "born": ("{s} was born in", "The birthplace of {s} is"),
    "died": ("{s} died in", "The place of death of {s} is"),
    "occupation": ("{s} works as a", "The occupation of {s} is"),
    "owned by": ("{s} is owned by", "The owner of {s} is"),
    "follower": ("The religion of {s} is", "{s} is a follower of"),
    "employ": ("{s} works for", "{s} is employed by"),
    "position": ("{s} plays in the position of", "The position of {s} is"),
    "play": ("{s} plays", "{s} is known for playing"),
    "created": ("{s} was created by", "{s} is made by"),
    "debut": ("{s} premiered on", "{s} was aired on"),
    "capital": ("The capital of {s} is", "{s} has its capital in"),
    "ceo": ("{s} is led by", "The head of {s} is"),
    "originat": ("{s} comes from", "{s} originated in"),
    "located": ("{s} is located in", "{s} can be found in"),
}


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


def _relation(prompt: str, subject: str) -> tuple[str, tuple[str, ...], str] | None:
    """(first keyword, question templates, subject phrase) of the relation `prompt` asks about,
    or None when no known relation matches."""
    if not prompt or subject.lower() not in prompt.lower():
        return None
    masked = re.sub(re.escape(subject), " ", prompt, flags=re.IGNORECASE).lower()
    masked = f" {masked.strip()} "
    for keywords, templates in RELATIONS:
        if any(_mentions(masked, k) for k in keywords):
            return keywords[0], templates, _subject_phrase(prompt, subject)
    return None


def _filled(templates: tuple[str, ...], phrase: str, prompt: str, limit: int | None) -> list[str]:
    texts = [t.format(s=phrase) for t in templates]
    texts = [t[0].upper() + t[1:] for t in texts]
    return [t for t in texts if t.lower() != prompt.lower()][:limit]


def question_forms(prompt: str, subject: str, limit: int | None = 3) -> list[str]:
    """Up to `limit` other questions asking what `prompt` asks; [] for unknown relations."""
    prompt = prompt.strip()
    relation = _relation(prompt, subject)
    if relation is None:
        return []
    _, templates, phrase = relation
    return _filled(templates, phrase, prompt, limit)


def statement_forms(prompt: str, subject: str, limit: int | None = 2) -> list[str]:
    """Up to `limit` other statement prefixes of the relation `prompt` states ("{s} was born
    in" for "The birthplace of {s} is"); [] for unknown relations."""
    prompt = prompt.strip()
    relation = _relation(prompt, subject)
    if relation is None:
        return []
    keyword, _, phrase = relation
    return _filled(STATEMENTS.get(keyword, ()), phrase, prompt.rstrip(" ."), limit)
