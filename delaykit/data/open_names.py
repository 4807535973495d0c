"""Thousands of first names, surnames and places for the sentence generator's ``open`` vocabulary.

A recognizer that hears a few hundred names learns them as whole words and writes any other name as the
nearest one it knows (the held-out split's "Valparaiso" comes out as "Tokyo"). To learn to spell a name
from its sound it must hear thousands, each a few times. Faker, a well-kept library of such lists for many
locales, supplies them: the given names and surnames of its English-speaking locales, the town names of
several European and Indian ones, and the world's countries, US states and British counties, kept to plain
ASCII words that espeak-ng reads as English, with the held-out split's names and places removed. The lists
are sorted and deduplicated, so a Faker release with the same lists gives the same sentences;
``open_vocabulary_source()`` names the release a corpus used.

Needs the ``data`` extra (``pip install delaykit[data]``).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cache

# Locales whose person providers hold English-speaking given names and surnames.
NAME_LOCALES = ("en_US", "en_GB", "en_IE", "en_NZ", "en_IN")
# Locales whose address providers hold real town names (most of the others generate them from parts).
PLACE_LOCALES = ("en_IN", "de_DE", "nl_NL", "sv_SE", "pt_PT", "cs_CZ", "it_IT")
# Smaller lists of well-known places: countries, US states, British counties.
REGION_LISTS = (("en", "countries"), ("en_US", "states"), ("en_GB", "counties"))
_WORD = re.compile(r"[A-Z][a-z]{2,13}")  # one capitalised ASCII word of 3-14 letters
MAX_PLACES_PER_LOCALE = 600  # it_IT alone has 16 k villages: keep every locale a similar share


@dataclass(frozen=True)
class OpenVocabulary:
    first_names: tuple[str, ...]
    surnames: tuple[str, ...]
    places: tuple[str, ...]


def _provider(kind: str, locale: str):
    try:
        return importlib.import_module(f"faker.providers.{kind}.{locale}").Provider
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] == "faker":
            if error.name == "faker":
                raise RuntimeError("the open vocabulary needs Faker: pip install 'delaykit[data]'") from error
            return None  # this Faker release has no such locale
        raise


def _words(values, excluded: frozenset[str]) -> list[str]:
    """The distinct values that are one plain word, not in ``excluded``, sorted."""
    return sorted({value for value in values if _WORD.fullmatch(value) and value not in excluded})


@cache
def open_vocabulary(excluded: frozenset[str] = frozenset()) -> OpenVocabulary:
    """Faker's names and places, without ``excluded`` (the held-out split's words)."""
    first, last = set(), set()
    for locale in NAME_LOCALES:
        person = _provider("person", locale)
        if person is None:
            continue
        for attribute in ("first_names", "first_names_male", "first_names_female"):
            first.update(getattr(person, attribute, ()) or ())
        last.update(getattr(person, "last_names", ()) or ())
    places = set()
    for locale in PLACE_LOCALES:
        address = _provider("address", locale)
        if address is None:
            continue
        towns = _words([*(getattr(address, "cities", ()) or ()), *(getattr(address, "city_names", ()) or ())],
                       excluded)
        step = max(1, len(towns) // MAX_PLACES_PER_LOCALE)  # an even spread over the sorted list
        places.update(towns[::step][:MAX_PLACES_PER_LOCALE])
    for locale, attribute in REGION_LISTS:
        address = _provider("address", locale)
        if address is not None:
            places.update(_words(getattr(address, attribute, ()) or (), excluded))
    return OpenVocabulary(tuple(_words(first, excluded)), tuple(_words(last, excluded)),
                          tuple(sorted(places)))


def open_vocabulary_source() -> str:
    """Which Faker release the lists come from (recorded with a corpus)."""
    import faker

    return f"faker {faker.VERSION}"
