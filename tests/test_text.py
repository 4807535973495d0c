"""Tests of delaykit.text: a tiny SentencePiece model trained here, round trips, special ids, validation."""

from __future__ import annotations

import pytest
import sentencepiece

from delaykit.errors import CheckpointError, TextError
from delaykit.text import EPAD_ID, PAD_ID, TextTokenizer, read_text_file, validate_text

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a stream of text runs beside the stream of audio",
    "speech to text and text to speech share one model",
    "bonjour le monde, la parole et le texte",
    "delayed streams make a model that listens while it talks",
] * 4


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory) -> str:
    """A 48-piece SentencePiece model with Kyutai's id layout (0 unk, 1 bos, 2 eos, 3 pad)."""
    directory = tmp_path_factory.mktemp("spm")
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(directory / "tiny"), vocab_size=48, model_type="unigram",
        character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=3, num_threads=1,
        minloglevel=2, seed_sentencepiece_size=1000,
    )
    return str(directory / "tiny.model")


def test_encode_decode_round_trip(tokenizer_path: str) -> None:
    tok = TextTokenizer(tokenizer_path)
    assert tok.vocab_size == 48
    for line in ["the quick brown fox", "text to speech", "le monde"]:
        ids = tok.encode(line)
        assert ids and all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == line
    assert tok.encode("") == []
    assert tok.encode(b"speech") == tok.encode("speech")


def test_special_ids_follow_moshi_conventions(tokenizer_path: str) -> None:
    assert (PAD_ID, EPAD_ID) == (3, 0)
    tok = TextTokenizer(tokenizer_path)
    ids = tok.encode("the dog")
    stream = [PAD_ID, EPAD_ID, *ids, PAD_ID, PAD_ID]  # a text stream with padding around the words
    assert tok.decode(stream) == "the dog"
    assert tok.id_to_piece(PAD_ID) == "<pad>"
    assert tok.encode_words(["the", "dog"])[0] == tok.encode("the")


def test_non_utf8_and_empty_text_are_rejected(tokenizer_path: str, tmp_path) -> None:
    tok = TextTokenizer(tokenizer_path)
    with pytest.raises(TextError, match="not valid UTF-8"):
        tok.encode(b"caf\xe9")
    with pytest.raises(TextError, match="not valid UTF-8"):
        validate_text(b"\xff\xfe bad")
    with pytest.raises(TextError, match="not valid UTF-8"):
        validate_text("lone surrogate \udce9")  # what surrogateescape makes of bad argv bytes
    with pytest.raises(TextError, match="empty"):
        validate_text("   \n")
    assert validate_text(b" hello ") == " hello "
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("déjà".encode("latin-1"))
    with pytest.raises(TextError, match=r"latin1\.txt: not valid UTF-8"):
        read_text_file(bad)
    with pytest.raises(TextError, match=r"absent\.txt: cannot read"):
        read_text_file(tmp_path / "absent.txt")


def test_tokenizer_file_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"nothing\.model: tokenizer model file not found"):
        TextTokenizer(tmp_path / "nothing.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"\x00\x01 not a protobuf")
    with pytest.raises(CheckpointError, match=r"garbage\.model: not a SentencePiece model"):
        TextTokenizer(garbage)
