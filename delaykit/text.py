"""Text side: the SentencePiece tokenizer wrapper, the special text ids, and validation of text input.

Conventions of the Moshi family (see REFERENCE.md): in the text stream, id 3 is PAD (nothing said this frame)
and id 0 is EPAD (end of padding: a word's first token follows). Both are ordinary SentencePiece ids
(``<unk>`` and ``<pad>`` of the published tokenizers) that the model repurposes, so decoding drops them.
"""

from __future__ import annotations

import os
import typing as tp
from pathlib import Path

from .errors import CheckpointError, TextError

PAD_ID = 3  # text stream: nothing is said in this frame
EPAD_ID = 0  # text stream: padding ends, the next frame starts a word
SPECIAL_IDS = frozenset({PAD_ID, EPAD_ID})  # dropped by TextTokenizer.decode


def validate_text(text: str | bytes, what: str = "text") -> str:
    """The input as a ``str``, or TextError when it is not UTF-8, empty or only whitespace.

    ``bytes`` must decode as UTF-8; a ``str`` must be encodable as UTF-8 (no lone surrogates, as
    ``surrogateescape`` produces from undecodable command-line bytes). ``what`` names the source in errors.
    """
    text = ensure_utf8(text, what)
    if not text.strip():
        raise TextError(f"{what}: text is empty")
    return text


def ensure_utf8(text: str | bytes, what: str = "text") -> str:
    """Like :func:`validate_text` but empty text is allowed."""
    if isinstance(text, (bytes, bytearray)):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TextError(f"{what}: not valid UTF-8 (byte {exc.start}: {exc.reason})") from exc
    if not isinstance(text, str):
        raise TextError(f"{what}: expected text, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TextError(f"{what}: not valid UTF-8 (character {exc.start}: {exc.reason})") from exc
    return text


def read_text_file(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file with the checks of :func:`validate_text`, naming the file in errors."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TextError(f"{path}: cannot read text file ({exc.strerror or exc})") from exc
    return validate_text(raw, what=str(path))


class TextTokenizer:
    """A SentencePiece model loaded from a ``.model`` file, with encode/decode in delaykit's conventions."""

    def __init__(self, path: str | os.PathLike):
        import sentencepiece

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: tokenizer model file not found")
        self._sp = sentencepiece.SentencePieceProcessor()
        try:
            self._sp.Load(str(self.path))
        except (OSError, RuntimeError) as exc:
            raise CheckpointError(f"{self.path}: not a SentencePiece model ({exc})") from exc

    @property
    def unk_id(self) -> int:
        """Id of the unknown piece (characters the tokenizer cannot represent)."""
        return int(self._sp.unk_id())

    @property
    def vocab_size(self) -> int:
        """Number of pieces; the LM's ``text_card``."""
        return int(self._sp.GetPieceSize())

    def encode(self, text: str | bytes) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS). Empty text gives ``[]``; invalid UTF-8 raises TextError."""
        text = ensure_utf8(text)
        return list(self._sp.EncodeAsIds(text)) if text else []

    def encode_words(self, words: tp.Sequence[str]) -> list[list[int]]:
        """Token ids of each word separately, each with its leading word-boundary marker."""
        return [self.encode(word) for word in words]

    def decode(self, ids: tp.Iterable[int], skip_special: bool = True) -> str:
        """Text of ``ids``; PAD and EPAD are dropped unless ``skip_special`` is False."""
        ids = [int(i) for i in ids]
        if skip_special:
            ids = [i for i in ids if i not in SPECIAL_IDS]
        return self._sp.DecodeIds(ids)

    def id_to_piece(self, token_id: int) -> str:
        """The SentencePiece piece of one id, e.g. ``'▁hello'``."""
        return self._sp.IdToPiece(int(token_id))

    def __repr__(self) -> str:
        return f"TextTokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"
