"""Two-channel dialogue corpora: scripted-assistant conversations rendered as stereo speech with word times.

Each conversation plan (:mod:`delaykit.data.assistant`) is voiced turn by turn by a ``speak`` function (text ->
mono audio and its timed words), the agent always with one voice and the user with a voice drawn per
conversation. Turns are placed on a shared timeline: after the previous turn plus the planned pause, or cutting
into the agent's turn (back-channels, interruptions). An interruption cuts the agent's audio
``agent_stop_seconds`` after the user starts, with a short fade, and drops the words it did not reach.

Written as stereo WAVs, agent on channel 0 (left) and user on channel 1, the layout moshi-finetune reads,
with ``alignments`` whose speaker is ``SPEAKER_MAIN`` for the agent and ``SPEAKER_USER`` for the user.
"""

from __future__ import annotations

import json
import random
import typing as tp
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import write_audio
from ..text_stream import TimedWord
from .assistant import ConversationConfig, ConversationPlan, plan_conversation
from .manifest import MANIFEST_NAME, manifest_writer

AGENT = "SPEAKER_MAIN"
USER = "SPEAKER_USER"
Speak = tp.Callable[[str, str, int], tuple[np.ndarray, list[TimedWord]]]  # (text, voice, seed) -> audio, words


@dataclass(frozen=True)
class DialogueRenderConfig:
    sample_rate: int = 24_000
    agent_voice: str = "en-us+f2"
    agent_stop_seconds: float = 0.3  # agent keeps talking this long over an interruption
    fade_seconds: float = 0.02
    tail_seconds: float = 1.0


@dataclass(frozen=True)
class RenderedTurn:
    """Where a planned turn landed: what evaluation compares a model's behaviour against."""

    speaker: str  # AGENT | USER
    text: str  # as planned (an interrupted agent turn says only part of it)
    start: float  # seconds: the first word's start
    end: float  # the last (kept) word's end
    kind: str  # question | answer | backchannel | interruption


@dataclass
class RenderedDialogue:
    audio: np.ndarray  # [2, T]: agent, user
    words: list[TimedWord]  # both speakers, in start order
    turns: list[RenderedTurn]  # in plan order


def render_dialogue(plan: ConversationPlan, user_voice: str, speak: Speak, seed: int,
                    config: DialogueRenderConfig = DialogueRenderConfig()) -> RenderedDialogue:
    """Voice ``plan`` and lay it on two channels."""
    rate = config.sample_rate
    placed: list[tuple[str, int, np.ndarray, list[TimedWord]]] = []  # (speaker, start sample, audio, words)
    kinds: list[str] = []
    timeline_end = 0
    for index, turn in enumerate(plan.turns):
        speaker = AGENT if turn.speaker == "agent" else USER
        audio, words = speak(turn.text, config.agent_voice if speaker == AGENT else user_voice, seed * 1000 + index)
        if turn.cut_in is not None and placed:
            prev_speaker, prev_start, prev_audio, prev_words = placed[-1]
            start = prev_start + int(turn.cut_in * prev_audio.shape[0])
            if turn.interrupts:
                cut = min(prev_audio.shape[0], start - prev_start + int(config.agent_stop_seconds * rate))
                fade = min(int(config.fade_seconds * rate), cut)
                prev_audio = prev_audio[:cut].copy()
                prev_audio[cut - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
                cut_time = cut / rate
                kept = [TimedWord(w.text, w.start, min(w.end, cut_time), w.speaker)
                        for w in prev_words if w.start < cut_time - 0.05]
                placed[-1] = (prev_speaker, prev_start, prev_audio, kept)
                timeline_end = prev_start + cut
        else:
            start = timeline_end + int(turn.gap * rate)
        placed.append((speaker, start, audio, words))
        kinds.append(_turn_kind(turn.speaker, turn.cut_in is not None, turn.interrupts))
        timeline_end = max(timeline_end, start + audio.shape[0])
    total = timeline_end + int(config.tail_seconds * rate)
    channels = np.zeros((2, total), dtype=np.float32)
    all_words: list[TimedWord] = []
    for speaker, start, audio, words in placed:
        channel = 0 if speaker == AGENT else 1
        channels[channel, start:start + audio.shape[0]] += audio
        offset = start / rate
        all_words.extend(TimedWord(w.text, w.start + offset, w.end + offset, speaker) for w in words)
    all_words.sort(key=lambda w: w.start)
    turns = [RenderedTurn(speaker, turn.text, *_speech_span(words, start / rate, audio.shape[0] / rate), kind)
             for (speaker, start, audio, words), turn, kind in zip(placed, plan.turns, kinds)]
    return RenderedDialogue(np.clip(channels, -1.0, 1.0), all_words, turns)


def _speech_span(words: list[TimedWord], offset: float, duration: float) -> tuple[float, float]:
    """(first word start, last word end) of a turn placed at ``offset``; its audio's bounds without words."""
    if not words:
        return offset, offset + duration
    return offset + words[0].start, offset + max(w.end for w in words)


def _turn_kind(speaker: str, cuts_in: bool, interrupts: bool) -> str:
    if speaker == "agent":
        return "answer"
    if interrupts:
        return "interruption"
    return "backchannel" if cuts_in else "question"


def synthesize_dialogues(out_dir: str | Path, count: int, speak: Speak, user_voices: tp.Sequence[str],
                         seed: int = 0, conversation: ConversationConfig | None = None,
                         config: DialogueRenderConfig = DialogueRenderConfig()) -> Path:
    """Write ``count`` conversations (stereo WAV + JSON alignments each) and ``manifest.jsonl``."""
    out_dir = Path(out_dir)
    (out_dir / "wavs").mkdir(parents=True, exist_ok=True)
    with manifest_writer(out_dir) as f:
        for index in range(count):
            rng = random.Random(seed * 1_000_003 + index)
            plan = plan_conversation(rng, conversation or ConversationConfig())
            rendered = render_dialogue(plan, rng.choice(list(user_voices)), speak, seed * 100_000 + index, config)
            rel = Path("wavs") / f"{index:06d}.wav"
            write_audio(out_dir / rel, rendered.audio, config.sample_rate)
            alignments = [[w.text, [round(w.start, 3), round(w.end, 3)], w.speaker] for w in rendered.words]
            (out_dir / rel).with_suffix(".json").write_text(json.dumps({"alignments": alignments}) + "\n")
            row = {"path": str(rel), "duration": round(rendered.audio.shape[1] / config.sample_rate, 4),
                   "channels": 2, "text": " ".join(w.text for w in rendered.words if w.speaker == AGENT),
                   "alignments": alignments,
                   "turns": [{"speaker": t.speaker, "text": t.text, "start": round(t.start, 3),
                              "end": round(t.end, 3), "kind": t.kind} for t in rendered.turns]}
            f.write(json.dumps(row) + "\n")
    return out_dir / MANIFEST_NAME


@dataclass(frozen=True)
class SynthSpeaker:
    """A ``Speak`` function: the agent in ``agent_voice`` (any voice :func:`delaykit.data.synth.speak_voice`
    knows: espeak-ng's, ``flite:kal16``, ``festival:ked_diphone``) at a fixed rate, pitch and level; every
    other voice is espeak-ng's, at a rate, pitch and level drawn from the turn's seed."""

    agent_voice: str = DialogueRenderConfig.agent_voice
    agent_rate: int = 170
    agent_pitch: int = 50
    agent_level_db: float = -24.0
    user_rate: tuple[int, int] = (130, 230)
    user_pitch: tuple[int, int] = (25, 75)
    user_level_db: tuple[float, float] = (-32.0, -18.0)
    sample_rate: int = 24_000

    def __call__(self, text: str, voice: str, seed: int) -> tuple[np.ndarray, list[TimedWord]]:
        from ..audio import resample
        from .synth import Utterance, speak_clean, speak_voice

        rng = np.random.default_rng(seed)
        if voice == self.agent_voice:
            level = self.agent_level_db
            speech, _ = speak_voice(Utterance(0, text, voice, self.agent_rate, self.agent_pitch, seed))
        else:
            rate, pitch = int(rng.integers(*self.user_rate)), int(rng.integers(*self.user_pitch))
            level = float(rng.uniform(*self.user_level_db))
            speech = speak_clean(text, voice, rate, pitch)
        audio = speech.samples.astype(np.float64)
        audio *= 10 ** (level / 20) / (np.sqrt(np.mean(audio**2)) + 1e-9)
        audio = resample(audio.astype(np.float32), speech.sample_rate, self.sample_rate)  # [T] at 24 kHz
        return audio.astype(np.float32), speech.words
