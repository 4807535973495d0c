"""Dialogue corpora: turns land on the right channel and time, interruptions cut the agent short."""

import json
import shutil

import numpy as np
import pytest

from delaykit.data.assistant import ConversationPlan, PlannedTurn
from delaykit.data.dialogues import AGENT, USER, DialogueRenderConfig, render_dialogue, synthesize_dialogues
from delaykit.data.synth import espeak_available
from delaykit.text_stream import TimedWord

RATE = 24_000


def fake_speak(text: str, voice: str, seed: int):
    """0.4 s of tone per word (a different pitch per voice), words back to back."""
    words = text.split()
    freq = 200.0 if voice.startswith("agent") else 330.0
    t = np.arange(int(0.4 * RATE * len(words))) / RATE
    audio = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return audio, [TimedWord(w, 0.4 * i, 0.4 * (i + 1)) for i, w in enumerate(words)]


CONFIG = DialogueRenderConfig(agent_voice="agent", agent_stop_seconds=0.3, tail_seconds=0.5)


def test_turns_follow_gaps_and_channels():
    plan = ConversationPlan([PlannedTurn("user", "what is two plus two", gap=0.5),
                             PlannedTurn("agent", "two plus two is four", gap=0.25)])
    out = render_dialogue(plan, "user", fake_speak, seed=0, config=CONFIG)
    user_words = [w for w in out.words if w.speaker == USER]
    agent_words = [w for w in out.words if w.speaker == AGENT]
    assert [w.text for w in user_words] == "what is two plus two".split()
    assert abs(user_words[0].start - 0.5) < 1e-6
    assert abs(agent_words[0].start - (0.5 + 2.0 + 0.25)) < 1e-6  # after the question and the gap
    assert out.audio.shape == (2, int((0.5 + 2.0 + 0.25 + 2.0 + 0.5) * RATE))
    # Each channel carries only its speaker: the agent channel is silent during the question.
    assert np.abs(out.audio[0, int(0.6 * RATE):int(2.4 * RATE)]).max() == 0
    assert np.abs(out.audio[1, int(0.6 * RATE):int(2.4 * RATE)]).max() > 0.1


def test_interruption_cuts_the_agent_and_its_words():
    plan = ConversationPlan([PlannedTurn("user", "spell cat", gap=0.0),
                             PlannedTurn("agent", "cat is spelled c a t", gap=0.2),
                             PlannedTurn("user", "stop", cut_in=0.25, interrupts=True),
                             PlannedTurn("agent", "okay", gap=0.3)])
    out = render_dialogue(plan, "user", fake_speak, seed=0, config=CONFIG)
    agent_start = 0.8 + 0.2
    stop = next(w for w in out.words if w.text == "stop")
    assert abs(stop.start - (agent_start + 0.25 * 2.4)) < 1e-3  # a quarter into the 2.4 s answer
    cut = stop.start + 0.3
    answer = [w for w in out.words if w.speaker == AGENT and w.start < cut]
    assert [w.text for w in answer] == ["cat", "is", "spelled"]
    assert all(w.end <= cut + 1e-6 for w in answer)
    assert np.abs(out.audio[0, int((cut + 0.01) * RATE):int((cut + 0.3) * RATE)]).max() == 0  # fell silent
    okay = next(w for w in out.words if w.text == "okay")
    assert abs(okay.start - (max(cut, stop.end) + 0.3)) < 1e-3
    # The turns say what evaluation needs: kinds, and spans of the words kept (the answer ends at the cut).
    assert [t.kind for t in out.turns] == ["question", "answer", "interruption", "answer"]
    assert [t.speaker for t in out.turns] == [USER, AGENT, USER, AGENT]
    assert abs(out.turns[1].end - answer[-1].end) < 1e-6 and abs(out.turns[2].start - stop.start) < 1e-6


def test_corpus_files(tmp_path):
    manifest = synthesize_dialogues(tmp_path, 3, fake_speak, ["user-a", "user-b"], seed=1, config=CONFIG)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == 3
    import soundfile

    for row in rows:
        audio, rate = soundfile.read(tmp_path / row["path"])
        assert rate == RATE and audio.shape[1] == 2
        beside = json.loads((tmp_path / row["path"]).with_suffix(".json").read_text())
        assert beside["alignments"] == row["alignments"]
        assert {speaker for _, _, speaker in row["alignments"]} == {AGENT, USER}
        questions = [t for t in row["turns"] if t["kind"] == "question"]
        assert questions and all(t["speaker"] == USER and t["start"] < t["end"] for t in questions)


def test_cli_interrupt_prob_sets_how_often_the_user_talks_over(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from delaykit import cli
    from delaykit.data import dialogues

    monkeypatch.setattr(dialogues, "SynthSpeaker", lambda **_: fake_speak)

    def interruptions(prob: float) -> tuple[int, int]:
        out = tmp_path / f"p{prob}"
        result = CliRunner().invoke(cli.main, ["data", "dialogues", "--out", str(out), "--count", "12",
                                               "--seed", "5", "--interrupt-prob", str(prob)])
        assert result.exit_code == 0, result.output
        turns = [t for line in (out / "manifest.jsonl").read_text().splitlines()
                 for t in json.loads(line)["turns"]]
        answers = sum(t["kind"] == "answer" for t in turns)
        return sum(t["kind"] == "interruption" for t in turns), answers

    never, _ = interruptions(0.0)
    often, answers = interruptions(0.85)
    assert never == 0
    assert often > answers / 4  # each interruption is followed by an acknowledging answer


@pytest.mark.skipif(shutil.which("flite") is None or not espeak_available(), reason="needs flite and espeak-ng")
def test_synth_speaker_gives_the_agent_another_synthesizer():
    """The agent's voice may be flite's kal16 (fixed level); users stay espeak-ng voices."""
    from delaykit.data.dialogues import SynthSpeaker
    from delaykit.data.flite import flite_speech

    speaker = SynthSpeaker(agent_voice="flite:kal16")
    text = "Four times five is twenty."
    audio, words = speaker(text, "flite:kal16", seed=1)
    assert [w.text for w in words] == text.split()
    assert abs(20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) - speaker.agent_level_db) < 0.5
    flite_audio, flite_rate, _, _ = flite_speech(text, "kal16", ["--setf", f"duration_stretch={175 / 170:.3f}",
                                                            "--setf", "int_f0_target_mean=130.0"])
    assert abs(audio.shape[0] / RATE - flite_audio.shape[0] / flite_rate) < 0.01  # flite's own utterance
    user_audio, user_words = speaker(text, "en-us", seed=1)
    assert [w.text for w in user_words] == text.split() and user_audio.shape != audio.shape


def test_cli_agent_voice_reaches_the_speaker_and_the_render(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from delaykit import cli
    from delaykit.data import dialogues

    asked = {}
    monkeypatch.setattr(dialogues, "SynthSpeaker", lambda **kwargs: asked.update(kwargs) or fake_speak)
    voices = []
    render = dialogues.render_dialogue
    monkeypatch.setattr(dialogues, "render_dialogue",
                        lambda plan, user, speak, seed, config: voices.append(config.agent_voice)
                        or render(plan, user, speak, seed, config))
    result = CliRunner().invoke(cli.main, ["data", "dialogues", "--out", str(tmp_path), "--count", "2",
                                           "--agent-voice", "agent-kal"])
    assert result.exit_code == 0, result.output
    assert asked == {"agent_voice": "agent-kal"} and voices == ["agent-kal", "agent-kal"]
