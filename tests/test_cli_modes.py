"""`delaykit asr`, `tts` and `dialogue` on tiny checkpoints: outputs equal the library's, errors are one line.

Checkpoints come from the mode tests' fixtures (tiny random-weight models, so the words are nonsense but
deterministic)."""

import json
import math

import numpy as np
import pytest
import soundfile
import torch
from click.testing import CliRunner

pytest.importorskip("moshi")  # the fixtures build their checkpoints with the reference's constructors
from test_asr import stt  # noqa: F401  (module fixture: tiny stt checkpoints)
from test_dialogue import checkpoint  # noqa: F401  (module fixture: a tiny moshi checkpoint)

from delaykit.api import load
from delaykit.cli import main
from delaykit.files import default_file_mode
from delaykit.formats import FORMATS, format_timestamp, render
from delaykit.modes.dialogue import DialogueOptions
from delaykit.modes.tts import SynthesisOptions

FRAME = 1920
SCRIPT = "the quick brown fox jumps over the lazy dog"


def run(*args, input=None):
    return CliRunner().invoke(main, [str(arg) for arg in args], input=input)


def speech_like(path, seconds, seed, rate=24000):
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    signal = 0.3 * torch.sin(2 * math.pi * 220 * t) + 0.2 * torch.randn(t.shape[0], generator=generator)
    soundfile.write(path, signal.clamp(-1, 1).numpy(), rate)  # 16-bit PCM
    return path


@pytest.fixture(scope="module")
def stt_dir(stt):  # noqa: F811
    return stt[0]["published"][0].files.directory


@pytest.fixture(scope="module")
def tts_dir(tmp_path_factory):
    from test_tts import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("tts-cli"))[0]


@pytest.fixture(scope="module")
def clips(tmp_path_factory, stt_dir):
    """Two recordings of different lengths (one not 24 kHz) and the words the library finds in each."""
    root = tmp_path_factory.mktemp("clips")
    paths = [speech_like(root / "first.wav", 2.3, seed=1), speech_like(root / "second.flac", 1.3, seed=2, rate=16000)]
    transcriber = load(stt_dir, device="cpu").transcriber()
    transcripts = [transcriber.transcribe(path) for path in paths]
    assert all(transcript.words for transcript in transcripts)
    return paths, transcripts


# ---------------------------------------------------------------------------------------------------------
# asr

def test_asr_streams_words_to_stdout(stt_dir, clips):
    paths, transcripts = clips
    result = run("asr", paths[0], "--model", stt_dir)
    assert result.exit_code == 0, result.output
    assert result.stdout == transcripts[0].text + "\n"
    result = run("asr", *paths, "--model", stt_dir)  # one batch of two streams
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for path, transcript in zip(paths, transcripts, strict=True):
        assert [line.split(": ", 1)[1] for line in lines if line.startswith(f"{path}: ")] == \
            [word.text for word in transcript.words]


def test_asr_reads_stdin(stt_dir, clips):
    paths, transcripts = clips
    result = run("asr", "-", "--model", stt_dir, "-f", "json", input=paths[1].read_bytes())
    assert result.exit_code == 0, result.output
    assert result.stdout == render("json", transcripts[1].words)


@pytest.mark.parametrize("name", FORMATS)
def test_asr_prints_each_format(stt_dir, clips, name):
    paths, transcripts = clips
    result = run("asr", paths[0], "--model", stt_dir, "-f", name)
    assert result.exit_code == 0, result.output
    assert result.stdout == render(name, transcripts[0].words)


def test_asr_writes_files_into_a_directory_and_refuses_to_overwrite(stt_dir, clips, tmp_path):
    paths, transcripts = clips
    out = tmp_path / "out"
    result = run("asr", *paths, "--model", stt_dir, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    for path, transcript in zip(paths, transcripts, strict=True):
        for name in FORMATS:
            assert (out / f"{path.stem}.{name}").read_text(encoding="utf-8") == render(name, transcript.words)
    assert (out / "first.txt").stat().st_mode & 0o777 == default_file_mode()  # not mkstemp's 0o600
    (out / "first.srt").write_text("keep me")
    result = run("asr", paths[0], "--model", stt_dir, "-o", out, "-f", "srt")
    assert result.exit_code == 1 and "already exists" in result.output and "Traceback" not in result.output
    assert (out / "first.srt").read_text() == "keep me"
    result = run("asr", paths[0], "--model", stt_dir, "-o", out, "-f", "srt", "--force", "--quiet")
    assert result.exit_code == 0 and result.stderr == ""
    assert (out / "first.srt").read_text() == render("srt", transcripts[0].words)


def test_asr_vad_prints_end_of_turn_on_stderr(stt_dir, clips, monkeypatch):
    import functools

    from delaykit.modes import asr

    paths, _ = clips
    result = run("asr", paths[0], "--model", stt_dir, "--vad")
    assert result.exit_code == 0 and result.stderr == ""  # the tiny model never reaches P(no voice) 0.5
    # a threshold of 0 fires after every word: the events are the library's, one line each
    always = functools.partial(asr.TranscribeOptions, vad_threshold=0.0)
    transcripts = [load(stt_dir, device="cpu").transcriber(always()).transcribe(path) for path in paths]
    assert all(transcript.end_of_speech for transcript in transcripts)
    monkeypatch.setattr(asr, "TranscribeOptions", always)
    result = run("asr", paths[0], "--model", stt_dir, "--vad")
    assert result.exit_code == 0, result.output
    assert result.stdout == transcripts[0].text + "\n"
    assert result.stderr == "".join(f"[end of turn at {end.time:.2f} s]\n" for end in transcripts[0].end_of_speech)
    result = run("asr", *paths, "--model", stt_dir, "--vad")
    for path, transcript in zip(paths, transcripts, strict=True):
        assert [line for line in result.stderr.splitlines() if line.startswith(f"{path}: ")] == [
            f"{path}: [end of turn at {end.time:.2f} s]" for end in transcript.end_of_speech]


@pytest.mark.parametrize(("rate", "channels", "subtype"), [(24000, 1, "PCM_16"), (16000, 2, "FLOAT"),
                                                          (44100, 1, "PCM_U8")])
def test_asr_recognises_a_wav_on_stdin_as_it_arrives(stt_dir, clips, tmp_path, monkeypatch, rate, channels,
                                                     subtype):
    import delaykit.audio

    signal, _ = soundfile.read(clips[0][0], dtype="float32")  # 24 kHz
    wav = tmp_path / "clip.wav"
    soundfile.write(wav, np.stack([delaykit.audio.resample(signal, 24000, rate)] * channels, axis=1), rate,
                    subtype=subtype)
    expected = load(stt_dir, device="cpu").transcriber().transcribe(wav)
    whole_file = run("asr", wav, "--model", stt_dir, "-f", "json")

    def not_whole(*args, **kwargs):
        raise AssertionError("stdin was read as a whole file")

    monkeypatch.setattr(delaykit.audio, "load_audio_bytes", not_whole)
    result = run("asr", "-", "--model", stt_dir, input=wav.read_bytes())
    assert result.exit_code == 0, result.output
    assert result.stdout == expected.text + "\n" and expected.words
    result = run("asr", "-", "--model", stt_dir, "-f", "json", input=wav.read_bytes())
    assert result.exit_code == 0 and result.stdout == whole_file.stdout
    result = run("asr", "-", "--model", stt_dir, "-o", tmp_path / "out", "-f", "srt", input=wav.read_bytes())
    assert result.exit_code == 0 and result.stderr == f"<stdin>: wrote {tmp_path / 'out' / 'stdin.srt'}\n"
    assert (tmp_path / "out" / "stdin.srt").read_text() == render("srt", expected.words)
    empty = delaykit.audio.wav_stream_header(24000)
    result = run("asr", "-", "--model", stt_dir, input=empty)
    assert result.exit_code == 1 and result.output == "Error: <stdin>: audio is empty (0 samples)\n"


@pytest.mark.parametrize(("suffix", "container", "codec"), [(".ogg", "OGG", "VORBIS"), (".mp3", "MP3", "MPEG_LAYER_III")])
def test_asr_reads_compressed_files(stt_dir, clips, tmp_path, suffix, container, codec):
    if container not in soundfile.available_formats():
        pytest.skip(f"this libsndfile has no {container}")
    signal, rate = soundfile.read(clips[0][0], dtype="float32")
    path = tmp_path / f"clip{suffix}"
    soundfile.write(path, signal, rate, format=container, subtype=codec)
    expected = load(stt_dir, device="cpu").transcriber().transcribe(path)
    result = run("asr", path, "--model", stt_dir)
    assert result.exit_code == 0, result.output
    assert result.stdout == expected.text + "\n" and expected.words


def test_asr_errors(stt_dir, clips, checkpoint, tmp_path):  # noqa: F811
    paths, _ = clips
    result = run("asr", tmp_path / "missing.wav", "--model", stt_dir)
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "noise.wav").write_bytes(b"not audio at all")
    result = run("asr", tmp_path / "noise.wav", "--model", stt_dir)
    assert result.exit_code == 1 and "cannot read audio" in result.output and "Traceback" not in result.output
    result = run("asr", paths[0], "--model", checkpoint[0])  # a dialogue checkpoint
    assert result.exit_code == 1 and result.output.startswith("Error:") and "cannot do asr" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    result = run("asr", "-", "--model", stt_dir, input=b"garbage")
    assert result.exit_code == 1 and result.output == "Error: <stdin>: cannot read audio (Format not recognised.)\n"
    result = run("asr", paths[0], "-f", "all", "--model", stt_dir)
    assert result.exit_code == 2 and "-o DIR" in result.output
    result = run("asr", *paths, "-f", "srt", "--model", stt_dir)
    assert result.exit_code == 2 and "-o DIR" in result.output
    (tmp_path / "a-file").write_text("")
    result = run("asr", paths[0], "--model", stt_dir, "-o", tmp_path / "a-file" / "out")
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'a-file' / 'out'}: cannot create the output directory (Not a directory)\n"


# ---------------------------------------------------------------------------------------------------------
# default models: a missing or codec-only default-<mode> checkpoint gives one clear line

@pytest.mark.parametrize("args", [["asr", "IN"], ["tts", "SCRIPT", "-o", "-"], ["dialogue", "IN", "-o", "OUT"]])
def test_default_model_gives_a_clear_error(args, clips, tmp_path, monkeypatch):
    from test_codec_cli import make_checkpoint

    (tmp_path / "script.txt").write_text(SCRIPT)
    values = {"IN": clips[0][0], "SCRIPT": tmp_path / "script.txt", "OUT": tmp_path / "out.wav"}
    args = [values.get(arg, arg) for arg in args]
    mode = args[0]
    import delaykit.checkpoints

    make_checkpoint(tmp_path / "codec-only")
    for default_dir in (tmp_path / "not-installed", tmp_path / "codec-only"):
        monkeypatch.setattr(delaykit.checkpoints, "default_checkpoint_dir", lambda name, d=default_dir: d)
        result = run(*args)  # --model defaults to "default", i.e. default-<mode>
        assert result.exit_code == 1, result.output
        if default_dir.name == "not-installed":
            assert result.output.strip() == (f"Error: the default-{mode} checkpoint is not installed: "
                                             f"{default_dir}/config.json does not exist; pass a checkpoint "
                                             "directory instead")
        else:
            assert result.output.strip() == f"Error: default-{mode}: a codec checkpoint cannot do {mode}"


# ---------------------------------------------------------------------------------------------------------
# tts

def test_tts_streams_the_same_pcm_as_the_wav_and_writes_timings(tts_dir, tmp_path):
    (tmp_path / "script.txt").write_text(SCRIPT)
    result = run("tts", tmp_path / "script.txt", "-o", tmp_path / "out.wav", "--model", tts_dir, "--seed", 3,
                 "--timings", tmp_path / "words.json")
    assert result.exit_code == 0, result.output
    samples, rate = soundfile.read(tmp_path / "out.wav", dtype="int16")
    assert (tmp_path / "out.wav").stat().st_mode & 0o777 == default_file_mode()
    assert rate == 24000 and samples.ndim == 1 and samples.shape[0] % FRAME == 0 and samples.shape[0] > 0
    streamed = run("tts", "-", "-o", "-", "--model", tts_dir, "--seed", 3, input=SCRIPT)
    assert streamed.exit_code == 0, streamed.output
    assert "24000 Hz" in streamed.stderr
    assert np.array_equal(np.frombuffer(streamed.stdout_bytes, dtype="<i2"), samples)

    pcm, words = load(tts_dir, device="cpu").synthesize(SCRIPT, SynthesisOptions(seed=3))
    assert np.abs(samples / 32767.0 - pcm.numpy()).max() < 1.01 / 32767
    timings = json.loads((tmp_path / "words.json").read_text())
    # the tiny model has speaker turns, so each word also says who speaks it
    assert timings == [{"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3), "speaker": w.speaker}
                       for w in words]
    assert [entry["word"] for entry in timings] == SCRIPT.split()

    result = run("tts", tmp_path / "script.txt", "-o", tmp_path / "out.wav", "--model", tts_dir)
    assert result.exit_code == 1 and "already exists" in result.output


def test_tts_speaks_stdin_line_by_line_as_the_whole_file(tts_dir, tmp_path, monkeypatch):
    from delaykit.modes import tts

    lines = ["the quick brown fox", 'jumps <break time="0.3s"/> over', "", "the lazy dog"]
    (tmp_path / "script.txt").write_text("\n".join(lines) + "\n")
    whole = run("tts", tmp_path / "script.txt", "-o", "-", "--model", tts_dir, "--seed", 3)
    pushed: list = []
    push_items = tts.SynthesisStream.push_items
    monkeypatch.setattr(tts.SynthesisStream, "push_items",
                        lambda self, items: pushed.append(len(items)) or push_items(self, items))
    streamed = run("tts", "-", "-o", "-", "--model", tts_dir, "--seed", 3, input="\n".join(lines) + "\n")
    assert whole.exit_code == streamed.exit_code == 0, whole.output + streamed.output
    assert streamed.stdout_bytes == whole.stdout_bytes and len(whole.stdout_bytes) > 0
    assert pushed == [4, 3, 0, 3]  # one push per line read (a break is an item too)

    result = run("tts", "-", "-o", "-", "--model", tts_dir, input=" \n<break time=\"1s\"/>\n")
    assert result.exit_code == 1 and result.output == "Error: <stdin>: text is empty (no word to say)\n"
    result = run("tts", "-", "-o", "-", "--model", tts_dir, input=b"fine words\nbad \xff\n")
    assert result.exit_code == 1  # after line 1 was spoken: its frames stay on stdout
    assert result.stderr.endswith("\nError: <stdin> line 2: not valid UTF-8 (byte 4: invalid start byte)\n")
    assert len(result.stdout_bytes) > 0 and len(result.stdout_bytes) % (2 * FRAME) == 0
    (tmp_path / "empty.txt").write_text("\n")
    result = run("tts", tmp_path / "empty.txt", "-o", "-", "--model", tts_dir)
    assert result.exit_code == 1 and result.output == f"Error: {tmp_path / 'empty.txt'}: text is empty (no word to say)\n"


def test_tts_temperature_reaches_the_sampler(tts_dir):
    greedy, _ = load(tts_dir, device="cpu").synthesize(SCRIPT, SynthesisOptions(temperature=0.0))
    result = run("tts", "-", "-o", "-", "--model", tts_dir, "--temperature", 0, input=SCRIPT)
    assert result.exit_code == 0, result.output
    streamed = np.frombuffer(result.stdout_bytes, dtype="<i2") / 32767.0
    assert streamed.shape == greedy.shape and np.abs(streamed - greedy.numpy()).max() < 1.01 / 32767


def test_eval_tts_scores_with_an_asr_model(tts_dir, stt_dir, tmp_path):
    corpus = tmp_path / "texts"
    corpus.mkdir()
    rows = [{"path": str(corpus / f"{index}.wav"), "text": text, "duration": 1.0}
            for index, text in enumerate([SCRIPT, "over the lazy dog"])]
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = run("eval", "tts", "--model", tts_dir, "--data", corpus, "--asr", stt_dir, "--out", tmp_path / "wavs")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["utterances"] == 2 and report["reference_words"] == 13 and set(report["wer"]) == {"asr"}
    assert report["model"] == str(tts_dir) and sorted(path.name for path in (tmp_path / "wavs").iterdir()) == [
        "0000.wav", "0001.wav"]
    result = run("eval", "tts", "--model", tts_dir, "--data", corpus)
    assert result.exit_code == 2 and "something has to listen" in result.output


def test_tts_two_speaker_script(tts_dir, tmp_path, monkeypatch):
    from delaykit.modes import tts

    script = "[S1] the quick brown fox\n  [S2]jumps over\nthe lazy dog\n[S1] dog\n"
    turns = ["the quick brown fox", "jumps over the lazy dog", "dog"]  # main, other, main
    pcm, words = load(tts_dir, device="cpu").synthesize(turns, SynthesisOptions(seed=3))
    assert [word.speaker for word in words] == ["main"] * 4 + ["other"] * 5 + ["main"]
    (tmp_path / "dialogue.txt").write_text(script)
    from_file = run("tts", tmp_path / "dialogue.txt", "-o", "-", "--model", tts_dir, "--seed", 3,
                    "--timings", tmp_path / "words.json")
    from_stdin = run("tts", "-", "-o", "-", "--model", tts_dir, "--seed", 3, input=script)
    assert from_file.exit_code == from_stdin.exit_code == 0, from_file.output + from_stdin.output
    assert from_file.stdout_bytes == from_stdin.stdout_bytes
    samples = np.frombuffer(from_file.stdout_bytes, dtype="<i2") / 32767.0
    assert samples.shape == pcm.shape and np.abs(samples - pcm.numpy()).max() < 1.01 / 32767
    timed = json.loads((tmp_path / "words.json").read_text())
    assert [entry["word"] for entry in timed] == " ".join(turns).split()
    assert [entry["speaker"] for entry in timed] == [word.speaker for word in words]
    stereo = run("tts", tmp_path / "dialogue.txt", "-o", tmp_path / "both.wav", "--stereo", "--model", tts_dir,
                 "--seed", 3)
    assert stereo.exit_code == 0, stereo.output
    channels, rate = soundfile.read(tmp_path / "both.wav", dtype="float32", always_2d=True)  # [N, 2]
    expected = tts.speaker_channels(pcm, words, rate).numpy().T  # [N, 2]: main left, other right
    assert channels.shape == expected.shape and np.abs(channels - expected).max() < 2 / 32767
    assert np.abs(channels[:, 1]).max() > 0 and np.abs(channels[:, 0]).max() > 0  # both speakers are heard
    assert run("tts", tmp_path / "dialogue.txt", "-o", "-", "--stereo", "--model", tts_dir).exit_code == 2

    monkeypatch.setattr(tts.Synthesizer, "multi_speaker", property(lambda self: False))
    result = run("tts", "-", "-o", "-", "--model", tts_dir, "--quiet", input=script)
    assert result.exit_code == 1 and result.stderr == ("Error: <stdin> line 2: [S2] asks for a second speaker; "
                                                       "this model speaks with one voice (no speaker turns)\n")
    result = run("tts", "-", "-o", "-", "--model", tts_dir, "--seed", 3, input="[S1] the quick brown fox\n")
    assert result.exit_code == 0 and result.stdout_bytes == run(
        "tts", "-", "-o", "-", "--model", tts_dir, "--seed", 3, input="the quick brown fox\n").stdout_bytes


def test_tts_ctrl_c_exits_130_and_keeps_what_was_streamed(tts_dir, tmp_path, monkeypatch):
    from delaykit.modes import tts

    def interrupted(self, max_steps=None):
        for frame in range(3):
            yield tts.AudioFrame(torch.full((FRAME,), 0.5), frame * 0.08, torch.zeros(8, dtype=torch.long))
        raise KeyboardInterrupt

    monkeypatch.setattr(tts.SynthesisStream, "events", interrupted)
    result = run("tts", "-", "-o", "-", "--model", tts_dir, input=SCRIPT)
    assert result.exit_code == 130
    assert np.array_equal(np.frombuffer(result.stdout_bytes, dtype="<i2"), np.full(3 * FRAME, 16384, dtype="<i2"))
    (tmp_path / "script.txt").write_text(SCRIPT)
    result = run("tts", tmp_path / "script.txt", "-o", tmp_path / "out.wav", "--model", tts_dir)
    assert result.exit_code == 130 and not list(tmp_path.glob("*.wav")) and not list(tmp_path.glob(".*"))

    def reader_gone(self, max_steps=None):
        raise BrokenPipeError
        yield

    monkeypatch.setattr(tts.SynthesisStream, "events", reader_gone)
    result = run("tts", "-", "-o", "-", "--model", tts_dir, input=SCRIPT)
    assert result.exit_code == 1 and result.stderr.endswith("Error: stdout was closed by its reader: stopped\n")


def test_tts_play_sends_the_wav_samples_to_the_speakers(tts_dir, tmp_path, monkeypatch):
    import sys

    from test_microphone import fake_sounddevice

    opened: list = []
    module = fake_sounddevice(np.zeros(1, np.float32), opened)
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    result = run("tts", "-", "--play", "-o", tmp_path / "out.wav", "--model", tts_dir, "--seed", 3, input=SCRIPT)
    assert result.exit_code == 0, result.output
    assert opened[0] == {"output": 24000, "channels": 1, "dtype": "float32"} and opened[-1] == "closed"
    assert all(block.shape == (FRAME,) for block in module.played)  # frame by frame, as generated
    samples, _ = soundfile.read(tmp_path / "out.wav", dtype="float32")
    assert np.abs(np.concatenate(module.played) - samples).max() < 2 / 32767  # 16-bit file: 1.0 -> 32767
    alone = run("tts", "-", "--play", "--model", tts_dir, "--seed", 3, input=SCRIPT)  # no file needed
    assert alone.exit_code == 0 and "-> speakers" in alone.stderr
    neither = run("tts", "-", "--model", tts_dir, input=SCRIPT)
    assert neither.exit_code == 2 and "--play" in neither.output


def test_tts_errors(tts_dir, stt_dir, tmp_path):
    result = run("tts", tmp_path / "missing.txt", "-o", "-", "--model", tts_dir)
    assert result.exit_code == 2 and "does not exist" in result.output
    result = run("tts", "-", "-o", "-", "--model", tts_dir, input=b"\xff\xfe bad")
    assert result.exit_code == 1 and result.output.startswith("Error:") and "Traceback" not in result.output
    result = run("tts", "-", "-o", "-", "--model", tts_dir, "--cfg", 2.5, input=SCRIPT)
    assert result.exit_code == 2 and "cfg_coef 2.5 is not supported" in result.output
    result = run("tts", "-", "-o", "-", "--model", stt_dir, input=SCRIPT)
    assert result.exit_code == 1 and "cannot do tts" in result.output and result.stdout_bytes == b""


# ---------------------------------------------------------------------------------------------------------
# dialogue

def test_dialogue_mic_is_the_file_session_live(checkpoint, tmp_path, monkeypatch):  # noqa: F811
    import sys

    from test_microphone import fake_sounddevice

    user = speech_like(tmp_path / "user.wav", 1.2, seed=5)
    heard, _ = soundfile.read(user, dtype="float32")
    module = fake_sounddevice(heard.astype(np.float32), [])
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    live = run("dialogue", "--mic", "--duration", 1.2, "-o", tmp_path / "live.wav", "--model", checkpoint[0],
               "--seed", 7)
    assert live.exit_code == 0, live.output
    from_file = run("dialogue", user, "-o", tmp_path / "file.wav", "--model", checkpoint[0], "--seed", 7)
    assert from_file.exit_code == 0, from_file.output
    stereo_live, _ = soundfile.read(tmp_path / "live.wav", dtype="float32")
    stereo_file, _ = soundfile.read(tmp_path / "file.wav", dtype="float32")
    frames = math.ceil(heard.shape[0] / FRAME)
    assert stereo_live.shape == (frames * FRAME, 2)  # whole frames: the microphone gives no partial one
    assert np.array_equal(stereo_live[:heard.shape[0]], stereo_file) and live.stdout == from_file.stdout
    played = np.concatenate(module.played)  # the agent, through the speakers, frame by frame
    assert played.shape == (frames * FRAME,)
    assert np.abs(played[:heard.shape[0]] - stereo_file[:, 1]).max() < 2 / 32767
    for args in (["--mic", user], ["--duration", 1.0, user, "-o", tmp_path / "x.wav"], [user]):
        assert run("dialogue", *args, "--model", checkpoint[0]).exit_code == 2


def test_dialogue_writes_stereo_and_prints_timed_words(checkpoint, tmp_path):  # noqa: F811
    user = speech_like(tmp_path / "user.wav", 1.5, seed=4)
    result = run("dialogue", user, "-o", tmp_path / "out.wav", "--model", checkpoint[0], "--seed", 7)
    assert result.exit_code == 0, result.output
    stereo, rate = soundfile.read(tmp_path / "out.wav", dtype="float32")
    heard, _ = soundfile.read(user, dtype="float32")
    assert rate == 24000 and stereo.shape == (heard.shape[0], 2)
    assert np.abs(stereo[:, 0] - heard).max() < 1.01 / 32767  # the user, left, in 16 bits

    expected = load(checkpoint[0], device="cpu").converse(user, tmp_path / "library.wav", DialogueOptions(seed=7))
    library, _ = soundfile.read(tmp_path / "library.wav", dtype="float32")
    assert np.array_equal(stereo, library)
    assert result.stdout == "".join(f"[{format_timestamp(w.start)} --> {format_timestamp(w.end)}] {w.text}\n"
                                    for w in expected.agent_words)

    result = run("dialogue", user, "-o", tmp_path / "out.wav", "--model", checkpoint[0])
    assert result.exit_code == 1 and "already exists" in result.output
    result = run("dialogue", tmp_path / "none.wav", "-o", tmp_path / "x.wav", "--model", checkpoint[0])
    assert result.exit_code == 2 and "does not exist" in result.output


# ---------------------------------------------------------------------------------------------------------
# options every mode command shares: --device, --dtype, --quiet

def test_dtype_and_device_reach_the_model(stt_dir, clips, tmp_path, monkeypatch):
    import delaykit.api

    paths, _ = clips
    halved = load(stt_dir, device="cpu", dtype=torch.bfloat16).transcriber().transcribe(paths[0])
    placed: list = []

    def recording_load(name, device="auto", dtype=torch.float32):
        placed.append((device, dtype))
        return load(name, device=device, dtype=dtype)

    monkeypatch.setattr(delaykit.api, "load", recording_load)
    result = run("asr", paths[0], "--model", stt_dir, "--device", "cpu", "--dtype", "bfloat16")
    assert result.exit_code == 0, result.output
    assert result.stdout == halved.text + "\n" and placed == [("cpu", torch.bfloat16)]
    result = run("asr", paths[0], "--model", stt_dir)
    assert result.exit_code == 0 and placed[-1] == ("auto", torch.float32)
    if not torch.cuda.is_available():
        for args in (["asr", paths[0]], ["tts", "-", "-o", "-"], ["dialogue", paths[0], "-o", tmp_path / "x.wav"]):
            result = run(*args, "--model", stt_dir, "--device", "cuda", input=SCRIPT)
            assert result.exit_code == 1 and result.output == ("Error: --device cuda: torch sees no CUDA device on "
                                                               "this machine (use --device cpu)\n")
    result = run("asr", paths[0], "--model", stt_dir, "--dtype", "float64")
    assert result.exit_code == 2 and "float64" in result.output


def test_quiet_leaves_stderr_empty(tts_dir, checkpoint, tmp_path):  # noqa: F811
    loud = run("tts", "-", "-o", "-", "--model", tts_dir, "--seed", 3, input=SCRIPT)
    quiet = run("tts", "-", "-o", "-", "--model", tts_dir, "--seed", 3, "--quiet", input=SCRIPT)
    assert loud.exit_code == quiet.exit_code == 0 and loud.stderr and quiet.stderr == ""
    assert quiet.stdout_bytes == loud.stdout_bytes
    user = speech_like(tmp_path / "user.wav", 0.8, seed=4)
    result = run("dialogue", user, "-o", tmp_path / "out.wav", "--model", checkpoint[0], "-q")
    assert result.exit_code == 0 and result.stderr == "" and (tmp_path / "out.wav").is_file()
