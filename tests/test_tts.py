"""Streaming TTS: the driver equals Kyutai's TTSModel on a tiny tts-1.6b-shaped model, scripts parse as
written, word times follow the steps at which words are taken, and pushing words one at a time changes
nothing."""

import dataclasses
import itertools
import json
import sys
import types

import pytest
import torch
from safetensors.torch import save_file

from delaykit.engine import load_engine
from delaykit.errors import CheckpointError, TextError
from delaykit.layout import StreamLayout
from delaykit.modes.script import ScriptBreak, ScriptEntry, ScriptWord, parse_text, parse_turns
from delaykit.modes.tts import (
    DROPPED_LEADING_FRAMES,
    AudioFrame,
    SpokenWord,
    SynthesisOptions,
    Synthesizer,
    TokenFrame,
    WordFeeder,
    load_voice,
    speaker_channels,
    voice_condition,
    word_times,
)
from delaykit.text_stream import TimedWord

pytest.importorskip("moshi")
# moshi.models.tts imports sphn (audio file I/O, used only for voice prefixes) at module level; where it is
# not installed, a stand-in does (nothing these tests call needs it).
try:
    import sphn  # noqa: F401
except ImportError:
    sys.modules["sphn"] = types.ModuleType("sphn")
from moshi.conditioners import ConditionAttributes, TensorCondition
from moshi.models.tts import StateMachine, TokenIds, TTSModel
from moshi.utils.compile import no_compile
from reference_models import reference_lm, reference_mimi, tiny_mimi_config
from test_codec_model import tiny_codec_config
from test_engine import MIMI_NAME, train_tokenizer

CODEBOOKS = 8  # generated audio codebooks (n_q = dep_q, as in tts-1.6b-en_fr)
AUDIO_DELAY = 0.32  # seconds: 4 frames (tts-1.6b: 1.28 s = 16 frames)
DELAY_STEPS = 4
VOICE_FRAMES, VOICE_DIM = 3, 12
TTS_LM = dict(
    n_q=CODEBOOKS, dep_q=CODEBOOKS, card=32, text_card=32, delays=[0, 0] + [2] * (CODEBOOKS - 1),
    depformer_context=CODEBOOKS, cross_attention=True,
    conditioners={
        "cfg": {"type": "lut", "lut": {"n_bins": 4, "dim": 8, "tokenizer": "noop",
                                       "possible_values": ["1.0", "2.0", "3.0", "4.0"]}},
        "speaker_wavs": {"type": "tensor", "tensor": {"dim": VOICE_DIM}},
    },
    fuser={"sum": ["cfg"], "cross": ["speaker_wavs"]},
)
SCRIPT = ["the quick brown fox <break time=\"0.3s\"/> jumps", "hello there how are you", "the lazy dog"]


def build_checkpoint(directory, lookahead: int = 0, distilled_cfg: bool = True):
    """A tiny TTS checkpoint in Kyutai's layout (model_type tts, tts_config), and the reference models.
    ``distilled_cfg`` False: no 'cfg' conditioner (guidance then runs as direct, two-half CFG)."""
    tokenizer_name = train_tokenizer(directory)  # 32 pieces
    overrides = dict(TTS_LM)
    if not distilled_cfg:
        overrides["conditioners"] = {"speaker_wavs": TTS_LM["conditioners"]["speaker_wavs"]}
        overrides["fuser"] = {"cross": ["speaker_wavs"]}
    lm, kwargs = reference_lm(seed=11, demux_second_text_stream=bool(lookahead), **overrides)
    with torch.no_grad():  # make WORD and PAD the likely text outputs, so the model's own choices matter
        lm.text_linear.weight[[0, 3]] *= 4
    mimi_config = tiny_mimi_config()
    mimi_config["transformer"]["context"] = 128
    mimi = reference_mimi(seed=12, num_codebooks=CODEBOOKS, config=mimi_config)
    save_file({k: v.contiguous() for k, v in lm.state_dict().items()}, str(directory / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in mimi.state_dict().items()}, str(directory / MIMI_NAME))
    codec_config = tiny_codec_config()
    codec_config.num_codebooks = CODEBOOKS
    codec_config.transformer.context = 128
    tts_config = {"audio_delay": AUDIO_DELAY, "second_stream_ahead": lookahead}
    config = dict(kwargs, model_type="tts", mimi_name=MIMI_NAME, tokenizer_name=tokenizer_name,
                  codec_config=codec_config.to_dict(), tts_config=tts_config)
    (directory / "config.json").write_text(json.dumps(config))
    return directory, lm, mimi


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("tts"))


@pytest.fixture(scope="module")
def engine(checkpoint):
    return load_engine(checkpoint[0], device="cpu")


@pytest.fixture(scope="module")
def lookahead_checkpoint(tmp_path_factory):
    """tts-1.6b-en_fr's second text stream: the tokens of the word two entries ahead, demuxed by the LM."""
    return build_checkpoint(tmp_path_factory.mktemp("tts-lookahead"), lookahead=2)


@pytest.fixture(scope="module")
def lookahead_engine(lookahead_checkpoint):
    return load_engine(lookahead_checkpoint[0], device="cpu")


def voices() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(5)
    return (torch.randn(VOICE_FRAMES, VOICE_DIM, generator=generator),)


def reference_tokens(checkpoint, engine, script, cfg="2.0", padding_bonus=0.0, lookahead=0, direct_cfg=1.0):
    """Kyutai's TTSModel.generate, greedy: (frames [N, 1 + Q], transcript [(word, step)], end step).
    ``cfg`` is the distilled-CFG condition (None: no 'cfg' conditioner), ``direct_cfg`` TTSModel.cfg_coef."""
    _, lm, mimi = checkpoint
    machine = StateMachine(TokenIds(lm.text_card + 1), second_stream_ahead=lookahead, max_padding=8,
                           initial_padding=2)
    tts = TTSModel(lm=lm, mimi=mimi, tokenizer=engine.tokenizer._sp, voice_suffix="", voice_repo="",
                   machine=machine, delay_steps=DELAY_STEPS, temp=0.0, n_q=CODEBOOKS, final_padding=4,
                   padding_bonus=padding_bonus, cfg_coef=direct_cfg)
    entries = tts.prepare_script(script, padding_between=1)
    condition = voice_condition(voices(), VOICE_DIM)
    attributes = ConditionAttributes(text={"cfg": cfg} if cfg is not None else {},
                                     tensor={"speaker_wavs": TensorCondition(condition.values, condition.mask)})
    with no_compile():  # eager: no compile time
        result = tts.generate([entries], [attributes])
    frames = torch.stack([frame[0, :, 0] for frame in result.frames])
    return frames, result.all_transcripts[0], result.end_steps[0]


def ours(engine, script=None, incremental=False, **overrides):
    """(token frames [N, 1 + Q], spoken words, audio frames) of our streaming synthesis."""
    options = SynthesisOptions.greedy(voices=voices(), token_frames=True, **overrides)
    synthesizer = Synthesizer(engine, options)
    events = []
    with synthesizer.stream() as stream:
        if incremental:  # one word at a time, pulling frames in between
            for item in parse_turns(script):
                stream.push_items([item])
                events.extend(stream.events())
        else:
            stream.push_items(parse_turns(script))
        stream.end_of_text()
        events.extend(stream.events())
    tokens = torch.stack([event.tokens for event in events if isinstance(event, TokenFrame)])
    assert [event.index for event in events if isinstance(event, TokenFrame)] == list(range(len(tokens)))
    return (tokens, [event for event in events if isinstance(event, SpokenWord)],
            [event for event in events if isinstance(event, AudioFrame)])


@pytest.mark.parametrize("cfg, padding_bonus", [("2.0", 0.0), ("1.0", 2.0)], ids=["cfg2", "cfg1-pad-bonus"])
def test_tokens_match_reference_tts(checkpoint, engine, cfg, padding_bonus):
    theirs, transcript, end_step = reference_tokens(checkpoint, engine, SCRIPT, cfg, padding_bonus)
    tokens, spoken, audio = ours(engine, SCRIPT, cfg_coef=float(cfg), padding_bonus=padding_bonus)
    assert end_step is not None
    assert tokens.shape == theirs.shape
    assert torch.equal(tokens, theirs)
    assert [(word.text, word.step) for word in spoken] == transcript
    # The model's own choices mattered: some words were taken before the 8 free PADs ran out.
    steps = [step for _, step in transcript]
    assert any(later - earlier < 9 for earlier, later in itertools.pairwise(steps))
    # Audio: from frame delay + 2 to the end step, like simple_generate.
    assert len(audio) == end_step
    assert all(frame.pcm.shape == (1920,) for frame in audio)
    assert torch.equal(torch.stack([frame.tokens for frame in audio]), theirs[DELAY_STEPS + 2:, 1:])
    assert (theirs[DELAY_STEPS:, 1:] >= 0).all() and (theirs[:DELAY_STEPS, 1:] == -1).all()


def test_second_text_stream_matches_reference(lookahead_checkpoint, lookahead_engine):
    script = SCRIPT[:2]
    theirs, transcript, end_step = reference_tokens(lookahead_checkpoint, lookahead_engine, script, lookahead=2)
    tokens, spoken, audio = ours(lookahead_engine, script)
    assert torch.equal(tokens, theirs)
    assert (theirs[:, 0] > 32).any()  # multiplexed: some frames carry a second-stream token
    assert [(word.text, word.step) for word in spoken] == transcript and len(audio) == end_step
    pushed, pushed_words, _ = ours(lookahead_engine, script, incremental=True)
    assert torch.equal(pushed, theirs) and pushed_words == spoken


@pytest.fixture(scope="module")
def undistilled_checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("tts-direct-cfg"), distilled_cfg=False)


def test_direct_cfg_matches_reference(undistilled_checkpoint):
    """Without a 'cfg' conditioner, cfg_coef guides the audio with a text-free, voice-free second half."""
    engine = load_engine(undistilled_checkpoint[0], device="cpu")
    theirs, transcript, _ = reference_tokens(undistilled_checkpoint, engine, SCRIPT[:2], cfg=None, direct_cfg=2.0)
    tokens, spoken, _ = ours(engine, SCRIPT[:2], cfg_coef=2.0)
    assert torch.equal(tokens, theirs)
    assert [(word.text, word.step) for word in spoken] == transcript
    unguided, _, _ = ours(engine, SCRIPT[:2], cfg_coef=1.0)
    assert not torch.equal(unguided, tokens)


def test_audio_equals_reference_mimi_decode(checkpoint, engine):
    _, _, mimi = checkpoint
    theirs, _, end_step = reference_tokens(checkpoint, engine, SCRIPT[:1])
    _, _, audio = ours(engine, SCRIPT[:1])
    with torch.no_grad(), mimi.streaming(1):
        decoded = [mimi.decode(frame[None, 1:, None])[0, 0] for frame in theirs[DELAY_STEPS:]]
    expected = torch.stack(decoded[2:2 + end_step]).clamp(-1, 1)
    torch.testing.assert_close(torch.stack([frame.pcm for frame in audio]), expected, atol=1e-4, rtol=0)
    assert [frame.start for frame in audio] == pytest.approx([0.08 * i for i in range(end_step)])


def test_audio_is_decoded_in_growing_chunks_like_frame_by_frame(engine, monkeypatch):
    """The codec decodes the first heard frame at once (with the dropped warm-up frames), then chunks no larger
    than the audio already out (1, 2, 4, then ``decode_frames``); the frames are those of one call per frame."""
    _, _, one_by_one = ours(engine, SCRIPT, decode_frames=1)
    chunk_sizes = []
    decode = engine.codec.decode

    def counted(codes: torch.Tensor) -> torch.Tensor:
        chunk_sizes.append(codes.shape[-1])
        return decode(codes)

    monkeypatch.setattr(engine.codec, "decode", counted)
    _, _, chunked = ours(engine, SCRIPT)
    assert engine.codec.max_stream_frames >= 4
    assert chunk_sizes[:4] == [DROPPED_LEADING_FRAMES + 1, 1, 2, 4] and max(chunk_sizes) == 4
    assert sum(chunk_sizes) == len(chunked) + DROPPED_LEADING_FRAMES
    assert [frame.start for frame in chunked] == [frame.start for frame in one_by_one]
    assert torch.equal(torch.stack([f.tokens for f in chunked]), torch.stack([f.tokens for f in one_by_one]))
    torch.testing.assert_close(torch.stack([f.pcm for f in chunked]), torch.stack([f.pcm for f in one_by_one]),
                               atol=1e-5, rtol=0)


def test_incremental_words_give_the_same_tokens(engine):
    whole, whole_words, _ = ours(engine, SCRIPT)
    pushed, pushed_words, _ = ours(engine, SCRIPT, incremental=True)
    assert torch.equal(whole, pushed)
    assert pushed_words == whole_words


def test_stream_waits_for_words(engine):
    synthesizer = Synthesizer(engine, SynthesisOptions.greedy(voices=voices()))
    with synthesizer.stream() as stream:
        assert list(stream.events()) == []  # no text: only the forced initial padding could run... and did
        assert stream.steps == 2
        stream.push_words(["hello"])
        list(stream.events())
        assert stream.steps > 2 and not stream.finished
        stream.end_of_text()
        events = list(stream.events())
        assert stream.finished and any(isinstance(event, AudioFrame) for event in events)
        with pytest.raises(RuntimeError, match="end_of_text"):
            stream.push_words(["more"])


def test_synthesize_returns_audio_and_word_times(engine):
    synthesizer = Synthesizer(engine, SynthesisOptions(seed=3, voices=voices()))
    pcm, words = synthesizer.synthesize(SCRIPT)
    assert pcm.dim() == 1 and pcm.shape[0] % 1920 == 0 and pcm.abs().max() > 0
    assert [word.text for word in words] == "the quick brown fox jumps hello there how are you the lazy dog".split()
    assert [word.speaker for word in words] == ["main"] * 5 + ["other"] * 5 + ["main"] * 3
    assert words[0].start == 0.0
    assert all(a.start < b.start and a.end == b.start for a, b in itertools.pairwise(words))
    assert words[-1].end == pytest.approx(pcm.shape[0] / 24000)
    again, _ = Synthesizer(engine, SynthesisOptions(seed=3, voices=voices())).synthesize(SCRIPT)
    assert torch.equal(pcm, again)


def test_two_speaker_script_renders_to_two_channels(engine):
    """stereo=True: the same samples, each word's span on its speaker's channel and silence on the other."""
    options = SynthesisOptions(seed=3, voices=voices())
    mono, words = Synthesizer(engine, options).synthesize(SCRIPT)
    stereo, stereo_words = Synthesizer(engine, options).synthesize(SCRIPT, stereo=True)
    assert stereo.shape == (2, mono.shape[0]) and stereo_words == words
    assert torch.equal(stereo.sum(0), mono)
    for word in words:
        span = slice(round(word.start * 24000), round(word.end * 24000))
        own, other = (1, 0) if word.speaker == "other" else (0, 1)
        assert torch.equal(stereo[own, span], mono[span]) and not stereo[other, span].any()
    other_turn = slice(round(words[5].start * 24000), round(words[9].end * 24000))  # "hello there how are you"
    assert stereo[1, other_turn].abs().max() > 0 and not stereo[1, :round(words[5].start * 24000)].any()


def test_speaker_channels_golden():
    pcm = torch.arange(1.0, 11.0)  # 10 samples at 10 Hz: one per 0.1 s
    words = [TimedWord("a", 0.2, 0.4, "main"), TimedWord("b", 0.4, 0.7, "other"), TimedWord("c", 0.7, 1.0, "main")]
    channels = speaker_channels(pcm, words, sample_rate=10)
    assert channels[0].tolist() == [1, 2, 3, 4, 0, 0, 0, 8, 9, 10]  # before the first word: its speaker's
    assert channels[1].tolist() == [0, 0, 0, 0, 5, 6, 7, 0, 0, 0]
    assert torch.equal(speaker_channels(pcm, [], 10), torch.stack([pcm, torch.zeros(10)]))


def rss_mb() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_minutes_of_speech_from_pushed_words_in_flat_memory(engine):
    """Words pushed a sentence at a time as the audio is pulled (the live form): over 2 minutes of speech,
    memory and the driver's queues stay flat (keeping each frame's samples would add 8.6 MB between the
    marks), and word times count on past many wraps of the LM's 12-frame and the codec's 128-step contexts."""
    synthesizer = Synthesizer(engine, SynthesisOptions.greedy(voices=voices()))
    sentence = "the quick brown fox jumps over the lazy dog".split()
    marks: dict[float, float] = {}
    starts: list[float] = []
    seconds = 0.0
    with synthesizer.stream() as stream:
        while seconds < 120:
            stream.push_words(sentence)
            for event in stream.events():
                if isinstance(event, AudioFrame):
                    seconds = event.start + 0.08
                elif isinstance(event, SpokenWord):
                    starts.append(event.start)
            assert len(stream.feeder.entries) <= 2  # pushed words are consumed as they are spoken
            for mark in (30, 120):
                if seconds >= mark and mark not in marks:
                    marks[mark] = rss_mb()
        stream.end_of_text()
        list(stream.events())
        assert stream.finished
    assert marks[120] - marks[30] < 4, marks  # MB, between 30 s and 2 minutes
    assert starts == sorted(starts) and starts[-1] > 115 and len(starts) > 200


def test_parse_script_golden():
    items = parse_turns(["Hi (there): it\u2019s <break time=\"0.5s\"/>me", "", "  ok<break time=\"250ms\" />bye  "])
    assert items == [ScriptWord("Hi", 0), ScriptWord("there", 0), ScriptWord("it's", 0), ScriptBreak(0.5, 0),
                     ScriptWord("me", 0), ScriptWord("ok", 0), ScriptBreak(0.25, 0), ScriptWord("bye", 0)]
    assert parse_text("a  b", speaker=1) == [ScriptWord("a", 1), ScriptWord("b", 1)]
    assert parse_turns(["", "yes"]) == [ScriptWord("yes", 1)]
    with pytest.raises(TextError, match="empty"):
        parse_turns(["  ", "<break time=\"1s\"/>"])
    with pytest.raises(TextError, match="UTF-8"):
        parse_turns(b"\xff\xfe")


def test_script_entries_match_reference(checkpoint, engine):
    """Tokens, speaker tokens, paddings and breaks equal Kyutai's script_to_entries."""
    from moshi.models.tts import script_to_entries

    turns = ["the fox <break time=\"0.4s\"/> jumps", "hello there", "", "the dog"]
    reference = script_to_entries(engine.tokenizer._sp, TokenIds(33), 12.5, turns, multi_speaker=True,
                                  padding_between=1)
    synthesizer = Synthesizer(engine, SynthesisOptions.greedy(voices=voices()))
    entries = synthesizer.script_tokenizer().entries(parse_turns(turns))
    assert [(list(e.tokens), e.text, e.padding) for e in entries] == [
        (e.tokens, e.text, e.padding) for e in reference]
    # Turn 3 is the other speaker again (turn 2 is empty): no new speaker token.
    assert entries[0].tokens[0] == 1 and entries[4].tokens[0] == 2 and entries[6].tokens[0] not in (1, 2)
    assert entries[2].is_break and entries[2].padding == 5


def test_word_feeder_golden():
    """The action machine, step by step: forced initial padding, a forced word once free pads run out, its
    tokens fed over the next frames, a 2-frame break, the last word, and the end."""
    feeder = WordFeeder(initial_padding=2, max_padding=3, text_card=32)
    feeder.entries.extend([ScriptEntry((10, 11), "ab", padding=2), ScriptEntry((), "", padding=2),
                           ScriptEntry((12,), "c")])
    PAD, WORD = 3, 0
    actions = [WORD] * 4 + [PAD] * 8 + [WORD] * 2  # what the model samples
    trace = []
    for step, action in enumerate(actions):
        token, entry = feeder.step(step, action)
        trace.append((token, entry.text if entry is not None else None))
    assert trace == [
        (PAD, None), (PAD, None),  # initial padding: the model's WORD is overruled
        (WORD, "ab"), (10, None), (11, None),  # the word's tokens follow its WORD, whatever the model says
        (PAD, None),  # the model pads (free pads: 3 after a word, 2 used while feeding)
        (PAD, ""), (PAD, None),  # free pads exhausted: the next entry is forced, a 2-frame break
        (WORD, "c"), (12, None), (PAD, None), (PAD, None),
        (PAD, None), (PAD, None),  # asked for a word after the last one: the end
    ]
    assert feeder.end_step == 12


def test_word_times():
    spoken = [SpokenWord("a", 0.0, 0, 2), SpokenWord("b", 0.4, 1, 7)]
    words = word_times(spoken, 1.0)
    assert [(w.text, w.start, w.end, w.speaker) for w in words] == [("a", 0.0, 0.4, "main"), ("b", 0.4, 1.0, "other")]


def test_errors(engine, checkpoint):
    with pytest.raises(CheckpointError, match="not a TTS checkpoint"):
        Synthesizer(dataclasses.replace(engine, files=dataclasses.replace(
            engine.files, config=dict(engine.files.config, model_type="moshi")), model_type="moshi"))
    with pytest.raises(CheckpointError, match="no codec"):
        Synthesizer(dataclasses.replace(engine, codec=None))
    multistream = dict(engine.files.config, tts_config=dict(engine.files.config["tts_config"], multistream=True))
    with pytest.raises(CheckpointError, match="multistream TTS checkpoint .* not supported"):
        Synthesizer(dataclasses.replace(engine, files=dataclasses.replace(engine.files, config=multistream)))
    with pytest.raises(ValueError, match="tts layout"):
        Synthesizer(engine, layout=StreamLayout("asr", 0.5, text_is_fed=False, generated_codebooks=0,
                                                fed_codebooks=8))
    with pytest.raises(ValueError, match="cfg_coef 1.5"):
        Synthesizer(engine, SynthesisOptions(cfg_coef=1.5))
    synthesizer = Synthesizer(engine, SynthesisOptions.greedy(voices=voices()))
    with pytest.raises(TextError, match="empty"):
        synthesizer.synthesize("   ")
    with pytest.raises(TextError, match="UTF-8"):
        synthesizer.synthesize(b"caf\xe9")
    with pytest.raises(TextError, match="does not know"):
        synthesizer.synthesize("the \u4e2d\u6587 fox")
    with synthesizer.stream(), pytest.raises(RuntimeError, match="open stream"):
        synthesizer.stream()


def test_voices_load_and_fill_speaker_slots(tmp_path):
    embedding = torch.randn(1, VOICE_DIM, VOICE_FRAMES)  # Kyutai's voice files: speaker_wavs [1, C, T]
    save_file({"speaker_wavs": embedding}, str(tmp_path / "voice.safetensors"))
    voice = load_voice(tmp_path / "voice.safetensors")
    assert torch.equal(voice, embedding[0].t())
    condition = voice_condition([voice, voice * 2], VOICE_DIM)
    assert condition.values.shape == (1, 5 * VOICE_FRAMES, VOICE_DIM)
    assert condition.mask[0].tolist() == [True] * 2 * VOICE_FRAMES + [False] * 3 * VOICE_FRAMES
    assert torch.equal(condition.values[0, VOICE_FRAMES:2 * VOICE_FRAMES], voice * 2)
    assert not condition.values[0, 2 * VOICE_FRAMES:].any()
    with pytest.raises(CheckpointError, match="safetensors"):
        load_voice(tmp_path / "voice.wav")
