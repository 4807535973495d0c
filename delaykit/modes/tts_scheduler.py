"""Syntheses asked for from several threads, served by one worker thread stepping one batch.

A :class:`SynthesisScheduler` owns a :class:`~delaykit.modes.tts_batch.BatchSynthesisStream` of
``max_items`` slots. ``submit`` queues a request (a synthesizer with its options, and a whole script; or,
with ``more_text=True``, the first words of a text whose next words the caller pushes as they arrive, then
``end_of_text``); the worker admits waiting requests into free slots in order, hands each running request
the words pushed since its last round, runs one batched step for every request that has the words it needs
(one waiting for words is left out of the step), and puts each request's events in its own queue, from
which ``SynthesisRequest.results`` reads them. A request leaves its slot when its speech ends, or at the
worker's next round once it is cancelled or its ``stop`` event is set (its browser tab went away). The
stream is only ever touched by the worker.

The items of a batch share their sampling settings: a request with other ones waits until the running batch
has emptied, then the stream is reopened with its settings (requests behind it wait too, in order). An idle
scheduler closes its stream, leaving the engine free.
"""

from __future__ import annotations

import queue
import threading
import typing as tp
from collections import deque
from dataclasses import dataclass, field

from .script import ScriptItem
from .tts import SynthesisEvent, Synthesizer
from .tts_batch import BatchSynthesisStream

FINISHED = None  # put in a request's queue after its last event
END_OF_TEXT = "end of text"  # put in a request's inbox after its last words


@dataclass
class SchedulerMetrics:
    """Counters of a scheduler's work."""

    requests: int = 0  # requests submitted
    steps: int = 0  # batched steps
    frames: int = 0  # item steps (a batched step of k items counts k)
    max_batch: int = 0  # most items stepped together
    errors: int = 0  # failed steps


@dataclass
class SynthesisRequest:
    """One synthesis asked of the scheduler: its synthesizer, script, and the queue of its events."""

    synthesizer: Synthesizer
    items: list[ScriptItem]
    stop: threading.Event  # set by the caller (e.g. its tab went away): the request leaves its slot
    outbox: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # events, FINISHED, or an exception
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Words pushed after submit (lists of script items, then END_OF_TEXT), taken by the worker at its next
    # round; ``wake`` tells the worker they are there.
    inbox: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    wake: tp.Callable[[], None] = lambda: None

    @property
    def abandoned(self) -> bool:
        return self.stop.is_set() or self.cancelled.is_set()

    def push_items(self, items: tp.Sequence[ScriptItem]) -> None:
        """More words of a request submitted with ``more_text=True``."""
        self.inbox.put(list(items))
        self.wake()

    def end_of_text(self) -> None:
        """No more words will come: the request's speech ends after those pushed."""
        self.inbox.put(END_OF_TEXT)
        self.wake()

    def results(self, poll_seconds: float = 0.1) -> tp.Iterator[SynthesisEvent]:
        """The request's events as the worker makes them, until its speech ends; nothing more once it is
        abandoned. An error of the worker's step is raised here."""
        while not self.abandoned:
            try:
                event = self.outbox.get(timeout=poll_seconds)
            except queue.Empty:
                continue
            if event is FINISHED:
                return
            if isinstance(event, BaseException):
                raise event
            yield event


class SynthesisScheduler:
    """Steps the syntheses of several callers in one batch; see the module docstring."""

    def __init__(self, max_items: int = 8):
        self.max_items = max_items
        self.metrics = SchedulerMetrics()
        self._waiting: deque[SynthesisRequest] = deque()
        self._running: dict[int, SynthesisRequest] = {}  # by slot; touched by the worker only
        self._stream: BatchSynthesisStream | None = None
        self._lock = threading.Lock()  # guards _waiting between callers and the worker
        self._wake = threading.Event()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="delaykit-tts-scheduler", daemon=True)
        self._worker.start()

    # -- called by the requests' threads ------------------------------------------------------------------

    def submit(self, synthesizer: Synthesizer, items: tp.Sequence[ScriptItem],
               stop: threading.Event | None = None, more_text: bool = False) -> SynthesisRequest:
        """Queue the synthesis of ``items`` (a whole script) with ``synthesizer``'s options. With
        ``more_text`` the text stays open: push the next words with ``request.push_items`` as they arrive
        and end it with ``request.end_of_text()``."""
        if self._closed:
            raise RuntimeError("this scheduler is closed")
        request = SynthesisRequest(synthesizer, list(items), stop or threading.Event(), wake=self._wake.set)
        if not more_text:
            request.inbox.put(END_OF_TEXT)
        with self._lock:
            self._waiting.append(request)
            self.metrics.requests += 1
        self._wake.set()
        return request

    def cancel(self, request: SynthesisRequest) -> None:
        """Drop ``request`` (waiting or running); its slot is freed at the worker's next round."""
        request.cancelled.set()
        self._wake.set()

    def wake(self) -> None:
        """Have the worker look at the requests now (after setting a request's ``stop``)."""
        self._wake.set()

    @property
    def running(self) -> int:
        """Requests holding a slot."""
        return len(self._running)

    @property
    def holds_engine(self) -> bool:
        """Whether the worker has a stream open (it closes it when idle)."""
        return self._stream is not None

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._worker.join(timeout=10)
        if self._stream is not None:
            self._stream.close()
        with self._lock:
            left = list(self._running.values()) + list(self._waiting)
            self._waiting.clear()
        self._running.clear()
        for request in left:  # their readers would wait for ever
            request.outbox.put(RuntimeError("the synthesis scheduler was closed"))

    # -- the worker ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            if not self._work_once():
                self._wake.wait(timeout=0.5)
                self._wake.clear()

    def _work_once(self) -> bool:
        """Free abandoned slots, admit waiting requests, then one batched step; False when idle."""
        for slot, request in list(self._running.items()):
            if request.abandoned:
                self._release(slot)
            else:
                self._take_words(slot, request)
        self._admit()
        stream = self._stream
        slots = [] if stream is None else stream.ready()
        if not slots or stream is None:
            if stream is not None and not self._running:  # idle: release the engine
                stream.close()
                self._stream = None
            return False
        self.metrics.steps += 1
        self.metrics.frames += len(slots)
        self.metrics.max_batch = max(self.metrics.max_batch, len(slots))
        try:
            results = stream.step(slots)
        except Exception as exc:  # noqa: BLE001  (a failing step fails its requests, not the worker)
            self.metrics.errors += 1
            for request in self._running.values():
                request.outbox.put(exc)
            self._running.clear()
            stream.close()  # its state may be half-stepped: the next request opens a fresh one
            self._stream = None
            return True
        for slot, events in results.items():
            request = self._running[slot]
            for event in events:
                request.outbox.put(event)
            if stream.finished(slot):
                request.outbox.put(FINISHED)
                self._release(slot)
        return True

    def _release(self, slot: int) -> None:
        del self._running[slot]
        assert self._stream is not None
        self._stream.stop(slot)

    def _take_words(self, slot: int, request: SynthesisRequest) -> None:
        """Hand the stream the words pushed for ``request`` since the last round; a request whose words are
        refused (a word the tokenizer cannot spell) gets the error and leaves its slot."""
        assert self._stream is not None
        try:
            while True:
                try:
                    pushed = request.inbox.get_nowait()
                except queue.Empty:
                    return
                if pushed is END_OF_TEXT:
                    self._stream.end_of_text(slot)
                else:
                    self._stream.push_items(slot, pushed)
        except Exception as exc:  # noqa: BLE001  (its own words fail it alone)
            request.outbox.put(exc)
            self._release(slot)

    def _admit(self) -> None:
        """Start waiting requests in free slots, in order, while they can join the running batch."""
        while len(self._running) < self.max_items:
            with self._lock:
                if not self._waiting:
                    return
                request = self._waiting[0]
                if request.abandoned:
                    self._waiting.popleft()
                    continue
                if self._stream is not None and self._stream.incompatibility(request.synthesizer):
                    if self._running:
                        return  # it waits for the batch to empty
                    self._stream.close()
                    self._stream = None
                self._waiting.popleft()
            try:
                if self._stream is None:
                    self._stream = BatchSynthesisStream(request.synthesizer, self.max_items)
                slot = self._stream.free_slots()[0]
                self._stream.start(slot, request.synthesizer)
                try:
                    self._stream.push_items(slot, request.items)
                except Exception:
                    self._stream.stop(slot)
                    raise
            except Exception as exc:  # noqa: BLE001  (a request that cannot start fails alone)
                request.outbox.put(exc)
                continue
            self._running[slot] = request
            self._take_words(slot, request)
