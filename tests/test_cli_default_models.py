"""The `delaykit` command as a user runs it: real subprocesses on the shipped models (checkpoints/default-*).

Audio through stdin gives every transcript format byte for byte as the golden files (tests/golden/default-asr/,
which `python tests/test_default_asr.py` and this module's main regenerate); words come out while a WAV is still
arriving on stdin, and speech while its script is; Ctrl-C (a real SIGINT) keeps what was finished and exits 130;
`serve` answers /health; every error a person can act on is one `Error:` line with exit status 1 (2 for usage),
never a traceback."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).parent / "golden"
FORMATS = ("txt", "srt", "vtt", "tsv", "json")
FRAME_BYTES = 1920 * 2  # one 80 ms frame of 16-bit mono PCM at 24 kHz


def delaykit(*args, **popen) -> subprocess.Popen:
    """`delaykit ARGS` in a child process (one torch thread: the machine is shared), pipes on every stream."""
    script = Path(sys.executable).with_name("delaykit")  # the installed console script, as a user runs it
    command = [*([str(script)] if script.is_file() else [sys.executable, "-m", "delaykit.cli"]), *map(str, args)]
    if args and args[0] in ("asr", "tts", "dialogue") and "--help" not in args:
        command += ["--threads", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT, env=env, **popen)


def finished(*args, input: bytes = b"", timeout: float = 300) -> tuple[int, bytes, str]:
    child = delaykit(*args)
    out, err = child.communicate(input, timeout=timeout)
    return child.returncode, out, err.decode("utf-8")


def wait_for(condition, child: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert child.poll() is None, child.stderr.read().decode("utf-8")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_asr_from_stdin_writes_every_format_as_the_golden_files(tmp_path):
    code, out, err = finished("asr", "-", "-o", tmp_path, input=(EXAMPLES / "speech.wav").read_bytes())
    assert code == 0, err
    assert out == b"" and err.splitlines() == [f"<stdin>: wrote {tmp_path / f'stdin.{name}'}" for name in FORMATS]
    for name in FORMATS:
        assert (tmp_path / f"stdin.{name}").read_bytes() == (GOLDEN / "default-asr" / f"speech.{name}").read_bytes()


def test_asr_prints_words_while_a_wav_still_arrives_on_stdin():
    wav = (EXAMPLES / "speech.wav").read_bytes()  # 9.7 s at 22.05 kHz
    half = len(wav) // 2
    child = delaykit("asr", "-")
    child.stdin.write(wav[:half])
    child.stdin.flush()
    ready, _, _ = select.select([child.stdout], [], [], 120)  # a command that waits for EOF would hang here
    assert ready, "no words before the end of the audio"
    first = child.stdout.read1()
    assert first.strip()  # the first words, from the first half
    child.stdin.write(wav[half:])
    child.stdin.close()
    rest = child.stdout.read()
    assert child.wait(timeout=120) == 0, child.stderr.read().decode("utf-8")
    golden = (GOLDEN / "default-asr" / "speech.txt").read_text(encoding="utf-8")
    assert (first + rest).decode("utf-8") == " ".join(golden.splitlines()) + "\n"  # as from the whole file
    child.stderr.close()


def test_tts_streams_pcm_to_stdout_while_it_reads_and_speaks(tmp_path):
    """stdin to stdout: speech starts while the script is still being written to stdin, and the words are
    timed as in the golden file written from the whole script to a WAV."""
    timings = tmp_path / "timings.json"
    child = delaykit("tts", "-", "-o", "-", "--seed", 0, "--timings", timings)
    first_line, rest_of_script = (EXAMPLES / "script.txt").read_bytes().split(b"\n", 1)
    child.stdin.write(first_line + b"\n")
    child.stdin.flush()
    ready, _, _ = select.select([child.stdout], [], [], 120)  # a command that waits for EOF would hang here
    assert ready, "no speech before the end of the script"
    first = child.stdout.read(FRAME_BYTES)  # before the rest of the script is written
    assert len(first) == FRAME_BYTES
    child.stdin.write(rest_of_script)
    child.stdin.close()
    rest = child.stdout.read()
    assert child.wait(timeout=300) == 0
    assert "raw 16-bit mono PCM at 24000 Hz" in child.stderr.read().decode("utf-8")
    pcm = first + rest
    assert len(pcm) % FRAME_BYTES == 0 and len(pcm) > 50 * FRAME_BYTES
    assert np.abs(np.frombuffer(pcm, dtype="<i2")).max() > 300  # it spoke
    assert timings.read_text(encoding="utf-8") == (GOLDEN / "default-tts" / "script.timings.json").read_text(
        encoding="utf-8")


def test_ctrl_c_keeps_what_was_streamed_and_exits_130():
    child = delaykit("tts", "-", "-o", "-", "--seed", 0)
    child.stdin.write((EXAMPLES / "script.txt").read_bytes())
    child.stdin.close()
    first = child.stdout.read(FRAME_BYTES)
    assert len(first) == FRAME_BYTES
    child.send_signal(signal.SIGINT)
    rest = child.stdout.read()
    assert child.wait(timeout=60) == 130
    err = child.stderr.read().decode("utf-8")
    assert err.endswith("Aborted!\n") and "Traceback" not in err
    assert (len(first) + len(rest)) % FRAME_BYTES == 0  # whole frames: nothing half-written


def test_ctrl_c_keeps_the_transcripts_of_finished_files(tmp_path):
    long = tmp_path / "long.wav"
    speech, rate = soundfile.read(EXAMPLES / "speech.wav", dtype="int16")
    soundfile.write(long, np.tile(speech, 30), rate)  # about 5 minutes
    out = tmp_path / "out"
    child = delaykit("asr", EXAMPLES / "speech.wav", long, "-o", out)
    wait_for(lambda: (out / "speech.json").exists(), child)  # the short file's transcripts come first
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=60) == 130
    assert "Traceback" not in child.stderr.read().decode("utf-8")
    assert sorted(path.name for path in out.iterdir()) == [f"speech.{name}" for name in sorted(FORMATS)]
    for name in FORMATS:  # complete, and no temporary file left behind
        assert (out / f"speech.{name}").read_bytes() == (GOLDEN / "default-asr" / f"speech.{name}").read_bytes()


def test_serve_answers_health_and_ctrl_c_stops_it():
    import json
    import urllib.request

    pytest.importorskip("websockets")
    child = delaykit("serve", "--port", 0, "--threads", 1)
    lines: list[str] = []
    wait_for(lambda: lines.append(child.stderr.readline().decode("utf-8")) or "listening on ws://" in lines[-1],
             child, timeout=120)
    url = lines[-1].split("listening on ", 1)[1].split()[0]  # ws://127.0.0.1:PORT/api/asr
    assert url.endswith("/api/asr")  # the shipped ASR model by default
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as response:
        assert response.status == 200 and json.loads(response.read())
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=60) == 130
    child.stdout.close()
    child.stderr.close()


@pytest.mark.parametrize("case", ["missing input", "unreadable input", "checkpoint of another mode",
                                  "no such checkpoint", "output exists", "unknown option"])
def test_errors_a_person_can_act_on(case, tmp_path):
    (tmp_path / "noise.wav").write_bytes(b"not audio at all")
    (tmp_path / "taken.wav").write_bytes(b"keep me")
    speech = EXAMPLES / "speech.wav"
    args, status, message = {
        "missing input": (["asr", tmp_path / "none.wav"], 2, "does not exist"),
        "unreadable input": (["asr", tmp_path / "noise.wav"], 1,
                             f"Error: {tmp_path / 'noise.wav'}: cannot read audio ("),
        "checkpoint of another mode": (["asr", speech, "--model", "checkpoints/default-tts"], 1,
                                       "Error: checkpoints/default-tts: a tts checkpoint cannot do asr"),
        "no such checkpoint": (["tts", "-", "-o", "-", "--model", tmp_path / "nothing"], 1,
                               f"Error: {tmp_path / 'nothing'}: no such checkpoint directory"),
        "output exists": (["dialogue", speech, "-o", tmp_path / "taken.wav"], 1,
                          f"Error: {tmp_path / 'taken.wav'}: already exists (pass --force to overwrite)"),
        "unknown option": (["asr", speech, "--colour"], 2, "Error: No such option '--colour'."),
    }[case]
    code, out, err = finished(*args, input=b"Hello.")
    assert code == status and out == b"" and "Traceback" not in err
    assert message in err
    if status == 1:
        assert len(err.splitlines()) == 1  # one line, naming what to fix
    assert (tmp_path / "taken.wav").read_bytes() == b"keep me"


if __name__ == "__main__":  # regenerate the transcript golden files of the shipped ASR model
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        code, _, err = finished("asr", "-", "-o", tmp, input=(EXAMPLES / "speech.wav").read_bytes())
        assert code == 0, err
        for name in FORMATS:
            (GOLDEN / "default-asr" / f"speech.{name}").write_bytes((Path(tmp) / f"stdin.{name}").read_bytes())
            print(f"wrote {GOLDEN / 'default-asr' / f'speech.{name}'}", file=sys.stderr)
