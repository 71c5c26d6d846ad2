"""Chat-style questions (and other statement wordings) for a statement-style edit prompt.

Corrections typed in chat ("Actually the Louvre is in Madrid") and CounterFact records give
statement prefixes ("The Louvre is in"), but people then ask questions ("Where is the
Louvre?"). These phrasings are stored as extra retrieval keys of an edit and used as in-scope
examples when the scope head is trained. The relation is recognised by keywords in the prompt
with the subject masked out, so any wording of a known relation works, not one template.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Relation:
    """One relation: keywords that recognise it in a prompt (subject masked out), questions a
    chat user asks about it, and statement prefixes that state it. None of the statements is
    "{s} is a", the KL prompt that keeps a subject's other properties."""

    keywords: tuple[str, ...]
    questions: tuple[str, ...]
    statements: tuple[str, ...]


def _r(keywords: tuple[str, ...], questions: tuple[str, ...],
       statements: tuple[str, ...]) -> Relation:
    return Relation(keywords, questions, statements)


# First match wins, so order matters: dates before the events they date ("date of birth"
# before "born"), kin before "birth" ("gave birth to"), specific places before "located".
# Keywords match at word starts; one with a leading space is a whole word; "a+b" needs both.
RELATIONS: list[Relation] = [
    _r(("date of birth", "birth date", "year of birth", "birthday", "when+born", "date+born",
        "year+born"),
       ("When was {s} born?", "What is the date of birth of {s}?"),
       ("{s} was born in the year", "The date of birth of {s} is")),
    _r(("date of death", "year of death", "when+ die", "date+ die", "year+ die", "date+expire",
        "when+died", "year+died", "when+death"),
       ("When did {s} die?", "What is the date of death of {s}?"),
       ("{s} died in the year", "The date of death of {s} is")),
    _r(("dissolv", "abolish", "ceased", "final year", "ending year", "year+ end", "date+ end",
        "when+ end", "the end of"),
       ("When did {s} end?", "In which year was {s} dissolved?"),
       ("{s} was dissolved in", "{s} ceased to exist in")),
    _r(("inception", "establish", "founding", "year+formed", "year+start", "when+start",
        "when+found", "year+found", "year+created", "when+created", "launch", "opening", "commissioned", "entered service",
        "first version", "lift off"),
       ("When was {s} established?", "In which year was {s} founded?"),
       ("{s} was established in", "{s} was founded in the year")),
    _r(("point in time", "date", "when+occur", "when+take place", "what year", "which year",
        "when+built", "year+built", "when was", "when did"),
       ("When did {s} take place?", "What is the date of {s}?"),
       ("{s} took place in", "The date of {s} is")),
    _r(("twin city", "twinned"), ("What is the twin city of {s}?", "Which city is twinned with {s}?"),
       ("The twin city of {s} is", "{s} is twinned with")),
    _r(("programming language",), ("Which programming language is {s} written in?",
                                   "What language was {s} programmed in?"),
       ("{s} is written in the programming language", "The programming language of {s} is")),
    _r(("language", "speak", "tongue", "writes in", "understand", "spoke"),
       ("What language does {s} speak?", "What is the language of {s}?"),
       ("The language of {s} is", "{s} speaks the language")),
    _r(("headquarter",), ("Where is {s} headquartered?", "Where are the headquarters of {s}?"),
       ("{s} is headquartered in", "The headquarters of {s} are in")),
    _r(("continent",), ("Which continent is {s} in?", "On what continent is {s}?"),
       ("{s} is on the continent of", "{s} lies in")),
    _r(("citizen", "a native", "nationality", "national identity"),
       ("What is the nationality of {s}?", "Which country is {s} a citizen of?"),
       ("{s} is a citizen of", "The nationality of {s} is")),
    _r(("mother", "maternal", "gave birth to"),
       ("Who is the mother of {s}?", "Who was {s}'s mother?"),
       ("The mother of {s} is", "{s}'s mother is")),
    _r(("father", "dad", "paternal"), ("Who is the father of {s}?", "Who was {s}'s father?"),
       ("The father of {s} is", "{s}'s father is")),
    _r(("sibling", "sister", "brother"), ("Who is the sibling of {s}?", "Who is {s}'s sibling?"),
       ("The sibling of {s} is", "{s}'s sibling is")),
    _r(("spouse", "wife", "husband", "married"), ("Who is the spouse of {s}?",
                                                   "Who was {s} married to?"),
       ("The spouse of {s} is", "{s} was married to")),
    _r(("born", "birth"), ("Where was {s} born?", "What is the birthplace of {s}?"),
       ("{s} was born in", "The birthplace of {s} is")),
    _r(("medical", "disease", "illness", "afflict", "suffer", "cause of death", "caused", "killed"),
       ("What medical condition did {s} have?", "What illness did {s} suffer from?"),
       ("{s} suffered from", "The medical condition of {s} was")),
    _r(("died", " die", "death", "passed away", "expired", "lost their life", "succumbed"),
       ("Where did {s} die?", "What is the place of death of {s}?"),
       ("{s} died in", "The place of death of {s} is")),
    _r(("field of", "expertise", "area of work", "domain of activity"),
       ("What field does {s} work in?", "What is {s}'s area of expertise?"),
       ("{s} works in the field of", "The field of work of {s} is")),
    _r(("occupation", "profession", "job", "career", "works as"),
       ("What is the occupation of {s}?", "What does {s} do for a living?"),
       ("{s} works as a", "The occupation of {s} is")),
    _r(("owned by", "owner"), ("Who owns {s}?", "Who is the owner of {s}?"),
       ("{s} is owned by", "The owner of {s} is")),
    _r(("follower", "religion", "faith"), ("What religion is {s} affiliated with?",
                                           "What is the religion of {s}?"),
       ("The religion of {s} is", "{s} is a follower of")),
    _r(("holds the position", "has the position", "held the position", "position+held",
        "office", "title"),
       ("What position does {s} hold?", "What office does {s} hold?"),
       ("{s} holds the position of", "The office held by {s} is")),
    _r(("position", "plays as", "plays in the"), ("What position does {s} play?",
                                                  "Which position does {s} play?"),
       ("{s} plays in the position of", "The position of {s} is")),
    _r(("constellation",), ("Which constellation is {s} in?",
                            "What constellation does {s} belong to?"),
       ("{s} is in the constellation of", "The constellation of {s} is")),
    _r(("celestial", "planet", "astronomical", "moon"),
       ("On which celestial body is {s}?", "Where in the solar system is {s}?"),
       ("{s} is located on", "{s} is a feature on")),
    _r(("college", "university", "educat", "attend", "alma mater", "school", "studied at",
        "graduat"),
       ("Where was {s} educated?", "Which university did {s} attend?"),
       ("{s} was educated at", "{s} studied at")),
    _r(("direct",), ("Who directed {s}?", "Who is the director of {s}?"),
       ("{s} was directed by", "The director of {s} is")),
    _r(("the star", "star of", "starring", " cast", "acted", "actor", "actress"),
       ("Who starred in {s}?", "Who is in the cast of {s}?"),
       ("{s} starred", "The star of {s} is")),
    _r(("publish",), ("Who published {s}?", "Who is the publisher of {s}?"),
       ("{s} was published by", "The publisher of {s} is")),
    _r(("label",), ("What is the record label of {s}?", "Which label released {s}?"),
       ("The record label of {s} is", "{s} is signed to the label")),
    _r(("distribut",), ("Who distributed {s}?", "Who is the distributor of {s}?"),
       ("{s} was distributed by", "The distributor of {s} is")),
    _r(("production company", "studio"), ("Which company produced {s}?",
                                          "What is the production company of {s}?"),
       ("{s} was produced by the company", "The production company of {s} is")),
    _r(("architect", "design"), ("Who designed {s}?", "Who was the architect of {s}?"),
       ("{s} was designed by", "The architect of {s} is")),
    _r(("illustrat",), ("Who illustrated {s}?", "Who is the illustrator of {s}?"),
       ("{s} was illustrated by", "The illustrator of {s} is")),
    _r(("discover", "who found"), ("Who discovered {s}?", "Who was the discoverer of {s}?"),
       ("{s} was discovered by", "The discoverer of {s} is")),
    _r(("employ", "work"), ("Where does {s} work?", "Who does {s} work for?"),
       ("{s} works for", "{s} is employed by")),
    _r(("named after", "named for"), ("Who is {s} named after?", "What was {s} named for?"),
       ("{s} is named after", "{s} was named for")),
    _r(("series", "fictional universe", "show", "episode"),
       ("Which series is {s} part of?", "What series does {s} belong to?"),
       ("{s} is part of the series", "{s} appears in the series")),
    _r(("family", "genus", "taxon"), ("Which family does {s} belong to?",
                                      "What is the taxonomic family of {s}?"),
       ("{s} belongs to the family", "The family of {s} is")),
    _r(("conservation", "endangered"), ("What is the conservation status of {s}?",
                                        "How endangered is {s}?"),
       ("The conservation status of {s} is", "{s} is listed as")),
    _r(("voice", "vocal", "tone", " sing", " sings"),
       ("What voice type does {s} have?", "What is the vocal range of {s}?"),
       ("The voice type of {s} is", "{s} sings in the voice of a")),
    _r(("gender", "sex", "male or female"), ("What is the gender of {s}?",
                                            "What is the sex of {s}?"),
       ("The gender of {s} is", "{s} is of the gender")),
    _r((" war", " wars", "conflict", "battle", "armed forces"),
       ("Which war did {s} fight in?", "In which conflict did {s} serve?"),
       ("{s} fought in the", "{s} served in the conflict")),
    _r(("home arena", "home ground", "home venue", "stadium", "arena"),
       ("What is the home ground of {s}?", "Where does {s} play its home games?"),
       ("The home ground of {s} is", "{s} plays its home games at")),
    _r(("league",), ("Which league does {s} play in?", "What league is {s} in?"),
       ("{s} plays in the league", "The league of {s} is")),
    _r(("team", "club", "plays for", "played for"), ("Which team does {s} play for?",
                                                     "What team is {s} on?"),
       ("{s} plays for", "The team of {s} is")),
    _r(("artist", "released by", "who released", "recorded by", "sung by", "performer released",
        "released the album"),
       ("Who performed {s}?", "Which artist released {s}?"),
       ("{s} was released by", "{s} is a work by")),
    _r(("play", "sport", "instrument", "perform", "genre"),
       ("What does {s} play?", "What is {s} known for playing?"),
       ("{s} plays", "{s} is known for playing")),
    _r(("airport", "hub"), ("Which airport is {s}'s hub?", "Where does {s} operate out of?"),
       ("The hub of {s} is", "{s} operates out of")),
    _r(("founded in", "formed in", "created in"),
       ("Where was {s} founded?", "In which place was {s} formed?"),
       ("{s} was founded in", "{s} was formed in")),
    _r(("created", "creator", "developed", "product", "produce", "manufactur", "made by",
        "founded", "built"),
       ("Who created {s}?", "Who makes {s}?", "Who developed {s}?"),
       ("{s} was created by", "{s} is made by")),
    _r(("debut", "premier", "aired", "network", "channel", "released on"),
       ("Where did {s} premiere?", "Which network aired {s}?"),
       ("{s} premiered on", "{s} was aired on")),
    _r(("capital",), ("What is the capital of {s}?", "Which city is the capital of {s}?"),
       ("The capital of {s} is", "{s} has its capital in")),
    _r(("ceo", "chief executive", "leader", "head of", "runs", "in charge"),
       ("Who runs {s}?", "Who leads {s}?"),
       ("{s} is led by", "The head of {s} is")),
    _r(("parent", "subsidiary", "member of", "affiliat", "part of", "belong"),
       ("What is {s} part of?", "Which organisation does {s} belong to?"),
       ("{s} is part of", "{s} is a member of")),
    _r(("material", "made of"), ("What is {s} made of?", "What material is {s} made of?"),
       ("{s} is made of", "The material of {s} is")),
    _r(("industry",), ("Which industry is {s} in?", "What industry does {s} work in?"),
       ("{s} operates in the industry of", "The industry of {s} is")),
    _r(("operating system", "platform"), ("What operating system does {s} run?",
                                          "Which platform is {s} for?"),
       ("{s} runs on", "The platform of {s} is")),
    _r(("chromosome",), ("Which chromosome is {s} on?", "On what chromosome is {s} found?"),
       ("{s} is found on", "The chromosome of {s} is")),
    _r(("ethnic",), ("Which ethnic group does {s} belong to?",
                     "What is the ethnicity of {s}?"),
       ("The ethnic group of {s} is", "{s} belongs to the ethnic group")),
    _r(("living being", "organism", "found in taxon"),
       ("In which organism is {s} found?", "Which species has {s}?"),
       ("{s} is found in the organism", "The organism of {s} is")),
    _r(("license", "licence"), ("Which license is {s} released under?",
                                "What is the license of {s}?"),
       ("{s} is released under the", "The license of {s} is")),
    _r(("river", "tributary", "flows into", "flow into", "body of water", "lake"),
       ("Which river does {s} flow into?", "What body of water is {s} part of?"),
       ("{s} flows into", "{s} is a tributary of")),
    _r(("originat", " origin", " from", "native to", "home city", "hometown", "home town"),
       ("Where is {s} from?", "Where does {s} come from?"),
       ("{s} comes from", "{s} originated in")),
    _r(("country",), ("Which country is {s} in?", "What country is {s} associated with?"),
       ("The country of {s} is", "{s} is in the country of")),
    _r(("state", "province", "district", "county", "region", "territor"),
       ("Which state is {s} in?", "In which region is {s} located?"),
       ("{s} is in the state of", "{s} is located in the region of")),
    _r(("located", "location", "found in", "based in", "situated", "within", " in", ", in",
        "where is", "where are", "exist"),
       ("Where is {s}?", "Where is {s} located?", "In which country is {s}?",
        "Which city is {s} in?"),
       ("{s} is located in", "{s} can be found in")),
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
    leading space is a whole word (" in" is not the start of "inception"); "a+b" needs both."""
    if "+" in keyword:
        return all(_mentions(text, part) for part in keyword.split("+"))
    if not keyword[:1].isalpha() and not keyword[:1].isspace():
        return keyword in text  # punctuation-led: as written
    end = r"(?![a-z])" if keyword.startswith(" ") else ""
    return re.search(rf"(?<![a-z]){re.escape(keyword.strip())}{end}", text) is not None


def relation_of(prompt: str, subject: str) -> Relation | None:
    """The relation `prompt` asks about or states, or None when no known relation matches."""
    if not prompt or subject.lower() not in prompt.lower():
        return None
    masked = re.sub(re.escape(subject), " ", prompt, flags=re.IGNORECASE).lower()
    masked = f" {masked.strip()} "
    for relation in RELATIONS:
        if any(_mentions(masked, k) for k in relation.keywords):
            return relation
    return None


def _filled(templates: tuple[str, ...], prompt: str, subject: str,
            limit: int | None) -> list[str]:
    phrase = _subject_phrase(prompt, subject)
    texts = [t.format(s=phrase) for t in templates]
    texts = [t[0].upper() + t[1:] for t in texts]
    return [t for t in texts if t.lower() != prompt.lower()][:limit]


_DATE = re.compile(r"^(?:\d{3,4}s?|\d{1,2}(?:st|nd|rd|th)?\s+\w+(?:\s+\d{4})?|"
                   r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\w*\.?\s+\d.*)$", re.I)


def question_forms(prompt: str, subject: str, limit: int | None = 3,
                   target: str | None = None) -> list[str]:
    """Up to `limit` other questions asking what `prompt` asks; [] for unknown relations.

    With the edit's `target`: a date after a place-like preposition ("won his Nobel Prize in"
    + "1930") is a date, not a place, so no "Where is ...?" questions are made for it."""
    prompt = prompt.strip()
    relation = relation_of(prompt, subject)
    if relation is None:
        return []
    if target and _DATE.match(target.strip()) and relation is RELATIONS[-1]:
        return []
    return _filled(relation.questions, prompt, subject, limit)


def statement_forms(prompt: str, subject: str, limit: int | None = 2) -> list[str]:
    """Up to `limit` other statement prefixes of the relation `prompt` states ("{s} was born
    in" for "The birthplace of {s} is"); [] for unknown relations."""
    prompt = prompt.strip()
    relation = relation_of(prompt, subject)
    if relation is None:
        return []
    return _filled(relation.statements, prompt.rstrip(" ."), subject, limit)
