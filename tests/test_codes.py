"""Code corpora: packed sequences keep word times, channels are encoded apart, files round-trip."""

import json

import numpy as np
import torch
from test_codec_cli import make_checkpoint
from test_dialogue_data import CONFIG, fake_speak

from delaykit.data.codes import CodeCorpus, PackConfig, encode_corpus, load_channels
from delaykit.data.dialogues import synthesize_dialogues

# One utterance per sequence (each longer than 1 s), 0.5 s of lead-in, no noise floor.
PACK = PackConfig(sequence_seconds=1.0, lead_seconds=(0.5, 0.5), noise_floor_db=(-200.0, -200.0))


def dialogue_rows(directory, count: int, seed: int) -> list[dict]:
    """Manifest rows of ``count`` fake stereo conversations rendered into ``directory``."""
    manifest = synthesize_dialogues(directory, count, fake_speak, ["user"], seed=seed, config=CONFIG)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        row["path"] = str(directory / row["path"])
    return rows


def test_stereo_dialogues_encode_per_channel_and_round_trip(tmp_path):
    codec = make_checkpoint(tmp_path / "codec")
    rows = dialogue_rows(tmp_path / "data", 4, seed=2)
    corpus = encode_corpus(rows, codec, PACK, log=None)
    assert corpus.channels == 2 and corpus.num_codebooks == 8
    assert sum(len(words) for words in corpus.words) == sum(len(r["alignments"]) for r in rows)
    # With one utterance per sequence, sequence = 0.5 s lead + the file + 2 s tail, words moved by 0.5 s.
    first = corpus.sequence(0)
    row = next(r for r in rows if len(r["alignments"]) == len(first.words)
               and abs(r["alignments"][0][1][0] + 0.5 - first.words[0].start) < 1e-6)
    audio = load_channels(row["path"], 24000)  # [2, T]
    lead = np.zeros((2, 12000), np.float32)
    tail = np.zeros((2, 48000), np.float32)
    expected = codec.encode(torch.from_numpy(np.concatenate([lead, audio, tail], axis=1))[:, None])
    assert np.array_equal(first.codes, expected.numpy())
    corpus.save(tmp_path / "codes.npz")
    loaded = CodeCorpus.load(tmp_path / "codes.npz")
    assert np.array_equal(loaded.codes, corpus.codes) and loaded.words == corpus.words
    both = CodeCorpus.load_many([tmp_path / "codes.npz", tmp_path / "codes.npz"])
    assert len(both) == 2 * len(corpus) and both.seconds == 2 * corpus.seconds
    # Fewer codebooks: the first ones of the full encoding; mixed corpora keep the fewest.
    two = encode_corpus(rows, codec, PACK, log=None, codebooks=2)
    assert two.num_codebooks == 2 and np.array_equal(two.sequence(0).codes, first.codes[:, :2])
    two.save(tmp_path / "two.npz")
    mixed = CodeCorpus.load_many([tmp_path / "codes.npz", tmp_path / "two.npz"])
    assert mixed.num_codebooks == 2 and np.array_equal(mixed.sequence(0).codes, first.codes[:, :2])


def test_a_dialogues_user_is_encoded_by_its_own_codec(tmp_path):
    """`user_codec` encodes the user's channel (1) and only it: the agent keeps the main codec's codes."""
    codec = make_checkpoint(tmp_path / "codec")
    listener = make_checkpoint(tmp_path / "listener")
    with torch.no_grad():  # same shapes, another encoder: it hears the same audio as other codes
        for parameter in listener.encoder.parameters():
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(4)))
    rows = dialogue_rows(tmp_path / "data", 2, seed=3)
    plain = encode_corpus(rows, codec, PACK, log=None)
    heard = encode_corpus(rows, codec, PACK, log=None, user_codec=listener, user_codec_name="listener")
    assert heard.meta["user_codec"] == "listener" and "user_codec" not in plain.meta
    assert np.array_equal(heard.codes[0], plain.codes[0])  # the agent's channel
    assert not np.array_equal(heard.codes[1], plain.codes[1])
    # One utterance per sequence: 0.5 s lead + the file + 2 s tail; the user's codes are the listener's.
    first = heard.sequence(0)
    row = next(r for r in rows if len(r["alignments"]) == len(first.words)
               and abs(r["alignments"][0][1][0] + 0.5 - first.words[0].start) < 1e-6)
    audio = load_channels(row["path"], 24000)  # [2, T]
    padded = np.concatenate([np.zeros((2, 12000), np.float32), audio, np.zeros((2, 48000), np.float32)], axis=1)
    user = listener.encode(torch.from_numpy(padded[1:])[:, None])  # [1, K, F]
    assert np.array_equal(first.codes[1:], user.numpy())
