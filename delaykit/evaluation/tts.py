"""TTS figures on held-out texts: how intelligible the speech is, how long it lasts, how fast it is made.

Each reference text is synthesized (sampling seeded per utterance, so a report is reproducible), then
transcribed by recognisers that did not make it: the independent judge (Whisper tiny.en, offline) and, when
given, a delaykit ASR model. Their WER against the text is the intelligibility figure; the judge's WER on the
original recordings of the same texts, when asked for, is the bar (the judge is far from perfect on synthetic
voices). Duration per word is compared with the originals' to catch speech that is too fast, too slow or cut.
Speed is audio seconds made per wall-clock second, and the latency of streaming is the time from handing over
a text to its first 80 ms of audio.
"""

from __future__ import annotations

import dataclasses
import time
import typing as tp
from pathlib import Path

import numpy as np
import torch

from ..audio import load_audio, write_audio
from ..engine import Engine
from ..modes.script import parse_turns
from ..modes.tts import AudioFrame, SynthesisOptions, Synthesizer
from .wer import word_error_rate


class Recognizer(tp.Protocol):
    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str: ...


def evaluate_tts(engine: Engine, rows: tp.Sequence[dict], recognizers: dict[str, Recognizer],
                 options: SynthesisOptions | None = None, seed: int = 0, judge_originals: bool = False,
                 out_dir: str | Path | None = None, examples: int = 5) -> dict:
    """Synthesize the ``text`` of each manifest row with ``engine`` (a TTS checkpoint) and score it with each of
    ``recognizers`` (name -> recogniser). Utterance i samples with seed ``seed + i``. ``judge_originals`` also
    scores the rows' own recordings (``path``); ``out_dir`` keeps the synthesized wavs."""
    texts = [row["text"] for row in rows]
    options = options or SynthesisOptions()
    sample_rate = engine.codec.sample_rate
    audios: list[np.ndarray] = []
    audio_seconds, started = 0.0, time.monotonic()
    first_audio: list[float] = []  # seconds from the text to the first audio frame, per utterance
    for index, text in enumerate(texts):
        synthesizer = Synthesizer(engine, dataclasses.replace(options, seed=seed + index))
        frames: list[torch.Tensor] = []
        asked = time.monotonic()
        with synthesizer.stream() as stream:
            stream.push_items(parse_turns(text))
            stream.end_of_text()
            for event in stream.events():
                if isinstance(event, AudioFrame):
                    if not frames:
                        first_audio.append(time.monotonic() - asked)
                    frames.append(event.pcm)
        audio = torch.cat(frames).float().cpu().numpy() if frames else np.zeros(0, np.float32)  # [T] mono
        audios.append(audio)
        audio_seconds += audio.shape[0] / sample_rate
    elapsed = time.monotonic() - started
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for index, audio in enumerate(audios):
            write_audio(out / f"{index:04d}.wav", audio, sample_rate)
    words = sum(len(text.split()) for text in texts)
    report: dict = {
        "utterances": len(texts), "reference_words": words, "seed": seed,
        "audio_seconds": round(audio_seconds, 2), "seconds_per_word": round(audio_seconds / max(words, 1), 3),
        "real_time_factor": round(audio_seconds / max(elapsed, 1e-9), 2),
        "first_audio_seconds_median": round(float(np.median(first_audio)), 3) if first_audio else None,
        "wer": {}, "examples": [{"reference": text} for text in texts[:examples]],
    }
    if judge_originals:
        originals = [load_audio(row["path"], sample_rate) for row in rows]
        report["original_seconds_per_word"] = round(sum(a.shape[0] for a in originals) / sample_rate / words, 3)
    for name, recognizer in recognizers.items():
        hypotheses = [recognizer.transcribe(audio, sample_rate) for audio in audios]
        report["wer"][name] = round(word_error_rate(texts, hypotheses, numbers=True).wer, 4)
        for example, hypothesis in zip(report["examples"], hypotheses):
            example[name] = hypothesis
        if judge_originals:
            heard = [recognizer.transcribe(np.asarray(a, np.float32), sample_rate) for a in originals]
            report["wer"][f"{name} on originals"] = round(word_error_rate(texts, heard, numbers=True).wer, 4)
    return report


class AsrRecognizer:
    """A delaykit ASR model as a recogniser for :func:`evaluate_tts`."""

    def __init__(self, model: tp.Any):
        self.model = model

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        from ..audio import resample

        if sample_rate != self.model.sample_rate:
            audio = resample(np.asarray(audio, np.float32), sample_rate, self.model.sample_rate)
        return self.model.transcribe(np.asarray(audio, np.float32)).text
