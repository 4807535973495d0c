"""The batched chat scheduler: several conversations in one dialogue batch, each hearing and saying exactly
what it would alone, whenever it joins and however its audio arrives; a leaving conversation frees its slot
for a fresh one; past the capacity, admission is refused."""

from __future__ import annotations

import queue
import time

import numpy as np
import pytest

pytest.importorskip("moshi")  # the fixture builds its checkpoint with the reference's constructors
from test_dialogue import checkpoint  # noqa: F401  (module fixture: a tiny moshi checkpoint)

import delaykit
from delaykit.modes.dialogue import DialogueOptions
from delaykit.serve.chat import ChatFrame, ChatScheduler
from delaykit.serve.scheduler import Busy

FRAME = 1920


def user_audio(frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    envelope = np.abs(np.sin(np.linspace(0, 5.0, frames * FRAME)))
    return (0.3 * envelope * rng.standard_normal(frames * FRAME)).astype(np.float32)


def solo(conversation, audio: np.ndarray) -> list[tuple[np.ndarray, str, float]]:
    """(agent pcm, piece, time) per frame of one conversation alone (a session of its own)."""
    with conversation.stream(1) as session:
        steps = [session.step(frame[None]) for frame in audio.reshape(-1, FRAME)]
    return [(s.agent_pcm[0].numpy(), s.text_pieces[0], s.time[0]) for s in steps]


class Client:
    """One conversation's events, as a server's sender would get them."""

    def __init__(self, scheduler: ChatScheduler):
        self.scheduler = scheduler
        self.events: queue.Queue = queue.Queue()
        self.session = scheduler.admit(self.events.put)
        self.frames: list[ChatFrame] = []

    def send(self, samples: np.ndarray) -> None:
        self.scheduler.feed(self.session, samples)

    def sync(self, timeout: float = 60.0) -> list[ChatFrame]:
        """Wait until every whole frame sent so far is answered; the frames so far."""
        self.scheduler.mark(self.session, "sync")
        deadline = time.monotonic() + timeout
        while True:
            kind, event = self.events.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert kind != "error", event
            if kind == "mark":
                return self.frames
            self.frames.append(event)

    def leave(self) -> None:
        self.scheduler.leave(self.session)


def assert_alone(frames: list[ChatFrame], expected: list[tuple]) -> None:
    assert len(frames) == len(expected)
    for frame, (pcm, piece, at) in zip(frames, expected):
        assert frame.piece == piece and frame.time == pytest.approx(at)
        np.testing.assert_allclose(frame.pcm, pcm, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def model(checkpoint):  # noqa: F811
    return delaykit.load(checkpoint[0], device="cpu")


def test_each_conversation_is_answered_as_if_alone(model):
    conversation = model.conversation(DialogueOptions(seed=11))  # sampled: each item draws its own
    audio = {name: user_audio(frames, seed) for name, frames, seed in (("a", 14, 1), ("b", 12, 2), ("c", 9, 3))}
    expected = {name: solo(conversation, signal) for name, signal in audio.items()}
    assert len({piece for _, piece, _ in expected["a"]}) > 1  # the random agent says things
    scheduler = ChatScheduler(conversation, max_sessions=2)
    try:
        a = Client(scheduler)
        a.send(audio["a"][:3 * FRAME + 500])
        a.sync()
        assert len(a.frames) == 3  # the 500 samples wait for the rest of their frame
        b = Client(scheduler)  # joins mid-conversation, in the other slot
        with pytest.raises(Busy, match="all 2 sessions"):
            scheduler.admit(lambda event: None)
        for start in range(3 * FRAME + 500, audio["a"].shape[0], 2501):  # both send in odd pieces at once
            a.send(audio["a"][start:start + 2501])
            b_start = start - (3 * FRAME + 500)
            b.send(audio["b"][b_start:b_start + 2501])
        b.send(audio["b"][b_start + 2501:])
        assert_alone(a.sync(), expected["a"])
        a.leave()
        c = Client(scheduler)  # a's slot, started over
        assert c.session.slot == a.session.slot
        c.send(audio["c"])
        assert_alone(c.sync(), expected["c"])
        assert_alone(b.sync(), expected["b"])
        assert scheduler.metrics.max_batch == 2 and scheduler.metrics.rejected_busy == 1
        assert scheduler.metrics.frames == 14 + 12 + 9
    finally:
        scheduler.close()


def test_reset_starts_the_conversation_over(model):
    conversation = model.conversation(DialogueOptions(seed=4))
    first, second = user_audio(6, seed=5), user_audio(8, seed=6)
    expected = solo(conversation, second)
    scheduler = ChatScheduler(conversation, max_sessions=3)
    try:
        client = Client(scheduler)
        client.send(first)
        client.sync()
        client.send(first[:FRAME // 2])  # half a frame, dropped by the reset
        scheduler.reset(client.session)
        client.frames.clear()
        client.send(second)
        assert_alone(client.sync(), expected)
    finally:
        scheduler.close()


def test_frames_out_of_phase_share_a_step_when_gathered(model):
    """A frame waits (up to ``gather_seconds``) for the other conversations' frames, then all go in one step."""
    scheduler = ChatScheduler(model.conversation(DialogueOptions.greedy()), max_sessions=2, gather_seconds=30.0)
    try:
        first, second = Client(scheduler), Client(scheduler)
        audio = user_audio(1, 5)
        first.send(audio)
        time.sleep(0.3)  # the second client's frame comes 300 ms later
        second.send(audio)
        assert len(first.sync()) == 1 and len(second.sync()) == 1
        assert (scheduler.metrics.steps, scheduler.metrics.max_batch, scheduler.metrics.frames) == (1, 2, 2)
    finally:
        scheduler.close()
