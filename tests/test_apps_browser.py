"""The Gradio apps in a real headless Chromium: what a visitor's browser uploads, records, plays and shows.

ASR: an uploaded examples/speech.wav shows the words that offline recognition gives for the file; recorded
from the fake microphone, the app hears the file's audio and the page shows the words that offline
recognition gives for what it heard (not the file's words: the shipped model gives largely different words
for the same speech after another lead-in and another chain of resamplers); a tab closed while it records
frees its slot at once. TTS (a tiny model): the speech starts playing while the rest is still being generated,
the words are listed, and a second player shows each word as a subtitle while it is heard; two tabs speak at
once in one batch; a tab closed while its speech is generated stops the synthesis. Dialogue (a tiny model): the live tab streams both ways at once,
the agent's 80 ms frames coming back about as fast as the microphone's go up while the microphone is still
sending, its text shows and the level plot draws both channels; each tab gets a conversation of its own, and
closing one frees its slot.
Screenshots go to artifacts/browser/. Needs Chromium (Debian's ``chromium``) and the ``playwright`` package;
nothing is downloaded.
"""

from __future__ import annotations

import importlib
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

pytest.importorskip("gradio", reason="the apps are an optional extra: delaykit[app]")
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (delaykit[test])")
from browser_support import (
    PAGE_PROBES,
    aligned,
    chromium_arguments,
    chromium_path,
    media_state,
    microphone_file,
    page_state,
    screenshot,
    served,
    start_recording,
)

import delaykit
from delaykit.apps import can_stream_audio
from delaykit.apps.asr import AsrApp, transcript
from delaykit.apps.live import mono_float
from delaykit.audio import load_audio, resample

CHROMIUM = chromium_path()
if CHROMIUM is None:
    pytest.skip("browser tests need Chromium: apt-get install chromium, or set DELAYKIT_CHROMIUM",
                allow_module_level=True)

pytestmark = pytest.mark.browser
expect = sync_api.expect

SPEECH = Path(__file__).resolve().parents[1] / "examples" / "speech.wav"
MIC_RATE = 48_000  # Chromium captures at 48 kHz or 44.1 kHz; the fake device resamples the file as needed
LEAD, TAIL = 2.0, 0.5  # seconds of silence around the speech in the fake microphone's file
WAIT_MS = 60_000  # the longest any one thing may take to show up in the page


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(SPEECH, MIC_RATE)


@pytest.fixture(scope="module")
def browser(speech, tmp_path_factory):
    wav = microphone_file(speech, MIC_RATE, tmp_path_factory.mktemp("mic") / "microphone.wav", LEAD, TAIL)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_arguments(wav),
                                              timeout=WAIT_MS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(PAGE_PROBES)
    context.set_default_timeout(WAIT_MS)
    yield context.new_page()
    context.close()


def wait_until(page, condition, seconds: float, what: str, state=lambda: "") -> None:
    """Poll ``condition`` every 0.1 s; fail after ``seconds``, saying ``what`` and ``state()``. The page's
    event handlers run only while playwright waits, so this waits through the page."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what} {state()}"
        page.wait_for_timeout(100)


def visible_panel(page):
    """The selected tab's panel (hidden panels are not in the accessibility tree)."""
    return page.get_by_role("tabpanel")


# -- ASR -----------------------------------------------------------------------------------------------------


class HeardChunks:
    """Stands in for ``AsrApp.stream_chunk``: keeps each microphone chunk the app gets, then passes it on."""

    def __init__(self, stream_chunk):
        self.stream_chunk = stream_chunk
        self.chunks: list[tuple[int, np.ndarray]] = []

    def __get__(self, app, owner=None):
        def stream_chunk(chunk, session):
            if chunk is not None:
                self.chunks.append((chunk[0], np.array(chunk[1])))
            return self.stream_chunk(app, chunk, session)
        return stream_chunk

    def seconds(self) -> float:
        return sum(samples.shape[0] / rate for rate, samples in self.chunks)

    def mono(self, rate: int) -> np.ndarray:
        """Everything heard at ``rate``, as the app turns it into model input: one signal, resampled whole."""
        (chunk_rate,) = {r for r, _ in self.chunks}  # the browser's rate, the same for every chunk
        return resample(np.concatenate([mono_float(samples) for _, samples in self.chunks]), chunk_rate, rate)


@pytest.fixture(scope="module")
def asr_app():
    """(URL, microphone chunks heard, AsrApp) of the ASR app with the shipped model, served in this process."""
    from delaykit.apps.asr import make_demo

    with pytest.MonkeyPatch.context() as patch:
        heard = HeardChunks(AsrApp.stream_chunk)
        patch.setattr(AsrApp, "stream_chunk", heard)
        demo = make_demo("default", max_sessions=2)
        try:
            with served(demo) as url:
                yield url, heard, demo.asr_app
        finally:
            demo.asr_app.scheduler.close()


@pytest.fixture(scope="module")
def offline_asr():
    """The shipped ASR model for offline recognition (the app's engine is busy streaming)."""
    return delaykit.load("default-asr", device="cpu")


def test_asr_upload_shows_the_offline_words(page, asr_app, offline_asr):
    url, _, _ = asr_app
    page.goto(url)
    page.get_by_role("tab", name="File").click()
    panel = visible_panel(page)
    with page.expect_response(lambda response: "/gradio_api/upload" in response.url):
        panel.locator("input[type=file][accept*=audio]").set_input_files(SPEECH)
    expect(panel.get_by_label("Clear")).to_be_visible()  # the upload is in the player
    panel.get_by_role("button", name="Transcribe").click()
    expected = transcript(offline_asr.transcribe(SPEECH).words)  # `delaykit asr examples/speech.wav`
    assert expected
    expect(panel.get_by_role("cell", name="speech.srt")).to_be_visible()
    screenshot(page, "asr-upload")
    assert panel.get_by_label("Transcript", exact=True).input_value() == expected


def test_asr_microphone_shows_the_words_of_what_it_heard(page, asr_app, offline_asr, speech):
    url, heard, _ = asr_app
    page.goto(url)
    panel = visible_panel(page)
    textbox = panel.get_by_label("Transcript", exact=True)
    start_recording(page, panel)
    file_seconds = LEAD + speech.shape[0] / MIC_RATE + TAIL
    wait_until(page, lambda: heard.seconds() >= file_seconds, file_seconds + 30,
               "the app to hear the whole file",
               lambda: f"(heard {heard.seconds():.2f} s) {page_state(page, 'asr-microphone-failed')}")
    live = textbox.input_value()  # words shown while the recording goes on
    screenshot(page, "asr-microphone")
    panel.get_by_role("button", name="Stop").click()
    expect(panel.get_by_role("cell", name="transcript.srt")).to_be_visible()
    shown = textbox.input_value()

    received = heard.mono(MIC_RATE)
    offset, correlation = aligned(received, speech)
    assert correlation > 0.95, f"the app heard something else than the file (correlation {correlation:.3f})"
    assert 0 <= offset and offset + speech.shape[0] <= received.shape[0], "the speech was cut"
    expected = transcript(offline_asr.transcribe(heard.mono(offline_asr.sample_rate)).words)
    assert live and expected.startswith(live)
    assert shown == expected


def test_asr_closing_the_tab_frees_its_recording(browser, asr_app):
    """A tab closed while it records gives its slot of the batch back at once (gradio keeps a closed
    session's state for an hour, so the state's delete callback alone held the slot that long)."""
    url, _, app = asr_app
    metrics = app.scheduler.metrics
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(PAGE_PROBES)
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        page.goto(url)
        start_recording(page, visible_panel(page))
        wait_until(page, lambda: metrics.sessions == 1, 30, "the recording to take a slot",
                   lambda: page_state(page, "asr-close-failed"))
    finally:
        context.close()
    deadline = time.monotonic() + 15
    while metrics.sessions and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metrics.sessions == 0, "the closed tab still holds its slot"


# -- TTS -----------------------------------------------------------------------------------------------------

TTS_SCRIPT = "one two three four five six"


def tiny_model_app(tmp_path_factory, mode: str):
    """Serve the ``mode`` app (tts or dialogue) with a tiny random checkpoint, built the way
    tests/test_<mode>.py builds it; yields (URL, the Blocks)."""
    pytest.importorskip("moshi")  # the tiny checkpoints are built with the reference's constructors
    build_checkpoint = importlib.import_module(f"test_{mode}").build_checkpoint
    make_demo = importlib.import_module(f"delaykit.apps.{mode}").make_demo
    directory = build_checkpoint(tmp_path_factory.mktemp(f"{mode}-browser"))[0]
    demo = make_demo(str(directory))
    with served(demo) as url:
        yield url, demo


@pytest.fixture(scope="module")
def tts_served(tmp_path_factory):
    yield from tiny_model_app(tmp_path_factory, "tts")


@pytest.fixture(scope="module")
def tts_url(tts_served):
    return tts_served[0]


class HeldSpeech:
    """Stands in for ``TtsApp.speak``: after its first ``chunks`` chunks the synthesis waits for ``release``,
    so that a test sees what the page does while the rest of the speech is still being generated."""

    def __init__(self, speak, chunks: int):
        self.speak = speak
        self.chunks = chunks
        self.held = threading.Event()
        self.release = threading.Event()
        self.stop: threading.Event | None = None  # the tab's stop, as the page's handler passed it
        self.outputs: list[tuple] = []
        self.ended = threading.Event()  # the synthesis is over and the engine free

    def __get__(self, app, owner=None):
        def speak(*args, **kwargs):
            self.stop = kwargs.get("stop")
            try:
                for count, output in enumerate(self.speak(app, *args, **kwargs), 1):
                    self.outputs.append(output)
                    yield output
                    if count == self.chunks:
                        self.held.set()
                        self.release.wait(WAIT_MS / 1000)
            finally:
                self.ended.set()
        return speak


def test_tts_speech_plays_in_the_page(page, tts_url, monkeypatch):
    from delaykit.apps.tts import TtsApp

    streaming = can_stream_audio()  # else the speech comes whole at the end (gradio streams through ffmpeg)
    held = HeldSpeech(TtsApp.speak, chunks=5)  # of about 9: enough for the player to start on
    if streaming:
        monkeypatch.setattr(TtsApp, "speak", held)
    segments: list[str] = []  # HLS: a playlist of AAC segments, one or more per chunk the app yields
    page.on("request", lambda request: segments.append(request.url) if request.url.endswith(".aac") else None)
    page.goto(tts_url)
    page.get_by_label("Script").fill(TTS_SCRIPT)
    page.get_by_role("button", name="Speak").click()
    wav_link = page.locator("a[href*='speech.wav']").first
    if streaming:  # the first chunks play while the synthesis is held before the rest
        try:
            wait_until(page, lambda: held.held.is_set() and media_state(page)["played"] > 0.3, 60,
                       "the first chunks to play while the rest is generated",
                       lambda: f"(held {held.held.is_set()}, {media_state(page)}, {len(segments)} segments) "
                               f"{page_state(page, 'tts-streaming-failed')}")
            assert wav_link.count() == 0, "the WAV was ready before the speech played"
            screenshot(page, "tts-streaming")
        finally:
            held.release.set()
    wait_until(page, lambda: media_state(page)["played"] > 0.5, 60, "the speech to play")
    expect(wav_link).to_be_attached()
    audio, rate = soundfile.read(io.BytesIO(page.request.get(wav_link.get_attribute("href")).body()))
    seconds = audio.shape[0] / rate
    wait_until(page, lambda: media_state(page)["played"] >= seconds - 0.3, seconds + 30,
               "the whole speech to play",
               lambda: f"(played {media_state(page)['played']:.2f} s of {seconds:.2f} s)")
    screenshot(page, "tts")
    if can_stream_audio():  # streamed in chunks as generated, not played from the finished file
        assert len(segments) >= 2, segments
    words = page.get_by_role("grid", name="Words").get_by_role("gridcell")
    assert [text.strip() for text in words.all_inner_texts()][2::3] == TTS_SCRIPT.split()
    # The whole speech in a player that shows each word while it is heard (after a streamed player, a second)
    player = page.get_by_test_id("waveform-Speech with word subtitles" if streaming else "waveform-Speech")
    player.get_by_role("button", name="Play", exact=True).click()
    subtitles = player.get_by_test_id("subtitle-display")
    shown: list[str] = []
    deadline = time.monotonic() + seconds + 10
    while len(shown) < len(TTS_SCRIPT.split()) and time.monotonic() < deadline:
        text = subtitles.inner_text().strip()
        if text and (not shown or shown[-1] != text):
            shown.append(text)
        page.wait_for_timeout(100)
    screenshot(page, "tts-subtitles")
    assert len(shown) >= 4 and shown == TTS_SCRIPT.split()[:len(shown)], f"the subtitles showed {shown}"


def test_tts_closing_the_tab_stops_its_synthesis(browser, tts_url, monkeypatch):
    """A tab closed while its speech is generated stops the synthesis, which frees its item of the batch."""
    from delaykit.apps.tts import TtsApp

    held = HeldSpeech(TtsApp.speak, chunks=2)
    monkeypatch.setattr(TtsApp, "speak", held)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        page.goto(tts_url)
        page.get_by_label("Script").fill(TTS_SCRIPT)
        page.get_by_role("button", name="Speak").click()
        wait_until(page, held.held.is_set, 60, "the synthesis to start")
    finally:
        context.close()
    try:
        deadline = time.monotonic() + 15
        while not (held.stop is not None and held.stop.is_set()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert held.stop is not None and held.stop.is_set(), "the closed tab did not stop its synthesis"
    finally:
        held.release.set()
    assert held.ended.wait(30)
    assert all(path is None for _, _, path in held.outputs), "the synthesis went on to the end"


def test_tts_two_tabs_speak_at_once(browser, tts_served):
    """Two tabs speaking at once are items of one batch (some model steps carry both), and each tab gets its
    own words and WAV."""
    _, demo = tts_served
    scheduler = demo.tts_app.scheduler
    scripts = [" ".join(["one two three four five six"] * 4), " ".join(["seven eight nine ten"] * 5)]
    contexts = [browser.new_context(viewport={"width": 1280, "height": 900}) for _ in scripts]
    try:
        pages = [context.new_page() for context in contexts]
        for page, script in zip(pages, scripts, strict=True):
            page.set_default_timeout(WAIT_MS)
            page.goto(tts_served[0])
            page.get_by_label("Script").fill(script)
        for page in pages:
            page.get_by_role("button", name="Speak").click()
        for index, (page, script) in enumerate(zip(pages, scripts, strict=True)):
            expect(page.locator("a[href*='speech.wav']").first).to_be_attached(timeout=WAIT_MS)
            words = page.get_by_role("grid", name="Words").get_by_role("gridcell")
            assert [text.strip() for text in words.all_inner_texts()][2::3] == script.split()
            screenshot(page, f"tts-tab-{index + 1}-of-2")
    finally:
        for context in contexts:
            context.close()
    assert scheduler.metrics.max_batch == 2, scheduler.metrics


# -- dialogue ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dialogue_app(tmp_path_factory):
    """(URL, DialogueApp) of the dialogue app with a tiny random model and two conversation slots."""
    pytest.importorskip("moshi")  # the tiny checkpoint is built with the reference's constructors
    from test_dialogue import build_checkpoint

    from delaykit.apps.dialogue import make_demo

    demo = make_demo(str(build_checkpoint(tmp_path_factory.mktemp("dialogue-browser"))[0]), max_sessions=2)
    try:
        with served(demo) as url:
            yield url, demo.dialogue_app
    finally:
        demo.dialogue_app.close()


def chat_state(page) -> dict:
    """The live tab's counters (window.__delaykitChat): frames sent and received, with their times (ms)."""
    return page.evaluate("() => window.__delaykitChat")


def start_call(page, url: str, name: str) -> None:
    """Open the app in ``page`` and press Start; wait for the agent's first frame."""
    page.goto(url)
    page.get_by_role("button", name="Start").click()
    wait_until(page, lambda: chat_state(page)["received"] > 0, 60, "the agent's first frame",
               lambda: f"({chat_state(page)}) {page_state(page, f'{name}-failed')}")


PLOT_COLUMNS = """
() => {  // how many pixel columns of the level plot hold each channel's curve (blue: you, red: agent)
  const canvas = document.querySelector('.dk-levels');
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const you = new Set(), agent = new Set();
  for (let i = 0; i < pixels.length; i += 4) {
    const [r, g, b] = [pixels[i], pixels[i + 1], pixels[i + 2]];
    const column = (i / 4) % canvas.width;
    if (b - r > 40 && b - g > 20) you.add(column);  // #1f77b4, or blended with the white background
    if (r - g > 60 && r - b > 60) agent.add(column);  // #d62728
  }
  return {you: you.size, agent: agent.size};
}
"""


def plotted_columns(page) -> dict:
    """How many pixel columns of the live tab's level plot show each channel (the legend takes about 30)."""
    return page.evaluate(PLOT_COLUMNS)


def frames_per_second(times: list[float], start: float, end: float) -> float:
    return sum(start <= t < end for t in times) / ((end - start) / 1000)


def test_dialogue_is_full_duplex_per_tab(browser, dialogue_app):
    """Both directions stream at once in 80 ms frames: the agent's frames keep coming (and playing) while the
    fake microphone is still sending the file; a second tab gets a conversation of its own in the same
    batch, a third is told every slot is taken, and closing a tab frees its slot."""
    url, app = dialogue_app
    metrics = app.scheduler.metrics
    contexts = []

    def new_page():
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(PAGE_PROBES)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        return context, context.new_page()

    try:
        _, first = new_page()
        start_call(first, url, "dialogue-first")
        first.wait_for_timeout(4_000)  # the fake microphone's file lasts 12 s: it is still sending
        state = chat_state(first)
        end = state["sentTimes"][-1]
        sent = frames_per_second(state["sentTimes"], end - 3_000, end)
        received = frames_per_second(state["receivedTimes"], end - 3_000, end)
        print(f"dialogue page: over the last 3 s, {sent:.1f} frames/s sent, {received:.1f} frames/s received, "
              f"{state['underruns']} player underruns, {state['pieces']} text pieces")
        assert sent > 10, f"the microphone sent {sent:.1f} frames/s (12.5 expected)"
        assert received > 0.8 * sent, f"the agent answered {received:.1f} of {sent:.1f} frames/s"
        expect(first.get_by_role("button", name="Stop")).to_be_enabled()
        assert state["pieces"] > 0, "no agent text came"  # the tiny model's text is nonsense, but it comes
        expect(first.get_by_label("Agent's text")).not_to_be_empty()
        columns = plotted_columns(first)  # over 4 s, both curves span about 50 frames of the plot's 125
        assert columns["you"] > 200 and columns["agent"] > 200, f"the level plot shows {columns} columns"
        screenshot(first, "dialogue-live")

        second_context, second = new_page()
        start_call(second, url, "dialogue-second")
        assert metrics.sessions == 2
        before = chat_state(first)["received"]
        second.wait_for_timeout(2_000)
        assert chat_state(first)["received"] - before > 12 and chat_state(second)["received"] > 12
        _, third = new_page()
        third.goto(url)
        third.get_by_role("button", name="Start").click()
        expect(third.locator(".dk-status")).to_contain_text("no call: all 2 sessions are in use")
        screenshot(third, "dialogue-busy")

        second_context.close()  # closing the tab closes its socket: its slot is free again
        wait_until(first, lambda: metrics.sessions == 1, 10, "the closed tab's slot to be freed")
        start_call(third, url, "dialogue-third")
        assert metrics.sessions == 2 and metrics.max_batch == 2
        first.get_by_role("button", name="Stop").click()
        wait_until(first, lambda: metrics.sessions == 1, 10, "the stopped call's slot to be freed")
        screenshot(first, "dialogue-stopped")
    finally:
        for context in contexts:
            context.close()
