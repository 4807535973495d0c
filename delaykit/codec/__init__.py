"""Building blocks of the Mimi neural audio codec: causal streaming convs, SEANet, resampling, split RVQ."""

from delaykit.codec.conv import CausalConv1d, CausalConvTranspose1d
from delaykit.codec.quantizer import QuantizerConfig, QuantizerOutput, SplitResidualVQ
from delaykit.codec.resample import ConvDownsample, ConvUpsample
from delaykit.codec.seanet import SeanetConfig, SeanetDecoder, SeanetEncoder

__all__ = [
    "CausalConv1d",
    "CausalConvTranspose1d",
    "ConvDownsample",
    "ConvUpsample",
    "QuantizerConfig",
    "QuantizerOutput",
    "SeanetConfig",
    "SeanetDecoder",
    "SeanetEncoder",
    "SplitResidualVQ",
]
