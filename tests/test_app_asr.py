"""The ASR app: file and streamed microphone audio give the offline words, whatever the browser's rate and
chunks; Stop comes after the chunk being heard; the app answers gradio_client."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

gradio = pytest.importorskip("gradio", reason="the apps are an optional extra: delaykit[app]")
from gradio_client import Client, handle_file
from test_serve import asr_checkpoint, asr_model, offline_words, pcm16, test_audio  # noqa: F401

from delaykit.apps.asr import AsrApp, make_demo
from delaykit.audio import load_audio, resample, write_audio
from delaykit.formats import render


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
    recognised = asr_model.transcriber().transcribe(load_audio(tmp_path / "in.wav", 24_000)).words
    for path in files:  # each download holds the words in its format
        assert Path(path).read_text(encoding="utf-8") == render(path.rsplit(".", 1)[1], recognised)


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


def test_two_microphones_at_once_share_steps_and_get_their_own_words(app, asr_model):  # noqa: F811
    """Two tabs recording at once are two items of one batch, each given the words it would get alone."""
    recordings = [np.frombuffer(pcm16(test_audio(seed, seconds=3.0)), "<i2") for seed in (11, 12)]
    sessions = [None, None]
    for start in range(0, recordings[0].shape[0], 12_000):  # the tabs' chunks arrive interleaved
        for index, samples in enumerate(recordings):
            _, _, sessions[index] = app.stream_chunk((24_000, samples[start:start + 12_000]), sessions[index])
        deadline = time.monotonic() + 30  # in real time: the next chunks come after these are heard
        while any(live.session.session.buffered >= 1_920 for live in sessions) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert app.scheduler.metrics.sessions == 2
    for samples, session in zip(recordings, sessions):
        text, _, _, _ = app.stream_end(session)
        expected = texts(offline_words(asr_model, samples.astype(np.float32) / 32768))
        assert expected and text == expected
    assert app.scheduler.metrics.max_batch == 2 and app.scheduler.metrics.sessions == 0


def test_a_closed_tab_frees_its_recording(app):
    """The page's unload frees the slot of the tab's open recording (gradio would call the state's delete
    callback only an hour later); a stopped recording is not held, and freeing twice is harmless."""
    samples = np.frombuffer(pcm16(test_audio(13)), "<i2")
    _, _, live = app.stream_chunk((24_000, samples[:12_000]), None)
    app.track("tab-a", live)
    assert app.scheduler.metrics.sessions == 1
    app.tab_closed("tab-a")
    assert app.scheduler.metrics.sessions == 0
    assert app.stream_chunk((24_000, samples[12_000:]), live)[2] is None  # a late chunk is dropped
    app.stream_closed(live)  # gradio's delete callback, an hour later
    app.tab_closed("tab-a")
    _, _, stopped = app.stream_chunk((24_000, samples), None)
    app.stream_end(stopped)
    app.track("tab-b", stopped)  # a chunk heard as the tab stopped: an ended recording is not kept
    _, _, live = app.stream_chunk((24_000, samples), None)
    app.track("tab-b", live)
    app.stream_closed(live)  # freed by the state's delete callback: the tab no longer holds it
    assert app._recordings == {} and app.scheduler.metrics.sessions == 0


@pytest.mark.parametrize("rate", [48_000, 44_100])
def test_microphone_chunks_reach_the_model_as_one_signal(app, asr_model, monkeypatch, rate):  # noqa: F811
    """The browser's chunks at its own rate reach the model as the recording resampled whole, however the
    browser cuts it (resampling each chunk alone put a click at every boundary)."""
    recording = resample(test_audio(8, seconds=3.0), 24_000, rate)  # [T] at the browser's rate
    samples = np.frombuffer(pcm16(recording), "<i2")  # the browser sends int16 chunks
    fed: list[np.ndarray] = []  # what the app hands the model
    feed = app.scheduler.feed
    monkeypatch.setattr(app.scheduler, "feed", lambda session, part: (fed.append(part), feed(session, part)))
    whole = resample(samples.astype(np.float32) / 32768, rate, 24_000)  # [T_model]
    expected = [w.text for w in asr_model.transcriber().transcribe(whole).words]
    for size in (rate // 2, 4_800, 7_001):  # stream_every=0.5 s, 0.1 s, odd cuts
        fed.clear()
        live = None
        for start in range(0, samples.shape[0], size):
            _, _, live = app.stream_chunk((rate, samples[start:start + size]), live)
        _, rows, _, _ = app.stream_end(live)
        assert np.abs(np.concatenate(fed) - whole).max() < 1e-6
        assert [row[2] for row in rows] == expected


def test_stop_comes_after_the_chunk_being_heard(app, asr_model, monkeypatch):  # noqa: F811
    """The browser's stop can come while a chunk is still being heard, and a chunk after the stop: the
    recording ends whole after that chunk, and the late chunk is dropped without reopening it or raising."""
    samples = np.frombuffer(pcm16(test_audio(9, seconds=3.0)), "<i2")
    half = samples.shape[0] // 2
    _, _, live = app.stream_chunk((24_000, samples[:half]), None)
    feeding, resume = threading.Event(), threading.Event()
    feed = app.scheduler.feed

    def slow_feed(session, part):
        feeding.set()
        resume.wait(10)
        feed(session, part)

    monkeypatch.setattr(app.scheduler, "feed", slow_feed)
    results = {}
    hearing = threading.Thread(target=lambda: results.update(
        chunk=app.stream_chunk((24_000, samples[half:]), live)))
    hearing.start()
    assert feeding.wait(10)
    ending = threading.Thread(target=lambda: results.update(end=app.stream_end(live)))
    ending.start()
    ending.join(0.3)
    still_hearing = ending.is_alive()
    resume.set()
    hearing.join(10)
    ending.join(130)
    assert still_hearing, "the stop did not wait for the chunk being heard"
    text, rows, files, state = results["end"]
    expected = offline_words(asr_model, samples.astype(np.float32) / 32768)
    assert text == texts(expected) and len(files) == 3 and state is None  # the second half was heard too
    assert results["chunk"][2] is live
    monkeypatch.setattr(app.scheduler, "feed", feed)
    shown, shown_rows, state = app.stream_chunk((24_000, samples[:4_800]), live)  # sent before the stop
    assert state is None and (shown, shown_rows) == (text, rows)  # dropped; the page keeps the transcript
    assert app.stream_end(live) == ("", [], [], None)
    assert app.scheduler.metrics.sessions == 0  # the slot is free


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
