"""Dialogue evaluation: answers judged by their key words, latencies read off the agent's speech frames."""

import numpy as np

from delaykit.data.dialogues import AGENT, USER
from delaykit.evaluation.dialogue import (
    AgentTrack,
    DialogueEvalConfig,
    frame_speech,
    holds_in_order,
    key_words,
    score_conversation,
    summarize,
)
from delaykit.text_stream import TimedWord

RATE, FRAME = 24_000, 1920
FD = FRAME / RATE  # 0.08 s


def test_key_words_drop_what_the_question_says():
    assert key_words("What is four times five?", "Four times five is twenty.") == ["20"]
    assert key_words("How do you spell cat?", "Cat is spelled C, A, T.") == ["is", "spelled", "c", "a", "t"]
    assert holds_in_order("well 4 times 5 is 20 ok".split(), ["20"])
    assert not holds_in_order(["spelled", "is"], ["is", "spelled"])


def track_of(speech: list[tuple[float, float]], seconds: float, words: list[TimedWord]) -> AgentTrack:
    """An agent that speaks (a tone) in each (start, end) span."""
    audio = np.zeros(int(seconds * RATE), np.float32)
    for start, end in speech:
        t = np.arange(int(start * RATE), int(end * RATE))
        audio[t] = 0.1 * np.sin(2 * np.pi * 200 * t / RATE)
    return AgentTrack(audio, words, frame_speech(audio, FRAME, -40.0), FD, [0.01, 0.02, 0.03])


class Heard:
    """A recogniser that hears a fixed text per call."""

    def __init__(self, texts):
        self.texts = list(texts)

    def transcribe(self, audio, sample_rate):
        return self.texts.pop(0)


ROW = {"path": "x.wav", "turns": [
    {"speaker": USER, "text": "What is two plus two?", "start": 0.5, "end": 2.0, "kind": "question"},
    {"speaker": AGENT, "text": "Two plus two is four.", "start": 2.4, "end": 4.0, "kind": "answer"},
    {"speaker": USER, "text": "What is one plus two?", "start": 5.0, "end": 6.0, "kind": "question"},
    {"speaker": AGENT, "text": "One plus two is three.", "start": 6.4, "end": 7.0, "kind": "answer"},
    {"speaker": USER, "text": "Stop.", "start": 7.0, "end": 7.4, "kind": "interruption"},
    {"speaker": AGENT, "text": "Okay.", "start": 7.8, "end": 8.2, "kind": "answer"},
]}


def test_score_conversation():
    # Answers 0.56 s after the first question, talked over at 7.0 s and silent from 7.4 s.
    words = [TimedWord("Two", 2.56, 2.8), TimedWord("plus", 2.8, 3.0), TimedWord("two", 3.0, 3.2),
             TimedWord("is", 3.2, 3.4), TimedWord("five.", 3.4, 4.0)]
    track = track_of([(2.56, 4.0), (6.4, 7.4)], 10.0, words)
    scored = score_conversation(ROW, track, Heard(["two plus two is 4"]), RATE, DialogueEvalConfig())
    first, second = scored["questions"]
    assert first["keys"] == ["4"] and first["heard_right"] and not first["text_right"]  # said "five" in text
    assert abs(first["latency"] - 0.56) < 0.081
    assert second["interrupted"] and "heard_right" not in second  # its answer was cut: not judged
    assert abs(second["latency"] - 0.4) < 0.081
    (stop,) = scored["interruptions"]
    assert stop["agent_speaking"] and abs(stop["stop_latency"] - 0.4) < 0.081
    report = summarize([scored], [0.01, 0.02, 0.03])
    assert report["answers_judged"] == 1 and report["answer_right_heard"] == 1.0
    assert report["answer_right_text"] == 0.0 and report["stopped_within_0.5s"] == 1.0
    assert report["responded_within_1s"] == 1.0 and report["step_ms_median"] == 25.0
    assert report["answer_right_text_by_kind"] == {"arithmetic": {"judged": 1, "right": 0.0}}
    assert report["answer_right_heard_by_kind"] == {"arithmetic": {"judged": 1, "right": 1.0}}


def test_an_agent_that_never_stops_or_answers():
    track = track_of([(6.9, 10.0)], 10.0, [])  # silent after the first question, then talks on and on
    scored = score_conversation(ROW, track, None, RATE, DialogueEvalConfig())
    first = scored["questions"][0]
    assert first["latency"] is None and first["text_right"] is False
    (stop,) = scored["interruptions"]
    assert stop["agent_speaking"] and stop["stop_latency"] is None
    report = summarize([scored], [])
    assert report["responded_within_1s"] == 0.5 and report["stopped_within_0.5s"] == 0.0


def test_cli_offers_every_agent_source():
    from delaykit.cli import DIALOGUE_AGENTS
    from delaykit.evaluation.dialogue import AGENT_SOURCES

    assert DIALOGUE_AGENTS == AGENT_SOURCES
