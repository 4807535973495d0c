"""Load test of the ASR server over real sockets: N clients stream recordings at real-time pace at once.

    python benchmarks/bench_serve.py [--model default-asr] [--data runs/data/heldout] [--clients 1,4,16,32]
                                     [--seconds 8] [--threads 2] [--json out.json]

A server (``delaykit.serve.server.AsrServer``) runs on a loopback port in this process; for each client count,
that many threads connect, send 80 ms of 16-bit PCM every 80 ms (a live microphone), then ask for the flush.
Per client count it reports how long after a word's end (in the audio) its event reached the client, how many
``behind`` events the server sent (it could not keep pace), and the server's own step metrics. Words arriving
about the model's text delay (0.48 s for the shipped model) after they end, and no ``behind``, mean the server
keeps up with that many live callers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import typing as tp
from pathlib import Path

import numpy as np
import torch

import delaykit
from delaykit.audio import load_audio, read_audio, resample
from delaykit.data.manifest import read_corpus
from delaykit.serve import protocol
from delaykit.serve.protocol import Kind
from delaykit.serve.server import AsrServer, ServeConfig


def start_server(server: AsrServer) -> tuple[int, asyncio.AbstractEventLoop, asyncio.Event, threading.Thread]:
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()
    port: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve(ready=lambda p: (port.append(p), ready.set()), stop=stop))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the server did not start")
    return port[0], loop, stop, thread


def client_signals(data: str | Path, clients: int, seconds: float, rate: int,
                   channel: int | None = None) -> list[np.ndarray]:
    """``clients`` signals [seconds * rate] from the corpus ``data`` (see ``read_corpus``): each one its
    recordings one after the other, client ``i`` starting at the ``i``-th, so that clients say different things.
    ``channel`` takes that channel of a multichannel recording (the last one when it has fewer); None: the mean."""
    rows = read_corpus(data)
    if not rows:
        raise SystemExit(f"{data}: no recordings")
    signals = []
    for index in range(clients):
        pieces, total, offset = [], 0, index
        while total < seconds * rate:
            path = rows[offset % len(rows)]["path"]
            if channel is None:
                piece = load_audio(path, rate)
            else:
                channels, own_rate = read_audio(path)  # [C, T]
                piece = resample(channels[min(channel, channels.shape[0] - 1)], own_rate, rate)
            pieces.append(piece)
            total += piece.shape[0]
            offset += clients
        signals.append(np.concatenate(pieces)[:int(seconds * rate)])
    return signals


def pcm16(signal: np.ndarray) -> np.ndarray:
    """Little-endian 16-bit samples of ``signal`` [T] (float in [-1, 1])."""
    return (np.clip(signal, -1, 32767 / 32768) * 32768).astype("<i2")


def paced(pcm: np.ndarray, rate: int, frame: int, started: float) -> tp.Iterator[tuple[int, bytes]]:
    """(index, bytes) of each ``frame`` samples of ``pcm``, the ``index``-th yielded no sooner than ``index *
    frame / rate`` seconds after ``started`` (``time.monotonic()``): what a live microphone sends."""
    for index, start in enumerate(range(0, pcm.shape[0], frame)):
        delay = started + index * frame / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield index, pcm[start:start + frame].tobytes()


def run_clients(target: tp.Callable[..., None], arguments: list[tuple]) -> list[dict]:
    """Run ``target(*arguments[i], result_i)`` in one thread per client, all at once; the results."""
    results: list[dict] = [dict() for _ in arguments]
    clients = [threading.Thread(target=target, args=(*args, result)) for args, result in zip(arguments, results)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(600)
    return results


def stop_server(server: tp.Any, loop: asyncio.AbstractEventLoop, stop: asyncio.Event,
                thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    server.close()


def load_options(parser: argparse.ArgumentParser, model: str, data: str, clients: str, seconds: float) -> None:
    """The options every load test takes, with its own defaults."""
    parser.add_argument("--model", default=model, help="shipped name, checkpoint directory or hub repo id")
    parser.add_argument("--data", default=data, help="the corpus the clients read their audio from")
    parser.add_argument("--clients", default=clients, help="client counts, one run each")
    parser.add_argument("--seconds", type=float, default=seconds, help="audio each client streams")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="write the report here too")


def write_report(path: Path | None, report: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")


def live_client(url: str, signal: np.ndarray, rate: int, frame: int, result: dict) -> None:
    """Stream ``signal`` at real-time pace; record (arrival - word end in wall time) per word and behinds."""
    from websockets.sync.client import connect

    latencies, behind = [], 0
    with connect(url, max_size=None) as ws:
        protocol.decode(ws.recv(timeout=30))
        started = time.monotonic()
        receiver_done = threading.Event()

        def receive() -> None:
            nonlocal behind
            while True:
                message = protocol.decode(ws.recv(timeout=120))
                if message.kind != Kind.METADATA:
                    continue
                event = json.loads(message.payload)
                if event["type"] == "word":
                    latencies.append(time.monotonic() - (started + event["end"]))
                elif event["type"] == "behind":
                    behind += 1
                elif event["type"] == "flushed":
                    receiver_done.set()
                    return

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        for _, data in paced(pcm16(signal), rate, frame, started):
            ws.send(protocol.encode(Kind.AUDIO, data))
        ws.send(protocol.encode(Kind.CONTROL, {"type": "end"}))
        receiver_done.wait(180)
    result.update(latencies=latencies, behind=behind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    load_options(parser, model="default-asr", data="runs/data/heldout", clients="1,4,16,32", seconds=8.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counts = [int(c) for c in args.clients.split(",")]
    transcriber = delaykit.load(args.model, device="cpu").transcriber()
    rate, frame = transcriber.sample_rate, transcriber.frame_size
    signals = client_signals(args.data, max(counts), args.seconds, rate)
    report: dict = {"model": args.model, "threads": args.threads, "seconds_per_client": args.seconds, "runs": []}
    for count in counts:
        server = AsrServer(transcriber, ServeConfig(port=0, max_sessions=count), model_name=args.model)
        port, loop, stop, thread = start_server(server)
        url = f"ws://127.0.0.1:{port}/api/asr"
        results = run_clients(live_client, [(url, signals[i], rate, frame) for i in range(count)])
        metrics = server.scheduler.metrics
        latencies = np.array([v for r in results for v in r.get("latencies", [])])
        entry = {"clients": count, "words": int(latencies.size),
                 "word_latency_s": {"median": round(float(np.median(latencies)), 3) if latencies.size else None,
                                    "p90": round(float(np.percentile(latencies, 90)), 3) if latencies.size else None},
                 "behind_events": sum(r.get("behind", 0) for r in results),
                 "finished": sum("latencies" in r for r in results),
                 "server_steps": metrics.steps, "server_step_ms": round(1000 * metrics.step_seconds / max(metrics.steps, 1), 2),
                 "max_batch": metrics.max_batch}
        print(json.dumps(entry), flush=True)
        report["runs"].append(entry)
        stop_server(server, loop, stop, thread)
    write_report(args.json, report)


if __name__ == "__main__":
    main()
