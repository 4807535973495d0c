"""Writing output files atomically: a temporary file beside the target, renamed over it once complete.

A reader (or a Ctrl-C) never sees a half-written file. ``tempfile.mkstemp`` creates its file readable by the
owner only, so the finished file gets the mode a plain ``open(path, "w")`` would give it (0o666 less the
umask).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import DelaykitError


def default_file_mode() -> int:
    """0o666 less the process umask: the mode ``open(path, "w")`` gives a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 (newlines as given) to ``path`` via a temporary file and a rename."""
    path = Path(path)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise DelaykitError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(temporary, default_file_mode())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path
