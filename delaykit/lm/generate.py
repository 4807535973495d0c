"""Frame-by-frame generation with the multi-stream LM: one ``step`` per 80 ms frame.

Each step takes the tokens of the streams fed from outside (for example the user's audio codebooks), runs
the temporal transformer once, samples the text token, then the depth transformer samples the generated
audio codebooks. Because streams are delayed by different amounts, a small ring of past tokens holds what
each stream must read next; outputs come back undelayed, ``max(delays)`` steps after their inputs.
"""

from __future__ import annotations

import contextlib
import typing as tp
from dataclasses import dataclass, field

import torch

from .conditioners import Condition
from .embeddings import UNGENERATED_TOKEN, ZERO_TOKEN
from .model import LMModel
from .sampling import SamplingOptions, sample_token


@dataclass(frozen=True)
class GenerationOptions:
    """Sampling settings per stream kind; defaults are the published moshi ones."""

    text: SamplingOptions = field(default_factory=lambda: SamplingOptions(temperature=0.7, top_k=25))
    audio: SamplingOptions = field(default_factory=lambda: SamplingOptions(temperature=0.8, top_k=250))
    cfg_coef: float = 1.0  # classifier-free guidance; != 1 runs a conditioned and an unconditioned batch half
    # Guidance as Kyutai's TTS does it: the unconditioned half also reads no text, and the text token is
    # sampled from the conditioned half alone (only the audio is guided). Needs no conditions.
    cfg_text_free: bool = False
    seed: int | None = None  # seeds one sampling generator per batch item (each item samples as if alone)

    @classmethod
    def greedy(cls, **overrides: tp.Any) -> GenerationOptions:
        return cls(text=SamplingOptions(), audio=SamplingOptions(), **overrides)


@dataclass(frozen=True)
class StepControl:
    """What a driver may change inside one step (TTS steers the text and silences audio this way)."""

    text_bias: torch.Tensor | None = None  # [V] added to the text logits before sampling
    choose_text: tp.Callable[[torch.Tensor], torch.Tensor] | None = None  # sampled text [B] -> text to use [B]
    zero_audio: torch.Tensor | None = None  # [dep_q] bool: these codebooks get ZERO (no input) this step
    skip_depth: bool = False  # every codebook ZERO, without running the depth transformer


@dataclass
class StepOutput:
    """What one step returns, ``max(delays)`` frames after the matching input."""

    tokens: torch.Tensor  # [B, 1 + dep_q]: text then the generated codebooks; UNGENERATED where not valid yet
    extra_heads: list[torch.Tensor] = field(default_factory=list)  # each [B, extra_heads_dim], probabilities
    text_logits: torch.Tensor | None = None  # [B, text_card_out] of this step (not delayed)


@dataclass
class GeneratorState:
    """Everything a generation session remembers between steps."""

    batch_size: int
    cache: torch.Tensor  # [B, K, max_delay + 2] ring of the tokens each stream reads, by position
    offsets: torch.Tensor  # [B] position of the next step of each item
    exec_mask: torch.Tensor  # [B] bool
    steps: int = 0
    condition_sum: torch.Tensor | None = None  # [B', 1, dim]
    cross_source: torch.Tensor | None = None  # [B', S, dim]
    generators: list[torch.Generator] | None = None  # one per item when seeded


class LMGenerator:
    """Drives an ``LMModel`` one frame at a time, for a batch of independent streams."""

    def __init__(self, model: LMModel, options: GenerationOptions | None = None,
                 conditions: dict[str, Condition] | None = None):
        if model.training:
            raise ValueError("put the model in eval mode before generating")
        self.model = model
        self.options = options or GenerationOptions()
        if self.options.cfg_coef != 1.0 and conditions is None and not self.options.cfg_text_free:
            raise ValueError("classifier-free guidance needs conditions for both batch halves")
        self.conditions = conditions
        self.max_delay = max(model.delays)
        device = model.text_linear.weight.device
        self.delays = torch.tensor(model.delays, device=device)  # [K]
        self.num_fed = model.num_streams - 1 - model.dep_q
        self.state: GeneratorState | None = None

    @property
    def guided(self) -> bool:
        return self.options.cfg_coef != 1.0

    @contextlib.contextmanager
    def streaming(self, batch_size: int) -> tp.Iterator[GeneratorState]:
        """A session of ``batch_size`` streams; the model's caches live as long as the context."""
        model = self.model
        device = model.text_linear.weight.device
        model_batch = 2 * batch_size if self.guided else batch_size
        condition_sum, cross_source = model.condition_inputs(self.conditions)
        for name, tensor in (("summed", condition_sum), ("cross-attention", cross_source)):
            if tensor is not None and tensor.shape[0] != model_batch:
                raise ValueError(f"{name} conditions have batch {tensor.shape[0]}, expected {model_batch}")
        generators = None
        if self.options.seed is not None:
            generators = [torch.Generator(device=device) for _ in range(batch_size)]
            for item_generator in generators:
                item_generator.manual_seed(self.options.seed)
        cache = torch.full((batch_size, model.num_streams, self.max_delay + 2), UNGENERATED_TOKEN, device=device)
        self.state = GeneratorState(
            batch_size, cache, offsets=torch.zeros(batch_size, dtype=torch.long, device=device),
            exec_mask=torch.ones(batch_size, dtype=torch.bool, device=device),
            condition_sum=condition_sum, cross_source=cross_source, generators=generators)
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(model.streaming(model_batch))
                if model.depformer is not None:
                    stack.enter_context(model.depformer.streaming(model_batch))
                yield self.state
        finally:
            self.state = None

    def _require_state(self) -> GeneratorState:
        if self.state is None:
            raise RuntimeError("call step() inside `with generator.streaming(batch_size):`")
        return self.state

    def _model_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.repeat(2) if self.guided else mask

    def reset(self, reset_mask: torch.Tensor | None = None) -> None:
        """Restart the items where ``reset_mask`` [B] is True (all when None) from their first frame."""
        state = self._require_state()
        if reset_mask is None:
            reset_mask = torch.ones(state.batch_size, dtype=torch.bool, device=state.offsets.device)
        state.offsets[reset_mask] = 0
        state.cache[reset_mask] = UNGENERATED_TOKEN
        state.exec_mask[reset_mask] = True
        if state.generators is not None:
            for item in reset_mask.nonzero().flatten().tolist():
                state.generators[item].manual_seed(self.options.seed)
        if bool(reset_mask.all()):
            state.steps = 0
        self.model.reset_streaming(self._model_mask(reset_mask))

    def set_exec_mask(self, exec_mask: torch.Tensor) -> None:
        """Only items where ``exec_mask`` [B] is True advance on the next steps."""
        state = self._require_state()
        state.exec_mask.copy_(exec_mask)
        self.model.set_exec_mask(self._model_mask(exec_mask))

    def _write(self, rows: slice, positions: torch.Tensor, tokens: torch.Tensor) -> None:
        """Write ``tokens`` [B, R] at ``positions`` [B, R] of the cache rows, for executing items only."""
        state = self._require_state()
        view = state.cache[:, rows]  # [B, R, CT]
        index = positions[..., None]  # [B, R, 1]
        previous = view.gather(2, index)
        view.scatter_(2, index, torch.where(state.exec_mask[:, None, None], tokens[..., None], previous))

    def _sample(self, logits: torch.Tensor, options: SamplingOptions) -> torch.Tensor:
        """Tokens [B] from ``logits`` [B, V]. Seeded sessions draw each item from its own generator, and
        only for executing items, so an item's samples do not depend on the rest of the batch."""
        state = self._require_state()
        if options.greedy or state.generators is None:
            return sample_token(logits, options)
        executing = state.exec_mask.tolist()
        return torch.cat([
            sample_token(logits[i:i + 1], options, state.generators[i]) if executing[i] else logits[i:i + 1].argmax(-1)
            for i in range(state.batch_size)])

    def _guide(self, logits: torch.Tensor) -> torch.Tensor:
        """Mix conditioned and unconditioned halves of the batch."""
        if not self.guided:
            return logits
        conditioned, unconditioned = logits.chunk(2)
        return unconditioned + (conditioned - unconditioned) * self.options.cfg_coef

    @torch.no_grad()
    def step(self, fed_tokens: torch.Tensor | None = None, forced_audio: torch.Tensor | None = None,
             control: StepControl | None = None) -> StepOutput | None:
        """One frame. ``fed_tokens`` [B, K_fed] (or [B, K_fed, 1]) are the streams given from outside;
        ``forced_audio`` [B, dep_q] replaces the sampled audio (teacher forcing); ``control`` lets a driver
        steer the text and silence audio codebooks. Returns None during the first ``max(delays)`` steps."""
        state = self._require_state()
        model = self.model
        B = state.batch_size
        cache_len = state.cache.shape[2]
        if self.num_fed:
            if fed_tokens is None:
                raise ValueError(f"this model reads {self.num_fed} streams from outside: pass fed_tokens")
            fed_tokens = fed_tokens.reshape(B, -1)[:, :self.num_fed]  # [B, K_fed]
            fed_positions = (state.offsets[:, None] + self.delays[None, 1 + model.dep_q:]) % cache_len
            self._write(slice(1 + model.dep_q, None), fed_positions, fed_tokens)

        is_initial = state.offsets[:, None] <= self.delays[None]  # [B, K]
        is_initial |= ~state.exec_mask[:, None]
        read_index = (state.offsets % cache_len)[:, None, None].expand(B, model.num_streams, 1)
        tokens_in = state.cache.gather(2, read_index)  # [B, K, 1]
        tokens_in = torch.where(is_initial[..., None], model.initial_tokens(B), tokens_in)
        if self.guided:
            unconditioned = tokens_in
            if self.options.cfg_text_free:
                unconditioned = tokens_in.clone()
                unconditioned[:, 0] = torch.where(is_initial[:, :1], tokens_in[:, 0], ZERO_TOKEN)
            tokens_in = torch.cat([tokens_in, unconditioned])  # [2B, K, 1]

        hidden, text_logits = model.forward_temporal(tokens_in, state.condition_sum, state.cross_source)
        if self.options.cfg_text_free:
            text_logits = text_logits[:B, 0, 0].float()  # [B, V]: the conditioned half alone
        else:
            text_logits = self._guide(text_logits[:, 0, 0]).float()  # [B, V]
        control = control or StepControl()
        if control.text_bias is not None:
            text_logits = text_logits + control.text_bias
        text_token = self._sample(text_logits, self.options.text)  # [B]
        if control.choose_text is not None:
            text_token = control.choose_text(text_token).to(text_token)
        if model.depformer is None:
            audio_tokens = None
        elif control.skip_depth:
            audio_tokens = torch.full((B, model.dep_q), ZERO_TOKEN, device=text_token.device)
        elif forced_audio is not None:
            audio_tokens = forced_audio.reshape(B, model.dep_q)
        else:
            audio_tokens = self._depth_step(text_token, hidden)  # [B, dep_q]
        if audio_tokens is not None and control.zero_audio is not None:
            audio_tokens = audio_tokens.masked_fill(control.zero_audio[None], ZERO_TOKEN)

        state.offsets += state.exec_mask.long()
        state.steps += 1
        write_position = (state.offsets % cache_len)[:, None]  # [B, 1]
        self._write(slice(0, 1), write_position, text_token[:, None])
        if audio_tokens is not None:
            self._write(slice(1, 1 + model.dep_q), write_position.expand(B, model.dep_q), audio_tokens)
        if state.steps <= self.max_delay:
            return None

        generated_delays = self.delays[None, :1 + model.dep_q]  # [1, 1 + dep_q]
        out_positions = (state.offsets[:, None] - self.max_delay + generated_delays) % cache_len
        tokens = state.cache[:, :1 + model.dep_q].gather(2, out_positions[..., None])[..., 0]  # [B, 1 + dep_q]
        not_ready = (state.offsets <= self.max_delay) | ~state.exec_mask
        tokens[not_ready] = UNGENERATED_TOKEN
        extra = [torch.softmax(head(hidden[:B, 0]), dim=-1) for head in model.extra_heads]
        return StepOutput(tokens, extra, text_logits)

    def _depth_step(self, text_token: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Sample the generated codebooks of one frame, each conditioned on the one before."""
        model = self.model
        depformer = model.depformer
        assert depformer is not None
        depformer.reset_streaming()
        previous = text_token  # [B]
        sampled = []
        for codebook in range(model.dep_q):
            previous_in = previous.repeat(2) if self.guided else previous
            depth_in = model.depth_input(codebook, previous_in[:, None], hidden)  # [B', 1, D]
            logits = model.depth_logits(codebook, depformer(depth_in))[:, 0]  # [B', card]
            previous = self._sample(self._guide(logits).float(), self.options.audio)
            sampled.append(previous)
        return torch.stack(sampled, dim=1)  # [B, dep_q]
