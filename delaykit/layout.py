"""Stream layouts: which streams a mode feeds and which the model generates, and how text sits in time.

The three products of delaykit are one engine read three ways. A ``StreamLayout`` is plain data describing
one way: the text stream's shift against the audio (behind it for ASR, ahead of it for TTS, level with it in
dialogue), whether the text is read from the model or given to it, how many audio codebooks are generated
and how many are fed, and the padding a driver adds around the audio. Drivers (``delaykit.modes``) read a
layout and never hard-code a mode's numbers, so a new layout (a 1 s text delay, two listened speakers)
needs no new engine code.
"""

from __future__ import annotations

from dataclasses import dataclass

from .text import EPAD_ID, PAD_ID

MODES = ("asr", "tts", "dialogue")
# Kyutai's model_type values and the delaykit mode each one serves.
MODE_OF_MODEL_TYPE = {"stt": "asr", "tts": "tts", "moshi": "dialogue"}


@dataclass(frozen=True)
class StreamLayout:
    """How one mode uses the LM's streams."""

    mode: str  # asr | tts | dialogue
    text_shift_seconds: float  # > 0: text trails the audio it transcribes; < 0: text leads the audio it voices
    text_is_fed: bool  # the driver writes the text stream (TTS) instead of reading the model's choice
    generated_codebooks: int  # audio codebooks the model generates per frame (its own voice)
    fed_codebooks: int  # audio codebooks the driver feeds per frame (the listened voice)
    silence_prefix_seconds: float = 0.0  # silence fed before the audio (ASR models trained with it)
    flush_seconds: float = 0.0  # silence fed after the audio so trailing text comes out
    pad_id: int = PAD_ID
    epad_id: int = EPAD_ID

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {MODES}")

    def frames(self, seconds: float, frame_rate: float = 12.5) -> int:
        """Whole frames in ``seconds`` (used for shifts, prefixes and flushes)."""
        return round(seconds * frame_rate)

    @classmethod
    def from_checkpoint(cls, config: dict, mode: str | None = None) -> StreamLayout:
        """The layout a checkpoint's ``config.json`` implies (``model_type``, ``n_q``, ``dep_q``, ``stt_config``,
        ``tts_config``, ``dialogue_config``); ``mode`` overrides the model type where the streams allow it."""
        model_type = config.get("model_type", "moshi")
        mode = mode or MODE_OF_MODEL_TYPE.get(model_type)
        if mode is None:
            raise ValueError(f"model_type {model_type!r} maps to no delaykit mode; pass one of {MODES}")
        n_q, dep_q = int(config.get("n_q", 8)), int(config.get("dep_q", 8))
        if mode == "asr":
            stt = config.get("stt_config") or {}
            return cls("asr", text_shift_seconds=float(stt.get("audio_delay_seconds", 0.0)), text_is_fed=False,
                       generated_codebooks=dep_q, fed_codebooks=n_q - dep_q,
                       silence_prefix_seconds=float(stt.get("audio_silence_prefix_seconds", 0.0)),
                       flush_seconds=float(stt.get("audio_delay_seconds", 0.0)) + 1.0)
        if mode == "tts":
            tts = config.get("tts_config") or {}
            return cls("tts", text_shift_seconds=-float(tts.get("audio_delay", 0.0)), text_is_fed=True,
                       generated_codebooks=dep_q, fed_codebooks=n_q - dep_q)
        if dep_q == 0 or n_q == dep_q:
            raise ValueError("dialogue needs both generated and fed audio streams")
        dialogue = config.get("dialogue_config") or {}  # delaykit's key; moshiko's text is level with its speech
        return cls("dialogue", text_shift_seconds=-float(dialogue.get("audio_delay", 0.0)), text_is_fed=False,
                   generated_codebooks=dep_q, fed_codebooks=n_q - dep_q)
