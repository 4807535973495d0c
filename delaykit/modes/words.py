"""Words and their times from the text stream of a listening model (one token per 80 ms frame).

The text stream holds PAD (nothing said), EPAD (end of padding: a word starts next) and SentencePiece pieces,
where ``▁`` opens a word. :class:`WordAssembler` reads that stream one frame at a time and closes words:

- a word starts at the frame of the EPAD that announces it, or at its first token's frame when no EPAD did
  (a word that follows another without padding; with ``start_at_epad=False`` always at the first token);
- its end is the start of the next word, or, for the last word of a stream, the frame after its last token;
  with ``close_on_pad=True`` a word closes as soon as padding follows it, ending at that frame (lower latency:
  no waiting for the next word);
- a piece without ``▁`` continues the current word, even across padding, unless an EPAD came in between
  (or the word already has ``max_word_tokens`` pieces, which bounds memory on degenerate output).

Frame indices are turned into seconds of the input audio by :class:`WordTiming`, which removes the text
delay and the silence prefix the driver fed before the audio (times are clamped at 0).
"""

from __future__ import annotations

import typing as tp
from dataclasses import dataclass, field

from ..text import EPAD_ID, PAD_ID

WORD_START_MARK = "\u2581"  # SentencePiece's "▁": this piece begins a word


class PieceDecoder(tp.Protocol):
    """What the assembler needs from a tokenizer (``delaykit.text.TextTokenizer`` fits)."""

    def id_to_piece(self, token_id: int) -> str: ...

    def decode(self, ids: tp.Iterable[int]) -> str: ...


@dataclass(frozen=True)
class Word:
    """A recognised word; times in seconds of the input audio, precision one frame."""

    text: str
    start: float
    end: float
    item: int = 0  # batch item (stream) the word belongs to


@dataclass(frozen=True)
class WordTiming:
    """How text-stream frame indices map to input-audio seconds."""

    frame_rate: float = 12.5  # text-stream frames per second
    offset_seconds: float = 0.0  # text delay + silence prefix: subtracted from every frame time
    start_at_epad: bool = True  # a word starts at its EPAD's frame (Kyutai); False: at its first token's frame
    close_on_pad: bool = False  # close a word when padding follows it (end = that frame) instead of at the next word
    max_word_tokens: int = 64  # a longer word is closed there (bounded memory even on a degenerate stream)
    pad_id: int = PAD_ID
    epad_id: int = EPAD_ID

    def seconds(self, frame_index: int) -> float:
        """Input-audio time of the start of text frame ``frame_index``, clamped at 0."""
        return max(0.0, frame_index / self.frame_rate - self.offset_seconds)


@dataclass
class _OpenWord:
    """Tokens of a word whose end is not known yet."""

    token_ids: list[int]
    start_index: int  # frame where the word starts (its EPAD or first token)
    last_index: int  # frame of its last token so far


@dataclass
class WordAssembler:
    """Streaming word assembly for one stream: ``push`` each frame's token, ``finish`` at the end."""

    decoder: PieceDecoder
    timing: WordTiming = field(default_factory=WordTiming)
    item: int = 0
    _open: _OpenWord | None = field(default=None, init=False)  # the word being read, end not known yet
    _epad_index: int | None = field(default=None, init=False)  # latest EPAD not yet followed by a word

    def reset(self) -> None:
        self._open = None
        self._epad_index = None

    def push(self, frame_index: int, token: int) -> Word | None:
        """Read the token of text frame ``frame_index``; returns the word this frame closes, if any."""
        timing = self.timing
        if token == timing.pad_id or token == timing.epad_id:
            if token == timing.epad_id:
                self._epad_index = frame_index
            if self._open is None:
                return None
            return self._close(frame_index) if timing.close_on_pad else None
        piece = self.decoder.id_to_piece(token)
        starts_word = (piece.startswith(WORD_START_MARK) or self._epad_index is not None or self._open is None
                       or len(self._open.token_ids) >= timing.max_word_tokens)
        if not starts_word:
            assert self._open is not None
            self._open.token_ids.append(token)
            self._open.last_index = frame_index
            return None
        start = frame_index
        if self._epad_index is not None and timing.start_at_epad:
            start = self._epad_index
        closed = self._close(start) if self._open is not None else None
        self._open = _OpenWord([token], start, frame_index)
        self._epad_index = None
        return closed

    def finish(self) -> Word | None:
        """End of the stream: the open word, ending the frame after its last token."""
        if self._open is None:
            return None
        word = self._close(self._open.last_index + 1)
        self._epad_index = None
        return word

    def _close(self, end_index: int) -> Word | None:
        """Turn the open word into a ``Word`` ending at ``end_index`` (None for pieces with no text)."""
        assert self._open is not None
        open_word, self._open = self._open, None
        text = self.decoder.decode(open_word.token_ids).strip()
        if not text:
            return None
        end_index = max(end_index, open_word.start_index)
        return Word(text, self.timing.seconds(open_word.start_index), self.timing.seconds(end_index), self.item)


def words_from_tokens(tokens: tp.Iterable[int], decoder: PieceDecoder, timing: WordTiming = WordTiming(),
                      first_index: int = 0) -> list[Word]:
    """All words of a whole text stream whose first token sits at frame ``first_index`` (offline form)."""
    assembler = WordAssembler(decoder, timing)
    words = [assembler.push(index, int(token)) for index, token in enumerate(tokens, start=first_index)]
    words.append(assembler.finish())
    return [word for word in words if word is not None]
