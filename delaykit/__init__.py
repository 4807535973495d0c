"""delaykit: a streaming multi-task speech toolkit.

One engine (the Mimi neural codec plus a Moshi-style multi-stream language model) steps once per 80 ms
frame; shifting the text stream ahead of the audio gives text-to-speech, behind it speech-to-text, and
beside two audio streams full-duplex dialogue.

Importing the package is cheap: torch and the models load only when a submodule that needs them is
imported.
"""

from __future__ import annotations

import typing as tp

__version__ = "0.1.0"

__all__ = ["__version__", "load"]

if tp.TYPE_CHECKING:  # pragma: no cover
    from .api import Model


def load(name_or_path: str = "default", device: str = "auto", dtype: tp.Any = None,
         mode: str | None = None) -> Model:
    """Load a checkpoint (``"default"``, a directory, or a hub repo id) as a :class:`delaykit.api.Model`
    with ``transcribe``/``synthesize``/``converse`` and their streaming forms; ``mode`` (``asr``, ``tts``,
    ``dialogue``) reads it as another mode than its ``model_type`` where its streams allow."""
    import torch

    from .api import load as load_model

    return load_model(name_or_path, device=device, dtype=dtype or torch.float32, mode=mode)
