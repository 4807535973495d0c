"""ASR figures on a manifest: corpus WER of streaming recognition, and its speed on this machine.

Word timing: in utterances whose normalised hypothesis equals the reference word for word, each recognised
word's start is compared with its aligned start (``start_error_s``: median of the signed error and of its
absolute value), which checks the EPAD word-boundary convention and the text delay together.

Recordings are decoded as concurrent streams of one batch (:func:`~delaykit.modes.asr_batch.transcribe_batch`,
the same words each would get alone), ``batch_size`` at a time. Where the manifest names each row's ``voice``
(``en-us+f2``, ``flite:slt``), WER is also given per voice and per variant (``by_voice``, ``by_variant``;
random espeak-ng variants together as ``random``): which speakers a model has not learnt to hear. Speed is audio seconds per wall-clock second
over the whole run, with the batch counted as parallel streams.
"""

from __future__ import annotations

import time
import typing as tp

import numpy as np

from ..audio import load_audio
from ..data.espeak_variants import is_random_variant
from ..modes.asr import Transcriber, Word
from ..modes.asr_batch import transcribe_batch
from .wer import ErrorCounts, align_counts, normalize, word_error_rate


def evaluate_asr(transcriber: Transcriber, rows: tp.Sequence[dict], batch_size: int = 8,
                 examples: int = 5) -> dict:
    """WER and speed of ``transcriber`` on manifest ``rows`` (``path`` and reference ``text`` each)."""
    references, hypotheses = [], []
    start_errors: list[float] = []
    audio_seconds, started = 0.0, time.monotonic()
    for first in range(0, len(rows), batch_size):
        chunk = rows[first:first + batch_size]
        signals = [load_audio(row["path"], transcriber.sample_rate) for row in chunk]
        audio_seconds += sum(s.shape[0] for s in signals) / transcriber.sample_rate
        words: list[list[Word]] = [[] for _ in chunk]
        for event in transcribe_batch(transcriber, [np.asarray(s, np.float32) for s in signals]):
            if isinstance(event, Word):
                words[event.item].append(event)
        references.extend(row["text"] for row in chunk)
        hypotheses.extend(" ".join(w.text for w in item_words) for item_words in words)
        for row, item_words in zip(chunk, words, strict=True):
            start_errors.extend(_start_errors(row, item_words))
    elapsed = time.monotonic() - started
    counts = word_error_rate(references, hypotheses)
    return {
        "utterances": len(rows), "reference_words": counts.reference_words, "wer": round(counts.wer, 4),
        "wer_numbers": round(word_error_rate(references, hypotheses, numbers=True).wer, 4),
        "substitutions": counts.substitutions, "deletions": counts.deletions, "insertions": counts.insertions,
        "audio_seconds": round(audio_seconds, 2), "seconds": round(elapsed, 2),
        "x_real_time": round(audio_seconds / max(elapsed, 1e-9), 2), "batch_size": batch_size,
        "start_error_s": {
            "words": len(start_errors),
            "median": round(float(np.median(start_errors)), 3) if start_errors else None,
            "median_abs": round(float(np.median(np.abs(start_errors))), 3) if start_errors else None,
        },
        **_by_speaker(rows, references, hypotheses),
        "examples": [{"reference": r, "hypothesis": h} for r, h in zip(references[:examples], hypotheses)],
    }


def _by_speaker(rows: tp.Sequence[dict], references: list[str], hypotheses: list[str]) -> dict:
    """``by_voice`` and ``by_variant``: utterances, words and WER of each group (empty without voices)."""
    groups: dict[str, dict[str, list[ErrorCounts]]] = {"by_voice": {}, "by_variant": {}}
    for row, reference, hypothesis in zip(rows, references, hypotheses, strict=True):
        if not row.get("voice"):
            continue
        voice, _, variant = str(row["voice"]).partition("+")
        if is_random_variant(variant):
            variant = "random"
        counts = align_counts(normalize(reference), normalize(hypothesis))
        groups["by_voice"].setdefault(voice, []).append(counts)
        groups["by_variant"].setdefault(variant or "(none)", []).append(counts)
    report = {}
    for name, by_key in groups.items():
        if by_key:
            report[name] = {key: _group_figures(counts) for key, counts in sorted(by_key.items())}
    return report


def _group_figures(counts: list[ErrorCounts]) -> dict:
    total = sum(counts, ErrorCounts())
    return {"utterances": len(counts), "reference_words": total.reference_words, "wer": round(total.wer, 4)}


def _start_errors(row: dict, words: list[Word]) -> list[float]:
    """Recognised minus reference start of each word, when the utterance is recognised word for word."""
    alignments = row.get("alignments") or []
    reference = [normalize(word) for word, _, _ in alignments]
    if [normalize(w.text) for w in words] != reference:
        return []
    return [w.start - float(start) for w, (_, (start, _), _) in zip(words, alignments, strict=True)]
