"""The ASR app: file and streamed microphone audio give the offline words; the app answers gradio_client."""

from __future__ import annotations

import numpy as np
import pytest

gradio = pytest.importorskip("gradio", reason="the apps are an optional extra: delaykit[app]")
from gradio_client import Client, handle_file
from test_serve import asr_checkpoint, asr_model, offline_words, pcm16, test_audio  # noqa: F401

from delaykit.apps.asr import AsrApp, make_demo
from delaykit.audio import write_audio


@pytest.fixture(scope="module")
def app(asr_checkpoint):  # noqa: F811
    application = AsrApp(str(asr_checkpoint), max_sessions=2)
    yield application
    application.scheduler.close()


def texts(words: list[dict]) -> str:
    return " ".join(w["text"] for w in words)


def test_file_upload_gives_the_offline_transcript(app, asr_model, tmp_path):  # noqa: F811
    samples = test_audio(5)
    write_audio(tmp_path / "in.wav", samples, 24_000)
    text, rows, files = app.transcribe_file(str(tmp_path / "in.wav"))
    expected = offline_words(asr_model, samples)
    assert text == texts(expected) and len(rows) == len(expected)
    assert sorted(f.rsplit(".", 1)[1] for f in files) == ["json", "srt", "vtt"]


def test_microphone_stream_gives_the_offline_words(app, asr_model):  # noqa: F811
    samples = np.frombuffer(pcm16(test_audio(6)), "<i2")  # the browser sends int16 chunks
    session = None
    for start in range(0, samples.shape[0], 12_000):
        _, _, session = app.stream_chunk((24_000, samples[start:start + 12_000]), session)
    text, rows, files, session = app.stream_end(session)
    assert len(files) == 3
    expected = offline_words(asr_model, samples.astype(np.float32) / 32768)
    assert text == texts(expected) and [row[2] for row in rows] == [w["text"] for w in expected]
    assert session is None and app.scheduler.metrics.sessions == 0  # the slot is free again


def test_gradio_client_transcribes(asr_checkpoint, asr_model, tmp_path):  # noqa: F811
    demo = make_demo(str(asr_checkpoint), max_sessions=2)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None)
    try:
        samples = test_audio(7)
        write_audio(tmp_path / "clip.wav", samples, 24_000)
        text, _, _ = Client(url, verbose=False).predict(handle_file(str(tmp_path / "clip.wav")),
                                                       api_name="/transcribe")
        assert text == texts(offline_words(asr_model, samples))
    finally:
        demo.close()
        demo.asr_app.scheduler.close()
