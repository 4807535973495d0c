"""Synthetic speech corpora from libespeak-ng: varied voices, rates, pitches, levels and noise, with word times.

Each utterance is a generated sentence (:mod:`delaykit.data.sentences`) spoken by a random English voice
and variant (``VOICE+VARIANT``, as ``espeak-ng -v`` names them) at a random rate and pitch, brought down from
espeak's near-full-scale level to a random loudness, lightly augmented (white/pink noise at a random SNR, band
limiting like a phone line), resampled 22050 -> 24000 Hz and written as 16-bit mono WAV.

Synthesis calls the espeak-ng C library through ctypes (no process per utterance) and records its WORD events,
so every word gets exact times: a word starts where espeak starts speaking it and ends where the next word
starts (pauses after commas belong to the word before them); the last word ends where the speech energy ends.
``manifest.jsonl`` holds one line per utterance, ``{"path", "text", "voice", "rate", "pitch", "duration",
"alignments"}`` with paths relative to the manifest and ``alignments`` as ``[[word, [start, end],
"SPEAKER_MAIN"], ...]`` in seconds; beside each WAV a JSON file with the same stem holds ``{"alignments"}``
(the layout Kyutai's moshi-finetune reads), so the WAV + JSON pairs alone are a corpus too
(:mod:`delaykit.data.manifest` reads and checks both forms).

The ``heldout`` split uses voices and variants that the ``train`` split never does (and the held-out names and
places of the sentence generator), so evaluation measures generalisation to unseen speakers and words.
Synthesis is deterministic given the seed: each utterance draws its parameters from its own seeded RNG, and
espeak speaks every utterance from the same freshly initialized state (see :func:`speak_clean`), so the audio
does not depend on which worker process made it or what that process spoke before.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import json
import math
import os
import pickle
import re
import sys
import time
import typing as tp
import warnings
from dataclasses import asdict, dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from ..audio import resample, write_audio
from ..text_stream import TimedWord
from . import espeak_variants
from . import manifest as manifest_module
from .festival import FESTIVAL_TRAIN_VOICES, require_voices
from .festival_accents import ACCENT_VOICE_NAMES, ACCENT_VOICES
from .sentences import SentenceConfig, SentenceGenerator

ESPEAK_RATE = 22_050  # what espeak-ng's voices are built for; the engine reports its own rate on start-up
SPEAKER = "SPEAKER_MAIN"  # the speaker name of every alignment (moshi-finetune's name for the main voice)
# English voices that need no MBROLA database (the mb/* ones do, and it is not packaged).
# espeak-ng 1.51 has no voice *named* en-gb (only the language), so "en-gb+VARIANT" finds no voice by name
# and falls back to plain en-gb, as `espeak-ng -v en-gb+f2` does: en-gb speaks with one voice in every split.
TRAIN_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
                "en-us-nyc")
HELDOUT_VOICES = ("en-029",)
# Voice variants (files in espeak-ng-data/voices/!v); the robotic and demonic ones are left out.
TRAIN_VARIANTS = (
    "", "m1", "m2", "m3", "m4", "m5", "m7", "m8", "f1", "f2", "f3", "f5", "adam", "Alex", "Alicia",
    "Andy", "announcer", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "edward", "fast",
    "grandma", "grandpa", "iven", "iven2", "john", "kaukovalta", "klatt", "klatt2", "klatt3", "linda",
    "max", "michel", "norbert", "paul", "quincy", "rob", "robert", "shelby", "steph", "travis", "victor",
    "Annie", "Lee", "Mike", "Hugo", "Denis", "Gene", "Jacky", "Michael", "whisper",
)
HELDOUT_VARIANTS = ("m6", "f4", "anika", "steph2", "iven3", "klatt4", "Andrea", "Marco")


CLEAN = {"noise_prob": 0.0, "bandlimit_prob": 0.0, "reverb_prob": 0.0, "level_db": (-24.0, -20.0)}  # no augmentation


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesize and how to vary it."""

    hours: float = 1.0
    seed: int = 0
    split: str = "train"  # train | heldout
    sample_rate: int = 24_000
    rate: tuple[int, int] = (120, 260)  # espeak words per minute
    pitch: tuple[int, int] = (20, 80)
    level_db: tuple[float, float] = (-32.0, -16.0)  # target RMS in dBFS
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (15.0, 45.0)
    bandlimit_prob: float = 0.25
    # Room reverberation (a synthetic exponentially decaying impulse response, RT60 0.15-0.7 s). 0 leaves
    # corpora made before it existed byte-identical: no random number is drawn for it then.
    reverb_prob: float = 0.0
    # Share of utterances spoken by flite's kal / kal16 voices instead of espeak-ng, so models do not learn one
    # synthesizer (flite's slt, awb and rms are never used: they are kept for evaluation). 0 leaves earlier
    # corpora byte-identical.
    flite_prob: float = 0.0
    # Share of (the remaining) utterances spoken by Festival's kal / ked diphone voices; 0 as above.
    festival_prob: float = 0.0
    # Named voices ("en-us+f2", "flite:kal16", "festival:ked_diphone") to draw every utterance's voice from,
    # instead of the split's espeak-ng voices and variants and the shares above: a TTS corpus of a few voices.
    # Empty leaves earlier corpora byte-identical.
    voice_names: tuple[str, ...] = ()
    # The sentences' vocabulary: "wide" adds delaykit.data.lexicon's words, "open" also thousands of names and
    # places (delaykit.data.open_names; train split only); "base" leaves earlier corpora byte-identical.
    vocabulary: str = "base"
    # Share of (train, espeak-ng) utterances whose variant is a random one drawn for that utterance
    # (delaykit.data.espeak_variants) instead of a named training variant; 0 leaves earlier corpora
    # byte-identical.
    random_variant_prob: float = 0.0
    # Which random variants (a key of espeak_variants.SPANS): "named" keeps to the middle of the named
    # variants' span (dkrand), "wide" reaches all of it (dkwide).
    random_variant_span: str = "named"
    # Speed perturbation: each (train) utterance played faster by a factor drawn from [1, speed_up], which
    # raises its formants and pitch together (a shorter vocal tract: flite's and Festival's men towards women's
    # and children's voices) and shortens it, word times scaled to match. 1 leaves earlier corpora
    # byte-identical: no random number is drawn for it then.
    speed_up: float = 1.0
    # Share of (the remaining, train) utterances read by Festival's voices of other languages
    # (delaykit.data.festival_accents): phonemes for the codec's semantic encoder only, their rows marked
    # "phonemes_only". 0 leaves earlier corpora byte-identical: no random number is drawn for it then.
    accent_prob: float = 0.0
    workers: int = 2

    @property
    def voices(self) -> tuple[str, ...]:
        return HELDOUT_VOICES + TRAIN_VOICES if self.split == "heldout" else TRAIN_VOICES

    @property
    def variants(self) -> tuple[str, ...]:
        return HELDOUT_VARIANTS if self.split == "heldout" else TRAIN_VARIANTS


@dataclass
class Utterance:
    index: int
    text: str
    voice: str
    rate: int
    pitch: int
    seed: int


class EspeakError(RuntimeError):
    """libespeak-ng is missing, failed to start, or failed to speak a text."""


# ---------------------------------------------------------------------------------------------------------
# libespeak-ng through ctypes (the layout of espeak-ng 1.51's speak_lib.h, API revision 12)

LIBRARY_NAMES = ("libespeak-ng.so.1", "libespeak-ng.so", "libespeak-ng.1.dylib", "libespeak-ng.dylib")
AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: synthesize into the callback, return when done
INITIALIZE_PHONEME_EVENTS = 0x0001  # also report each phoneme (splits words espeak speaks as one, "in the")
INITIALIZE_DONT_EXIT = 0x8000  # report a missing espeak-ng-data instead of calling exit()
# Audio per callback: 0 = the library's default, as the espeak-ng command line uses. The buffer size changes
# the audio of some voices (klatt2, announcer, edward, ...), so any other value would break that identity.
BUFFER_MS = 0
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_PHONEME = 0, 1, 7  # espeak_EVENT_TYPE
PARAMETER_RATE, PARAMETER_PITCH = 1, 3  # espeak_PARAMETER
POS_CHARACTER = 1  # espeak_POSITION_TYPE
CHARS_UTF8 = 1
END_PAUSE = 0x1000  # espeakENDPAUSE: end with a sentence pause, as the espeak-ng command line does
PHONEME_SEPARATOR = ord("|") << 8  # espeak_TextToPhonemes: put '|' between phoneme names


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character offset of the word in the text
        ("length", ctypes.c_int),  # characters of the word (WORD events)
        ("audio_position", ctypes.c_int),  # ms into the audio (truncated)
        ("sample", ctypes.c_int),  # samples into the audio: audio_position at full resolution
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _VoiceSpec(ctypes.Structure):
    """espeak_VOICE, as a selector for espeak_SetVoiceByProperties."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_Event))


def _declare(lib: ctypes.CDLL) -> None:
    """Argument and result types of the functions we call."""
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_VoiceSpec)]
    lib.espeak_SetVoiceByProperties.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    lib.espeak_Info.restype = ctypes.c_char_p


_library: ctypes.CDLL | None = None


def load_library() -> ctypes.CDLL:
    """The espeak-ng shared library (loaded once per process); EspeakError when it is not installed."""
    global _library
    if _library is None:
        found = ctypes.util.find_library("espeak-ng")
        for name in LIBRARY_NAMES + ((found,) if found else ()):
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                continue
            _declare(lib)
            _library = lib
            break
        else:
            raise EspeakError("the espeak-ng C library (libespeak-ng.so.1) is not installed: "
                              "apt-get install espeak-ng (or libespeak-ng1)")
    return _library


def espeak_available() -> bool:
    """Whether libespeak-ng can be loaded."""
    try:
        load_library()
    except EspeakError:
        return False
    return True


@dataclass
class RawSpeech:
    """What espeak produced for one text: int16 samples and the events that mark words and phonemes."""

    samples: np.ndarray  # [T] int16
    sample_rate: int
    word_events: list[tuple[int, int, int]]  # (text_position (1-based characters), length, sample)
    phoneme_events: list[tuple[int, str]]  # (sample, phoneme name); names starting with "_" are pauses


class EspeakEngine:
    """libespeak-ng, initialized for synthesis into memory; one per process (see :func:`engine`)."""

    def __init__(self) -> None:
        self.lib = load_library()
        self._chunks: list[bytes] = []
        self._word_events: list[tuple[int, int, int]] = []
        self._phoneme_events: list[tuple[int, str]] = []
        self._callback = _SynthCallback(self._collect)  # kept referenced: espeak holds only the pointer
        self.private_data: Path | None = None  # set once random variants are in use
        self._initialize(None)

    def _initialize(self, data_path: Path | None) -> None:
        """(Re)start the library on ``data_path`` (None: the installed espeak-ng-data)."""
        path = None if data_path is None else str(data_path).encode()
        rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, path,
                                          INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}): is espeak-ng-data installed?")
        self.sample_rate = int(rate)
        self.lib.espeak_SetSynthCallback(self._callback)
        self.set_voice("en-us")  # loads the English dictionary once, so forked speakers start with it

    def data_dir(self) -> Path:
        """The espeak-ng-data directory the library runs on."""
        path = ctypes.c_char_p()
        self.lib.espeak_Info(ctypes.byref(path))
        return Path((path.value or b"").decode())

    def use_random_variants(self) -> None:
        """Move onto a private copy of espeak-ng-data that random variants can be written into (named voices
        sound exactly as before). Done once; corpora call it before their workers fork."""
        if self.private_data is None:
            self.private_data = espeak_variants.private_data_dir(self.data_dir())
            self._initialize(self.private_data)

    def _collect(self, wav, count: int, events) -> int:
        """espeak's callback: keep the samples and the WORD and PHONEME events; 0 = go on."""
        if wav and count > 0:
            self._chunks.append(ctypes.string_at(wav, 2 * count))
        index = 0
        while events[index].type != EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == EVENT_WORD:
                self._word_events.append((event.text_position, event.length, event.sample))
            elif event.type == EVENT_PHONEME:
                self._phoneme_events.append((event.sample, event.id.string.decode("utf-8", "replace")))
            index += 1
        return 0

    def set_voice(self, voice: str) -> None:
        """Select ``voice`` (``"en-gb+f3"``): by voice name, else by language, as ``espeak-ng -v`` does."""
        variant = voice.partition("+")[2]
        if espeak_variants.is_random_variant(variant):
            self.use_random_variants()
            assert self.private_data is not None
            espeak_variants.ensure_variant(self.private_data, variant)
        name = voice.encode("utf-8")
        if self.lib.espeak_SetVoiceByName(name) == 0:
            return
        selector = _VoiceSpec(languages=name)
        if self.lib.espeak_SetVoiceByProperties(ctypes.byref(selector)) != 0:
            raise EspeakError(f"espeak-ng has no voice {voice!r}")

    def synthesize(self, text: str, voice: str, rate: int, pitch: int) -> RawSpeech:
        """Speak ``text`` in this process. Each call changes the state the next one starts from, so corpora
        use :func:`speak_clean`, which speaks in a forked child."""
        self.set_voice(voice)
        self.lib.espeak_SetParameter(PARAMETER_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(PARAMETER_PITCH, int(pitch), 0)
        self._chunks, self._word_events, self._phoneme_events = [], [], []
        data = text.encode("utf-8")
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8 | END_PAUSE, None,
                                       None)
        self.lib.espeak_Synchronize()
        if status != 0:
            raise EspeakError(f"espeak_Synth failed (status {status}) on {text!r}")
        samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16)  # [T]
        return RawSpeech(samples, self.sample_rate, self._word_events, self._phoneme_events)

    def phoneme_count(self, word: str) -> int:
        """How many phonemes espeak gives ``word`` on its own (current voice)."""
        text = ctypes.c_char_p(word.encode("utf-8"))
        phonemes = self.lib.espeak_TextToPhonemes(ctypes.byref(text), CHARS_UTF8, PHONEME_SEPARATOR) or b""
        return len([p for p in re.split(rb"[|\s]+", phonemes) if p.strip(b"'%,=")])


_engine: EspeakEngine | None = None


def engine() -> EspeakEngine:
    """This process's espeak engine, initialized on first use."""
    global _engine
    if _engine is None:
        _engine = EspeakEngine()
    return _engine


# ---------------------------------------------------------------------------------------------------------
# Word times from espeak's events


def word_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets of the whitespace-separated words of ``text``."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def speech_span(samples: np.ndarray, sample_rate: int, frame_seconds: float = 0.005,
                floor_db: float = -40.0) -> tuple[int, int]:
    """First and one-past-last sample of the frames whose RMS is within ``floor_db`` of the loudest frame."""
    frame = max(1, round(frame_seconds * sample_rate))
    count = samples.shape[0] // frame
    if count == 0:
        return 0, samples.shape[0]
    frames = samples[: count * frame].astype(np.float64).reshape(count, frame)
    rms = np.sqrt(np.mean(frames**2, axis=1))  # [count]
    loud = np.nonzero(rms > rms.max() * 10 ** (floor_db / 20))[0]
    if loud.size == 0:
        return 0, samples.shape[0]
    return int(loud[0]) * frame, min(samples.shape[0], (int(loud[-1]) + 1) * frame)


def _event_words(spans: list[tuple[int, int]], word_events: list[tuple[int, int, int]]) -> dict[int, int]:
    """Word index -> start sample, from the WORD events.

    espeak emits one WORD event per word it speaks, in order, but (1) adds events of length 0 that belong to
    no word (at some clause ends), (2) speaks some word pairs from its dictionary as one word ("in the",
    "for the", "that the"), with one event for both, and (3) places the second word of some other pairs
    ("that was") one character into the first. Hence: drop length-0 events, map the rest by text position,
    and give an event that points at a word already taken to the word after it.
    """
    starts = [start for start, _ in spans]
    taken: dict[int, int] = {}
    last = -1
    for position, length, sample in word_events:
        if length <= 0:
            continue
        index = max(bisect.bisect_right(starts, position - 1) - 1, last + 1)
        if index >= len(spans):
            continue
        taken[index] = sample
        last = index
    return taken


def _split_merged(words: list[str], start: int, stop: int, phoneme_events: list[tuple[int, str]],
                  phoneme_count: tp.Callable[[str], int]) -> list[int]:
    """Start samples of ``words[1:]``, which espeak spoke as one word with ``words[0]`` in ``start..stop``.

    The words' own phoneme counts, taken from the end of the unit's phonemes, give where each later word
    starts ("in the" = I n D @: "the" starts at D). When the counts do not fit, the unit is shared out in
    proportion to letters.
    """
    phonemes = [sample for sample, name in phoneme_events if start <= sample < stop and not name.startswith("_")]
    counts = [phoneme_count(word) for word in words[1:]]
    firsts = len(phonemes) - np.cumsum(counts[::-1])[::-1]  # index of each later word's first phoneme
    if all(c > 0 for c in counts) and len(firsts) and firsts[0] >= 1:
        return [phonemes[int(i)] for i in firsts]
    letters = np.array([max(1, sum(ch.isalnum() for ch in word)) for word in words], dtype=np.float64)
    shares = np.cumsum(letters)[:-1] / letters.sum()
    return [int(start + share * (stop - start)) for share in shares]


def align_words(text: str, speech: RawSpeech, phoneme_count: tp.Callable[[str], int]) -> list[TimedWord]:
    """Each whitespace-separated word of ``text`` (punctuation attached) with its start and end in seconds.

    A word starts at its WORD event and ends where the next word starts, so a pause belongs to the word
    before it. The edges follow the speech energy (:func:`speech_span`): the first word starts where speech
    starts (espeak's first event is at sample 0, before the closure of a stop), the last word ends where it
    ends, never past the audio.
    """
    spans = word_spans(text)
    if not spans:
        return []
    words = [text[a:b] for a, b in spans]
    total = speech.samples.shape[0]
    speech_start, speech_end = speech_span(speech.samples, speech.sample_rate)
    taken = _event_words(spans, speech.word_events)
    taken.setdefault(0, 0)  # espeak's first WORD event is at sample 0
    known = sorted(taken)
    starts = [0] * len(words)
    for k, index in enumerate(known):
        following = known[k + 1] if k + 1 < len(known) else len(words)
        stop = taken[following] if following < len(words) else total
        starts[index] = taken[index]
        if following > index + 1:
            later = _split_merged(words[index:following], taken[index], stop, speech.phoneme_events, phoneme_count)
            starts[index + 1: following] = later
    starts = np.maximum.accumulate(np.minimum(starts, total)).tolist()  # in order, inside the audio
    ends = starts[1:] + [min(total, max(speech_end, starts[-1]))]
    starts[0] = min(max(starts[0], speech_start), ends[0])  # leading silence (a stop's closure) is no word
    rate = float(speech.sample_rate)
    return [TimedWord(word, start / rate, end / rate, SPEAKER) for word, start, end in zip(words, starts, ends)]


# ---------------------------------------------------------------------------------------------------------
# Speaking from a clean state


@dataclass
class Speech:
    """One text as espeak speaks it: clean float samples and each word's times."""

    samples: np.ndarray  # [T] float32 in [-1, 1]
    sample_rate: int
    words: list[TimedWord]
    phonemes: list[tuple[str, float]] = field(default_factory=list)  # (espeak phoneme name, start seconds)


def _speak_in_this_process(text: str, voice: str, rate: int, pitch: int) -> Speech:
    espeak = engine()
    raw = espeak.synthesize(text, voice, rate, pitch)
    words = align_words(text, raw, espeak.phoneme_count)
    phonemes = [(name, sample / raw.sample_rate) for sample, name in raw.phoneme_events]
    return Speech(raw.samples.astype(np.float32) / 32768.0, raw.sample_rate, words, phonemes)


def _call_in_child(function: tp.Callable, *args):
    """``function(*args)`` run in a forked child of this process; its result comes back pickled."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # espeak's own threads (it starts two, idle in synchronous mode) make Python 3.12+ warn about fork;
        # the child only speaks synchronously and never needs them.
        warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: never return into the caller's code
        code = 0
        try:
            os.close(read_end)
            try:
                payload = pickle.dumps((True, function(*args)), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent, raised there
                payload = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
        except BaseException:  # noqa: BLE001 - the child must reach os._exit; the parent sees no reply
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        raise EspeakError(f"the espeak-ng synthesis process died (wait status {status})")
    ok, value = pickle.loads(payload)
    if not ok:
        raise EspeakError(value)
    return value


def speak_clean(text: str, voice: str, rate: int, pitch: int) -> Speech:
    """Speak ``text`` from this process's freshly initialized espeak state, with word times.

    espeak-ng keeps synthesis state between texts (its pitch flutter phase, noise generator, filter
    memories), so the same text spoken twice in one process differs slightly, in samples and in length.
    Each text is therefore spoken in a forked child of the process that initialized the engine (and never
    speaks itself), which makes the audio identical to the espeak-ng command line's (``-v VOICE -s RATE
    -p PITCH``) whatever was spoken before. The fork costs ~5 ms a text: ~350x real time per core instead
    of ~1000x in-process, still faster than the command line (~260x).
    """
    engine()  # initialize here, once, so that every child starts from the same state
    if not hasattr(os, "fork"):  # e.g. Windows: in-process, deterministic only within a fresh process
        return _speak_in_this_process(text, voice, rate, pitch)
    return _call_in_child(_speak_in_this_process, text, voice, rate, pitch)


def espeak(text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    """Synthesize ``text``; float32 samples at :data:`ESPEAK_RATE` (see :func:`speak_clean` for word times)."""
    return speak_clean(text, voice, rate, pitch).samples


# ---------------------------------------------------------------------------------------------------------
# Utterances: level, augmentation, resampling


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))  # [n // 2 + 1]
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.shape[0]), 1.0))
    noise = np.fft.irfft(spectrum, n)  # [n]
    return noise / (noise.std() + 1e-12)


def _band_limit(x: np.ndarray, rate: int, low: float, high: float) -> np.ndarray:
    """Keep ``low``..``high`` Hz with smooth (raised-cosine, one octave wide) edges, by FFT."""
    spectrum = np.fft.rfft(x)  # [T // 2 + 1]
    freqs = np.fft.rfftfreq(x.shape[0], 1.0 / rate)
    octave_up = np.clip(np.log2(np.maximum(freqs, 1.0) / low) + 0.5, 0.0, 1.0)
    octave_down = np.clip(np.log2(high / np.maximum(freqs, 1.0)) + 0.5, 0.0, 1.0)
    gain = np.sin(0.5 * math.pi * octave_up) ** 2 * np.sin(0.5 * math.pi * octave_down) ** 2
    return np.fft.irfft(spectrum * gain, x.shape[0]).astype(np.float32)


def _reverberate(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` [T] in a random small room: dry sound plus its convolution with decaying noise (direct path first),
    same length and RMS (the reverberant tail past the end is cut, so word times stay valid)."""
    rt60 = rng.uniform(0.15, 0.7)  # seconds to decay by 60 dB
    t = np.arange(int(rt60 * rate)) / rate
    response = rng.standard_normal(t.shape[0]) * np.exp(-6.908 * t / rt60)  # ln(1000) = 6.908: -60 dB at rt60
    response[0] = 0.0
    response /= np.sqrt(np.sum(response**2)) + 1e-12
    size = 1 << int(np.ceil(np.log2(x.shape[0] + response.shape[0])))
    wet = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(response, size), size)[: x.shape[0]]  # [T]
    mix = rng.uniform(0.2, 0.6)
    y = (1.0 - mix) * x + mix * wet
    return y * (np.sqrt(np.mean(x**2)) / (np.sqrt(np.mean(y**2)) + 1e-12))


FLITE_TRAIN_VOICES = ("kal", "kal16")  # never slt, awb or rms: those are evaluation voices
FALLBACK_VOICE = "en-us"  # espeak-ng voice for the rare sentence flite or Festival cannot time


def speak_flite(utt: Utterance) -> Speech | None:
    """``utt`` spoken by a flite training voice at its rate (duration stretch 175 / wpm) and pitch (mean F0
    80-180 Hz over espeak's 20-80 pitch range), with word times and phonemes (flite's phones as espeak-ng's);
    None when flite's phones and the words' lexicon entries do not line up."""
    from .flite import flite_speech

    voice = utt.voice.removeprefix("flite:")
    if voice not in FLITE_TRAIN_VOICES:
        raise ValueError(f"{voice!r} is not a flite training voice {FLITE_TRAIN_VOICES}")
    options = ["--setf", f"duration_stretch={175 / utt.rate:.3f}",
               "--setf", f"int_f0_target_mean={80 + (utt.pitch - 20) * 100 / 60:.1f}"]
    try:
        samples, rate, timed, phonemes = flite_speech(utt.text, voice, options)
    except ValueError:
        return None
    words = [TimedWord(word, start, end, SPEAKER) for word, start, end in timed]
    return Speech(samples.astype(np.float32), rate, words, phonemes)


def speak_festival(utt: Utterance) -> Speech | None:
    """``utt`` spoken by a Festival training voice at its rate and pitch (as :func:`speak_flite`), with word
    times and phonemes; None when Festival's tokens and the words do not line up."""
    from .festival import festival_speech

    voice = utt.voice.removeprefix("festival:")
    if voice not in FESTIVAL_TRAIN_VOICES and voice not in ACCENT_VOICES:  # a wrong voice is a bug: never skipped
        raise ValueError(f"{voice!r} is not a Festival training voice {FESTIVAL_TRAIN_VOICES + ACCENT_VOICE_NAMES}")
    try:
        samples, rate, timed, phonemes = festival_speech(utt.text, voice, stretch=175 / utt.rate,
                                                        f0_mean=80 + (utt.pitch - 20) * 100 / 60)
    except ValueError:
        return None
    words = [TimedWord(word, start, end, SPEAKER) for word, start, end in timed]
    return Speech(samples.astype(np.float32), rate, words, phonemes)


@dataclass
class Rendered:
    """One utterance ready to write: audio at the corpus rate, word times, phonemes (flite's and Festival's
    phones renamed as espeak-ng's) and the voice that actually spoke (an espeak fallback replaces a flite or
    Festival voice that could not be timed)."""

    audio: np.ndarray  # [T] float32
    words: list[TimedWord]
    phonemes: list[tuple[str, float]]  # (espeak phoneme name, start seconds)
    voice: str


def speak_voice(utt: Utterance) -> tuple[Speech, str]:
    """``utt`` spoken by the synthesizer its voice names (``en-us+f2``, ``flite:kal16``,
    ``festival:ked_diphone``), and the voice that spoke: espeak-ng's en-us where flite or Festival cannot time
    the sentence."""
    speech = None
    if utt.voice.startswith("flite:"):
        speech = speak_flite(utt)
    elif utt.voice.startswith("festival:"):
        speech = speak_festival(utt)
    if speech is not None:
        return speech, utt.voice
    voice = FALLBACK_VOICE if ":" in utt.voice else utt.voice
    return speak_clean(utt.text, voice, utt.rate, utt.pitch), voice


def render(utt: Utterance, config: SynthConfig) -> Rendered:
    """Speech for one utterance at ``config.sample_rate``, levelled and augmented, with its word times and its
    phonemes.

    Level, noise and band limiting leave the times as they are, and so does resampling (times are in
    seconds); speed perturbation divides them by its factor; ends are kept inside the resampled audio.
    """
    rng = np.random.default_rng(utt.seed)
    speech, voice = speak_voice(utt)
    audio = speech.samples.astype(np.float64)  # [T] at the synthesizer's rate
    rms = math.sqrt(float(np.mean(audio**2))) + 1e-9
    audio *= 10 ** (rng.uniform(*config.level_db) / 20) / rms
    if config.reverb_prob and rng.random() < config.reverb_prob:
        audio = _reverberate(audio, speech.sample_rate, rng)
    if rng.random() < config.bandlimit_prob:
        audio = _band_limit(audio, speech.sample_rate, rng.uniform(150, 400), rng.uniform(3400, 7000))
    if rng.random() < config.noise_prob:
        noise = _pink_noise(rng, audio.shape[0]) if rng.random() < 0.5 else rng.standard_normal(audio.shape[0])
        speech_rms = math.sqrt(float(np.mean(audio**2))) + 1e-9
        audio = audio + noise * speech_rms * 10 ** (-rng.uniform(*config.snr_db) / 20)
    speed = rng.uniform(1.0, config.speed_up) if config.speed_up > 1.0 and config.split == "train" else 1.0
    source_rate = round(speech.sample_rate * speed)  # played faster: the samples read as speed x as many a second
    audio = resample(audio.astype(np.float32), source_rate, config.sample_rate)  # [T'] at 24 kHz
    peak = float(np.abs(audio).max())
    if peak > 0.99:
        audio *= 0.99 / peak
    duration = audio.shape[0] / config.sample_rate
    scale = speech.sample_rate / source_rate  # 1 / speed, exactly as the samples were read
    words = [TimedWord(w.text, min(w.start * scale, duration), min(w.end * scale, duration), w.speaker)
             for w in speech.words]
    phonemes = [(name, start * scale) for name, start in speech.phonemes if start * scale < duration]
    return Rendered(audio, words, phonemes, voice)


def alignments(words: tp.Sequence[TimedWord]) -> list[list]:
    """``[[word, [start, end], speaker], ...]`` with times in seconds rounded to milliseconds."""
    return [[w.text, [round(w.start, 3), round(w.end, 3)], w.speaker or SPEAKER] for w in words]


# ---------------------------------------------------------------------------------------------------------
# Corpora


def plan(config: SynthConfig, count: int, start: int = 0) -> list[Utterance]:
    """Utterances ``start .. start + count - 1``; a given index always gets the same text and voice."""
    sentence_seed = config.seed * 1_000_003 + (7 if config.split == "heldout" else 0)
    sentences = SentenceGenerator(SentenceConfig(seed=sentence_seed, split=config.split,
                                                 vocabulary=config.vocabulary))
    rng = np.random.default_rng([config.seed, 1 if config.split == "heldout" else 0])
    out = []
    for index in range(start + count):
        text = sentences.next()
        voice = str(rng.choice(config.voices))
        variant = str(rng.choice(config.variants))
        rate = int(rng.integers(config.rate[0], config.rate[1] + 1))
        pitch = int(rng.integers(config.pitch[0], config.pitch[1] + 1))
        seed = int(rng.integers(2**31))
        if config.random_variant_prob and config.split == "train" and rng.random() < config.random_variant_prob:
            variant = espeak_variants.random_variant_name(rng, config.random_variant_span)
        name = f"{voice}+{variant}" if variant else voice
        if config.flite_prob and config.split == "train" and rng.random() < config.flite_prob:
            name = f"flite:{FLITE_TRAIN_VOICES[int(rng.integers(len(FLITE_TRAIN_VOICES)))]}"
        elif config.festival_prob and config.split == "train" and rng.random() < config.festival_prob:
            name = f"festival:{FESTIVAL_TRAIN_VOICES[int(rng.integers(len(FESTIVAL_TRAIN_VOICES)))]}"
        elif config.accent_prob and config.split == "train" and rng.random() < config.accent_prob:
            name = f"festival:{ACCENT_VOICE_NAMES[int(rng.integers(len(ACCENT_VOICE_NAMES)))]}"
        if config.voice_names:
            name = config.voice_names[int(rng.integers(len(config.voice_names)))]
        if index >= start:
            out.append(Utterance(index, text, name, rate, pitch, seed))
    return out


def _work(args: tuple[Utterance, SynthConfig, str]) -> dict:
    """Render one utterance, write its WAV and its alignments JSON; its manifest row."""
    utt, config, out_dir = args
    rendered = render(utt, config)
    audio, phonemes = rendered.audio, rendered.phonemes
    rel = Path("wavs") / f"{utt.index // 1000:03d}" / f"{utt.index:06d}.wav"
    path = Path(out_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(path, audio, config.sample_rate)
    aligned = alignments(rendered.words)
    path.with_suffix(".json").write_text(json.dumps({"alignments": aligned}) + "\n", encoding="utf-8")
    row = {"path": str(rel), "text": utt.text, "voice": rendered.voice, "rate": utt.rate, "pitch": utt.pitch,
           "duration": round(audio.shape[0] / config.sample_rate, 4), "alignments": aligned}
    if phonemes:  # what was said, sound by sound: the codec's semantic targets (delaykit.train.phonemes)
        row["phonemes"] = [[name, round(start, 4)] for name, start in phonemes]
    if rendered.voice.removeprefix("festival:") in ACCENT_VOICES:
        row["phonemes_only"] = True  # English words read by another language's rules: not what was said
    return row


def synthesize(out_dir: str | Path, config: SynthConfig, log=sys.stderr) -> Path:
    """Fill ``out_dir`` with ``config.hours`` of speech and its manifest; returns the manifest path.

    Utterances are planned in batches until the total duration reaches the target. An existing manifest in
    ``out_dir`` is replaced; the new one appears only when the corpus is complete (:func:`manifest_writer`).
    """
    load_library()  # clear errors before any worker starts
    festival_voices = [name.removeprefix("festival:") for name in config.voice_names if name.startswith("festival:")]
    if config.festival_prob and config.split == "train" and not config.voice_names:
        festival_voices += FESTIVAL_TRAIN_VOICES
    if config.accent_prob and config.split == "train" and not config.voice_names:
        festival_voices += ACCENT_VOICE_NAMES
    if festival_voices:
        require_voices(festival_voices)
    if config.random_variant_prob:
        engine().use_random_variants()  # before the workers fork, so that they start on the private data
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = config.hours * 3600.0
    total, done, start_time = 0.0, 0, time.monotonic()
    batch = 64 * max(1, config.workers)
    with manifest_module.manifest_writer(out_dir) as f, Pool(config.workers) as pool:
        while total < target:
            jobs = [(u, config, str(out_dir)) for u in plan(config, batch, start=done)]
            for row in pool.imap(_work, jobs):
                if total >= target:
                    break
                f.write(json.dumps(row) + "\n")
                total += row["duration"]
                done += 1
            f.flush()
            elapsed = time.monotonic() - start_time
            print(f"synth: {done} utterances, {total / 3600:.2f} h, {total / max(elapsed, 1e-9):.0f}x real time",
                  file=log, flush=True)
        _remove_unlisted(out_dir, done)
        record = asdict(config)
        if config.vocabulary == "open" and config.split == "train":
            from .open_names import open_vocabulary_source

            record["open_vocabulary_source"] = open_vocabulary_source()  # the lists can change between releases
        (out_dir / "synth_config.json").write_text(json.dumps(record, indent=2) + "\n")
    return out_dir / manifest_module.MANIFEST_NAME


def _remove_unlisted(out_dir: Path, count: int) -> None:
    """Delete files under ``out_dir/wavs`` other than those of utterances ``0 .. count - 1``: those rendered
    past the target, or left by an earlier, longer run, so that the WAV + JSON pairs match the manifest."""
    listed = {f"{index:06d}" for index in range(count)}
    for path in (out_dir / "wavs").glob("*/*"):
        if path.is_file() and path.stem not in listed:
            path.unlink()


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a manifest (or a directory holding ``manifest.jsonl``) with ``path`` made absolute."""
    return manifest_module.read_manifest(path)
