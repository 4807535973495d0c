"""Full-duplex dialogue: sessions equal Kyutai's frame loop, batch items stay independent, files come out
whole."""

import dataclasses
import json

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import save_file

from delaykit.engine import Engine, load_engine
from delaykit.errors import AudioError, CheckpointError
from delaykit.lm.embeddings import UNGENERATED_TOKEN
from delaykit.lm.model import LMConfig, LMModel
from delaykit.modes.dialogue import Conversation, DialogueOptions, converse_file, words_from_pieces
from delaykit.text import EPAD_ID, PAD_ID

pytest.importorskip("moshi")
from moshi.models.lm import LMGen
from moshi.utils.compile import no_compile
from reference_models import reference_lm, reference_mimi, tiny_mimi_config
from test_codec_model import tiny_codec_config
from test_engine import MIMI_NAME, train_tokenizer

FRAME = 1920
FRAMES = 60
CODEBOOKS = 5  # the tiny moshiko generates 5 codebooks and hears 5
# Codec transformer context, in 25 Hz steps. Once the reference's ring KV cache wraps, its streamed output
# drifts from its offline output while delaykit's does not (README, "Compatibility"), so exact parity over
# 60 frames (120 steps) needs a context longer than the clip.
CODEC_CONTEXT = 128


def build_checkpoint(directory):
    """A tiny moshi-type checkpoint in Kyutai's layout whose LM card equals the codec's bins (32), written to
    ``directory``; returns (directory, reference LM, reference Mimi)."""
    tokenizer_name = train_tokenizer(directory)  # 32 pieces
    lm, kwargs = reference_lm(seed=5, card=32, text_card=32)
    mimi_config = tiny_mimi_config()
    mimi_config["transformer"]["context"] = CODEC_CONTEXT
    mimi = reference_mimi(seed=6, num_codebooks=CODEBOOKS, config=mimi_config)
    save_file({k: v.contiguous() for k, v in lm.state_dict().items()}, str(directory / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in mimi.state_dict().items()}, str(directory / MIMI_NAME))
    codec_config = tiny_codec_config()
    codec_config.num_codebooks = CODEBOOKS
    codec_config.transformer.context = CODEC_CONTEXT
    config = dict(kwargs, model_type="moshi", mimi_name=MIMI_NAME, tokenizer_name=tokenizer_name,
                  codec_config=codec_config.to_dict())
    (directory / "config.json").write_text(json.dumps(config))
    return directory, lm, mimi


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("dialogue"))


@pytest.fixture(scope="module")
def engine(checkpoint):
    return load_engine(checkpoint[0], device="cpu")


def user_audio(frames: int, seed: int) -> torch.Tensor:
    """Noise with a slow amplitude envelope, [frames * FRAME]."""
    generator = torch.Generator().manual_seed(seed)
    envelope = torch.sin(torch.linspace(0, 6.0, frames * FRAME)).abs()
    return (torch.randn(frames * FRAME, generator=generator) * 0.3 * envelope).float()


def run_session(conversation, audio: torch.Tensor):
    """Steps of one conversation over ``audio`` [T]."""
    with conversation.stream(1) as session:
        return [session.step(frame[None]) for frame in audio.view(-1, FRAME)]


def reference_dialogue(lm, mimi, audio: torch.Tensor):
    """Kyutai's file loop (run_inference.py): Mimi encode -> LMGen step (twice on the first frame) -> Mimi
    decode, whenever tokens come out."""
    generator = LMGen(lm, use_sampling=False)
    tokens_out, pcm_out = [], []
    with torch.no_grad(), no_compile(), mimi.streaming(1), generator.streaming(1):  # eager: no compile time
        for index, frame in enumerate(audio.view(-1, FRAME)):
            codes = mimi.encode(frame.view(1, 1, FRAME))  # [1, 5, 1]
            if index == 0:
                assert generator.step(codes) is None
            tokens = generator.step(codes)
            if tokens is None:
                continue
            tokens_out.append(tokens[0, :, 0])
            pcm_out.append(mimi.decode(tokens[:, 1:])[0, 0])
    return torch.stack(tokens_out), torch.stack(pcm_out)  # [N, 1 + dep_q], [N, FRAME]


def test_session_matches_reference_loop(checkpoint, engine):
    _, lm, mimi = checkpoint
    audio = user_audio(FRAMES, seed=0)
    steps = run_session(Conversation(engine, DialogueOptions.greedy()), audio)
    assert all(bool(step.ready[0]) for step in steps)  # moshiko's delays: the agent speaks from frame 0
    ours_tokens = torch.stack([torch.cat([step.text_tokens, step.audio_tokens[0]]) for step in steps])
    ours_pcm = torch.stack([step.agent_pcm[0] for step in steps])
    theirs_tokens, theirs_pcm = reference_dialogue(lm, mimi, audio)
    assert ours_tokens.shape == theirs_tokens.shape == (FRAMES, 1 + CODEBOOKS)
    assert torch.equal(ours_tokens, theirs_tokens)
    assert len(set(ours_tokens[:, 0].tolist())) > 1 and len(set(ours_tokens[:, 1].tolist())) > 1  # varied
    torch.testing.assert_close(ours_pcm, theirs_pcm, atol=1e-4, rtol=0)
    assert [step.time[0] for step in steps] == pytest.approx([0.08 * t for t in range(FRAMES)])


def test_longer_delays_start_with_silence(checkpoint, engine):
    """With acoustic codebooks two frames late, the agent's first frame comes out one call later."""
    _, _, mimi = checkpoint
    reference, kwargs = reference_lm(seed=7, card=32, text_card=32, delays=[0, 0, 1, 2, 2, 2, 0, 1, 2, 2, 2])
    lm = LMModel(LMConfig.from_kyutai(kwargs)).eval()
    lm.load_state_dict(reference.state_dict(), strict=True)
    late = Engine(codec=engine.codec, lm=lm, tokenizer=engine.tokenizer)
    audio = user_audio(20, seed=8)
    steps = run_session(Conversation(late, DialogueOptions.greedy()), audio)
    assert [bool(step.ready[0]) for step in steps] == [False] + [True] * 19
    assert not steps[0].agent_pcm.any() and steps[0].text_pieces == [""]
    ours_tokens = torch.stack([torch.cat([step.text_tokens, step.audio_tokens[0]]) for step in steps[1:]])
    theirs_tokens, theirs_pcm = reference_dialogue(reference, mimi, audio)
    assert torch.equal(ours_tokens, theirs_tokens)
    ours_pcm = torch.stack([step.agent_pcm[0] for step in steps[1:]])
    torch.testing.assert_close(ours_pcm, theirs_pcm, atol=1e-4, rtol=0)


def test_seeded_sampling_is_reproducible(engine):
    audio = user_audio(12, seed=1)

    def sampled(seed):
        steps = run_session(Conversation(engine, DialogueOptions(seed=seed)), audio)
        return torch.stack([torch.cat([step.text_tokens, step.audio_tokens[0]]) for step in steps])

    first = sampled(0)
    assert torch.equal(first, sampled(0))
    assert not torch.equal(first, sampled(1))


def item_view(step, item: int) -> tuple:
    return (step.text_tokens[item], step.audio_tokens[item], step.agent_pcm[item], step.time[item])


def test_batch_items_are_independent_with_masks_and_resets(engine):
    conversation = Conversation(engine, DialogueOptions.greedy())
    solo_audio = [user_audio(16, seed=seed).view(-1, FRAME) for seed in (2, 3)]  # each [16, FRAME]
    other = user_audio(5, seed=9).view(-1, FRAME)
    solo = [[item_view(step, 0) for step in run_session(conversation, audio.reshape(-1))]
            for audio in solo_audio]
    got: list[list[tuple]] = [[], []]
    heard_by_1 = 0  # frames of its audio that item 1 has heard
    with conversation.stream(2) as session:
        # Item 0 talks over other audio for 5 frames, is restarted, then hears its own audio. Item 1 joins at
        # frame 3 and is paused for two frames in the middle.
        for tick in range(21):
            frame_0 = other[tick] if tick < 5 else solo_audio[0][tick - 5]
            active_1 = tick >= 3 and tick not in (10, 11) and heard_by_1 < 16
            frame_1 = solo_audio[1][min(heard_by_1, 15)]
            step = session.step(torch.stack([frame_0, frame_1]), active=[True, active_1])
            if tick == 4:
                session.reset([True, False])
            if tick >= 5:
                got[0].append(item_view(step, 0))
            if active_1:
                got[1].append(item_view(step, 1))
                heard_by_1 += 1
            else:
                assert not step.ready[1] and not step.agent_pcm[1].any() and step.text_pieces[1] == ""
    for expected, batched in zip(solo, got):
        assert len(batched) == len(expected) == 16
        for (text, audio, pcm, time), (text_b, audio_b, pcm_b, time_b) in zip(expected, batched):
            assert torch.equal(text, text_b) and torch.equal(audio, audio_b)
            torch.testing.assert_close(pcm, pcm_b, atol=1e-5, rtol=0)
            assert time == pytest.approx(time_b)


def test_paused_item_is_silent_and_not_ready(engine):
    conversation = Conversation(engine, DialogueOptions.greedy())
    with conversation.stream(2) as session:
        step = session.step(torch.zeros(2, FRAME), active=[True, False])
    assert step.ready.tolist() == [True, False] and step.text_tokens[1] == UNGENERATED_TOKEN
    assert torch.equal(step.agent_pcm[1], torch.zeros(FRAME)) and step.text_pieces[1] == ""


def test_file_driver_writes_stereo_and_timed_words(engine, tmp_path):
    length = 30 * FRAME - 700  # not a whole number of frames
    user = user_audio(30, seed=4)[:length].clamp(-1, 1).numpy()
    source = tmp_path / "user.wav"
    soundfile.write(str(source), user, 24000, subtype="FLOAT")
    conversation = Conversation(engine, DialogueOptions(seed=3))
    result = converse_file(conversation, source, tmp_path / "both.wav")
    stereo, rate = soundfile.read(str(tmp_path / "both.wav"), dtype="float32", always_2d=True)  # [T, 2]
    assert rate == 24000 and stereo.shape == (length, 2)
    np.testing.assert_allclose(stereo[:, 0], user, atol=1 / 32767 + 1e-6)
    np.testing.assert_allclose(stereo[:, 1], result.agent_audio.clip(-1, 1), atol=1 / 32767 + 1e-6)
    assert result.agent_audio.shape == (length,) and np.abs(result.agent_audio).max() > 0
    assert len(result.text_tokens) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["both.wav", "user.wav"]  # no temporary file left

    tokens = result.text_tokens
    spoken = [t for t in tokens if t not in (PAD_ID, EPAD_ID) and t >= 0]
    assert spoken, "the random agent should say something"
    assert result.text == engine.tokenizer.decode(spoken).strip()
    first_spoken = min(t for t in range(30) if tokens[t] in spoken)
    for word in result.agent_words:
        first, last = round(word.start / 0.08), round(word.end / 0.08) - 1  # frames of first and last piece
        assert word.start == pytest.approx(0.08 * first) and first <= last
        piece = engine.tokenizer.id_to_piece(tokens[first])
        assert piece.startswith("\u2581") or first == first_spoken
        assert tokens[last] in spoken
    assert all(word.start < word.end for word in result.agent_words)


def test_pieces_skip_padding_and_control_tokens(engine):
    conversation = Conversation(engine)
    assert [conversation.piece(token) for token in (UNGENERATED_TOKEN, EPAD_ID, 1, 2, PAD_ID)] == [""] * 5
    assert conversation.piece(4) == "\u2581" and conversation.piece(8) == "\u2581the"  # ids of this tokenizer


def test_words_from_pieces():
    pieces = [(0.0, ""), (0.08, "\u2581hel"), (0.16, "lo"), (0.24, ""), (0.32, "\u2581"), (0.4, "world"),
              (0.48, "\u2581!")]
    words = words_from_pieces(pieces, 0.08)
    assert [(w.text, w.start, w.end) for w in words] == [
        ("hello", 0.08, pytest.approx(0.24)), ("world", 0.32, pytest.approx(0.48)),
        ("!", 0.48, pytest.approx(0.56))]


def test_errors(engine, checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="no codec"):
        Conversation(Engine(codec=None, lm=engine.lm, tokenizer=engine.tokenizer, files=engine.files))
    listener_config = dict(engine.files.config, dep_q=0, model_type="stt")
    listener_files = dataclasses.replace(engine.files, config=listener_config)
    with pytest.raises(CheckpointError, match="cannot do dialogue"):
        Conversation(dataclasses.replace(engine, files=listener_files, model_type="stt"))
    conversation = Conversation(engine)
    with conversation.stream(1) as session:
        with pytest.raises(AudioError, match="non-finite"):
            session.step(torch.full((1, FRAME), float("nan")))
        with pytest.raises(ValueError, match="one 80 ms frame"):
            session.step(torch.zeros(1, 100))
        with pytest.raises(RuntimeError, match="open session"):
            conversation.stream(1)
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros(0, dtype=np.float32), 24000)
    with pytest.raises(AudioError, match="empty"):
        converse_file(conversation, empty, tmp_path / "out.wav")
    nan = tmp_path / "nan.wav"
    soundfile.write(str(nan), np.full(FRAME, np.nan, dtype=np.float32), 24000, subtype="FLOAT")
    with pytest.raises(AudioError, match="non-finite"):
        converse_file(conversation, nan, tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()
    with pytest.raises(AudioError, match="does not exist"):
        converse_file(conversation, nan, tmp_path / "missing" / "out.wav")
