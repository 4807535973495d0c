"""Code corpora: packed sequences keep word times, channels are encoded apart, files round-trip."""

import json

import numpy as np
import torch
from test_codec_cli import make_checkpoint
from test_dialogue_data import CONFIG, fake_speak

from delaykit.data.codes import CodeCorpus, PackConfig, encode_corpus, load_channels
from delaykit.data.dialogues import synthesize_dialogues


def test_stereo_dialogues_encode_per_channel_and_round_trip(tmp_path):
    codec = make_checkpoint(tmp_path / "codec")
    manifest = synthesize_dialogues(tmp_path / "data", 4, fake_speak, ["user"], seed=2, config=CONFIG)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        row["path"] = str(tmp_path / "data" / row["path"])
    pack = PackConfig(sequence_seconds=1.0, lead_seconds=(0.5, 0.5), noise_floor_db=(-200.0, -200.0))
    corpus = encode_corpus(rows, codec, pack, log=None)
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
    two = encode_corpus(rows, codec, pack, log=None, codebooks=2)
    assert two.num_codebooks == 2 and np.array_equal(two.sequence(0).codes, first.codes[:, :2])
    two.save(tmp_path / "two.npz")
    mixed = CodeCorpus.load_many([tmp_path / "codes.npz", tmp_path / "two.npz"])
    assert mixed.num_codebooks == 2 and np.array_equal(mixed.sequence(0).codes, first.codes[:, :2])
