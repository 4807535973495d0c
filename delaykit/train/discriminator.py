"""Adversarial training of a codec's decoder: a multi-resolution STFT discriminator and its losses.

Spectral losses alone make a decoder predict the average of what could be there, which in speech means
blurred, noisy harmonics. A discriminator that looks at complex spectrograms (real and imaginary parts, so phase
too) at several resolutions learns to tell decoded audio from real audio, and the decoder is trained to fool it
(the approach of EnCodec and Mimi). Three losses, all hinge-style:

- discriminator: ``mean(relu(1 - D(real))) + mean(relu(1 + D(decoded)))`` per resolution;
- adversarial (decoder): ``mean(relu(1 - D(decoded)))``;
- feature matching (decoder): the L1 distance between the discriminator's inner activations on real and
  decoded audio, each layer divided by the mean magnitude of its real activations.

Each is averaged over resolutions (and layers). The discriminator is training-only: ``export_codec`` never
writes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class DiscriminatorConfig:
    """Shape of :class:`MultiResolutionDiscriminator`."""

    # Sized for CPU training (one pass over a batch costs about as much as the codec's own step); EnCodec's
    # GPU-sized one is windows (2048, 1024, 512, 256, 128) with 32 channels, about 10x the compute.
    windows: tuple[int, ...] = (1024, 512, 256)  # STFT sizes (hop: a quarter of each)
    channels: int = 16
    layers: int = 3  # 2-D conv blocks per resolution, each halving the frequency axis


class SpectrogramDiscriminator(nn.Module):
    """Scores the complex STFT of audio at one resolution: logits over (time, frequency) patches and every
    inner activation (for feature matching)."""

    def __init__(self, window: int, channels: int, layers: int):
        super().__init__()
        self.window = window
        self.register_buffer("taper", torch.hann_window(window), persistent=False)
        convs = [nn.Conv2d(2, channels, kernel_size=(3, 9), padding=(1, 4))]
        for _ in range(layers):
            convs.append(nn.Conv2d(channels, channels, kernel_size=(3, 9), stride=(1, 2),
                                   padding=(1, 4)))
        convs.append(nn.Conv2d(channels, channels, kernel_size=(3, 3), padding=(1, 1)))
        self.convs = nn.ModuleList(convs)
        self.out = nn.Conv2d(channels, 1, kernel_size=(3, 3), padding=(1, 1))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``audio`` [B, 1, T] -> (logits [B, 1, frames, bins'], activations)."""
        spectrum = torch.stft(audio[:, 0], self.window, hop_length=self.window // 4, window=self.taper,
                              return_complex=True)  # [B, bins, frames]
        x = torch.stack([spectrum.real, spectrum.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
        activations = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)  # [B, C, frames, bins / 2^k]
            activations.append(x)
        return self.out(x), activations


class MultiResolutionDiscriminator(nn.Module):
    """One :class:`SpectrogramDiscriminator` per STFT size."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        self.scales = nn.ModuleList([SpectrogramDiscriminator(window, config.channels, config.layers)
                                     for window in config.windows])

    def forward(self, audio: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """``audio`` [B, 1, T] -> each resolution's (logits, activations)."""
        return [scale(audio) for scale in self.scales]


Scores = list[tuple[torch.Tensor, list[torch.Tensor]]]  # each resolution's (logits, activations)


def discriminator_loss(discriminator: MultiResolutionDiscriminator, real_scores: Scores, decoded: torch.Tensor
                       ) -> torch.Tensor:
    """The hinge loss that teaches ``discriminator`` real audio (its ``real_scores``) from ``decoded``
    [B, 1, T] (which is detached: this loss trains the discriminator only)."""
    decoded_scores = discriminator(decoded.detach())
    losses = [F.relu(1 - real_logits).mean() + F.relu(1 + decoded_logits).mean()
              for (real_logits, _), (decoded_logits, _) in zip(real_scores, decoded_scores, strict=True)]
    return torch.stack(losses).mean()


def generator_losses(discriminator: MultiResolutionDiscriminator, real_scores: Scores, decoded: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial, feature-matching) losses of ``decoded`` [B, 1, T] against real audio (its
    ``real_scores``, the feature targets, taken as constants); their gradients reach the decoder through the
    discriminator (whose own gradients the caller discards)."""
    decoded_scores = discriminator(decoded)
    adversarial, matching = [], []
    for (_, real_features), (decoded_logits, decoded_features) in zip(real_scores, decoded_scores, strict=True):
        adversarial.append(F.relu(1 - decoded_logits).mean())
        matching.extend((decoded - target.detach()).abs().mean() / target.detach().abs().mean().clamp_min(1e-6)
                        for target, decoded in zip(real_features, decoded_features, strict=True))
    return torch.stack(adversarial).mean(), torch.stack(matching).mean()
