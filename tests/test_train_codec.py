"""Codec training: the loss falls, a resumed run matches an uninterrupted one, export round-trips."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from delaykit.checkpoints import load_safetensors, resolve_checkpoint
from delaykit.codec.model import CodecConfig, CodecModel
from delaykit.codec.quantizer import QuantizerConfig
from delaykit.codec.seanet import SeanetConfig
from delaykit.data.crops import AudioCorpus, CropConfig
from delaykit.mel import mel_filterbank
from delaykit.train.codec import CodecTrainConfig, CodecTrainer, export_codec
from delaykit.train.discriminator import (
    DiscriminatorConfig,
    MultiResolutionDiscriminator,
    discriminator_loss,
    generator_losses,
)
from delaykit.train.losses import LogMelDistance, si_snr
from delaykit.transformer import TransformerConfig

SR = 24_000


def tiny_codec() -> CodecConfig:
    """Mimi's structure and 1920-sample frames (ratios 8, 6, 5, 4 + stride 2) at a toy width."""
    return CodecConfig(
        seanet=SeanetConfig(n_filters=2, dimension=16),
        quantizer=QuantizerConfig(dimension=8, input_dimension=16, output_dimension=16, n_q=4, bins=16,
                                  q_dropout=True),
        transformer=TransformerConfig(d_model=16, num_heads=2, num_layers=1, dim_feedforward=32, context=20,
                                      layer_scale=0.01, max_chunk=4),
        num_codebooks=4,
    )


def tiny_train_config(**overrides) -> CodecTrainConfig:
    config = CodecTrainConfig(model=tiny_codec(), crops=CropConfig(batch_size=2, min_frames=2, max_frames=3),
                              lr=3e-3, warmup_steps=1, decay_steps=100, log_every=2, checkpoint_minutes=1e9)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def tones() -> AudioCorpus:
    """A few seconds of sines and chirps at speech-like levels."""
    t = np.arange(SR) / SR  # [T]
    signals = [0.3 * np.sin(2 * np.pi * f * t) for f in (180.0, 440.0, 1200.0)]
    signals.append(0.2 * np.sin(2 * np.pi * (150 * t + 900 * t**2)))  # chirp 150 -> 1950 Hz
    return AudioCorpus.from_arrays([s.astype(np.float32) for s in signals])


def test_loss_falls(tmp_path):
    trainer = CodecTrainer(tiny_train_config(), tones(), tmp_path, log=io.StringIO())
    losses = [trainer.train_step()["loss"] for _ in range(24)]
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])


def test_resume_matches_uninterrupted_run(tmp_path):
    straight = CodecTrainer(tiny_train_config(max_steps=6), tones(), tmp_path / "a", log=io.StringIO())
    straight.fit()

    first = CodecTrainer(tiny_train_config(max_steps=3), tones(), tmp_path / "b", log=io.StringIO())
    first.fit()
    del first
    resumed = CodecTrainer(tiny_train_config(max_steps=6), tones(), tmp_path / "b", resume=True,
                           log=io.StringIO())
    assert resumed.step == 3
    resumed.fit()

    assert resumed.step == straight.step == 6
    expected, got = straight.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert resumed.sampler.state() == straight.sampler.state()
    metrics = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4, 6]


@pytest.mark.parametrize("weight_norm", [False, True])
def test_export_then_load_gives_identical_codes(tmp_path, weight_norm):
    trainer = CodecTrainer(tiny_train_config(max_steps=4, weight_norm=weight_norm), tones(), tmp_path / "run",
                           log=io.StringIO())
    trainer.fit()
    target = export_codec(tmp_path / "run", tmp_path / "ckpt")

    config = json.loads((target / "config.json").read_text())
    assert config["moshi_name"] is None and config["tokenizer_name"] is None
    files = resolve_checkpoint(target)
    loaded = CodecModel(CodecConfig.from_dict(config["codec_config"]))
    loaded.load_state_dict(load_safetensors(files.codec_weights), strict=True)
    loaded.eval()
    trained = trainer.model.eval()
    if weight_norm:
        assert any("parametrizations" in key for key in trained.state_dict())
        assert not any("parametrizations" in key for key in loaded.state_dict())

    audio = trainer.sampler.next_batch()  # [B, 1, T]
    with torch.no_grad():
        assert torch.equal(trained.encode(audio), loaded.encode(audio))
        codes = loaded.encode(audio)
        assert torch.equal(trained.decode(codes), loaded.decode(codes))


def test_config_overrides_and_round_trip(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"lr": 1e-4, "crops": {"batch_size": 3}}))
    config = CodecTrainConfig.load(path, ["model.seanet.n_filters=24", "max_steps=10", "betas=[0.9, 0.95]"])
    assert config.lr == 1e-4 and config.crops.batch_size == 3 and config.max_steps == 10
    assert config.model.seanet.n_filters == 24 and config.betas == (0.9, 0.95)
    assert CodecTrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_metrics():
    fb = mel_filterbank(512, 64, SR)
    assert fb.shape == (64, 257) and bool((fb.sum(-1) > 0).all())
    x = torch.randn(2, 1, SR // 2)
    assert float(LogMelDistance()(x, x)) == 0.0
    assert bool((si_snr(x, 3 * x) > 60).all())
    assert abs(float(si_snr(x + 0.1 * torch.randn_like(x), x).mean()) - 20.0) < 1.0


def test_espeak_utterances_train(tmp_path):
    synth = pytest.importorskip("delaykit.data.synth")
    if not synth.espeak_available():
        pytest.skip("espeak-ng is not installed")
    manifest = synth.synthesize(tmp_path / "data", synth.SynthConfig(hours=0.001, seed=3, workers=1),
                                log=io.StringIO())
    rows = synth.read_manifest(manifest)
    assert 1 <= len(rows) <= 4 and all(r["voice"].split("+")[0] in synth.TRAIN_VOICES for r in rows)
    corpus = AudioCorpus.from_manifests([tmp_path / "data"])
    level = np.sqrt(np.mean((corpus.samples / 32767.0) ** 2))
    assert 0.005 < level < 0.3  # espeak's near-full-scale output was brought down
    for row in rows:  # espeak's phonemes, in order, inside the utterance, ending in a pause
        starts = [start for _, start in row["phonemes"]]
        assert starts == sorted(starts) and 0 <= starts[0] and starts[-1] <= row["duration"]
        assert row["phonemes"][-1][0].startswith("_") and len(row["phonemes"]) > len(row["alignments"])
    trainer = CodecTrainer(tiny_train_config(max_steps=2, phoneme_weight=1.0), corpus, tmp_path / "run",
                           log=io.StringIO())
    trainer.fit()
    assert trainer.step == 2 and len(trainer.inventory) > 10


def test_cli_train_resume_export_eval(tmp_path):
    from click.testing import CliRunner

    from delaykit.audio import write_audio
    from delaykit.cli import main

    data = tmp_path / "data"
    (data / "wavs").mkdir(parents=True)
    rows = []
    for i, signal in enumerate(tones().utterance(j) for j in range(2)):
        write_audio(data / "wavs" / f"{i}.wav", signal, SR)
        rows.append(json.dumps({"path": f"wavs/{i}.wav", "text": "", "voice": "tone", "duration": 1.0}))
    (data / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_train_config().to_dict()))
    run = str(tmp_path / "run")
    runner = CliRunner()

    first = runner.invoke(main, ["train", "codec", "--data", str(data), "--out", run, "--config", str(config),
                                 "--set", "max_steps=2"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(main, ["train", "codec", "--data", str(data), "--out", run, "--resume",
                                 "--set", "max_steps=4"])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 3e-3  # the run's own config
    exported = runner.invoke(main, ["train", "export-codec", run, str(tmp_path / "ckpt")])
    assert exported.exit_code == 0, exported.output
    scores = runner.invoke(main, ["eval", "codec", str(tmp_path / "ckpt"), "--data", str(data),
                                  "--codebooks", "4,1"])
    assert scores.exit_code == 0, scores.output
    figures = json.loads(scores.output)["round_trip"]
    assert set(figures) == {"4", "1"} and figures["4"]["utterances"] == 2
    stability = json.loads(scores.output)["stability"]
    assert set(stability) == {"shift_1ms", "shift_10ms", "gain_-6dB"}
    assert all(len(shares) == 4 and all(0.0 <= s <= 1.0 for s in shares) for shares in stability.values())



def test_phoneme_targets_follow_the_timeline():
    from delaykit.train import phonemes
    from delaykit.train.phonemes import PhonemeInventory, PhonemeTimeline, normalize_phoneme, slot_targets

    assert normalize_phoneme("@2") == "@" and normalize_phoneme("_:") == "_" and normalize_phoneme("aI") == "aI"
    inventory = PhonemeInventory(["b", "aI", "@2", "_!"])
    assert inventory.names == ["_", "@", "aI", "b"] and inventory.id("zz") == 0
    timeline = PhonemeTimeline([["b", 0.10], ["aI", 0.14], ["_:", 0.30]], inventory)
    # Frames of 80 ms, 4 slots of 20 ms: slot centres 0.01, 0.03, ... 0.31 seconds into the crop.
    targets = slot_targets(timeline, 0.0, frames=4, frame_seconds=0.08, slots=4, valid_seconds=0.32)
    assert targets.tolist() == [[0, 0, 0, 0], [0, 3, 3, 2], [2, 2, 2, 2], [2, 2, 2, 0]]
    # A crop starting later, whose audio ends (zero padding) after 0.05 s: silence past the end.
    late = slot_targets(timeline, 0.095, frames=1, frame_seconds=0.08, slots=4, valid_seconds=0.05)
    assert late.tolist() == [[3, 3, 0, 0]]
    unknown = slot_targets(PhonemeTimeline([], inventory), 0.0, 2, 0.08, 4, 0.16)
    assert (unknown == phonemes.IGNORE).all()
    # One frame of lookahead: each frame names the previous frame's sounds; the first has none it heard.
    ahead = slot_targets(timeline, 0.0, frames=4, frame_seconds=0.08, slots=4, valid_seconds=0.32,
                         lookahead_frames=1)
    ignored = phonemes.IGNORE
    assert ahead.tolist() == [[ignored] * 4, [0, 0, 0, 0], [0, 3, 3, 2], [2, 2, 2, 2]]
    # Inside an utterance too: the first frame of a crop has no target (its sounds came before the crop).
    inside = slot_targets(timeline, 0.16, frames=2, frame_seconds=0.08, slots=4, valid_seconds=0.16,
                          lookahead_frames=1)
    assert inside.tolist() == [[ignored] * 4, [2, 2, 2, 2]]


def labelled_tones() -> AudioCorpus:
    """Each utterance: a tone whose pitch names its 'phoneme', then silence; one row without phonemes."""
    t = np.arange(SR) / SR  # [T]
    signals, rows = [], []
    for freq, name in ((220.0, "a"), (880.0, "i"), (440.0, "u")):
        signal = np.where(t < 0.5, 0.3 * np.sin(2 * np.pi * freq * t), 0.0)
        signals.append(signal.astype(np.float32))
        rows.append({"phonemes": [[name, 0.0], ["_", 0.5]]})
    signals.append((0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32))
    rows.append({})
    return AudioCorpus.from_arrays(signals, rows)


def test_phoneme_loss_trains_the_semantic_codes_and_resumes(tmp_path):
    config = tiny_train_config(phoneme_weight=1.0, phoneme_slots=2, max_steps=60, lr=3e-2)
    trainer = CodecTrainer(config, labelled_tones(), tmp_path / "run", log=io.StringIO())
    assert trainer.inventory.names == ["_", "a", "i", "u"]
    rows = [trainer.train_step() for _ in range(60)]
    assert all("phoneme" in row for row in rows)
    assert np.mean([r["phoneme"] for r in rows[-5:]]) < 0.8 * np.mean([r["phoneme"] for r in rows[:5]])
    assert np.mean([r["phoneme_acc"] for r in rows[-5:]]) > 0.6
    trainer.save_checkpoint()
    resumed = CodecTrainer(config, labelled_tones(), tmp_path / "run", resume=True, log=io.StringIO())
    assert resumed.step == 60
    for key, value in trainer.phoneme_head.state_dict().items():
        assert torch.equal(resumed.phoneme_head.state_dict()[key], value)
    # The head is training-only: the exported codec has exactly the codec's keys.
    target = export_codec(tmp_path / "run", tmp_path / "ckpt")
    exported = load_safetensors(resolve_checkpoint(target).codec_weights)
    assert exported.keys() == CodecModel(tiny_codec()).state_dict().keys()


def test_phoneme_loss_needs_phonemes(tmp_path):
    with pytest.raises(ValueError, match="phonemes"):
        CodecTrainer(tiny_train_config(phoneme_weight=1.0), tones(), tmp_path, log=io.StringIO())


def test_init_from_continues_from_a_checkpoint(tmp_path):
    first = CodecTrainer(tiny_train_config(max_steps=3), tones(), tmp_path / "a", log=io.StringIO())
    first.fit()
    target = export_codec(tmp_path / "a", tmp_path / "ckpt")
    second = CodecTrainer(tiny_train_config(init_from=str(target)), tones(), tmp_path / "b", log=io.StringIO())
    for key in CodecModel(tiny_codec()).state_dict():
        assert torch.equal(second.model.state_dict()[key], first.model.state_dict()[key]), key


def test_ctrl_c_finishes_the_step_saves_and_resumes_exactly(tmp_path):
    import os
    import signal

    straight = CodecTrainer(tiny_train_config(max_steps=6), tones(), tmp_path / "a", log=io.StringIO())
    straight.fit()

    log = io.StringIO()
    run = CodecTrainer(tiny_train_config(max_steps=6), tones(), tmp_path / "b", log=log)
    step = run.train_step

    def step_then_interrupt():
        row = step()
        if run.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C, in the middle of the run
        return row

    run.train_step = step_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        run.fit()
    assert "interrupted: step 3 saved" in log.getvalue()
    resumed = CodecTrainer(tiny_train_config(max_steps=6), tones(), tmp_path / "b", resume=True, log=io.StringIO())
    assert resumed.step == 3
    resumed.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers are put back


def tiny_discriminator() -> DiscriminatorConfig:
    return DiscriminatorConfig(windows=(256, 128), channels=4, layers=2)


def test_discriminator_learns_real_from_decoded():
    torch.manual_seed(0)
    discriminator = MultiResolutionDiscriminator(tiny_discriminator())
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=3e-3, betas=(0.5, 0.9))
    t = torch.arange(4096) / SR
    real = 0.3 * torch.sin(2 * torch.pi * torch.tensor([[180.0], [440.0]]) * t)[:, None]  # [2, 1, T]
    decoded = 0.1 * torch.randn(2, 1, 4096)  # what a codec that has not learnt yet gives
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = discriminator_loss(discriminator, discriminator(real), decoded)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 1.5 and losses[-1] < 0.5 * losses[0]  # 2 = chance for the hinge at zero logits
    fooling, matching = generator_losses(discriminator, discriminator(real), decoded)
    assert fooling.item() > 1.0 and matching.item() > 0.1  # the noise is found out, and far from the real
    same_fooling, same_matching = generator_losses(discriminator, discriminator(real), real)
    assert same_fooling.item() < fooling.item() and same_matching.item() == 0.0


def test_adversarial_terms_train_the_codec_and_resume_exactly(tmp_path):
    adversarial = dict(adversarial_weight=1.0, feature_weight=2.0, discriminator=tiny_discriminator())
    plain = CodecTrainer(tiny_train_config(max_steps=4), tones(), tmp_path / "plain", log=io.StringIO())
    plain.fit()
    # gated off: the discriminator trains beside the codec but leaves it exactly as it would be without it
    gated = CodecTrainer(tiny_train_config(max_steps=4, adversarial_after=100, **adversarial), tones(),
                         tmp_path / "gated", log=io.StringIO())
    gated.fit()
    for key, value in plain.model.state_dict().items():
        assert torch.equal(gated.model.state_dict()[key], value), key

    straight = CodecTrainer(tiny_train_config(max_steps=4, **adversarial), tones(), tmp_path / "a",
                            log=io.StringIO())
    straight.fit()
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all(row["adv"] > 0 and row["feat"] > 0 and row["disc"] > 0 for row in rows)
    assert any(not torch.equal(straight.model.state_dict()[k], v)  # the adversarial terms moved the codec
               for k, v in plain.model.state_dict().items() if v.is_floating_point())
    first = CodecTrainer(tiny_train_config(max_steps=2, **adversarial), tones(), tmp_path / "b", log=io.StringIO())
    first.fit()
    del first
    resumed = CodecTrainer(tiny_train_config(max_steps=4, **adversarial), tones(), tmp_path / "b", resume=True,
                           log=io.StringIO())
    resumed.fit()
    for module in ("model", "discriminator"):
        expected, got = getattr(straight, module).state_dict(), getattr(resumed, module).state_dict()
        for key in expected:
            assert torch.equal(expected[key], got[key]), (module, key)
    export_codec(tmp_path / "b", tmp_path / "export")  # the discriminator is not part of the codec
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert "discriminator" not in json.dumps(config)


def tiny_semantic_codec() -> CodecConfig:
    """``tiny_codec`` with a semantic encoder (log-mel, 10 ms steps, 3 stride-2 stages: 1920-sample frames)."""
    from delaykit.codec.semantic import SemanticConfig

    config = tiny_codec()
    config.semantic = SemanticConfig(n_mels=16, channels=8)
    return config


def test_semantic_only_retrains_the_semantic_encoder_and_nothing_else(tmp_path):
    # A codec whose semantic codebook has met the data (k-means at its first step) to start from.
    CodecTrainer(tiny_train_config(model=tiny_semantic_codec(), max_steps=3), labelled_tones(), tmp_path / "a",
                 log=io.StringIO()).fit()
    start = export_codec(tmp_path / "a", tmp_path / "start")
    config = tiny_train_config(model=tiny_semantic_codec(), init_from=str(start), semantic_only=True,
                               phoneme_weight=1.0, phoneme_slots=2, head_warmup_steps=5, lr=1e-2, max_steps=80)
    trainer = CodecTrainer(config, labelled_tones(), tmp_path / "run", log=io.StringIO())
    before = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    rows = [trainer.train_step() for _ in range(5)]
    encoder_keys = [key for key in before if key.startswith("semantic_encoder.")]
    assert encoder_keys and all(torch.equal(trainer.model.state_dict()[key], before[key]) for key in encoder_keys)
    rows += [trainer.train_step() for _ in range(75)]
    after = trainer.model.state_dict()
    assert any(not torch.equal(after[key], before[key]) for key in encoder_keys)
    kept = [key for key in before if key not in encoder_keys]
    assert all(torch.equal(after[key], before[key]) for key in kept)  # codebooks, projections, decoder
    assert "mel" not in rows[-1] and "loss" in trainer.progress({**rows[-1], "seen": trainer.seen})
    assert np.mean([r["phoneme"] for r in rows[-5:]]) < 0.8 * np.mean([r["phoneme"] for r in rows[:5]])
    trainer.save_checkpoint()
    resumed = CodecTrainer(config, labelled_tones(), tmp_path / "run", resume=True, log=io.StringIO())
    assert all(torch.equal(resumed.model.state_dict()[key], value) for key, value in after.items())


def test_semantic_only_needs_a_semantic_codec_to_start_from(tmp_path):
    with pytest.raises(ValueError, match="semantic_only"):
        CodecTrainer(tiny_train_config(model=tiny_semantic_codec(), semantic_only=True, phoneme_weight=1.0),
                     labelled_tones(), tmp_path, log=io.StringIO())


def test_speed_perturbation_resamples_crops_and_their_phoneme_targets(tmp_path):
    from delaykit.data.crops import CropSampler

    tone = AudioCorpus.from_arrays([(0.3 * np.sin(2 * np.pi * 400 * np.arange(2 * SR) / SR)).astype(np.float32)])
    sampler = CropSampler(tone, 1920, CropConfig(batch_size=1, min_frames=5, max_frames=5, gain_db=(0.0, 0.0),
                                                 speed=(1.25, 1.25)))
    audio = sampler.next_batch()[0, 0].numpy()  # [9600]
    crop = sampler.last_crops[0]
    assert crop.speed == 1.25 and crop.length == 12_000  # 1.25 x the item's samples read
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.fft.rfftfreq(audio.shape[0], 1 / SR)[spectrum.argmax()] == pytest.approx(500.0, abs=3.0)
    # Tones of half a second, then silence: played faster, the tone ends sooner in the crop, and so do its targets.
    crops = CropConfig(batch_size=4, min_frames=5, max_frames=5, gain_db=(0.0, 0.0), speed=(0.8, 1.25))
    trainer = CodecTrainer(tiny_train_config(phoneme_weight=1.0, phoneme_slots=4, crops=crops), labelled_tones(),
                           tmp_path / "run", log=io.StringIO())
    silence = trainer.inventory.id("_")
    boundaries = 0
    for _ in range(5):
        audio = trainer.sampler.next_batch()[:, 0].numpy()  # [B, 9600]
        named = (trainer.phoneme_targets(5).reshape(4, 20) != silence).numpy()  # [B, slots of 480 samples]
        for item, crop, item_named in zip(audio, trainer.sampler.last_crops, named):
            if not trainer.timelines[crop.index].known:
                continue
            centres = item.reshape(20, 480)[:, 180:300]  # [slots, 120] samples around each slot's centre
            loud = np.abs(centres).max(axis=1) > 0.05  # [slots]
            assert (loud != item_named).sum() <= 1  # only the slot at the tone's end may go either way
            boundaries += bool(loud.any() and not loud.all())
    assert boundaries >= 3
