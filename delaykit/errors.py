"""Errors that delaykit raises for bad input, so front ends can report them without a traceback.

Everything the user can cause (an unreadable file, a corrupt checkpoint, invalid text) raises a subclass of
:class:`DelaykitError` whose message names the offending file or value. The CLI turns these into a one-line
``Error: ...`` and exit status 1; programming errors keep their usual exceptions and tracebacks.
"""

from __future__ import annotations


class DelaykitError(Exception):
    """Base class of every error caused by user input (files, text, options)."""


class AudioError(DelaykitError):
    """Audio that cannot be read, is empty, or holds non-finite samples."""


class CheckpointError(DelaykitError):
    """A checkpoint directory, weights file or tokenizer that is missing, corrupt or not allowed."""


class TextError(DelaykitError):
    """Text input that is empty or not valid UTF-8."""
