"""The ``delaykit`` command line: a Click group that front-end commands hang off.

Keep this module light: torch, the models and gradio are imported inside the commands that need them, so
``delaykit --help`` answers at once. Commands print data on stdout and logs on stderr; a
:class:`~delaykit.errors.DelaykitError` raised anywhere below becomes ``Error: <message>`` and exit status 1,
without a traceback.
"""

from __future__ import annotations

import json
import math

import click

from . import __version__
from .errors import DelaykitError


class DelaykitGroup(click.Group):
    """A Click group that reports DelaykitError as a one-line error instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DelaykitError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=DelaykitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="delaykit")
def main() -> None:
    """delaykit: streaming speech-to-text, text-to-speech and dialogue with one multi-stream model."""


@main.command()
@click.argument("checkpoint", default="default")
def inspect(checkpoint: str) -> None:
    """Show the files and configuration of CHECKPOINT (a directory, a hub repo id, or "default")."""
    from .checkpoints import resolve_checkpoint

    files = resolve_checkpoint(checkpoint)
    click.echo(json.dumps(files.describe(), indent=2))


@main.group()
def codec() -> None:
    """The neural audio codec on its own."""


@codec.command("roundtrip")
@click.argument("audio_in", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="WAV file to write")
@click.option("--model", default="default", show_default=True, help="checkpoint directory, hub id or default")
@click.option("--codebooks", type=int, default=None, help="codebooks per frame (default: the checkpoint's)")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@click.option("--force", is_flag=True, help="overwrite OUTPUT if it exists")
def codec_roundtrip(audio_in: str, output: str, model: str, codebooks: int | None, threads: int | None,
                    force: bool) -> None:
    """Stream AUDIO_IN through the codec frame by frame (encode then decode) and write the result."""
    import time
    from pathlib import Path

    import torch

    from .audio import load_audio, write_audio
    from .codec.model import stream_round_trip
    from .engine import load_engine

    if Path(output).exists() and not force:
        raise DelaykitError(f"{output}: already exists (pass --force to overwrite)")
    if threads:
        torch.set_num_threads(threads)
    engine = load_engine(model, device="cpu")
    if engine.codec is None:
        raise DelaykitError(f"{model}: this checkpoint has no codec")
    codec_model = engine.codec
    audio = torch.from_numpy(load_audio(audio_in, codec_model.sample_rate))
    started = time.perf_counter()
    decoded = [pcm for _, pcm in stream_round_trip(codec_model, audio, codebooks)]
    elapsed = time.perf_counter() - started
    write_audio(output, torch.cat(decoded)[:audio.numel()].numpy(), codec_model.sample_rate)
    seconds = audio.numel() / codec_model.sample_rate
    used = codebooks or codec_model.num_codebooks
    kbps = used * codec_model.frame_rate * math.log2(codec_model.cardinality) / 1000
    click.echo(f"{audio_in}: {seconds:.2f} s, {len(decoded)} frames x {used} codebooks ({kbps:.2f} kbps), "
               f"streamed in {elapsed:.2f} s ({seconds / max(elapsed, 1e-9):.1f}x real time) -> {output}",
               err=True)


@main.group()
def data() -> None:
    """Build training corpora."""


@data.command("synth")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="corpus directory")
@click.option("--hours", default=1.0, show_default=True, help="total audio to synthesize")
@click.option("--seed", default=0, show_default=True)
@click.option("--split", type=click.Choice(["train", "heldout"]), default="train", show_default=True,
              help="heldout uses voices, variants, names and places that train never does")
@click.option("--workers", default=2, show_default=True, help="parallel synthesis processes")
def data_synth(out_dir: str, hours: float, seed: int, split: str, workers: int) -> None:
    """Synthesize HOURS of varied espeak-ng speech (24 kHz WAVs + manifest.jsonl) into OUT."""
    from .data.synth import SynthConfig, synthesize

    manifest = synthesize(out_dir, SynthConfig(hours=hours, seed=seed, split=split, workers=workers))
    click.echo(str(manifest))


@main.group()
def train() -> None:
    """Train models."""


@train.command("codec")
@click.option("--data", "data_dirs", required=True, multiple=True, type=click.Path(exists=True),
              help="corpus directory with manifest.jsonl (repeatable)")
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False), help="run directory")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON or TOML file of CodecTrainConfig fields")
@click.option("--minutes", type=float, default=None, help="stop after this much wall-clock time")
@click.option("--resume", is_flag=True, help="continue from the run directory's last checkpoint")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a config field, e.g. --set lr=5e-4 --set model.seanet.n_filters=24")
def train_codec(data_dirs, run_dir, config_path, minutes, resume, overrides) -> None:
    """Train a codec on the corpora in --data, checkpointing into --out.

    With --resume the run's own config.json is the base (unless --config is given); --minutes then counts
    from the restart."""
    from pathlib import Path

    from .train.codec import CONFIG_NAME, CodecTrainConfig, CodecTrainer

    if resume and config_path is None and (Path(run_dir) / CONFIG_NAME).is_file():
        config_path = str(Path(run_dir) / CONFIG_NAME)
    config = CodecTrainConfig.load(config_path, overrides)
    if minutes is not None:
        config.minutes = minutes
    trainer = CodecTrainer(config, list(data_dirs), run_dir, resume=resume)
    trainer.fit()


@train.command("export-codec")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("target", type=click.Path(file_okay=False))
@click.option("--fp16", is_flag=True, help="store weights in float16 (half the size)")
def train_export_codec(run_dir: str, target: str, fp16: bool) -> None:
    """Write RUN_DIR's latest codec as a codec-only checkpoint directory TARGET."""
    from .train.codec import export_codec

    click.echo(str(export_codec(run_dir, target, fp16=fp16)))


@train.command("eval-codec")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "manifest", required=True, type=click.Path(exists=True),
              help="corpus directory or manifest of held-out utterances")
@click.option("--count", default=20, show_default=True, help="utterances to use")
@click.option("--codebooks", default="8,4,2,1", show_default=True, help="codebook counts to decode with")
@click.option("--untrained", is_flag=True, help="evaluate a freshly initialised model of the same config")
def train_eval_codec(checkpoint: str, manifest: str, count: int, codebooks: str, untrained: bool) -> None:
    """Round-trip log-mel distance and SI-SNR of CHECKPOINT on held-out speech (JSON on stdout)."""
    import torch

    from .codec.model import CodecModel
    from .train.evaluate import evaluate_codec, load_codec_checkpoint

    model = load_codec_checkpoint(checkpoint)
    if untrained:
        torch.manual_seed(0)
        model = CodecModel(model.config)
    ks = [int(k) for k in codebooks.split(",")]
    click.echo(json.dumps(evaluate_codec(model, manifest, count, ks), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
