"""Word-aligned speech corpora: read them in either layout, check their rows before training uses them, and
write a manifest so that it exists only once its corpus is complete (:func:`manifest_writer`).

A corpus is either a ``manifest.jsonl`` (one JSON object per line, ``{"path", "text", "duration",
"alignments", ...}`` with paths relative to the manifest), or a directory of audio files each with a JSON file
of the same stem holding ``{"alignments": [[word, [start, end], speaker], ...]}`` (times in seconds; the
layout Kyutai's moshi-finetune reads). :func:`read_corpus` turns either into rows with an absolute ``path``,
``text``, ``duration`` and ``alignments``; :func:`check_corpus` keeps the rows that are safe to train on and
reports every other one by reason (missing or unreadable audio, bad word times, unknown speakers, empty
words) in a :class:`CorpusReport`, so that nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_NAME = "manifest.jsonl"
AUDIO_SUFFIXES = (".wav", ".flac")

# Reasons a row is skipped, in the order they are checked and reported.
MISSING_AUDIO = "missing audio file"
UNREADABLE_AUDIO = "unreadable audio"
MISSING_ALIGNMENTS = "missing alignments"
MALFORMED_ALIGNMENTS = "malformed alignments"
EMPTY_WORD = "empty word"
NEGATIVE_TIME = "negative time"
START_AFTER_END = "start after end"
OUT_OF_ORDER = "overlapping or out of order"
PAST_END = "past the end of the audio"
UNKNOWN_SPEAKER = "unknown speaker"
REASONS = (MISSING_AUDIO, UNREADABLE_AUDIO, MISSING_ALIGNMENTS, MALFORMED_ALIGNMENTS, EMPTY_WORD, NEGATIVE_TIME,
           START_AFTER_END, OUT_OF_ORDER, PAST_END, UNKNOWN_SPEAKER)


# ---------------------------------------------------------------------------------------------------------
# Writing


@contextlib.contextmanager
def manifest_writer(out_dir: str | os.PathLike) -> tp.Iterator[tp.TextIO]:
    """A file for the rows of ``out_dir``'s new ``manifest.jsonl``. Rows go to ``manifest.jsonl.partial``, renamed
    to the manifest when the block ends without an error, so that a manifest on disk always means a finished
    corpus (the rebuild scripts skip those); an earlier manifest is removed first, as its files are about to be
    overwritten."""
    manifest = Path(out_dir) / MANIFEST_NAME
    partial = manifest.with_name(MANIFEST_NAME + ".partial")
    manifest.unlink(missing_ok=True)
    with open(partial, "w", encoding="utf-8") as f:
        yield f
    os.replace(partial, manifest)


# ---------------------------------------------------------------------------------------------------------
# Reading


def manifest_path(source: str | os.PathLike) -> Path | None:
    """The manifest of ``source`` (a manifest file, or a directory holding ``manifest.jsonl``), else None."""
    source = Path(source)
    if source.is_dir():
        source = source / MANIFEST_NAME
    return source if source.is_file() else None


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a manifest (or a directory holding ``manifest.jsonl``) as written, with ``path`` absolute."""
    found = manifest_path(path)
    if found is None:
        raise FileNotFoundError(f"{path}: no manifest ({MANIFEST_NAME}) there")
    rows = []
    for number, line in enumerate(found.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{found}:{number}: not a JSON object ({exc})") from exc
        if not isinstance(row, dict) or "path" not in row:
            raise ValueError(f"{found}:{number}: a manifest row is a JSON object with a 'path'")
        row["path"] = os.path.abspath(found.parent / row["path"])
        rows.append(row)
    return rows


def _text_of(alignments) -> str:
    """The words of ``alignments`` joined by spaces ("" when they are not a list of entries)."""
    if not isinstance(alignments, list):
        return ""
    return " ".join(str(entry[0]) for entry in alignments if isinstance(entry, (list, tuple)) and entry)


def _audio_duration(path: str) -> float | None:
    """Seconds of audio in ``path`` from its header, or None when it cannot be read."""
    import soundfile

    try:
        info = soundfile.info(path)
    except (RuntimeError, OSError, ValueError, TypeError):  # LibsndfileError is a RuntimeError
        return None
    return info.frames / info.samplerate if info.samplerate > 0 else None


def _read_pairs(directory: Path) -> list[dict]:
    """Rows of a directory of audio files with JSON alignments beside them (searched recursively)."""
    rows = []
    for audio in sorted(p for p in directory.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        row: dict = {"path": os.path.abspath(audio), "alignments": None}
        sidecar = audio.with_suffix(".json")
        if sidecar.is_file():
            try:
                row["alignments"] = json.loads(sidecar.read_text(encoding="utf-8")).get("alignments")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
                row["alignments_error"] = f"{sidecar.name}: {exc}"
        rows.append(row)
    return rows


def read_corpus(source: str | os.PathLike) -> list[dict]:
    """Rows of a corpus: ``source`` is a manifest, a directory with ``manifest.jsonl``, or a directory of
    audio + JSON pairs.

    Every row has an absolute ``path``, ``text`` (the manifest's, else the aligned words joined by spaces),
    ``duration`` (the manifest's, else the audio header's; None when unreadable) and ``alignments`` (None
    when there are none). Nothing is checked here: see :func:`check_corpus`.
    """
    source = Path(source)
    if manifest_path(source) is not None:
        rows = read_manifest(source)
    elif source.is_dir():
        rows = _read_pairs(source)
    else:
        raise FileNotFoundError(f"{source}: neither a manifest nor a directory")
    for row in rows:
        row.setdefault("alignments", None)
        if not isinstance(row.get("text"), str):
            row["text"] = _text_of(row["alignments"])
        if row.get("duration") is None:
            row["duration"] = _audio_duration(row["path"])
    return rows


# ---------------------------------------------------------------------------------------------------------
# Checking


@dataclass
class CorpusReport:
    """What :func:`check_corpus` kept and skipped: rows per reason and the first few examples of each."""

    rows: int = 0
    kept: int = 0
    problems: dict[str, int] = field(default_factory=dict)  # reason -> rows with that problem
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> "path: detail", first few

    @property
    def skipped(self) -> int:
        return self.rows - self.kept

    def summary(self) -> str:
        """One line per reason, worst first."""
        lines = [f"{self.kept} of {self.rows} rows kept, {self.skipped} skipped"]
        for reason, count in sorted(self.problems.items(), key=lambda item: -item[1]):
            lines.append(f"  {reason}: {count} rows, e.g. " + "; ".join(self.examples.get(reason, [])))
        return "\n".join(lines)


def _is_time(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_entry(entry) -> tuple[str, float, float, object] | None:
    """``(word, start, end, speaker)`` of an alignment entry ``[word, [start, end], speaker]``, else None."""
    if not isinstance(entry, (list, tuple)) or len(entry) != 3:
        return None
    word, times, speaker = entry
    if not isinstance(word, str) or not isinstance(times, (list, tuple)) or len(times) != 2:
        return None
    start, end = times
    if not (_is_time(start) and _is_time(end)):
        return None
    return word, float(start), float(end), speaker


def alignment_problems(alignments, duration: float, speakers: set[str] | None = None,
                       tolerance: float = 0.1) -> dict[str, str]:
    """Reason -> detail of what is wrong with ``alignments`` of audio ``duration`` seconds long (empty: fine).

    Words must be non-empty, times non-negative with start <= end, each speaker's words in order without
    overlap, every end within ``tolerance`` seconds of the audio's end, and speakers in ``speakers`` when
    given. Different speakers may overlap (dialogues).
    """
    if alignments is None:
        return {MISSING_ALIGNMENTS: "no alignments"}
    if not isinstance(alignments, list):
        return {MALFORMED_ALIGNMENTS: f"alignments are a {type(alignments).__name__}, not a list"}
    problems: dict[str, str] = {}
    last_end: dict[object, tuple[float, str]] = {}  # speaker -> (end, word) of their previous word
    for index, entry in enumerate(alignments):
        parsed = _parse_entry(entry)
        if parsed is None:
            problems.setdefault(MALFORMED_ALIGNMENTS, f"entry {index} is {entry!r}, not [word, [start, end], speaker]")
            continue
        word, start, end, speaker = parsed
        if not word.strip():
            problems.setdefault(EMPTY_WORD, f"entry {index} has an empty word")
        if start < 0 or end < 0:
            problems.setdefault(NEGATIVE_TIME, f"{word!r} at {start}..{end}")
        if start > end:
            problems.setdefault(START_AFTER_END, f"{word!r} starts at {start} after its end {end}")
        previous = last_end.get(speaker)
        if previous is not None and start < previous[0] - 1e-6:
            problems.setdefault(OUT_OF_ORDER, f"{word!r} starts at {start} before {previous[1]!r} ends at "
                                              f"{previous[0]}")
        last_end[speaker] = (max(end, previous[0]) if previous else end, word)
        if max(start, end) > duration + tolerance:
            problems.setdefault(PAST_END, f"{word!r} ends at {end} in {duration:.3f} s of audio")
        if speakers is not None and speaker not in speakers:
            problems.setdefault(UNKNOWN_SPEAKER, f"{word!r} has speaker {speaker!r}, not one of {sorted(speakers)}")
    return problems


def row_problems(row: dict, speakers: set[str] | None = None, tolerance: float = 0.1,
                 require_alignments: bool = True) -> dict[str, str]:
    """Reason -> detail of what is wrong with one corpus row (empty: fine). Reads the audio file's header."""
    path = str(row.get("path", ""))
    if not path or not os.path.isfile(path):
        return {MISSING_AUDIO: "no such file"}
    duration = _audio_duration(path)
    if duration is None or duration <= 0:
        return {UNREADABLE_AUDIO: "not a readable audio file" if duration is None else "no samples"}
    if row.get("alignments_error"):
        return {MALFORMED_ALIGNMENTS: row["alignments_error"]}
    if row.get("alignments") is None and not require_alignments:
        return {}
    return alignment_problems(row.get("alignments"), duration, speakers, tolerance)


def check_corpus(rows: list[dict], speakers: set[str] | tuple[str, ...] | None = None, tolerance: float = 0.1,
                 require_alignments: bool = True, max_examples: int = 3) -> tuple[list[dict], CorpusReport]:
    """The rows safe to train on, and a report of the others.

    A row is skipped when its audio file is missing or unreadable, or its alignments are missing (unless
    ``require_alignments`` is False), malformed, have an empty word, a negative time, a start after its end,
    a word overlapping or before the same speaker's previous word, an end more than ``tolerance`` seconds
    past the audio's end, or a speaker outside ``speakers`` (when given). A row with several problems counts
    once under each.
    """
    allowed = set(speakers) if speakers is not None else None
    report = CorpusReport(rows=len(rows))
    good = []
    for row in rows:
        problems = row_problems(row, allowed, tolerance, require_alignments)
        if not problems:
            good.append(row)
            continue
        for reason, detail in problems.items():
            report.problems[reason] = report.problems.get(reason, 0) + 1
            examples = report.examples.setdefault(reason, [])
            if len(examples) < max_examples:
                examples.append(f"{row.get('path')}: {detail}")
    report.kept = len(good)
    report.problems = {reason: report.problems[reason] for reason in REASONS if reason in report.problems}
    return good, report
