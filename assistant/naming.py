"""How people name a subject: where a query mentions it, however it is written.

Users rarely repeat a subject's exact words. "the famous Louvre museum", "LOUVRE", "the
Lovre", "the Louvre's city" and "the Big Apple" (for New York City) all name a stored subject;
"Lake Geneva" does not name "Lake Victoria", although the two share a word. `find_mention`
returns the span of the query that names the subject, how much of the subject it covers, and
whether it came through an alias, so the scope can both gate on it and mask exactly that span
when it compares relations.

Matching, per subject word (accents, case, possessives and plurals folded): the same word, or
a typo of it (one edit for words of 5+ letters, two for 9+, same first letter). A partial match
("Darrieux" for "Danielle Darrieux") is refused when it is really another name that shares a
word: only generic words matched ("Lake", "Museum"), or the matched words run into a name word
the subject lacks ("Acme *Airlines*" for "Acme Bakery"). Aliases come from the shipped table
`assistant/data/aliases.json` (well-known alternative names, demonyms and descriptions), plus
any an edit carries of its own.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from assistant.embedder import default_embedding_path
from errors import ModelNotFoundError

ALIAS_FILE = Path(__file__).resolve().parent / "data" / "aliases.json"
SYNONYM_FILE = Path(__file__).resolve().parent / "data" / "synonyms.json"
_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*", re.UNICODE)
STOP = {"the", "a", "an", "of", "de", "la", "le", "von", "van", "and", "in", "on", "for", "du",
        "des", "del", "der", "di", "da", "at", "to", "my", "our", "your", "his", "her", "their"}
# Category words: shared by many names, so matching only these does not name a subject.
GENERIC = {
    "lake", "lakes", "mount", "mountain", "mountains", "mt", "river", "sea", "ocean", "bay",
    "island", "islands", "isle", "city", "town", "village", "county", "state", "province",
    "republic", "kingdom", "museum", "gallery", "university", "college", "school", "academy",
    "institute", "bakery", "airlines", "airline", "airways", "air", "bank", "company", "corp",
    "corporation", "inc", "ltd", "group", "club", "fc", "team", "united", "city", "tower",
    "bridge", "palace", "castle", "church", "cathedral", "temple", "park", "square", "street",
    "station", "airport", "hotel", "restaurant", "cafe", "theatre", "theater", "hall", "house",
    "center", "centre", "stadium", "arena", "north", "south", "east", "west", "new", "old",
    "great", "big", "little", "saint", "st", "san", "santa", "fort", "port", "cape", "desert",
    "forest", "valley", "falls", "canal", "national", "international", "royal", "general",
    "project", "office", "band", "records", "studios", "press",
    "times", "news", "society", "association", "foundation", "party", "council", "ministry",
    "department", "agency", "service", "services", "systems", "technologies", "motors",
    "films", "pictures", "book", "books", "song", "album", "film", "movie", "show", "series",
    "game", "games", "cup", "championship", "league", "award", "prize", "festival", "war",
    "battle", "treaty", "planet", "star", "moon", "galaxy", "river", "glacier", "peak",
    "home", "artwork", "painting", "sculpture", "novel", "ship",
}


def fold(text: str) -> str:
    """Lowercase without accents; curly apostrophes straightened."""
    text = unicodedata.normalize("NFKD", text.replace("\u2019", "'"))
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def word_form(token: str) -> str:
    """A token's comparison form: folded, possessive and plural endings dropped."""
    word = fold(token)
    if word.endswith("'s") or word.endswith("s'"):
        word = word[:-2] if word.endswith("'s") else word[:-1]
    word = word.replace("'", "")
    if (len(word) > 4 or word.endswith("ys")) and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]  # "keys", "days" too
    return word


@dataclass(frozen=True)
class Token:
    text: str
    form: str
    start: int
    end: int


def tokens(text: str) -> list[Token]:
    return [Token(m.group(), word_form(m.group()), m.start(), m.end())
            for m in _TOKEN.finditer(text)]


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Edit distance counting a swap of two neighbouring letters as one edit ("einstien"),
    stopping early once it exceeds `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before, previous = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if before is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, before[j - 2] + 1)
            current.append(cost)
        if min(current) > limit:
            return limit + 1
        before, previous = previous, current
    return previous[-1]


@lru_cache(maxsize=1)
def known_words() -> frozenset[str]:
    """Whole words of the embedding model's vocabulary: a query word found there is a word
    in its own right ("manages"), not a typo of a subject word ("manager")."""
    try:
        path = default_embedding_path() / "vocab.txt"
        return frozenset(w for w in path.read_text(encoding="utf-8").split()
                         if w.isalpha() and len(w) > 3)
    except (ModelNotFoundError, OSError):
        return frozenset()


def same_word(subject_word: str, query_word: str) -> bool:
    """Equal, or a likely typo of a long enough word (same first letter, and not a word of
    its own)."""
    if subject_word == query_word:
        return True
    if query_word in known_words():
        return False
    n = len(subject_word)
    if n >= 4 and len(query_word) == n and sorted(subject_word) == sorted(query_word):
        diff = [i for i in range(n) if subject_word[i] != query_word[i]]
        if len(diff) == 2 and diff[1] == diff[0] + 1:  # two letters swapped: "yrok"
            return True
    if n < 5 or not query_word or query_word[0] != subject_word[0] or subject_word.isdigit():
        return False
    return _edit_distance(subject_word, query_word, 2 if n >= 9 else 1) <= (2 if n >= 9 else 1)


@dataclass(frozen=True)
class Mention:
    """Where a query names a subject: the span, and the share of the subject's words it
    covers (1.0 through an alias)."""

    start: int
    end: int
    coverage: float

    def masked(self, text: str, mask: str) -> str:
        return text[:self.start] + mask + text[self.end:]


def content_words(name: str) -> list[str]:
    forms = [t.form for t in tokens(name)]
    return [w for w in forms if w not in STOP] or forms


def _match_words(name: str, query_tokens: list[Token], query: str) -> Mention | None:
    """How `name`'s words occur in the query, or None when they do not name it."""
    words = content_words(name)
    if not words:
        return None
    used = _placed(words, query_tokens)
    if not used:
        return None
    coverage = len(used) / len(words)
    if not any(ch.isupper() or ch.isdigit() for ch in name) and \
            not query_tokens[min(used)].text[:1].isupper() and \
            _indefinite_before(query_tokens, min(used)):
        return None  # "a dentist" is not "my dentist": a common-noun subject is one thing
    if _other_name(words, used, query_tokens, query, partial=coverage < 1.0):
        return None
    return Mention(query_tokens[min(used)].start, query_tokens[max(used)].end, coverage)


_INDEFINITE = {"a", "an", "any", "every", "each", "some", "another", "other",
               "someone's", "somebody's", "their", "his", "her", "your"}


def _indefinite_before(query_tokens: list[Token], first: int) -> bool:
    """The word before a common-noun mention makes it some other one ("a dentist",
    "your manager")."""
    return first > 0 and fold(query_tokens[first - 1].text) in _INDEFINITE


def _placed(words: list[str], query_tokens: list[Token]) -> list[int]:
    """Query positions of the subject's words, all near one another: a name's words sit
    together, so words scattered through the question ("the *spot* number for visitor
    *parking*") do not add up to the name. Every occurrence is tried as the anchor; the
    placement covering most words (then the tightest) wins."""
    where = [[i for i, t in enumerate(query_tokens) if same_word(w, t.form)] for w in words]
    reach = len(words) + 1
    best: list[int] = []
    for anchor in sorted({i for hits in where for i in hits}):
        placed = []
        for hits in where:
            near = [i for i in hits if abs(i - anchor) <= reach and i not in placed]
            if near:
                placed.append(min(near, key=lambda i: abs(i - anchor)))
        if len(placed) > len(best) or len(placed) == len(best) and placed and \
                max(placed) - min(placed) < max(best) - min(best):
            best = placed
    return best


def _other_name(words: list[str], used: list[int], query_tokens: list[Token],
                query: str, partial: bool) -> bool:
    """A match that is really another name: only category words matched, or the matched
    words continue into a name word the subject does not have ("the *Paris* Opera"). A whole
    subject may take a category word after it ("the Louvre Museum"); a partial one may not
    ("Acme *Airlines*" for "Acme Bakery")."""
    matched = {query_tokens[i].form for i in used}
    if partial and matched <= GENERIC:
        return True
    subject = set(words)
    for i in (min(used) - 1, max(used) + 1):
        if not 0 <= i < len(query_tokens):
            continue
        if i > max(used) and re.search(r"['\u2019]s?$", query_tokens[max(used)].text):
            continue  # "Hermione's house": a possessive ends the name
        neighbour = query_tokens[i]
        bare = re.sub(r"['\u2019]s$", "", neighbour.text)
        if i > max(used) and bare.isupper() and len(bare) <= 4:
            continue  # "Qantas HQ", "Brightwave Labs CEO": an abbreviation after the name
        if neighbour.form in subject or neighbour.form in STOP:
            continue
        gap = query[neighbour.end:query_tokens[min(used)].start] if i < min(used) else \
            query[query_tokens[max(used)].end:neighbour.start]
        if gap.strip(" -"):  # punctuation between them: not one name
            continue
        capital = (neighbour.text[:1].isupper() and not _sentence_start(query, neighbour)
                   or neighbour.text[:1].isdigit())  # "Boeing *737*" is not "Boeing 747"
        generic = neighbour.form in GENERIC
        if (partial and (capital or generic)) or (capital and not generic):
            return True
    return False


def _sentence_start(text: str, token: Token) -> bool:
    before = text[:token.start].rstrip()
    return not before or before[-1] in ".!?:\"'("


def find_mention(subject: str, query: str, aliases: tuple[str, ...] = ()) -> Mention | None:
    """The best place where `query` names `subject` (by its words or an alias), or None."""
    query_tokens = tokens(query)
    best = _match_words(subject, query_tokens, query)
    if best is not None and best.coverage >= 1.0:
        return best
    # the edit's own aliases, then the table's (an edit learns the table's when it is made,
    # so each name is tried once)
    for alias in dict.fromkeys((*aliases, *table().aliases_of(subject))):
        found = _alias_span(alias, query_tokens)
        if found is not None:
            span = [i for i, t in enumerate(query_tokens) if found[0] <= t.start < found[1]]
            if not _other_name(content_words(alias), span, query_tokens, query, partial=False):
                return Mention(found[0], found[1], 1.0)  # not "Katie *Holmes*" for Sherlock
        if len(content_words(alias)) > 1:  # "new yrok city": a typo in a name of 2+ words
            typo = _match_words(alias, query_tokens, query)
            if typo is not None and typo.coverage >= 1.0 and \
                    not _other_name(content_words(alias), _span_positions(typo, query_tokens),
                                    query_tokens, query, partial=True):
                return typo
    # everyday synonyms: "the backup key" names "the spare keys", "the work wi-fi password"
    # names "the office wifi password"
    several = len(content_words(subject)) > 1
    for variant in synonyms().variants(subject):
        found = _match_words(variant, query_tokens, query)
        if found is None or best is not None and found.coverage <= best.coverage:
            continue
        first = next(i for i, t in enumerate(query_tokens) if t.start == found.start)
        if several or first > 0 and query_tokens[first - 1].form in _DETERMINERS:
            best = found  # a one-word subject's synonym must be used as a noun ("our work")
    return best


_DETERMINERS = {"the", "my", "our", "this", "that"}


def _span_positions(mention: Mention, query_tokens: list[Token]) -> list[int]:
    return [i for i, t in enumerate(query_tokens) if mention.start <= t.start < mention.end]


def _alias_span(alias: str, query_tokens: list[Token]) -> tuple[int, int] | None:
    """Where the alias occurs among the query's tokens as whole words (case and accents
    folded), or None."""
    words = [t.form for t in tokens(alias)]
    if not words:
        return None
    for i in range(len(query_tokens) - len(words) + 1):
        window = query_tokens[i:i + len(words)]
        if [t.form for t in window] == words:
            if len(words) == 1 and not _name_cased(window[0].text, alias):
                continue  # "us", "jobs", "bolt" in lowercase are words, not names
            return window[0].start, window[-1].end
    return None


def _name_cased(found: str, alias: str) -> bool:
    """A one-word alias counts only written as a name: capitalised, and in capitals where
    the alias is an acronym ("UN", not "un")."""
    if alias.strip().isupper() and len(alias.strip()) <= 5:
        return found.isupper()
    return found[:1].isupper()


def subject_overlap(subject: str, query: str, aliases: tuple[str, ...] = ()) -> float:
    """Share of the subject's words the query names (1.0 through an alias; 0 when none or
    when the shared words belong to another name)."""
    mention = find_mention(subject, query, aliases)
    return mention.coverage if mention else 0.0


class AliasTable:
    """Groups of names for one thing ("New York City", "NYC", "the Big Apple")."""

    def __init__(self, entries: list[dict]) -> None:
        self._group: dict[str, int] = {}
        self._names: list[list[str]] = []
        for entry in entries:
            names = [entry["name"], *entry.get("aliases", [])]
            group = len(self._names)
            self._names.append(names)
            for name in names:
                self._group.setdefault(self.key(name), group)

    @staticmethod
    def key(name: str) -> str:
        words = [t.form for t in tokens(name)]
        if words and words[0] in ("the", "a", "an"):
            words = words[1:]
        return " ".join(words)

    def aliases_of(self, name: str) -> list[str]:
        """Every other name of the thing `name` names (empty when the table does not know it)."""
        group = self._group.get(self.key(name))
        if group is None:
            return []
        own = self.key(name)
        return [n for n in self._names[group] if self.key(n) != own]

    def canonical_text(self, text: str) -> str | None:
        """`text` with the longest alias in it written as its group's first name, or None when
        it holds no alias (or only the usual name)."""
        found = tokens(text)
        for size in range(min(6, len(found)), 0, -1):
            for i in range(len(found) - size + 1):
                window = found[i:i + size]
                if size == 1 and (window[0].form in STOP | GENERIC or
                                  not window[0].text[:1].isupper()):
                    continue
                key = " ".join(t.form for t in window)
                group = self._group.get(key)
                if group is None:
                    continue
                name = self._names[group][0]
                if self.key(name) == key:
                    return None
                return text[:window[0].start] + name + text[window[-1].end:]
        return None

    def names(self) -> list[str]:
        """Each thing's usual name (the first of its group), in table order."""
        return [group[0] for group in self._names]

    def canonical(self, name: str) -> str | None:
        group = self._group.get(self.key(name))
        return None if group is None else self._names[group][0]


@lru_cache(maxsize=1)
def table() -> AliasTable:
    """The shipped alias table (empty when the file is missing)."""
    try:
        return AliasTable(json.loads(ALIAS_FILE.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return AliasTable([])


class SynonymTable:
    """Everyday words and phrases used for one another ("spare" / "backup", "wifi" / "wi-fi",
    "holiday party" / "christmas do"), for subjects that are common nouns, not names."""

    MAX_VARIANTS = 24

    def __init__(self, groups: list[list[str]]) -> None:
        self._groups: list[list[str]] = []
        self._index: dict[str, list[int]] = {}
        for group in groups:
            forms = list(dict.fromkeys(" ".join(t.form for t in tokens(w)) for w in group))
            forms = [f for f in forms if f]
            if len(forms) < 2:
                continue
            for form in forms:
                self._index.setdefault(form, []).append(len(self._groups))
            self._groups.append(forms)

    @lru_cache(maxsize=4096)
    def variants(self, name: str) -> tuple[str, ...]:
        """`name` with one or two of its words or phrases replaced by a synonym."""
        words = [t.form for t in tokens(name)]
        spots = []  # (start, end, alternatives)
        for size in (3, 2, 1):
            for i in range(len(words) - size + 1):
                phrase = " ".join(words[i:i + size])
                if phrase in STOP or any(i < e and s < i + size for s, e, _ in spots):
                    continue
                others = [f for g in self._index.get(phrase, ()) for f in self._groups[g]
                          if f != phrase]
                if others:
                    spots.append((i, i + size, list(dict.fromkeys(others))))
        spots.sort()
        found: list[str] = []

        def fill(choice: dict[int, str]) -> str:
            out, i = [], 0
            while i < len(words):
                spot = next((sp for sp in spots if sp[0] == i), None)
                if spot is not None and i in choice:
                    out.append(choice[i])
                    i = spot[1]
                else:
                    out.append(words[i])
                    i += 1
            return " ".join(out)

        for spot in spots:
            found += [fill({spot[0]: alt}) for alt in spot[2]]
        for a in range(len(spots)):
            for b in range(a + 1, len(spots)):
                found += [fill({spots[a][0]: x, spots[b][0]: y})
                          for x in spots[a][2][:4] for y in spots[b][2][:4]]
        return tuple(dict.fromkeys(found))[:self.MAX_VARIANTS]


@lru_cache(maxsize=1)
def synonyms() -> SynonymTable:
    """The shipped everyday-synonym table (empty when the file is missing)."""
    try:
        return SynonymTable(json.loads(SYNONYM_FILE.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return SynonymTable([])
