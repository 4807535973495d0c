"""The dialogue server's load test (benchmarks/bench_serve_chat.py) on a tiny random dialogue model: two live
clients over loopback, every user frame answered by one agent frame, and the report's shape. No timings are
asserted (the machine may be busy); only what holds whatever the pace."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the server is an optional extra: delaykit[serve]")
pytest.importorskip("moshi")  # the fixture builds its checkpoint with the reference's constructors
from test_dialogue import checkpoint  # noqa: F401  (module fixture: a tiny moshi checkpoint)

from delaykit.audio import write_audio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_serve
import bench_serve_chat

RATE, FRAME = 24_000, 1920


@pytest.fixture
def corpus(tmp_path):
    """Two stereo recordings, agent left (quiet) and user right (noise), as in the dialogue corpora."""
    rng = np.random.default_rng(0)
    (tmp_path / "wavs").mkdir()
    for index in range(2):
        user = (0.2 * rng.standard_normal(RATE)).astype(np.float32)
        write_audio(tmp_path / "wavs" / f"{index:06d}.wav", np.stack([0.01 * user[::-1], user]), RATE)
    return tmp_path / "wavs"


def test_client_signals_take_the_user_channel(corpus):
    signals = bench_serve.client_signals(corpus, 2, 1.5, RATE, channel=1)
    assert [s.shape for s in signals] == [(int(1.5 * RATE),)] * 2
    first = bench_serve.load_audio(corpus / "000000.wav", RATE)  # the mean of both channels
    assert not np.allclose(signals[0][:RATE], first, atol=1e-3)
    user = bench_serve.read_audio(corpus / "000000.wav")[0][1]
    np.testing.assert_allclose(signals[0][:RATE], user, atol=1e-6)
    np.testing.assert_allclose(signals[1][:RATE], bench_serve.read_audio(corpus / "000001.wav")[0][1], atol=1e-6)


def test_two_live_clients_lose_no_frame(checkpoint, corpus, tmp_path):  # noqa: F811
    out = tmp_path / "report.json"
    report = bench_serve_chat.run(["--model", str(checkpoint[0]), "--data", str(corpus), "--clients", "2",
                                   "--seconds", "1.25", "--threads", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == report
    assert report["model"] == str(checkpoint[0]) and report["seconds_per_client"] == 1.25
    (run,) = report["runs"]
    frames = 2 * (int(1.25 * RATE) // FRAME)  # 15 whole frames each; the 0.05 s left over is not sent
    assert run["clients"] == 2
    assert run["frames_sent"] == run["frames_received"] == frames and run["frames_lost"] == 0
    assert run["error_events"] == run["refused"] == run["failed_clients"] == 0 and run["messages"] == []
    latency = run["frame_latency_s"]
    assert set(latency) == {"p50", "p99", "max"} and 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    server = run["server"]
    assert server["frames"] == frames and 1 <= server["max_batch"] <= 2 and server["steps"] >= frames // 2
    assert server["errors"] == 0 and server["rejected_busy"] == 0 and server["dropped_frames"] == 0
    assert set(server) >= {"step_ms", "mean_batch", "busy"}
    assert isinstance(run["real_time"], bool) and isinstance(run["behind_events"], int)
    assert report["largest_real_time"] in (0, 2)
