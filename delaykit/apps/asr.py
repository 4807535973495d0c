"""The ASR app: microphone streaming with words appearing live, file upload, word table, subtitle downloads.

``make_demo(model)`` builds the Blocks; ``delaykit app asr`` launches it (gradio is the optional extra ``app``). Every browser session gets its own
item of one batched recognition stream (:class:`delaykit.serve.scheduler.AsrScheduler`), so several tabs
recognise at once, each with exactly the words it would get alone; closing a tab frees its item.
"""

from __future__ import annotations

import tempfile
import typing as tp
from pathlib import Path

import numpy as np

import delaykit
from delaykit.audio import downmix, load_audio, resample
from delaykit.formats import render
from delaykit.serve.scheduler import AsrScheduler, LocalSession

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


def to_model_rate(sample_rate: int, samples: np.ndarray, target: int) -> np.ndarray:
    """A Gradio audio chunk (int16 or float, mono or [T, C]) as mono float32 at ``target`` Hz."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    samples = samples.astype(np.float32)
    if samples.ndim == 2:
        samples = downmix(samples.T)
    return resample(samples, sample_rate, target) if sample_rate != target else samples


class AsrApp:
    """The app's state across sessions: the model, its scheduler and the sessions' recognition streams."""

    def __init__(self, model: str = "default", max_sessions: int = 8):
        name = "default-asr" if model == "default" else model
        self.model = delaykit.load(name, device="cpu")
        self.scheduler = AsrScheduler(self.model.transcriber(), max_sessions)
        self.sample_rate = self.scheduler.sample_rate

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

    def stream_chunk(self, chunk: tuple[int, np.ndarray] | None, session: LocalSession | None
                     ) -> tuple[str, list[list], LocalSession | None]:
        if chunk is None:
            return "", [], session
        if session is None:
            session = LocalSession(self.scheduler)
        rate, samples = chunk
        session.feed(to_model_rate(rate, samples, self.sample_rate))
        words = session.poll()
        return transcript(words), word_rows(words), session

    def stream_end(self, session: LocalSession | None) -> tuple[str, list[list], list[str], None]:
        if session is None:
            return "", [], [], None
        try:
            words = session.finish()
        finally:
            session.close()
        return transcript(words), word_rows(words), subtitle_files(words), None


def make_demo(model: str = "default", max_sessions: int = 8) -> tp.Any:
    """The Blocks of the ASR app for checkpoint ``model`` (``default``: the shipped ASR model)."""
    import gradio as gr

    app = AsrApp(model, max_sessions)
    with gr.Blocks(title="delaykit ASR") as demo:
        gr.Markdown(f"# delaykit streaming ASR\nModel: `{model}`. Words appear as they are recognised; "
                    "times are seconds of your audio.")
        with gr.Tab("Microphone"):
            session = gr.State(None, delete_callback=lambda s: s.close() if s is not None else None)
            mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Speak")
            live_text = gr.Textbox(label="Transcript", lines=4)
            live_words = gr.Dataframe(headers=["start", "end", "word"], label="Words")
            live_files = gr.File(label="Download", file_count="multiple")
            mic.stream(app.stream_chunk, [mic, session], [live_text, live_words, session], stream_every=0.5,
                       time_limit=3600)
            mic.stop_recording(app.stream_end, [session], [live_text, live_words, live_files, session])
        with gr.Tab("File"):
            upload = gr.Audio(sources=["upload"], type="filepath", label="Audio file")
            button = gr.Button("Transcribe", variant="primary")
            file_text = gr.Textbox(label="Transcript", lines=4)
            file_words = gr.Dataframe(headers=["start", "end", "word"], label="Words")
            file_files = gr.File(label="Download", file_count="multiple")
            button.click(app.transcribe_file, [upload], [file_text, file_words, file_files], api_name="transcribe")
    demo.asr_app = app  # for tests and shutdown
    return demo
