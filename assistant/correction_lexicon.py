"""Words, phrases and patterns the correction parser reads messages with.

Kept apart from the rules in `assistant/corrections.py` so each file reads on its own: this one
is vocabulary (openers, chit-chat, verbs, connectors in names) and the regular expressions built
from it; that one is the order in which they are applied.
"""
from __future__ import annotations

import re

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


def _words(text: str) -> set[str]:
    return set(text.split("|"))


# -- vocabulary: openers and what is not a correction ----------------------------------------
_NEGATIONS = _words(
    "no|nope|nah|wrong|wrong answer|incorrect|not quite|false|not right|not correct|not true|"
    "not anymore|not any more|close but|you're wrong|you are wrong|youre wrong|ur wrong|u r wrong|"
    "u are wrong|ur mistaken|you're mistaken|you are "
    "mistaken|you got it wrong|you got that wrong|you have it wrong|are you sure|the answer is|"
    "the correct answer is|the right answer is|the actual answer is|the real answer is|" + "|".join(
        f"{t} {w}" for t in ("that's", "that is", "thats") for w in (
            "wrong", "incorrect", "not right", "not correct", "not true", "outdated")))
# These announce a new fact; they never borrow the previous question as context.
_STATEMENT_ONLY = _words(
    "remember|remember that|please remember|please remember that|note|note that|please note|"
    "please note that|fyi|for your information|just so you know|for the record|heads up|update|"
    "keep in mind|keep in mind that|don't forget|don't forget that|be aware that|btw|by the way|"
    "just fyi|quick update|news flash")
_OPENERS = _NEGATIONS | _STATEMENT_ONLY | {"actually", "correction", "in fact"}
_SEP = r"[\s,.:;!?\-\u2013\u2014]*"
_OPENER_RE = re.compile(r"(%s)(?![\w'])%s" % ("|".join(  # "close but" also reads "Close, but"
    re.escape(o).replace(r"\ ", r"[\s,]+") for o in sorted(_OPENERS, key=len, reverse=True)),
    _SEP), re.I)
# Hesitation before an opener ("Hmm, no", "Sorry, but that's wrong"): skipped only then.
_INTERJECTION_RE = re.compile(r"(?:(?:h?m+|um+|uh+|erm*|well|oh|ah|sorry|i'm afraid|i am afraid|"
                              r"i think|i believe|honestly)(?![\w'])%s(?:but\s+)?)+" % _SEP, re.I)
_NOT_OPENER_RE = re.compile(
    r"(?:no|nah|nope)[\s,.!]+(?:worries|problems?|thanks|thank you|idea|need|one|clue|rush|"
    r"biggie|matter|doubt|kidding|way|offen[cs]e|more|further|other)\b|not (?:quite )?sure\b|"
    r"(?:please )?(?:remember|note|don't forget) to\b", re.I)
# Closings and agreement after an opener: "Nope, that's all", "Actually, never mind".
_CLOSING_RE = re.compile(
    r"(?:that'?s|that is|it'?s|this is)\s+(?:exactly\s+|just\s+)?(?:all|it|everything|enough)\b|"
    r"not\s+(?:really|today|now|yet|at all|necessary|needed)\b|nothing\b|never\s*mind\b|"
    r"forget\s+(?:it|that|about)\b|(?:you'?re|you are)\s+(?:right|correct)\b|my bad\b|"
    r"(?:that|it)?\s*makes sense\b|all (?:good|clear|set|done)\b|that(?:'ll| will)? (?:do|works|"
    r"helps)\b|good for now\b|no (?:more|further|other)\b|noted\b|understood\b|got it\b|"
    # steering the conversation: "one more thing", "hold on", "scratch that", "carry on"
    r"(?:one|a couple|a few|some) more\b|(?:another|a different|different) (?:question|thing)\b|"
    r"(?:hold|hang) on\b|scratch that\b|carry on\b|go on\b|all sorted\b|no problem\b|"
    r"(?:that|this) one'?s? (?:is )?fine\b|(?:that'?s|it'?s|that is|it is) (?:fine|okay|ok)\b|"
    r"(?:just )?(?:curious|wondering|checking)\b", re.I)
_FILLER_RE = re.compile(r"(?:^|[\s,.;:!\-\u2013\u2014]+)(?:thanks|thank you|thx|cheers|sorry|lol|"
                        r"again|at all)(?:\s+(?:so much|a lot))?[\s.!]*$", re.I)
_QUESTION_WORDS = _words("who|what|where|which|when|why|how|whose|whom|is|are|was|were|does|do|"
                         "did|can|could|has|have|had|will|would|should|tell|give|show|explain|"
                         "describe|name|list|please|in|on|at|from")
_INSTRUCTION_WORDS = _words(
    "tell|write|explain|give|show|list|describe|translate|summarize|summarise|please|can|could|"
    "would|will|help|answer|make|create|find|search|what|where|who|when|why|how|which|do|does|"
    "did|should|shall|may|let's|lets|let|stop|continue|go|try|say|repeat|use|keep|ignore|skip|"
    "start|talk|reply|respond|rewrite|rephrase|shorten|simplify|don't|be|carry|proceed|move")
_FIRST_PERSON = _words("i|i'm|im|i'd|i'll|i've|we|we're|me|my|our|mine")
_CHITCHAT = _words("fine|ok|okay|great|nice|cool|thanks|good|perfect|sure|yes|nevermind|whatever|"
                   "alright|right|correct|true|wrong|false|it|that|so|this|everything|helpful|"
                   "useful|interesting|funny|amazing|awesome|clear|weird|really|very|pretty|"
                   "quite|super|totally|curious|kidding|joking|wondering|checking|thank you|"
                   "never mind|all right")

# -- vocabulary: the parts of a fact ----------------------------------------------------------
_BAD_SUBJECTS = _words("it|he|she|they|that|this|there|these|those|i|you|we|one|answer|truth|"
                       "everything|nothing|something|all|here|which|who|what|where|when|how|why|"
                       "right answer|correct answer|real answer|actual answer")
_POSSESSIVES = _words("my|your|our|their|his|her|its")
_PRONOUN_TARGETS = _words("it|him|her|them|that|this|one")
_CONNECTORS = _words("of|the|de|da|di|del|della|der|den|van|von|du|la|le|les|and|&|y|bin|al|dos|"
                     "das")
_ARTICLES = {"the", "a", "an"}
_SPLIT_WORDS = _words("in|of|by|for|at|from|to|on|into|with|as|near|about|after|within|inside|"
                      "under|over|via|through|than|like") | _ARTICLES
_ADVERBS = _words("now|still|actually|also|currently|really|just|there|here|instead|anymore|"
                  "today|though|too|nowadays|only")
# Relation words that, before "of", mark "the <relation> of X" rather than a name like
# "Bank of America".
_TITLES = _words("president|king|queen|mayor|governor|chancellor|capital|founder|author|ceo|"
                 "leader|head|director|chairman|owner|pope|emperor|prince|princess|minister|chair|"
                 "creator|prime minister")
_KINDS = _words("novel|book|film|movie|song|album|play|painting|poem|series|show|game|band|city|"
                "country|company|river|mountain|team|newspaper|magazine|element|planet")
_IRREGULAR = _words("built|born|made|written|known|held|sold|found|fell|sank|went|began|won|ran|"
                    "came|grew|rose|wrote|spoke|led|took|became|left|got|gave|bought|brought|"
                    "taught|flew|drew|chose|broke|lost|kept|paid|stood|beat|hung|sang|drove|"
                    "begun|sung|drawn|chosen|given|taken|shown|grown|thrown|done|seen|sunk")
_VERBS = ("is are was were has have had plays played speaks works worked lives lived founded "
          "created invented owns owned directed designed painted composed leads runs died married "
          "belongs belonged means lies flows borders sings makes produces produced developed "
          "discovered remains contains includes uses costs weighs measures stands teaches studied "
          "studies attended joined heads manages represents supports hosts originated comes can "
          "could will would may might must should shall moved relocated moves starts start "
          "opens closes meets happens falls").split()
_VERB_WORDS = _words("is|are|was|were|has|have|had|it|its")
# Irregular past forms only in lower case: "the wall fell in 1989", but "the Left Bank is ...".
_VERB_RE = re.compile(r"\b(?:(?i:%s)|%s)\b" % ("|".join(_VERBS), "|".join(sorted(_IRREGULAR))))
_WORD_RE = re.compile(r"\w(?:[\w'&.-]*\w)?")
_HEDGE_RE = re.compile(r"(?:i think|i believe|i'm pretty sure|i am pretty sure|i'm sure|"
                       r"i am sure|pretty sure|just)(?![\w'])[\s,:]*", re.I)
_AUX = r"(?:is|was|are|were|has been|had been|have been|(?:should|must|would|will|might) be)"
_LEAD_RE = re.compile(  # what precedes the answer in a reply: "the answer is", "it was", ...
    r"(?:(?:the\s+)?(?:(?:right|correct|real|actual|true)\s+)?answer\s+(?:is|was|should be)|"
    r"(?:his|her|its|their)(?:\s+[a-z]+){1,3}?\s+(?:is|was|are|were)|"
    r"(?P<pron>it|that|this|he|she|they)(?P<aux>'s|'re|\s+%s)?|its|(?:should|must) be)"
    r"(?=\s|$)\s*" % _AUX, re.I)
# "born in", "located in", "works at"; not "the first woman to ...": a noun phrase is the answer
_CONTEXT_PREP_RE = re.compile(r"(?:(?!(?:the|a|an)\s)[a-z]+\s+){0,3}?(?:in|at|on|by|from|to|for|"
                              r"into|near|as|after|with|within)\s+(?=\S)")
_AFFIRM_RE = re.compile(r"(.+?)\s+is\s+(?:the\s+)?(?:correct|right)(?:\s+(?:one|answer))?", re.I)
_NEG_ANY_RE = re.compile(r"\b(?:not|never|no longer|isn't|wasn't|aren't|weren't|doesn't|"
                         r"didn't|don't)(?![\w'])", re.I)
_SUFFIX_RE = re.compile(r"\s*[,;]\s*(?:not|rather than|instead of)\s.*$", re.I)
# The same without a comma, after a word that is not a verb: "the saxophone lol not drums"
# ("the Louvre is not in Paris" keeps its "not": a negated statement, asked about).
_BARE_SUFFIX_RE = re.compile(
    r"(?<=\w)(?<!\bis)(?<!\bare)(?<!\bwas)(?<!\bwere)(?<!\bdo)(?<!\bdoes)(?<!\bdid)"
    r"(?:\s+(?:lol|haha|lmao))?\s+(?:not|rather than|instead of)\s+\S+(?:\s+\S+)?[.!]*$", re.I)
_LAUGH_RE = re.compile(r"\s+(?:lol|haha+|lmao|xd|:\)|:D)(?=\s|$)", re.I)
_DASH = r"[,;:\u2013\u2014]|\s-"
_CONTRAST_RES = (  # "Not Paris, Rome" / "It's Rome, not Paris": both name the rejected answer
    re.compile(r"not\s+(?P<neg>[^,;:\u2013\u2014]+?)\s*(?:%s)\s*(?:but\s+)?(?P<pos>.+)" % _DASH,
               re.I),
    re.compile(r"(?P<pos>.+?)(?:\s*(?:%s))?\s+(?:and\s+)?not\s+(?P<neg>[^,;]+)" % _DASH, re.I))
_ACTUALLY_RE = re.compile(r"(?P<left>.*?\S)\s*,?\s+actually(?![\w'])[\s,]*(?P<right>.*)", re.I)
_MEASURE_RE = re.compile(r"(\d\S*(?:\s+\S+)?)\s+(?:tall|high|long|wide|deep|old|away)", re.I)
_TAIL_RE = re.compile(r".*\b(?:of|for|is|was|are|were)\s+(?:(?:the|an?)\s+)?(\S.*)", re.I)
_WH_TAIL_RE = re.compile(r"(?:who|what|which|where|when|how)\s+(\S+)\s+(?:(?:the|an?)\s+)?"
                         r"(\S.*)", re.I)
_QUOTES = "\"'`\u201c\u201d\u2018\u00ab\u00bb"


# -- text helpers -----------------------------------------------------------------------------

# A request to remember at the end of a statement: "The Louvre is in Madrid, remember that."
_MEMORY_SUFFIX_RE = re.compile(
    r"(?P<claim>.*?\w.*?)[\s,;.\-\u2013\u2014]+(?:so\s+|and\s+|please\s+)*(?:remember (?:that|this|it)|"
    r"keep (?:that|this|it) in mind|don't forget (?:that|this|it)|don't forget|make a note of it|"
    r"note that|noted|btw|fyi|by the way)(?:[\s,]+(?:please|thanks|thank you|ok|okay))?[\s.!]*",
    re.I)
# Meta-talk about the conversation, not a fact: "the Bell Labs thing was just curiosity".
_META_SUBJECT_RE = re.compile(r"\b(?:thing|stuff|question|bit|part)$", re.I)
# A bare answer right after a question: "It's Lyon.", "They're in Leeds", "Lyon."
_BARE_LEAD_RE = re.compile(r"(?:its|(?:it|that|this|they|he|she)(?:'s|'re|\s+is|\s+are|\s+was|"
                           r"\s+were))\s+", re.I)
# Lead-ins of a question around its subject: "Do you know who my manager is?"
_ASK_LEAD_RE = re.compile(r"^(?:(?:do|does) you (?:know|remember)|can you (?:tell|remind) me|"
                          r"could you (?:tell|remind) me|any idea|remind me|tell me)\s+", re.I)
_EMBEDDED_RE = re.compile(r"^(?:who|what|where|when|which)\s+(?P<np>.+?)\s+(?:is|are|was|were)$",
                          re.I)
_ACTOR_RE = re.compile(r"^(?:where|how|when|what|which)\s+(?:can|could|do|should|would|did|will)\s+"
                       r"(?:i|we|you)\s+\w+\s+(?P<np>.+)$", re.I)
_MY_OUR = _words("my|our")
# Roles a person holds in an organisation: "Dana Whitlock is the CEO of Brightwave" is about
# Brightwave ("Paris is the capital of Italy" stays about Paris).
_PERSON_ROLES = _words("ceo|founder|cofounder|co-founder|president|director|head|leader|chairman|"
                       "chairwoman|chair|owner|manager|coach|captain|mayor|minister|king|queen|"
                       "author|editor|chief|principal|dean|chancellor|singer|drummer|guitarist|"
                       "governor|boss|cto|cfo|coo|architect|designer|creator|inventor|host|"
                       "presenter|conductor|secretary|treasurer|spokesperson|lead|vocalist")
_INTERJECTIONS = _words("wow|haha|hahaha|hmm|oh|ah|lol|yes|yeah|yep|yup|ok|okay|cool|great|nice|"
                        "thanks|thank|sure|right|hey|hi|hello|bye|oops|whoa|ooh|aha|huh|meh|"
                        "interesting|really|indeed|exactly|correct|true|fair|agreed|noted|awesome")
# A question typed without its question mark: "big bens clock tower is in which city"
_WH_WORD_RE = re.compile(r"\b(?:which|what|where|who|when|whose|how (?:many|much|old|tall|long))\b",
                         re.I)
# An update stated plainly: "Oh and the office is on the 9th floor now."
_UPDATE_LEAD_RE = re.compile(r"^(?:oh and|ah and|one more thing:?|also|plus|and|oh|ah)[\s,]+",
                             re.I)
# -- vocabulary: the old answer in the assistant's reply ----------------------------------------
# A reply that gives no answer ("I'm not sure where ...", "I'm sorry, I don't have ...").
_UNSURE_RE = re.compile(
    r"^\W*(?:i'?m not (?:sure|certain|aware)|i am not (?:sure|certain|aware)|i (?:do not|don'?t) "
    r"(?:know|have)|i'?m (?:sorry|afraid|unable)|i am (?:sorry|afraid|unable)|sorry\b|"
    r"unfortunately|i can(?:'?t|not)|as an ai|there is no (?:information|record)|"
    r"i have no (?:information|idea)|no one knows)", re.I)
_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|"
           "december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
_MONTH_RE = re.compile(r"\b(?:%s)\b" % _MONTHS, re.I)
_DATE_RE = re.compile(  # "July 20, 1969", "20 July 1969", "July 1969"
    r"\b(?:(?:%(m)s)\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{3,4}|\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?"
    r"(?:%(m)s)\.?,?\s+\d{3,4}|(?:%(m)s)\.?\s+\d{3,4})(?!\w)" % {"m": _MONTHS}, re.I)
_NUMBER_RE = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)*(?!\w)")
_NUMBER_WORDS = (r"zero|one(?!\s+of\b)|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
                 r"twenty|thirty|forty|fifty|hundred|thousand|million|billion")  # not "one of"
_NUMBER_WORD_RE = re.compile(r"\b(?:%(w)s)(?:[\s-]+(?:%(w)s))*\b" % {"w": _NUMBER_WORDS}, re.I)
# Capitalised words that open a sentence without naming anything ("It", "Located", "Yes").
_NOT_NAMES = _words(
    "it|it's|its|he|she|they|there|this|that|these|those|here|you|we|i|i'm|yes|no|sure|well|"
    "certainly|absolutely|of|however|unfortunately|according|located|based|situated|also|but|and|"
    "so|although|while|since|because|today|currently|originally|built|born|known|famous|one|"
    "some|many|most|both|each|every|all|his|her|their|our|my|your|as|if|when|where|what|who")
