"""The ``delaykit`` command line: a Click group that front-end commands hang off.

Keep this module light: torch, the models and gradio are imported inside the commands that need them, so
``delaykit --help`` answers at once. Commands print data on stdout and logs on stderr; a
:class:`~delaykit.errors.DelaykitError` raised anywhere below becomes ``Error: <message>`` and exit status 1,
without a traceback, and Ctrl-C exits with status 130.

The mode commands (``asr``, ``tts``, ``dialogue``) consume what the library yields (words, end-of-speech
events, PCM frames) and print or write it as it comes.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys

import click

from . import __version__
from .data.assistant import ConversationConfig
from .errors import DelaykitError
from .files import write_text_atomically
from .formats import FORMATS

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as shells report a Ctrl-C
MAX_ASR_BATCH = 8  # recordings decoded together as one batch of streams by `delaykit asr`
DEVICES = ("auto", "cpu", "cuda")  # --device: auto is cuda when torch sees a GPU, else cpu
DIALOGUE_AGENTS = ("model", "rendered", "codec")  # evaluation.dialogue.AGENT_SOURCES, without importing torch
DTYPES = ("float32", "bfloat16", "float16")  # --dtype of the LM's weights (the codec stays float32)
SPEAKER_TAG = re.compile(r"\s*\[S([12])\]")  # opens a line of a two-speaker script: [S1] main, [S2] other


def model_placement(command):
    """Add --device and --dtype, the options of every command that runs a model, to ``command``."""
    command = click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
                           help="dtype of the LM's weights (the codec stays float32)")(command)
    return click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                        help="where the model runs (auto: cuda when available, else cpu)")(command)


class DelaykitGroup(click.Group):
    """A Click group that reports DelaykitError (and a closed stdout pipe) as a one-line error instead of a
    traceback, and exits with status 130 on Ctrl-C."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DelaykitError as exc:
            raise click.ClickException(str(exc)) from exc
        except KeyboardInterrupt:  # Ctrl-C: commands have closed what they wrote on the way out
            click.echo("Aborted!", err=True)
            ctx.exit(INTERRUPTED_EXIT_CODE)
        except BrokenPipeError as exc:  # the reader of stdout went away (e.g. `| head`)
            _detach_stdout()
            raise click.ClickException("stdout was closed by its reader: stopped") from exc


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
@click.option("--reverb", "reverb_prob", default=0.0, show_default=True,
              help="share of utterances given room reverberation")
@click.option("--flite", "flite_prob", default=0.0, show_default=True,
              help="share of (train) utterances spoken by flite's kal/kal16 voices instead of espeak-ng")
@click.option("--festival", "festival_prob", default=0.0, show_default=True,
              help="share of the other (train) utterances spoken by Festival's kal/ked diphone voices")
@click.option("--voices", "voice_names", default="",
              help="comma-separated voices to draw from instead (en-us+f2, flite:kal16, festival:ked_diphone)")
@click.option("--clean", is_flag=True, help="no noise, band limits or reverberation; level -24 to -20 dBFS")
@click.option("--vocabulary", type=click.Choice(["base", "wide", "open"]), default="base", show_default=True,
              help="wide: about twice the word forms (more names, places, nouns, verbs); open: wide plus "
                   "thousands of names and places (needs delaykit[data]); train split only")
@click.option("--random-variants", "random_variant_prob", default=0.0, show_default=True,
              help="share of (train) espeak-ng utterances spoken by a random voice variant drawn for each")
@click.option("--variant-span", "random_variant_span", type=click.Choice(["named", "wide"]), default="named",
              show_default=True, help="random variants near the middle of the named variants' settings, or "
                                      "across all of them (lower and higher voices, weak voicing, tone, echo)")
@click.option("--speed-up", default=1.0, show_default=True, type=click.FloatRange(1.0, 2.0),
              help="play each (train) utterance faster by a factor drawn from [1, SPEED_UP]: formants, pitch and "
                   "pace raised together, as a shorter vocal tract speaks (men's voices towards women's)")
@click.option("--accents", "accent_prob", default=0.0, show_default=True,
              help="share of the other (train) utterances read by Festival's Italian, Catalan, Finnish and Czech "
                   "voices: phonemes for the codec's semantic encoder only (data encode refuses such rows)")
def data_synth(out_dir: str, hours: float, seed: int, split: str, workers: int, reverb_prob: float,
               flite_prob: float, festival_prob: float, voice_names: str, clean: bool, vocabulary: str,
               random_variant_prob: float, random_variant_span: str, speed_up: float, accent_prob: float) -> None:
    """Synthesize HOURS of varied espeak-ng speech (24 kHz WAVs + manifest.jsonl) into OUT."""
    from .data.synth import CLEAN, SynthConfig, synthesize

    names = tuple(name.strip() for name in voice_names.split(",") if name.strip())
    if clean and reverb_prob:
        raise click.UsageError("--clean and --reverb exclude each other")
    if voice_names and (flite_prob or festival_prob or accent_prob):
        raise click.UsageError("--voices names every voice (flite:kal16, festival:ked_diphone too): "
                               "leave out --flite, --festival and --accents")
    augmentation = dict(CLEAN) if clean else {"reverb_prob": reverb_prob}
    config = SynthConfig(hours=hours, seed=seed, split=split, workers=workers, flite_prob=flite_prob,
                         festival_prob=festival_prob, voice_names=names, vocabulary=vocabulary,
                         random_variant_prob=random_variant_prob, random_variant_span=random_variant_span,
                         speed_up=speed_up, accent_prob=accent_prob, **augmentation)
    manifest = synthesize(out_dir, config)
    click.echo(str(manifest))


@data.command("flite")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="corpus directory")
@click.option("--count", default=60, show_default=True, help="sentences (voices slt, awb, rms in turn)")
@click.option("--seed", default=1, show_default=True)
def data_flite(out_dir: str, count: int, seed: int) -> None:
    """Evaluation speech from flite voices reserved for evaluation (never trained on)."""
    from .data.flite import synthesize_flite

    click.echo(str(synthesize_flite(out_dir, count, seed=seed)))


@data.command("dialogues")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="corpus directory")
@click.option("--count", default=100, show_default=True, help="conversations to render")
@click.option("--seed", default=0, show_default=True)
@click.option("--split", type=click.Choice(["train", "heldout"]), default="train", show_default=True,
              help="heldout gives the user voices and variants that train never does")
@click.option("--interrupt-prob", type=click.FloatRange(0, 0.85), default=ConversationConfig.interrupt_prob,
              show_default=True, help="share of answers the user talks over (\"Wait.\", \"Stop.\")")
@click.option("--kind-weights", default=",".join(f"{w:g}" for w in ConversationConfig.kind_weights),
              show_default=True, help="how often each kind of question is asked: greeting, arithmetic, fact, "
              "spelling")
@click.option("--agent-voice", default="en-us+f2", show_default=True,
              help="the agent's voice: espeak-ng's (en-us+f2), flite:kal16, festival:ked_diphone, ...")
def data_dialogues(out_dir: str, count: int, seed: int, split: str, interrupt_prob: float,
                   kind_weights: str, agent_voice: str) -> None:
    """Render scripted-assistant conversations as stereo WAVs (agent left, user right) with word alignments."""
    import itertools

    from .data.dialogues import DialogueRenderConfig, SynthSpeaker, synthesize_dialogues
    from .data.synth import SynthConfig

    voices = SynthConfig(split=split)
    user_voices = [f"{voice}+{variant}" if variant else voice
                   for voice, variant in itertools.product(voices.voices, voices.variants)]
    try:
        weights = tuple(float(w) for w in kind_weights.split(","))
    except ValueError:
        weights = ()
    if len(weights) != 4 or min(weights) < 0 or sum(weights) <= 0:
        raise click.BadParameter(f"{kind_weights!r}: four weights >= 0, not all 0 (greeting, arithmetic, fact, "
                                 "spelling)", param_hint="--kind-weights")
    conversation = ConversationConfig(kind_weights=weights, interrupt_prob=interrupt_prob)
    click.echo(str(synthesize_dialogues(out_dir, count, SynthSpeaker(agent_voice=agent_voice), user_voices,
                                        seed=seed, conversation=conversation,
                                        config=DialogueRenderConfig(agent_voice=agent_voice))))


@data.command("check")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--speaker", "speakers", multiple=True, help="allowed speaker names (default: any)")
@click.option("--tolerance", default=0.1, show_default=True, help="seconds a word may end past the audio")
def data_check(sources, speakers, tolerance: float) -> None:
    """Report the broken rows of corpora (manifests or folders of wav + json); exit 1 if any."""
    from .data.manifest import check_corpus, read_corpus

    rows = [row for source in sources for row in read_corpus(source)]
    _, report = check_corpus(rows, speakers=speakers or None, tolerance=tolerance)
    click.echo(report.summary())
    if report.skipped:
        sys.exit(1)


@data.command("encode")
@click.option("--data", "data_dirs", required=True, multiple=True, type=click.Path(exists=True),
              help="corpus directory or manifest with word alignments (repeatable)")
@click.option("--out", "output", required=True, type=click.Path(dir_okay=False), help="code corpus file (.npz)")
@click.option("--codec", default="default", show_default=True, help="checkpoint whose codec encodes")
@click.option("--sequence-seconds", default=30.0, show_default=True, help="length of each packed sequence")
@click.option("--seed", default=0, show_default=True)
@click.option("--codebooks", type=int, default=None,
              help="encode only the first N codebooks (default: the codec's number)")
@click.option("--user-codec", default=None,
              help="checkpoint whose codec encodes a dialogue's user channel (e.g. default-asr: the ASR model's "
                   "front end; same codebooks as --codec)")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
def data_encode(data_dirs, output: str, codec: str, sequence_seconds: float, seed: int, codebooks: int | None,
                user_codec: str | None, threads) -> None:
    """Pack word-aligned utterances into long sequences and encode them with a codec, for LM training."""
    from .data.codes import PackConfig, encode_corpus
    from .data.manifest import check_corpus, read_corpus
    from .engine import load_engine

    _set_threads(threads)
    rows, report = check_corpus([row for source in data_dirs for row in read_corpus(source)])
    click.echo(report.summary(), err=True)
    if not rows:
        raise DelaykitError("no usable rows to encode")
    codec_model = load_engine(codec, device="cpu").codec
    if codec_model is None:
        raise DelaykitError(f"{codec}: this checkpoint has no codec")
    user_codec_model = None if user_codec is None else load_engine(user_codec, device="cpu").codec
    if user_codec is not None and user_codec_model is None:
        raise DelaykitError(f"{user_codec}: this checkpoint has no codec")
    try:
        corpus = encode_corpus(rows, codec_model, PackConfig(sequence_seconds=sequence_seconds, seed=seed), codec,
                               codebooks=codebooks, user_codec=user_codec_model, user_codec_name=user_codec or "")
    except ValueError as exc:
        raise DelaykitError(str(exc)) from exc
    corpus.save(output)
    click.echo(f"{output}: {len(corpus)} sequences, {corpus.seconds / 3600:.2f} h", err=True)


@data.command("round-trip")
@click.option("--data", "source", required=True, type=click.Path(exists=True),
              help="corpus directory or manifest")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="new corpus directory")
@click.option("--codec", default="default", show_default=True, help="checkpoint whose codec encodes and decodes")
@click.option("--codebooks", type=click.IntRange(min=1), default=4, show_default=True,
              help="codebooks kept (the TTS and dialogue models speak with 4)")
@click.option("--count", type=click.IntRange(min=1), default=None, help="only the first COUNT utterances")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
def data_round_trip(source: str, out_dir: str, codec: str, codebooks: int, count: int | None, threads) -> None:
    """A copy of a corpus as the codec renders it (encoded and decoded again), words, times and phones kept:
    speech the way the TTS and dialogue models' decoder makes it, for a recognizer to learn."""
    from .data.round_trip import round_trip_corpus
    from .engine import load_engine

    _set_threads(threads)
    codec_model = load_engine(codec, device="cpu").codec
    if codec_model is None:
        raise DelaykitError(f"{codec}: this checkpoint has no codec")
    if codebooks > codec_model.num_codebooks:
        raise click.BadParameter(f"{codebooks}: the codec has {codec_model.num_codebooks}", param_hint="--codebooks")

    def progress(done: int, total: int) -> None:
        if done % 500 == 0 or done == total:
            click.echo(f"round-trip: {done}/{total} utterances", err=True)

    click.echo(str(round_trip_corpus(source, codec_model, out_dir, codebooks, count, codec_name=codec,
                                     progress=progress)))


@data.command("annotate")
@click.option("--codes", "codes_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="code corpus (.npz) made by `data encode` before corpora recorded their utterances")
@click.option("--data", "data_dirs", required=True, multiple=True, type=click.Path(exists=True),
              help="the corpus directories or manifests it was encoded from, in the same order (repeatable)")
def data_annotate(codes_path: str, data_dirs) -> None:
    """Add each sequence's utterances (voice, pitch, speaking rate, end) to an older code corpus, in place:
    what voice-conditioned TTS training reads. No audio is encoded again."""
    from .data.codes import CodeCorpus, annotate_utterances
    from .data.manifest import check_corpus, read_corpus

    rows, _ = check_corpus([row for source in data_dirs for row in read_corpus(source)])
    corpus = CodeCorpus.load(codes_path)
    try:
        annotate_utterances(corpus, rows)
    except ValueError as exc:
        raise DelaykitError(f"{codes_path}: {exc}") from exc
    corpus.save(codes_path)
    count = sum(len(u) for u in corpus.utterances or [])
    click.echo(f"{codes_path}: {count} utterances in {len(corpus)} sequences", err=True)


@main.group()
def train() -> None:
    """Train models."""


def _run_config_path(run_dir: str, config_path: str | None, resume: bool) -> str | None:
    """The config a run starts from: --config, else (when resuming) the run's own config.json."""
    from pathlib import Path

    from .train.loop import CONFIG_NAME

    if resume and config_path is None and (Path(run_dir) / CONFIG_NAME).is_file():
        return str(Path(run_dir) / CONFIG_NAME)
    return config_path


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
    from .train.codec import CodecTrainConfig, CodecTrainer

    config = CodecTrainConfig.load(_run_config_path(run_dir, config_path, resume), overrides)
    if minutes is not None:
        config.minutes = minutes
    trainer = CodecTrainer(config, list(data_dirs), run_dir, resume=resume)
    trainer.fit()


@train.command("tokenizer")
@click.option("--data", "data_dirs", required=True, multiple=True, type=click.Path(exists=True),
              help="corpus directory or manifest whose texts to learn from (repeatable)")
@click.option("--out", "output", required=True, type=click.Path(dir_okay=False), help="tokenizer .model file")
@click.option("--vocab-size", default=1500, show_default=True)
def train_tokenizer_command(data_dirs, output: str, vocab_size: int) -> None:
    """Train a SentencePiece tokenizer (Kyutai's special ids) on the transcripts of a corpus."""
    from .data.manifest import read_corpus
    from .train.tokenizer import train_tokenizer

    texts = [row["text"] for source in data_dirs for row in read_corpus(source)]
    click.echo(str(train_tokenizer(texts, output, vocab_size=vocab_size)))


@train.command("lm")
@click.option("--mode", type=click.Choice(["asr", "tts", "dialogue"]), default=None,
              help="stream layout to train (default: the config's, else asr)")
@click.option("--codes", "code_files", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="code corpus from `delaykit data encode` (repeatable)")
@click.option("--tokenizer", "tokenizer_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="SentencePiece model (default: the run directory's, when resuming)")
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False), help="run directory")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON or TOML file of LMTrainConfig fields")
@click.option("--minutes", type=float, default=None, help="stop after this much wall-clock time")
@click.option("--valid-codes", "valid_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="held-out code corpus whose loss is logged and keeps best.pt (repeatable; with valid_every)")
@click.option("--resume", is_flag=True, help="continue from the run directory's last checkpoint")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a config field, e.g. --set lr=5e-4 --set model.num_layers=4")
def train_lm(mode, code_files, tokenizer_path, run_dir, config_path, minutes, valid_files, resume,
             overrides) -> None:
    """Train (or fine-tune, with --set init_from=CHECKPOINT) the LM of one mode on encoded corpora."""
    from pathlib import Path

    from .train.distributed import finish_distributed
    from .train.lm import TOKENIZER_NAME, LMTrainConfig, LMTrainer

    config_path = _run_config_path(run_dir, config_path, resume)
    if tokenizer_path is None:
        tokenizer_path = str(Path(run_dir) / TOKENIZER_NAME)
        if not Path(tokenizer_path).is_file():
            raise click.UsageError("pass --tokenizer (the run directory has none yet)")
    config = LMTrainConfig.load(config_path, overrides, mode=mode)
    if mode is not None and config.mode != mode:
        raise click.UsageError(f"--mode {mode} differs from the config's mode {config.mode}")
    if minutes is not None:
        config.minutes = minutes
    if valid_files:
        config.valid_codes = list(valid_files)
        config.valid_every = config.valid_every or 100
    LMTrainer(config, list(code_files), tokenizer_path, run_dir, resume=resume).fit()
    finish_distributed()


@train.command("plot")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="PNG file (default: RUN_DIR/metrics.png)")
def train_plot(run_dir: str, output) -> None:
    """Draw a run's losses and accuracies against the step (needs matplotlib: delaykit[plot])."""
    try:
        import matplotlib  # noqa: F401

        from .train.plots import plot_run
    except ImportError as exc:
        raise DelaykitError("plotting needs matplotlib: pip install 'delaykit[plot]'") from exc
    click.echo(str(plot_run(run_dir, output)))


@train.command("export-lm")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("target", type=click.Path(file_okay=False))
@click.option("--fp16", is_flag=True, help="store the LM's weights in float16 (half the size)")
@click.option("--codec", default=None, help="codec checkpoint to bundle (default: the one the run used)")
@click.option("--codec-from", default=None, type=click.Choice(["default"]),
              help="bundle no codec: use the shipped checkpoint's (it must encode like the run's codec)")
@click.option("--codec-patch", is_flag=True,
              help="with --codec-from: carry the run's codec's encoder weights that differ from the shipped "
                   "codec's (a retrained semantic encoder), which replace them when the model loads")
@click.option("--codec-patch-from", default=None, type=click.Choice(["default-asr"]),
              help="with --codec-from: use this shipped model's codec patch, carrying no copy (the shipped codec "
                   "with it must encode like the run's codec, e.g. --codec default-asr)")
@click.option("--default-voice", default=None,
              help="voice-conditioned TTS: the voice used when none is asked for (e.g. en-us+f3)")
@click.option("--default-pitch", type=click.IntRange(-2, 2), default=None, help="and its pitch step")
@click.option("--text-temperature", type=float, default=None,
              help="dialogue: the agent's text sampling temperature the checkpoint recommends (0 = greedy)")
@click.option("--text-top-k", type=int, default=25, show_default=True, help="with --text-temperature")
@click.option("--audio-temperature", type=float, default=None,
              help="dialogue: the agent's audio sampling temperature the checkpoint recommends")
@click.option("--audio-top-k", type=int, default=250, show_default=True, help="with --audio-temperature")
@click.option("--silence-prefix", type=click.FloatRange(0), default=None,
              help="ASR: seconds of silence fed before the audio (default: the middle of the training "
                   "sequences' lead-in, 0.5)")
@click.option("--best", is_flag=True, help="export the weights of the lowest validation loss (best.pt)")
def train_export_lm(run_dir: str, target: str, fp16: bool, codec, codec_from, codec_patch: bool,
                    codec_patch_from: str | None, default_voice: str | None, default_pitch: int | None,
                    text_temperature: float | None, text_top_k: int, audio_temperature: float | None,
                    audio_top_k: int, silence_prefix: float | None, best: bool) -> None:
    """Write RUN_DIR's latest LM with its codec and tokenizer as checkpoint directory TARGET."""
    from .train.lm import BEST_NAME, CHECKPOINT_NAME, export_lm

    voice = {key: value for key, value in (("voice", default_voice), ("pitch", default_pitch)) if value is not None}
    try:
        sampling = None if text_temperature is None else {"temperature": text_temperature, "top_k": text_top_k}
        audio = None if audio_temperature is None else {"temperature": audio_temperature, "top_k": audio_top_k}
        path = export_lm(run_dir, target, fp16=fp16, codec=codec, codec_from=codec_from, default_voice=voice or None,
                         text_sampling=sampling, audio_sampling=audio, silence_prefix=silence_prefix,
                         checkpoint=BEST_NAME if best else CHECKPOINT_NAME, codec_patch=codec_patch,
                         codec_patch_from=codec_patch_from)
    except ValueError as exc:
        raise DelaykitError(str(exc)) from exc
    click.echo(str(path))


@train.command("export-codec")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("target", type=click.Path(file_okay=False))
@click.option("--fp16", "half", flag_value="all", help="store all weights in float16 (half the size)")
@click.option("--fp16-decoder", "half", flag_value="decoder",
              help="store only the decode path in float16: the codes stay exactly those of the float32 encoder")
@click.option("--fp16-semantic", "half", flag_value="semantic",
              help="store the decode path and the semantic encoder in float16 (a retrained semantic encoder that "
                   "a model carries as a codec patch: the codes are those of the rounded weights)")
def train_export_codec(run_dir: str, target: str, half: str | None) -> None:
    """Write RUN_DIR's latest codec as a codec-only checkpoint directory TARGET."""
    from .train.codec import export_codec

    click.echo(str(export_codec(run_dir, target, fp16=half == "all", fp16_decoder=half == "decoder",
                                fp16_semantic=half == "semantic")))


@main.group("eval")
def evaluate() -> None:
    """Measure models on held-out data (JSON figures on stdout)."""


@evaluate.command("codec")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "manifest", required=True, type=click.Path(exists=True),
              help="corpus directory or manifest of held-out utterances")
@click.option("--count", default=20, show_default=True, help="utterances to use")
@click.option("--codebooks", default="8,4,2,1", show_default=True, help="codebook counts to decode with")
@click.option("--untrained", is_flag=True, help="evaluate a freshly initialised model of the same config")
@click.option("--judge", is_flag=True, help="also the judge's WER on originals and round trips (delaykit[judge])")
def eval_codec(checkpoint: str, manifest: str, count: int, codebooks: str, untrained: bool, judge: bool) -> None:
    """Round-trip log-mel distance and SI-SNR of CHECKPOINT on held-out speech, and how stable its codes are
    under a small delay or level change (share of equal codes per codebook); JSON on stdout."""
    import torch

    from .codec.model import CodecModel
    from .train.evaluate import code_stability, evaluate_codec, load_codec_checkpoint

    model = load_codec_checkpoint(checkpoint)
    if untrained:
        torch.manual_seed(0)
        model = CodecModel(model.config)
    ks = [int(k) for k in codebooks.split(",")]
    report: dict = {"round_trip": evaluate_codec(model, manifest, count, ks),
                     "stability": code_stability(model, manifest, count)}
    if judge:
        from .evaluation.judge import WhisperJudge
        from .train.evaluate import judge_codec

        report["judged"] = judge_codec(model, manifest, WhisperJudge(), count, max(ks))
    click.echo(json.dumps(report, indent=2))


@evaluate.command("judge")
@click.option("--data", "data_dirs", required=True, multiple=True, type=click.Path(exists=True),
              help="corpus directory or manifest with reference texts (repeatable)")
@click.option("--count", type=int, default=None, help="use the first COUNT utterances (default: all)")
@click.option("--threads", default=2, show_default=True)
def eval_judge(data_dirs, count, threads: int) -> None:
    """WER of the independent judge (Whisper tiny.en, offline) on a corpus: the bar for delaykit's ASR, and
    the reference point for judged TTS and codec figures. Needs delaykit[judge]."""
    import time

    from .data.manifest import read_corpus
    from .evaluation.judge import WhisperJudge
    from .evaluation.wer import word_error_rate

    rows = [row for source in data_dirs for row in read_corpus(source)][:count]
    judge = WhisperJudge(threads=threads)
    started = time.monotonic()
    hypotheses = judge.transcribe_files([row["path"] for row in rows])
    references = [row["text"] for row in rows]
    plain, numbers = word_error_rate(references, hypotheses), word_error_rate(references, hypotheses, numbers=True)
    click.echo(json.dumps({
        "judge": "whisper tiny.en (faster-whisper, int8, greedy)", "utterances": len(rows),
        "reference_words": numbers.reference_words, "wer": round(plain.wer, 4), "wer_numbers": round(numbers.wer, 4),
        "seconds": round(time.monotonic() - started, 2),
        "examples": [{"reference": r, "hypothesis": h} for r, h in zip(references[:5], hypotheses)]}, indent=2))


@evaluate.command("asr")
@click.option("--model", default="default", show_default=True, help="ASR checkpoint directory, hub id or default")
@click.option("--data", "data_dirs", required=True, multiple=True, type=click.Path(exists=True),
              help="corpus directory or manifest with reference texts (repeatable)")
@click.option("--count", type=int, default=None, help="use the first COUNT utterances (default: all)")
@click.option("--batch-size", default=8, show_default=True, help="recordings decoded as concurrent streams")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@model_placement
def eval_asr(model: str, data_dirs, count, batch_size: int, threads, device: str, dtype: str) -> None:
    """Word error rate and speed of streaming recognition on a corpus."""
    from .data.manifest import read_corpus
    from .evaluation.asr import evaluate_asr

    _set_threads(threads)
    rows = [row for source in data_dirs for row in read_corpus(source)][:count]
    report = evaluate_asr(_load_model(model, "asr", device, dtype).transcriber(), rows, batch_size=batch_size)
    report["model"] = model
    click.echo(json.dumps(report, indent=2))


decoder_option = click.option(
    "--decoder", type=click.Path(exists=True, file_okay=False), default=None,
    help="decode the model's codes with the decode path of this codec checkpoint, one trained on the same codes "
         "(e.g. a `train codec` run with decoder_only, exported)")


def _use_decoder(engine, decoder: str | None) -> None:
    """With ``--decoder``: ``engine``'s codec decodes with that checkpoint's decode path."""
    if decoder is None:
        return
    from .engine import load_engine

    other = load_engine(decoder, device="cpu").codec
    if other is None:
        raise click.UsageError(f"{decoder}: holds no codec")
    try:
        engine.codec.use_decoder_of(other.to(next(engine.codec.parameters()).device))
    except ValueError as exc:
        raise click.UsageError(f"--decoder {decoder}: {exc}") from exc


@evaluate.command("tts")
@click.option("--model", default="default", show_default=True, help="TTS checkpoint directory, hub id or default")
@click.option("--data", "data_dirs", required=True, multiple=True, type=click.Path(exists=True),
              help="corpus directory or manifest whose texts are spoken (repeatable)")
@click.option("--count", type=int, default=30, show_default=True, help="use the first COUNT texts")
@click.option("--seed", default=0, show_default=True, help="text i is sampled with seed SEED + i")
@click.option("--temperature", type=float, default=None, help="sampling temperature (default 0.6; 0 = greedy)")
@click.option("--judge", is_flag=True, help="transcribe with the judge, Whisper tiny.en (delaykit[judge])")
@click.option("--asr", "asr_model", default=None, help="also transcribe with this delaykit ASR model (default: "
              "the shipped one)")
@click.option("--originals", is_flag=True, help="also score the corpus's own recordings of the texts")
@click.option("--voice", default=None, help="a named voice of the model (default: its default voice)")
@click.option("--pitch", type=click.IntRange(-2, 2), default=None, help="pitch step of the named voice")
@click.option("--rate", type=click.FloatRange(0.6, 1.5), default=None, help="speaking rate of the named voice")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="keep the wavs here")
@decoder_option
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@model_placement
def eval_tts(model: str, data_dirs, count: int, seed: int, temperature, judge: bool, asr_model, originals: bool,
             voice, pitch, rate, out_dir, decoder, threads, device: str, dtype: str) -> None:
    """Intelligibility (WER of recognisers that did not make the speech), pace and speed of TTS."""
    from .data.manifest import read_corpus
    from .evaluation.tts import AsrRecognizer, evaluate_tts
    from .modes.tts import SynthesisOptions

    _set_threads(threads)
    if not judge and asr_model is None:
        raise click.UsageError("give --judge, --asr MODEL or both: something has to listen")
    rows = [row for source in data_dirs for row in read_corpus(source)][:count]
    recognizers: dict = {}
    if judge:
        from .evaluation.judge import WhisperJudge

        recognizers["judge"] = WhisperJudge(threads=threads or 2)
    if asr_model is not None:
        recognizers["asr"] = AsrRecognizer(_load_model(asr_model, "asr", device, dtype))
    overrides = {key: value for key, value in (("temperature", temperature), ("voice", voice), ("pitch", pitch),
                                               ("rate", rate)) if value is not None}
    options = SynthesisOptions(**overrides)
    engine = _load_model(model, "tts", device, dtype).engine
    _use_decoder(engine, decoder)
    report = evaluate_tts(engine, rows, recognizers, options, seed=seed, judge_originals=originals, out_dir=out_dir)
    report["model"] = model
    if decoder is not None:
        report["decoder"] = decoder
    click.echo(json.dumps(report, indent=2))


@evaluate.command("voices")
@click.option("--model", default="default", show_default=True, help="TTS checkpoint with named voices")
@click.option("--data", "data_dirs", required=True, multiple=True, type=click.Path(exists=True),
              help="corpus directory or manifest whose texts are spoken (repeatable)")
@click.option("--count", type=int, default=8, show_default=True, help="use the first COUNT texts")
@click.option("--setting", "settings", multiple=True, required=True,
              help="a voice setting VOICE[,pitch=P][,rate=R], e.g. en-us+f3,pitch=2 (repeatable)")
@click.option("--seed", default=0, show_default=True, help="text i is sampled with seed SEED + i")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@model_placement
def eval_voices(model: str, data_dirs, count: int, settings, seed: int, threads, device: str,
                dtype: str) -> None:
    """Median F0 and speaking rate of each voice setting on the same texts and seeds: whether pitch steps,
    rates and timbres do what they say."""
    from .data.manifest import read_corpus
    from .evaluation.voices import evaluate_voices
    from .voice import VoiceChoice

    _set_threads(threads)
    choices = {}
    for setting in settings:
        voice, *pairs = setting.split(",")
        fields: dict = {"voice": voice or None}
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key not in ("pitch", "rate") or not value:
                raise click.UsageError(f"{setting!r}: expected VOICE[,pitch=P][,rate=R]")
            fields[key] = int(value) if key == "pitch" else float(value)
        choices[setting] = VoiceChoice(**fields)
    rows = [row for source in data_dirs for row in read_corpus(source)][:count]
    engine = _load_model(model, "tts", device, dtype).engine
    try:
        report = evaluate_voices(engine, [row["text"] for row in rows], choices, seed=seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    report["model"] = model
    click.echo(json.dumps(report, indent=2))


@evaluate.command("dialogue")
@click.option("--model", default="default", show_default=True,
              help="dialogue checkpoint directory, hub id or default")
@click.option("--data", "data_dirs", required=True, multiple=True, type=click.Path(exists=True),
              help="conversations of `delaykit data dialogues --split heldout` (repeatable)")
@click.option("--count", type=int, default=40, show_default=True, help="use the first COUNT conversations")
@click.option("--seed", default=0, show_default=True, help="seed of the agent's sampling")
@click.option("--judge", is_flag=True, help="transcribe the agent with the judge, Whisper tiny.en (delaykit[judge])")
@click.option("--asr", "asr_model", default=None, help="transcribe the agent with this delaykit ASR model")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="keep the stereo sessions here (user left, agent right)")
@click.option("--text-temperature", type=float, default=None,
              help="sampling temperature of the agent's text (default: the checkpoint's or 0.7; 0 = greedy)")
@click.option("--audio-temperature", type=float, default=None,
              help="sampling temperature of the agent's audio (default: the checkpoint's or 0.8; 0 = greedy)")
@click.option("--agent", type=click.Choice(DIALOGUE_AGENTS), default="model", show_default=True,
              help="who speaks for the agent: the model, or (ceilings) the conversation's own rendered agent "
                   "channel, as is or round-tripped through the model's codec")
@decoder_option
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@model_placement
def eval_dialogue(model: str, data_dirs, count: int, seed: int, judge: bool, asr_model, out_dir,
                  text_temperature: float | None, audio_temperature: float | None, agent: str, decoder, threads,
                  device: str, dtype: str) -> None:
    """Answers right (heard and in the agent's text), response and stop latency, step time of dialogue."""
    import dataclasses

    from .data.manifest import read_corpus
    from .evaluation.dialogue import DialogueEvalConfig, evaluate_dialogue
    from .evaluation.tts import AsrRecognizer

    _set_threads(threads)
    if judge and asr_model is not None:
        raise click.UsageError("give --judge or --asr MODEL, not both")
    rows = [row for source in data_dirs for row in read_corpus(source)][:count]
    recognizer = None
    if judge:
        from .evaluation.judge import WhisperJudge

        recognizer = WhisperJudge(threads=threads or 2)
    elif asr_model is not None:
        recognizer = AsrRecognizer(_load_model(asr_model, "asr", device, dtype))
    loaded = _load_model(model, "dialogue", device, dtype)
    _use_decoder(loaded.engine, decoder)
    conversation = loaded.conversation(_dialogue_options(loaded, seed, text_temperature, audio_temperature))
    report = evaluate_dialogue(conversation, rows, recognizer, DialogueEvalConfig(agent=agent), out_dir=out_dir)
    report["agent"] = agent
    report["sampling"] = {name: dataclasses.asdict(getattr(conversation.options, name)) for name in ("text", "audio")}
    report.update(model=model, recognizer="judge" if judge else asr_model)
    if decoder is not None:
        report["decoder"] = decoder
    click.echo(json.dumps(report, indent=2))


@main.group()
def bench() -> None:
    """Measure speed on this machine (JSON figures on stdout)."""


@bench.command("asr")
@click.option("--model", default="default", show_default=True, help="ASR checkpoint directory, hub id or default")
@click.option("--data", "data_dirs", required=True, multiple=True, type=click.Path(exists=True),
              help="corpus with word alignments, for the recordings and the word-latency reference")
@click.option("--count", default=16, show_default=True, help="recordings to use")
@click.option("--streams", default="1,4,16,64", show_default=True, help="concurrent stream counts to time")
@click.option("--frames", default=50, show_default=True, help="80 ms steps timed per stream count")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@model_placement
def bench_asr(model: str, data_dirs, count: int, streams: str, frames: int, threads, device: str,
              dtype: str) -> None:
    """Streams served in real time, step time and word latency of streaming recognition."""
    from .audio import load_audio
    from .data.manifest import read_corpus
    from .evaluation.speed import benchmark_asr

    _set_threads(threads)
    transcriber = _load_model(model, "asr", device, dtype).transcriber()
    rows = [row for source in data_dirs for row in read_corpus(source)][:count]
    signals = [load_audio(row["path"], transcriber.sample_rate) for row in rows]
    report = benchmark_asr(transcriber, rows, signals, [int(s) for s in streams.split(",")], frames,
                           log=lambda entry: click.echo(json.dumps(entry), err=True))
    report["model"] = model
    click.echo(json.dumps(report, indent=2))


@bench.command("tts")
@click.option("--model", default="default", show_default=True, help="TTS checkpoint directory, hub id or default")
@click.option("--data", "data_dirs", multiple=True, type=click.Path(exists=True),
              help="corpus whose texts to speak")
@click.option("--text", "text_file", type=click.Path(exists=True, dir_okay=False),
              help="or a file of texts, one per line")
@click.option("--count", default=10, show_default=True, help="texts to use")
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@click.option("--decode-frames", default=None,
              help="most frames the codec decodes per call (default: the synthesis default, 4); several, as 1,4, "
                   "are timed one after the other, with the ratio of their speeds")
@model_placement
def bench_tts(model: str, data_dirs, text_file, count: int, seed: int, threads, decode_frames: str | None,
              device: str, dtype: str) -> None:
    """Time to first audio (whole text, and words arriving one at a time), time per frame and real-time
    factor of streaming synthesis."""
    from pathlib import Path

    from .data.manifest import read_corpus
    from .evaluation.speed import benchmark_tts
    from .modes.tts import SynthesisOptions

    if bool(data_dirs) == bool(text_file):
        raise click.UsageError("give --data or --text (one of them)")
    if text_file:
        texts = [line.strip() for line in Path(text_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = [row["text"] for source in data_dirs for row in read_corpus(source)]
    if not texts:
        raise DelaykitError("no texts to speak")
    _set_threads(threads)
    loaded = _load_model(model, "tts", device, dtype)
    reports = []
    chunks = [SynthesisOptions().decode_frames] if decode_frames is None else [int(n) for n in decode_frames.split(",")]
    for chunk in chunks:
        synthesizer = loaded.synthesizer(SynthesisOptions(seed=seed, decode_frames=chunk))
        report = benchmark_tts(synthesizer, texts[:count], log=lambda entry: click.echo(json.dumps(entry), err=True))
        reports.append({**report, "decode_frames": chunk, "model": model})
    if len(reports) == 1:
        click.echo(json.dumps(reports[0], indent=2))
        return
    ratio = reports[-1]["x_real_time"] / reports[0]["x_real_time"]
    click.echo(json.dumps({"runs": reports, "x_real_time_last_over_first": round(ratio, 2)}, indent=2))


@bench.command("dialogue")
@click.option("--model", default="default", show_default=True,
              help="dialogue checkpoint directory, hub id or default")
@click.option("--audio", "audio_files", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False), help="what the users say (reused round-robin)")
@click.option("--streams", default="1,4,16", show_default=True, help="concurrent conversation counts to time")
@click.option("--frames", default=50, show_default=True, help="80 ms steps timed per count")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@model_placement
def bench_dialogue(model: str, audio_files, streams: str, frames: int, threads, device: str, dtype: str) -> None:
    """Step time and real-time factor of full-duplex dialogue, for conversations batched together."""
    from .audio import load_audio
    from .evaluation.speed import benchmark_dialogue

    _check_audio_files(audio_files)
    _set_threads(threads)
    conversation = _load_model(model, "dialogue", device, dtype).conversation()
    signals = [load_audio(path, conversation.codec.sample_rate) for path in audio_files]
    report = benchmark_dialogue(conversation, signals, [int(s) for s in streams.split(",")], frames,
                                log=lambda entry: click.echo(json.dumps(entry), err=True))
    report["model"] = model
    click.echo(json.dumps(report, indent=2))


@main.command()
@click.option("--model", default="default", show_default=True,
              help="checkpoint directory, hub id or default; its mode picks the endpoint")
@click.option("--mode", type=click.Choice(["asr", "tts", "dialogue"]), default=None,
              help="with --model default: which shipped model (default asr)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (0.0.0.0: every interface)")
@click.option("--port", default=8998, show_default=True)
@click.option("--max-sessions", default=16, show_default=True,
              help="concurrent sessions (one batch)")
@click.option("--token", default=None, envvar="DELAYKIT_TOKEN", help="API token clients must present")
@click.option("--seed", type=int, default=None, help="tts, dialogue: seed of the sampling")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@model_placement
def serve(model: str, mode: str | None, host: str, port: int, max_sessions: int, token, seed: int | None,
          threads, device: str, dtype: str) -> None:
    """Serve the model over WebSocket: /api/asr (recognition), /api/tts (synthesis) or /api/chat (dialogue),
    by the checkpoint's mode, up to --max-sessions sessions in one batch; with /health and /metrics."""
    import asyncio
    import logging

    try:
        from .serve.server import AsrServer, ServeConfig
    except ImportError as exc:
        raise DelaykitError("the server needs websockets: pip install 'delaykit[serve]'") from exc
    from .checkpoints import default_name

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _set_threads(threads)
    config = ServeConfig(host=host, port=port, max_sessions=max_sessions, token=token)
    if mode is not None and model != "default":
        raise click.UsageError("--mode chooses among the shipped models: it goes with --model default")
    loaded = _load_placed(default_name(mode or "asr") if model == "default" else model, device, dtype)
    if loaded.mode == "asr":
        server = AsrServer(loaded.transcriber(), config, model_name=model)
    elif loaded.mode == "tts":
        from .modes.tts import SynthesisOptions
        from .serve.speech import TtsServer

        server = TtsServer(loaded.synthesizer(SynthesisOptions(seed=seed)), config, model_name=model)
    else:
        from .modes.dialogue import DialogueOptions
        from .serve.speech import ChatServer

        server = ChatServer(loaded.conversation(DialogueOptions(seed=seed)), config, model_name=model)
    try:
        asyncio.run(server.serve(ready=lambda bound: click.echo(
            f"listening on ws://{host}:{bound}{server.endpoint}", err=True)))
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        server.close()


@main.command("app")
@click.argument("mode", type=click.Choice(["asr", "tts", "dialogue"]))
@click.option("--model", default="default", show_default=True, help="checkpoint directory, hub id or default")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=7860, show_default=True)
@click.option("--max-sessions", default=8, show_default=True,
              help="asr, tts, dialogue: browser sessions served at once (one batch)")
def app(mode: str, model: str, host: str, port: int, max_sessions: int) -> None:
    """Launch the Gradio app of MODE (needs delaykit[app])."""
    try:
        import gradio  # noqa: F401
    except ImportError as exc:
        raise DelaykitError("the apps need gradio: pip install 'delaykit[app]'") from exc
    if mode == "asr":
        from .apps.asr import make_demo as make_asr_demo

        demo = make_asr_demo(model, max_sessions).queue(default_concurrency_limit=max_sessions)
    elif mode == "tts":
        from .apps.tts import make_demo as make_tts_demo

        demo = make_tts_demo(model, max_sessions)
    else:
        from .apps.dialogue import make_demo as make_dialogue_demo

        demo = make_dialogue_demo(model, max_sessions)
    demo.launch(server_name=host, server_port=port)


# ---------------------------------------------------------------------------------------------------------
# Modes: speech recognition, speech synthesis, dialogue


def _load_placed(name: str, device: str = "auto", dtype: str = "float32"):
    """The checkpoint ``name`` as a :class:`delaykit.api.Model` on ``device`` (one of DEVICES) in ``dtype``
    (one of DTYPES)."""
    import torch

    from .api import load

    if device == "cuda" and not torch.cuda.is_available():
        raise DelaykitError("--device cuda: torch sees no CUDA device on this machine (use --device cpu)")
    return load(name, device=device, dtype=getattr(torch, dtype))


def _load_model(name: str, mode: str, device: str = "auto", dtype: str = "float32"):
    """The checkpoint ``name`` as a :class:`delaykit.api.Model` for ``mode`` on ``device`` in ``dtype``;
    "default" is the shipped model of that mode (``checkpoints/default-<mode>``)."""
    from .checkpoints import default_name
    from .errors import CheckpointError

    if name == "default":
        name = default_name(mode)
    model = _load_placed(name, device, dtype)
    if model.mode != mode:
        raise CheckpointError(f"{name}: a {model.mode} checkpoint cannot do {mode}")
    return model


def _dialogue_options(loaded, seed: int | None, text_temperature: float | None = None,
                      audio_temperature: float | None = None):
    """The sampling a dialogue checkpoint recommends (else moshi's), with the temperatures asked for."""
    import dataclasses

    from .modes.dialogue import DialogueOptions

    files = loaded.engine.files
    options = DialogueOptions(seed=seed).resolved(files.config.get("dialogue_config") if files else None)
    if text_temperature is not None:
        options = dataclasses.replace(options, text=dataclasses.replace(options.text, temperature=text_temperature))
    if audio_temperature is not None:
        options = dataclasses.replace(options, audio=dataclasses.replace(options.audio,
                                                                         temperature=audio_temperature))
    return options


def _refuse_existing(paths, force: bool) -> None:
    from pathlib import Path

    for path in paths:
        if not force and Path(path).exists():
            raise DelaykitError(f"{path}: already exists (pass --force to overwrite)")


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _detach_stdout() -> None:
    """Point file descriptor 1 at /dev/null after its reader has gone, so that the interpreter's last flush of
    stdout does not print a BrokenPipeError."""
    import os

    with contextlib.suppress(OSError, ValueError):  # no real descriptor (e.g. under CliRunner)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _script_turns(lines):
    """``(line number, speaker, text)`` of numbered script lines: a line that opens with [S1] or [S2] starts a
    turn of the main (0) or the other (1) speaker, any other line goes on with the current turn (the main
    speaker's until a tag says otherwise)."""
    speaker = 0
    for number, line in lines:
        tag = SPEAKER_TAG.match(line)
        if tag is not None:
            speaker, line = int(tag.group(1)) - 1, line[tag.end():]
        yield number, speaker, line


def _input_label(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _check_audio_files(paths) -> None:
    """Refuse, before a model is loaded, input files whose header libsndfile cannot read (stdin is read later)."""
    import soundfile

    from .errors import AudioError

    for path in paths:
        if path == "-":
            continue
        try:
            soundfile.info(path)
        except (RuntimeError, OSError, ValueError, TypeError) as exc:  # LibsndfileError is a RuntimeError
            raise AudioError(f"{path}: cannot read audio ({exc})") from exc


@main.command()
@click.argument("audio", nargs=-1, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--model", default="default", show_default=True, help="ASR checkpoint directory, hub id or default")
@click.option("--mic", is_flag=True, help="recognise the microphone live until Ctrl-C (needs delaykit[mic])")
@click.option("--duration", type=float, default=None, help="with --mic: stop after this many seconds")
@click.option("-f", "--output-format", "output_format", type=click.Choice([*FORMATS, "all"]), default=None,
              help="transcript format (default: words as they come on stdout; with -o: all formats)")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="write <stem>.<format> files into this directory instead of printing")
@click.option("--vad", is_flag=True, help="print end-of-turn events on stderr")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@click.option("--force", is_flag=True, help="overwrite existing output files")
@click.option("-q", "--quiet", is_flag=True, help="no progress messages on stderr")
@model_placement
def asr(audio: tuple[str, ...], model: str, mic: bool, duration: float | None, output_format: str | None,
        output_dir: str | None, vad: bool, threads: int | None, force: bool, quiet: bool, device: str,
        dtype: str) -> None:
    """Transcribe AUDIO files ("-": stdin; a WAV there is recognised as it arrives, e.g. from
    `arecord -f S16_LE -r 24000 -t wav`, other formats once read whole).

    Up to 8 files are decoded together, as concurrent streams of one batch. Without -o, words are printed
    as they are recognised (one file: on one line; several: one "FILE: word" line each), or with -f (one
    file) the whole transcript once it ends. With -o, each file's transcripts are written as it ends."""
    from pathlib import Path

    if mic == bool(audio):
        raise click.UsageError("give AUDIO files or --mic (not both)")
    if duration is not None and not mic:
        raise click.UsageError("--duration goes with --mic")
    if audio.count("-") > 1:
        raise click.UsageError("stdin ('-') can be read only once")
    if output_dir is None and output_format == "all":
        raise click.UsageError("-f all writes several files: give -o DIR")
    if output_dir is None and output_format is not None and len(audio) > 1:
        raise click.UsageError("-f with several inputs needs -o DIR (without -f, words are streamed per file)")
    formats = (FORMATS if output_format in (None, "all") else (output_format,)) if output_dir else ()
    targets: list[list[Path]] = []
    if output_dir is not None:
        stems = ["microphone"] if mic else ["stdin" if path == "-" else Path(path).stem for path in audio]
        for stem in stems:
            if stems.count(stem) > 1:
                raise DelaykitError(f"two inputs are named {stem!r}: their transcripts would overwrite each other")
        targets = [[Path(output_dir) / f"{stem}.{name}" for name in formats] for stem in stems]
        _refuse_existing([path for paths in targets for path in paths], force)
    _check_audio_files(audio)
    if mic:
        _asr_microphone(model, duration, vad, threads, output_format, targets[0] if targets else [], quiet,
                        device, dtype)
        return

    _set_threads(threads)
    from .audio import load_audio, load_audio_bytes
    from .formats import render
    from .modes.asr import EndOfSpeech, TranscribeOptions, Word
    from .modes.asr_batch import ItemFinished, transcribe_batch
    from .wav_pipe import read_blocks, read_wav_header

    transcriber = _load_model(model, "asr", device, dtype).transcriber(TranscribeOptions(vad=vad))
    if output_dir is not None:
        _make_output_dir(Path(output_dir))
    stdin_start = b""  # what was read of stdin before it turned out not to be a WAV to stream
    if audio == ("-",):  # a WAV on stdin is recognised as it arrives; other formats are read whole
        wav, stdin_start = read_wav_header(sys.stdin.buffer)
        if wav is not None:
            block = round(wav.sample_rate * transcriber.frame_size / transcriber.sample_rate)
            chunks = _resampled(read_blocks(sys.stdin.buffer, wav, block), wav.sample_rate, transcriber.sample_rate)
            _transcribe_live(transcriber, chunks, output_format, targets[0] if targets else [], "<stdin>", quiet)
            return
    several = len(audio) > 1
    for first in range(0, len(audio), MAX_ASR_BATCH):
        paths = audio[first:first + MAX_ASR_BATCH]
        signals = [load_audio_bytes(stdin_start + sys.stdin.buffer.read(), "<stdin>", transcriber.sample_rate)
                   if path == "-" else load_audio(path, transcriber.sample_rate) for path in paths]
        words: list[list] = [[] for _ in paths]
        for event in transcribe_batch(transcriber, signals):
            label = _input_label(paths[event.item])
            if isinstance(event, Word):
                words[event.item].append(event)
                if output_dir is None and output_format is None:  # stream the words
                    if several:
                        click.echo(f"{label}: {event.text}")
                    else:
                        click.echo((" " if len(words[0]) > 1 else "") + event.text, nl=False)
            elif isinstance(event, EndOfSpeech):
                click.echo(f"{label + ': ' if several else ''}[end of turn at {event.time:.2f} s]", err=True)
            elif isinstance(event, ItemFinished):
                item_words = words[event.item]
                if output_dir is not None:
                    for path in targets[first + event.item]:
                        write_text_atomically(path, render(path.suffix[1:], item_words))
                        if not quiet:
                            click.echo(f"{label}: wrote {path}", err=True)
                elif output_format is not None:
                    click.echo(render(output_format, item_words), nl=False)
                elif not several and item_words:
                    click.echo("")


def _asr_microphone(model: str, duration: float | None, vad: bool, threads: int | None,
                    output_format: str | None, targets: list, quiet: bool, device: str, dtype: str) -> None:
    """Words from the microphone as they are recognised; Ctrl-C (or --duration) flushes the last ones."""
    from .microphone import microphone_frames
    from .modes.asr import TranscribeOptions

    _set_threads(threads)
    transcriber = _load_model(model, "asr", device, dtype).transcriber(TranscribeOptions(vad=vad))
    frames = microphone_frames(transcriber.sample_rate, transcriber.frame_size, duration)
    if not quiet:
        click.echo("listening (Ctrl-C to stop)", err=True)
    try:
        _transcribe_live(transcriber, frames, output_format, targets, "microphone", quiet)
    finally:
        frames.close()


def _transcribe_live(transcriber, chunks, output_format: str | None, targets: list, label: str,
                     quiet: bool) -> None:
    """Recognise one signal that arrives in ``chunks`` (mono float32 at the model's rate, any sizes) as it
    comes: words on stdout as they are recognised (or, with ``output_format``, the transcript at the end, or
    files written to ``targets``), end-of-turn events on stderr. Ctrl-C ends the signal where it is, keeps
    the words so far, and exits 130 once they are out. The words equal those of the whole signal at once."""
    import numpy as np

    from .errors import AudioError
    from .formats import render
    from .modes.asr import EndOfSpeech, Word

    frame = transcriber.frame_size
    words: list = []
    received = 0

    def show(events: list) -> None:
        for event in events:
            if isinstance(event, Word):
                words.append(event)
                if output_format is None and not targets:
                    click.echo((" " if len(words) > 1 else "") + event.text, nl=False)
            elif isinstance(event, EndOfSpeech):
                click.echo(f"[end of turn at {event.time:.2f} s]", err=True)

    interrupted = False
    pending = np.zeros(0, np.float32)  # samples short of a whole frame
    with transcriber.stream(1) as stream:
        try:
            for chunk in chunks:
                received += len(chunk)
                pending = np.concatenate([pending, np.asarray(chunk, np.float32)])
                whole = len(pending) - len(pending) % frame
                if whole:
                    show(stream.push(pending[:whole]))
                    pending = pending[whole:]
        except KeyboardInterrupt:
            interrupted = True
        if not received and not interrupted:
            raise AudioError(f"{label}: audio is empty (0 samples)")
        padding = -len(pending) % frame
        if len(pending):
            show(stream.push(np.pad(pending, (0, padding))))
        show(stream.flush(padded_samples=padding if len(pending) else 0))
    if targets:
        _make_output_dir(targets[0].parent)
        for path in targets:
            write_text_atomically(path, render(path.suffix[1:], words))
            if not quiet:
                click.echo(f"{label}: wrote {path}", err=True)
    else:
        click.echo(render(output_format, words) if output_format else "", nl=not output_format)
    if interrupted:
        sys.exit(INTERRUPTED_EXIT_CODE)


def _make_output_dir(directory) -> None:
    """Create ``directory`` (a Path) and its parents; a DelaykitError names it when that fails."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DelaykitError(f"{directory}: cannot create the output directory ({exc.strerror or exc})") from exc


def _resampled(blocks, orig_rate: int, target_rate: int):
    """``blocks`` of a signal at ``orig_rate`` resampled to ``target_rate`` as they come."""
    from .audio import StreamingResampler

    if orig_rate == target_rate:
        yield from blocks
        return
    resampler = StreamingResampler(orig_rate, target_rate)
    for block in blocks:
        yield resampler.push(block)
    yield resampler.flush()


@main.command()
@click.argument("script", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="WAV file to write, or - for raw 16-bit mono PCM on stdout, frame by frame")
@click.option("--play", is_flag=True, help="play through the speakers as it is generated (needs delaykit[mic])")
@click.option("--stereo", is_flag=True,
              help="two-speaker scripts: a two-channel WAV, [S1]'s turns on the left, [S2]'s on the right")
@click.option("--model", default="default", show_default=True, help="TTS checkpoint directory, hub id or default")
@click.option("--seed", type=int, default=None, help="seed of the sampling (repeatable output)")
@click.option("--temperature", type=float, default=None, help="sampling temperature (default 0.6; 0 = greedy)")
@click.option("--cfg", type=float, default=None, help="classifier-free guidance strength (default 2.0, for models trained for it)")
@click.option("--voice", default=None,
              help="a voice of the model by name (`delaykit voices` lists them, e.g. en-us+f3), or for Kyutai's "
                   "voice-conditioned TTS a .safetensors voice embedding file")
@click.option("--pitch", type=click.IntRange(-2, 2), default=None, help="pitch step of a named voice, -2..2")
@click.option("--rate", type=click.FloatRange(0.6, 1.5), default=None,
              help="speaking rate relative to the voice's usual, 0.6..1.5 (models with named voices)")
@click.option("--pace", type=float, default=None,
              help="added to the pause (PAD) logit: > 0 speaks more slowly, < 0 faster (about -2..2; default 0)")
@click.option("--timings", type=click.Path(dir_okay=False), default=None,
              help="write each word's start and end as JSON [{word, start, end}] here")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@click.option("--force", is_flag=True, help="overwrite existing output files")
@click.option("-q", "--quiet", is_flag=True, help="no messages on stderr (the sample rate of -o - included)")
@model_placement
def tts(script: str, output: str | None, play: bool, stereo: bool, model: str, seed: int | None,
        temperature: float | None,
        cfg: float | None, voice: str | None, pitch: int | None, rate: float | None, pace: float | None,
        timings: str | None, threads: int | None, force: bool, quiet: bool, device: str, dtype: str) -> None:
    """Speak the text of SCRIPT ("-": stdin, spoken line by line as it arrives) and write it to a WAV file,
    stream it as raw PCM (-o -), or play it (--play; with -o as well, both).

    `<break time="0.5s"/>` asks for a pause. For a model trained with speaker turns, a line that opens with
    [S1] or [S2] starts a turn of the first or the second speaker (lines without a tag go on with the turn).

    Raw PCM goes out as each 80 ms frame is generated; the sample rate is printed on stderr, e.g.
    `delaykit tts story.txt -o - | aplay -r 24000 -f S16_LE`."""
    import time
    from pathlib import Path

    if output is None and not play:
        raise click.UsageError("give -o FILE.wav, -o - (raw PCM on stdout) or --play")
    to_stdout = output == "-"
    if stereo and (output is None or to_stdout):
        raise click.UsageError("--stereo writes a two-channel WAV: give -o FILE.wav")
    _refuse_existing([path for path in ((None if to_stdout else output), timings) if path], force)
    from .errors import TextError
    from .modes.script import ScriptWord, parse_text
    from .text import ensure_utf8

    label = _input_label(script)
    if script == "-":  # spoken as it comes: a line is pushed to the model as soon as it is read
        lines = ((number, ensure_utf8(line, f"<stdin> line {number}"))
                 for number, line in enumerate(iter(sys.stdin.buffer.readline, b""), 1))
    else:  # checked before the model loads: TextError (exit 1) for invalid UTF-8 or a script without words
        lines = list(enumerate(ensure_utf8(Path(script).read_bytes(), script).splitlines(keepends=True), 1))
        if not any(isinstance(item, ScriptWord) for _, speaker, text in _script_turns(lines)
                   for item in parse_text(text, speaker)):
            raise TextError(f"{script}: text is empty (no word to say)")

    _set_threads(threads)
    import numpy as np
    import torch

    from .audio import Pcm16StreamWriter, float_to_pcm16, write_audio
    from .modes.tts import AudioFrame, SpokenWord, SynthesisOptions, speaker_channels, word_times

    overrides = {key: value for key, value in (("seed", seed), ("temperature", temperature), ("cfg_coef", cfg),
                                               ("padding_bonus", pace), ("pitch", pitch), ("rate", rate))
                 if value is not None}
    if voice is not None and voice.endswith(".safetensors"):
        from .modes.tts import load_voice

        overrides["voices"] = (load_voice(voice),)  # CheckpointError (exit 1) for a file that is not one
    elif voice is not None:
        overrides["voice"] = voice
    try:
        synthesizer = _load_model(model, "tts", device, dtype).synthesizer(SynthesisOptions(**overrides))
    except ValueError as exc:  # an option value this checkpoint does not take (e.g. a --cfg it has no bin for)
        raise click.UsageError(str(exc)) from exc
    if cfg is not None and not synthesizer.supports_guidance:
        raise click.UsageError(f"{model}: this model was not trained for classifier-free guidance; drop --cfg")
    sample_rate = synthesizer.codec.sample_rate
    pcm_out = None
    if to_stdout:
        pcm_out = Pcm16StreamWriter(sys.stdout.buffer, sample_rate)
    frames: list[torch.Tensor] = []  # kept for the WAV only: a stream to stdout holds no audio in memory
    samples = 0
    spoken: list[SpokenWord] = []
    started = time.perf_counter()
    with contextlib.ExitStack() as playing:
        speakers = None
        if play:
            from .microphone import Speakers

            speakers = playing.enter_context(Speakers(sample_rate))  # plays out the last frames on exit
        def deliver(events) -> None:
            nonlocal samples
            for event in events:
                if isinstance(event, AudioFrame):
                    samples += event.pcm.numel()
                    if speakers is not None:
                        speakers.play(event.pcm.cpu().numpy())
                    if pcm_out is not None:
                        if not pcm_out.samples_written and not quiet:  # said once, as the first frame goes out
                            click.echo(f"streaming raw 16-bit mono PCM at {sample_rate} Hz "
                                       f"(e.g. | aplay -r {sample_rate} -f S16_LE -c 1)", err=True)
                        pcm_out.write(event.pcm.cpu().numpy())  # written and flushed at once
                    elif output is not None:
                        frames.append(event.pcm.cpu())
                elif isinstance(event, SpokenWord):
                    spoken.append(event)

        try:
            with synthesizer.stream() as stream:
                has_words = False
                held: list = []  # breaks read before the first word: a script without words makes no sound
                for number, speaker, text in _script_turns(lines):  # say what the text so far allows, then wait
                    if speaker and not synthesizer.multi_speaker:
                        raise DelaykitError(f"{label} line {number}: [S2] asks for a second speaker; this model "
                                            "speaks with one voice (no speaker turns)")
                    held.extend(parse_text(text, speaker))
                    has_words = has_words or any(isinstance(item, ScriptWord) for item in held)
                    if has_words:
                        stream.push_items(held)
                        held = []
                        deliver(stream.events())
                if not has_words:
                    raise TextError(f"{label}: text is empty (no word to say)")
                stream.end_of_text()
                deliver(stream.events())
        finally:
            if pcm_out is not None:
                with contextlib.suppress(BrokenPipeError):
                    pcm_out.stream.flush()  # what was streamed stays readable, also after Ctrl-C
    elapsed = time.perf_counter() - started
    seconds = samples / sample_rate
    words = word_times(spoken, seconds)
    if output is not None and not to_stdout:  # the 16-bit samples -o - streams: both hold the same samples
        audio = torch.cat(frames) if frames else torch.zeros(0)  # [N]
        if stereo:
            audio = speaker_channels(audio, words, sample_rate)  # [2, N]
        pcm16 = np.frombuffer(float_to_pcm16(audio.numpy()), dtype="<i2")  # [N] or [N * 2] interleaved
        write_audio(output, pcm16.reshape(-1, 2).T if stereo else pcm16, sample_rate)
    if timings:  # a two-speaker model's words also say who speaks them
        entries = [json.dumps({"word": word.text, "start": round(word.start, 3), "end": round(word.end, 3),
                               **({"speaker": word.speaker} if synthesizer.multi_speaker else {})},
                              ensure_ascii=False) for word in words]
        write_text_atomically(timings, "[\n" + ",\n".join(entries) + ("\n]\n" if entries else "]\n"))
    destinations = [name for name, used in (("stdout", to_stdout), (output, output and not to_stdout),
                                            ("speakers", play)) if used]
    if not quiet:
        click.echo(f"{len(words)} words, {seconds:.2f} s of audio in {elapsed:.2f} s -> "
                   f"{', '.join(destinations)}", err=True)


@main.command()
@click.option("--model", default="default", show_default=True, help="TTS checkpoint directory, hub id or default")
@model_placement
def voices(model: str, device: str, dtype: str) -> None:
    """List the named voices of a TTS model (for `delaykit tts --voice`), the default one first, marked *."""
    synthesizer = _load_model(model, "tts", device, dtype).synthesizer()
    names = synthesizer.voice_names
    if not names:
        raise DelaykitError(f"{model}: this model has no named voices")
    default = synthesizer.default_voice.voice
    for name in sorted(names, key=lambda n: n != default):
        click.echo(f"{name} *" if name == default else name)


@main.command()
@click.argument("audio_in", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="stereo WAV to write: the user on the left, the agent on the right (needed with AUDIO_IN)")
@click.option("--mic", is_flag=True, help="a live session: you talk into the microphone, the agent answers "
              "through the speakers, until Ctrl-C or --duration (needs delaykit[mic])")
@click.option("--duration", type=float, default=None, help="with --mic: stop after this many seconds")
@click.option("--model", default="default", show_default=True,
              help="dialogue checkpoint directory, hub id or default")
@click.option("--seed", type=int, default=None, help="seed of the sampling (repeatable output)")
@click.option("--text-temperature", type=float, default=None,
              help="sampling temperature of the agent's words (default: the checkpoint's, else 0.7; 0 = greedy)")
@click.option("--audio-temperature", type=float, default=None,
              help="sampling temperature of the agent's speech (default: the checkpoint's, else 0.8; 0 = greedy)")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@click.option("--force", is_flag=True, help="overwrite OUTPUT if it exists")
@click.option("-q", "--quiet", is_flag=True, help="no progress messages on stderr")
@model_placement
def dialogue(audio_in: str | None, output: str | None, mic: bool, duration: float | None, model: str,
             seed: int | None, text_temperature: float | None, audio_temperature: float | None,
             threads: int | None, force: bool, quiet: bool, device: str, dtype: str) -> None:
    """Let the agent answer the user recorded in AUDIO_IN, or you, live (--mic), full duplex; its words are
    printed with their times as it says them, and both sides are written to OUTPUT when the session ends."""
    from pathlib import Path

    if mic == bool(audio_in):
        raise click.UsageError("give AUDIO_IN or --mic (not both)")
    if duration is not None and not mic:
        raise click.UsageError("--duration goes with --mic")
    if output is None and not mic:
        raise click.UsageError("-o OUT.wav is needed with AUDIO_IN")
    if output is not None:
        _refuse_existing([output], force)
        if not Path(output).absolute().parent.is_dir():
            raise DelaykitError(f"{output}: output directory {Path(output).absolute().parent} does not exist")
    _check_audio_files([audio_in] if audio_in else [])
    _set_threads(threads)
    import numpy as np

    from .audio import load_audio, write_audio
    from .formats import format_timestamp
    from .modes.dialogue import converse, words_from_pieces

    loaded = _load_model(model, "dialogue", device, dtype)
    conversation = loaded.conversation(_dialogue_options(loaded, seed, text_temperature, audio_temperature))
    sample_rate = conversation.codec.sample_rate
    user_frames: list[np.ndarray] = []  # what the agent heard, frame by frame
    agent_frames: list[np.ndarray] = []
    pieces: list[tuple[float, str]] = []  # (time, piece) of the word being said

    def say(word_pieces: list[tuple[float, str]]) -> None:
        for word in words_from_pieces(word_pieces, conversation.frame_duration):
            click.echo(f"[{format_timestamp(word.start)} --> {format_timestamp(word.end)}] {word.text}")

    if mic and not quiet:
        click.echo("listening and speaking (Ctrl-C to stop)", err=True)
    if mic:
        steps = _live_dialogue(conversation, duration, user_frames)
    else:
        user = load_audio(audio_in, sample_rate)  # [T]
        user_frames.append(user)
        steps = converse(conversation, user)
    interrupted = False
    try:
        for step in steps:
            agent_frames.append(step.agent_pcm[0].cpu().numpy())
            piece = step.text_pieces[0]
            if piece.startswith("\u2581") and pieces:  # a new word begins: the previous one is complete
                say(pieces)
                pieces = []
            if piece:
                pieces.append((step.text_time[0], piece))
    except KeyboardInterrupt:
        if not mic:
            raise
        interrupted = True  # the way a live session ends: keep what was said
    finally:
        steps.close()
    say(pieces)
    heard = np.concatenate(user_frames) if user_frames else np.zeros(0, np.float32)  # [T]
    if output is not None:
        agent = np.concatenate(agent_frames)[:heard.shape[0]] if agent_frames else np.zeros(0)  # [T]
        write_audio(output, np.stack([heard, agent.astype(np.float32)]), sample_rate)  # [2, T], atomically
        if not quiet:
            click.echo(f"{heard.shape[0] / sample_rate:.2f} s -> {output} (user left, agent right)", err=True)
    if interrupted:
        sys.exit(130)


def _live_dialogue(conversation, duration: float | None, heard: list):
    """Steps of a session whose user is the microphone, playing the agent through the speakers; each frame
    heard is appended to ``heard``."""
    import torch

    from .microphone import Speakers, microphone_frames

    frames = microphone_frames(conversation.codec.sample_rate, conversation.frame_size, duration)
    try:
        with Speakers(conversation.codec.sample_rate) as speakers, conversation.stream(1) as session:
            for frame in frames:
                heard.append(frame)
                step = session.step(torch.from_numpy(frame)[None])  # [1, frame_size]
                speakers.play(step.agent_pcm[0].cpu().numpy())
                yield step
    finally:
        frames.close()


if __name__ == "__main__":  # pragma: no cover
    main()
