"""Live audio from the default microphone, in whole 80 ms frames, through sounddevice (PortAudio).

sounddevice is optional (``pip install 'delaykit[mic]'``, plus the PortAudio library, e.g. Debian's
``libportaudio2``); without it, or without an input device, :func:`microphone_frames` raises AudioError with
what to install. The device is opened at the model's rate (PortAudio resamples when the hardware cannot),
mono, float32; a callback thread queues blocks and the generator yields exact frames.
"""

from __future__ import annotations

import queue
import typing as tp

import numpy as np

from .errors import AudioError


def microphone_frames(sample_rate: int, frame_size: int, seconds: float | None = None,
                      device: int | str | None = None) -> tp.Iterator[np.ndarray]:
    """Frames [frame_size] float32 from the microphone, until ``seconds`` of audio (forever when None)."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the module is there but PortAudio is not
        raise AudioError("--mic needs sounddevice and PortAudio: pip install 'delaykit[mic]' and "
                         f"apt-get install libportaudio2 ({exc})") from exc
    blocks: queue.Queue = queue.Queue()

    def on_audio(indata: np.ndarray, frames: int, time: tp.Any, status: tp.Any) -> None:
        blocks.put(np.array(indata[:, 0], dtype=np.float32))

    try:
        stream = sounddevice.InputStream(samplerate=sample_rate, channels=1, dtype="float32",
                                         blocksize=frame_size, device=device, callback=on_audio)
    except Exception as exc:  # PortAudio reports every device problem its own way
        raise AudioError(f"cannot open the microphone ({exc})") from exc
    limit = None if seconds is None else round(seconds * sample_rate)
    pending = np.zeros(0, np.float32)
    taken = 0
    with stream:  # starts the stream; stops and closes it however the generator ends
        while limit is None or taken < limit:
            pending = np.concatenate([pending, blocks.get()])
            while pending.shape[0] >= frame_size and (limit is None or taken < limit):
                yield pending[:frame_size]
                pending = pending[frame_size:]
                taken += frame_size
