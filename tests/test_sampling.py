"""Token sampling: greedy, temperature, top-k, top-p, seeded."""

import torch

from delaykit.lm.sampling import SamplingOptions, sample_token

LOGITS = torch.tensor([[2.0, 1.0, 0.5, -1.0, 3.0, 0.0]])  # most likely: 4, then 0, then 1


def draw(options: SamplingOptions, count: int = 4000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return sample_token(LOGITS.expand(count, -1), options, generator)  # [count]


def test_greedy_is_argmax_for_any_shape():
    logits = torch.randn(3, 2, 7)
    assert torch.equal(sample_token(logits, SamplingOptions()), logits.argmax(-1))


def test_top_k_never_leaves_the_k_best():
    tokens = draw(SamplingOptions(temperature=1.0, top_k=2))
    assert set(tokens.tolist()) == {4, 0}
    assert torch.equal(draw(SamplingOptions(temperature=1.0, top_k=1)), torch.full((4000,), 4))


def test_top_p_keeps_the_smallest_likely_set():
    probabilities = torch.softmax(LOGITS[0], -1)  # token 4: 0.61, token 0: 0.22, ...
    assert probabilities[4] < 0.7 < probabilities[4] + probabilities[0]
    assert set(draw(SamplingOptions(temperature=1.0, top_p=0.7)).tolist()) == {4, 0}
    assert set(draw(SamplingOptions(temperature=1.0, top_p=0.5)).tolist()) == {4}


def test_frequencies_follow_the_tempered_distribution():
    for temperature in (0.5, 1.0, 2.0):
        tokens = draw(SamplingOptions(temperature=temperature), count=20000)
        observed = torch.bincount(tokens, minlength=6).float() / tokens.numel()
        expected = torch.softmax(LOGITS[0] / temperature, -1)
        assert (observed - expected).abs().max() < 0.015, temperature


def test_seeded_draws_repeat_and_differ_by_seed():
    options = SamplingOptions(temperature=1.0)
    assert torch.equal(draw(options, seed=3), draw(options, seed=3))
    assert not torch.equal(draw(options, seed=3), draw(options, seed=4))
