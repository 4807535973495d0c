"""The dialogue app: a full-duplex conversation with the agent from the browser's microphone, or the agent's
answer to a recording.

``make_demo(model)`` builds the Blocks; ``delaykit app dialogue`` launches it (gradio is the optional extra
``app``).

Live tab: the page opens a WebSocket to ``/api/chat`` on the app's own server and speaks ``delaykit serve``'s
chat protocol (:mod:`delaykit.serve.speech`): an AudioWorklet captures the microphone at the model's rate and
sends an 80 ms frame of 16-bit PCM as soon as it fills, while every frame the agent says comes back at once
and plays through a second AudioWorklet's ring buffer; both directions run all the time, so the agent hears
you while it speaks and you can talk over it. The agent's text shows as it comes, and a canvas draws both
channels' levels over the last 10 s. The page's script is ``dialogue_live.js`` beside this module.

Why a WebSocket and not WebRTC: FastRTC, Gradio's WebRTC route, needs gradio 5 (>= 5.46, < 6) and a TURN
server past NATs, and this app runs on gradio 6; a WebSocket needs neither, reuses the chat server's code and
protocol as they are (``delaykit serve`` clients and this page are interchangeable), and over TCP it never
drops a frame, which the model would hear as a gap. Why the same server: the WebSocket route is added to the
FastAPI app that ``launch`` builds (``DialogueBlocks.launch``), so the page connects to its own origin (no
second port to open, proxy or tell the page about, no cross-origin rules) and the route and the Gradio
handlers share one :class:`~delaykit.serve.chat.ChatScheduler`. Mounting the Blocks into an app of your own
instead (``gr.mount_gradio_app``)? Add ``demo.chat_route`` to that app's routes.

Every browser tab is one conversation in a slot of that scheduler: up to ``max_sessions`` talk at once,
stepped together in one batch and each answered exactly as it would be alone; one more is told that every
slot is in use. Stop, or closing the tab, closes the socket and frees the slot for the next visitor, who
starts a fresh conversation.

Recording tab: a file (or a take from the microphone) is answered offline in a slot of the same scheduler,
as ``converse_file`` would answer it.
"""

from __future__ import annotations

import tempfile
import typing as tp
from pathlib import Path

import numpy as np

import delaykit
from delaykit.audio import write_audio
from delaykit.checkpoints import default_name
from delaykit.errors import CheckpointError
from delaykit.modes.dialogue import Conversation, DialogueOptions
from delaykit.serve.chat import ChatScheduler, answer_recording
from delaykit.serve.scheduler import Busy
from delaykit.serve.server import ServeConfig
from delaykit.serve.speech import ChatServer

LIVE_SCRIPT = Path(__file__).with_name("dialogue_live.js")
LIVE_HTML = """
<div class="dk-live">
  <div class="dk-buttons">
    <button class="dk-start" type="button">Start</button>
    <button class="dk-stop" type="button" disabled>Stop</button>
  </div>
  <p class="dk-status" role="status">Press Start and allow the microphone; use headphones, or the agent hears
  itself.</p>
  <canvas class="dk-levels" width="960" height="200" aria-label="Levels: you and the agent"></canvas>
  <div class="dk-text" aria-label="Agent's text"></div>
</div>
"""
LIVE_CSS = """
.dk-live { display: flex; flex-direction: column; gap: 8px; }
.dk-buttons button { padding: 8px 24px; margin-right: 8px; border-radius: 6px; border: 1px solid #999;
  font-size: 16px; cursor: pointer; }
.dk-start { background: #f97316; color: white; }
.dk-buttons button:disabled { opacity: 0.4; cursor: default; }
.dk-levels { width: 100%; max-width: 960px; border: 1px solid #ccc; }
.dk-text { min-height: 4em; max-height: 12em; overflow-y: auto; padding: 8px; border: 1px solid #ccc;
  white-space: pre-wrap; }
"""


class AgentBusy(RuntimeError):
    """Every conversation slot is taken."""


class DialogueApp:
    """The app's state: the model's conversation, the scheduler of its live calls and the chat server that
    speaks to the pages."""

    def __init__(self, model: str = "default", seed: int | None = None, max_sessions: int = 4):
        name = default_name("dialogue") if model == "default" else model
        loaded = delaykit.load(name, device="cpu")
        if loaded.mode != "dialogue":
            raise CheckpointError(f"{name}: a {loaded.mode} checkpoint cannot do dialogue")
        self.conversation: Conversation = loaded.conversation(DialogueOptions(seed=seed))
        self.sample_rate = self.conversation.codec.sample_rate
        self.frame_size = self.conversation.frame_size
        self.scheduler = ChatScheduler(self.conversation, max_sessions, ServeConfig.gather_seconds)
        self.chat = ChatServer(self.scheduler, ServeConfig(max_sessions=max_sessions), model_name=model)

    def route(self) -> tp.Any:
        """The Starlette WebSocket route of the live tab (``/api/chat``)."""
        from delaykit.serve.asgi import route

        return route(self.chat)

    def answer_file(self, path: str | None) -> tuple[str | None, list[list]]:
        """(stereo WAV path, the agent's word rows) for the user recorded in ``path``."""
        if not path:
            return None, []
        try:
            answer = answer_recording(self.scheduler, path)
        except Busy as exc:
            raise AgentBusy(f"{exc} (live conversations take them too)") from exc
        out = self._new_wav("answer")
        write_audio(out, np.stack([answer.user, answer.agent]), self.sample_rate)  # [2, T]
        return str(out), _rows(answer.words)

    def close(self) -> None:
        self.scheduler.close()

    @staticmethod
    def _new_wav(stem: str) -> Path:
        return Path(tempfile.mkdtemp(prefix="delaykit-dialogue-app-")) / f"{stem}.wav"


def _rows(words: tp.Sequence[tp.Any]) -> list[list]:
    return [[round(w.start, 2), round(w.end, 2), w.text] for w in words]


def make_demo(model: str = "default", max_sessions: int = 4, seed: int | None = None) -> tp.Any:
    """The Blocks of the dialogue app for checkpoint ``model`` (``default``: the shipped dialogue model), with
    up to ``max_sessions`` conversations at once (live pages and recordings being answered); ``seed`` seeds
    each conversation's sampling."""
    import gradio as gr

    app = DialogueApp(model, seed=seed, max_sessions=max_sessions)

    class DialogueBlocks(gr.Blocks):
        """Blocks whose server also serves the live tab's WebSocket (``/api/chat``)."""

        def launch(self, *args: tp.Any, app_kwargs: dict | None = None, **kwargs: tp.Any) -> tp.Any:
            app_kwargs = dict(app_kwargs or {})
            app_kwargs["routes"] = [*app_kwargs.get("routes", []), self.chat_route]
            return super().launch(*args, app_kwargs=app_kwargs, **kwargs)

    def answer(path: str | None) -> tuple:
        try:
            return app.answer_file(path)
        except AgentBusy as exc:
            raise gr.Error(str(exc)) from exc

    with DialogueBlocks(title="delaykit dialogue") as demo:
        gr.Markdown(f"# delaykit full-duplex dialogue\nModel: `{model}`. The agent listens while it speaks: "
                    "talk over it, and it hears you. Times are seconds into the conversation.")
        with gr.Tab("Live"):
            gr.HTML(LIVE_HTML, css_template=LIVE_CSS, js_on_load=LIVE_SCRIPT.read_text(encoding="utf-8"))
        with gr.Tab("Recording"):
            upload = gr.Audio(sources=["upload", "microphone"], type="filepath", label="You")
            button = gr.Button("Answer", variant="primary")
            answer_audio = gr.Audio(label="Conversation (you left, agent right)", type="filepath")
            file_words = gr.Dataframe(headers=["start", "end", "word"], label="Agent's words")
            button.click(answer, [upload], [answer_audio, file_words], api_name="answer",
                         concurrency_limit=max_sessions)
    demo.chat_route = app.route()
    demo.dialogue_app = app  # for tests
    return demo
