"""Full-duplex dialogue: the agent listens while it speaks, one 80 ms frame in, one 80 ms frame out.

A thin driver over the engine, reading the checkpoint's dialogue ``StreamLayout``: every frame the user's
audio is encoded by the codec into the fed codebooks, the LM takes one step and returns the agent's text token
(its "inner monologue") and generated codebooks, and the codec decodes those into the agent's next 80 ms.
There is no turn taking and no voice-activity gate: the model hears the user at every frame, also while it
talks, and decides itself when to speak, to stay silent or to interrupt.

Like Kyutai's file inference, the first frame of a conversation primes the LM: the LM's step 0 reads only
initial tokens (whatever is fed there is discarded), so that frame is fed twice and no user audio is lost.
Agent frame ``t`` then comes out of the call that receives user frame ``t + max(delays) - 1``.

Many conversations can share one batch: each item has its own frame count, can be paused (``active`` in
``DialogueSession.step``) or restarted (``DialogueSession.reset``), and gives exactly what it gives alone,
with greedy decoding or with a seed (each item then draws from its own generator).
"""

from __future__ import annotations

import os
import typing as tp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import SAMPLE_RATE, check_finite, load_audio, write_audio
from ..engine import Engine
from ..errors import AudioError, CheckpointError
from ..layout import StreamLayout
from ..lm.embeddings import UNGENERATED_TOKEN
from ..lm.generate import GenerationOptions, LMGenerator
from ..lm.sampling import SamplingOptions
from ..text_stream import TimedWord
from .session import EngineSession

WORD_START = "\u2581"  # SentencePiece's word-boundary marker '▁'


MOSHI_TEXT_SAMPLING = SamplingOptions(temperature=0.7, top_k=25)  # the published moshi defaults
MOSHI_AUDIO_SAMPLING = SamplingOptions(temperature=0.8, top_k=250)


@dataclass(frozen=True)
class DialogueOptions:
    """Sampling settings of a conversation. Left as None, each stream samples as the checkpoint recommends
    (``dialogue_config.text_sampling`` / ``audio_sampling`` of its config.json), else as the published moshi
    defaults (text: temperature 0.7, top 25; audio: 0.8, top 250)."""

    text: SamplingOptions | None = None  # the agent's text stream (its inner monologue)
    audio: SamplingOptions | None = None  # the agent's audio codebooks
    seed: int | None = None  # seeds the sampling of each session; None draws from torch's global generator

    @classmethod
    def greedy(cls, seed: int | None = None) -> DialogueOptions:
        """Argmax decoding of text and audio (deterministic, and what the parity tests use)."""
        return cls(text=SamplingOptions(), audio=SamplingOptions(), seed=seed)

    def resolved(self, dialogue_config: dict | None = None) -> DialogueOptions:
        """These options with every unset stream filled in from a checkpoint's ``dialogue_config``, else moshi's
        defaults."""
        recommended = dialogue_config or {}

        def pick(chosen: SamplingOptions | None, key: str, fallback: SamplingOptions) -> SamplingOptions:
            if chosen is not None:
                return chosen
            return SamplingOptions(**recommended[key]) if key in recommended else fallback

        return DialogueOptions(text=pick(self.text, "text_sampling", MOSHI_TEXT_SAMPLING),
                               audio=pick(self.audio, "audio_sampling", MOSHI_AUDIO_SAMPLING), seed=self.seed)

    def generation(self) -> GenerationOptions:
        resolved = self.resolved()
        return GenerationOptions(text=resolved.text, audio=resolved.audio, seed=self.seed)


@dataclass
class DialogueStep:
    """What one 80 ms step of a session returns, for every item of the batch."""

    agent_pcm: torch.Tensor  # [B, frame_size] float32 agent audio; zeros where not ready
    text_tokens: torch.Tensor  # [B] the agent's text token of this frame; UNGENERATED (-2) where not ready
    audio_tokens: torch.Tensor  # [B, generated_codebooks] the agent's codes; UNGENERATED (-2) where not ready
    text_pieces: list[str]  # per item: the SentencePiece piece ('▁' = word start); "" for PAD/EPAD/not ready
    ready: torch.Tensor  # [B] bool: the model produced this item's frame (False: warm-up silence, or paused)
    active: torch.Tensor  # [B] bool: the item advanced on this step
    time: list[float]  # per item: start of this 80 ms in its conversation, seconds (paused: where it stands)
    text_time: list[float]  # per item: when the text piece is spoken (``time`` plus the text's lead, if any)


class Conversation:
    """Full-duplex dialogue with an engine whose checkpoint has generated and fed audio streams."""

    def __init__(self, engine: Engine, options: DialogueOptions | None = None):
        if engine.lm is None or engine.codec is None or engine.tokenizer is None:
            missing = [name for name, part in (("LM", engine.lm), ("codec", engine.codec),
                                               ("tokenizer", engine.tokenizer)) if part is None]
            raise CheckpointError(f"{_checkpoint_name(engine)}: dialogue needs an LM, a codec and a "
                                  f"tokenizer; this checkpoint has no {' and no '.join(missing)}")
        config = dict(engine.files.config) if engine.files is not None else engine.lm.config.to_kyutai()
        config.setdefault("model_type", engine.model_type)
        try:
            self.layout = StreamLayout.from_checkpoint(config, "dialogue")
        except ValueError as exc:
            raise CheckpointError(f"{_checkpoint_name(engine)}: cannot do dialogue "
                                  f"(model_type {engine.model_type!r}, n_q {engine.lm.config.n_q}, "
                                  f"dep_q {engine.lm.dep_q}): {exc}") from exc
        self.engine = engine
        # the sampling asked for, completed by what the checkpoint recommends
        self.options = (options or DialogueOptions()).resolved(config.get("dialogue_config"))
        self.codec = engine.codec
        self.lm = engine.lm
        self.tokenizer = engine.tokenizer
        self.frame_size = self.codec.frame_size
        self.frame_duration = self.frame_size / self.codec.sample_rate  # seconds per step
        self.max_delay = max(self.lm.delays)
        self._check_shapes()
        self.generator = LMGenerator(self.lm, self.options.generation())
        self._session: DialogueSession | None = None
        self._pieces: dict[int, str] = {}  # text token -> piece, filled as tokens come out

    def _check_shapes(self) -> None:
        layout, codec, lm = self.layout, self.codec, self.lm
        name = _checkpoint_name(self.engine)
        codebooks = codec.config.quantizer.n_q
        if max(layout.fed_codebooks, layout.generated_codebooks) > codebooks:
            raise CheckpointError(f"{name}: the LM uses {layout.fed_codebooks} fed and "
                                  f"{layout.generated_codebooks} generated codebooks but the codec has only "
                                  f"{codebooks}")
        if codec.cardinality > lm.config.card:
            raise CheckpointError(f"{name}: codec codes go up to {codec.cardinality - 1} but the LM's audio "
                                  f"card is {lm.config.card}")
        text_out = lm.text_linear.out_features
        if self.tokenizer.vocab_size < text_out:
            raise CheckpointError(f"{name}: the LM writes {text_out} text ids but the tokenizer has only "
                                  f"{self.tokenizer.vocab_size} pieces")
        if codec.sample_rate != SAMPLE_RATE or codec.config.channels != 1:
            raise CheckpointError(f"{name}: dialogue expects a mono {SAMPLE_RATE} Hz codec")

    def piece(self, token: int) -> str:
        """The SentencePiece piece of a text token; "" for PAD, EPAD, control pieces (``</s>``...) and
        tokens not generated yet."""
        if token < 0 or token in (self.layout.pad_id, self.layout.epad_id):
            return ""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self.tokenizer.id_to_piece(token)
            if piece.strip(WORD_START) and not self.tokenizer.decode([token]):
                piece = ""  # a control piece: it writes nothing
            self._pieces[token] = piece
        return piece

    def stream(self, batch_size: int = 1) -> DialogueSession:
        """Open a session of ``batch_size`` conversations; close it (or use ``with``) before the next one."""
        if self._session is not None and not self._session.closed:
            raise RuntimeError("this conversation already has an open session: close it first")
        self._session = DialogueSession(self, batch_size)
        return self._session


class DialogueSession(EngineSession):
    """Streaming state of ``batch_size`` conversations; ``step`` once per 80 ms of user audio.

    Until the LM's delays have passed (the first ``max(delays) - 1`` frames of an item, none for moshiko's
    delays) the agent has no complete frame yet: ``step`` returns silence for it, with ``ready`` False.
    """

    def __init__(self, conversation: Conversation, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.conversation = conversation
        self.batch_size = batch_size
        device = conversation.engine.device
        self.device = device
        self.frames_heard = torch.zeros(batch_size, dtype=torch.long, device=device)  # [B] frames per item
        super().__init__(conversation.codec, conversation.generator, batch_size)

    def _mask(self, mask: torch.Tensor | tp.Sequence[bool] | None, what: str) -> torch.Tensor:
        if mask is None:
            return torch.ones(self.batch_size, dtype=torch.bool, device=self.device)
        mask = torch.as_tensor(mask, dtype=torch.bool, device=self.device).reshape(-1)
        if mask.shape[0] != self.batch_size:
            raise ValueError(f"{what} has {mask.shape[0]} items, the session {self.batch_size}")
        return mask

    def reset(self, mask: torch.Tensor | tp.Sequence[bool] | None = None) -> None:
        """Start the items where ``mask`` [B] is True (all when None) over as new conversations."""
        self._require_open()
        mask = self._mask(mask, "reset mask")
        conversation = self.conversation
        conversation.generator.reset(mask)
        conversation.codec.reset_streaming(mask)
        self.frames_heard[mask] = 0

    def _require_open(self) -> None:
        if self.closed:
            raise RuntimeError("this dialogue session is closed")

    def _user_frames(self, user_pcm: tp.Any) -> torch.Tensor:
        """Check and convert one frame per item to [B, 1, frame_size] float32."""
        frame_size = self.conversation.frame_size
        if not isinstance(user_pcm, torch.Tensor):
            user_pcm = torch.from_numpy(np.asarray(user_pcm, dtype=np.float32))
        pcm = user_pcm.to(device=self.device, dtype=torch.float32)
        if pcm.dim() == 3 and pcm.shape[1] == 1:
            pcm = pcm[:, 0]
        if pcm.dim() == 1 and self.batch_size == 1:
            pcm = pcm[None]
        if pcm.dim() != 2 or pcm.shape != (self.batch_size, frame_size):
            raise ValueError(f"expected user audio [{self.batch_size}, {frame_size}] (one 80 ms frame per "
                             f"item), got {list(pcm.shape)}")
        if not bool(torch.isfinite(pcm).all()):
            raise AudioError("user audio: frame contains non-finite samples (NaN or infinity)")
        return pcm[:, None]  # [B, 1, frame_size]

    @torch.no_grad()
    def step(self, user_pcm: tp.Any, active: torch.Tensor | tp.Sequence[bool] | None = None) -> DialogueStep:
        """Hear one 80 ms frame per item (``user_pcm`` [B, frame_size], float in [-1, 1]) and return the
        agent's next 80 ms. Items where ``active`` [B] is False neither hear nor speak: their state stays as
        it was."""
        self._require_open()
        conversation = self.conversation
        codec, generator, layout = conversation.codec, conversation.generator, conversation.layout
        pcm = self._user_frames(user_pcm)  # [B, 1, frame_size]
        active = self._mask(active, "active mask")
        B = self.batch_size

        codec.set_exec_mask(active)
        user_codes = codec.encode(pcm, layout.fed_codebooks)[..., 0]  # [B, K_fed]
        fresh = active & (self.frames_heard == 0)  # [B] items on their first frame
        if bool(fresh.any()):  # prime: the LM's first step discards its input, so feed the first frame twice
            generator.set_exec_mask(fresh)
            generator.step(user_codes)
        generator.set_exec_mask(active)
        output = generator.step(user_codes)
        generated = 1 + layout.generated_codebooks
        if output is None:
            tokens = torch.full((B, generated), UNGENERATED_TOKEN, dtype=torch.long, device=self.device)
        else:
            tokens = output.tokens[:, :generated]  # [B, 1 + dep_q]
        ready = active & (tokens >= 0).all(dim=1)  # [B]

        agent_pcm = torch.zeros(B, conversation.frame_size, device=self.device)  # [B, frame_size]
        if bool(ready.any()):
            codec.set_exec_mask(ready)
            audio_codes = tokens[:, 1:].clamp(min=0)[..., None]  # [B, dep_q, 1]
            decoded = codec.decode(audio_codes)[:, 0]  # [B, frame_size]
            agent_pcm = torch.where(ready[:, None], decoded.float(), agent_pcm)
        codec.set_exec_mask(torch.ones(B, dtype=torch.bool, device=self.device))

        tokens = torch.where(ready[:, None], tokens, torch.full_like(tokens, UNGENERATED_TOKEN))
        text_tokens = tokens[:, 0]  # [B]
        pieces = [conversation.piece(int(token)) for token in text_tokens.tolist()]
        times = (self.frames_heard.double() * conversation.frame_duration).tolist()
        lead = -layout.text_shift_seconds  # a model whose words lead its speech says each word this much later
        self.frames_heard += active.long()
        return DialogueStep(agent_pcm=agent_pcm, text_tokens=text_tokens, audio_tokens=tokens[:, 1:],
                            text_pieces=pieces, ready=ready, active=active, time=times,
                            text_time=[t + lead for t in times])


def _checkpoint_name(engine: Engine) -> str:
    return str(engine.files.directory) if engine.files is not None else "engine"


# ---------------------------------------------------------------------------------------------------------
# Words from pieces


def words_from_pieces(timed_pieces: tp.Iterable[tuple[float, str]], frame_duration: float) -> list[TimedWord]:
    """Group ``(frame start time, piece)`` pairs into words: a piece starting with '▁' starts a word, the
    others continue the current one; empty pieces (PAD, EPAD, silence) are skipped. A word starts at the frame
    of its first piece and ends at the end of the frame of its last one."""
    words: list[TimedWord] = []
    pieces: list[str] = []  # pieces of the word being read
    start = end = 0.0

    def finish() -> None:
        text = "".join(pieces).replace(WORD_START, " ").strip()
        if text:  # a lone '▁' followed by another word start makes no word
            words.append(TimedWord(text, start, end))

    for time, piece in timed_pieces:
        if not piece:
            continue
        if piece.startswith(WORD_START) and pieces:
            finish()
            pieces = []
        if not pieces:
            start = time
        pieces.append(piece)
        end = time + frame_duration
    if pieces:
        finish()
    return words


# ---------------------------------------------------------------------------------------------------------
# Whole signals and files


@dataclass
class DialogueResult:
    """A conversation with a recorded user: the agent's timed words and both sides of the audio."""

    agent_words: list[TimedWord]  # the agent's inner-monologue words, timed on the output's clock
    text_tokens: list[int]  # the agent's text token per frame; UNGENERATED (-2) for warm-up frames
    user_audio: np.ndarray  # [T] float32 at 24 kHz, as heard
    agent_audio: np.ndarray  # [T] float32 at 24 kHz, as spoken (same length as the user's)
    output_path: Path | None = None  # the stereo WAV written, when one was

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.agent_words)


def converse(conversation: Conversation, user_audio: tp.Any) -> tp.Iterator[DialogueStep]:
    """Run one conversation over a whole user signal ``[T]`` (24 kHz), yielding a step per 80 ms frame; the
    last frame is zero-padded. The audio is checked at once; the session closes with the iterator."""
    audio = torch.as_tensor(np.asarray(user_audio, dtype=np.float32)).reshape(-1)  # [T]
    if audio.numel() == 0:
        raise AudioError("user audio: empty (0 samples)")
    check_finite(audio.numpy(), "user audio")
    frame_size = conversation.frame_size
    padded = torch.nn.functional.pad(audio, (0, -audio.numel() % frame_size))  # [N * frame_size]
    return _steps(conversation, padded.view(-1, frame_size))


def _steps(conversation: Conversation, frames: torch.Tensor) -> tp.Iterator[DialogueStep]:
    """One session over ``frames`` [N, frame_size]."""
    with conversation.stream(1) as session:
        for frame in frames:  # [frame_size]
            yield session.step(frame[None])


def converse_file(engine: Engine | Conversation, in_wav: str | os.PathLike, out_wav: str | os.PathLike,
                  options: DialogueOptions | None = None) -> DialogueResult:
    """Let the agent answer a recorded user: read ``in_wav`` (any format, resampled to 24 kHz mono), write a
    stereo 16-bit WAV with the user on the left and the agent on the right, both as long as the input, and
    return the agent's timed words. The output appears only once complete (written to a temporary name and
    renamed): an error leaves nothing behind."""
    conversation = engine if isinstance(engine, Conversation) else Conversation(engine, options)
    out_path = Path(out_wav)
    if not out_path.parent.is_dir():
        raise AudioError(f"{out_path}: output directory {out_path.parent} does not exist")
    user = load_audio(in_wav, conversation.codec.sample_rate)  # [T]
    length = user.shape[0]
    agent_frames, text_tokens, timed_pieces = [], [], []
    for step in converse(conversation, user):
        agent_frames.append(step.agent_pcm[0].cpu().numpy())
        text_tokens.append(int(step.text_tokens[0]))
        timed_pieces.append((step.text_time[0], step.text_pieces[0]))
    agent = np.concatenate(agent_frames)[:length].astype(np.float32)  # [T]
    write_audio(out_path, np.stack([user, agent]), conversation.codec.sample_rate)  # [2, T]
    return DialogueResult(agent_words=words_from_pieces(timed_pieces, conversation.frame_duration),
                          text_tokens=text_tokens, user_audio=user, agent_audio=agent, output_path=out_path)
