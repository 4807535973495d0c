"""Word-timed transcripts -> the aligned text stream on the frame grid (PAD/EPAD conventions).

The text row of the LM's token matrix holds one token per 80 ms frame. Starting from a row of PAD, every word
whose (shifted) start time has been reached is queued, and one queued token is emitted per frame; when the
first token of a word follows a PAD, that PAD becomes EPAD ("end of padding: a word starts next"). With
``announce_every_word`` (the TTS layout) every word gets its EPAD: a word queued right behind another, or at the
very first frame, waits one frame behind an EPAD of its own, since the TTS driver's only way to start a word
is the model's WORD action (EPAD). Shifting
the word times later than the audio (positive ``shift_seconds``) gives the ASR layout, where text trails the
speech; shifting them earlier gives the TTS layout. The same builder makes training targets for every mode
and the expected streams of the mode tests.
"""

from __future__ import annotations

import math
import typing as tp
from collections import deque
from dataclasses import dataclass, field

from .text import EPAD_ID, PAD_ID


@dataclass(frozen=True)
class TimedWord:
    """A word and when it is spoken, in seconds; ``speaker`` names a voice in multi-speaker transcripts."""

    text: str
    start: float
    end: float
    speaker: str | None = None


@dataclass(frozen=True)
class TextStreamConfig:
    """How words are laid on the frame grid."""

    frame_rate: float = 12.5
    shift_seconds: float = 0.0  # > 0: text trails the audio (ASR); < 0: text leads it (TTS)
    pad_id: int = PAD_ID
    epad_id: int = EPAD_ID
    # Token emitted before the first word of each speaker turn (e.g. {"main": 1, "other": 2} for TTS).
    speaker_tokens: dict[str, int] = field(default_factory=dict)
    # Every word's first token follows an EPAD frame, even with no padding to turn into one (TTS actions).
    announce_every_word: bool = False


@dataclass
class TextStream:
    """The aligned row and what did not fit in it."""

    tokens: list[int]  # one id per frame
    dropped_tokens: int = 0  # tokens still queued when the frames ran out


def num_frames(duration_seconds: float, frame_rate: float = 12.5) -> int:
    """Frames covering ``duration_seconds`` of audio."""
    return math.ceil(duration_seconds * frame_rate - 1e-9)


def aligned_text_stream(words: tp.Sequence[TimedWord], tokenize: tp.Callable[[str], list[int]],
                        frames: int, config: TextStreamConfig = TextStreamConfig()) -> TextStream:
    """Lay ``words`` (in spoken order) on ``frames`` frames, tokenizing each with ``tokenize``."""
    queue: deque[tuple[int, bool]] = deque()  # (token, first token of its word), reached but not emitted
    next_word = 0
    previous_speaker: str | None = None
    tokens: list[int] = []
    for frame in range(frames):
        frame_end = (frame + 1) / config.frame_rate
        while next_word < len(words) and words[next_word].start + config.shift_seconds < frame_end:
            word = words[next_word]
            word_tokens = list(tokenize(word.text))
            if word.speaker is not None and word.speaker != previous_speaker and config.speaker_tokens:
                word_tokens.insert(0, config.speaker_tokens[word.speaker])
            previous_speaker = word.speaker
            queue.extend((token, index == 0) for index, token in enumerate(word_tokens))
            next_word += 1
        if not queue:
            tokens.append(config.pad_id)
            continue
        token, first_of_word = queue[0]
        if first_of_word and tokens and tokens[-1] == config.pad_id:
            tokens[-1] = config.epad_id
        elif first_of_word and config.announce_every_word:
            tokens.append(config.epad_id)  # this frame announces the word; its first token comes next frame
            queue[0] = (token, False)
            continue
        queue.popleft()
        tokens.append(token)
    dropped = len(queue) + sum(len(tokenize(word.text)) for word in words[next_word:])
    return TextStream(tokens, dropped)
