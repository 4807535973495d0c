"""The TTS app: type or paste a script, hear it while it is generated, then get the WAV and each word's time.

``make_demo(model)`` builds the Blocks; ``delaykit app tts`` launches it (gradio is the optional extra ``app``).
A model with named voices (``delaykit.voice``) gets a voice menu and pitch and speaking-rate sliders.
Audio reaches the browser in chunks of about half a second as the model makes it (a streaming ``gr.Audio``,
which needs ffmpeg: without it the audio appears once complete); the word table grows as words are spoken, and
the whole WAV follows, in a player that shows each word as a subtitle while it is heard (a streamed player
shows none). Several browser sessions speak at once: each synthesis is an item of one batched stream
(:class:`delaykit.modes.tts_scheduler.SynthesisScheduler`, ``max_sessions`` items), stepped together by one
worker, each getting exactly the speech it would get alone (the same tokens; audio to within float rounding);
sessions asking for another temperature take turns with the running batch. A tab closed while its speech is
generated (Gradio's unload event) frees its item at once.
"""

# Without ``from __future__ import annotations``: gradio passes a handler its ``gr.Request`` (whose session
# hash names the browser tab) only when it can evaluate the annotation, and ``gr`` is imported inside
# ``make_demo``.
import tempfile
import threading
import typing as tp
from pathlib import Path

import numpy as np

import delaykit
from delaykit.apps import can_stream_audio
from delaykit.audio import float_to_pcm16, write_audio
from delaykit.checkpoints import default_name
from delaykit.errors import CheckpointError
from delaykit.modes.script import parse_turns
from delaykit.modes.tts import AudioFrame, SpokenWord, SynthesisOptions, word_times
from delaykit.modes.tts_scheduler import SynthesisScheduler

Chunk = tuple[int, np.ndarray]  # (sample rate, int16 samples [T]): what a streaming gr.Audio plays


class TtsApp:
    """The app's state across sessions: the model and the scheduler that steps every session's synthesis."""

    def __init__(self, model: str = "default", chunk_seconds: float = 0.48, max_sessions: int = 8):
        name = default_name("tts") if model == "default" else model
        self.model = delaykit.load(name, device="cpu")
        if self.model.mode != "tts":
            raise CheckpointError(f"{name}: a {self.model.mode} checkpoint cannot do tts")
        self.sample_rate = self.model.sample_rate
        probe = self.model.synthesizer()
        self.voices = probe.voice_names  # empty for a model without named voices
        self.default_voice = probe.voice_choice() if self.voices else None
        self.chunk_seconds = chunk_seconds
        self.max_sessions = max_sessions
        self.scheduler = SynthesisScheduler(max_sessions)

    def speak(self, script: str, seed: float | None = None, temperature: float = 0.6, pace: float = 0.0,
              voice: str | None = None, pitch: float | None = None, rate: float | None = None,
              stop: threading.Event | None = None) -> tp.Iterator[tuple[Chunk | None, list[list], str | None]]:
        """Yields (audio chunk, word rows so far, None) while generating, then (None, all word rows, WAV path).
        ``pace`` is added to the pause (PAD) logit: > 0 speaks more slowly, < 0 faster (about -2..2); ``voice``,
        ``pitch`` (-2..2) and ``rate`` (0.6-1.5) choose a named voice, for models that have them. Once ``stop``
        is set (the tab went away) the synthesis ends at the next frame, yielding nothing more."""
        named = {"voice": voice or None, "pitch": None if pitch is None else int(pitch),
                 "rate": None if rate is None else float(rate)} if self.voices else {}
        options = SynthesisOptions(seed=None if seed is None else int(seed), temperature=float(temperature),
                                   padding_bonus=float(pace), **named)
        synthesizer = self.model.synthesizer(options)
        items = parse_turns(script)  # TextError for a script without words
        frames: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        spoken: list[SpokenWord] = []
        chunk_samples = round(self.chunk_seconds * self.sample_rate)
        stop = stop or threading.Event()
        request = self.scheduler.submit(synthesizer, items, stop)
        try:
            for event in request.results():
                if isinstance(event, SpokenWord):
                    spoken.append(event)
                elif isinstance(event, AudioFrame):
                    if stop.is_set():
                        return
                    pcm = event.pcm.cpu().numpy()  # [frame_size]
                    frames.append(pcm)
                    pending.append(pcm)
                    if sum(p.shape[0] for p in pending) >= chunk_samples:
                        yield self._chunk(pending), self._rows(spoken, frames), None
                        pending = []
        finally:  # ended, or the caller stopped reading (the page went away): free the item now
            self.scheduler.cancel(request)
        if stop.is_set():
            return
        if pending:
            yield self._chunk(pending), self._rows(spoken, frames), None
        audio = np.concatenate(frames) if frames else np.zeros(0, np.float32)  # [T]
        path = Path(tempfile.mkdtemp(prefix="delaykit-tts-app-")) / "speech.wav"
        write_audio(path, np.frombuffer(float_to_pcm16(audio), dtype="<i2"), self.sample_rate)
        yield None, self._rows(spoken, frames), str(path)

    def close(self) -> None:
        """Stop the scheduler's worker and release the engine."""
        self.scheduler.close()

    def _chunk(self, pcm: list[np.ndarray]) -> Chunk:
        return self.sample_rate, np.frombuffer(float_to_pcm16(np.concatenate(pcm)), dtype="<i2")

    def _rows(self, spoken: list[SpokenWord], frames: list[np.ndarray]) -> list[list]:
        seconds = sum(f.shape[0] for f in frames) / self.sample_rate
        return [[round(w.start, 2), round(w.end, 2), w.text] for w in word_times(spoken, seconds)]


def word_subtitles(rows: list[list]) -> list[dict]:
    """Word rows ``[start, end, word]`` as the subtitles of a ``gr.Audio``: one cue per word."""
    return [{"text": word, "timestamp": [start, end]} for start, end, word in rows]


def read_script(path: str) -> str:
    """The text of an uploaded script file (UTF-8)."""
    return Path(path).read_text(encoding="utf-8")


def make_demo(model: str = "default", max_sessions: int = 8) -> tp.Any:
    """The Blocks of the TTS app for checkpoint ``model`` (``default``: the shipped TTS model), speaking for
    up to ``max_sessions`` browser sessions at once (more wait for a free item)."""
    import gradio as gr

    app = TtsApp(model, max_sessions=max_sessions)
    streaming = can_stream_audio()
    gone: dict[str, threading.Event] = {}  # per browser session that spoke: set when its tab goes away

    def speak(script: str, seed: float | None, temperature: float, pace: float, voice: str | None,
              pitch: float, rate: float, request: gr.Request) -> tp.Iterator[tuple]:
        stop = gone.setdefault(request.session_hash, threading.Event())
        for chunk, rows, path in app.speak(script, seed, temperature, pace, voice, pitch, rate,
                                             stop=stop):
            if path is None:  # a chunk (played now if gradio can stream it) and the words so far
                yield (chunk if streaming and chunk is not None else gr.skip()), rows, gr.skip(), gr.skip()
            else:  # the whole WAV with its words as subtitles: in a second player after a streamed one
                subtitled = gr.Audio(value=path, subtitles=word_subtitles(rows))
                yield (gr.skip(), rows, path, subtitled) if streaming else (subtitled, rows, path, gr.skip())

    def closed(request: gr.Request) -> None:
        stop = gone.pop(request.session_hash, None)
        if stop is not None:
            stop.set()
            app.scheduler.wake()  # its item is freed at the worker's next round

    with gr.Blocks(title="delaykit TTS") as demo:
        gr.Markdown(f"# delaykit streaming TTS\nModel: `{model}`. `<break time=\"0.5s\"/>` makes a pause. "
                    "Audio starts while the rest is still being generated.")
        script = gr.Textbox(label="Script", lines=6, value="Hello there. This is delaykit speaking.")
        upload = gr.UploadButton("Load a script (.txt)", file_types=[".txt"])
        upload.upload(read_script, upload, script, api_name="load_script")
        with gr.Row():
            seed = gr.Number(label="Seed (also picks the voice of a model without voice conditioning)", value=1,
                             precision=0)
            temperature = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Temperature")
            pace = gr.Slider(-2.0, 2.0, value=0.0, step=0.25, label="Pauses (> 0 slower, < 0 faster)")
        default = app.default_voice
        with gr.Row(visible=bool(app.voices)):  # models with named voices
            voice = gr.Dropdown(app.voices, value=default.voice if default else None, label="Voice")
            pitch = gr.Slider(-2, 2, value=(default.pitch or 0) if default else 0, step=1, label="Pitch")
            rate = gr.Slider(0.6, 1.5, value=(default.rate or 1.0) if default else 1.0, step=0.1,
                             label="Speaking rate")
        button = gr.Button("Speak", variant="primary")
        audio = gr.Audio(label="Speech", streaming=streaming, autoplay=True,
                         type="numpy" if streaming else "filepath")
        words = gr.Dataframe(headers=["start", "end", "word"], label="Words")
        replay = gr.Audio(label="Speech with word subtitles", type="filepath", interactive=False,
                          visible=streaming)
        wav = gr.File(label="Download WAV")
        button.click(speak, [script, seed, temperature, pace, voice, pitch, rate], [audio, words, wav, replay],
                     api_name="speak", concurrency_limit=max_sessions)
        demo.unload(closed)
    demo.tts_app = app  # for tests and shutdown
    return demo
