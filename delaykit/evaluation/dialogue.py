"""Dialogue figures on held-out conversations: does the agent answer right, on time, and stop when talked over?

Each held-out conversation (``delaykit data dialogues --split heldout``: user voices never trained on) feeds
its user channel to the model 80 ms at a time, as a live session would; the agent's channel is whatever the
model says. The conversation's rendered turns (the manifest's ``turns``) tell when each question ended, when
each interruption began and what the right answer was. The agent's audio is aligned with the user's (the
output clock of :func:`delaykit.modes.dialogue.converse`).

- **Answer right**: the agent's audio from the end of a question to the start of the next user question
  (at most ``answer_window`` seconds), transcribed by a recogniser that did not make it, holds the answer's
  key words in order: the words of the reference answer that the question does not already hold
  ("Four times five is twenty." after "What is four times five?" -> "twenty"). Questions whose reference
  answer was interrupted are left out. The same test on the agent's own text (its inner monologue) is
  reported beside it, and both per kind of question (greeting, arithmetic, fact, spelling).
- **Response latency**: from the end of a question to the first 80 ms frame of agent speech after it.
- **Stop latency**: from the start of an interruption to the start of the agent's first ``silence_frames``
  silent frames after it; interruptions that find the agent already silent are counted apart.
- **Step time**: wall-clock milliseconds per 80 ms step, one session, on this machine.

Ceilings: ``agent="rendered"`` scores the conversation's own agent channel (the rendered reference answers,
with their word times as the text) instead of the model, and ``agent="codec"`` the same channel round-tripped
through the model's codec at the codebooks the model generates. What the judge hears of those bounds what it can
hear of any model speaking in that voice through that codec.

A frame is speech when its RMS exceeds ``speech_dbfs`` (the training corpus speaks the agent at -24 dBFS).
"""

from __future__ import annotations

import time
import typing as tp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import read_audio, resample, write_audio
from ..data.assistant import question_kind
from ..data.dialogues import AGENT
from ..modes.dialogue import Conversation, converse, words_from_pieces
from ..text_stream import TimedWord
from .tts import Recognizer
from .wer import normalize

AGENT_SOURCES = ("model", "rendered", "codec")  # who speaks for the agent (the module docstring)


@dataclass(frozen=True)
class DialogueEvalConfig:
    answer_window: float = 8.0  # seconds after a question's end in which its answer is looked for
    speech_dbfs: float = -40.0  # frame RMS above this is speech
    silence_frames: int = 4  # this many silent frames in a row end the agent's speech (320 ms)
    speaking_lookback: float = 0.24  # the agent "is speaking" at an interruption if it spoke this recently
    examples: int = 8
    agent: str = "model"  # one of AGENT_SOURCES

    def __post_init__(self):
        if self.agent not in AGENT_SOURCES:
            raise ValueError(f"agent must be one of {', '.join(AGENT_SOURCES)}, got {self.agent!r}")


@dataclass
class AgentTrack:
    """What the agent did in one conversation, on the user audio's clock."""

    audio: np.ndarray  # [T] float32
    words: list[TimedWord]  # the inner monologue
    speech: np.ndarray  # [F] bool, one per frame
    frame_duration: float
    step_seconds: list[float]  # wall-clock time of each step


def key_words(question: str, answer: str) -> list[str]:
    """The normalised words of ``answer`` that ``question`` does not hold (all of them if none is left)."""
    asked = set(normalize(question, numbers=True))
    words = normalize(answer, numbers=True)
    keys = [word for word in words if word not in asked]
    return keys or words


def holds_in_order(heard: tp.Sequence[str], keys: tp.Sequence[str]) -> bool:
    """Whether ``keys`` occur in ``heard`` in this order (other words may come between)."""
    position = 0
    for word in heard:
        if position < len(keys) and word == keys[position]:
            position += 1
    return position == len(keys)


def frame_speech(audio: np.ndarray, frame_size: int, dbfs: float) -> np.ndarray:
    """[F] bool: frames of ``audio`` [T] whose RMS exceeds ``dbfs``."""
    count = audio.shape[0] // frame_size
    frames = audio[:count * frame_size].reshape(count, frame_size).astype(np.float64)  # [F, frame_size]
    rms = np.sqrt(np.mean(frames**2, axis=1))  # [F]
    return rms > 10 ** (dbfs / 20)


def run_agent(conversation: Conversation, user: np.ndarray, config: DialogueEvalConfig) -> AgentTrack:
    """One session over the user's audio [T] (24 kHz), timed step by step."""
    frames: list[np.ndarray] = []
    pieces: list[tuple[float, str]] = []
    step_seconds: list[float] = []
    steps = converse(conversation, user)
    started = time.perf_counter()
    for step in steps:
        step_seconds.append(time.perf_counter() - started)
        frames.append(step.agent_pcm[0].float().cpu().numpy())
        pieces.append((step.text_time[0], step.text_pieces[0]))
        started = time.perf_counter()
    agent = np.concatenate(frames)[:user.shape[0]].astype(np.float32)  # [T]
    return AgentTrack(agent, words_from_pieces(pieces, conversation.frame_duration),
                      frame_speech(agent, conversation.frame_size, config.speech_dbfs),
                      conversation.frame_duration, step_seconds)


@torch.no_grad()
def reference_agent(conversation: Conversation, row: dict, agent: np.ndarray, config: DialogueEvalConfig
                    ) -> AgentTrack:
    """The rendered agent channel [T] (24 kHz) of ``row`` as an agent track, its words those of the manifest's
    agent alignments; with ``config.agent == "codec"``, its audio encoded and decoded by the conversation's
    codec at the codebooks the model generates (whole-file, not streaming)."""
    if config.agent == "codec":
        codec = conversation.codec
        codes = codec.encode(torch.from_numpy(agent)[None, None], conversation.layout.generated_codebooks)
        agent = codec.decode(codes)[0, 0, :agent.shape[0]].float().cpu().numpy()  # [T]
    words = [TimedWord(text, start, end, speaker) for text, (start, end), speaker in row["alignments"]
             if speaker == AGENT]
    return AgentTrack(agent.astype(np.float32), words,
                      frame_speech(agent, conversation.frame_size, config.speech_dbfs),
                      conversation.frame_duration, [])


def _first_speech(speech: np.ndarray, start: int, stop: int) -> int | None:
    voiced = np.flatnonzero(speech[start:stop])
    return start + int(voiced[0]) if voiced.size else None


def _silence_start(speech: np.ndarray, start: int, run: int) -> int | None:
    """The first frame >= ``start`` that opens ``run`` silent frames (None: the agent never stops)."""
    quiet = 0
    for index in range(start, speech.shape[0]):
        quiet = 0 if speech[index] else quiet + 1
        if quiet == run:
            return index - run + 1
    return None


def score_conversation(row: dict, track: AgentTrack, recognizer: Recognizer | None, sample_rate: int,
                       config: DialogueEvalConfig) -> dict:
    """The questions, latencies and interruptions of one conversation, judged against its turns."""
    turns = row["turns"]
    fd = track.frame_duration
    frames = track.speech.shape[0]
    questions, interruptions = [], []
    for index, turn in enumerate(turns):
        if turn["speaker"] == AGENT:
            continue
        if turn["kind"] == "interruption":
            at = int(turn["start"] / fd)
            lookback = max(0, at - max(1, round(config.speaking_lookback / fd)))
            speaking = bool(track.speech[lookback:at + 1].any())
            stop = _silence_start(track.speech, at, config.silence_frames) if speaking else None
            interruptions.append({"start": turn["start"], "agent_speaking": speaking,
                                  "stop_latency": None if stop is None else round(max(0, stop - at) * fd, 3)})
            continue
        if turn["kind"] != "question":
            continue
        rest = turns[index + 1:]
        next_question = next((i for i, t in enumerate(rest) if t["speaker"] != AGENT and t["kind"] == "question"),
                             len(rest))
        exchange = rest[:next_question]  # the answer, and any back-channel or interruption over it
        answer = next((t for t in exchange if t["speaker"] == AGENT), None)
        interrupted = any(t["kind"] == "interruption" for t in exchange)
        end = turn["end"] + config.answer_window
        if next_question < len(rest):
            end = min(end, rest[next_question]["start"])
        first, last = round(turn["end"] / fd), min(frames, int(end / fd))
        onset = _first_speech(track.speech, first, last)
        item: dict = {"question": turn["text"], "answer": answer["text"] if answer else None,
                      "latency": None if onset is None else round((onset - first) * fd, 3),
                      "interrupted": interrupted}
        if answer is not None and not interrupted:
            keys = key_words(turn["text"], answer["text"])
            said = [w.text for w in track.words if turn["end"] <= w.start < end]
            item["keys"] = keys
            item["text"] = " ".join(said)
            item["text_right"] = holds_in_order(normalize(item["text"], numbers=True), keys)
            if recognizer is not None:
                window = track.audio[int(turn["end"] * sample_rate):int(end * sample_rate)]
                item["heard"] = recognizer.transcribe(window, sample_rate) if window.size else ""
                item["heard_right"] = holds_in_order(normalize(item["heard"], numbers=True), keys)
        questions.append(item)
    return {"path": row["path"], "questions": questions, "interruptions": interruptions}


def evaluate_dialogue(conversation: Conversation, rows: tp.Sequence[dict], recognizer: Recognizer | None,
                      config: DialogueEvalConfig = DialogueEvalConfig(), out_dir: str | Path | None = None) -> dict:
    """Run the agent over the user channel of each row (the stereo conversations of ``delaykit data
    dialogues``, or a recording of the user alone; rows need ``turns``) and gather the module's figures."""
    sample_rate = conversation.codec.sample_rate
    scored, step_seconds = [], []
    for index, row in enumerate(rows):
        if "turns" not in row:
            raise ValueError(f"{row['path']}: no 'turns' (render the corpus with `delaykit data dialogues`)")
        stereo, rate = read_audio(row["path"])  # [2, T] (agent, user) or [1, T] (the user alone)
        if rate != sample_rate:
            stereo = np.stack([resample(channel, rate, sample_rate) for channel in stereo])
        user = stereo[-1]  # [T]
        if config.agent == "model":
            track = run_agent(conversation, user, config)
        elif stereo.shape[0] == 2:
            track = reference_agent(conversation, row, stereo[0], config)
        else:
            raise ValueError(f"{row['path']}: agent {config.agent!r} needs the stereo conversation (agent, user)")
        step_seconds.extend(track.step_seconds)
        scored.append(score_conversation(row, track, recognizer, sample_rate, config))
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            write_audio(Path(out_dir) / f"{index:04d}.wav", np.stack([user, track.audio]), sample_rate)
    return summarize(scored, step_seconds, config.examples)


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 3) if values else None


def _by_kind(judged: list[dict], flag: str) -> dict[str, dict]:
    """Per kind of question (:func:`question_kind`): how many were judged and the share right."""
    kinds: dict[str, list[bool]] = {}
    for q in judged:
        kinds.setdefault(question_kind(q["question"]), []).append(q[flag])
    return {kind: {"judged": len(flags), "right": _share(flags)} for kind, flags in sorted(kinds.items())}


def summarize(scored: list[dict], step_seconds: list[float], examples: int = 8) -> dict:
    """The report: shares, medians and a few examples."""
    questions = [q for conv in scored for q in conv["questions"]]
    judged = [q for q in questions if "text_right" in q]
    latencies = [q["latency"] for q in questions if q["latency"] is not None]
    interruptions = [i for conv in scored for i in conv["interruptions"]]
    spoken_over = [i for i in interruptions if i["agent_speaking"]]
    stops = [i["stop_latency"] for i in spoken_over if i["stop_latency"] is not None]
    steps_ms = np.asarray(step_seconds[1:] or step_seconds, dtype=np.float64) * 1000  # the first step warms up
    return {
        "conversations": len(scored), "questions": len(questions), "answers_judged": len(judged),
        "answer_right_heard": _share([q["heard_right"] for q in judged if "heard_right" in q]),
        "answer_right_text": _share([q["text_right"] for q in judged]),
        "answer_right_text_by_kind": _by_kind(judged, "text_right"),
        "answer_right_heard_by_kind": _by_kind([q for q in judged if "heard_right" in q], "heard_right"),
        "response_latency_median": _median(latencies),
        "responded_within_1s": _share([q["latency"] is not None and q["latency"] <= 1.0 for q in questions]),
        "interruptions": len(interruptions), "interruptions_while_speaking": len(spoken_over),
        "stop_latency_median": _median(stops),
        "stopped_within_0.5s": _share([i["stop_latency"] is not None and i["stop_latency"] <= 0.5
                                       for i in spoken_over]),
        "step_ms_median": round(float(np.median(steps_ms)), 2) if steps_ms.size else None,
        "step_ms_p99": round(float(np.percentile(steps_ms, 99)), 2) if steps_ms.size else None,
        "examples": judged[:examples],
    }
