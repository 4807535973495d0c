"""Many full-duplex conversations in one batched dialogue session, stepped by a single worker.

:class:`ChatScheduler` owns a :class:`~delaykit.modes.dialogue.DialogueSession` of ``max_sessions`` items
(the scheduling is :class:`~delaykit.serve.scheduler.BatchScheduler`'s, as for recognition). A conversation
takes a free item on admission; the worker starts it over (``DialogueSession.reset`` of that item alone), so
it begins from a fresh state whoever held the slot before; past ``max_sessions`` admission fails with
:class:`~delaykit.serve.scheduler.Busy`. Each worker round steps every conversation that has a whole 80 ms
frame of user audio buffered, all in one batch; the others are masked out (their state stays as it was), so
every conversation hears and says what it would alone: the same tokens, and the same audio to within float
rounding (a batched matrix product may round apart from a batch of one, by ~1e-5). Each stepped conversation gets a
:class:`ChatFrame`: the agent's next 80 ms and its text piece.

Conversations run at the pace their audio arrives (a browser sends in real time), so a round steps those
whose frames have come in since the last one; the more the worker has to do, the larger its batches.
"""

from __future__ import annotations

import queue
import time
import typing as tp
from dataclasses import dataclass

import numpy as np
import torch

from ..audio import check_finite, load_audio
from ..errors import AudioError
from ..modes.dialogue import Conversation, words_from_pieces
from ..text_stream import TimedWord
from .scheduler import BatchScheduler, Session


@dataclass(frozen=True)
class ChatFrame:
    """What one step gave a conversation."""

    pcm: np.ndarray  # [frame_size] float32: the agent's next 80 ms (silence while not ready)
    piece: str  # the agent's text piece ('▁' starts a word), "" for none
    time: float  # start of the user's frame in the conversation, seconds
    text_time: float  # when the piece is spoken (``time`` plus the text's lead, if the model has one)


class ChatScheduler(BatchScheduler):
    """Conversations in slots of one batched dialogue session; see the module docstring.

    Session events: ``("frame", ChatFrame)`` per 80 ms heard, ``("mark", payload)`` (see :meth:`mark`),
    ``("error", message)``.
    """

    worker_name = "delaykit-chat-scheduler"

    def __init__(self, conversation: Conversation, max_sessions: int = 4, gather_seconds: float = 0.0):
        self.conversation = conversation
        self.stream = conversation.stream(max_sessions)
        super().__init__(conversation.frame_size, conversation.codec.sample_rate, max_sessions, gather_seconds)

    def mark(self, session: Session, payload: tp.Any) -> None:
        """Deliver ``("mark", payload)`` once every whole frame fed before it has been answered (the samples
        short of a frame wait for more audio and do not hold it back)."""
        with self._lock:
            session.marks.append((session.taken + session.buffered, payload))
        self.request(session, "mark")

    def reset(self, session: Session) -> None:
        """Start the conversation over: the audio buffered so far is dropped now, the audio fed from now on
        is the new conversation's (a frame being stepped meanwhile is still answered)."""
        with self._lock:
            session.taken += session.buffered
            session.buffer.clear()
            session.buffered = 0
            session.started = False  # nothing is stepped until the worker has started it over
        self.request(session, "reset")

    # -- the worker ---------------------------------------------------------------------------------------

    def _apply(self, action: str, session: Session) -> None:
        if action == "stop" or self.sessions.get(session.slot) is not session:
            return  # a slot is started over when it is taken again
        if action in ("start", "reset"):
            mask = torch.zeros(self.max_sessions, dtype=torch.bool)
            mask[session.slot] = True
            self.stream.reset(mask)
            session.started = True
        self._deliver_marks(session)

    def _step(self, pcm: torch.Tensor, active: torch.Tensor, stepping: list[Session]) -> None:
        step = self.stream.step(pcm, active)
        agent = step.agent_pcm.cpu().numpy()  # [N, frame]
        for session in stepping:
            slot = session.slot
            session.deliver(("frame", ChatFrame(agent[slot].copy(), step.text_pieces[slot], step.time[slot],
                                                 step.text_time[slot])))
            self._deliver_marks(session)

    def _deliver_marks(self, session: Session) -> None:
        with self._lock:
            due = []
            while session.marks and session.marks[0][0] - session.taken < self.frame_size:
                due.append(session.marks.popleft()[1])
        for payload in due:
            session.deliver(("mark", payload))


class LocalChat:
    """A conversation used in-process (the app's recording tab): feed audio, read the agent's frames."""

    def __init__(self, scheduler: ChatScheduler):
        self.scheduler = scheduler
        self._events: queue.Queue = queue.Queue()
        self.session = scheduler.admit(self._events.put)

    def answer(self, user: np.ndarray, timeout: float = 600.0) -> list[ChatFrame]:
        """The agent's frames for ``user`` [T] (float32 at the model's rate, zero-padded to whole frames)."""
        frame = self.scheduler.frame_size
        padded = np.pad(np.asarray(user, np.float32), (0, -user.shape[0] % frame))
        self.scheduler.feed(self.session, padded)
        self.scheduler.mark(self.session, "end")
        frames: list[ChatFrame] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the agent did not answer within {timeout:g} s")
            kind, event = self._events.get(timeout=remaining)
            if kind == "frame":
                frames.append(event)
            elif kind == "error":
                raise RuntimeError(event)
            elif kind == "mark":
                return frames

    def close(self) -> None:
        self.scheduler.leave(self.session)

    def __enter__(self) -> tp.Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class ChatAnswer:
    """The agent's answer to a recorded user, both channels as long as the recording."""

    user: np.ndarray  # [T] float32
    agent: np.ndarray  # [T] float32
    words: list[TimedWord]


def answer_recording(scheduler: ChatScheduler, path: str, timeout: float = 600.0) -> ChatAnswer:
    """Let the agent answer the recording at ``path`` in a slot of ``scheduler`` (what ``converse_file`` does
    with a session of its own)."""
    user = load_audio(path, scheduler.sample_rate)  # [T]
    if user.shape[0] == 0:
        raise AudioError(f"{path}: empty (0 samples)")
    check_finite(user, str(path))
    with LocalChat(scheduler) as chat:
        frames = chat.answer(user, timeout)
    agent = np.concatenate([f.pcm for f in frames])[:user.shape[0]] if frames else np.zeros(0, np.float32)
    words = words_from_pieces([(f.text_time, f.piece) for f in frames], scheduler.conversation.frame_duration)
    return ChatAnswer(user, agent.astype(np.float32), words)
