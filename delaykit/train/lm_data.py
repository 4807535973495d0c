"""Training windows for the LM: codec codes and the aligned text stream, laid out as one mode's streams.

A ``StreamBatcher`` turns a :class:`~delaykit.data.codes.CodeCorpus` into batches of token matrices
``[B, K, T]`` in the layout of a mode (row 0 text, then generated audio codebooks, then fed ones), plus
per-frame voice-activity targets for the end-of-speech heads. The text row of every sequence is built once
with :func:`~delaykit.text_stream.aligned_text_stream` at the mode's text shift; windows are slices of whole
sequences. A window opening mid-sequence teaches the model that a stream may begin mid-sentence, whereas a
live stream always begins from an empty context before anyone speaks: ``start_prob`` makes that share of
windows open at their sequence's first frame (measured: without it, a model emitted words before the first
one was spoken). For voice-conditioned models a batch also holds, per frame, the index of each voice attribute
(``delaykit.voice``) of the utterance being spoken then; each attribute is left out (its "absent" index) in a
``condition_dropout`` share of windows.
"""

from __future__ import annotations

import math
import typing as tp
from dataclasses import dataclass

import numpy as np
import torch

from ..data.codes import CodeCorpus
from ..lm.embeddings import ZERO_TOKEN
from ..text_stream import TextStreamConfig, TimedWord, aligned_text_stream

AGENT_SPEAKER = "SPEAKER_MAIN"  # the speaker whose words are the text stream (moshi-finetune's name)


@dataclass(frozen=True)
class StreamSpec:
    """Which streams a batch holds: the mode's layout as far as training needs it."""

    mode: str  # asr | tts | dialogue
    text_shift_seconds: float  # > 0 text trails the audio (ASR), < 0 leads it (TTS)
    generated_codebooks: int  # rows 1 .. generated_codebooks: the agent's / synthesized audio
    fed_codebooks: int  # the next rows: audio the model listens to
    vad_horizons: tuple[float, ...] = ()  # seconds ahead for each P(no voice) target
    # dialogue: also lay the user's words on a row of their own this far behind the user's audio (the target
    # of a training-only head that transcribes the user); None: no such row
    user_text_shift_seconds: float | None = None
    # voice-conditioned models: each attribute's possible values, in the model's conditioner order
    voice_values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    condition_dropout: float = 0.0  # share of windows in which each attribute is left out


@dataclass
class Batch:
    codes: torch.Tensor  # [B, K, T] long: row 0 text, then audio; ZERO_TOKEN past a sequence's end
    no_voice: torch.Tensor  # [B, H, T] long: 1 where nobody speaks over the horizon after frame t, -100 = ignore
    user_text: torch.Tensor | None = None  # [B, T] long: the user's text row (see StreamSpec), -100 = ignore
    # [B, A, T] long: index of each voice attribute's value per frame (len(values) = absent); None without them
    conditions: torch.Tensor | None = None


def frame_conditions(utterances: tp.Sequence[dict], frames: int, frame_rate: float,
                     voice_values: tp.Sequence[tuple[str, tp.Sequence[str]]]) -> np.ndarray:
    """[A, frames] index of each attribute's value for each frame: the utterance whose speech ends next (the
    pause before an utterance is its own; the tail after the last one is the last one's). Values the model
    does not know, and attributes an utterance lacks, get the absent index."""
    from ..voice import utterance_values

    ends = np.array([u["end"] for u in utterances], dtype=np.float64)  # [U] seconds, increasing
    times = np.arange(frames) / frame_rate  # [F]
    owner = np.minimum(np.searchsorted(ends, times, side="right"), len(utterances) - 1)  # [F]
    per_utterance = [utterance_values(u) for u in utterances]
    out = np.empty((len(voice_values), frames), dtype=np.int64)
    for a, (name, values) in enumerate(voice_values):
        index = {value: i for i, value in enumerate(values)}
        ids = np.array([index.get(v[name], len(values)) for v in per_utterance], dtype=np.int64)  # [U]
        out[a] = ids[owner]
    return out


def voice_activity(words: tp.Sequence[TimedWord], frames: int, frame_rate: float) -> np.ndarray:
    """[frames] bool: a word is being spoken during the frame."""
    active = np.zeros(frames + 1, dtype=np.int32)
    for word in words:
        first = max(0, math.floor(word.start * frame_rate))
        last = min(frames, math.ceil(word.end * frame_rate))
        if last > first:
            active[first] += 1
            active[last] -= 1
    return np.cumsum(active)[:frames] > 0


def no_voice_targets(active: np.ndarray, horizons: tp.Sequence[float], frame_rate: float) -> np.ndarray:
    """[H, frames] int: 1 where no frame in (t, t + horizon] is voiced, for each horizon.

    The model's hidden state at step t has heard frames < t; the target asks whether speech follows within
    the horizon. Frames whose horizon runs past the sequence end are marked -100 (unknown)."""
    frames = active.shape[0]
    voiced = np.concatenate([[0], np.cumsum(active)])  # voiced[i] = voiced frames before i
    targets = np.full((len(horizons), frames), -100, dtype=np.int64)
    for h, seconds in enumerate(horizons):
        span = max(1, round(seconds * frame_rate))
        t = np.arange(frames)
        end = t + span
        known = end <= frames
        count = voiced[np.minimum(end, frames)] - voiced[t]
        targets[h, known] = (count[known] == 0).astype(np.int64)
    return targets


class StreamBatcher:
    """Random windows of a code corpus in a mode's stream layout, reproducible from a seed."""

    def __init__(self, corpus: CodeCorpus, tokenize: tp.Callable[[str], list[int]], spec: StreamSpec,
                 window_frames: int, batch_size: int, seed: int = 0, start_prob: float = 0.0):
        if spec.mode == "dialogue" and corpus.channels < 2:
            raise ValueError("dialogue training needs a two-channel code corpus (agent and user)")
        needed = max(spec.generated_codebooks, spec.fed_codebooks)  # per channel
        if needed > corpus.num_codebooks:
            raise ValueError(f"the layout needs {needed} codebooks per channel, the corpus has "
                             f"{corpus.num_codebooks}")
        self.corpus = corpus
        self.spec = spec
        self.window_frames = window_frames
        self.batch_size = batch_size
        self.start_prob = start_prob  # share of windows that open at their sequence's first frame
        self.rng = np.random.default_rng(seed)
        text_config = TextStreamConfig(frame_rate=corpus.frame_rate, shift_seconds=spec.text_shift_seconds,
                                       announce_every_word=spec.mode == "tts")  # words start on WORD actions
        self.text: list[np.ndarray] = []
        self.user_text: list[np.ndarray] = []  # only with spec.user_text_shift_seconds
        self.no_voice: list[np.ndarray] = []
        self.conditions: list[np.ndarray] = []  # [A, F] per sequence, with spec.voice_values
        if spec.voice_values and corpus.utterances is None:
            raise ValueError("voice conditions need a corpus that records its utterances (`delaykit data "
                             "annotate`)")
        user_config = None
        if spec.user_text_shift_seconds is not None:
            if spec.mode != "dialogue":
                raise ValueError("a user text row is for dialogue, where a user speaks")
            user_config = TextStreamConfig(frame_rate=corpus.frame_rate, shift_seconds=spec.user_text_shift_seconds)
        self.dropped_tokens = 0
        for index in range(len(corpus)):
            frames = corpus.frames(index)
            words = corpus.words[index]
            spoken = [w for w in words if w.speaker in (None, AGENT_SPEAKER)] if spec.mode == "dialogue" else words
            stream = aligned_text_stream(spoken, tokenize, frames, text_config)
            self.dropped_tokens += stream.dropped_tokens
            self.text.append(np.asarray(stream.tokens, dtype=np.int64))
            if user_config is not None:
                heard = [w for w in words if w.speaker not in (None, AGENT_SPEAKER)]
                self.user_text.append(np.asarray(aligned_text_stream(heard, tokenize, frames, user_config).tokens,
                                                 dtype=np.int64))
            if spec.voice_values:
                assert corpus.utterances is not None
                self.conditions.append(frame_conditions(corpus.utterances[index], frames, corpus.frame_rate,
                                                        spec.voice_values))
            active = voice_activity(words, frames, corpus.frame_rate)
            self.no_voice.append(no_voice_targets(active, spec.vad_horizons, corpus.frame_rate))
        lengths = np.array([corpus.frames(i) for i in range(len(corpus))], dtype=np.float64)
        self.weights = lengths / lengths.sum()

    def rows(self, index: int) -> np.ndarray:
        """The whole sequence ``index`` as stream rows [K, F]."""
        codes = self.corpus.sequence(index).codes.astype(np.int64)  # [C, Kc, F]
        spec = self.spec
        audio = [codes[0, :spec.generated_codebooks]]
        if spec.mode == "dialogue":
            audio.append(codes[1, :spec.fed_codebooks])
        elif spec.fed_codebooks:
            audio.append(codes[0, :spec.fed_codebooks])
        return np.concatenate([self.text[index][None], *audio], axis=0)

    def next_batch(self) -> Batch:
        T = self.window_frames
        K = 1 + self.spec.generated_codebooks + self.spec.fed_codebooks
        codes = np.full((self.batch_size, K, T), ZERO_TOKEN, dtype=np.int64)
        no_voice = np.full((self.batch_size, len(self.spec.vad_horizons), T), -100, dtype=np.int64)
        user_text = np.full((self.batch_size, T), -100, dtype=np.int64) if self.user_text else None
        conditions = None
        if self.conditions:
            absent = np.array([len(values) for _, values in self.spec.voice_values], dtype=np.int64)  # [A]
            conditions = np.broadcast_to(absent[None, :, None], (self.batch_size, len(absent), T)).copy()
        for b in range(self.batch_size):
            index = int(self.rng.choice(len(self.weights), p=self.weights))
            frames = self.corpus.frames(index)
            start = int(self.rng.integers(0, max(frames - T, 0) + 1))
            if self.start_prob and self.rng.random() < self.start_prob:
                start = 0  # what a live stream looks like: silence, then the first words, from an empty context
            length = min(T, frames - start)
            codes[b, :, :length] = self.rows(index)[:, start:start + length]
            no_voice[b, :, :length] = self.no_voice[index][:, start:start + length]
            if user_text is not None:
                user_text[b, :length] = self.user_text[index][start:start + length]
            if conditions is not None:
                kept = self.rng.random(len(absent)) >= self.spec.condition_dropout  # [A]
                window = self.conditions[index][:, start:start + length]  # [A, length]
                conditions[b, :, :length] = np.where(kept[:, None], window, absent[:, None])
        return Batch(torch.from_numpy(codes), torch.from_numpy(no_voice),
                     None if user_text is None else torch.from_numpy(user_text),
                     None if conditions is None else torch.from_numpy(conditions))

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
