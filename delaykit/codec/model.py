"""The Mimi codec: waveform <-> discrete codes at a low frame rate, streaming one frame at a time.

Encoding runs the SEANet encoder (audio to 25 Hz latents; with ``CodecConfig.mel_encoder``, log-mel features
and a strided conv stack instead), a causal transformer, a learnt stride-2 downsample to 12.5 Hz and the split
residual quantizer; decoding runs the same path backwards. Everything is causal, so inside
``with codec.streaming(batch_size):`` each ``encode`` call takes a whole number of frames (``frame_size``
samples each) and returns their codes, and each ``decode`` call turns codes into exactly ``frame_size`` samples
per frame; the concatenation equals the offline result.

Any size works through ``CodecConfig``; ``CodecConfig.mimi()`` is the published configuration, whose weights
(Kyutai's ``tokenizer-e351c8d8-checkpoint125.safetensors``) load unchanged.
"""

from __future__ import annotations

import dataclasses
import typing as tp
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..streaming import StreamingContainer
from ..transformer import ProjectedTransformer, TransformerConfig
from .harmonic import HarmonicDecoder, HarmonicDecoderConfig
from .quantizer import QuantizerConfig, QuantizerOutput, SplitResidualVQ
from .resample import ConvDownsample, ConvUpsample
from .seanet import SeanetConfig, SeanetDecoder, SeanetEncoder
from .semantic import SemanticConfig, SemanticEncoder
from .spectral import SpectralDecoder, SpectralDecoderConfig


def mimi_transformer(dimension: int = 512) -> TransformerConfig:
    """The published codec transformer: 8 layers, LayerNorm, GELU MLP, layer scale, RoPE, 10 s context."""
    return TransformerConfig(d_model=dimension, num_heads=8, num_layers=8, dim_feedforward=2048, causal=True,
                             context=250, positional_embedding="rope", max_period=10_000, norm="layer_norm",
                             gating="none", layer_scale=0.01, max_chunk=8)


@dataclass
class CodecConfig:
    """Shape of a codec. ``num_codebooks`` is how many codebooks encode/decode use by default."""

    sample_rate: int = 24_000
    channels: int = 1
    frame_rate: float = 12.5
    seanet: SeanetConfig = field(default_factory=SeanetConfig.mimi)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig.mimi)
    transformer: TransformerConfig | None = field(default_factory=mimi_transformer)
    num_codebooks: int = 8
    semantic: SemanticConfig | None = None  # the semantic codebooks' own encoder (None: they read the latent)
    # The acoustic latent from log-mel features (a SemanticEncoder of its own, hop = seanet.hop_length) instead
    # of the SEANet encoder on the waveform; None: SEANet.
    mel_encoder: SemanticConfig | None = None
    spectral_decoder: SpectralDecoderConfig | None = None  # decode by inverse STFT (None: the SEANet decoder)
    harmonic_decoder: HarmonicDecoderConfig | None = None  # decode by F0 + envelopes (excludes spectral_decoder)

    @classmethod
    def mimi(cls, num_codebooks: int = 8) -> CodecConfig:
        return cls(num_codebooks=num_codebooks)

    @property
    def frame_size(self) -> int:
        return round(self.sample_rate / self.frame_rate)

    @property
    def latent_rate(self) -> float:
        return self.sample_rate / self.seanet.hop_length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CodecConfig:
        data = dict(data)
        seanet = dict(data.pop("seanet", {}))
        if "ratios" in seanet:
            seanet["ratios"] = tuple(seanet["ratios"])
        transformer = data.pop("transformer", "mimi")
        spectral_decoder = data.pop("spectral_decoder", None)
        if spectral_decoder is not None:
            spectral_decoder = SpectralDecoderConfig(**spectral_decoder)
        harmonic_decoder = data.pop("harmonic_decoder", None)
        if harmonic_decoder is not None:
            harmonic_decoder = HarmonicDecoderConfig(**harmonic_decoder)
        return cls(
            semantic=_mel_stack(data.pop("semantic", None), default_strides=(2, 2, 2)),
            mel_encoder=_mel_stack(data.pop("mel_encoder", None), default_strides=(2, 2)),
            spectral_decoder=spectral_decoder,
            harmonic_decoder=harmonic_decoder,
            seanet=SeanetConfig(**seanet),
            quantizer=QuantizerConfig(**data.pop("quantizer", {})),
            transformer=mimi_transformer() if transformer == "mimi" else (
                None if transformer is None else TransformerConfig(**transformer)),
            **data)


def _mel_stack(data: dict | None, default_strides: tuple[int, ...]) -> SemanticConfig | None:
    """A log-mel encoder's config from its dict (JSON gives the strides as a list), or None."""
    if data is None:
        return None
    return SemanticConfig(**{**data, "strides": tuple(data.get("strides", default_strides))})


class CodecModel(StreamingContainer):
    """Encoder (SEANet, or a log-mel :class:`~delaykit.codec.semantic.SemanticEncoder` with
    ``CodecConfig.mel_encoder``), encoder transformer, downsample, quantizer, upsample, decoder transformer,
    decoder (SEANet, a :class:`~delaykit.codec.spectral.SpectralDecoder` with ``CodecConfig.spectral_decoder``
    or a :class:`~delaykit.codec.harmonic.HarmonicDecoder` with ``CodecConfig.harmonic_decoder``)."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        dimension = config.seanet.dimension
        stride = config.latent_rate / config.frame_rate
        if stride != int(stride) or stride < 1:
            raise ValueError(f"latent rate {config.latent_rate} Hz is not a multiple of {config.frame_rate} Hz")
        self.resample_stride = int(stride)
        self.encoder: SeanetEncoder | SemanticEncoder
        if config.mel_encoder is not None:
            if config.mel_encoder.hop_length != config.seanet.hop_length:
                raise ValueError(f"the mel encoder's hop ({config.mel_encoder.hop_length} samples) is not the "
                                 f"latent hop ({config.seanet.hop_length})")
            self.encoder = SemanticEncoder(config.mel_encoder, config.sample_rate, dimension)
        else:
            self.encoder = SeanetEncoder(config.seanet)
        self.decoder: SeanetDecoder | SpectralDecoder | HarmonicDecoder
        spectral, harmonic = config.spectral_decoder, config.harmonic_decoder
        if (spectral is not None or harmonic is not None) and config.channels != 1:
            raise ValueError("the spectral and harmonic decoders make mono audio")
        if spectral is not None and harmonic is not None:
            raise ValueError("a codec has one decoder: set spectral_decoder or harmonic_decoder, not both")
        if harmonic is not None:
            self.decoder = HarmonicDecoder(harmonic, dimension, config.seanet.hop_length, config.sample_rate)
        elif spectral is not None:
            self.decoder = SpectralDecoder(spectral, dimension, config.seanet.hop_length)
        else:
            self.decoder = SeanetDecoder(config.seanet)
        self.encoder_transformer: ProjectedTransformer | None = None
        self.decoder_transformer: ProjectedTransformer | None = None
        if config.transformer is not None:
            self.encoder_transformer = ProjectedTransformer(config.transformer, dimension, [dimension], True)
            self.decoder_transformer = ProjectedTransformer(config.transformer, dimension, [dimension], True)
        self.quantizer = SplitResidualVQ(config.quantizer)
        self.semantic_encoder: SemanticEncoder | None = None
        if config.semantic is not None:
            if config.semantic.hop_length != config.frame_size:
                raise ValueError(f"the semantic encoder's hop ({config.semantic.hop_length} samples) is not the "
                                 f"frame size ({config.frame_size})")
            self.semantic_encoder = SemanticEncoder(config.semantic, config.sample_rate,
                                                    config.quantizer.input_dimension)
        if self.resample_stride > 1:
            self.downsample = ConvDownsample(dimension, self.resample_stride)
            self.upsample = ConvUpsample(dimension, self.resample_stride)
        self.num_codebooks = config.num_codebooks

    @property
    def frame_size(self) -> int:
        return self.config.frame_size

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def max_stream_frames(self) -> int | None:
        """Most frames one streaming call may carry (its transformers take ``max_chunk`` steps at the latent
        rate); None: no limit."""
        if self.config.transformer is None:
            return None
        return max(1, self.config.transformer.max_chunk // self.resample_stride)

    @property
    def cardinality(self) -> int:
        return self.config.quantizer.bins

    def _check_audio(self, audio: torch.Tensor) -> None:
        if audio.dim() != 3 or audio.shape[1] != self.config.channels:
            raise ValueError(f"expected audio [B, {self.config.channels}, T], got {list(audio.shape)}")
        if self.is_streaming and (audio.shape[-1] % self.frame_size or audio.shape[-1] == 0):
            raise ValueError(f"a streaming encode takes whole frames of {self.frame_size} samples, "
                             f"got {audio.shape[-1]}")

    def encode_latent(self, audio: torch.Tensor) -> torch.Tensor:
        """Unquantized latents at the frame rate: [B, channels, T] -> [B, D, frames]."""
        return self.encode_latents(audio)[0]

    def _whole_frames(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio`` checked, and offline zero-padded to whole frames: [B, C, frames * frame_size]."""
        self._check_audio(audio)
        if self.is_streaming:
            return audio
        return F.pad(audio, (0, -audio.shape[-1] % self.frame_size))

    def encode_latents(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the latent [B, D, frames], the semantic encoder's latent [B, D, frames] or None without one)."""
        audio = self._whole_frames(audio)  # [B, C, frames * frame_size]
        latent = self.encoder(audio)  # [B, D, 2 * frames]
        if self.encoder_transformer is not None:
            (latent,) = self.encoder_transformer(latent)
        if self.resample_stride > 1:
            latent = self.downsample(latent)  # [B, D, frames]
        semantic = None if self.semantic_encoder is None else self.semantic_encoder(audio)  # [B, D, frames]
        return latent, semantic

    def encode(self, audio: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        """Audio [B, channels, T] -> codes [B, K, ceil(T / frame_size)] (whole frames when streaming).

        With a semantic encoder, asking only for semantic codebooks (what a recognizer reading them needs) runs
        only that encoder: a stream that does so leaves the acoustic encoder's state where it was, so it should
        keep asking for the same number of codebooks."""
        num_codebooks = num_codebooks or self.num_codebooks
        if self.semantic_encoder is not None and num_codebooks <= self.quantizer.n_q_semantic:
            semantic = self.semantic_encoder(self._whole_frames(audio))  # [B, D, frames]
            return self.quantizer.rvq_first.encode(semantic, num_codebooks)
        latent, semantic = self.encode_latents(audio)
        return self.quantizer.encode(latent, num_codebooks, semantic_input=semantic)

    def decoder_input(self, latent: torch.Tensor) -> torch.Tensor:
        """Quantized latents [B, D, frames] -> what the decoder reads [B, D, 2 * frames] (upsample, transformer)."""
        if self.resample_stride > 1:
            latent = self.upsample(latent)  # [B, D, 2 * frames]
        if self.decoder_transformer is not None:
            (latent,) = self.decoder_transformer(latent)
        return latent

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Quantized latents [B, D, frames] -> audio [B, channels, frames * frame_size]."""
        return self.decoder(self.decoder_input(latent))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, frames] -> audio [B, channels, frames * frame_size]."""
        return self.decode_latent(self.quantizer.decode(codes))

    def encode_path(self) -> list[nn.Module]:
        """The modules between the waveform and the codes: encoders, encoder transformer, downsample, quantizer."""
        parts = [self.encoder, self.encoder_transformer, getattr(self, "downsample", None), self.quantizer,
                 self.semantic_encoder]
        return [part for part in parts if part is not None]

    def encode_path_state(self) -> dict[str, torch.Tensor]:
        """The state-dict entries of :meth:`encode_path`'s modules, under the codec's own key names."""
        parts = {id(module) for module in self.encode_path()}
        return {f"{name}.{key}": value for name, module in self.named_children() if id(module) in parts
                for key, value in module.state_dict().items()}

    def encode_path_changes(self, other: CodecModel) -> dict[str, torch.Tensor]:
        """``other``'s encode-path entries that differ from this codec's (all of them when the shapes differ)."""
        mine, theirs = self.encode_path_state(), other.encode_path_state()
        return {key: value for key, value in theirs.items()
                if key not in mine or mine[key].shape != value.shape
                or not torch.equal(mine[key].float(), value.float())}

    def encodes_like(self, other: CodecModel) -> bool:
        """Whether ``other`` turns audio into the same codes: equal encode-path shapes and weights, whatever
        either decodes with (so a model trained on one's codes can use the other)."""
        same_keys = self.encode_path_state().keys() == other.encode_path_state().keys()
        return same_keys and not self.encode_path_changes(other)

    @torch.no_grad()
    def use_decoder_of(self, other: CodecModel) -> None:
        """Decode from now on with ``other``'s decode path (every weight outside the encode path), e.g. a
        decoder retrained on this codec's codes (``decoder_only`` training). The codes must mean the same to
        both: equal quantizers (codebooks and projections); the encoders may differ (a codec patch)."""
        quantizer, others = self.quantizer.state_dict(), other.quantizer.state_dict()
        if quantizer.keys() != others.keys() or any(not torch.equal(quantizer[key].float(), others[key].float())
                                                     for key in quantizer):
            raise ValueError("the other codec quantizes with other codebooks: its decoder reads other codes")
        encode_keys = set(self.encode_path_state())
        mine = {key: value for key, value in self.state_dict().items() if key not in encode_keys}
        theirs = {key: value for key, value in other.state_dict().items() if key not in encode_keys}
        if mine.keys() != theirs.keys() or any(mine[key].shape != theirs[key].shape for key in mine):
            raise ValueError("the other codec's decode path has another shape")
        for key, value in mine.items():
            value.copy_(theirs[key].to(value.dtype))

    def forward(self, audio: torch.Tensor, num_codebooks: int | None = None) -> tuple[torch.Tensor, QuantizerOutput]:
        """Training pass: (reconstruction [B, C, T], quantizer output with codes and losses)."""
        length = audio.shape[-1]
        latent, semantic = self.encode_latents(audio)
        quantized = self.quantizer(latent, num_codebooks, semantic_input=semantic)
        return self.decode_latent(quantized.quantized)[..., :length], quantized


def codec_from_state(config: CodecConfig, state: tp.Mapping[str, torch.Tensor]) -> CodecModel:
    """Build a codec and load ``state`` strictly (published or delaykit keys alike)."""
    with torch.device("meta"):
        model = CodecModel(config)
    model.load_state_dict(dict(state), strict=True, assign=True)
    return model.eval()


def stream_round_trip(codec: CodecModel, audio: torch.Tensor, num_codebooks: int | None = None
                      ) -> tp.Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Encode then decode ``audio`` [T] one frame at a time, as a live stream would: yields (codes [K],
    decoded frame [frame_size]) per frame; the last frame is zero-padded."""
    frame = codec.frame_size
    padded = F.pad(audio, (0, -audio.shape[-1] % frame)).view(1, 1, -1)  # [1, 1, frames * frame]
    with torch.no_grad(), codec.streaming(1):
        for start in range(0, padded.shape[-1], frame):
            codes = codec.encode(padded[..., start:start + frame], num_codebooks)  # [1, K, 1]
            yield codes[0, :, 0], codec.decode(codes)[0, 0]
