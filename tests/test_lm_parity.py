"""The LM and its generator equal the reference ``moshi`` LM on tiny random weights."""

import pytest
import torch

from delaykit.lm.conditioners import TensorInput
from delaykit.lm.generate import GenerationOptions, LMGenerator
from delaykit.lm.model import LMConfig, LMModel, delay_streams, undelay_streams

pytest.importorskip("moshi")
from moshi.conditioners import ConditionAttributes, TensorCondition
from moshi.models.lm import LMGen
from reference_models import reference_lm

THREE_DELAYS = [0, 0, 1, 2, 2, 2, 0, 1, 2, 2, 3]


def ours_from(reference, kwargs) -> LMModel:
    model = LMModel(LMConfig.from_kyutai(kwargs)).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    return model


def random_codes(B: int, T: int, kwargs: dict, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, kwargs["card"], (B, kwargs["n_q"] + 1, T), generator=generator)
    codes[:, 0] = torch.randint(0, kwargs["text_card"], (B, T), generator=generator)
    return codes


def generate_both(ours, theirs, fed, ours_kwargs=None, theirs_kwargs=None, steps=60):
    """Step both generators over ``fed`` [B, K_fed, T]; return both token streams [B, 1+dep_q, T']."""
    B = fed.shape[0]
    ours_gen = LMGenerator(ours, **(ours_kwargs or {"options": GenerationOptions.greedy()}))
    theirs_gen = LMGen(theirs, **(theirs_kwargs or {"use_sampling": False}))
    ours_tokens, theirs_tokens, ours_heads, theirs_heads = [], [], [], []
    with ours_gen.streaming(B), theirs_gen.streaming(B):
        for t in range(steps):
            ours_out = ours_gen.step(fed[:, :, t])
            theirs_out = theirs_gen.step_with_extra_heads(fed[:, :, t:t + 1])
            assert (ours_out is None) == (theirs_out is None)
            if ours_out is None:
                continue
            ours_tokens.append(ours_out.tokens)
            theirs_tokens.append(theirs_out[0][:, :, 0])
            ours_heads.append(torch.stack(ours_out.extra_heads, 1) if ours_out.extra_heads else torch.zeros(0))
            theirs_heads.append(torch.stack([h[:, 0] for h in theirs_out[1]], 1) if theirs_out[1] else torch.zeros(0))
    return (torch.stack(ours_tokens, -1), torch.stack(theirs_tokens, -1),
            torch.stack(ours_heads), torch.stack(theirs_heads))


@pytest.mark.parametrize("delays", [None, THREE_DELAYS], ids=["moshiko-delays", "three-delays"])
def test_training_logits_match(delays):
    overrides = {} if delays is None else {"delays": delays}
    theirs, kwargs = reference_lm(**overrides)
    ours = ours_from(theirs, kwargs)
    codes = random_codes(2, 20, kwargs)
    with torch.no_grad():
        ours_out, theirs_out = ours(codes), theirs(codes)
    for mine, ref in [(ours_out.logits, theirs_out.logits), (ours_out.text_logits, theirs_out.text_logits)]:
        assert torch.equal(mine.isnan(), ref.isnan())
        torch.testing.assert_close(mine.nan_to_num(0), ref.nan_to_num(0), atol=1e-4, rtol=1e-4)
    assert torch.equal(ours_out.mask, theirs_out.mask)
    assert torch.equal(ours_out.text_mask, theirs_out.text_mask)


@pytest.mark.parametrize("delays", [None, THREE_DELAYS], ids=["moshiko-delays", "three-delays"])
def test_greedy_generation_matches(delays):
    overrides = {} if delays is None else {"delays": delays}
    theirs, kwargs = reference_lm(**overrides)
    ours = ours_from(theirs, kwargs)
    fed = random_codes(2, 64, kwargs, seed=1)[:, 1 + kwargs["dep_q"]:]
    ours_tokens, theirs_tokens, _, _ = generate_both(ours, theirs, fed, steps=64)
    assert ours_tokens.shape[-1] >= 50
    assert torch.equal(ours_tokens, theirs_tokens)


def test_asr_layout_with_extra_heads_matches():
    """stt-1b's shape: no depth transformer, every audio stream fed, semantic-VAD extra heads."""
    theirs, kwargs = reference_lm(dep_q=0, n_q=8, delays=[0] * 9, extra_heads_num_heads=4, extra_heads_dim=6)
    ours = ours_from(theirs, kwargs)
    fed = random_codes(3, 60, kwargs, seed=2)[:, 1:]
    ours_tokens, theirs_tokens, ours_heads, theirs_heads = generate_both(ours, theirs, fed)
    assert torch.equal(ours_tokens, theirs_tokens)
    torch.testing.assert_close(ours_heads, theirs_heads, atol=1e-5, rtol=1e-5)


CONDITIONED = dict(
    cross_attention=True,
    conditioners={
        "cfg": {"type": "lut", "lut": {"n_bins": 4, "dim": 8, "tokenizer": "noop",
                                       "possible_values": ["1.0", "2.0", "3.0", "4.0"]}},
        "speaker": {"type": "tensor", "tensor": {"dim": 12}},
    },
    fuser={"sum": ["cfg"], "cross": ["speaker"]},
)


def conditions_for(B: int, values: list[str], seed: int = 3):
    generator = torch.Generator().manual_seed(seed)
    speaker = torch.randn(B, 5, 12, generator=generator)
    mask = torch.ones(B, 5, dtype=torch.bool)
    mask[:, -1] = False
    return values, speaker, mask


@pytest.mark.parametrize("cfg_coef", [1.0, 2.0])
def test_conditioned_generation_matches(cfg_coef):
    theirs, kwargs = reference_lm(**CONDITIONED)
    ours = ours_from(theirs, kwargs)
    B = 2
    rows = 2 * B if cfg_coef != 1.0 else B
    values, speaker, mask = conditions_for(rows, ["2.0", "3.0", "1.0", "4.0"][:rows])
    if cfg_coef != 1.0:  # the second half is the unconditioned batch
        values[B:] = [None] * B
        mask[B:] = False
    attributes = [ConditionAttributes(text={"cfg": v}, tensor={"speaker": TensorCondition(speaker[i:i + 1], mask[i:i + 1])})
                  for i, v in enumerate(values)]
    theirs_conditions = theirs.condition_provider.prepare_and_provide(attributes)
    ours_conditions = ours.condition_provider({"cfg": values, "speaker": TensorInput(speaker, mask)})
    for name in ("cfg", "speaker"):
        torch.testing.assert_close(ours_conditions[name].embedding, theirs_conditions[name][0])
    fed = random_codes(B, 60, kwargs, seed=4)[:, 1 + kwargs["dep_q"]:]
    ours_tokens, theirs_tokens, _, _ = generate_both(
        ours, theirs, fed,
        ours_kwargs={"options": GenerationOptions.greedy(cfg_coef=cfg_coef), "conditions": ours_conditions},
        theirs_kwargs={"use_sampling": False, "cfg_coef": cfg_coef, "condition_tensors": theirs_conditions})
    assert torch.equal(ours_tokens, theirs_tokens)


def test_batched_streams_are_independent():
    """Items paused with the exec mask or reset give what they give alone."""
    theirs, kwargs = reference_lm()
    ours = ours_from(theirs, kwargs)
    fed = random_codes(2, 30, kwargs, seed=5)[:, 1 + kwargs["dep_q"]:]
    generator = LMGenerator(ours, GenerationOptions.greedy())

    def run_alone(stream):
        out = []
        with generator.streaming(1):
            for t in range(stream.shape[-1]):
                step = generator.step(stream[None, :, t])
                if step is not None:
                    out.append(step.tokens[0])
        return torch.stack(out, -1)

    alone = [run_alone(fed[0]), run_alone(fed[1])]
    with generator.streaming(2):
        out = [[], []]
        item1_time = 0
        for t in range(30):
            paused = t in (4, 5, 11)
            generator.set_exec_mask(torch.tensor([True, not paused]))
            step = generator.step(torch.stack([fed[0, :, t], fed[1, :, item1_time]]))
            if step is not None:
                out[0].append(step.tokens[0])
                if not paused and step.tokens[1, 0] != -2:
                    out[1].append(step.tokens[1])
            if not paused:
                item1_time += 1
        generator.set_exec_mask(torch.tensor([True, True]))
        assert torch.equal(torch.stack(out[0], -1), alone[0])
        item1 = torch.stack(out[1], -1)
        assert torch.equal(item1, alone[1][:, :item1.shape[-1]])
        generator.reset(torch.tensor([False, True]))
        restarted = []
        for t in range(30):
            step = generator.step(torch.stack([fed[0, :, 0], fed[1, :, t]]))
            if step is not None and step.tokens[1, 0] != -2:
                restarted.append(step.tokens[1])
        assert torch.equal(torch.stack(restarted, -1), alone[1])


def test_sampling_is_seeded():
    theirs, kwargs = reference_lm()
    ours = ours_from(theirs, kwargs)
    fed = random_codes(1, 20, kwargs, seed=6)[:, 1 + kwargs["dep_q"]:]

    def run(seed):
        generator = LMGenerator(ours, GenerationOptions(seed=seed))
        with generator.streaming(1):
            return torch.stack([s.tokens for t in range(20) if (s := generator.step(fed[:, :, t]))], -1)

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_published_moshiko_keys_and_shapes():
    from moshi.models import loaders
    from moshi.models.lm import LMModel as ReferenceLM

    with torch.device("meta"):
        reference = ReferenceLM(**loaders._lm_kwargs, device="meta")
        ours = LMModel(LMConfig.from_kyutai(dict(loaders._lm_kwargs)))
    theirs_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert len(theirs_shapes) == 439
    assert ours_shapes == theirs_shapes


def test_streaming_lm_equals_offline_across_wrap():
    """The temporal and depth transformers stepped one token at a time give the offline logits."""
    theirs, kwargs = reference_lm()
    ours = ours_from(theirs, kwargs)
    codes = random_codes(2, 30, kwargs, seed=9)  # 30 steps > context 12: the ring cache wraps
    with torch.no_grad():
        offline = ours(codes)
        initial = ours.initial_tokens(2)
        delayed = torch.cat([initial, delay_streams(codes, ours.delays, initial)], dim=2)
        with ours.streaming(2), ours.depformer.streaming(2):
            text, audio = [], []
            for t in range(30):
                hidden, text_logits = ours.forward_temporal(delayed[:, :, t:t + 1])
                text.append(text_logits)
                ours.depformer.reset_streaming()
                per_codebook = []
                for q in range(ours.dep_q):
                    depth_in = ours.depth_input(q, delayed[:, q, t + 1:t + 2], hidden)
                    per_codebook.append(ours.depth_logits(q, ours.depformer(depth_in)))
                audio.append(torch.stack(per_codebook, dim=1))  # [B, dep_q, 1, card]
    streamed_text, _ = undelay_streams(torch.cat(text, dim=2), ours.delays[:1], float("nan"))
    streamed_audio, _ = undelay_streams(torch.cat(audio, dim=2), ours.delays[1:1 + ours.dep_q], float("nan"))
    for streamed, reference in [(streamed_text, offline.text_logits), (streamed_audio, offline.logits)]:
        assert torch.equal(streamed.isnan(), reference.isnan())
        torch.testing.assert_close(streamed.nan_to_num(0), reference.nan_to_num(0), atol=1e-4, rtol=1e-4)


def test_seeded_sampling_of_an_item_does_not_depend_on_its_batch():
    theirs, kwargs = reference_lm()
    ours = ours_from(theirs, kwargs)
    fed = random_codes(2, 24, kwargs, seed=10)[:, 1 + kwargs["dep_q"]:]
    generator = LMGenerator(ours, GenerationOptions(seed=5))
    with generator.streaming(1):
        alone = torch.stack([s.tokens[0] for t in range(24) if (s := generator.step(fed[1:, :, t]))], -1)
    with generator.streaming(2):
        together, item1_time = [], 0
        for t in range(30):
            paused = t in (3, 7, 8)
            generator.set_exec_mask(torch.tensor([True, not paused]))
            step = generator.step(torch.stack([fed[0, :, t % 24], fed[1, :, min(item1_time, 23)]]))
            if not paused:
                item1_time += 1
                if step is not None and step.tokens[1, 0] != -2:
                    together.append(step.tokens[1])
            if item1_time == 24:
                break
    assert torch.equal(torch.stack(together, -1), alone)
