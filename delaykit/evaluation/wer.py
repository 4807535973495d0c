"""Word error rate with a plain text normalisation, the way ASR results are usually compared.

Normalisation: Unicode NFKC, lower case, every character that is not a letter, digit or apostrophe becomes a
space, apostrophes at word edges are dropped, whitespace collapses. WER = (substitutions + deletions +
insertions) / reference words, from one Levenshtein alignment per utterance; corpus WER sums the counts.
"""

from __future__ import annotations

import re
import typing as tp
import unicodedata
from dataclasses import dataclass

_NOT_WORD = re.compile(r"[^\w']+|_")


def normalize(text: str) -> list[str]:
    """The words of ``text`` after normalisation."""
    text = unicodedata.normalize("NFKC", text).lower()
    return [word.strip("'") for word in _NOT_WORD.sub(" ", text).split() if word.strip("'")]


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


def word_error_rate(references: tp.Sequence[str], hypotheses: tp.Sequence[str]) -> ErrorCounts:
    """Corpus-level counts of normalised ``hypotheses`` against ``references`` (same order)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = ErrorCounts()
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        total = total + align_counts(normalize(reference), normalize(hypothesis))
    return total
