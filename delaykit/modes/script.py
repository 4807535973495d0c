"""TTS scripts: speaker turns and ``<break time="0.5s"/>`` pauses, parsed into words, then into script entries.

A script is a list of turns; turn 0 is the main speaker, turn 1 the other one, and so on alternately (an empty
first turn starts with the other speaker). Inside a turn, words are separated by whitespace and a
``<break time="1.5s"/>`` (or ``"500ms"``) tag asks for a pause. Before splitting, the text is normalised the way
Kyutai's TTS models were trained: a typographic apostrophe becomes ``'``, a colon becomes a space, and
parentheses are dropped.

Parsing (``parse_turns``/``parse_text``) needs no tokenizer and yields ``ScriptWord``/``ScriptBreak`` items;
a ``ScriptTokenizer`` turns items into ``ScriptEntry`` values, the unit the TTS driver feeds: the tokens of one
word (preceded by the speaker token at a change of speaker, for multi-speaker models) and how many frames the
model must pad after taking it. A break is an entry without tokens whose padding is the pause length.
"""

from __future__ import annotations

import re
import typing as tp
from dataclasses import dataclass

from ..errors import TextError
from ..text import TextTokenizer, ensure_utf8

MAIN_SPEAKER, OTHER_SPEAKER = 0, 1  # speaker indices of turns (even turns: main, odd turns: other)
SPEAKER_TOKENS = (1, 2)  # text ids announcing a turn of the main / other speaker in Kyutai's TTS models

# A break tag, or a run of whitespace: the separators between words.
_SEPARATOR = re.compile(r"<break\s+time\s*=\s*\"([0-9]+(?:\.[0-9]*)?)\s*(s|ms)\"\s*/?>|\s+")
_REPLACEMENTS = (("\u2019", "'"), (":", " "), ("(", ""), (")", ""))


@dataclass(frozen=True)
class ScriptWord:
    """One word of a turn, as written (after normalisation)."""

    text: str  # no whitespace
    speaker: int  # MAIN_SPEAKER or OTHER_SPEAKER


@dataclass(frozen=True)
class ScriptBreak:
    """A requested pause."""

    seconds: float
    speaker: int  # the speaker of the turn it sits in


ScriptItem = ScriptWord | ScriptBreak


@dataclass(frozen=True)
class ScriptEntry:
    """What the driver feeds after the model asks for a word: a word's tokens, or a pause."""

    tokens: tuple[int, ...]  # the word's text ids (speaker token first at a change of speaker); () for a pause
    text: str  # the word; "" for a pause
    padding: int = 0  # frames the model must pad after taking this entry (pause length for a break)
    speaker: int = MAIN_SPEAKER

    @property
    def is_break(self) -> bool:
        return not self.tokens


def normalize(text: str) -> str:
    """The character replacements applied before splitting a turn into words."""
    for old, new in _REPLACEMENTS:
        text = text.replace(old, new)
    return text


def parse_text(text: str | bytes, speaker: int = MAIN_SPEAKER) -> list[ScriptItem]:
    """Words and breaks of one turn, in order. Invalid UTF-8 raises TextError; empty text gives []."""
    if speaker not in (MAIN_SPEAKER, OTHER_SPEAKER):
        raise ValueError(f"speaker must be {MAIN_SPEAKER} (main) or {OTHER_SPEAKER} (other), got {speaker!r}")
    text = normalize(ensure_utf8(text))
    items: list[ScriptItem] = []
    position = 0
    for match in _SEPARATOR.finditer(text):
        if match.start() > position:
            items.append(ScriptWord(text[position:match.start()], speaker))
        position = match.end()
        if match.group(1) is not None:
            seconds = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
            items.append(ScriptBreak(seconds, speaker))
    if position < len(text):
        items.append(ScriptWord(text[position:], speaker))
    return items


def parse_turns(turns: str | bytes | tp.Sequence[str]) -> list[ScriptItem]:
    """Words and breaks of a whole script: a single string is one turn of the main speaker, a sequence holds
    alternating turns (main, other, main...). Raises TextError when the script has no word at all."""
    if isinstance(turns, (str, bytes, bytearray)):
        turns = [ensure_utf8(turns, "script")]
    items: list[ScriptItem] = []
    for index, turn in enumerate(turns):
        items.extend(parse_text(ensure_utf8(turn, f"turn {index}"), index % 2))
    if not any(isinstance(item, ScriptWord) for item in items):
        raise TextError("script: text is empty (no word to say)")
    return items


class ScriptTokenizer:
    """Turns script items into entries, remembering the last speaker so that words can arrive in pieces."""

    def __init__(self, tokenizer: TextTokenizer, frame_rate: float, multi_speaker: bool, padding_between: int = 0,
                 unknown_id: int | None = None):
        self.tokenizer = tokenizer
        self.frame_rate = frame_rate  # frames per second, to turn break lengths into frames
        self.multi_speaker = multi_speaker  # announce speaker changes with SPEAKER_TOKENS
        self.padding_between = padding_between  # minimum padding frames after each word (1 articulates better)
        self.unknown_id = unknown_id  # the tokenizer's unk id: a word containing it is refused
        self.last_speaker: int | None = None

    def entries(self, items: tp.Iterable[ScriptItem]) -> list[ScriptEntry]:
        return [self.entry(item) for item in items]

    def entry(self, item: ScriptItem) -> ScriptEntry:
        if isinstance(item, ScriptBreak):
            return ScriptEntry((), "", round(item.seconds * self.frame_rate), item.speaker)
        tokens = self.tokenizer.encode(item.text)
        if not tokens:
            raise TextError(f"word {item.text!r} gives no token")
        if self.unknown_id is not None and self.unknown_id in tokens:
            unknown = "".join(sorted({c for c in item.text if self.unknown_id in self.tokenizer.encode(c)}))
            raise TextError(f"word {item.text!r}: the tokenizer does not know the character(s) {unknown!r}")
        if self.multi_speaker and item.speaker != self.last_speaker:
            tokens.insert(0, SPEAKER_TOKENS[item.speaker])
        self.last_speaker = item.speaker
        padding = max(0, self.padding_between + len(tokens) - 1) if self.padding_between > 0 else 0
        return ScriptEntry(tuple(tokens), item.text, padding, item.speaker)
