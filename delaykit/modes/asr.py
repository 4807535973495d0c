"""Streaming speech recognition: the engine read with its text stream behind the audio.

A thin driver over the codec and ``LMGenerator``, shaped by a ``StreamLayout`` (text delay, silence prefix,
end padding, fed codebooks) rather than by hard-coded numbers. It drives the model the way Kyutai's
reference ``stt`` inference does: the silence prefix before the audio, ``text delay + 1 s`` of silence after
it, only whole 80 ms frames, the first frame stepped twice (so the model reads it instead of the initial
tokens), greedy text by default.

Usage::

    transcriber = Transcriber(load_engine("path/to/stt"))
    with transcriber.stream(batch_size=2) as stream:      # items start at once (start=False: call start())
        for frame in frames:                              # [2, 1920] float32 at 24 kHz
            for event in stream.push(frame):              # Word / EndOfSpeech, as soon as the delay allows
                ...
        events = stream.flush()                           # end padding, last words

    transcript = transcriber.transcribe("speech.wav")     # offline, on the same streaming path

The silence prefix is fed by ``start``; the events it produces (usually none) come from ``start`` or, for the
items the constructor starts, with the next ``push``/``flush``. One stream at a time per engine (the models
hold the streaming state); memory stays constant however long a stream runs.

Every item of a stream batch is independent: ``start(mask)`` (re)starts chosen items, ``push(pcm, mask)``
advances chosen items, ``flush(mask)`` finishes chosen items and ``stop(mask)`` drops them; the others keep
their state untouched (exec masks of the codec and the generator), so each item's results equal a run alone.

Times: a text frame ``p`` (the ``p``-th frame of the model's text sequence, which the model emits after
reading ``p`` audio frames) is placed at ``p * 80 ms - prefix - text delay`` of the input audio; word
boundaries follow ``delaykit.modes.words``. ``EndOfSpeech`` comes from the semantic-VAD extra heads (P(no
voice) over the next 0.5/1/2/3 s in Kyutai's stt models), timed at ``p * 80 ms - prefix``.
"""

from __future__ import annotations

import os
import typing as tp
from dataclasses import dataclass

import numpy as np
import torch

from ..audio import check_finite, downmix, load_audio, resample
from ..engine import Engine
from ..errors import AudioError, CheckpointError
from ..layout import StreamLayout
from ..lm.embeddings import UNGENERATED_TOKEN
from ..lm.generate import GenerationOptions, LMGenerator
from ..lm.sampling import SamplingOptions
from .session import EngineSession
from .words import Word, WordAssembler, WordTiming

__all__ = ["EndOfSpeech", "TextFrame", "TranscribeOptions", "Transcriber", "Transcript", "TranscriptionStream",
           "Word", "transcribe"]


@dataclass(frozen=True)
class TranscribeOptions:
    """How a ``Transcriber`` decodes and what it reports."""

    temperature: float = 0.0  # text sampling temperature; 0 = greedy (the published setting)
    top_k: int = 0  # with temperature > 0: keep the k most likely text tokens (0 = all)
    seed: int | None = None  # seeds sampling (unused when greedy)
    vad: bool = True  # report EndOfSpeech from the semantic-VAD heads, when the model has them
    vad_head: int = 2  # which head decides (Kyutai's stt: 0.5, 1, 2, 3 s horizons -> index 2 is 2 s)
    vad_threshold: float = 0.5  # EndOfSpeech when P(no voice) of that head reaches this, after some speech
    start_at_epad: bool = True  # a word starts at its EPAD's frame; False: at its first token's frame
    close_words_on_pad: bool = False  # emit a word when padding follows it (end = that frame), not at the next word
    text_frames: bool = False  # also report every text frame (TextFrame: token and VAD probabilities)

    def generation(self) -> GenerationOptions:
        text = SamplingOptions(temperature=self.temperature, top_k=self.top_k)
        return GenerationOptions(text=text, audio=SamplingOptions(), seed=self.seed)


@dataclass(frozen=True)
class EndOfSpeech:
    """The VAD head's P(no voice) reached the threshold after speech (once per stretch of speech)."""

    time: float  # seconds of input audio the model had heard when it decided
    probability: float  # P(no voice) of the chosen head
    item: int = 0


@dataclass(frozen=True)
class TextFrame:
    """One frame of the text stream (reported with ``text_frames=True``)."""

    index: int  # position in the model's text sequence (see the module docstring)
    time: float  # index * frame duration - prefix - text delay (not clamped: negative inside the delay)
    token: int  # text token id (PAD = 3, EPAD = 0)
    no_voice: tuple[float, ...]  # P(no voice) of each extra head; empty without heads
    item: int = 0


Event = Word | EndOfSpeech | TextFrame


@dataclass(frozen=True)
class Transcript:
    """The result of an offline transcription."""

    words: list[Word]
    text: str
    end_of_speech: list[EndOfSpeech]


AudioInput = str | os.PathLike | np.ndarray | torch.Tensor


class Transcriber:
    """Speech recognition with one engine; ``stream(B)`` for live use, ``transcribe(audio)`` offline."""

    def __init__(self, engine: Engine, options: TranscribeOptions = TranscribeOptions(),
                 layout: StreamLayout | None = None):
        if engine.lm is None or engine.codec is None or engine.tokenizer is None:
            missing = [name for name in ("lm", "codec", "tokenizer") if getattr(engine, name) is None]
            raise CheckpointError(f"{_engine_name(engine)}: speech recognition needs an LM, a codec and a "
                                  f"tokenizer; this checkpoint has no {', '.join(missing)}")
        if layout is None:
            if engine.files is None:
                raise ValueError("an engine built in memory needs an explicit StreamLayout")
            if engine.model_type != "stt":
                raise CheckpointError(f"{_engine_name(engine)}: model_type {engine.model_type!r} is not a "
                                      "speech-recognition checkpoint (pass a StreamLayout to force one)")
            layout = StreamLayout.from_checkpoint(engine.files.config, "asr")
        lm, codec = engine.lm, engine.codec
        fed = lm.num_streams - 1 - lm.dep_q
        if layout.text_is_fed or layout.fed_codebooks <= 0 or fed < layout.fed_codebooks:
            raise CheckpointError(f"{_engine_name(engine)}: this model cannot listen (it reads {fed} audio "
                                  f"streams, the layout feeds {layout.fed_codebooks}); ASR needs fed audio streams")
        if codec.config.quantizer.n_q < layout.fed_codebooks:
            raise CheckpointError(f"{_engine_name(engine)}: the codec has {codec.config.quantizer.n_q} codebooks, "
                                  f"the LM listens to {layout.fed_codebooks}")
        if options.vad and lm.extra_heads and not 0 <= options.vad_head < len(lm.extra_heads):
            raise ValueError(f"vad_head {options.vad_head} out of range: the model has {len(lm.extra_heads)} heads")
        self.engine = engine
        self.options = options
        self.layout = layout
        self.sample_rate = codec.sample_rate
        self.frame_size = codec.frame_size
        # Whole samples, as the reference pads: int(seconds * sample rate).
        self.prefix_samples = int(layout.silence_prefix_seconds * self.sample_rate)
        self.flush_samples = int(layout.flush_seconds * self.sample_rate)
        prefix_seconds = self.prefix_samples / self.sample_rate
        self.audio_offset_seconds = prefix_seconds  # model audio time -> input audio time
        self.timing = WordTiming(frame_rate=codec.frame_rate, offset_seconds=prefix_seconds + layout.text_shift_seconds,
                                 start_at_epad=options.start_at_epad, close_on_pad=options.close_words_on_pad,
                                 pad_id=layout.pad_id, epad_id=layout.epad_id)

    def stream(self, batch_size: int = 1, start: bool = True) -> TranscriptionStream:
        """A batch of ``batch_size`` independent streams (a context manager; one open stream per engine)."""
        return TranscriptionStream(self, batch_size, start)

    def transcribe_iter(self, audio: AudioInput, sample_rate: int | None = None) -> tp.Iterator[Event]:
        """Events of a whole recording, streamed frame by frame (paths are read and resampled to 24 kHz;
        arrays are mono [T] or [C, T] at ``sample_rate``, default the codec's)."""
        signal = self._load(audio, sample_rate)  # [T] float32
        frame = self.frame_size
        tail = -signal.shape[0] % frame
        padded = torch.nn.functional.pad(torch.from_numpy(signal), (0, tail))  # [frames * frame]
        with self.stream(1) as stream:
            for start in range(0, padded.shape[0], frame):
                yield from stream.push(padded[None, start:start + frame])
            yield from stream.flush(padded_samples=tail)

    def transcribe(self, audio: AudioInput, sample_rate: int | None = None) -> Transcript:
        """The words of a whole recording (same results as streaming it)."""
        words, ends = [], []
        for event in self.transcribe_iter(audio, sample_rate):
            if isinstance(event, Word):
                words.append(event)
            elif isinstance(event, EndOfSpeech):
                ends.append(event)
        return Transcript(words, " ".join(word.text for word in words), ends)

    def _load(self, audio: AudioInput, sample_rate: int | None) -> np.ndarray:
        if isinstance(audio, (str, os.PathLike)):
            signal = load_audio(audio, self.sample_rate)
            what = str(audio)
        else:
            what = "audio"
            signal = audio.detach().cpu().float().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
            signal = signal.astype(np.float32, copy=False)
            if signal.ndim not in (1, 2):
                raise AudioError(f"{what}: expected mono [T] or [C, T] samples, got shape {signal.shape}")
            signal = downmix(signal)  # [T]
            check_finite(signal, what)
            if sample_rate is not None and sample_rate != self.sample_rate and signal.size:
                signal = resample(signal, sample_rate, self.sample_rate)
        if signal.size == 0:
            raise AudioError(f"{what}: audio is empty")
        return np.ascontiguousarray(signal, dtype=np.float32)


class TranscriptionStream(EngineSession):
    """Live recognition for ``batch_size`` independent items sharing one batch; see the module docstring."""

    def __init__(self, transcriber: Transcriber, batch_size: int, start: bool = True):
        self.transcriber = transcriber
        self.batch_size = batch_size
        engine = transcriber.engine
        assert engine.codec is not None and engine.lm is not None and engine.tokenizer is not None
        self.codec = engine.codec
        self.generator = LMGenerator(engine.lm, transcriber.options.generation())
        self._device = engine.device
        super().__init__(self.codec, self.generator, batch_size)
        B = batch_size
        self.running = torch.zeros(B, dtype=torch.bool)  # items started and not yet flushed or stopped
        self._steps = [0] * B  # LM steps taken by each item since its start (the first frame counts twice)
        self._first_frame = torch.ones(B, dtype=torch.bool)  # the next frame is the item's first: step it twice
        leftover = transcriber.prefix_samples % transcriber.frame_size
        self._pending = torch.zeros(B, leftover)  # [B, L] samples waiting for a whole frame (prefix remainder)
        self._assemblers = [WordAssembler(engine.tokenizer, transcriber.timing, item) for item in range(B)]
        self._vad_armed = [False] * B  # EndOfSpeech may fire: speech was heard since the last one
        self._start_events: list[Event] = []  # from the constructor's start(): handed out by the next push/flush
        if start:
            try:
                self._start_events = self.start()
            except BaseException:
                self.close()
                raise

    # -- per-item control ---------------------------------------------------------------------------------

    def start(self, mask: tp.Any = None) -> list[Event]:
        """(Re)start the items in ``mask`` (all when None) and feed their silence prefix."""
        mask = self._mask(mask, default=torch.ones(self.batch_size, dtype=torch.bool))
        if not mask.any():
            return []
        self.codec.reset_streaming(mask.to(self._device))
        self.generator.reset(mask.to(self._device))
        for item in _items(mask):
            self._steps[item] = 0
            self._assemblers[item].reset()
            self._vad_armed[item] = False
        self._first_frame[mask] = True
        self._pending[mask] = 0.0
        self.running |= mask
        frame = self.transcriber.frame_size
        events: list[Event] = []
        silence = torch.zeros(self.batch_size, frame)  # [B, frame]
        for _ in range(self.transcriber.prefix_samples // frame):
            events += self._advance(silence, mask)
        return events

    def stop(self, mask: tp.Any = None) -> None:
        """Drop the items in ``mask`` without finishing them (their pending words are discarded)."""
        mask = self._mask(mask, default=self.running.clone())
        self.running &= ~mask
        for item in _items(mask):
            self._assemblers[item].reset()

    def push(self, pcm: tp.Any, mask: tp.Any = None) -> list[Event]:
        """Feed ``pcm`` [B, n * frame_size] (or [n * frame_size] when B = 1) to the items in ``mask`` (default:
        the running ones; rows of other items are ignored). Returns the events the frames produced."""
        mask = self._mask(mask, default=self.running.clone())
        if (mask & ~self.running).any():
            raise ValueError(f"items {_items(mask & ~self.running)} are not running: start() them first")
        samples = torch.as_tensor(pcm, dtype=torch.float32).cpu()
        if samples.dim() == 1 and self.batch_size == 1:
            samples = samples[None]
        frame = self.transcriber.frame_size
        if samples.dim() != 2 or samples.shape[0] != self.batch_size or samples.shape[1] % frame:
            raise ValueError(f"expected pcm [{self.batch_size}, n * {frame}], got {list(samples.shape)}")
        if not torch.isfinite(samples[mask]).all():
            raise AudioError("audio contains non-finite samples (NaN or infinity)")
        events, self._start_events = self._start_events, []
        return events + self._feed(samples, mask) if mask.any() else events

    def flush(self, mask: tp.Any = None, padded_samples: int = 0) -> list[Event]:
        """Finish the items in ``mask`` (default: the running ones): feed the end padding, return the last
        events. ``padded_samples``: zeros the caller already appended to its last frame (they count as padding)."""
        mask = self._mask(mask, default=self.running.clone()) & self.running
        events, self._start_events = self._start_events, []
        if not mask.any():
            return events
        padding = max(self.transcriber.flush_samples - padded_samples, 0)
        joined = torch.cat([self._pending, torch.zeros(self.batch_size, padding)], dim=1)  # [B, L + padding]
        events += self._step_frames(joined, mask)[0]  # a last partial frame is dropped, as the reference does
        for item in _items(mask):
            word = self._assemblers[item].finish()
            if word is not None:
                events.append(word)
        self.running &= ~mask
        return events

    # -- stepping -----------------------------------------------------------------------------------------

    def _mask(self, mask: tp.Any, default: torch.Tensor) -> torch.Tensor:
        if self.closed:
            raise RuntimeError("this TranscriptionStream is closed")
        if mask is None:
            return default
        mask = torch.as_tensor(mask, dtype=torch.bool).cpu()
        if mask.shape != (self.batch_size,):
            raise ValueError(f"expected a mask of shape [{self.batch_size}], got {list(mask.shape)}")
        return mask

    def _feed(self, samples: torch.Tensor, mask: torch.Tensor) -> list[Event]:
        """Append ``samples`` [B, n * frame] to the pending samples of the masked items, step the whole frames."""
        joined = torch.cat([self._pending, samples], dim=1)  # [B, L + n * frame]
        events, leftover = self._step_frames(joined, mask)  # leftover [B, L]: every item keeps the prefix remainder
        self._pending[mask] = leftover[mask]
        return events

    def _step_frames(self, samples: torch.Tensor, mask: torch.Tensor) -> tuple[list[Event], torch.Tensor]:
        """Step every whole frame of ``samples`` [B, n]; returns the events and the samples left over."""
        frame = self.transcriber.frame_size
        whole = samples.shape[1] // frame * frame
        events: list[Event] = []
        for start in range(0, whole, frame):
            events += self._advance(samples[:, start:start + frame], mask)
        return events, samples[:, whole:]

    @torch.no_grad()
    def _advance(self, frame: torch.Tensor, mask: torch.Tensor) -> list[Event]:
        """One 80 ms frame [B, frame_size] for the items in ``mask``."""
        device = self._device
        layout = self.transcriber.layout
        self.codec.set_exec_mask(mask.to(device))
        codes = self.codec.encode(frame[:, None].to(device), layout.fed_codebooks)  # [B, K_fed, 1]
        first = mask & self._first_frame
        if first.any():  # the reference steps an item's first frame twice; the first output is dropped
            self.generator.set_exec_mask(first.to(device))
            self.generator.step(codes)
            for item in _items(first):
                self._steps[item] += 1
            self._first_frame &= ~mask
        self.generator.set_exec_mask(mask.to(device))
        output = self.generator.step(codes)
        items = _items(mask)
        for item in items:
            self._steps[item] += 1
        if output is None:
            return []
        tokens = output.tokens[:, 0].tolist()  # [B] text
        no_voice = (torch.stack([head[:, 0] for head in output.extra_heads], dim=1).tolist()
                    if output.extra_heads else [[] for _ in range(self.batch_size)])  # [B, heads]
        return [event for item in items for event in self._read(item, tokens[item], no_voice[item])]

    def _read(self, item: int, token: int, no_voice: list[float]) -> list[Event]:
        """Events of one item's text frame."""
        if token == UNGENERATED_TOKEN:
            return []
        transcriber = self.transcriber
        options = transcriber.options
        index = self._steps[item] - 1 - self.generator.max_delay  # position in the text sequence
        frame_rate = transcriber.timing.frame_rate
        events: list[Event] = []
        if options.text_frames:
            time = index / frame_rate - transcriber.timing.offset_seconds
            events.append(TextFrame(index, time, token, tuple(no_voice), item))
        word = self._assemblers[item].push(index, token)
        if word is not None:
            events.append(word)
        if token not in (transcriber.layout.pad_id, transcriber.layout.epad_id):
            self._vad_armed[item] = True
        if options.vad and no_voice and self._vad_armed[item]:
            probability = no_voice[options.vad_head]
            if probability >= options.vad_threshold:
                self._vad_armed[item] = False
                time = max(0.0, index / frame_rate - transcriber.audio_offset_seconds)
                events.append(EndOfSpeech(time, probability, item))
        return events


def transcribe(audio: AudioInput, engine: Engine | str | os.PathLike = "default",
               options: TranscribeOptions = TranscribeOptions(), sample_rate: int | None = None) -> Transcript:
    """One-call offline transcription with an engine or a checkpoint name/directory."""
    if not isinstance(engine, Engine):
        from ..engine import load_engine

        engine = load_engine(engine)
    return Transcriber(engine, options).transcribe(audio, sample_rate)


def _items(mask: torch.Tensor) -> list[int]:
    return [int(i) for i in torch.nonzero(mask).flatten()]


def _engine_name(engine: Engine) -> str:
    return str(engine.files.directory) if engine.files is not None else "engine"
