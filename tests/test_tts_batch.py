"""Batched synthesis: each item of a BatchSynthesisStream gets exactly what a SynthesisStream gives it alone
(tokens, words and audio), whatever the other items do: items started at different steps, an item waiting
for its words while others run, items stopped and their slots restarted, greedy, sampled with per-item
seeds and paces, and with direct (two-half) CFG; the scheduler that serves several threads from one batch."""

import time

import pytest
import torch

from delaykit.engine import load_engine
from delaykit.modes.script import parse_turns
from delaykit.modes.tts import AudioFrame, SpokenWord, SynthesisOptions, Synthesizer, TokenFrame
from delaykit.modes.tts_batch import BatchSynthesisStream
from delaykit.modes.tts_scheduler import SynthesisScheduler

pytest.importorskip("moshi")  # the tiny checkpoints are built with the reference's constructors
from test_train_lm import tokenizer  # noqa: F401  (a fixture)
from test_tts import SCRIPT, build_checkpoint, voices

SCRIPTS = [SCRIPT[0], "hello there how are you", "the lazy dog <break time=\"0.2s\"/> jumps over"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return load_engine(build_checkpoint(tmp_path_factory.mktemp("tts-batch"))[0], device="cpu")


@pytest.fixture(scope="module")
def direct_cfg_engine(tmp_path_factory):
    directory = build_checkpoint(tmp_path_factory.mktemp("tts-batch-direct"), distilled_cfg=False)[0]
    return load_engine(directory, device="cpu")


def options(**overrides) -> SynthesisOptions:
    overrides.setdefault("temperature", 0.0)
    overrides.setdefault("voices", voices())
    return SynthesisOptions(token_frames=True, **overrides)


class Outcome:
    """What one synthesis produced: its token frames, spoken words and audio frames, in order."""

    def __init__(self) -> None:
        self.events: list = []

    def of(self, kind: type) -> list:
        return [event for event in self.events if isinstance(event, kind)]

    def assert_equals(self, alone: "Outcome") -> None:
        ours, theirs = self.of(TokenFrame), alone.of(TokenFrame)
        assert [frame.index for frame in ours] == [frame.index for frame in theirs]
        assert torch.equal(torch.stack([f.tokens for f in ours]), torch.stack([f.tokens for f in theirs]))
        assert self.of(SpokenWord) == alone.of(SpokenWord)
        audio, expected = self.of(AudioFrame), alone.of(AudioFrame)
        assert len(audio) == len(expected) > 0
        assert [frame.start for frame in audio] == [frame.start for frame in expected]
        assert torch.equal(torch.stack([f.tokens for f in audio]), torch.stack([f.tokens for f in expected]))
        # the codec decodes a batch of items: the same samples to within float rounding
        pcm, expected_pcm = torch.stack([f.pcm for f in audio]), torch.stack([f.pcm for f in expected])
        torch.testing.assert_close(pcm, expected_pcm, atol=1e-5, rtol=0)


def alone(engine, script: str, synthesis: SynthesisOptions) -> Outcome:
    outcome = Outcome()
    with Synthesizer(engine, synthesis).stream() as stream:
        stream.push_items(parse_turns(script))
        stream.end_of_text()
        outcome.events = list(stream.events())
    return outcome


def wait_until_idle(scheduler: SynthesisScheduler) -> None:
    """Block until the scheduler has closed its batch stream and released the engine (10 s at most)."""
    deadline = time.monotonic() + 10
    while scheduler.holds_engine:
        assert time.monotonic() < deadline, "the idle scheduler kept its stream open"
        time.sleep(0.01)


def steps(batch: BatchSynthesisStream, outcomes: dict[int, Outcome], count: int | None = None) -> None:
    """``count`` batched steps of the ready slots (None: until none is ready), their events kept by slot."""
    taken = 0
    while (count is None or taken < count) and batch.ready():
        for slot, events in batch.step().items():
            outcomes[slot].events += events
        taken += 1


def test_items_started_apart_and_waiting_for_words_get_what_they_get_alone(engine):
    """Slot 0 starts first; slot 2 starts 3 steps later with one word and waits for the rest while slot 0
    runs; slot 1 starts later still; each item has its own pace or spacing of words."""
    scripts = {0: SCRIPTS[0], 2: SCRIPTS[1], 1: SCRIPTS[2]}
    chosen = {0: options(), 2: options(padding_bonus=1.5), 1: options(padding_between=2)}
    outcomes = {slot: Outcome() for slot in scripts}
    with BatchSynthesisStream(Synthesizer(engine, chosen[0]), batch_size=4) as batch:
        batch.start(0)
        batch.push_text(0, scripts[0])
        batch.end_of_text(0)
        steps(batch, outcomes, 3)
        batch.start(2, Synthesizer(engine, chosen[2]))
        first, *rest = parse_turns(scripts[2])
        batch.push_items(2, [first])  # one word so far: the item soon waits for more
        waited = 0  # steps slot 0 took while slot 2 waited for words
        while waited < 3:
            assert batch.item(2).steps < 40, "slot 2 never waited for its words"
            waiting, before = 2 not in batch.ready(), batch.item(2).steps
            steps(batch, outcomes, 1)
            if waiting:  # masked out: its state stays as it was
                assert batch.item(2).steps == before
                waited += 1
        assert 0 in batch.ready() and 2 not in batch.ready()
        batch.start(1, Synthesizer(engine, chosen[1]))
        batch.push_text(1, scripts[1])
        batch.end_of_text(1)
        steps(batch, outcomes, 2)
        batch.push_items(2, rest)
        batch.end_of_text(2)
        steps(batch, outcomes)
        assert all(batch.finished(slot) for slot in scripts) and batch.free_slots() == [3]
    for slot, script in scripts.items():
        outcomes[slot].assert_equals(alone(engine, script, chosen[slot]))


def test_items_decode_their_audio_in_chunks(engine, monkeypatch):
    """Audio is decoded in chunks of up to ``decode_frames`` (4) frames, slots with as many frames waiting in one
    codec call: far fewer calls than frames, and each item still gets its audio alone, none lost or repeated."""
    chunk_sizes = []
    decode = engine.codec.decode

    def counted(codes: torch.Tensor) -> torch.Tensor:
        chunk_sizes.append(codes.shape[-1])
        return decode(codes)

    chosen = {0: options(), 1: options(padding_bonus=1.0)}
    outcomes = {slot: Outcome() for slot in chosen}
    with BatchSynthesisStream(Synthesizer(engine, chosen[0]), batch_size=2) as batch:
        monkeypatch.setattr(engine.codec, "decode", counted)
        for slot, synthesis in chosen.items():
            batch.start(slot, Synthesizer(engine, synthesis))
            batch.push_text(slot, SCRIPTS[slot])
            batch.end_of_text(slot)
        steps(batch, outcomes)
        monkeypatch.undo()
    frames = sum(len(outcome.of(AudioFrame)) for outcome in outcomes.values())
    assert max(chunk_sizes) == 4 and len(chunk_sizes) < frames / 3
    for slot, synthesis in chosen.items():
        outcomes[slot].assert_equals(alone(engine, SCRIPTS[slot], synthesis))


def test_sampled_items_follow_their_own_seeds(engine):
    """Sampling: each item draws from its own seeded generator, so it samples what it samples alone."""
    chosen = [options(temperature=0.8, seed=seed) for seed in (1, 2, 1)]
    outcomes = {slot: Outcome() for slot in range(3)}
    with BatchSynthesisStream(Synthesizer(engine, chosen[0]), batch_size=3) as batch:
        for slot in range(3):
            batch.start(slot, Synthesizer(engine, chosen[slot]))
            batch.push_text(slot, SCRIPTS[slot % 2])
            batch.end_of_text(slot)
            steps(batch, outcomes, 2)
        steps(batch, outcomes)
    for slot in range(3):
        outcomes[slot].assert_equals(alone(engine, SCRIPTS[slot % 2], chosen[slot]))
    assert not torch.equal(outcomes[0].of(TokenFrame)[-1].tokens, outcomes[1].of(TokenFrame)[-1].tokens)


def test_a_stopped_slot_restarts_afresh(engine):
    """Stopping an item mid-speech frees its slot; the next synthesis there starts from a clean state."""
    chosen = options()
    outcomes = {0: Outcome(), 1: Outcome()}
    with BatchSynthesisStream(Synthesizer(engine, chosen), batch_size=2) as batch:
        for slot in range(2):
            batch.start(slot)
            batch.push_text(slot, SCRIPTS[slot])
            batch.end_of_text(slot)
        steps(batch, outcomes, 20)
        batch.stop(1)
        assert batch.free_slots() == [1] and batch.ready() == [0]
        steps(batch, outcomes, 5)
        outcomes[1] = Outcome()
        batch.start(1)
        batch.push_text(1, SCRIPTS[2])
        batch.end_of_text(1)
        steps(batch, outcomes)
    outcomes[0].assert_equals(alone(engine, SCRIPTS[0], chosen))
    outcomes[1].assert_equals(alone(engine, SCRIPTS[2], chosen))


def test_direct_cfg_items_get_what_they_get_alone(direct_cfg_engine):
    """Two-half guidance: each item's unconditioned row sits in the second half of the model's batch."""
    chosen = options(cfg_coef=2.0)
    outcomes = {0: Outcome(), 1: Outcome()}
    with BatchSynthesisStream(Synthesizer(direct_cfg_engine, chosen), batch_size=2) as batch:
        batch.start(1)
        batch.push_text(1, SCRIPTS[1])
        batch.end_of_text(1)
        steps(batch, outcomes, 4)
        batch.start(0)
        batch.push_text(0, SCRIPTS[0])
        batch.end_of_text(0)
        steps(batch, outcomes)
    for slot in range(2):
        outcomes[slot].assert_equals(alone(direct_cfg_engine, SCRIPTS[slot], chosen))


def test_items_speak_in_their_own_named_voices(tokenizer, tmp_path):  # noqa: F811
    """A model with named voices (summed conditions): each item's voice, pitch and rate are its own."""
    from test_tts_voices import voiced_checkpoint

    model = voiced_checkpoint(tokenizer, tmp_path)
    engine = load_engine(model, device="cpu")
    chosen = [SynthesisOptions(seed=3, token_frames=True, voice=voice, pitch=pitch, rate=rate)
              for voice, pitch, rate in (("en-us+f3", -1, 1.2), ("en-gb+m1", 2, 0.8))]
    outcomes = {0: Outcome(), 1: Outcome()}
    with BatchSynthesisStream(Synthesizer(engine, chosen[0]), batch_size=2) as batch:
        for slot in range(2):
            batch.start(slot, Synthesizer(engine, chosen[slot]))
            batch.push_text(slot, "one two three")
            batch.end_of_text(slot)
        steps(batch, outcomes)
    for slot in range(2):
        outcomes[slot].assert_equals(alone(engine, "one two three", chosen[slot]))
    assert not torch.equal(outcomes[0].of(TokenFrame)[-1].tokens, outcomes[1].of(TokenFrame)[-1].tokens)


def test_what_items_share_must_match(engine):
    with BatchSynthesisStream(Synthesizer(engine, options()), batch_size=2) as batch:
        with pytest.raises(ValueError, match="sampling settings"):
            batch.start(0, Synthesizer(engine, options(temperature=0.5)))
        other_voice = (voices()[0] * 2,)
        with pytest.raises(ValueError, match="cross-attention voice"):
            batch.start(0, Synthesizer(engine, options(voices=other_voice)))
        with pytest.raises(ValueError, match="holds no synthesis"):
            batch.push_text(1, "hello")
        with pytest.raises(ValueError, match="cannot step"):
            batch.step([1])  # a free slot


def test_scheduler_runs_requests_with_other_sampling_settings_in_turn(engine):
    """A request whose sampling settings differ from the running batch's waits for it to empty (and those
    behind it wait too); every request still gets what it gets alone, and an idle scheduler frees the engine."""
    chosen = [options(), options(temperature=0.8, seed=2), options(padding_bonus=1.0)]
    scheduler = SynthesisScheduler(max_items=3)
    try:
        requests = [scheduler.submit(Synthesizer(engine, synthesis), parse_turns(SCRIPTS[index]))
                    for index, synthesis in enumerate(chosen)]
        results = [list(request.results()) for request in requests]
        assert scheduler.metrics.requests == 3 and scheduler.metrics.max_batch == 1
        wait_until_idle(scheduler)
        for index, events in enumerate(results):  # the engine is free for a synthesis alone
            outcome = Outcome()
            outcome.events = events
            outcome.assert_equals(alone(engine, SCRIPTS[index], chosen[index]))
    finally:
        scheduler.close()


def test_scheduler_takes_words_as_they_arrive(engine):
    """A request submitted with more_text gets its words a few at a time while another request runs, and still
    gets exactly what it gets alone; a word the tokenizer refuses fails its own request only."""
    from delaykit.errors import TextError
    from delaykit.modes.script import ScriptWord

    scheduler = SynthesisScheduler(max_items=3)
    try:
        words = parse_turns(SCRIPTS[1])
        streamed = scheduler.submit(Synthesizer(engine, options()), words[:1], more_text=True)
        whole = scheduler.submit(Synthesizer(engine, options()), parse_turns(SCRIPTS[2]))
        refused = scheduler.submit(Synthesizer(engine, options()), [], more_text=True)
        refused.push_items([ScriptWord("", 0)])
        for word in words[1:]:
            time.sleep(0.02)
            streamed.push_items([word])
        streamed.end_of_text()
        outcomes = []
        for request in (streamed, whole):
            outcome = Outcome()
            outcome.events = list(request.results())
            outcomes.append(outcome)
        with pytest.raises(TextError):
            list(refused.results())
        assert scheduler.metrics.max_batch >= 2
        wait_until_idle(scheduler)  # a synthesis alone needs the engine's streaming state to itself
        for outcome, script in zip(outcomes, (SCRIPTS[1], SCRIPTS[2])):
            outcome.assert_equals(alone(engine, script, options()))
    finally:
        scheduler.close()
