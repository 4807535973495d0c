"""The Python API a user reaches for: ``delaykit.load(...)`` and one object per checkpoint.

    import delaykit
    model = delaykit.load("kyutai/stt-1b-en_fr")       # or "default", or a checkpoint directory
    print(model.transcribe("call.wav").text)

The checkpoint's ``model_type`` picks the mode (``stt`` -> ASR, ``tts`` -> TTS, ``moshi`` -> dialogue); a
mode the checkpoint cannot serve raises a ``CheckpointError`` saying so. Every mode has a whole-input call
and a streaming form (``transcriber()``, ``synthesizer()``, ``conversation()``) for live use.
"""

from __future__ import annotations

import os
import typing as tp
from dataclasses import dataclass
from pathlib import Path

import torch

from .engine import Engine, load_engine
from .errors import CheckpointError
from .layout import MODE_OF_MODEL_TYPE

if tp.TYPE_CHECKING:  # pragma: no cover
    from .modes.asr import TranscribeOptions, Transcriber, Transcript
    from .modes.dialogue import Conversation, DialogueOptions, DialogueResult
    from .modes.tts import SynthesisOptions, Synthesizer
    from .text_stream import TimedWord


@dataclass
class Model:
    """A loaded checkpoint and the modes it serves."""

    engine: Engine

    @property
    def mode(self) -> str:
        """``asr``, ``tts``, ``dialogue`` or ``codec`` (a codec-only checkpoint)."""
        return MODE_OF_MODEL_TYPE.get(self.engine.model_type, self.engine.model_type)

    def _require(self, mode: str) -> None:
        if self.mode != mode:
            source = self.engine.files.source if self.engine.files is not None else "this checkpoint"
            raise CheckpointError(f"{source}: a {self.mode} checkpoint (model_type "
                                  f"{self.engine.model_type!r}) cannot do {mode}")

    # -- speech recognition ------------------------------------------------------------------------------

    def transcriber(self, options: TranscribeOptions | None = None) -> Transcriber:
        from .modes.asr import TranscribeOptions, Transcriber

        self._require("asr")
        return Transcriber(self.engine, options or TranscribeOptions())

    def transcribe(self, audio: str | os.PathLike | tp.Any, options: TranscribeOptions | None = None
                   ) -> Transcript:
        """Words with start/end times (and end-of-speech events) of an audio file or array."""
        return self.transcriber(options).transcribe(audio)

    # -- speech synthesis --------------------------------------------------------------------------------

    def synthesizer(self, options: SynthesisOptions | None = None) -> Synthesizer:
        from .modes.tts import SynthesisOptions, Synthesizer

        self._require("tts")
        return Synthesizer(self.engine, options or SynthesisOptions())

    def synthesize(self, script: str | bytes | tp.Sequence[str], options: SynthesisOptions | None = None
                   ) -> tuple[torch.Tensor, list[TimedWord]]:
        """(samples [N] at ``sample_rate``, the time each word is spoken) for a text or a turn list."""
        return self.synthesizer(options).synthesize(script)

    # -- dialogue ----------------------------------------------------------------------------------------

    def conversation(self, options: DialogueOptions | None = None) -> Conversation:
        from .modes.dialogue import Conversation, DialogueOptions

        self._require("dialogue")
        return Conversation(self.engine, options or DialogueOptions())

    def converse(self, user_wav: str | os.PathLike, out_wav: str | os.PathLike,
                 options: DialogueOptions | None = None) -> DialogueResult:
        """Run a full-duplex session over a recorded user channel; writes user|agent stereo to ``out_wav``."""
        from .modes.dialogue import converse_file

        return converse_file(self.conversation(options), user_wav, out_wav)

    @property
    def sample_rate(self) -> int:
        assert self.engine.codec is not None
        return self.engine.codec.sample_rate


def load(name_or_path: str | Path = "default", device: str | torch.device = "auto",
         dtype: torch.dtype = torch.float32) -> Model:
    """Load a checkpoint: ``"default"``, a checkpoint directory, or a hub repo id when the hub is reachable."""
    return Model(load_engine(name_or_path, device=device, dtype=dtype))
