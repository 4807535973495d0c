"""Streaming ASR (delaykit.modes.asr) against the reference ``stt`` inference, plus word-timing golden cases."""

import itertools
import json
import math
import typing as tp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from delaykit.audio import write_audio
from delaykit.engine import Engine, load_engine
from delaykit.errors import AudioError, CheckpointError
from delaykit.layout import StreamLayout
from delaykit.modes.asr import EndOfSpeech, TextFrame, TranscribeOptions, Transcriber
from delaykit.modes.words import Word, WordTiming, words_from_tokens
from delaykit.text_stream import TextStreamConfig, TimedWord, aligned_text_stream

FRAME = 1920
MIMI_NAME = "tokenizer-e351c8d8-checkpoint125.safetensors"
STT_LM = dict(dep_q=0, n_q=8, delays=[0] * 9, extra_heads_num_heads=4, extra_heads_dim=6, text_card=32, card=32,
              context=12)  # stt-1b's shape in miniature; a 12-frame context wraps within a second


# ---------------------------------------------------------------------------------------------------------
# Word assembly and timing (golden, no model)

class Pieces:
    """A stand-in tokenizer: id -> piece, decode joins pieces the SentencePiece way."""

    PIECES: tp.ClassVar[dict[int, str]] = {0: "<unk>", 3: "<pad>", 10: "\u2581hel", 11: "lo", 12: "\u2581world", 13: "\u2581a", 14: "gain",
              15: "!", 16: "\u2581yes"}

    def id_to_piece(self, token_id):
        return self.PIECES[token_id]

    def decode(self, ids):
        return "".join(self.PIECES[i] for i in ids if i not in (0, 3)).replace("\u2581", " ")


P, E = 3, 0


def test_word_times_come_from_epad_frames_minus_delay_and_prefix():
    # frames: 0 1 2 3 4  5  6  7 8 9 10 11 12
    tokens = [P, P, P, P, P, E, 10, 11, P, P, P, E, 12]
    timing = WordTiming(offset_seconds=0.16 + 0.24)  # prefix 2 frames + delay 3 frames = 5 frames
    words = words_from_tokens(tokens, Pieces(), timing)
    # hello: EPAD at 5 -> 0.0 s, ends at the next word's EPAD (11 -> 0.48 s); world: 11 -> 12 + 1 = 13 frames
    assert [(w.text, round(w.start, 6), round(w.end, 6)) for w in words] == [
        ("hello", 0.0, 0.48), ("world", 0.48, 0.64)]


def test_words_without_epad_start_at_their_first_token_and_pieces_continue_words():
    tokens = [13, 14, 12, P, 15, P, E, 16, P]  # again, world (no EPAD), "!" continues world across a PAD, yes
    words = words_from_tokens(tokens, Pieces(), WordTiming(), first_index=1)
    assert [(w.text, round(w.start / 0.08), round(w.end / 0.08)) for w in words] == [
        ("again", 1, 3), ("world!", 3, 7), ("yes", 7, 9)]


def test_low_latency_options():
    tokens = [E, 10, 11, P, P, E, 12, P]
    timing = WordTiming(start_at_epad=False, close_on_pad=True)
    words = words_from_tokens(tokens, Pieces(), timing)
    assert [(w.text, round(w.start / 0.08), round(w.end / 0.08)) for w in words] == [("hello", 1, 3), ("world", 6, 7)]


def test_words_round_trip_through_the_aligned_text_stream():
    """Words laid by delaykit's own grid (text shift + prefix) come back at their frames (EPAD one earlier)."""
    vocab = {"hello": [10, 11], "world": [12], "yes": [16]}
    spoken = [TimedWord("hello", 0.30, 0.6), TimedWord("world", 0.90, 1.2), TimedWord("yes", 1.62, 1.8)]
    offset = 0.16 + 0.5
    stream = aligned_text_stream(spoken, vocab.__getitem__, 40, TextStreamConfig(shift_seconds=offset))
    for start_at_epad, early in [(False, 0), (True, 1)]:
        words = words_from_tokens(stream.tokens, Pieces(), WordTiming(offset_seconds=offset, start_at_epad=start_at_epad))
        assert [w.text for w in words] == ["hello", "world", "yes"]
        for word, truth in zip(words, spoken, strict=True):
            expected = (math.floor((truth.start + offset) * 12.5) - early) / 12.5 - offset
            assert word.start == pytest.approx(expected, abs=1e-6) and word.start <= truth.start


# ---------------------------------------------------------------------------------------------------------
# A tiny stt checkpoint in Kyutai's layout, and the reference driven as run_inference.py's stt path

def write_checkpoint(directory, lm_state, mimi_state, kwargs, stt_config, tokenizer_dir):
    from test_codec_model import tiny_codec_config

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in lm_state.items()}, str(directory / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in mimi_state.items()}, str(directory / MIMI_NAME))
    (directory / "spm.model").write_bytes((tokenizer_dir / "spm.model").read_bytes())
    config = dict(kwargs, model_type="stt", mimi_name=MIMI_NAME, tokenizer_name="spm.model",
                  stt_config=stt_config, codec_config=tiny_codec_config().to_dict())
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="module")
def stt(tmp_path_factory):
    """(engines by stt_config, reference LM, reference Mimi)."""
    pytest.importorskip("moshi")
    from reference_models import reference_lm, reference_mimi
    from test_engine import train_tokenizer

    root = tmp_path_factory.mktemp("stt")
    train_tokenizer(root)
    lm, kwargs = reference_lm(seed=5, **STT_LM)
    with torch.no_grad():  # louder EPAD, PAD and word-start rows: the random model then outputs several words
        lm.text_linear.weight[[0, 3, 4, 8]] *= 1.5
    mimi = reference_mimi(seed=6, num_codebooks=8)
    engines = {}
    for name, stt_config in {"published": {"audio_delay_seconds": 0.5, "audio_silence_prefix_seconds": 0.16},
                             "odd": {"audio_delay_seconds": 0.24, "audio_silence_prefix_seconds": 0.1},
                             # stt-2.6b-en's: 31.25 frames of delay, 1 s of silence before the audio
                             "2.6b": {"audio_delay_seconds": 2.5, "audio_silence_prefix_seconds": 1.0}}.items():
        directory = write_checkpoint(root / name, lm.state_dict(), mimi.state_dict(), kwargs, stt_config, root)
        engines[name] = (load_engine(directory, device="cpu"), stt_config)
    return engines, lm, mimi


def reference_stt(lm, mimi, audio, stt_config):
    """Text tokens [B, frames] and P(no voice) [B, frames, heads], as moshi/run_inference.py's stt path runs."""
    from moshi.models.lm import LMGen

    pad_left = int(stt_config["audio_silence_prefix_seconds"] * 24000)
    pad_right = int((stt_config["audio_delay_seconds"] + 1.0) * 24000)
    pcm = F.pad(audio[:, None], (pad_left, pad_right))  # [B, 1, T']
    chunks = [chunk for chunk in pcm.split(FRAME, dim=2) if chunk.shape[-1] == FRAME]
    generator = LMGen(lm, use_sampling=False)
    tokens, heads = [], []
    with torch.no_grad(), mimi.streaming(audio.shape[0]), generator.streaming(audio.shape[0]):
        for index, chunk in enumerate(chunks):
            codes = mimi.encode(chunk)
            if index == 0:
                generator.step_with_extra_heads(codes)
            out, extra = generator.step_with_extra_heads(codes)
            tokens.append(out[:, 0, 0])
            heads.append(torch.stack([head[:, 0, 0] for head in extra], dim=-1))
    return torch.stack(tokens, 1), torch.stack(heads, 1)


def test_audio(seconds, seed):
    generator = torch.Generator().manual_seed(seed)
    samples = int(seconds * 24000)
    t = torch.arange(samples) / 24000
    return (0.3 * torch.sin(2 * math.pi * 220 * t) + 0.2 * torch.randn(samples, generator=generator)).float()


test_audio.__test__ = False  # a helper, not a test


def frames_of(events, item=0):
    return [e for e in events if isinstance(e, TextFrame) and e.item == item]


@pytest.mark.parametrize("name", ["published", "odd", "2.6b"])
def test_tokens_and_vad_match_reference_across_the_context_wrap(stt, name):
    """4.3 s of audio: ~75 frames through a 12-frame context; prefixes of whole and partial frames."""
    engines, lm, mimi = stt
    engine, stt_config = engines[name]
    audio = test_audio(4.3, seed=1)
    transcriber = Transcriber(engine, TranscribeOptions(text_frames=True))
    events = list(transcriber.transcribe_iter(audio.numpy()))
    ours = frames_of(events)
    ref_tokens, ref_heads = reference_stt(lm, mimi, audio[None], stt_config)
    assert len(ours) == ref_tokens.shape[1] > 60
    assert [f.token for f in ours] == ref_tokens[0].tolist()
    assert [f.index for f in ours] == list(range(1, len(ours) + 1))
    assert torch.allclose(torch.tensor([f.no_voice for f in ours]), ref_heads[0], atol=1e-5)
    # words and transcript come from the same tokens
    words = [e for e in events if isinstance(e, Word)]
    expected = words_from_tokens(ref_tokens[0].tolist(), engine.tokenizer, transcriber.timing, first_index=1)
    assert words == expected
    late = [w for w in words if w.start > 12 / 12.5]  # timed after the 12-frame context has wrapped
    assert len(late) >= 3 and all(a.end == b.start for a, b in itertools.pairwise(words))
    transcript = transcriber.transcribe(audio)
    assert transcript.words == words and transcript.text == " ".join(w.text for w in words)


def test_batched_streams_started_and_reset_at_different_times_equal_running_alone(stt):
    engines, _, _ = stt
    engine, _ = engines["published"]
    transcriber = Transcriber(engine, TranscribeOptions(text_frames=True, vad_threshold=0.0))
    clips = [test_audio(1.6, seed) for seed in (10, 11, 12, 13)]
    clip_frames = [c.view(-1, FRAME) for c in clips]  # [20, FRAME] each

    def alone(clip, flush=True, frames=None):
        with transcriber.stream(1) as stream:
            events = []
            for frame in clip.view(-1, FRAME)[:frames]:
                events += stream.push(frame[None])
            return events + (stream.flush() if flush else [])

    # item 0: clip 0 from t=0; item 1: clip 1 from t=3, restarted at t=8 with clip 3; item 2: clip 2 from t=5
    schedule = {0: (0, 0), 1: (3, 1), 2: (5, 2)}
    got = {0: [], 1: [], 2: [], "1-before": []}
    zeros = torch.zeros(FRAME)
    with transcriber.stream(3, start=False) as stream:
        position = [0, 0, 0]
        clip_of = [0, 1, 2]
        for t in range(40):
            for item, (begin, _) in schedule.items():
                if t == begin:
                    got[item] += stream.start(torch.arange(3) == item)
            if t == 8:  # restart item 1 with another clip
                got["1-before"], got[1] = got[1], []
                got[1] += stream.start(torch.tensor([False, True, False]))
                position[1], clip_of[1] = 0, 3
            mask = stream.running.clone()
            rows = []
            for item in range(3):
                if mask[item] and position[item] == clip_frames[clip_of[item]].shape[0]:
                    got[item] += stream.flush(torch.arange(3) == item)  # finishes while the others run
                    mask[item] = False
                rows.append(clip_frames[clip_of[item]][position[item]] if mask[item] else zeros)
            if mask.any():
                for event in stream.push(torch.stack(rows), mask):
                    got[event.item].append(event)
                for item in range(3):
                    position[item] += int(mask[item])
    assert not stream.running.any()

    def assert_same(batched, single):  # everything but the item index; probabilities within 1e-5
        assert len(batched) == len(single)
        for ours, theirs in zip(batched, single, strict=True):
            assert type(ours) is type(theirs)
            if isinstance(ours, TextFrame):
                assert (ours.index, ours.token) == (theirs.index, theirs.token)
                assert np.allclose(ours.no_voice, theirs.no_voice, atol=1e-5)
            elif isinstance(ours, Word):
                assert (ours.text, ours.start, ours.end) == (theirs.text, theirs.start, theirs.end)
            else:
                assert ours.time == theirs.time and abs(ours.probability - theirs.probability) < 1e-5

    assert_same(got[0], alone(clips[0]))
    assert_same(got[2], alone(clips[2]))
    assert_same(got[1], alone(clips[3]))
    assert_same(got["1-before"], alone(clips[1], flush=False, frames=5))
    assert any(isinstance(e, Word) for e in got[0]) and any(isinstance(e, EndOfSpeech) for e in got[0])


def test_end_of_speech_follows_speech_and_reads_the_chosen_head(stt):
    engines, _, _ = stt
    engine, _ = engines["published"]
    options = TranscribeOptions(text_frames=True, vad_head=1, vad_threshold=0.0)
    events = list(Transcriber(engine, options).transcribe_iter(test_audio(1.0, seed=3)))
    ends = [i for i, e in enumerate(events) if isinstance(e, EndOfSpeech)]
    assert ends
    for position in ends:  # threshold 0: fires at every frame holding a word token, with that frame's head 1
        frame = [e for e in events[:position] if isinstance(e, TextFrame)][-1]
        end = events[position]
        assert frame.token not in (0, 3) and end.probability == frame.no_voice[1]
        assert end.time == max(0.0, frame.index * 0.08 - 0.16)
    word_frames = [e for e in frames_of(events) if e.token not in (0, 3)]
    assert len(ends) == len(word_frames)


def test_clear_errors(stt, tmp_path):
    engines, _, _ = stt
    engine, _ = engines["published"]
    transcriber = Transcriber(engine)
    with pytest.raises(AudioError, match="empty"):
        transcriber.transcribe(np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="non-finite"):
        transcriber.transcribe(np.array([0.0, float("nan"), 0.0], dtype=np.float32))
    with transcriber.stream(1) as stream, pytest.raises(AudioError, match="non-finite"):
        stream.push(torch.full((1, FRAME), float("nan")))
    with transcriber.stream(1) as stream, pytest.raises(ValueError, match="1920"):
        stream.push(torch.zeros(1, 100))
    listener_less = StreamLayout("asr", 0.5, text_is_fed=False, generated_codebooks=8, fed_codebooks=0)
    with pytest.raises(CheckpointError, match="cannot listen"):
        Transcriber(engine, layout=listener_less)
    codec_only = Engine(codec=engine.codec, lm=None, tokenizer=None, files=engine.files, model_type="codec")
    with pytest.raises(CheckpointError, match="no lm, tokenizer"):
        Transcriber(codec_only)
    dialogue = Engine(engine.codec, engine.lm, engine.tokenizer, engine.files, model_type="moshi")
    with pytest.raises(CheckpointError, match="not a speech-recognition"):
        Transcriber(dialogue)
    with pytest.raises(ValueError, match="vad_head"):
        Transcriber(engine, TranscribeOptions(vad_head=4))


def test_files_stop_and_sampling(stt, tmp_path):
    engines, _, _ = stt
    engine, _ = engines["published"]
    transcriber = Transcriber(engine)
    audio = test_audio(1.0, seed=4)
    path = write_audio(tmp_path / "clip.wav", audio.numpy(), subtype="FLOAT")
    assert transcriber.transcribe(path) == transcriber.transcribe(audio)
    # a stopped item drops its open word and must be started again
    with transcriber.stream(2) as stream:
        frames = torch.stack([audio, audio])[:, :12 * FRAME].view(2, 12, FRAME)
        for t in range(frames.shape[1]):
            stream.push(frames[:, t])
        stream.stop(torch.tensor([True, False]))
        with pytest.raises(ValueError, match="not running"):
            stream.push(frames[:, 0], torch.tensor([True, True]))
        flushed = stream.flush()
        assert {e.item for e in flushed} <= {1} and not stream.running.any()
    # sampling with a seed repeats itself
    sampled = Transcriber(engine, TranscribeOptions(temperature=1.0, seed=7, text_frames=True))
    first, second = (frames_of(list(sampled.transcribe_iter(audio))) for _ in range(2))
    assert [f.token for f in first] == [f.token for f in second]


def test_a_word_that_never_ends_is_cut_at_max_word_tokens():
    tokens = [10] + [11] * 9  # "hel" then "lo" nine times, no boundary
    words = words_from_tokens(tokens, Pieces(), WordTiming(max_word_tokens=4))
    assert [(w.text, round(w.start / 0.08), round(w.end / 0.08)) for w in words] == [
        ("hellololo", 0, 4), ("lolololo", 4, 8), ("lolo", 8, 10)]


def test_one_stream_at_a_time_per_engine(stt):
    engines, _, _ = stt
    transcriber = Transcriber(engines["published"][0])
    with transcriber.stream(1), pytest.raises(RuntimeError, match="already streaming"):
        transcriber.stream(1)
    with transcriber.stream(2) as stream:  # the failed attempt released everything it had taken
        assert stream.running.all()
