"""The apps' live microphone input: browser chunks become one signal at the model's rate, and the end of a
stream comes after the chunk being heard."""

from __future__ import annotations

import threading

import numpy as np

from delaykit.apps.live import LiveInput, mono_float
from delaykit.audio import resample


def microphone(rate: int, seconds: float, seed: int) -> np.ndarray:
    """int16 samples [T] as the browser sends them: a tone with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    signal = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.shape)
    return np.round(signal * 32767).astype(np.int16)


def heard(live: LiveInput, rate: int, samples: np.ndarray, size: int) -> np.ndarray:
    """What ``live`` hears of ``samples`` [T] sent in chunks of ``size``, then ended: [T_out]."""
    parts = []
    for start in range(0, samples.shape[0], size):
        with live.hearing((rate, samples[start:start + size])) as part:
            parts.append(part)
    with live.ending() as tail:
        parts.append(tail)
    return np.concatenate(parts)


def test_chunks_are_heard_as_the_recording_resampled_whole():
    for rate in (48_000, 44_100, 16_000):
        samples = microphone(rate, 1.0, seed=rate)  # [T]
        whole = resample(mono_float(samples), rate, 24_000)  # [T_out]
        for size in (rate // 2, 4_800, 1_013):  # the ASR app's 0.5 s, the dialogue app's ~0.1 s, odd cuts
            assert np.abs(heard(LiveInput(24_000), rate, samples, size) - whole).max() < 1e-6


def test_a_change_of_rate_ends_the_signal_at_the_old_rate():
    before, after = microphone(48_000, 0.5, seed=1), microphone(16_000, 0.5, seed=2)
    live = LiveInput(24_000)
    with live.hearing((48_000, before)) as first:
        pass
    with live.hearing((16_000, after)) as second:
        pass
    with live.ending() as tail:
        pass
    expected = np.concatenate([resample(mono_float(before), 48_000, 24_000),
                               resample(mono_float(after), 16_000, 24_000)])  # [T_out]
    assert np.abs(np.concatenate([first, second, tail]) - expected).max() < 1e-6


def test_stereo_float_chunks_are_downmixed():
    stereo = np.stack([np.full(480, 0.5, np.float32), np.zeros(480, np.float32)], axis=1)  # [T, 2]
    assert np.allclose(mono_float(stereo), 0.25)
    assert mono_float(np.array([16384, -32768], np.int16)).tolist() == [0.5, -1.0]


def test_the_end_waits_for_the_chunk_being_heard_and_drops_later_ones():
    live = LiveInput(24_000)
    hearing, resume, order = threading.Event(), threading.Event(), []

    def hear():
        with live.hearing((24_000, microphone(24_000, 0.1, seed=3))) as samples:
            hearing.set()
            resume.wait(10)
            order.append(("heard", samples.shape[0]))

    def end():
        with live.ending() as tail:
            order.append(("ended", tail.shape[0]))

    chunk = threading.Thread(target=hear)
    chunk.start()
    assert hearing.wait(10)
    stop = threading.Thread(target=end)
    stop.start()
    stop.join(0.3)
    assert stop.is_alive()  # waiting for the chunk
    resume.set()
    chunk.join(10)
    stop.join(10)
    assert order == [("heard", 2_400), ("ended", 0)]
    with live.hearing((24_000, microphone(24_000, 0.1, seed=4))) as late:
        assert late is None  # a chunk after the end is dropped
    with live.ending() as again:
        assert again is None  # and the stream ends once
