"""The Python API a user reaches for: ``delaykit.load(...)`` and one object per checkpoint.

    import delaykit
    model = delaykit.load("kyutai/stt-1b-en_fr")       # or "default", or a checkpoint directory
    print(model.transcribe("call.wav").text)

The checkpoint's ``model_type`` picks the mode (``stt`` -> ASR, ``tts`` -> TTS, ``moshi`` -> dialogue); a
mode the checkpoint cannot serve raises a ``CheckpointError`` saying so. ``load(..., mode=...)`` or
``model.with_mode(...)`` reads a checkpoint as another mode where its streams allow it (ASR needs audio
streams the model listens to, dialogue both listened and generated audio streams, TTS generated audio
streams and a ``tts_config``), e.g. an ASR model exported without ``model_type``. Every mode has a
whole-input call and a streaming form (``transcriber()``, ``synthesizer()``, ``conversation()``) for live use.
"""

from __future__ import annotations

import os
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .engine import Engine, load_engine
from .errors import CheckpointError
from .layout import MODE_OF_MODEL_TYPE, MODES, StreamLayout

if tp.TYPE_CHECKING:  # pragma: no cover
    from .modes.asr import TranscribeOptions, Transcriber, Transcript
    from .modes.dialogue import Conversation, DialogueOptions, DialogueResult
    from .modes.tts import SynthesisOptions, Synthesizer
    from .text_stream import TimedWord


@dataclass
class Model:
    """A loaded checkpoint and the modes it serves."""

    engine: Engine
    mode_override: str | None = None  # a mode other than the checkpoint's own (see ``with_mode``)
    _layout: StreamLayout | None = field(init=False, repr=False, default=None)  # the override's layout

    def __post_init__(self) -> None:
        self._layout = self._override_layout(self.mode_override) if self.mode_override is not None else None

    @property
    def checkpoint_mode(self) -> str:
        """The mode of the checkpoint's ``model_type``: ``asr``, ``tts``, ``dialogue`` or ``codec``."""
        return MODE_OF_MODEL_TYPE.get(self.engine.model_type, self.engine.model_type)

    @property
    def mode(self) -> str:
        """The mode this object serves: the checkpoint's own unless overridden."""
        return self.mode_override or self.checkpoint_mode

    def with_mode(self, mode: str) -> Model:
        """The same weights read as ``mode``; a ``CheckpointError`` when the checkpoint's streams cannot serve it."""
        return Model(self.engine, None if mode == self.checkpoint_mode else mode)

    def _source(self) -> str:
        return str(self.engine.files.source) if self.engine.files is not None else "this checkpoint"

    def _override_layout(self, mode: str) -> StreamLayout:
        """The layout of ``mode`` on this checkpoint's streams, refused where they cannot serve it."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        engine = self.engine
        if engine.lm is None:
            raise CheckpointError(f"{self._source()}: a checkpoint without an LM cannot do {mode}")
        config = dict(engine.files.config) if engine.files is not None else engine.lm.config.to_kyutai()
        try:
            layout = StreamLayout.from_checkpoint(config, mode)
        except ValueError as exc:
            raise CheckpointError(f"{self._source()}: cannot do {mode}: {exc}") from exc
        if mode == "asr" and layout.fed_codebooks <= 0:
            raise CheckpointError(f"{self._source()}: cannot do asr: the model listens to no audio stream")
        if mode == "tts" and (layout.generated_codebooks <= 0 or "tts_config" not in config):
            raise CheckpointError(f"{self._source()}: cannot do tts: it needs generated audio streams and a "
                                  f"tts_config (the model generates {layout.generated_codebooks} codebooks, "
                                  f"{'has' if 'tts_config' in config else 'no'} tts_config)")
        return layout

    def _require(self, mode: str) -> None:
        if self.mode != mode:
            raise CheckpointError(f"{self._source()}: a {self.mode} checkpoint (model_type "
                                  f"{self.engine.model_type!r}) cannot do {mode}")

    # -- speech recognition ------------------------------------------------------------------------------

    def transcriber(self, options: TranscribeOptions | None = None) -> Transcriber:
        from .modes.asr import TranscribeOptions, Transcriber

        self._require("asr")
        return Transcriber(self.engine, options or TranscribeOptions(), layout=self._layout)

    def transcribe(self, audio: str | os.PathLike | tp.Any, options: TranscribeOptions | None = None
                   ) -> Transcript:
        """Words with start/end times (and end-of-speech events) of an audio file or array."""
        return self.transcriber(options).transcribe(audio)

    # -- speech synthesis --------------------------------------------------------------------------------

    def synthesizer(self, options: SynthesisOptions | None = None) -> Synthesizer:
        from .modes.tts import SynthesisOptions, Synthesizer

        self._require("tts")
        return Synthesizer(self.engine, options or SynthesisOptions(), layout=self._layout)

    def synthesize(self, script: str | bytes | tp.Sequence[str], options: SynthesisOptions | None = None,
                   stereo: bool = False) -> tuple[torch.Tensor, list[TimedWord]]:
        """(samples [N] at ``sample_rate``, the time each word is spoken) for a text or a turn list; with
        ``stereo``, samples [2, N]: the main speaker's turns on channel 0, the other speaker's on channel 1."""
        return self.synthesizer(options).synthesize(script, stereo)

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
         dtype: torch.dtype = torch.float32, mode: str | None = None) -> Model:
    """Load a checkpoint: ``"default"``, a checkpoint directory, or a hub repo id when the hub is reachable;
    ``mode`` (``asr``, ``tts``, ``dialogue``) overrides the checkpoint's ``model_type`` where its streams allow."""
    model = Model(load_engine(name_or_path, device=device, dtype=dtype))
    return model.with_mode(mode) if mode is not None else model
