"""Code corpora: word-aligned speech encoded once by a codec, the input of every LM training run.

LM training never touches audio: it reads the codec's tokens. ``encode_corpus`` packs utterances of a manifest
into long *sequences* (a random lead-in silence, then utterances separated by random pauses, then a tail of
silence so that text delayed behind the audio still fits), adds a faint noise floor, encodes each sequence with
the codec and keeps the word timings shifted into the sequence's time. A two-channel corpus (dialogue) holds
one code matrix per channel.

Stored as one ``.npz`` file: ``codes`` int16 [C, K, F_total] (the sequences end to end), ``offsets`` int64
[S + 1] (frame where each sequence starts), and ``meta`` (JSON: frame rate, codec name, the timed words of
every sequence as ``[word, start, end, speaker]`` in seconds from the start of its sequence, and, for corpora
encoded or annotated since voices became conditions, each sequence's utterances: where each ends and who spoke
it at what pitch and rate, see ``utterance_info``).
"""

from __future__ import annotations

import json
import os
import sys
import time
import typing as tp
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..text_stream import TimedWord

if tp.TYPE_CHECKING:
    from ..codec.model import CodecModel


@dataclass(frozen=True)
class PackConfig:
    """How utterances are packed into encoded sequences."""

    sequence_seconds: float = 30.0  # stop adding utterances once a sequence is this long
    lead_seconds: tuple[float, float] = (0.0, 1.0)  # silence before the first utterance
    gap_seconds: tuple[float, float] = (0.15, 1.2)  # pause between utterances
    tail_seconds: float = 2.0  # silence after the last utterance (room for delayed text)
    noise_floor_db: tuple[float, float] = (-70.0, -45.0)  # white noise under the whole sequence, dBFS RMS
    seed: int = 0


@dataclass
class CodeSequence:
    """One encoded sequence: codes of each channel and the words spoken in it."""

    codes: np.ndarray  # [C, K, F] int
    words: list[TimedWord]


class CodeCorpus:
    """Encoded sequences held in memory (a few MB per hour of speech)."""

    def __init__(self, codes: np.ndarray, offsets: np.ndarray, words: list[list[TimedWord]], meta: dict,
                 utterances: list[list[dict]] | None = None):
        self.codes = codes  # [C, K, F_total] int16
        self.offsets = offsets  # [S + 1]
        self.words = words
        self.meta = meta
        # per sequence, its utterances in order (``utterance_info``); None for corpora made without them
        self.utterances = utterances

    @property
    def frame_rate(self) -> float:
        return float(self.meta["frame_rate"])

    @property
    def channels(self) -> int:
        return int(self.codes.shape[0])

    @property
    def num_codebooks(self) -> int:
        return int(self.codes.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def frames(self, index: int) -> int:
        return int(self.offsets[index + 1] - self.offsets[index])

    @property
    def seconds(self) -> float:
        return float(self.offsets[-1]) / self.frame_rate

    def sequence(self, index: int) -> CodeSequence:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return CodeSequence(self.codes[:, :, start:end], self.words[index])

    @classmethod
    def from_sequences(cls, sequences: tp.Sequence[CodeSequence], meta: dict) -> CodeCorpus:
        codes = np.concatenate([s.codes for s in sequences], axis=2).astype(np.int16)  # [C, K, F_total]
        offsets = np.cumsum([0] + [s.codes.shape[2] for s in sequences]).astype(np.int64)
        return cls(codes, offsets, [list(s.words) for s in sequences], meta)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta)
        meta["words"] = [[[w.text, w.start, w.end, w.speaker] for w in words] for words in self.words]
        if self.utterances is not None:
            meta["utterances"] = self.utterances
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, codes=self.codes, offsets=self.offsets, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CodeCorpus:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            codes, offsets = data["codes"], data["offsets"]
        words = [[TimedWord(str(t), float(s), float(e), sp) for t, s, e, sp in seq] for seq in meta.pop("words")]
        return cls(codes, offsets, words, meta, meta.pop("utterances", None))

    @classmethod
    def load_many(cls, paths: tp.Sequence[str | os.PathLike]) -> CodeCorpus:
        """Several corpus files as one. They must share frame rate and channels; codebooks are cut to the fewest
        any of them has (the first codebooks of a codec are the same whatever number is encoded)."""
        corpora = [cls.load(p) for p in paths]
        first = corpora[0]
        for other in corpora[1:]:
            if other.channels != first.channels or other.frame_rate != first.frame_rate:
                raise ValueError("code corpora differ in channels or frame rate")
        codebooks = min(c.num_codebooks for c in corpora)
        sequences = [CodeSequence(sequence.codes[:, :codebooks], sequence.words)
                     for c in corpora for sequence in (c.sequence(i) for i in range(len(c)))]
        merged = cls.from_sequences(sequences, first.meta)
        if all(c.utterances is not None for c in corpora):  # otherwise no sequence's voices are known
            merged.utterances = [utterances for c in corpora for utterances in c.utterances]
        return merged


def row_words(row: dict, offset: float = 0.0) -> list[TimedWord]:
    """Timed words of a manifest row (``alignments``), moved by ``offset`` seconds."""
    return [TimedWord(str(word), float(start) + offset, float(end) + offset, speaker)
            for word, (start, end), speaker in row["alignments"]]


def utterance_info(row: dict, offset: float) -> dict:
    """What a voice-conditioned model is told of an utterance placed ``offset`` seconds into its sequence:
    where its speech ends (seconds into the sequence), its voice and pitch setting (manifest row fields), and
    its measured speaking rate (letters per second)."""
    from ..voice import letters_per_second

    words = row_words(row)
    end = offset + (words[-1].end if words else 0.0)
    return {"end": round(end, 3), "voice": row.get("voice"), "pitch": row.get("pitch"),
            "letters_per_second": round(letters_per_second(words), 3)}


def annotate_utterances(corpus: CodeCorpus, rows: tp.Sequence[dict]) -> CodeCorpus:
    """Add ``utterances`` to a corpus encoded from ``rows`` (the same rows, in the same order) before corpora
    kept them: the packing is recomputed from the corpus's own pack settings and each utterance's place in its
    sequence is read off its words. Raises if the rows are not those the corpus was made from."""
    config = PackConfig(**{key: tuple(value) if isinstance(value, list) else value
                           for key, value in corpus.meta["pack"].items()})
    groups = pack(rows, config)
    if len(groups) != len(corpus):
        raise ValueError(f"{len(groups)} sequences from these rows, the corpus has {len(corpus)}")
    annotated = []
    for index, group in enumerate(groups):
        words, cursor, infos = corpus.words[index], 0, []
        for row_index in group:
            row = rows[row_index]
            own = row_words(row)
            placed = words[cursor:cursor + len(own)]
            if [w.text for w in placed] != [w.text for w in own]:
                raise ValueError(f"sequence {index}: its words are not those of {row.get('path')}")
            offset = placed[0].start - own[0].start if own else 0.0
            infos.append(utterance_info(row, offset))
            cursor += len(own)
        if cursor != len(words):
            raise ValueError(f"sequence {index}: {len(words) - cursor} words that no row accounts for")
        annotated.append(infos)
    corpus.utterances = annotated
    return corpus


def pack(rows: tp.Sequence[dict], config: PackConfig) -> list[list[int]]:
    """Indices of ``rows`` grouped into sequences of about ``config.sequence_seconds`` (each row used once)."""
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(rows))
    groups: list[list[int]] = [[]]
    length = 0.0
    for index in order:
        if length >= config.sequence_seconds:
            groups.append([])
            length = 0.0
        groups[-1].append(int(index))
        length += float(rows[index]["duration"]) + sum(config.gap_seconds) / 2
    return [g for g in groups if g]


def render_sequence(rows: tp.Sequence[dict], config: PackConfig, rng: np.random.Generator, sample_rate: int,
                    load: tp.Callable[[str], np.ndarray]) -> tuple[np.ndarray, list[TimedWord], list[dict]]:
    """Audio [C, T] of ``rows`` (each loaded as [C, T]) one after the other with pauses, their words on its
    time line, and each row's ``utterance_info``."""
    pieces: list[np.ndarray] = []
    words: list[TimedWord] = []
    utterances: list[dict] = []
    channels = None
    cursor = 0
    for i, row in enumerate(rows):
        audio = load(row["path"]).astype(np.float32)  # [C, T]
        if channels is None:
            channels = audio.shape[0]
            lead = np.zeros((channels, round(rng.uniform(*config.lead_seconds) * sample_rate)), np.float32)
            pieces.append(lead)
            cursor = lead.shape[1]
        elif audio.shape[0] != channels:
            raise ValueError(f"{row['path']}: {audio.shape[0]} channels where the corpus has {channels}")
        words.extend(row_words(row, cursor / sample_rate))
        utterances.append(utterance_info(row, cursor / sample_rate))
        gap = rng.uniform(*config.gap_seconds) if i + 1 < len(rows) else config.tail_seconds
        pieces.extend([audio, np.zeros((channels, round(gap * sample_rate)), np.float32)])
        cursor += audio.shape[1] + pieces[-1].shape[1]
    signal = np.concatenate(pieces, axis=1)  # [C, T]
    floor = 10 ** (rng.uniform(*config.noise_floor_db) / 20)
    signal = signal + floor * rng.standard_normal(signal.shape).astype(np.float32)
    return np.clip(signal, -1.0, 1.0), words, utterances


def load_channels(path: str, sample_rate: int) -> np.ndarray:
    """A file as float32 [C, T] at ``sample_rate``."""
    from ..audio import read_audio, resample

    audio, rate = read_audio(path)  # [C, T]
    if rate != sample_rate:
        audio = np.stack([resample(channel, rate, sample_rate) for channel in audio])
    return audio


@torch.no_grad()
def encode_corpus(rows: tp.Sequence[dict], codec: CodecModel, config: PackConfig = PackConfig(),
                  codec_name: str = "", log: tp.TextIO | None = sys.stderr,
                  codebooks: int | None = None, user_codec: CodecModel | None = None,
                  user_codec_name: str = "") -> CodeCorpus:
    """Pack ``rows`` (manifest rows with ``path``, ``duration`` and ``alignments``) into sequences and encode
    each channel with ``codec`` (offline; equal to streaming encode), with its first ``codebooks`` codebooks
    (default: the codec's number; a codec with a semantic encoder runs only that for its semantic ones).

    ``user_codec`` encodes a dialogue's user channel (1; the agent is 0) instead: a codec with the same codebooks
    whose encoder hears voices differently (the ASR model's front end), so that a dialogue model hears its user
    as the recognizer does while it speaks the codes of ``codec``."""
    if user_codec is not None and (user_codec.sample_rate, user_codec.frame_rate) != (codec.sample_rate,
                                                                                      codec.frame_rate):
        raise ValueError("the user's codec must have the sample and frame rate of the agent's")
    phonemes_only = sum(bool(row.get("phonemes_only")) for row in rows)
    if phonemes_only:
        raise ValueError(f"{phonemes_only} rows are phonemes-only speech (English read by another language's "
                         "voice, data synth --accents): for the codec's semantic encoder, not for an LM corpus")
    rng = np.random.default_rng([config.seed, 1])
    sequences: list[CodeSequence] = []
    utterances: list[list[dict]] = []
    started, audio_seconds = time.monotonic(), 0.0
    groups = pack(rows, config)
    for number, group in enumerate(groups):
        signal, words, spoken = render_sequence([rows[i] for i in group], config, rng, codec.sample_rate,
                                                lambda p: load_channels(p, codec.sample_rate))  # [C, T]
        utterances.append(spoken)
        pcm = torch.from_numpy(signal)[:, None]  # [C, 1, T]
        if user_codec is None:
            codes = codec.encode(pcm, codebooks)  # [C, K, F]: channels as a batch
        elif len(pcm) != 2:
            raise ValueError(f"a user's codec is for two-channel dialogues (agent, user), not {len(pcm)} channels")
        else:  # [2, K, F]: the agent (channel 0) by the main codec, the user (1) by its own
            codes = torch.cat([codec.encode(pcm[:1], codebooks), user_codec.encode(pcm[1:], codebooks)])
        sequences.append(CodeSequence(codes.numpy().astype(np.int16), words))
        audio_seconds += signal.shape[1] / codec.sample_rate
        if log is not None and (number + 1) % 20 == 0:
            speed = audio_seconds / max(time.monotonic() - started, 1e-9)
            print(f"encode: {number + 1}/{len(groups)} sequences, {audio_seconds / 3600:.2f} h, "
                  f"{speed:.0f}x real time", file=log, flush=True)
    meta = {"frame_rate": codec.frame_rate, "codec": codec_name, "pack": asdict(config)}
    if user_codec is not None:
        meta["user_codec"] = user_codec_name
    corpus = CodeCorpus.from_sequences(sequences, meta)
    corpus.utterances = utterances
    return corpus
