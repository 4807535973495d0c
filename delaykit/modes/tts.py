"""Streaming text-to-speech: the engine read with its text stream ahead of the audio.

The model does not get text already laid out in time. Each frame its text output is an *action*: WORD (id 0,
"the next word starts now") or PAD (id 3). On WORD the driver takes the next script entry and feeds that
word's tokens in the text stream over the following frames (padding meanwhile); the audio streams, which lag
the text by the checkpoint's ``tts_config.audio_delay`` (1.28 s = 16 frames for tts-1.6b-en_fr) plus the
acoustic delay, voice the word later. The driver also rules the rhythm as Kyutai's reference TTS does:

- ``initial_padding`` forced PADs at the start, then the model may pad at most ``max_padding`` frames in a row
  before a WORD is forced; while a word's tokens are still being fed, or during a break, PAD is forced;
- ``padding_bonus`` is added to the PAD logit (positive: slower speech);
- the audio streams are fed "zero" (no input) until the audio delay has passed;
- once the model asks for a word after the last one (step ``e``), the output audio ends at ``e * 80 ms``.

A script of two speakers' turns comes out as one mixed channel, or with ``synthesize(script, stereo=True)``
as two, each speaker's turns on its own channel (``speaker_channels``: the form of dialogue training data).

Words can be pushed while frames are pulled: the driver steps the model only when the next step cannot need a
word that has not arrived yet (or after ``end_of_text``), so pushing words one by one gives exactly the tokens
of the whole script. Memory stays constant: the LM's caches are bounded and consumed entries are dropped.

Usage::

    synthesizer = Synthesizer(load_engine("path/to/tts"), SynthesisOptions(seed=0))
    pcm, words = synthesizer.synthesize(["Hello there.", "Hi! <break time=\\"0.5s\\"/> How are you?"])
    with synthesizer.stream() as stream:
        stream.push_text("Hello")
        for event in stream.events():           # AudioFrame / SpokenWord as soon as they can be made
            ...
        stream.end_of_text()
        for event in stream.events(): ...

Times: a word taken at step ``s`` is spoken from ``(s - 2) * 80 ms`` of the output audio, which starts
``delay + 2`` frames into the audio timeline (the first two voiced frames are dropped, as Kyutai's
``simple_generate`` does, which puts the first word, taken at step ``initial_padding = 2``, at 0 s).
"""

from __future__ import annotations

import typing as tp
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..engine import Engine
from ..errors import CheckpointError
from ..layout import StreamLayout
from ..lm.conditioners import TensorConditioner, TensorInput
from ..lm.embeddings import ZERO_TOKEN
from ..lm.generate import GenerationOptions, LMGenerator, StepControl
from ..lm.sampling import SamplingOptions
from ..text import EPAD_ID, PAD_ID
from ..text_stream import TimedWord
from ..voice import VOICE_ATTRIBUTES, VoiceChoice, model_voices
from .script import ScriptEntry, ScriptItem, ScriptTokenizer, parse_text, parse_turns
from .session import EngineSession

__all__ = ["AudioFrame", "SpokenWord", "SynthesisItem", "SynthesisOptions", "SynthesisStream", "Synthesizer",
           "TokenFrame", "load_voice", "speaker_channels", "voice_condition"]

WORD_ACTION = EPAD_ID  # the model's text output "a word starts now" (TokenIds.new_word)
PAD_ACTION = PAD_ID  # "nothing starts" (TokenIds.pad)
DROPPED_LEADING_FRAMES = 2  # voiced frames dropped at the start (Kyutai's simple_generate does; avoids a click)
MAX_VOICES = 5  # speakers a voice-conditioned checkpoint cross-attends to (tts-1.6b-en_fr)


@dataclass(frozen=True)
class SynthesisOptions:
    """How a ``Synthesizer`` samples and paces speech; defaults are Kyutai's run_tts ones."""

    temperature: float = 0.6  # text (action) and audio sampling temperature; 0 = greedy
    top_k_text: int = 25  # keep the k most likely text tokens when sampling (0 = all)
    top_k_audio: int = 250  # keep the k most likely audio codes when sampling (0 = all)
    seed: int | None = None  # seeds sampling of each stream; None draws from torch's global generator
    # CFG strength. Checkpoints with a 'cfg' conditioner (distilled CFG, tts-1.6b: 1.0-4.0 by 0.5) get it as a
    # condition (None: absent); others run direct CFG (a second, unconditioned batch half) unless it is 1 or None.
    cfg_coef: float | None = 2.0
    voices: tuple[torch.Tensor, ...] = ()  # speaker embeddings [T, C] each (main first), for voice conditioning
    # A named voice of a delaykit model conditioned on voice attributes (delaykit.voice): "en-us+f3",
    # "flite:kal"; None: the checkpoint's default voice. Its pitch step (-2..2) and speaking rate relative to
    # the usual (0.6-1.5); None: the default's, else the model's choice.
    voice: str | None = None
    pitch: int | None = None
    rate: float | None = None
    padding_bonus: float = 0.0  # added to the PAD logit: > 0 slows speech down, < 0 speeds it up (about -2..2)
    padding_between: int = 1  # minimum PAD frames after each word (1 articulates better)
    max_padding: int = 8  # PADs the model may choose in a row before a word is forced
    initial_padding: int = 2  # PADs forced before the first word
    token_frames: bool = False  # also yield a TokenFrame for every LM output frame (debugging, parity tests)
    # Most audio frames the codec decodes in one call (capped by what it streams in one call). The first frame
    # is decoded alone, then chunks grow (1, 2, 4, ...) no larger than the audio already out, so playback never
    # waits on a chunk; a codec call costs about as much for 4 frames as for 1 on CPU. 1: each frame at once.
    decode_frames: int = 4

    @classmethod
    def greedy(cls, **overrides: tp.Any) -> SynthesisOptions:
        """Argmax decoding of actions and audio (deterministic; what the parity tests use)."""
        return cls(temperature=0.0, **overrides)

    def generation(self, direct_cfg: bool) -> GenerationOptions:
        """Generator settings; ``direct_cfg``: the checkpoint has no 'cfg' conditioner, guide with two halves."""
        text = SamplingOptions(temperature=self.temperature, top_k=self.top_k_text)
        audio = SamplingOptions(temperature=self.temperature, top_k=self.top_k_audio)
        cfg_coef = self.cfg_coef if direct_cfg and self.cfg_coef is not None else 1.0
        return GenerationOptions(text=text, audio=audio, seed=self.seed, cfg_coef=cfg_coef,
                                 cfg_text_free=cfg_coef != 1.0)


@dataclass(frozen=True)
class SpokenWord:
    """A word, when the model takes it; it is heard from ``start`` seconds of the output audio."""

    text: str
    start: float  # seconds into the output audio
    speaker: int  # 0 main, 1 other
    step: int  # LM step at which the model asked for it


@dataclass(frozen=True)
class AudioFrame:
    """80 ms of output audio."""

    pcm: torch.Tensor  # [frame_size] float32 in [-1, 1]
    start: float  # seconds into the output audio
    tokens: torch.Tensor  # [generated_codebooks] the codes it was decoded from


@dataclass(frozen=True)
class TokenFrame:
    """One LM output frame, undelayed (with ``SynthesisOptions.token_frames``)."""

    index: int  # frame on the text timeline (the LM's output for step index + max(delays))
    tokens: torch.Tensor  # [1 + dep_q]: the text token fed (action, word token or PAD), then the audio codes


SynthesisEvent = AudioFrame | SpokenWord | TokenFrame


def load_voice(path: str | Path) -> torch.Tensor:
    """Speaker embeddings [T, C] from a Kyutai voice file (safetensors with ``speaker_wavs`` [1, C, T])."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: a voice must be a .safetensors file of speaker embeddings")
    embedding = load_file(str(path), device="cpu").get("speaker_wavs")
    if embedding is None or embedding.dim() != 3:
        raise CheckpointError(f"{path}: no 'speaker_wavs' tensor of shape [1, C, T]")
    return embedding[0].t()


def voice_condition(voices: tp.Sequence[torch.Tensor], dim: int, max_speakers: int = MAX_VOICES) -> TensorInput:
    """The cross-attention input of up to ``max_speakers`` voices (each [T, C]): slot ``i`` holds voice ``i``,
    unused slots are masked; flattened to [1, max_speakers * T, C]. No voice: one masked position."""
    if not voices:
        return TensorInput(torch.zeros(1, 1, dim), torch.zeros(1, 1, dtype=torch.bool))
    if len(voices) > max_speakers:
        raise ValueError(f"at most {max_speakers} voices, got {len(voices)}")
    length = voices[0].shape[0]
    if any(voice.shape != (length, dim) for voice in voices):
        raise ValueError(f"every voice must be [{length}, {dim}]; got {[list(v.shape) for v in voices]}")
    values = torch.zeros(1, max_speakers, length, dim)  # [1, S, T, C]
    mask = torch.zeros(1, max_speakers, length, dtype=torch.bool)  # [1, S, T]
    for slot, voice in enumerate(voices):
        values[0, slot] = voice.float()
        mask[0, slot] = True
    return TensorInput(values.view(1, -1, dim), mask.view(1, -1))


@dataclass
class WordFeeder:
    """The action state machine of one synthesis: which entry comes next, what to feed, how long to pad."""

    initial_padding: int  # PADs forced at the start
    max_padding: int  # PADs allowed in a row before a word is forced
    text_card: int  # LM text vocabulary; multiplexed second-stream tokens are (second + 1) * (text_card + 1) + main
    lookahead: int = 0  # with a second text stream: it carries the tokens of the word this many entries ahead
    entries: deque[ScriptEntry] = field(default_factory=deque)  # pushed, not taken yet
    pending: deque[int] = field(default_factory=deque)  # tokens of the word being fed
    lookahead_pending: deque[int] = field(default_factory=deque)  # tokens for the second stream
    free_pads: int = 0  # PADs the model may still choose before a word is forced
    forced_pads: int = 0  # PADs the model must still take
    text_ended: bool = False  # end_of_text() was called: an empty queue means the end
    end_step: int | None = None  # step at which the model asked for a word after the last one

    def __post_init__(self) -> None:
        self.free_pads = self.forced_pads = self.initial_padding

    def can_step(self) -> bool:
        """Whether the next step is sure to find the entries it may need: pushed ones, or the end. A word
        taken now needs itself and, with a second stream, the word ``lookahead`` entries further on."""
        if self.text_ended or self.pending or self.forced_pads > 0:
            return True
        if not self.lookahead:
            return bool(self.entries)
        return sum(1 for entry in self.entries if not entry.is_break) > self.lookahead

    def _tokens_ahead(self) -> list[int]:
        remaining = self.lookahead
        for entry in self.entries:
            if entry.tokens:
                remaining -= 1
                if remaining == 0:
                    return list(entry.tokens)
        return []

    def step(self, step: int, sampled: int) -> tuple[int, ScriptEntry | None]:
        """The text token to feed for the model's ``sampled`` action at ``step``, and the entry taken."""
        action = sampled if sampled in (WORD_ACTION, PAD_ACTION) else PAD_ACTION
        if self.pending or self.forced_pads > 0:
            action = PAD_ACTION
        elif self.free_pads <= 0:
            action = WORD_ACTION
        taken = None
        if action == WORD_ACTION:
            if self.entries:
                taken = self.entries.popleft()
                self.forced_pads = taken.padding
                if taken.is_break:
                    action = PAD_ACTION  # a pause: padding only
                else:
                    self.pending.extend(taken.tokens)
                    if self.lookahead:
                        self.lookahead_pending.extend(self._tokens_ahead())
                    self.free_pads = self.max_padding
            else:  # asked for a word after the last one: the end
                action = WORD_ACTION if self.lookahead and self.end_step is None else PAD_ACTION
                if self.end_step is None:
                    self.end_step = step
        if action == PAD_ACTION:
            self.free_pads = max(0, self.free_pads - 1)
            self.forced_pads = max(0, self.forced_pads - 1)
            token = self.pending.popleft() if self.pending else PAD_ACTION
        else:
            token = WORD_ACTION
        if not self.lookahead:
            return token, taken
        second = ZERO_TOKEN
        if token == WORD_ACTION:  # the action goes to the second stream; the main one moves on
            second = WORD_ACTION
            token = self.pending.popleft() if self.pending else PAD_ACTION
        elif self.lookahead_pending:
            second = self.lookahead_pending.popleft()
        return (second + 1) * (self.text_card + 1) + token, taken


class Synthesizer:
    """Text-to-speech with an engine whose checkpoint is a TTS model (``model_type: "tts"``, ``tts_config``)."""

    def __init__(self, engine: Engine, options: SynthesisOptions | None = None, layout: StreamLayout | None = None):
        """``layout``: a TTS layout to read a checkpoint of another ``model_type`` with (``delaykit.load(...,
        mode="tts")``); its config must still hold a ``tts_config``."""
        name = str(engine.files.directory) if engine.files is not None else "engine"
        if engine.lm is None or engine.codec is None or engine.tokenizer is None:
            missing = [part for part, model in (("LM", engine.lm), ("codec", engine.codec),
                                                ("tokenizer", engine.tokenizer)) if model is None]
            raise CheckpointError(f"{name}: TTS needs an LM, a codec and a tokenizer; this checkpoint has no "
                                  f"{' and no '.join(missing)}")
        config = dict(engine.files.config) if engine.files is not None else engine.lm.config.to_kyutai()
        config.setdefault("model_type", engine.model_type)
        if layout is not None and layout.mode != "tts":
            raise ValueError(f"a synthesizer reads a tts layout, got a {layout.mode} one")
        forced = layout is not None
        if (config.get("model_type") != "tts" and not forced) or "tts_config" not in config:
            raise CheckpointError(f"{name}: not a TTS checkpoint (model_type {config.get('model_type')!r}, "
                                  f"{'with' if 'tts_config' in config else 'no'} tts_config)")
        if config["tts_config"].get("multistream"):
            raise CheckpointError(f"{name}: a multistream TTS checkpoint (two speakers generated on separate "
                                  f"audio streams) is not supported; synthesize(..., stereo=True) splits the turns "
                                  f"of a single-stream model")
        lm = engine.lm
        if lm.dep_q == 0 or lm.depformer is None:
            raise CheckpointError(f"{name}: a TTS model must generate audio (dep_q > 0)")
        if lm.dep_q > engine.codec.config.quantizer.n_q:
            raise CheckpointError(f"{name}: the LM generates {lm.dep_q} codebooks, the codec has "
                                  f"{engine.codec.config.quantizer.n_q}")
        self.layout = layout if forced else StreamLayout.from_checkpoint(config, "tts")
        self.engine = engine
        self.options = options or SynthesisOptions()
        self.codec, self.lm, self.tokenizer = engine.codec, lm, engine.tokenizer
        self.frame_rate = float(self.codec.config.frame_rate)
        self.frame_duration = 1.0 / self.frame_rate
        # Frames the audio lags the text. Kyutai truncates (int) rather than rounds (StreamLayout.frames);
        # truncate too, to match it exactly for delays that are not whole frames.
        self.delay_steps = int(-self.layout.text_shift_seconds * self.frame_rate)
        self.lookahead = int(config["tts_config"].get("second_stream_ahead", 0))
        if self.lookahead and not lm.config.demux_second_text_stream:
            raise CheckpointError(f"{name}: tts_config asks for a second text stream but the LM has no "
                                  f"demux_second_stream embedding")
        self.max_delay = max(lm.delays)
        self.max_audio_delay = max(lm.delays[1:1 + lm.dep_q])  # the generated codebooks' largest delay
        # Most frames one codec call decodes: the option, within what the codec streams in one call
        self.decode_chunk = max(1, min(self.options.decode_frames, self.codec.max_stream_frames or 1 << 30))
        provider = lm.condition_provider
        self.distilled_cfg = provider is not None and "cfg" in provider.conditioners
        # Direct CFG contrasts the model with and without the text: meaningless for a model never trained with
        # the text dropped, which its tts_config says with "direct_cfg": false (delaykit's own models).
        self.direct_cfg = not self.distilled_cfg and bool(config["tts_config"].get("direct_cfg", True))
        generation = self.options.generation(direct_cfg=self.direct_cfg)
        self.default_voice = VoiceChoice(**config["tts_config"].get("default_voice", {}))
        self.conditions = self._conditions(name, guided=generation.cfg_coef != 1.0)
        self.generator = LMGenerator(lm, generation, self.conditions)
        self.text_bias = None
        if self.options.padding_bonus:
            self.text_bias = torch.zeros(lm.text_linear.out_features, device=engine.device)
            self.text_bias[PAD_ACTION] = self.options.padding_bonus
        # The tokenizer's unk id (<unk>); TextTokenizer has no public accessor for it.
        self.unknown_id = self.tokenizer.unk_id
        self._stream: SynthesisStream | None = None

    @property
    def supports_guidance(self) -> bool:
        """Whether ``cfg_coef`` means anything for this checkpoint (distilled or direct CFG)."""
        return self.distilled_cfg or self.direct_cfg

    @property
    def multi_speaker(self) -> bool:
        """Whether the model is conditioned on voices (and was trained with speaker-turn tokens)."""
        provider = self.lm.condition_provider
        return provider is not None and "speaker_wavs" in provider.conditioners

    @property
    def voice_names(self) -> list[str]:
        """The named voices this model takes (``SynthesisOptions.voice``); empty for models without them."""
        provider = self.lm.condition_provider
        if provider is None or not set(VOICE_ATTRIBUTES) <= set(provider.conditioners):
            return []
        return model_voices(provider.conditioners)

    def voice_choice(self) -> VoiceChoice:
        """The voice the options ask for, completed by the checkpoint's default voice."""
        options, default = self.options, self.default_voice
        return VoiceChoice(voice=options.voice or default.voice,
                           pitch=options.pitch if options.pitch is not None else default.pitch,
                           rate=options.rate if options.rate is not None else default.rate)

    def _conditions(self, name: str, guided: bool) -> dict | None:
        """Condition tensors for the options (``cfg`` value, ``speaker_wavs`` voices, ``control``, the voice
        attributes of a named voice); ``guided``: a second batch row with every condition dropped (absent
        values, masked voices)."""
        provider = self.lm.condition_provider
        options = self.options
        named = (options.voice, options.pitch, options.rate) != (None, None, None)
        if named and not self.voice_names:
            raise ValueError(f"{name}: this model has no named voices, pitch or rate conditions")
        if provider is None:
            if options.voices:
                raise ValueError(f"{name}: this model takes no voice conditioning")
            return None  # direct CFG then only drops the text (GenerationOptions.cfg_text_free)
        voice_values: dict[str, str | None] = {}
        if self.voice_names:
            choice = self.voice_choice()
            if choice.voice is not None and choice.voice not in self.voice_names:
                raise ValueError(f"{name}: no voice {choice.voice!r} (`delaykit voices` lists this model's)")
            voice_values = choice.values()
        attributes: dict[str, tp.Any] = {}
        for attribute, conditioner in provider.conditioners.items():
            if attribute == "cfg":
                value = None if options.cfg_coef is None else format(options.cfg_coef, ".1f")
                valid = getattr(conditioner, "possible_values", None)
                if value is not None and valid and value not in valid:
                    raise ValueError(f"cfg_coef {options.cfg_coef} is not supported by {name}; valid values: "
                                     f"{', '.join(sorted(valid))}")
                attributes[attribute] = [value, None] if guided else [value]
            elif attribute in voice_values:
                value = voice_values[attribute]
                attributes[attribute] = [value, None] if guided else [value]
            elif attribute == "control":
                attributes[attribute] = ["ok", None] if guided else ["ok"]
            elif attribute == "speaker_wavs" and isinstance(conditioner, TensorConditioner):
                voice = voice_condition(options.voices, conditioner.dim)
                if guided:  # the dropped row: zeros, all masked, same length
                    voice = TensorInput(torch.cat([voice.values, torch.zeros_like(voice.values)]),
                                        torch.cat([voice.mask, torch.zeros_like(voice.mask)]))
                attributes[attribute] = voice
            else:
                raise CheckpointError(f"{name}: conditioner {attribute!r} is not known to the TTS driver")
        with torch.no_grad():
            return provider(attributes)

    def fed_tokens(self, batch_size: int) -> torch.Tensor | None:
        """Input [B, K_fed] of the streams a TTS model would read from outside (none in Kyutai's): "zero"."""
        if not self.generator.num_fed:
            return None
        return torch.full((batch_size, self.generator.num_fed), ZERO_TOKEN, dtype=torch.long)

    def script_tokenizer(self) -> ScriptTokenizer:
        return ScriptTokenizer(self.tokenizer, self.frame_rate, self.multi_speaker, self.options.padding_between,
                               self.unknown_id)

    def stream(self) -> SynthesisStream:
        """Open a synthesis; close it (or use ``with``) before the next one."""
        if self._stream is not None and not self._stream.closed:
            raise RuntimeError("this synthesizer already has an open stream: close it first")
        self._stream = SynthesisStream(self)
        return self._stream

    def synthesize(self, script: str | bytes | tp.Sequence[str], stereo: bool = False
                   ) -> tuple[torch.Tensor, list[TimedWord]]:
        """Speak a whole script (a text, or alternating speaker turns). Returns the audio [N] float32 (with
        ``stereo``: [2, N], each speaker's turns on its own channel, see ``speaker_channels``) and each word
        with its start and end (the next word's start, or the end of the audio) in seconds."""
        items = parse_turns(script)
        frames: list[torch.Tensor] = []
        spoken: list[SpokenWord] = []
        with self.stream() as stream:
            stream.push_items(items)
            stream.end_of_text()
            for event in stream.events():
                if isinstance(event, AudioFrame):
                    frames.append(event.pcm)
                elif isinstance(event, SpokenWord):
                    spoken.append(event)
        pcm = torch.cat(frames) if frames else torch.zeros(0)  # [N]
        words = word_times(spoken, pcm.shape[0] / self.codec.sample_rate)
        return (speaker_channels(pcm, words, self.codec.sample_rate) if stereo else pcm), words


def word_times(spoken: tp.Sequence[SpokenWord], duration: float) -> list[TimedWord]:
    """Words with start and end: a word ends where the next one starts, the last one at ``duration``."""
    words = []
    for index, word in enumerate(spoken):
        end = spoken[index + 1].start if index + 1 < len(spoken) else duration
        words.append(TimedWord(word.text, word.start, max(word.start, end), "main" if word.speaker == 0 else "other"))
    return words


def speaker_channels(pcm: torch.Tensor, words: tp.Sequence[TimedWord], sample_rate: int) -> torch.Tensor:
    """Split a two-speaker rendering [N] into channels [2, N] (0: main, 1: other), the form of dialogue
    training data: each word's span, from its start to the next word's, goes to its speaker's channel (the
    audio before the first word to the first speaker's); the other channel is silent there. The channels
    sum back to ``pcm``."""
    channels = torch.zeros(2, pcm.shape[0], dtype=pcm.dtype)  # [2, N]
    if not words:
        channels[0] = pcm
        return channels
    bounds = [0] + [min(round(word.start * sample_rate), pcm.shape[0]) for word in words[1:]] + [pcm.shape[0]]
    for word, begin, end in zip(words, bounds[:-1], bounds[1:], strict=True):
        channel = 1 if word.speaker == "other" else 0
        channels[channel, begin:end] = pcm[begin:end]
    return channels


class SynthesisItem:
    """What one synthesis remembers between steps (its word feeder, script and step count) and how it reads
    each step's output: stepped alone by ``SynthesisStream``, or as one item of a batch
    (:mod:`delaykit.modes.tts_batch`)."""

    def __init__(self, synthesizer: Synthesizer):
        self.synthesizer = synthesizer
        options = synthesizer.options
        self.feeder = WordFeeder(options.initial_padding, options.max_padding, synthesizer.lm.config.text_card,
                                 synthesizer.lookahead)
        self.script = synthesizer.script_tokenizer()
        self.steps = 0  # LM steps taken
        self.frames_out = 0  # audio frames emitted
        self.finished = False
        self._taken: list[ScriptEntry] = []  # entries taken by the step in progress
        # Voiced frames made and not decoded yet: (frame index, tokens [1 + dep_q]); the stream decodes them in
        # chunks (``chunk_ready``, ``waiting_codes``, ``take_audio``)
        self.undecoded: list[tuple[int, torch.Tensor]] = []

    def push_items(self, items: tp.Iterable[ScriptItem]) -> None:
        if self.feeder.text_ended:
            raise RuntimeError("end_of_text() was called: no more text can be pushed")
        self.feeder.entries.extend(self.script.entries(items))

    def ready(self) -> bool:
        """Whether the next step can be taken now (not finished, and it cannot need a word not pushed yet)."""
        return not self.finished and self.feeder.can_step()

    def warmup_phase(self) -> int:
        """The step, capped where the audio gates stop changing: items with equal phases step with the same
        ``audio_gates``."""
        synthesizer = self.synthesizer
        return min(self.steps, synthesizer.delay_steps + synthesizer.max_audio_delay)

    def audio_gates(self) -> tuple[torch.Tensor, bool]:
        """(codebooks [dep_q] fed "zero" this step, whether the depth transformer is skipped altogether)."""
        synthesizer = self.synthesizer
        delays = synthesizer.generator.delays[1:1 + synthesizer.lm.dep_q]  # [dep_q]
        return self.steps < delays + synthesizer.delay_steps, self.steps < synthesizer.delay_steps

    def choose_text(self, sampled: int) -> int:
        """The text token to feed for the model's ``sampled`` action at this step."""
        token, entry = self.feeder.step(self.steps, sampled)
        if entry is not None:
            self._taken.append(entry)
        return token

    def after_step(self, tokens: torch.Tensor | None) -> list[SynthesisEvent]:
        """The words and token frame of the step just taken, whose output is ``tokens`` [1 + dep_q] (None until
        ``max(delays)`` steps have passed). A voiced frame joins ``undecoded``: its audio comes from
        ``take_audio`` once the codec has decoded it."""
        synthesizer = self.synthesizer
        step = self.steps
        self.steps += 1
        events: list[SynthesisEvent] = []
        for entry in self._taken:
            if not entry.is_break:
                start = max(0.0, (step - DROPPED_LEADING_FRAMES) * synthesizer.frame_duration)
                events.append(SpokenWord(entry.text, start, entry.speaker, step))
        self._taken.clear()
        if tokens is None:
            return events
        index = step - synthesizer.max_delay  # frame of the text timeline that came out
        if synthesizer.options.token_frames:
            events.append(TokenFrame(index, tokens.clone()))
        if index >= synthesizer.delay_steps:  # voiced: every such frame goes through the codec, in order
            self.undecoded.append((index, tokens))
        last = self._last_step()
        if last is not None and step >= last:
            self.finished = True
        return events

    def emits_audio(self, index: int) -> bool:
        """Whether the decoded frame ``index`` is heard (the first voiced frames only warm the codec up)."""
        return index >= self.synthesizer.delay_steps + DROPPED_LEADING_FRAMES

    def chunk_ready(self) -> bool:
        """Whether the frames in ``undecoded`` make a chunk: 1 heard frame until one is out, then as many as
        are out already (so the audio out covers the time the next chunk takes), at most
        ``Synthesizer.decode_chunk``."""
        heard = sum(self.emits_audio(index) for index, _ in self.undecoded)
        return heard >= min(max(self.frames_out, 1), self.synthesizer.decode_chunk)

    def waiting_codes(self) -> torch.Tensor:
        """The codes [dep_q, n] of the ``n`` frames in ``undecoded``, for one codec call."""
        return torch.stack([tokens[1:] for _, tokens in self.undecoded], dim=-1).clamp(min=0)

    def take_audio(self, pcm: torch.Tensor) -> list[AudioFrame]:
        """The ``AudioFrame`` events of the frames in ``undecoded``, decoded to ``pcm`` [n * frame_size] in one
        call (the dropped warm-up frames make none); ``undecoded`` is emptied."""
        first_kept = self.synthesizer.delay_steps + DROPPED_LEADING_FRAMES
        frames = pcm.view(len(self.undecoded), -1)  # [n, frame_size]
        events = []
        for (index, tokens), frame_pcm in zip(self.undecoded, frames, strict=True):
            if self.emits_audio(index):
                events.append(AudioFrame(frame_pcm, (index - first_kept) * self.synthesizer.frame_duration,
                                         tokens[1:].clone()))
        self.frames_out += len(events)
        self.undecoded.clear()
        return events

    def _last_step(self) -> int | None:
        """Index of the last LM step needed, once the end of the text is known."""
        end_step = self.feeder.end_step
        if end_step is None:
            return None
        synthesizer = self.synthesizer
        last_frame = end_step + synthesizer.delay_steps + DROPPED_LEADING_FRAMES - 1
        return last_frame + synthesizer.max_delay


class SynthesisStream(EngineSession):
    """One synthesis in progress: push text, pull events (``AudioFrame``, ``SpokenWord``, ``TokenFrame``)."""

    def __init__(self, synthesizer: Synthesizer):
        self.synthesizer = synthesizer
        self.item = SynthesisItem(synthesizer)
        super().__init__(synthesizer.codec, synthesizer.generator, 1)

    @property
    def feeder(self) -> WordFeeder:
        return self.item.feeder

    @property
    def steps(self) -> int:
        return self.item.steps

    @property
    def frames_out(self) -> int:
        return self.item.frames_out

    @property
    def finished(self) -> bool:
        return self.item.finished

    def _require_open(self) -> None:
        if self.closed:
            raise RuntimeError("this synthesis stream is closed")

    # -- input ------------------------------------------------------------------------------------------

    def push_items(self, items: tp.Iterable[ScriptItem]) -> None:
        """Queue parsed script items (words and breaks)."""
        self._require_open()
        self.item.push_items(items)

    def push_text(self, text: str | bytes, speaker: int = 0) -> None:
        """Queue the words (and ``<break time=.../>`` pauses) of ``text``, said by ``speaker`` (0 main, 1 other)."""
        self.push_items(parse_text(text, speaker))

    def push_words(self, words: tp.Sequence[str], speaker: int = 0) -> None:
        """Queue whole words (each is split on whitespace, so a word with spaces counts as several)."""
        for word in words:
            self.push_text(word, speaker)

    def end_of_text(self) -> None:
        """No more text will come: speech ends after the queued words."""
        self._require_open()
        self.item.feeder.text_ended = True

    # -- output -----------------------------------------------------------------------------------------

    def events(self, max_steps: int | None = None) -> tp.Iterator[SynthesisEvent]:
        """Step the model as far as the pushed text allows (at most ``max_steps`` steps) and yield what comes
        out. Call again after pushing more text; after ``end_of_text`` it runs to the end of speech."""
        self._require_open()
        taken = 0
        while self.item.ready() and (max_steps is None or taken < max_steps):
            yield from self._step()
            if self.item.chunk_ready():
                yield from self._decode_waiting()
            taken += 1
        yield from self._decode_waiting()  # the next step may wait on text that never comes: nothing waits

    @torch.no_grad()
    def _decode_waiting(self) -> list[AudioFrame]:
        """Decode the waiting voiced frames in one codec call; their ``AudioFrame`` events, in order."""
        if not self.item.undecoded:
            return []
        codes = self.item.waiting_codes()[None]  # [1, dep_q, n]
        pcm = self.synthesizer.codec.decode(codes)[0, 0].float().clamp(-1, 1)  # [n * frame_size]
        return self.item.take_audio(pcm)

    @torch.no_grad()
    def _step(self) -> list[SynthesisEvent]:
        synthesizer = self.synthesizer
        item = self.item
        zero_audio, skip_depth = item.audio_gates()

        def choose_text(sampled: torch.Tensor) -> torch.Tensor:  # [1] -> [1]
            return torch.tensor([item.choose_text(int(sampled[0]))])

        control = StepControl(text_bias=synthesizer.text_bias, choose_text=choose_text, zero_audio=zero_audio,
                              skip_depth=skip_depth)
        output = synthesizer.generator.step(synthesizer.fed_tokens(1), control=control)
        tokens = None if output is None else output.tokens[0]  # [1 + dep_q]
        return item.after_step(tokens)


def synthesize(engine: Engine, script: str | bytes | tp.Sequence[str], options: SynthesisOptions | None = None,
               stereo: bool = False) -> tuple[torch.Tensor, list[TimedWord]]:
    """One-call TTS: audio [N] float32 at the codec's rate ([2, N] speaker channels with ``stereo``), and word
    times."""
    return Synthesizer(engine, options).synthesize(script, stereo)

