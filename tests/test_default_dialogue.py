"""The shipped dialogue model (checkpoints/default-dialogue): loads offline in its layout with the shipped
codec, answers the questions of examples/questions.flac (a voice it never trained on) on time and mostly
right in its inner monologue, speaks the answers, and the CLI's words for that file match a golden file.

The golden file (tests/golden/default-dialogue/) was written by the shipped model; after shipping a new model,
regenerate it with `python tests/test_default_dialogue.py` and review the diff.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import delaykit
from delaykit.checkpoints import default_checkpoint_dir
from delaykit.data.manifest import read_corpus
from delaykit.evaluation.dialogue import evaluate_dialogue
from delaykit.evaluation.tts import AsrRecognizer
from delaykit.modes.dialogue import DialogueOptions

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "examples" / "questions.jsonl"  # examples/questions.flac and its turns
GOLDEN = Path(__file__).parent / "golden" / "default-dialogue" / "questions.txt"


@pytest.fixture(scope="module")
def model():
    return delaykit.load("default-dialogue", device="cpu")


@pytest.fixture(scope="module")
def report(model):
    asr = AsrRecognizer(delaykit.load("default-asr", device="cpu"))
    return evaluate_dialogue(model.conversation(DialogueOptions(seed=0)), read_corpus(QUESTIONS), asr)


def test_layout_and_codec(model):
    conversation = model.conversation()
    layout = conversation.layout
    assert model.mode == "dialogue" and layout.text_shift_seconds == -0.24  # words 3 frames ahead of speech
    assert (layout.generated_codebooks, layout.fed_codebooks) == (4, 4)
    assert model.engine.files.codec_weights == default_checkpoint_dir() / "codec.safetensors"


def test_answers_the_example_questions(report):
    # Three questions (minutes in an hour, eight times six, thank you), none interrupted. The shipped model
    # says "There are sixty minutes." / "Eight times six is twenty-five." / "You are welcome.": 2 of 3 right
    # (20 % on 60 held-out conversations, checkpoints/README.md).
    assert report["answers_judged"] == 3
    assert report["answer_right_text"] >= 2 / 3, report["examples"]  # what it means to say
    assert report["responded_within_1s"] == 1.0, report["examples"]
    # It speaks its answers: the shipped ASR model (which hears it poorly) makes words of each one.
    assert all(len(example["heard"].split()) >= 2 for example in report["examples"]), report["examples"]


def cli_words(tmp_path: Path) -> str:
    from click.testing import CliRunner

    from delaykit.cli import main

    result = CliRunner().invoke(main, ["dialogue", str(QUESTIONS.with_suffix(".flac")), "-o",
                                       str(tmp_path / "out.wav"), "--seed", "0", "--force"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_words_match_golden(tmp_path):
    assert cli_words(tmp_path) == GOLDEN.read_text(encoding="utf-8")
    stereo, rate = delaykit.audio.read_audio(tmp_path / "out.wav")
    assert stereo.shape[0] == 2 and rate == 24_000 and abs(stereo[1]).max() > 0.01  # the agent spoke


if __name__ == "__main__":  # regenerate the golden file
    import tempfile

    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(cli_words(Path(tmp)), encoding="utf-8")
    print(f"wrote {GOLDEN}", file=sys.stderr)
