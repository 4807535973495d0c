"""The dialogue app: talk to the agent live from the browser's microphone, or let it answer a recording.

``make_demo(model)`` builds the Blocks; ``delaykit app dialogue`` launches it (gradio is the optional extra
``app``). Live: the microphone streams to the server in short chunks; every whole 80 ms frame is one step of a
full-duplex session (the agent hears while it speaks), and the agent's audio streams back and plays as it comes,
with its words so far (streaming audio to the browser needs ffmpeg; without it the live tab says so). Stopping
the recording ends the session and offers the stereo recording (you left, the agent right). One engine holds one session at a time: a second live visitor is told the agent is busy.
Recording: a file (or a take from the microphone) is answered offline on the same streaming path.
"""

from __future__ import annotations

import tempfile
import threading
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import delaykit
from delaykit.apps import can_stream_audio
from delaykit.apps.live import LiveInput
from delaykit.audio import float_to_pcm16, write_audio
from delaykit.checkpoints import default_name
from delaykit.errors import CheckpointError
from delaykit.modes.dialogue import (
    Conversation,
    DialogueOptions,
    DialogueSession,
    converse_file,
    words_from_pieces,
)

Chunk = tuple[int, np.ndarray]  # (sample rate, int16 samples [T]): what a streaming gr.Audio plays


class AgentBusy(RuntimeError):
    """Another visitor is talking to the agent."""


@dataclass
class LiveCall:
    """One live conversation: its session and everything heard and said so far."""

    session: DialogueSession
    input: LiveInput  # the microphone at the model's rate; orders the chunk being heard and the end
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # samples short of a frame
    heard: list[np.ndarray] = field(default_factory=list)  # user frames [frame_size]
    said: list[np.ndarray] = field(default_factory=list)  # agent frames [frame_size]
    pieces: list[tuple[float, str]] = field(default_factory=list)  # (time, text piece) of the agent


class DialogueApp:
    """The app's state: the model's conversation and the one live call it may hold."""

    def __init__(self, model: str = "default", seed: int | None = None):
        name = default_name("dialogue") if model == "default" else model
        loaded = delaykit.load(name, device="cpu")
        if loaded.mode != "dialogue":
            raise CheckpointError(f"{name}: a {loaded.mode} checkpoint cannot do dialogue")
        self.conversation: Conversation = loaded.conversation(DialogueOptions(seed=seed))
        self.sample_rate = self.conversation.codec.sample_rate
        self.frame_size = self.conversation.frame_size
        self._line = threading.Lock()  # held by the live call, or by a recording being answered

    # -- a recording ------------------------------------------------------------------------------------

    def answer_file(self, path: str | None) -> tuple[str | None, list[list]]:
        """(stereo WAV path, the agent's word rows) for the user recorded in ``path``."""
        if not path:
            return None, []
        if not self._line.acquire(blocking=False):
            raise AgentBusy("the agent is in a live conversation; try again when it ends")
        try:
            result = converse_file(self.conversation, path, self._new_wav("answer"))
        finally:
            self._line.release()
        return str(result.output_path), _rows(result.agent_words)

    # -- live -------------------------------------------------------------------------------------------

    def live_chunk(self, chunk: tuple[int, np.ndarray] | None, call: LiveCall | None
                   ) -> tuple[Chunk | None, list[list], LiveCall | None]:
        """Hear a microphone chunk; returns the agent's audio for the frames it completed, its words so far
        and the call (opened on the first chunk; None once the call has ended, so that a chunk arriving after
        the end is dropped and the next one opens a new call)."""
        if chunk is None:
            return None, [], call
        if call is None:
            if not self._line.acquire(blocking=False):
                raise AgentBusy("the agent is talking with someone else; try again in a moment")
            try:
                call = LiveCall(self.conversation.stream(1), LiveInput(self.sample_rate))
            except BaseException:
                self._line.release()
                raise
        with call.input.hearing(chunk) as samples:
            if samples is None:
                return None, self._words(call), None
            said = self._hear(call, samples)
        reply = None
        if said:
            reply = self.sample_rate, np.frombuffer(float_to_pcm16(np.concatenate(said)), dtype="<i2")
        return reply, self._words(call), call

    def _hear(self, call: LiveCall, samples: np.ndarray) -> list[np.ndarray]:
        """Step the call through every whole frame of its pending samples and ``samples`` [T]; the agent's
        frames [frame_size] said meanwhile."""
        audio = np.concatenate([call.pending, samples])  # [T']
        whole = audio.shape[0] // self.frame_size * self.frame_size
        said = []
        for start in range(0, whole, self.frame_size):
            frame = audio[start:start + self.frame_size]  # [frame_size]
            step = call.session.step(torch.from_numpy(np.ascontiguousarray(frame))[None])
            call.heard.append(frame)
            said.append(step.agent_pcm[0].cpu().numpy())
            call.said.append(said[-1])
            if step.text_pieces[0]:
                call.pieces.append((step.time[0], step.text_pieces[0]))
        call.pending = audio[whole:]
        return said

    def live_end(self, call: LiveCall | None) -> tuple[str | None, list[list], None]:
        """End the call (after the chunk being heard, if any): (stereo WAV of the call, the agent's word rows,
        None for the state). Ending an ended call gives nothing. The resampler's last samples join the
        partial frame, which the agent never hears."""
        if call is None:
            return None, [], None
        with call.input.ending() as tail:
            if tail is None:
                return None, [], None
            try:
                call.session.close()
            finally:
                self._line.release()
        if not call.heard:
            return None, [], None
        stereo = np.stack([np.concatenate(call.heard), np.concatenate(call.said)])  # [2, T]
        path = self._new_wav("call")
        write_audio(path, stereo, self.sample_rate)
        return str(path), self._words(call), None

    def _words(self, call: LiveCall) -> list[list]:
        return _rows(words_from_pieces(call.pieces, self.conversation.frame_duration))

    @staticmethod
    def _new_wav(stem: str) -> Path:
        return Path(tempfile.mkdtemp(prefix="delaykit-dialogue-app-")) / f"{stem}.wav"


def _rows(words: tp.Sequence[tp.Any]) -> list[list]:
    return [[round(w.start, 2), round(w.end, 2), w.text] for w in words]


def make_demo(model: str = "default") -> tp.Any:
    """The Blocks of the dialogue app for checkpoint ``model`` (``default``: the shipped dialogue model)."""
    import gradio as gr

    app = DialogueApp(model)

    def busy_to_error(function: tp.Callable) -> tp.Callable:
        def wrapped(*args: tp.Any) -> tp.Any:
            try:
                return function(*args)
            except AgentBusy as exc:
                raise gr.Error(str(exc)) from exc
        return wrapped

    streaming = can_stream_audio()

    def live_chunk(chunk: tp.Any, call: LiveCall | None) -> tuple:
        reply, rows, call = app.live_chunk(chunk, call)
        return (gr.skip() if reply is None or not streaming else reply), rows, call

    with gr.Blocks(title="delaykit dialogue") as demo:
        gr.Markdown(f"# delaykit full-duplex dialogue\nModel: `{model}`. The agent listens while it speaks: "
                    "talk over it, and it hears you. Times are seconds into the conversation.")
        with gr.Tab("Live"):
            if not can_stream_audio():
                gr.Markdown("**Live replies need ffmpeg on the server** (gradio streams audio through it): "
                            "install it and restart, or use the Recording tab.")
            call = gr.State(None, delete_callback=lambda c: app.live_end(c) if c is not None else None)
            mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="You")
            agent = gr.Audio(label="Agent", streaming=streaming, autoplay=True, type="numpy")
            live_words = gr.Dataframe(headers=["start", "end", "word"], label="Agent's words")
            recording = gr.File(label="Conversation (you left, agent right)")
            # One queue for the chunks and the stop, so that the stop comes after the chunks sent before it
            mic.stream(busy_to_error(live_chunk), [mic, call], [agent, live_words, call], stream_every=0.24,
                       time_limit=600, concurrency_limit=1, concurrency_id="live")
            mic.stop_recording(app.live_end, [call], [recording, live_words, call], concurrency_limit=1,
                               concurrency_id="live")
        with gr.Tab("Recording"):
            upload = gr.Audio(sources=["upload", "microphone"], type="filepath", label="You")
            button = gr.Button("Answer", variant="primary")
            answer = gr.Audio(label="Conversation (you left, agent right)", type="filepath")
            file_words = gr.Dataframe(headers=["start", "end", "word"], label="Agent's words")
            button.click(busy_to_error(app.answer_file), [upload], [answer, file_words], api_name="answer",
                         concurrency_limit=1)
    demo.dialogue_app = app  # for tests
    return demo
