"""Warm starts across stream layouts: seed a fresh LM with the weights of a model of another mode.

A dialogue model generates the agent's audio exactly as a TTS model generates speech (same codec, same
codebooks, same acoustic delay) and reads the user's audio in the same codes. So a fresh dialogue model can
take everything a trained TTS model has whose name and shape agree (temporal and depth transformers, text
embedding and head, the generated streams' embeddings and heads), and its fed (user) audio embeddings can
start from the generated embedding of the same codebook, which already maps those codes to what they sound
like. Everything else keeps its fresh initialisation, except what the source model never read: new
conditioners (e.g. voice conditions added to a TTS model) start with zero projections, and new fed audio
streams (e.g. acoustic codebooks added to a recognizer that read only the semantic one) with zero embeddings,
so the warm model first behaves exactly as its source and learns from there what the new inputs add.
Unlike ``init_from`` (fine-tuning one checkpoint in its own shape), the run's shape is the run's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..lm.model import LMModel


@dataclass
class WarmStartReport:
    """What a warm start copied, by target parameter name."""

    copied: list[str] = field(default_factory=list)  # same name, same shape
    mapped: dict[str, str] = field(default_factory=dict)  # target name -> source name (fed embeddings)
    kept: list[str] = field(default_factory=list)  # fresh: no source, or a shape that differs

    def summary(self) -> str:
        return (f"warm start: {len(self.copied)} tensors copied, {len(self.mapped)} fed embeddings from generated "
                f"ones, {len(self.kept)} fresh ({', '.join(self.kept[:6])}{', ...' if len(self.kept) > 6 else ''})")


def fed_embedding_sources(target: LMModel, source: LMModel) -> dict[str, str]:
    """For each fed audio stream of ``target``: the source's generated embedding of the same codebook
    (``emb.{dep_q + k}`` <- ``emb.{k}``), used where the source has no same-named embedding of that shape."""
    fed = target.config.n_q - target.dep_q
    mapping = {}
    for k in range(min(fed, source.dep_q)):
        mapping[f"emb.{target.dep_q + k}.weight"] = f"emb.{k}.weight"
    return mapping


@torch.no_grad()
def warm_start(target: LMModel, source: LMModel) -> WarmStartReport:
    """Copy ``source``'s weights into ``target`` wherever they fit; report what was copied."""
    source_state = source.state_dict()
    mapping = fed_embedding_sources(target, source)
    fed_embeddings = {f"emb.{k}.weight" for k in range(target.dep_q, target.config.n_q)}
    report = WarmStartReport()
    for name, tensor in target.state_dict().items():
        mapped = mapping.get(name)
        if name in source_state and source_state[name].shape == tensor.shape:
            tensor.copy_(source_state[name].to(tensor.dtype))
            report.copied.append(name)
        elif mapped in source_state and source_state[mapped].shape == tensor.shape:
            tensor.copy_(source_state[mapped].to(tensor.dtype))
            report.mapped[name] = mapped
        else:
            report.kept.append(name)
            if name.startswith("condition_provider.") and not name.endswith("embed.weight"):
                tensor.zero_()  # a new condition starts silent: the warm model behaves as its source at first
            elif name in fed_embeddings:
                tensor.zero_()  # so does a new stream it reads
    return report
