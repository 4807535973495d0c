"""Helpers for driving the Gradio apps in a real headless Chromium (tests/test_apps_browser.py).

The browser is Debian's ``chromium`` (or ``$DELAYKIT_CHROMIUM``) launched through the ``playwright``
package, never a browser that playwright downloads. Its microphone is Chromium's fake capture device playing
a WAV file, and autoplay needs no user gesture. Every page runs :data:`PAGE_PROBES` first: microphones open
without the browser's voice processing (echo cancellation, noise suppression and gain control would reshape
the file's audio, so the server would not hear the file), every audio or video element reports its playback
to ``window.__media``, and console errors are kept in ``window.__problems`` for failure messages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import typing as tp
from pathlib import Path

import numpy as np

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"
CHROMIUM_NAMES = ("chromium", "chromium-browser")

PAGE_PROBES = """
(() => {
  const problems = window.__problems = [];  // console errors and warnings, uncaught errors
  for (const level of ['error', 'warn']) {
    const original = console[level].bind(console);
    console[level] = (...args) => { problems.push(level + ': ' + args.join(' ')); original(...args); };
  }
  window.addEventListener('error', (event) => problems.push('uncaught: ' + event.message));
  window.addEventListener('unhandledrejection', (event) => problems.push('unhandled: ' + event.reason));
  const media = window.__media = {playing: 0, played: 0};
  const watch = (element) => {
    if (element.__watched) return;
    element.__watched = true;
    element.addEventListener('playing', () => { media.playing += 1; });
    element.addEventListener('timeupdate', () => {
      media.played = Math.max(media.played, element.currentTime);
    });
  };
  // Elements in the page, and detached ones (a waveform player's) as soon as something plays them.
  document.addEventListener('play', (event) => watch(event.target), true);
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function (...args) { watch(this); return play.apply(this, args); };
  const devices = navigator.mediaDevices;
  const getUserMedia = devices.getUserMedia.bind(devices);
  devices.getUserMedia = (constraints) => getUserMedia(constraints && constraints.audio ? {
    ...constraints,
    audio: {
      ...(typeof constraints.audio === 'object' ? constraints.audio : {}),
      echoCancellation: false, noiseSuppression: false, autoGainControl: false,
    },
  } : constraints);
})();
"""


def chromium_path() -> str | None:
    """The Chromium executable: ``$DELAYKIT_CHROMIUM``, else chromium or chromium-browser on PATH."""
    configured = os.environ.get("DELAYKIT_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_arguments(microphone_wav: Path) -> list[str]:
    """Command-line flags: the fake microphone plays ``microphone_wav`` once (then silence); autoplay on."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone_wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]


def microphone_file(speech: np.ndarray, sample_rate: int, path: Path, lead_seconds: float,
                    tail_seconds: float) -> Path:
    """Write the fake microphone's WAV: silence, ``speech`` [T], silence. Chromium starts playing the file
    when the microphone opens, a little before the page records, so the lead keeps the speech whole."""
    from delaykit.audio import write_audio

    lead = np.zeros(round(lead_seconds * sample_rate), np.float32)
    tail = np.zeros(round(tail_seconds * sample_rate), np.float32)
    return write_audio(path, np.concatenate([lead, speech.astype(np.float32), tail]), sample_rate)


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served(demo: tp.Any) -> tp.Iterator[str]:
    """Launch the Blocks ``demo`` on a free loopback port, in this process; yields its URL, then closes it."""
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                            quiet=True)
    try:
        yield url
    finally:
        demo.close()


def start_recording(page: tp.Any, panel: tp.Any, attempts: int = 3) -> None:
    """Press ``panel``'s Record button until the page really records: a chunk goes to the server within 5 s.

    Gradio's streaming microphone loads its WAV recorder after the page shows; a press before that leaves
    the button saying Stop with nothing recorded (the console says "TypeError: ... is not a constructor"),
    and then Stop and Record again work, as a person would do.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(attempts):
        try:
            with page.expect_request(lambda request: "/gradio_api/stream/" in request.url, timeout=5_000):
                panel.get_by_role("button", name="Record").click()
            return
        except PlaywrightTimeout:
            panel.get_by_role("button", name="Stop").click()
            panel.get_by_role("button", name="Record").wait_for()
    raise AssertionError(f"the page did not record after {attempts} presses of Record "
                         f"{page_state(page, 'record-failed')}")


def screenshot(page: tp.Any, name: str) -> Path:
    """Save the whole page as ``artifacts/browser/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def page_state(page: tp.Any, name: str) -> str:
    """For a failure message: the page's buttons and error messages, after a screenshot ``<name>.png``."""
    screenshot(page, name)
    buttons = [text.strip() for text in page.get_by_role("button").all_inner_texts() if text.strip()]
    errors = page.locator(".toast-body").all_inner_texts()
    problems = page.evaluate("() => window.__problems.slice(-10)")
    return f"(buttons {buttons}, errors {errors}, console {problems}, see artifacts/browser/{name}.png)"


def media_state(page: tp.Any) -> dict:
    """What :data:`PAGE_PROBES` saw: how many ``playing`` events, the furthest ``played`` time (s) of one
    element."""
    return page.evaluate("() => window.__media")


def aligned(received: np.ndarray, sent: np.ndarray) -> tuple[int, float]:
    """(offset, correlation): where ``sent`` [S] best lines up inside ``received`` [R] (``received[offset:]``
    starts with ``sent``; negative if ``received`` starts later), and their correlation over the overlap."""
    size = 1 << int(np.ceil(np.log2(received.shape[0] + sent.shape[0])))
    cross = np.fft.irfft(np.fft.rfft(received, size) * np.conj(np.fft.rfft(sent, size)), size)
    offset = int(np.argmax(cross))
    offset = offset if offset < size // 2 else offset - size
    a, b = (received[offset:], sent) if offset >= 0 else (received, sent[-offset:])
    overlap = min(a.shape[0], b.shape[0])
    return offset, float(np.corrcoef(a[:overlap], b[:overlap])[0, 1])
