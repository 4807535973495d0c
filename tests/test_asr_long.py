"""Long recordings: memory stays flat over minutes of streaming, and word times keep counting past the
model's context window (the ring KV cache wraps many times)."""

from __future__ import annotations

import numpy as np
import pytest
from test_serve import asr_checkpoint, asr_model  # noqa: F401

from delaykit.modes.asr import Word


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_eight_minutes_in_flat_memory(asr_model):  # noqa: F811
    transcriber = asr_model.transcriber()
    frame = transcriber.frame_size
    context_seconds = asr_model.engine.lm.config.context / 12.5
    rng = np.random.default_rng(0)
    t = np.arange(frame * 125) / 24_000  # 10 s blocks of changing tones and noise
    words: list[Word] = []
    marks = {}
    with transcriber.stream(1) as stream:
        for block in range(48):  # 8 minutes
            tone = 0.2 * np.sin(2 * np.pi * rng.uniform(150, 700) * t) * (rng.random(t.shape[0]) > 0.3)
            samples = (tone + 0.02 * rng.standard_normal(t.shape[0])).astype(np.float32)
            for start in range(0, samples.shape[0], frame):
                words += [e for e in stream.push(samples[start:start + frame]) if isinstance(e, Word)]
            if block in (6, 47):
                marks[block] = rss_mb()
        words += [e for e in stream.flush() if isinstance(e, Word)]
    assert marks[47] - marks[6] < 25, marks  # MB, between minute 1 and minute 8
    starts = [w.start for w in words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in words)
    assert starts[-1] > 400 > 20 * context_seconds  # times count on across many context wraps
