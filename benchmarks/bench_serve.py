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
from pathlib import Path

import numpy as np
import torch

import delaykit
from delaykit.audio import load_audio
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
        pcm = (np.clip(signal, -1, 32767 / 32768) * 32768).astype("<i2")
        for index, start in enumerate(range(0, pcm.shape[0], frame)):
            delay = started + index * frame / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ws.send(protocol.encode(Kind.AUDIO, pcm[start:start + frame].tobytes()))
        ws.send(protocol.encode(Kind.CONTROL, {"type": "end"}))
        receiver_done.wait(180)
    result.update(latencies=latencies, behind=behind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default-asr")
    parser.add_argument("--data", default="runs/data/heldout")
    parser.add_argument("--clients", default="1,4,16,32")
    parser.add_argument("--seconds", type=float, default=8.0, help="audio each client streams")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counts = [int(c) for c in args.clients.split(",")]
    transcriber = delaykit.load(args.model, device="cpu").transcriber()
    rate, frame = transcriber.sample_rate, transcriber.frame_size
    rows = read_corpus(args.data)
    signals = []
    for index in range(max(counts)):  # each client: recordings one after the other, cut to --seconds
        pieces, total, offset = [], 0, index
        while total < args.seconds * rate:
            piece = load_audio(rows[offset % len(rows)]["path"], rate)
            pieces.append(piece)
            total += piece.shape[0]
            offset += max(counts)
        signals.append(np.concatenate(pieces)[:int(args.seconds * rate)])
    report: dict = {"model": args.model, "threads": args.threads, "seconds_per_client": args.seconds, "runs": []}
    for count in counts:
        server = AsrServer(transcriber, ServeConfig(port=0, max_sessions=count), model_name=args.model)
        port, loop, stop, thread = start_server(server)
        url = f"ws://127.0.0.1:{port}/api/asr"
        results = [dict() for _ in range(count)]
        clients = [threading.Thread(target=live_client, args=(url, signals[i], rate, frame, results[i]))
                   for i in range(count)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(600)
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
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        server.close()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
