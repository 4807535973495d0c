"""LM training: each mode learns a toy code corpus, resume is exact, export loads and transcribes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from delaykit.data.codes import CodeCorpus, CodeSequence
from delaykit.text import EPAD_ID, PAD_ID
from delaykit.text_stream import TimedWord
from delaykit.train.lm import LMTrainConfig, LMTrainer, small_lm_config
from delaykit.train.lm_data import StreamBatcher, StreamSpec, no_voice_targets, voice_activity
from delaykit.train.tokenizer import train_tokenizer

WORDS = "one two three four five six seven eight nine ten red green blue yes no stop".split()
FRAME_RATE = 12.5
CODEBOOKS = 4
CARD = 32


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> str:
    texts = [" ".join(np.random.default_rng(i).choice(WORDS, 6)) for i in range(200)]
    return str(train_tokenizer(texts, tmp_path_factory.mktemp("spm") / "toy.model", vocab_size=40))


def toy_corpus(sequences: int = 12, frames: int = 100, channels: int = 1, seed: int = 0) -> CodeCorpus:
    """Sequences where each word is a fixed code pattern: word w spoken over frames [s, s+3) writes codes
    (w * 7 + q + j) % CARD into codebook q at frame s + j; silence is code 0. Learnable, like speech."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(sequences):
        codes = np.zeros((channels, CODEBOOKS, frames), dtype=np.int16)
        words: list[TimedWord] = []
        for channel in range(channels):
            frame = int(rng.integers(2, 6))
            while frame + 3 < frames - 20:
                w = int(rng.integers(len(WORDS)))
                for j in range(3):
                    codes[channel, :, frame + j] = [(w * 7 + q + j) % (CARD - 1) + 1 for q in range(CODEBOOKS)]
                speaker = "SPEAKER_MAIN" if channel == 0 else "SPEAKER_OTHER"
                words.append(TimedWord(WORDS[w], frame / FRAME_RATE, (frame + 3) / FRAME_RATE, speaker))
                frame += 3 + int(rng.integers(1, 5))
        words.sort(key=lambda w: w.start)
        out.append(CodeSequence(codes, words))
    return CodeCorpus.from_sequences(out, {"frame_rate": FRAME_RATE, "codec": "toy"})


def tiny_config(mode: str, **overrides) -> LMTrainConfig:
    model = {"dim": 32, "num_heads": 2, "num_layers": 2, "card": CARD, "depformer_dim": 16,
             "depformer_num_heads": 2, "depformer_num_layers": 1, "depformer_dim_feedforward": 32, "context": 64}
    options = dict(mode=mode, model=model, window_frames=48, batch_size=4, lr=3e-3, warmup_steps=5,
                   decay_steps=200, log_every=5, max_steps=40, first_codebook_weight=2.0)
    options.update(overrides)
    return LMTrainConfig(**options)


@pytest.mark.parametrize("mode", ["asr", "tts", "dialogue"])
def test_each_mode_learns(mode, tokenizer, tmp_path):
    corpus = toy_corpus(channels=2 if mode == "dialogue" else 1)
    trainer = LMTrainer(tiny_config(mode), corpus, tokenizer, tmp_path / mode)
    with torch.no_grad():
        first = trainer.losses(trainer.batcher.next_batch())
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / mode / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert rows[-1]["text"] < 0.6 * float(first["text"])
    if mode != "asr":
        assert rows[-1]["audio"] < 0.8 * float(first["audio"])
    else:
        assert rows[-1]["vad"] < float(first["vad"])
    assert trainer.lm.config.dep_q == (0 if mode == "asr" else CODEBOOKS)


def test_resume_matches_uninterrupted_run(tokenizer, tmp_path):
    corpus = toy_corpus()
    straight = LMTrainer(tiny_config("asr", max_steps=10), corpus, tokenizer, tmp_path / "a")
    straight.fit()
    LMTrainer(tiny_config("asr", max_steps=4), corpus, tokenizer, tmp_path / "b").fit()
    resumed = LMTrainer(tiny_config("asr", max_steps=10), corpus, tokenizer, tmp_path / "b", resume=True)
    assert resumed.step == 4
    resumed.fit()
    for key, value in straight.lm.state_dict().items():
        assert torch.equal(value, resumed.lm.state_dict()[key]), key


def test_batches_hold_the_mode_layout(tokenizer):
    corpus = toy_corpus(channels=2)
    from delaykit.text import TextTokenizer

    encode = TextTokenizer(tokenizer).encode
    spec = StreamSpec("dialogue", 0.0, CODEBOOKS, CODEBOOKS)
    rows = StreamBatcher(corpus, encode, spec, 48, 2).rows(0)  # [1 + 2 * CODEBOOKS, F]
    sequence = corpus.sequence(0)
    assert np.array_equal(rows[1:1 + CODEBOOKS], sequence.codes[0])
    assert np.array_equal(rows[1 + CODEBOOKS:], sequence.codes[1])
    # The text row holds the agent's words only, each opened by EPAD after padding.
    agent = [w for w in sequence.words if w.speaker == "SPEAKER_MAIN"]
    text = [t for t in rows[0] if t not in (PAD_ID, EPAD_ID)]
    assert text == [t for w in agent for t in encode(w.text)]
    asr = StreamBatcher(corpus, encode, StreamSpec("asr", 0.48, 0, CODEBOOKS), 48, 2).rows(0)
    first_token = int(np.flatnonzero(asr[0] == encode(sequence.words[0].text)[0])[0])
    assert first_token == int(sequence.words[0].start * FRAME_RATE + 0.48 * FRAME_RATE)  # 6 frames behind


def test_no_voice_targets_look_ahead():
    words = [TimedWord("a", 0.4, 0.8)]  # frames 5..9 voiced
    active = voice_activity(words, 30, FRAME_RATE)
    assert list(np.flatnonzero(active)) == [5, 6, 7, 8, 9]
    targets = no_voice_targets(active, [0.4], FRAME_RATE)  # 5 frames ahead
    # Step t has heard frames < t and asks about frames t .. t+4: silent ahead only before 1 and from 10 on.
    assert list(targets[0, :25]) == [1 if t < 1 or t >= 10 else 0 for t in range(25)]
    assert (targets[0, 26:] == -100).all()  # the horizon runs past the end


def test_small_configs_have_the_published_stream_structure():
    asr = small_lm_config("asr")
    assert asr.dep_q == 0 and asr.n_q == 8 and asr.delays == [0] * 9 and asr.extra_heads_num_heads == 4
    dialogue = small_lm_config("dialogue")
    assert dialogue.n_q == 16 and dialogue.dep_q == 8
    assert dialogue.delays == [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]  # moshiko's pattern


@pytest.mark.parametrize("mode", ["asr", "tts"])
def test_export_runs_in_its_mode(mode, tokenizer, tmp_path):
    from test_codec_cli import make_checkpoint

    import delaykit
    from delaykit.train.lm import export_lm

    make_checkpoint(tmp_path / "codec")  # 8 codebooks of 32 entries, as the toy corpus's card
    trainer = LMTrainer(tiny_config(mode, max_steps=2, codec=str(tmp_path / "codec")), toy_corpus(), tokenizer,
                        tmp_path / "run")
    trainer.fit()
    model = delaykit.load(export_lm(tmp_path / "run", tmp_path / "export"), device="cpu")
    assert model.mode == mode
    for key, value in trainer.lm.state_dict().items():
        assert torch.equal(value, model.engine.lm.state_dict()[key]), key
    config = model.engine.files.config
    if mode == "asr":
        assert config["stt_config"]["audio_delay_seconds"] == 0.48
        transcript = model.transcribe(np.zeros(24000, np.float32))
        assert isinstance(transcript.text, str)
    else:
        assert config["tts_config"]["audio_delay"] == 0.48
        audio, _ = model.synthesize("one two")
        assert audio.shape[-1] > 0 and torch.isfinite(audio).all()


def test_text_input_noise_swaps_only_words_of_the_input(tokenizer, tmp_path):
    trainer = LMTrainer(tiny_config("asr", text_input_noise=0.5), toy_corpus(), tokenizer, tmp_path / "run")
    codes = trainer.batcher.next_batch().codes
    noisy = trainer.noisy_inputs(codes)
    assert torch.equal(noisy[:, 1:], codes[:, 1:])  # audio untouched
    text, swapped = codes[:, 0], noisy[:, 0] != codes[:, 0]
    assert torch.equal(noisy[:, 0][text < 4], text[text < 4])  # PAD, EPAD and the other specials kept
    share = swapped.sum() / (text >= 4).sum()
    assert 0.3 < share.item() < 0.6
    # The model reads the noisy text but is scored on the clean one.
    with torch.no_grad():
        clean, read_noisy = trainer.lm(codes), trainer.lm(codes, input_codes=noisy)
    assert not torch.equal(clean.text_logits.nan_to_num(), read_noisy.text_logits.nan_to_num())
    assert torch.equal(clean.text_mask, read_noisy.text_mask)


@pytest.mark.parametrize("mode", ["asr", "dialogue"])
def test_audio_input_noise_swaps_only_fed_audio(mode, tokenizer, tmp_path):
    corpus = toy_corpus(channels=2 if mode == "dialogue" else 1)
    trainer = LMTrainer(tiny_config(mode, audio_input_noise=0.25), corpus, tokenizer, tmp_path / "run")
    codes = trainer.batcher.next_batch().codes  # [B, K, T]
    noisy = trainer.noisy_inputs(codes)
    fed_from = 1 + trainer.lm.dep_q
    assert torch.equal(noisy[:, :fed_from], codes[:, :fed_from])  # text and generated audio (targets) kept
    fed, noisy_fed = codes[:, fed_from:], noisy[:, fed_from:]
    assert torch.equal(noisy_fed[fed < 0], fed[fed < 0])  # placeholders kept
    share = (noisy_fed != fed).sum() / (fed >= 0).sum()
    assert 0.15 < share.item() < 0.3  # a quarter, less the random codes that equal the original
    assert int(noisy_fed.max()) < CARD


def test_windows_open_at_sequence_starts_with_start_prob(tokenizer):
    from delaykit.text import TextTokenizer

    corpus = toy_corpus(frames=100)
    batcher = StreamBatcher(corpus, TextTokenizer(tokenizer).encode, StreamSpec("asr", 0.48, 0, CODEBOOKS), 48, 64,
                            seed=1, start_prob=1.0)
    codes = batcher.next_batch().codes  # [64, K, 48]
    starts = {tuple(batcher.rows(i)[1, :48]) for i in range(len(corpus))}
    assert all(tuple(row.tolist()) in starts for row in codes[:, 1])


def test_a_model_can_read_fewer_codebooks_than_the_corpus_has(tokenizer, tmp_path):
    from test_codec_cli import make_checkpoint

    import delaykit
    from delaykit.train.lm import export_lm

    make_checkpoint(tmp_path / "codec")
    trainer = LMTrainer(tiny_config("asr", max_steps=2, codebooks=1, codec=str(tmp_path / "codec")),
                        toy_corpus(), tokenizer, tmp_path / "run")
    assert trainer.lm.config.n_q == 1 and trainer.batcher.next_batch().codes.shape[1] == 2  # text + 1 codebook
    trainer.fit()
    model = delaykit.load(export_lm(tmp_path / "run", tmp_path / "export"), device="cpu")
    assert model.transcriber().layout.fed_codebooks == 1
    assert isinstance(model.transcribe(np.zeros(24000, np.float32)).text, str)
    with pytest.raises(ValueError, match="codebooks=5"):
        LMTrainer(tiny_config("asr", codebooks=5), toy_corpus(), tokenizer, tmp_path / "other")


def test_dialogue_user_text_head_learns_the_user_and_is_not_exported(tokenizer, tmp_path):
    """Also: a dialogue model whose words lead its speech says so in its checkpoint, and its words are timed
    when they are spoken."""
    from delaykit.train.lm import export_lm

    corpus = toy_corpus(channels=2)
    config = tiny_config("dialogue", user_text_weight=1.0, text_shift_seconds=-0.24)
    trainer = LMTrainer(config, corpus, tokenizer, tmp_path / "run")
    batch = trainer.batcher.next_batch()
    heard = batch.user_text  # [B, T]: the other channel's words, 0.48 s behind their audio
    assert heard is not None and heard.shape == batch.codes[:, 0].shape
    assert bool((heard > PAD_ID).any()) and not torch.equal(heard.clamp(min=0), batch.codes[:, 0])
    with torch.no_grad():
        first = trainer.losses(batch)
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["user_text"] < 0.75 * float(first["user_text"])  # 4.02 -> 2.70 when written
    resumed = LMTrainer(config, corpus, tokenizer, tmp_path / "run", resume=True)
    assert torch.equal(resumed.user_text_head.weight, trainer.user_text_head.weight)
    from test_codec_cli import make_checkpoint

    make_checkpoint(tmp_path / "codec")
    export_lm(tmp_path / "run", tmp_path / "export", codec=str(tmp_path / "codec"))
    import delaykit

    model = delaykit.load(tmp_path / "export", device="cpu")
    assert sorted(model.engine.lm.state_dict()) == sorted(trainer.lm.state_dict())  # the head stays behind
    assert model.engine.files.config["dialogue_config"] == {"audio_delay": 0.24}
    conversation = model.conversation()
    assert conversation.layout.text_shift_seconds == -0.24
    with conversation.stream(1) as session:
        steps = [session.step(torch.zeros(1, conversation.frame_size)) for _ in range(3)]
    assert [s.text_time[0] for s in steps] == pytest.approx([s.time[0] + 0.24 for s in steps])


def test_a_dialogue_checkpoint_recommends_its_sampling(tokenizer, tmp_path):
    from test_codec_cli import make_checkpoint

    import delaykit
    from delaykit.cli import _dialogue_options  # what `delaykit dialogue|eval dialogue` sample with
    from delaykit.lm.sampling import SamplingOptions
    from delaykit.modes.dialogue import MOSHI_AUDIO_SAMPLING, MOSHI_TEXT_SAMPLING, DialogueOptions
    from delaykit.train.lm import export_lm

    make_checkpoint(tmp_path / "codec")
    LMTrainer(tiny_config("dialogue", max_steps=1, codec=str(tmp_path / "codec")), toy_corpus(channels=2),
              tokenizer, tmp_path / "run").fit()
    plain = delaykit.load(export_lm(tmp_path / "run", tmp_path / "plain"), device="cpu")
    assert plain.conversation().options.text == MOSHI_TEXT_SAMPLING  # nothing recommended: moshi's defaults
    greedy_text = delaykit.load(export_lm(tmp_path / "run", tmp_path / "greedy",
                                          text_sampling={"temperature": 0, "top_k": 25}),
                                device="cpu")
    assert greedy_text.engine.files.config["dialogue_config"]["text_sampling"]["temperature"] == 0
    options = greedy_text.conversation(DialogueOptions(seed=3)).options
    assert options.text == SamplingOptions(temperature=0.0, top_k=25) and options.audio == MOSHI_AUDIO_SAMPLING
    assert options.seed == 3
    asked = SamplingOptions(temperature=0.5, top_k=10)  # what a caller asks for wins
    assert greedy_text.conversation(DialogueOptions(text=asked)).options.text == asked
    cooler = delaykit.load(export_lm(tmp_path / "run", tmp_path / "cooler", text_sampling={"temperature": 0},
                                     audio_sampling={"temperature": 0.3, "top_k": 250}), device="cpu")
    options = cooler.conversation().options
    assert options.audio == SamplingOptions(temperature=0.3, top_k=250) and options.text.temperature == 0
    assert cooler.conversation(DialogueOptions(audio=asked)).options.audio == asked
    assert _dialogue_options(cooler, seed=1).audio == SamplingOptions(temperature=0.3, top_k=250)
    assert _dialogue_options(cooler, seed=1, audio_temperature=0.9).audio == SamplingOptions(temperature=0.9,
                                                                                             top_k=250)
    with pytest.raises(ValueError, match="dialogue"):
        LMTrainer(tiny_config("tts", max_steps=1, codec=str(tmp_path / "codec")), toy_corpus(), tokenizer,
                  tmp_path / "tts").fit()
        export_lm(tmp_path / "tts", tmp_path / "tts-export", text_sampling={"temperature": 0})
    with pytest.raises(ValueError, match="dialogue"):
        export_lm(tmp_path / "tts", tmp_path / "tts-export", audio_sampling={"temperature": 0.3})


def test_text_dropout_blanks_whole_windows_and_exports_direct_cfg(tokenizer, tmp_path):
    from test_codec_cli import make_checkpoint

    import delaykit
    from delaykit.lm.embeddings import ZERO_TOKEN
    from delaykit.modes.tts import SynthesisOptions
    from delaykit.train.lm import export_lm

    with pytest.raises(ValueError, match="TTS"):
        tiny_config("asr", text_dropout=0.2)
    make_checkpoint(tmp_path / "codec")
    torch.manual_seed(0)
    trainer = LMTrainer(tiny_config("tts", text_dropout=0.5, max_steps=3, codec=str(tmp_path / "codec"),
                                    batch_size=16), toy_corpus(), tokenizer, tmp_path / "run")
    codes = trainer.batcher.next_batch().codes  # [B, K, T]
    blanked, kept = trainer.blank_text(codes)
    assert 0 < int(kept.sum()) < codes.shape[0]  # some windows of 16 each way
    assert torch.equal(blanked[kept[:, 0]], codes[kept[:, 0]])
    assert (blanked[~kept[:, 0], 0] == ZERO_TOKEN).all()  # their whole text stream
    assert torch.equal(blanked[:, 1:], codes[:, 1:])  # the audio untouched
    trainer.fit()
    model = delaykit.load(export_lm(tmp_path / "run", tmp_path / "export"), device="cpu")
    assert model.engine.files.config["tts_config"]["direct_cfg"] is True
    # Guidance runs (a text-free batch half) and changes what is said (test_cli_modes: refused without it).
    plain, _ = model.synthesize("one two three", options=SynthesisOptions.greedy(cfg_coef=1.0))
    guided, _ = model.synthesize("one two three", options=SynthesisOptions.greedy(cfg_coef=3.0))
    assert torch.isfinite(guided).all() and not torch.equal(plain, guided)


def test_validation_logs_held_out_losses_and_keeps_the_best_weights(tokenizer, tmp_path):
    from test_codec_cli import make_checkpoint

    import delaykit
    from delaykit.train.lm import BEST_NAME, export_lm

    held_out = toy_corpus(sequences=4, seed=5).save(tmp_path / "valid.npz")
    make_checkpoint(tmp_path / "codec")
    config = tiny_config("asr", max_steps=20, valid_codes=[str(held_out)], valid_every=5, valid_batches=2,
                         codec=str(tmp_path / "codec"))
    trainer = LMTrainer(config, toy_corpus(), tokenizer, tmp_path / "run")
    fixed = [batch.codes.clone() for batch in trainer.valid_batches]
    trainer.fit()
    assert all(torch.equal(a, b.codes) for a, b in zip(fixed, trainer.valid_batches))  # drawn once
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    valid = [row["valid_total"] for row in rows]  # log_every = valid_every: every row has one
    assert len(valid) == 4 and valid[-1] < valid[0]  # the held-out loss falls as the toy corpus is learned
    best = torch.load(tmp_path / "run" / BEST_NAME, weights_only=True)
    assert best["step"] == 5 * (1 + int(np.argmin(valid)))
    assert best["valid"]["valid_total"] == pytest.approx(min(valid))
    model = delaykit.load(export_lm(tmp_path / "run", tmp_path / "export", checkpoint=BEST_NAME), device="cpu")
    for key, value in best["model"].items():
        assert torch.equal(value, model.engine.lm.state_dict()[key]), key


def test_validation_needs_held_out_codes(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="valid_codes"):
        LMTrainer(tiny_config("asr", valid_every=5), toy_corpus(), tokenizer, tmp_path)


def test_bf16_autocast_trains(tokenizer, tmp_path):
    trainer = LMTrainer(tiny_config("tts", precision="bf16", max_steps=20), toy_corpus(), tokenizer, tmp_path)
    with torch.no_grad():
        first = trainer.losses(trainer.batcher.next_batch())
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["audio"] < 0.9 * float(first["audio"])
    assert all(p.dtype == torch.float32 for p in trainer.lm.parameters())  # only the forward is bf16


def test_time_budget_cosine_decays_over_training_minutes(tokenizer, tmp_path):
    trainer = LMTrainer(tiny_config("asr", decay_minutes=10.0, warmup_steps=1, min_lr_ratio=0.1), toy_corpus(),
                        tokenizer, tmp_path)
    rates = []
    for minutes in (0, 5, 10, 20):
        trainer.train_seconds = 60.0 * minutes
        rates.append(trainer.learning_rate(100))
    assert rates[0] == pytest.approx(3e-3)
    assert rates[1] == pytest.approx(3e-3 * (0.1 + 0.9 * 0.5))  # half-way down the cosine
    assert rates[2] == pytest.approx(3e-4) and rates[3] == pytest.approx(3e-4)
