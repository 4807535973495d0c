"""Live audio through sounddevice (PortAudio): the default microphone in whole 80 ms frames, and the speakers.

sounddevice is optional (``pip install 'delaykit[mic]'``, plus the PortAudio library, e.g. Debian's
``libportaudio2``); without it, or without a device, :func:`microphone_frames` and :class:`Speakers` raise
AudioError with what to install. Devices are opened at the model's rate (PortAudio resamples when the hardware
cannot), mono, float32. The microphone's callback thread queues blocks and the generator yields exact frames;
the speakers take frames with blocking writes, so a producer faster than real time is paced by playback.
"""

from __future__ import annotations

import queue
import typing as tp

import numpy as np

from .errors import AudioError


def _sounddevice(flag: str) -> tp.Any:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the module is there but PortAudio is not
        raise AudioError(f"{flag} needs sounddevice and PortAudio: pip install 'delaykit[mic]' and "
                         f"apt-get install libportaudio2 ({exc})") from exc
    return sounddevice


def microphone_frames(sample_rate: int, frame_size: int, seconds: float | None = None,
                      device: int | str | None = None) -> tp.Iterator[np.ndarray]:
    """Frames [frame_size] float32 from the microphone, until ``seconds`` of audio (forever when None)."""
    sounddevice = _sounddevice("--mic")
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


class Speakers:
    """The default output device, mono float32 at ``sample_rate``: ``play(pcm)`` queues samples [T] and returns
    once PortAudio has taken them; ``close()`` (or leaving the ``with`` block) lets the last ones play out."""

    def __init__(self, sample_rate: int, device: int | str | None = None) -> None:
        sounddevice = _sounddevice("--play")
        try:
            self.stream = sounddevice.OutputStream(samplerate=sample_rate, channels=1, dtype="float32",
                                                   device=device)
            self.stream.start()
        except Exception as exc:  # PortAudio reports every device problem its own way
            raise AudioError(f"cannot open the speakers ({exc})") from exc

    def play(self, pcm: np.ndarray) -> None:
        """Play samples [T] (clipped to [-1, 1], as a 16-bit file would hold them)."""
        self.stream.write(np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0).reshape(-1, 1))  # [T, 1]

    def close(self) -> None:
        self.stream.stop()  # waits for the queued samples
        self.stream.close()

    def __enter__(self) -> tp.Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
