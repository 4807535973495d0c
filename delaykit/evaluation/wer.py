"""Word error rate with a plain text normalisation, the way ASR results are usually compared.

Normalisation: Unicode NFKC, lower case, every character that is not a letter, digit or apostrophe becomes a
space, apostrophes at word edges are dropped, whitespace collapses. With ``numbers=True`` spelled-out numbers
also become digits ("one thousand nine hundred and ten" -> "1910", "fifteenth" -> "15th"), the way Whisper
writes them, so that a judge's digits and a reference's words compare equal. WER = (substitutions + deletions +
insertions) / reference words, from one Levenshtein alignment per utterance; corpus WER sums the counts.
"""

from __future__ import annotations

import re
import typing as tp
import unicodedata
from dataclasses import dataclass

_NOT_WORD = re.compile(r"[^\w']+|_")


_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
NUMBER_WORDS = {word: value for value, word in enumerate(_UNITS)}
NUMBER_WORDS.update({word: 10 * (index + 2) for index, word in enumerate(_TENS)})
_ORDINAL_WORDS = {"first": 1, "second": 2, "third": 3, "fifth": 5, "eighth": 8, "ninth": 9, "twelfth": 12}
ORDINALS = {**{word + "th": value for word, value in NUMBER_WORDS.items() if value > 3 and word + "th"
               not in ("fiveth", "eightth", "nineth", "twelveth")},
            **{word[:-1] + "ieth": value for word, value in NUMBER_WORDS.items() if word.endswith("ty")},
            **_ORDINAL_WORDS}


def _ordinal_suffix(value: int) -> str:
    if value % 100 in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th")


def numbers_to_digits(words: list[str]) -> list[str]:
    """Runs of spelled-out number words as one number in digits (ordinals keep their suffix)."""
    out: list[str] = []
    total = current = 0
    in_number = False
    last_small = None  # value of the previous unit/tens word, to split "nineteen ten" into two numbers

    def flush() -> None:
        nonlocal total, current, in_number, last_small
        if in_number:
            out.append(str(total + current))
        total = current = 0
        in_number, last_small = False, None

    for index, word in enumerate(words):
        value = NUMBER_WORDS.get(word, ORDINALS.get(word))
        following = words[index + 1] if index + 1 < len(words) else ""
        if value is not None:
            joins_tens = last_small is not None and last_small >= 20 and last_small % 10 == 0 and value < 10
            if in_number and last_small is not None and not joins_tens:
                flush()
            current += value
            in_number, last_small = True, value
            if word in ORDINALS:
                number = total + current
                flush()
                out[-1] = f"{number}{_ordinal_suffix(number)}"
        elif word in ("hundred", "thousand") and in_number:
            if word == "hundred":
                current *= 100
            else:
                total, current = (total + current) * 1000, 0
            last_small = None
        elif word == "and" and in_number and last_small is None and following in NUMBER_WORDS:
            continue
        else:
            flush()
            out.append(word)
    flush()
    return out


def normalize(text: str, numbers: bool = False) -> list[str]:
    """The words of ``text`` after normalisation."""
    text = unicodedata.normalize("NFKC", text).lower()
    words = [word.strip("'") for word in _NOT_WORD.sub(" ", text).split() if word.strip("'")]
    return numbers_to_digits(words) if numbers else words


@dataclass
class ErrorCounts:
    """Edit operations between hypotheses and references, summed over utterances."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_words: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.errors / max(self.reference_words, 1)

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                           self.insertions + other.insertions, self.reference_words + other.reference_words)


def align_counts(reference: tp.Sequence[str], hypothesis: tp.Sequence[str]) -> ErrorCounts:
    """Counts of the minimum-edit alignment of two word lists (ties prefer substitutions)."""
    # cost[j] = (total, subs, dels, ins) for reference[:i] against hypothesis[:j], one row at a time.
    previous = [(j, 0, 0, j) for j in range(len(hypothesis) + 1)]
    for i, ref_word in enumerate(reference, start=1):
        current = [(i, 0, i, 0)]
        for j, hyp_word in enumerate(hypothesis, start=1):
            diagonal = previous[j - 1]
            if ref_word == hyp_word:
                best = diagonal
            else:
                best = (diagonal[0] + 1, diagonal[1] + 1, diagonal[2], diagonal[3])
            deletion = previous[j]
            if deletion[0] + 1 < best[0]:
                best = (deletion[0] + 1, deletion[1], deletion[2] + 1, deletion[3])
            insertion = current[j - 1]
            if insertion[0] + 1 < best[0]:
                best = (insertion[0] + 1, insertion[1], insertion[2], insertion[3] + 1)
            current.append(best)
        previous = current
    _, subs, dels, ins = previous[-1]
    return ErrorCounts(subs, dels, ins, len(reference))


def word_error_rate(references: tp.Sequence[str], hypotheses: tp.Sequence[str], numbers: bool = False
                    ) -> ErrorCounts:
    """Corpus-level counts of normalised ``hypotheses`` against ``references`` (same order)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = ErrorCounts()
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        total = total + align_counts(normalize(reference, numbers), normalize(hypothesis, numbers))
    return total
