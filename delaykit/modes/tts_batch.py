"""Several syntheses at once, as the items of one batched LM stream.

A :class:`BatchSynthesisStream` holds ``batch_size`` slots. Each started slot is one synthesis with its own
script and word queue (a :class:`~delaykit.modes.tts.SynthesisItem`), its own seed, voice (the summed
conditions: a named voice, pitch, rate, distilled CFG) and pace; slots start, finish and stop independently.
One ``step`` advances every slot that can step (started, not finished, not waiting for words) by one 80 ms
frame in one batched model call; the others are masked out (exec masks of the generator and the codec), so
their state stays as it was. Each item thus gets exactly what it gets alone in a ``SynthesisStream``: the
same tokens and words, with greedy decoding or with sampling from its own seed.

What the items of a batch share: the engine, the sampling settings (temperature, top-k), direct CFG's
coefficient, and a cross-attention voice (``SynthesisOptions.voices``); they come from the stream's
synthesizer, and an item whose own synthesizer differs there is refused. An item's first frames feed "zero"
audio codebooks (the audio lags the text); items in those first frames are stepped in their own model call,
one per distinct phase, since the gates apply to a whole call.

Usage::

    with BatchSynthesisStream(synthesizer, batch_size=4) as batch:
        batch.start(0)                                   # slot 0 with the synthesizer's own options
        batch.start(1, model.synthesizer(SynthesisOptions(seed=2, voice="en-gb+m1")))
        batch.push_text(0, "Hello there."); batch.end_of_text(0)
        batch.push_text(1, "Streaming")                  # more may follow: slot 1 waits for its words
        for slot, event in batch.events():               # AudioFrame / SpokenWord / TokenFrame per slot
            ...
        batch.stop(0)                                    # the slot is free for the next start()
"""

from __future__ import annotations

import dataclasses
import typing as tp

import torch

from ..lm.conditioners import Condition
from ..lm.generate import LMGenerator, StepControl
from .script import ScriptItem, parse_text
from .session import EngineSession
from .tts import SynthesisEvent, SynthesisItem, Synthesizer

__all__ = ["BatchSynthesisStream"]


def repeat_conditions(conditions: dict[str, Condition] | None, batch_size: int) -> dict[str, Condition] | None:
    """Conditions of batch 1 (or 2: conditioned, unconditioned) for ``batch_size`` items, each half's row
    repeated in place: [c, u] -> [c] * B + [u] * B, the layout of a guided generator's batch."""
    if conditions is None:
        return None
    return {name: Condition(condition.embedding.repeat_interleave(batch_size, 0),  # [B', S, dim]
                            condition.mask.repeat_interleave(batch_size, 0))  # [B', S]
            for name, condition in conditions.items()}


class BatchSynthesisStream(EngineSession):
    """``batch_size`` independent syntheses stepped together; see the module docstring."""

    def __init__(self, synthesizer: Synthesizer, batch_size: int):
        self.synthesizer = synthesizer
        self.batch_size = batch_size
        options = synthesizer.generator.options
        # Sampling needs one generator per item (seeded per item at its start); greedy decoding draws nothing.
        sampling = not (options.text.greedy and options.audio.greedy)
        generation = dataclasses.replace(options, seed=0 if sampling else None)
        self.generator = LMGenerator(synthesizer.lm, generation,
                                     repeat_conditions(synthesizer.conditions, batch_size))
        self.codec = synthesizer.codec
        self.items: list[SynthesisItem | None] = [None] * batch_size  # None: a free slot
        vocabulary = synthesizer.lm.text_linear.out_features
        self._text_bias = torch.zeros(batch_size, vocabulary, device=synthesizer.engine.device)  # [B, V]
        self._exec_masks: dict[str, torch.Tensor] = {}  # [B] the last exec mask set on the LM and the codec
        super().__init__(self.codec, self.generator, batch_size)
        self._cross_source = None  # [B', S, dim] the voice every item shares (cross-attention), if any
        if self.generator.state is not None and self.generator.state.cross_source is not None:
            self._cross_source = self.generator.state.cross_source.clone()

    # -- slots --------------------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self.closed:
            raise RuntimeError("this batch synthesis stream is closed")

    def _mask(self, slots: tp.Iterable[int]) -> torch.Tensor:
        mask = torch.zeros(self.batch_size, dtype=torch.bool)  # [B]
        mask[list(slots)] = True
        return mask

    def item(self, slot: int) -> SynthesisItem:
        """The synthesis in ``slot`` (steps, frames out, finished, its word feeder)."""
        item = self.items[slot]
        if item is None:
            raise ValueError(f"slot {slot} holds no synthesis: start() it first")
        return item

    def free_slots(self) -> list[int]:
        return [slot for slot, item in enumerate(self.items) if item is None]

    def start(self, slot: int, synthesizer: Synthesizer | None = None) -> None:
        """(Re)start ``slot`` as a fresh synthesis with ``synthesizer``'s options (default: the stream's). Its
        seed, voice conditions and pace are its own; what the batch shares must equal the stream's."""
        self._require_open()
        synthesizer = synthesizer or self.synthesizer
        reason = self.incompatibility(synthesizer)
        if reason is not None:
            raise ValueError(f"{reason}: open another stream for this synthesis")
        device = self.synthesizer.engine.device
        mask = self._mask([slot])
        self.codec.reset_streaming(mask.to(device))
        self.generator.reset(mask.to(device))
        self._exec_masks.clear()  # a reset sets the slot's exec masks
        state = self.generator.state
        assert state is not None
        if state.generators is not None:
            seed = synthesizer.options.seed
            if seed is None:  # unseeded: a seed drawn from torch's global generator
                seed = int(torch.randint(2**62, ()))
            state.generators[slot].manual_seed(seed)
        rows = [slot, slot + self.batch_size] if self.generator.guided else [slot]
        condition_sum, _ = synthesizer.lm.condition_inputs(synthesizer.conditions)  # [1 or 2, 1, dim]
        if condition_sum is not None:
            assert state.condition_sum is not None
            state.condition_sum[rows] = condition_sum.to(state.condition_sum)
        self._text_bias[slot] = 0.0 if synthesizer.text_bias is None else synthesizer.text_bias
        self.items[slot] = SynthesisItem(synthesizer)

    def incompatibility(self, synthesizer: Synthesizer) -> str | None:
        """Why an item with ``synthesizer`` cannot join this batch (what the batch shares differs), or None."""
        base = self.synthesizer
        if synthesizer.lm is not base.lm:
            return "every item of a batch must use the stream's engine"
        if dataclasses.replace(synthesizer.generator.options, seed=None) != dataclasses.replace(
                base.generator.options, seed=None):
            return "the items of a batch share the sampling settings (temperature, top-k, direct CFG)"
        if self._cross_source is not None:
            _, cross = synthesizer.lm.condition_inputs(synthesizer.conditions)  # [1 or 2, S, dim]
            expected = self._cross_source[:: self.batch_size]  # the first item's row of each half
            if cross is None or cross.shape != expected.shape or not torch.equal(cross.to(expected), expected):
                return "the items of a batch share their cross-attention voice (SynthesisOptions.voices)"
        return None

    def stop(self, slot: int) -> None:
        """Drop the synthesis in ``slot`` (finished or not); the slot is free for the next ``start``."""
        self._require_open()
        self.items[slot] = None

    # -- input --------------------------------------------------------------------------------------------

    def push_items(self, slot: int, items: tp.Iterable[ScriptItem]) -> None:
        """Queue parsed script items (words and breaks) for ``slot``."""
        self._require_open()
        self.item(slot).push_items(items)

    def push_text(self, slot: int, text: str | bytes, speaker: int = 0) -> None:
        """Queue the words (and ``<break time=.../>`` pauses) of ``text`` for ``slot``."""
        self.push_items(slot, parse_text(text, speaker))

    def end_of_text(self, slot: int) -> None:
        """No more text will come for ``slot``: its speech ends after the queued words."""
        self._require_open()
        self.item(slot).feeder.text_ended = True

    # -- output -------------------------------------------------------------------------------------------

    def ready(self) -> list[int]:
        """The slots whose next step can be taken now."""
        return [slot for slot, item in enumerate(self.items) if item is not None and item.ready()]

    def finished(self, slot: int) -> bool:
        return self.item(slot).finished

    def events(self, max_steps: int | None = None) -> tp.Iterator[tuple[int, SynthesisEvent]]:
        """Step while any slot can (at most ``max_steps`` steps); yields (slot, event) as they come."""
        taken = 0
        while (max_steps is None or taken < max_steps) and (slots := self.ready()):
            for slot, events in self.step(slots).items():
                for event in events:
                    yield slot, event
            taken += 1
        waiting = [slot for slot, item in enumerate(self.items) if item is not None and item.undecoded]
        for slot, frames in self._decode_waiting(waiting).items():
            for frame in frames:
                yield slot, frame

    @torch.no_grad()
    def step(self, slots: tp.Sequence[int] | None = None) -> dict[int, list[SynthesisEvent]]:
        """One frame for ``slots`` (default: every ready slot), in one batched step (plus one per warm-up
        phase of items in their first frames); returns each slot's events.

        Audio is decoded in chunks, as ``SynthesisStream.events`` does: a slot's voiced frames wait until they
        make a chunk (``SynthesisOptions.decode_frames``, growing from 1 with the audio out), or until the slot
        cannot step on (finished, or waiting for words), so its ``AudioFrame`` events may come with a later
        step's; each comes exactly once, in order."""
        self._require_open()
        ready = self.ready()
        slots = ready if slots is None else list(slots)
        not_ready = [slot for slot in slots if slot not in ready]
        if not_ready:
            raise ValueError(f"slots {not_ready} cannot step now (free, finished or waiting for words)")
        phases: dict[int, list[int]] = {}
        for slot in slots:
            phases.setdefault(self.item(slot).warmup_phase(), []).append(slot)
        outputs: dict[int, torch.Tensor | None] = {}  # [1 + dep_q] per slot
        for members in phases.values():
            tokens = self._step_phase(members)  # [B, 1 + dep_q] or None
            for slot in members:  # an item's output comes once it has taken max(delays) steps
                young = self.item(slot).steps < self.synthesizer.max_delay
                outputs[slot] = None if tokens is None or young else tokens[slot]
        events = {slot: self.item(slot).after_step(outputs[slot]) for slot in slots}
        # a slot that cannot step on (finished, or waiting for words) decodes what waits at once
        due = [slot for slot in slots if (item := self.item(slot)).undecoded and (
            not item.ready() or item.chunk_ready())]
        for slot, frames in self._decode_waiting(due).items():
            events.setdefault(slot, []).extend(frames)
        return events

    def _step_phase(self, slots: list[int]) -> torch.Tensor | None:
        """One generator step for ``slots`` (items sharing a warm-up phase); the output tokens [B, 1 + dep_q]
        (None while no item has passed ``max(delays)`` steps)."""
        items = [self.item(slot) for slot in slots]
        zero_audio, skip_depth = items[0].audio_gates()  # [dep_q], bool: the same for the whole phase

        def choose_text(sampled: torch.Tensor) -> torch.Tensor:  # [B] -> [B]
            chosen = sampled.clone()
            for slot, item in zip(slots, items, strict=True):
                chosen[slot] = item.choose_text(int(sampled[slot]))
            return chosen

        text_bias = self._text_bias if bool(self._text_bias.any()) else None  # [B, V]
        control = StepControl(text_bias=text_bias, choose_text=choose_text, zero_audio=zero_audio,
                              skip_depth=skip_depth)
        self._set_exec_mask(self.generator, "lm", self._mask(slots))
        output = self.generator.step(self.synthesizer.fed_tokens(self.batch_size), control=control)
        return None if output is None else output.tokens

    def _set_exec_mask(self, model: tp.Any, name: str, mask: torch.Tensor) -> None:
        """Set ``model``'s exec mask [B] unless it is already set (a walk over every streaming module)."""
        if self._exec_masks.get(name) is None or not torch.equal(self._exec_masks[name], mask):
            model.set_exec_mask(mask.to(self.synthesizer.engine.device))
            self._exec_masks[name] = mask

    def _decode_waiting(self, due: tp.Sequence[int]) -> dict[int, list[SynthesisEvent]]:
        """Decode the waiting frames of the ``due`` slots (and of any other slot with as many waiting: it rides
        along), one codec call per chunk length; each slot's ``AudioFrame`` events, in order."""
        waiting = {slot: len(item.undecoded) for slot, item in enumerate(self.items) if item is not None}
        events: dict[int, list[SynthesisEvent]] = {}
        dep_q = self.synthesizer.lm.dep_q
        for length in sorted({waiting[slot] for slot in due} - {0}):
            members = [slot for slot, count in waiting.items() if count == length]
            batch = torch.zeros(self.batch_size, dep_q, length, dtype=torch.long)  # [B, dep_q, n]
            for slot in members:
                batch[slot] = self.item(slot).waiting_codes()
            self._set_exec_mask(self.codec, "codec", self._mask(members))
            pcm = self.codec.decode(batch.to(self.synthesizer.engine.device))[:, 0].float().clamp(-1, 1)  # [B, n * frame]
            for slot in members:
                events[slot] = self.item(slot).take_audio(pcm[slot])
        return events
