"""Gradio apps, one per mode: ``make_demo(model)`` factories; nothing launches at import.

Gradio plays streamed audio outputs only through ffmpeg (it re-encodes the chunks to AAC). Without ffmpeg on
the PATH the TTS app shows its audio once complete (the word table still grows live); ``can_stream_audio``
tells which. The dialogue app's live tab needs no ffmpeg: its page streams audio over a WebSocket itself.
"""

import shutil


def can_stream_audio() -> bool:
    """Whether gradio can stream audio to the browser here (it needs the ffmpeg executable)."""
    return shutil.which("ffmpeg") is not None
