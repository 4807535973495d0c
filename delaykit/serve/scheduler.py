"""One batched stream shared by every connected session, stepped by a single worker: recognition here
(:class:`AsrScheduler`), dialogue in :mod:`delaykit.serve.chat` (both on :class:`BatchScheduler`).

The recognition scheduler owns a :class:`~delaykit.modes.asr.TranscriptionStream` of ``max_sessions``
items. A session takes a free item (its slot) on admission and gives it back when it leaves; past
``max_sessions`` admission fails with :class:`Busy`. Sessions append PCM to their buffers from the event
loop; the worker repeatedly takes one 80 ms frame from every session that has one and runs one batched step
for all of them (items without a frame are masked out, so each session gets exactly the words it would get
alone), then hands each session its events. Starting, flushing and stopping an item are queued and run by the same worker between steps: the
stream is only ever touched by one thread.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import typing as tp
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ..modes.asr import EndOfSpeech, Transcriber, TranscriptionStream, Word


class Busy(RuntimeError):
    """Every slot is taken."""


@dataclass
class Metrics:
    """Counters behind ``/metrics``."""

    sessions: int = 0
    sessions_total: int = 0
    rejected_busy: int = 0
    steps: int = 0  # batched steps started (a failing one counts here and in errors)
    frames: int = 0  # session frames processed (a step of k active sessions counts k)
    step_seconds: float = 0.0
    max_batch: int = 0
    errors: int = 0
    dropped_frames: int = 0  # always 0: frames are never dropped (clients are slowed down instead)

    def prometheus(self, prefix: str = "delaykit") -> str:
        lines = []
        for name, value in vars(self).items():
            kind = "gauge" if name in ("sessions", "max_batch") else "counter"
            lines += [f"# TYPE {prefix}_{name} {kind}", f"{prefix}_{name} {value}"]
        return "\n".join(lines) + "\n"


@dataclass
class Session:
    """One connected client: its slot, its unprocessed audio, and where its events go."""

    slot: int
    deliver: tp.Callable[[tuple[str, tp.Any]], None]  # called from the worker thread, in event order
    buffer: deque = field(default_factory=deque)  # float32 arrays not yet stepped
    buffered: int = 0  # samples in buffer
    started: bool = False  # its item has been started by the worker (only then are its frames stepped)
    taken: int = 0  # samples taken from the buffer since admission
    marks: deque = field(default_factory=deque)  # (samples fed before it, payload): see ChatScheduler.mark


def asyncio_delivery(outbox: asyncio.Queue, loop: asyncio.AbstractEventLoop) -> tp.Callable[[tuple], None]:
    """Deliver a session's events into an asyncio queue of ``loop`` (from the worker thread)."""
    return lambda event: loop.call_soon_threadsafe(outbox.put_nowait, event)


class BatchScheduler:
    """What the batched schedulers share: admission into ``max_sessions`` slots, each session's buffered
    audio, the queue of per-session actions and the worker that runs them and steps every session that has a
    whole frame, in one batch. Subclasses own ``stream`` (closed with the scheduler) and implement
    ``_apply(action, session)`` and ``_step(pcm [N, frame], active [N], stepping)``."""

    worker_name = "delaykit-scheduler"
    stream: tp.Any

    def __init__(self, frame_size: int, sample_rate: int, max_sessions: int, gather_seconds: float = 0.0):
        self.frame_size = frame_size
        self.sample_rate = sample_rate
        self.max_sessions = max_sessions
        # How long a ready frame may wait for the frames of the other started sessions, so that sessions whose
        # audio arrives out of phase share a step instead of each costing one (a step costs about the same for
        # one session as for all: every slot is computed).
        self.gather_seconds = gather_seconds
        self._ready_since: float | None = None  # when the oldest frame now waiting for a step was seen
        self.sessions: dict[int, Session] = {}
        self.metrics = Metrics()
        self._actions: deque[tuple[str, Session]] = deque()
        self._lock = threading.Lock()  # guards sessions, buffers and actions between the loop and the worker
        self._wake = threading.Event()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name=self.worker_name, daemon=True)
        self._worker.start()

    # -- called from the event loop -----------------------------------------------------------------------

    def admit(self, deliver: tp.Callable[[tuple[str, tp.Any]], None]) -> Session:
        """A new session with a free slot; its events are passed to ``deliver`` (from the worker thread)."""
        with self._lock:
            free = [slot for slot in range(self.max_sessions) if slot not in self.sessions]
            if not free:
                self.metrics.rejected_busy += 1
                raise Busy(f"all {self.max_sessions} sessions are in use; try again later")
            session = Session(free[0], deliver)
            self.sessions[session.slot] = session
            self._actions.append(("start", session))
            self.metrics.sessions = len(self.sessions)
            self.metrics.sessions_total += 1
        self._wake.set()
        return session

    def leave(self, session: Session) -> None:
        with self._lock:
            if self.sessions.get(session.slot) is session:
                del self.sessions[session.slot]
                self._actions.append(("stop", session))
                self.metrics.sessions = len(self.sessions)
        self._wake.set()

    def feed(self, session: Session, samples: np.ndarray) -> None:
        with self._lock:
            session.buffer.append(samples)
            session.buffered += samples.shape[0]
        self._wake.set()

    def request(self, session: Session, action: str) -> None:
        """Queue an action for the session, run by the worker between steps (in order with the others)."""
        with self._lock:
            self._actions.append((action, session))
        self._wake.set()

    def buffered_seconds(self, session: Session) -> float:
        return session.buffered / self.sample_rate

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._worker.join(timeout=10)
        self.stream.close()

    # -- the worker ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            while not self._closed and self._work_once():
                pass

    def _work_once(self) -> bool:
        """Run the queued actions, then one batched step if any session has a whole frame; False when idle."""
        with self._lock:
            actions = list(self._actions)
            self._actions.clear()
        for action, session in actions:
            self._apply(action, session)
        frame = self.frame_size
        pcm = torch.zeros(self.max_sessions, frame)  # [N, frame]
        active = torch.zeros(self.max_sessions, dtype=torch.bool)  # [N]
        with self._lock:
            # A session admitted after this round's actions were taken waits for its start in the next round.
            running = [s for s in self.sessions.values() if s.started]
            stepping = [s for s in running if s.buffered >= frame]
            wait = self._gather_wait(len(stepping), len(running))
            if wait > 0:
                stepping = []
            for session in stepping:
                pcm[session.slot] = torch.from_numpy(_take(session, frame))
                active[session.slot] = True
        if wait > 0:
            self._wake.wait(timeout=wait)  # a frame coming in wakes the worker early
            self._wake.clear()
            return True
        if not stepping:
            return bool(actions)
        # Counted before the step delivers its results, so that a client holding its frames sees them counted.
        self.metrics.steps += 1
        self.metrics.frames += len(stepping)
        self.metrics.max_batch = max(self.metrics.max_batch, len(stepping))
        started = time.perf_counter()
        try:
            self._step(pcm, active, stepping)
        except Exception as exc:  # noqa: BLE001  (a failing step must not take the server down)
            self.metrics.errors += 1
            for session in stepping:
                session.deliver(("error", f"model step failed: {exc}"))
            return True
        self.metrics.step_seconds += time.perf_counter() - started
        return True

    def _gather_wait(self, ready: int, started: int) -> float:
        """Seconds the ``ready`` sessions' frames are held for the other ``started`` ones (0: step now)."""
        if not ready or ready == started or self.gather_seconds <= 0:
            self._ready_since = None
            return 0.0
        now = time.perf_counter()
        if self._ready_since is None:
            self._ready_since = now
        wait = self._ready_since + self.gather_seconds - now
        if wait <= 0:
            self._ready_since = None
        return max(wait, 0.0)

    def _apply(self, action: str, session: Session) -> None:
        raise NotImplementedError

    def _step(self, pcm: torch.Tensor, active: torch.Tensor, stepping: list[Session]) -> None:
        raise NotImplementedError


class AsrScheduler(BatchScheduler):
    """Admits sessions into slots of one batched recognition stream and steps them; see the module
    docstring. Session events: ``("event", Word | EndOfSpeech)``, ``("flushed", None)``, ``("error",
    message)``; actions: ``flush`` (end of input: last words, then start afresh) and ``reset``."""

    worker_name = "delaykit-asr-scheduler"

    def __init__(self, transcriber: Transcriber, max_sessions: int = 16, gather_seconds: float = 0.0):
        self.transcriber = transcriber
        self.stream = TranscriptionStream(transcriber, max_sessions, start=False)
        super().__init__(transcriber.frame_size, transcriber.sample_rate, max_sessions, gather_seconds)

    def _step(self, pcm: torch.Tensor, active: torch.Tensor, stepping: list[Session]) -> None:
        self._dispatch(self.stream.push(pcm, active))

    def _apply(self, action: str, session: Session) -> None:
        mask = torch.zeros(self.max_sessions, dtype=torch.bool)
        mask[session.slot] = True
        if action == "stop":
            self.stream.stop(mask)
            return
        if self.sessions.get(session.slot) is not session:
            return  # it left before its action ran
        if action == "flush":
            with self._lock:
                tail = _take(session, session.buffered)  # [< 2 frames] of remaining audio
            padded = -tail.shape[0] % self.frame_size
            if tail.shape[0]:
                last = torch.from_numpy(np.pad(tail, (0, padded)))[None].expand(self.max_sessions, -1)
                self._dispatch(self.stream.push(last.contiguous(), mask))
            self._dispatch(self.stream.flush(mask, padded_samples=padded))
            session.deliver(("flushed", None))
            action = "start"
        if action == "reset":  # the client asked to drop what it sent so far
            with self._lock:
                session.buffer.clear()
                session.buffered = 0
        if action in ("start", "reset"):
            # Audio that arrived before this ran (a new session's first chunks, the next utterance after a
            # flush) stays buffered: it belongs to the stream that starts now.
            self._dispatch(self.stream.start(mask))
            session.started = True

    def _dispatch(self, events: list) -> None:
        for event in events:
            if isinstance(event, (Word, EndOfSpeech)):
                session = self.sessions.get(event.item)
                if session is not None:
                    session.deliver(("event", event))


def _take(session: Session, count: int) -> np.ndarray:
    """The first ``count`` buffered samples of ``session`` (call with the lock held)."""
    parts, needed = [], count
    while needed > 0 and session.buffer:
        head = session.buffer[0]
        if head.shape[0] <= needed:
            parts.append(session.buffer.popleft())
            needed -= head.shape[0]
        else:
            parts.append(head[:needed])
            session.buffer[0] = head[needed:]
            needed = 0
    session.buffered -= count - needed
    session.taken += count - needed
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class LocalSession:
    """A session used in-process (the apps): feed audio as it comes, read the words so far, finish."""

    def __init__(self, scheduler: AsrScheduler):
        self.scheduler = scheduler
        self._events: queue.Queue = queue.Queue()
        self.session = scheduler.admit(self._events.put)
        self.words: list[Word] = []
        self.errors: list[str] = []

    def feed(self, samples: np.ndarray) -> None:
        """Mono float32 samples at the scheduler's sample rate."""
        self.scheduler.feed(self.session, np.ascontiguousarray(samples, dtype=np.float32))

    def poll(self) -> list[Word]:
        """Every word recognised so far (without waiting)."""
        while True:
            try:
                self._take(self._events.get_nowait())
            except queue.Empty:
                return self.words

    def finish(self, timeout: float = 120.0) -> list[Word]:
        """Flush: wait for the last words; the session then starts afresh (``words`` keeps the old ones)."""
        self.scheduler.request(self.session, "flush")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no end of recognition after {timeout:g} s")
            if self._take(self._events.get(timeout=remaining)) == "flushed":
                return self.words

    def close(self) -> None:
        self.scheduler.leave(self.session)

    def _take(self, item: tuple[str, tp.Any]) -> str:
        kind, event = item
        if kind == "event" and isinstance(event, Word):
            self.words.append(event)
        elif kind == "error":
            self.errors.append(event)
        return kind
