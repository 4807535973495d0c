"""The ASR app: microphone streaming with words appearing live, file upload, word table, subtitle downloads.

``make_demo(model)`` builds the Blocks; ``delaykit app asr`` launches it (gradio is the optional extra ``app``). Every browser session gets its own
item of one batched recognition stream (:class:`delaykit.serve.scheduler.AsrScheduler`), so several tabs
recognise at once, each with exactly the words it would get alone; closing a tab frees its item at once
(Gradio's unload event: it keeps a closed session's state, and calls the state's delete callback, only an
hour later). The microphone's chunks are resampled as one signal, and Stop waits for the chunk being heard
(:mod:`delaykit.apps.live`).
"""

# Without ``from __future__ import annotations``: gradio passes a handler its ``gr.Request`` (whose session
# hash names the browser tab) only when it can evaluate the annotation, and ``gr`` is imported inside
# ``make_demo``.
import tempfile
import threading
import typing as tp
from dataclasses import dataclass
from pathlib import Path

import delaykit
from delaykit.apps.live import Chunk, LiveInput
from delaykit.audio import load_audio
from delaykit.formats import render
from delaykit.serve.scheduler import AsrScheduler, LocalSession
from delaykit.serve.server import ServeConfig

DOWNLOADS = ("srt", "vtt", "json")


def word_rows(words: tp.Sequence[tp.Any]) -> list[list]:
    return [[round(w.start, 2), round(w.end, 2), w.text] for w in words]


def transcript(words: tp.Sequence[tp.Any]) -> str:
    return " ".join(w.text for w in words)


def subtitle_files(words: tp.Sequence[tp.Any], stem: str = "transcript") -> list[str]:
    """The transcript in each download format, as files in a fresh temporary directory."""
    directory = Path(tempfile.mkdtemp(prefix="delaykit-asr-app-"))
    paths = []
    for name in DOWNLOADS:
        path = directory / f"{stem}.{name}"
        path.write_text(render(name, words), encoding="utf-8")
        paths.append(str(path))
    return paths


@dataclass
class LiveRecognition:
    """One microphone recording: its recognition session and its input."""

    session: LocalSession
    input: LiveInput

    def words(self) -> tuple[str, list[list]]:
        """(transcript, word rows) of what has been recognised so far."""
        return transcript(self.session.words), word_rows(self.session.words)


class AsrApp:
    """The app's state across sessions: the model, its scheduler and the sessions' recognition streams."""

    def __init__(self, model: str = "default", max_sessions: int = 8):
        name = "default-asr" if model == "default" else model
        self.model = delaykit.load(name, device="cpu")
        self.scheduler = AsrScheduler(self.model.transcriber(), max_sessions, ServeConfig.gather_seconds)
        self.sample_rate = self.scheduler.sample_rate
        self._recordings: dict[str, LiveRecognition] = {}  # the open recording of each browser session
        self._recordings_lock = threading.Lock()

    def transcribe_file(self, path: str | None) -> tuple[str, list[list], list[str]]:
        if not path:
            return "", [], []
        session = LocalSession(self.scheduler)
        try:
            session.feed(load_audio(path, self.sample_rate))
            words = session.finish()
        finally:
            session.close()
        return transcript(words), word_rows(words), subtitle_files(words, Path(path).stem)

    def stream_chunk(self, chunk: Chunk | None, live: LiveRecognition | None
                     ) -> tuple[str, list[list], LiveRecognition | None]:
        """Hear a microphone chunk: (transcript so far, word rows, the recording: opened on the first chunk;
        None once it has ended, so that a chunk arriving after the stop is dropped and the next one opens a
        new recording)."""
        if chunk is None:
            return "", [], live
        if live is None:
            live = LiveRecognition(LocalSession(self.scheduler), LiveInput(self.sample_rate))
        with live.input.hearing(chunk) as samples:
            if samples is None:
                return *live.words(), None
            live.session.feed(samples)
            live.session.poll()
            return *live.words(), live

    def stream_end(self, live: LiveRecognition | None) -> tuple[str, list[list], list[str], None]:
        """End the recording (after the chunk being heard, if any): (transcript, word rows, subtitle files,
        None for the state). Ending an ended recording gives nothing."""
        if live is None:
            return "", [], [], None
        with live.input.ending() as tail:
            if tail is None:
                return "", [], [], None
            try:
                live.session.feed(tail)
                words = live.session.finish()
            finally:
                live.session.close()
        return transcript(words), word_rows(words), subtitle_files(words), None

    def stream_closed(self, live: LiveRecognition | None) -> None:
        """The recording is abandoned (its tab went away): free its slot without waiting for its last words."""
        if live is None:
            return
        with self._recordings_lock:
            for tab in [tab for tab, kept in self._recordings.items() if kept is live]:
                del self._recordings[tab]
        with live.input.ending() as tail:
            if tail is not None:
                live.session.close()

    def track(self, tab: str, live: LiveRecognition | None) -> None:
        """Note ``live`` as the open recording of browser session ``tab`` (None, or an ended recording: it has
        none), so that :meth:`tab_closed` can free it."""
        with self._recordings_lock:
            if live is None or live.input.ended:
                self._recordings.pop(tab, None)
            else:
                self._recordings[tab] = live

    def tab_closed(self, tab: str) -> None:
        """Browser session ``tab`` went away: free its open recording's slot now."""
        with self._recordings_lock:
            live = self._recordings.pop(tab, None)
        self.stream_closed(live)


def make_demo(model: str = "default", max_sessions: int = 8) -> tp.Any:
    """The Blocks of the ASR app for checkpoint ``model`` (``default``: the shipped ASR model)."""
    import gradio as gr

    app = AsrApp(model, max_sessions)

    def hear(chunk: Chunk | None, live: LiveRecognition | None, request: gr.Request) -> tuple:
        text, rows, live = app.stream_chunk(chunk, live)
        app.track(request.session_hash, live)
        return text, rows, live

    def end(live: LiveRecognition | None, request: gr.Request) -> tuple:
        app.track(request.session_hash, None)
        return app.stream_end(live)

    def closed(request: gr.Request) -> None:
        app.tab_closed(request.session_hash)

    with gr.Blocks(title="delaykit ASR") as demo:
        gr.Markdown(f"# delaykit streaming ASR\nModel: `{model}`. Words appear as they are recognised; "
                    "times are seconds of your audio.")
        with gr.Tab("Microphone"):
            recording = gr.State(None, delete_callback=app.stream_closed)
            mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Speak")
            live_text = gr.Textbox(label="Transcript", lines=4)
            live_words = gr.Dataframe(headers=["start", "end", "word"], label="Words")
            live_files = gr.File(label="Download", file_count="multiple")
            mic.stream(hear, [mic, recording], [live_text, live_words, recording], stream_every=0.5,
                       time_limit=3600)
            mic.stop_recording(end, [recording], [live_text, live_words, live_files, recording])
        with gr.Tab("File"):
            upload = gr.Audio(sources=["upload"], type="filepath", label="Audio file")
            button = gr.Button("Transcribe", variant="primary")
            file_text = gr.Textbox(label="Transcript", lines=4)
            file_words = gr.Dataframe(headers=["start", "end", "word"], label="Words")
            file_files = gr.File(label="Download", file_count="multiple")
            button.click(app.transcribe_file, [upload], [file_text, file_words, file_files], api_name="transcribe")
        demo.unload(closed)  # the tab went away (the state's delete callback comes an hour later)
    demo.asr_app = app  # for tests and shutdown
    return demo
