"""Seeded English sentence generator with a broad vocabulary, for synthesizing training speech.

Sentences are built from a small phrase grammar (subjects, verbs, objects, places, times, numbers, names)
rather than fixed templates, so a few thousand sentences cover several thousand distinct word forms,
numbers written out in words, questions, statements, requests, lists and reported speech. The same seed
always gives the same sentences.

``split`` reserves some names and places for held-out evaluation: sentences drawn with ``split="heldout"``
use only those, sentences with ``split="train"`` never do. ``vocabulary="wide"`` adds the words of
:mod:`delaykit.data.lexicon` to every slot of the train split (the held-out split is the same either way);
``vocabulary="open"`` adds to those thousands of names, surnames and places (:mod:`delaykit.data.open_names`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import lexicon

FIRST_NAMES = (
    "Alice Benjamin Chloe Daniel Emma Felix Grace Henry Isabel Jack Karen Liam Maria Noah Olivia Peter "
    "Quentin Rachel Samuel Tara Umar Victor Wendy Xavier Yasmin Zachary Amelia Bruno Carmen Dmitri Elena "
    "Fatima George Hannah Ibrahim Julia Kenji Laura Miguel Nadia Oscar Priya Ruth Stefan Tomas Ursula "
    "Valerie William Yusuf Zoe Arthur Beatrice Connor Diana Edward Freya Gabriel Helen Ivan Joanna Kevin "
    "Lucy Martin Nina Owen Paula Robert Sofia Theo Vera Walter"
).split()
SURNAMES = (
    "Anderson Baker Carter Dawson Evans Fischer Garcia Hughes Ingram Johnson Kowalski Lambert Morgan "
    "Nakamura O'Brien Patel Quinn Robinson Schmidt Turner Underwood Vasquez Walsh Young Zimmerman "
    "Bennett Clarke Douglas Ellis Fletcher Gordon Harper Jenkins Keller Lopez Mitchell Novak Palmer Reyes "
    "Sullivan Thompson Wagner"
).split()
PLACES = (
    "London Paris Berlin Madrid Rome Lisbon Dublin Vienna Prague Warsaw Athens Cairo Nairobi Lagos Tokyo "
    "Osaka Seoul Beijing Delhi Mumbai Sydney Melbourne Toronto Chicago Boston Denver Seattle Houston Miami "
    "Mexico Lima Santiago Oslo Stockholm Helsinki Copenhagen Amsterdam Brussels Geneva Zurich Edinburgh "
    "Manchester Glasgow Cardiff Montreal Vancouver Singapore Istanbul Marseille Naples"
).split()
HELDOUT_NAMES = ("Agnes", "Rupert", "Matilda", "Cedric", "Imogen", "Leopold", "Harriet", "Silas")
HELDOUT_SURNAMES = ("Whitfield", "Ashworth", "Pemberton", "Fairbanks")
HELDOUT_PLACES = ("Reykjavik", "Tallinn", "Kyoto", "Auckland", "Valparaiso", "Marrakesh")

PEOPLE = (
    "teacher doctor nurse farmer baker driver pilot student engineer lawyer painter singer writer "
    "neighbour manager waiter chef gardener plumber scientist reporter librarian mechanic dentist "
    "architect carpenter musician officer judge captain cousin uncle aunt grandmother brother sister "
    "friend colleague stranger visitor child boy girl woman man customer passenger tourist"
).split()
THINGS = (
    "book letter window table chair bottle basket ticket umbrella bicycle camera phone laptop newspaper "
    "map key wallet jacket blanket lamp candle mirror painting guitar piano clock kettle sandwich apple "
    "orange banana cake bread cheese soup coffee tea envelope parcel suitcase bucket ladder hammer "
    "garden door box picture shirt hat shoe ring spoon plate cup notebook pencil radio engine boat"
).split()
ABSTRACT = (
    "idea plan question answer story problem reason decision mistake secret promise message journey "
    "meeting lesson report budget schedule recipe song dream theory result experiment holiday contract"
).split()
ADJECTIVES = (
    "old new small large bright dark quiet noisy heavy light warm cold clean dirty strange familiar "
    "expensive cheap broken shiny wooden yellow green blue red purple silver golden soft rough gentle "
    "careful busy tired happy angry curious lucky famous modern ancient empty full narrow wide simple "
    "difficult early late sudden"
).split()
ADVERBS = (
    "quickly slowly carefully quietly suddenly happily nervously patiently loudly gently finally rarely "
    "usually often never almost already easily barely politely"
).split()
# (base, third person, past, -ing) so the grammar can conjugate
VERBS_T = [
    tuple(v.split(","))
    for v in (
        "carry,carries,carried,carrying find,finds,found,finding open,opens,opened,opening "
        "buy,buys,bought,buying sell,sells,sold,selling bring,brings,brought,bringing "
        "paint,paints,painted,painting fix,fixes,fixed,fixing borrow,borrows,borrowed,borrowing "
        "lose,loses,lost,losing clean,cleans,cleaned,cleaning hide,hides,hid,hiding "
        "throw,throws,threw,throwing keep,keeps,kept,keeping push,pushes,pushed,pushing "
        "drop,drops,dropped,dropping wash,washes,washed,washing pack,packs,packed,packing "
        "check,checks,checked,checking send,sends,sent,sending order,orders,ordered,ordering"
    ).split()
]
VERBS_I = [
    tuple(v.split(","))
    for v in (
        "arrive,arrives,arrived,arriving wait,waits,waited,waiting sleep,sleeps,slept,sleeping "
        "laugh,laughs,laughed,laughing work,works,worked,working travel,travels,travelled,travelling "
        "sing,sings,sang,singing run,runs,ran,running swim,swims,swam,swimming "
        "dance,dances,danced,dancing whisper,whispers,whispered,whispering "
        "complain,complains,complained,complaining rest,rests,rested,resting"
    ).split()
]
VERBS_SAY = [("say", "says", "said"), ("think", "thinks", "thought"), ("believe", "believes", "believed"),
             ("explain", "explains", "explained"), ("mention", "mentions", "mentioned"),
             ("promise", "promises", "promised"), ("hope", "hopes", "hoped")]
PREPOSITIONS = "in near behind under beside inside outside above across".split()
LOCATIONS = (
    "kitchen station library market office hospital school garden museum airport harbour bakery park "
    "hotel church bridge river forest village castle stadium theatre cinema factory farm shop beach "
    "corridor basement attic car bus train"
).split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = ("January February March April May June July August September October November "
          "December").split()
TIMES = ("this morning", "last night", "yesterday", "tomorrow", "at noon", "after lunch", "before dinner",
         "every weekend", "next week", "in the evening", "at dawn", "later today", "a moment ago")
UNITS = ("kilometres metres minutes hours days euros dollars pounds kilograms litres pages people "
         "years degrees percent").split()
INTERJECTIONS = ("Well", "Oh", "Honestly", "Actually", "Look", "Listen", "Yes", "No", "Of course",
                 "By the way", "To be fair", "In fact")
REQUESTS = ("Could you", "Would you please", "Please", "Can you", "Remember to", "Don't forget to",
            "Try to", "Let's")

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
             "nine": "ninth", "twelve": "twelfth"}


def number_words(n: int) -> str:
    """English words for ``0 <= n < 10**9`` (``2024 -> "two thousand and twenty-four"``)."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    for size, name in ((10**6, "million"), (1000, "thousand")):
        if n >= size:
            rest = n % size
            joiner = " and " if 0 < rest < 100 else " "
            return number_words(n // size) + " " + name + ("" if rest == 0 else joiner + number_words(rest))
    raise ValueError(f"number out of range: {n}")


def ordinal_words(n: int) -> str:
    """``21 -> "twenty-first"``."""
    words = number_words(n)
    head, sep, last = words.rpartition("-") if "-" in words.split()[-1] else words.rpartition(" ")
    if last in _ORDINALS:
        last = _ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


@dataclass(frozen=True)
class SentenceConfig:
    seed: int = 0
    split: str = "train"  # train | heldout: which names/places the sentences may use
    # base | wide | open: wide adds delaykit.data.lexicon's words, open also Faker's names and places (train
    # split only)
    vocabulary: str = "base"


def _widened(base, extra, wide: bool):
    """``base`` followed by the words of ``extra`` it lacks, when ``wide``; else ``base`` itself."""
    if not wide:
        return base
    return list(dict.fromkeys([*base, *extra]))


class SentenceGenerator:
    """``next()`` returns one sentence; iterate for an endless seeded stream."""

    def __init__(self, config: SentenceConfig = SentenceConfig()) -> None:
        if config.split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {config.split!r}")
        if config.vocabulary not in ("base", "wide", "open"):
            raise ValueError(f"vocabulary must be 'base', 'wide' or 'open', got {config.vocabulary!r}")
        self.config = config
        self.rng = random.Random(config.seed)
        heldout = config.split == "heldout"
        wide = config.vocabulary in ("wide", "open") and not heldout
        self.first_names = HELDOUT_NAMES if heldout else _widened(FIRST_NAMES, lexicon.WIDE_FIRST_NAMES, wide)
        self.surnames = HELDOUT_SURNAMES if heldout else _widened(SURNAMES, lexicon.WIDE_SURNAMES, wide)
        self.places = HELDOUT_PLACES if heldout else _widened(PLACES, lexicon.WIDE_PLACES, wide)
        if config.vocabulary == "open" and not heldout:
            from .open_names import open_vocabulary

            extra = open_vocabulary(frozenset((*HELDOUT_NAMES, *HELDOUT_SURNAMES, *HELDOUT_PLACES)))
            self.first_names = _widened(self.first_names, extra.first_names, True)
            self.surnames = _widened(self.surnames, extra.surnames, True)
            self.places = _widened(self.places, extra.places, True)
        self.people = _widened(PEOPLE, lexicon.WIDE_PEOPLE, wide)
        self.things = _widened(THINGS, lexicon.WIDE_THINGS, wide)
        self.abstract = _widened(ABSTRACT, lexicon.WIDE_ABSTRACT, wide)
        self.adjectives = _widened(ADJECTIVES, lexicon.WIDE_ADJECTIVES, wide)
        self.adverbs = _widened(ADVERBS, lexicon.WIDE_ADVERBS, wide)
        self.verbs_t = _widened(VERBS_T, lexicon.WIDE_VERBS_T, wide)
        self.verbs_i = _widened(VERBS_I, lexicon.WIDE_VERBS_I, wide)
        self.locations = _widened(LOCATIONS, lexicon.WIDE_LOCATIONS, wide)
        self._forms = [self._statement, self._question, self._request, self._numbers, self._reported,
                       self._list, self._date, self._compound, self._exclamation]

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return self.next()

    def next(self) -> str:
        return self.rng.choice(self._forms)()

    # ---- phrases ----

    def _pick(self, words):
        return self.rng.choice(words)

    def _name(self) -> str:
        if self.rng.random() < 0.3:
            return f"{self._pick(self.first_names)} {self._pick(self.surnames)}"
        return self._pick(self.first_names)

    def _noun_phrase(self, pool=None) -> str:
        noun = self._pick(pool or self.things)
        r = self.rng.random()
        if r < 0.3:
            return f"the {self._pick(self.adjectives)} {noun}"
        if r < 0.5:
            det = self._pick(("my", "your", "his", "her", "our", "their", "that", "this"))
            return f"{det} {noun}"
        if r < 0.65:
            count = self.rng.randint(2, 40)
            return f"{number_words(count)} {noun}s" if not noun.endswith(("s", "ch", "x")) else (
                f"{number_words(count)} {noun}es")
        article = "an" if noun[0] in "aeiou" else "a"
        return f"{article} {noun}" if r < 0.85 else f"the {noun}"

    def _subject(self) -> tuple[str, bool]:
        """A subject and whether it takes third-person singular verbs."""
        r = self.rng.random()
        if r < 0.35:
            return self._name(), True
        if r < 0.65:
            return f"the {self._pick(self.people)}", True
        if r < 0.8:
            return self._pick(("I", "you", "we", "they")), False
        return self._pick(("she", "he")), True

    def _place(self) -> str:
        if self.rng.random() < 0.5:
            return f"in {self._pick(self.places)}"
        return f"{self._pick(PREPOSITIONS)} the {self._pick(self.locations)}"

    def _predicate(self, third: bool) -> str:
        tense = self.rng.random()
        transitive = self.rng.random() < 0.7
        verb = self._pick(self.verbs_t if transitive else self.verbs_i)
        obj = f" {self._noun_phrase()}" if transitive else ""
        if tense < 0.4:
            head = verb[2]
        elif tense < 0.65:
            head = verb[1] if third else verb[0]
        elif tense < 0.85:
            head = ("is " if third else "are ") + verb[3]
        else:
            head = "will " + verb[0]
        tail = ""
        if self.rng.random() < 0.5:
            tail += " " + self._place()
        if self.rng.random() < 0.4:
            tail += " " + self._pick(TIMES)
        if self.rng.random() < 0.2:
            tail = " " + self._pick(self.adverbs) + tail
        return head + obj + tail

    # ---- sentence forms ----

    def _statement(self) -> str:
        subject, third = self._subject()
        return _cap(f"{subject} {self._predicate(third)}.")

    def _question(self) -> str:
        r = self.rng.random()
        subject, third = self._subject()
        verb = self._pick(self.verbs_t)
        if r < 0.3:
            aux = "Does" if third else "Do"
            return f"{aux} {subject} {verb[0]} {self._noun_phrase()} {self._place()}?"
        if r < 0.55:
            wh = self._pick(("Where", "When", "Why", "How"))
            return f"{wh} did {subject} {verb[0]} {self._noun_phrase()}?"
        if r < 0.75:
            return f"Who {verb[2]} {self._noun_phrase()} {self._pick(TIMES)}?"
        if r < 0.9:
            return (f"How many {self._pick(UNITS)} is it from {self._pick(self.places)} "
                    f"to {self._pick(self.places)}?")
        return f"Have you seen {self._noun_phrase(self.abstract)} that {self._name()} mentioned?"

    def _request(self) -> str:
        verb = self._pick(self.verbs_t)
        tail = f" {self._place()}" if self.rng.random() < 0.5 else f" {self._pick(TIMES)}"
        text = f"{self._pick(REQUESTS)} {verb[0]} {self._noun_phrase()}{tail}"
        return text + ("?" if text.startswith(("Could", "Would", "Can")) else ".")

    def _numbers(self) -> str:
        r = self.rng.random()
        if r < 0.3:
            n = self.rng.choice((self.rng.randint(2, 99), self.rng.randint(100, 9999),
                                 self.rng.randint(10_000, 2_000_000)))
            return _cap(f"{self._subject()[0]} paid {number_words(n)} {self._pick(('euros', 'dollars', 'pounds'))} "
                        f"for {self._noun_phrase()}.")
        if r < 0.55:
            hour = self.rng.randint(1, 12)
            minute = self.rng.choice((0, 15, 30, 45, self.rng.randint(1, 59)))
            clock = f"{number_words(hour)} o'clock" if minute == 0 else f"{number_words(hour)} {number_words(minute)}"
            return f"The {self._pick(('train', 'bus', 'flight', 'meeting', 'concert'))} to " \
                   f"{self._pick(self.places)} leaves at {clock}."
        if r < 0.75:
            digits = " ".join(_ONES[self.rng.randint(0, 9)] for _ in range(self.rng.randint(4, 8)))
            return f"My {self._pick(('phone number', 'room number', 'code', 'order number'))} is {digits}."
        n = self.rng.randint(2, 500)
        return _cap(f"it is about {number_words(n)} {self._pick(UNITS)} {self._place()}.")

    def _reported(self) -> str:
        subject, _ = self._subject()
        say = self._pick(VERBS_SAY)
        inner_subject, inner_third = self._subject()
        return _cap(f"{subject} {say[2]} that {inner_subject} {self._predicate(inner_third)}.")

    def _list(self) -> str:
        items = [self._noun_phrase() for _ in range(self.rng.randint(3, 5))]
        subject, _ = self._subject()
        return _cap(f"{subject} packed {', '.join(items[:-1])} and {items[-1]}.")

    def _date(self) -> str:
        day = self.rng.randint(1, 31)
        year = self.rng.randint(1850, 2040)
        return _cap(f"{self._name()} was born on {self._pick(DAYS)} the {ordinal_words(day)} of "
                    f"{self._pick(MONTHS)}, {number_words(year)}, {self._place()}.")

    def _compound(self) -> str:
        a, ta = self._subject()
        b, tb = self._subject()
        conj = self._pick(("but", "and", "because", "although", "so", "while", "until"))
        return _cap(f"{a} {self._predicate(ta)}, {conj} {b} {self._predicate(tb)}.")

    def _exclamation(self) -> str:
        lead = self._pick(INTERJECTIONS)
        adj = self._pick(self.adjectives)
        return f"{lead}, what {'an' if adj[0] in 'aeiou' else 'a'} {adj} {self._pick(self.abstract)} that was!"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def sentences(count: int, seed: int = 0, split: str = "train", vocabulary: str = "base") -> list[str]:
    """``count`` sentences from a generator seeded with ``seed``."""
    gen = SentenceGenerator(SentenceConfig(seed=seed, split=split, vocabulary=vocabulary))
    return [gen.next() for _ in range(count)]
