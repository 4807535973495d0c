"""The sentence generator: seeded, varied, with held-out names and places kept apart."""

from __future__ import annotations

import hashlib
import re

from delaykit.data import lexicon
from delaykit.data.sentences import (
    FIRST_NAMES,
    HELDOUT_NAMES,
    HELDOUT_PLACES,
    HELDOUT_SURNAMES,
    PLACES,
    number_words,
    ordinal_words,
    sentences,
)


def words(texts: list[str]) -> set[str]:
    return {w.lower() for text in texts for w in re.findall(r"[A-Za-z']+", text)}


def test_seeded_and_deterministic():
    assert sentences(50, seed=4) == sentences(50, seed=4)
    assert sentences(50, seed=4) != sentences(50, seed=5)


def test_varied():
    batch = sentences(200, seed=0)
    assert len(set(batch)) == 200
    assert len(words(batch)) > 400
    assert sum(s.endswith("?") for s in batch) > 10  # questions
    assert sum(any(n in s for n in ("hundred", "thousand", "twenty", "o'clock")) for s in batch) > 10
    assert len({s.split()[0] for s in batch}) > 30  # not a handful of templates


def test_heldout_names_and_places_are_disjoint():
    train, heldout = words(sentences(500, seed=1)), words(sentences(200, seed=1, split="heldout"))
    reserved = {w.lower() for w in HELDOUT_NAMES + HELDOUT_PLACES}
    assert not reserved & train
    assert reserved & heldout
    assert not {w.lower() for w in FIRST_NAMES + PLACES} & heldout


def test_number_words():
    assert number_words(0) == "zero"
    assert number_words(42) == "forty-two"
    assert number_words(105) == "one hundred and five"
    assert number_words(2024) == "two thousand and twenty-four"
    assert number_words(1_950_000) == "one million nine hundred and fifty thousand"
    assert ordinal_words(1) == "first"
    assert ordinal_words(21) == "twenty-first"
    assert ordinal_words(30) == "thirtieth"
    assert ordinal_words(12) == "twelfth"


def test_base_vocabulary_remakes_earlier_corpora():
    """The sentences of corpora made before the wide vocabulary existed (sha256 of the first 2000 of seed 3,
    taken before it was added): unchanged, so every rebuild script still makes the same speech."""
    for split, digest in (("train", "a7ffe4b7e54f423a"), ("heldout", "9a223a80ef349e9f")):
        text = "\n".join(sentences(2000, seed=3, split=split))
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == digest


def test_wide_vocabulary_adds_words_but_no_heldout_ones():
    base, wide = words(sentences(3000, seed=2)), words(sentences(3000, seed=2, vocabulary="wide"))
    assert len(wide) > 1.6 * len(base)
    assert {w.lower() for w in lexicon.WIDE_PLACES[:20]} & wide
    reserved = {w.lower() for w in HELDOUT_NAMES + HELDOUT_SURNAMES + HELDOUT_PLACES}
    assert not reserved & wide
    # the held-out split is the same whichever vocabulary is asked for
    assert sentences(100, seed=2, split="heldout", vocabulary="wide") == sentences(100, seed=2, split="heldout")


def test_wide_vocabulary_keeps_plurals_regular():
    """Counted nouns get their plural by rule (-s, -es): the wide list holds no noun the rule gets wrong."""
    for noun in lexicon.WIDE_THINGS:
        assert not noun.endswith(("sh", "fe", "f", "o")) and not re.search(r"[^aeiou]y$", noun), noun


def test_wide_vocabulary_remakes_earlier_corpora():
    """The wide corpora of ASR stages 5 and 6 (sha256 of the first 2000 sentences of seed 3, taken before the
    open vocabulary was added): unchanged."""
    text = "\n".join(sentences(2000, seed=3, vocabulary="wide"))
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == "29e4c162fe340adf"


def test_open_vocabulary_adds_thousands_of_names_and_places_but_no_heldout_ones():
    from delaykit.data.open_names import open_vocabulary

    reserved = HELDOUT_NAMES + HELDOUT_SURNAMES + HELDOUT_PLACES
    lists = open_vocabulary(frozenset(reserved))
    assert min(len(lists.first_names), len(lists.surnames), len(lists.places)) > 1000
    for words_of_a_slot in (lists.first_names, lists.surnames, lists.places):
        assert list(words_of_a_slot) == sorted(set(words_of_a_slot))  # the same lists whatever the set order
        assert all(re.fullmatch(r"[A-Z][a-z]+", word) for word in words_of_a_slot)
        assert not set(reserved) & set(words_of_a_slot)
    # Faker does hold some of the held-out names: the exclusion is what keeps them out
    assert set(reserved) & set(open_vocabulary().first_names + open_vocabulary().places)

    wide, opened = sentences(3000, seed=2, vocabulary="wide"), sentences(3000, seed=2, vocabulary="open")
    assert opened == sentences(3000, seed=2, vocabulary="open")
    names_heard = {w for text in opened for w in re.findall(r"[A-Z][a-z]+", text)}
    assert len(names_heard - words(wide) - {w.capitalize() for w in words(wide)}) > 1000
    assert not {w.lower() for w in reserved} & words(opened)
    assert sentences(100, seed=2, split="heldout", vocabulary="open") == sentences(100, seed=2, split="heldout")
