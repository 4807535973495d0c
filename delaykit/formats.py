"""Transcript writers in whisper's output formats: ``txt``, ``srt``, ``vtt``, ``tsv`` and ``json``.

Writers take timed words (anything with ``.text``, ``.start`` and ``.end`` in seconds: ``modes.words.Word``,
``text_stream.TimedWord``...) and group them into segments first. The grouping rule
(:class:`SegmentRule`): a word opens a new segment when

- the silence before it (its start minus the previous word's end) is at least ``max_pause`` (0.8 s), or
- the current segment already holds ``max_words`` (12) words, or
- the previous word ends a sentence (its text ends with ``.``, ``?``, ``!`` or ``…``, closing quotes and
  brackets aside).

A segment runs from its first word's start to its last word's end; its text is its words joined by spaces.
Layouts follow whisper's writers: srt ``HH:MM:SS,mmm`` with a cue number, vtt ``MM:SS.mmm`` under an hour
(``HH:MM:SS.mmm`` from an hour on) after a ``WEBVTT`` line, tsv a ``start/end/text`` header then integer
milliseconds, json ``{"text", "segments": [{"id", "start", "end", "text", "words"}], "language"}``, txt one
segment per line. Times are rounded to the millisecond.

    from delaykit.formats import render
    print(render("srt", transcript.words))
"""

from __future__ import annotations

import json
import typing as tp
from dataclasses import dataclass

__all__ = ["FORMATS", "Segment", "SegmentRule", "TimedText", "Writer", "format_timestamp", "group_segments",
           "render", "writer"]


class TimedText(tp.Protocol):
    """What a writer needs of a word."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class SegmentRule:
    """When a word starts a new segment (see the module docstring)."""

    max_pause: float = 0.8  # seconds of silence before a word that starts a new segment (1e-9 s tolerance)
    max_words: int = 12  # words per segment at most
    sentence_end: str = ".?!…"  # a word ending in one of these closes its segment
    closing: str = "\"')]}»”’"  # trailing characters skipped when looking for the sentence end


@dataclass(frozen=True)
class SegmentWord:
    """A word as written out (text stripped, times in seconds)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Segment:
    """Consecutive words shown together (one subtitle cue, one line of txt)."""

    id: int
    words: tuple[SegmentWord, ...]

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return max(word.end for word in self.words)

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)


def _ends_sentence(text: str, rule: SegmentRule) -> bool:
    stripped = text.rstrip(rule.closing)
    return bool(stripped) and stripped[-1] in rule.sentence_end


def group_segments(words: tp.Iterable[TimedText], rule: SegmentRule = SegmentRule()) -> list[Segment]:
    """Group words (in spoken order) into segments by ``rule``; words with empty text are skipped."""
    groups: list[list[SegmentWord]] = []
    for word in words:
        text = word.text.strip()
        if not text:
            continue
        current = SegmentWord(text, float(word.start), float(word.end))
        previous = groups[-1][-1] if groups else None
        if (previous is None or current.start - previous.end >= rule.max_pause - 1e-9
                or len(groups[-1]) >= rule.max_words or _ends_sentence(previous.text, rule)):
            groups.append([])
        groups[-1].append(current)
    return [Segment(index, tuple(group)) for index, group in enumerate(groups)]


def format_timestamp(seconds: float, always_include_hours: bool = False, decimal_marker: str = ".") -> str:
    """Whisper's timestamp: ``[HH:]MM:SS.mmm`` (hours only when non-zero unless ``always_include_hours``)."""
    milliseconds = round(max(seconds, 0.0) * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1000)
    prefix = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{prefix}{minutes:02d}:{secs:02d}{decimal_marker}{milliseconds:03d}"


def _cue_text(text: str) -> str:
    return text.replace("-->", "->")  # as whisper does: the arrow would end the cue's timing line


class Writer:
    """Renders segments as one output format; subclasses set ``extension`` and implement ``render``."""

    extension: str = ""

    def render(self, segments: tp.Sequence[Segment]) -> str:
        raise NotImplementedError


class TxtWriter(Writer):
    extension = "txt"

    def render(self, segments: tp.Sequence[Segment]) -> str:
        return "".join(f"{segment.text}\n" for segment in segments)


class SrtWriter(Writer):
    extension = "srt"

    def render(self, segments: tp.Sequence[Segment]) -> str:
        return "".join(
            f"{index}\n{format_timestamp(segment.start, True, ',')} --> {format_timestamp(segment.end, True, ',')}\n"
            f"{_cue_text(segment.text)}\n\n" for index, segment in enumerate(segments, start=1))


class VttWriter(Writer):
    extension = "vtt"

    def render(self, segments: tp.Sequence[Segment]) -> str:
        cues = "".join(f"{format_timestamp(segment.start)} --> {format_timestamp(segment.end)}\n"
                       f"{_cue_text(segment.text)}\n\n" for segment in segments)
        return "WEBVTT\n\n" + cues


class TsvWriter(Writer):
    extension = "tsv"

    def render(self, segments: tp.Sequence[Segment]) -> str:
        rows = "".join(f"{round(1000 * segment.start)}\t{round(1000 * segment.end)}\t"
                       f"{segment.text.replace(chr(9), ' ')}\n" for segment in segments)
        return "start\tend\ttext\n" + rows


class JsonWriter(Writer):
    extension = "json"
    language = "en"

    def render(self, segments: tp.Sequence[Segment]) -> str:
        document = {
            "text": " ".join(segment.text for segment in segments),
            "segments": [{
                "id": segment.id, "start": round(segment.start, 3), "end": round(segment.end, 3),
                "text": segment.text,
                "words": [{"word": word.text, "start": round(word.start, 3), "end": round(word.end, 3)}
                          for word in segment.words],
            } for segment in segments],
            "language": self.language,
        }
        return json.dumps(document, ensure_ascii=False) + "\n"


WRITERS: dict[str, Writer] = {w.extension: w for w in (TxtWriter(), SrtWriter(), VttWriter(), TsvWriter(),
                                                       JsonWriter())}
FORMATS = tuple(WRITERS)  # ("txt", "srt", "vtt", "tsv", "json")


def writer(name: str) -> Writer:
    """The writer of format ``name``; ValueError names the known formats."""
    try:
        return WRITERS[name]
    except KeyError:
        raise ValueError(f"unknown output format {name!r}; known: {', '.join(FORMATS)}") from None


def render(name: str, words: tp.Iterable[TimedText], rule: SegmentRule = SegmentRule()) -> str:
    """The whole document of format ``name`` for ``words``."""
    return writer(name).render(group_segments(words, rule))
