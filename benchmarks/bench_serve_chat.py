"""Load test of the dialogue server over real sockets: K clients talk to it at once, each a live microphone.

    python benchmarks/bench_serve_chat.py [--model default-dialogue] [--data runs/data/dialogue-heldout]
                                          [--channel 1] [--clients 1,4,8,16,24] [--seconds 10] [--threads 2]
                                          [--capacity K] [--max-latency 0.25] [--seed 0] [--json out.json]

A server (``delaykit.serve.speech.ChatServer``, ``/api/chat``: one batch of conversations stepped by a
``ChatScheduler``) runs on a loopback port in this process. For each client count K, K threads connect, wait
for the handshake and send 80 ms of 16-bit PCM every 80 ms for ``--seconds`` (whole frames only), then a ping,
which the server answers once every frame sent before it has been answered; meanwhile each reads the agent's
80 ms audio frames (one per user frame, silence while the model is not yet speaking), its text pieces,
``behind`` events (backpressure: the server had more than 2 s of that client's audio unprocessed) and errors.
The user's audio is one channel of the corpus's recordings (``--channel 1``: the user side of the stereo
dialogue corpora, agent left / user right), client ``i`` starting at the ``i``-th recording.

Per client count it reports (one JSON line each, and all of them in ``--json``):

* ``frame_latency_s`` p50 / p99 / max over every frame of every client: from sending user frame ``i`` to
  receiving the agent's audio frame ``i`` (the server's processing and queueing; the model's own acoustic
  delay is inside the frames' content, not in this time), and ``latency_growth_s``, the median latency of
  each client's last quarter of frames minus that of its first quarter (a server that cannot keep pace falls
  further behind with every frame, so this grows with ``--seconds``);
* ``frames_sent``, ``frames_received`` and ``frames_lost`` (sent but never answered before the ping came
  back or the client gave up), ``text_pieces``, ``behind_events``, ``error_events``, ``refused`` clients
  (past ``--capacity``: a ``busy`` error) and ``failed_clients`` (their thread raised);
* the server's step metrics: steps, frames, mean step time, mean and largest batch, errors, and
  ``server_busy``, the share of the run's wall time the worker spent stepping (near 1: saturated);
* ``real_time``: no frame lost, no ``behind``, no error, no client refused or failed, and p99 latency within
  ``--max-latency`` (default 0.25 s, about three frames).

The report ends with ``largest_real_time``, the largest client count that kept real time. Clients and server
share this process (and the machine's cores, as a live deployment's socket handling would), so what the
clients cost is included; run it on an otherwise idle machine. ``--model`` takes a shipped name, a checkpoint
directory or a hub repo id; tests/test_bench_serve.py runs it on a tiny random dialogue model.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import typing as tp

import numpy as np
import torch
from bench_serve import (
    client_signals,
    load_options,
    paced,
    pcm16,
    run_clients,
    start_server,
    stop_server,
    write_report,
)

import delaykit
from delaykit.modes.dialogue import DialogueOptions
from delaykit.serve import protocol
from delaykit.serve.protocol import Kind
from delaykit.serve.server import ServeConfig
from delaykit.serve.speech import ChatServer


def chat_client(url: str, signal: np.ndarray, rate: int, frame: int, drain: float, result: dict) -> None:
    """Talk ``signal`` (whole frames of it) at real-time pace, then ping; fill ``result`` with the send time of
    each user frame, the arrival time of each agent frame and the events counted."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    pcm = pcm16(signal)[:signal.shape[0] // frame * frame]
    sent: list[float] = []
    received: list[float] = []
    counts = {"text_pieces": 0, "behind": 0, "errors": 0}
    messages: list[str] = []
    done = threading.Event()
    with connect(url, max_size=None, open_timeout=30) as ws:
        first = protocol.decode(ws.recv(timeout=30))
        if first.kind != Kind.HANDSHAKE:
            reason = json.loads(first.payload).get("error", "no handshake")
            result.update(refused=reason, sent=[], received=[], **counts, messages=[f"refused: {reason}"])
            return
        handshake = json.loads(first.payload)
        assert (handshake["sample_rate"], handshake["frame_size"]) == (rate, frame), handshake

        def receive() -> None:
            samples = 0
            try:
                while True:
                    message = protocol.decode(ws.recv(timeout=drain))
                    if message.kind == Kind.AUDIO:
                        samples += len(message.payload) // 2
                        arrived = time.monotonic()
                        while samples >= (len(received) + 1) * frame:
                            received.append(arrived)
                    elif message.kind == Kind.TEXT:
                        counts["text_pieces"] += 1
                    elif message.kind == Kind.PING:
                        return
                    elif message.kind == Kind.METADATA and json.loads(message.payload).get("type") == "behind":
                        counts["behind"] += 1
                    elif message.kind == Kind.ERROR:
                        error = json.loads(message.payload)
                        counts["errors"] += 1
                        messages.append(error["error"])
                        if error.get("fatal"):
                            return
            except (TimeoutError, ConnectionClosed) as exc:
                messages.append(f"receiving stopped: {type(exc).__name__}")
            finally:
                done.set()

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        try:
            for _, data in paced(pcm, rate, frame, time.monotonic()):
                sent.append(time.monotonic())
                ws.send(protocol.encode(Kind.AUDIO, data))
            ws.send(protocol.encode(Kind.PING, b"end"))
        except ConnectionClosed as exc:
            messages.append(f"sending stopped: {exc}")
        done.wait(drain + 5)
    result.update(sent=sent, received=received, **counts, messages=messages)


def summarize(count: int, results: list[dict], metrics: tp.Any, wall: float, max_latency: float) -> dict:
    """One client count's report from its clients' results and the server's metrics."""
    failed = sum("sent" not in r for r in results)  # the client's thread raised (it says why on stderr)
    results = [r for r in results if "sent" in r]
    latencies, growth = [], []
    for r in results:
        answered = np.array(r["received"][:len(r["sent"])]) - np.array(r["sent"][:len(r["received"])])
        latencies.append(answered)
        quarter = answered.size // 4
        if quarter:
            growth.append(float(np.median(answered[-quarter:]) - np.median(answered[:quarter])))
    every = np.concatenate(latencies) if latencies else np.zeros(0)
    sent = sum(len(r["sent"]) for r in results)
    received = sum(min(len(r["received"]), len(r["sent"])) for r in results)

    entry = {
        "clients": count,
        "frame_latency_s": {name: round(float(value(every)), 4) if every.size else None
                            for name, value in (("p50", np.median), ("p99", lambda x: np.percentile(x, 99)),
                                                ("max", np.max))},
        "latency_growth_s": round(float(np.median(growth)), 4) if growth else None,
        "frames_sent": sent, "frames_received": received, "frames_lost": sent - received,
        "text_pieces": sum(r["text_pieces"] for r in results),
        "behind_events": sum(r["behind"] for r in results),
        "error_events": sum(r["errors"] for r in results),
        "refused": sum("refused" in r for r in results), "failed_clients": failed,
        "messages": sorted({m for r in results for m in r["messages"]})[:5],
        "server": {"steps": metrics.steps, "frames": metrics.frames,
                   "step_ms": round(1000 * metrics.step_seconds / max(metrics.steps, 1), 2),
                   "mean_batch": round(metrics.frames / max(metrics.steps, 1), 2), "max_batch": metrics.max_batch,
                   "errors": metrics.errors, "rejected_busy": metrics.rejected_busy,
                   "dropped_frames": metrics.dropped_frames, "busy": round(metrics.step_seconds / wall, 3)},
        "wall_s": round(wall, 2),
    }
    p99 = entry["frame_latency_s"]["p99"]
    entry["real_time"] = bool(sent and entry["frames_lost"] == 0 and entry["behind_events"] == 0
                              and entry["error_events"] == 0 and entry["refused"] == entry["failed_clients"] == 0
                              and p99 is not None and p99 <= max_latency)
    return entry


def run(argv: list[str] | None = None) -> dict:
    """Parse ``argv``, run every client count, print and return the report (and write it to ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    load_options(parser, model="default-dialogue", data="runs/data/dialogue-heldout", clients="1,4,8,16,24",
                 seconds=10.0)
    parser.add_argument("--channel", type=int, default=1,
                        help="the channel of the recordings the clients say (1: the user of the dialogue corpora)")
    parser.add_argument("--capacity", type=int, default=0,
                        help="the server's max sessions (0: each run's client count)")
    parser.add_argument("--max-latency", type=float, default=0.25, help="p99 frame latency of real time, seconds")
    parser.add_argument("--seed", type=int, default=0, help="seeds the agent's sampling")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    counts = [int(c) for c in args.clients.split(",")]
    model = delaykit.load(args.model, device="cpu")
    options = DialogueOptions(seed=args.seed)
    rate, frame = model.sample_rate, model.conversation(options).frame_size
    signals = client_signals(args.data, max(counts), args.seconds, rate, channel=args.channel)
    drain = max(30.0, args.seconds)  # how long a client waits for the answers after its last frame
    report: dict = {"model": args.model, "threads": args.threads, "seconds_per_client": args.seconds,
                    "max_latency_s": args.max_latency, "runs": []}
    for count in counts:
        config = ServeConfig(port=0, max_sessions=args.capacity or count)
        server = ChatServer(model.conversation(options), config, model_name=args.model)
        port, loop, stop, thread = start_server(server)
        url = f"ws://127.0.0.1:{port}{server.endpoint}"
        started = time.monotonic()
        results = run_clients(chat_client, [(url, signals[i], rate, frame, drain) for i in range(count)])
        entry = summarize(count, results, server.scheduler.metrics, time.monotonic() - started, args.max_latency)
        stop_server(server, loop, stop, thread)
        print(json.dumps(entry), flush=True)
        report["runs"].append(entry)
    kept = [entry["clients"] for entry in report["runs"] if entry["real_time"]]
    report["largest_real_time"] = max(kept) if kept else 0
    print(json.dumps({"largest_real_time": report["largest_real_time"]}), flush=True)
    write_report(args.json, report)
    return report


if __name__ == "__main__":
    run()
