"""What every driver session shares: the codec's and the generator's streaming states, held together.

A session enters both states for its batch on creation (releasing what it entered if the second fails),
is a context manager, and ``close()`` drops them so the engine can serve the next session.
"""

from __future__ import annotations

import contextlib
import typing as tp

if tp.TYPE_CHECKING:  # pragma: no cover
    from ..codec.model import CodecModel
    from ..lm.generate import LMGenerator


class EngineSession:
    """Base of the driver sessions (ASR, TTS, dialogue)."""

    def __init__(self, codec: CodecModel, generator: LMGenerator, batch_size: int):
        self.closed = False
        with contextlib.ExitStack() as contexts:  # on an error, the states entered so far are released
            contexts.enter_context(codec.streaming(batch_size))
            contexts.enter_context(generator.streaming(batch_size))
            self._contexts = contexts.pop_all()

    def __enter__(self) -> tp.Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the streaming states (the engine can then serve another session)."""
        if not self.closed:
            self.closed = True
            self._contexts.close()
