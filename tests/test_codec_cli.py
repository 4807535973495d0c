"""`delaykit codec roundtrip`: a real streaming round trip through a codec checkpoint, and its errors."""

import numpy as np
import soundfile
import torch
from click.testing import CliRunner
from test_codec_model import tiny_codec_config

from delaykit.cli import main
from delaykit.codec.model import CodecModel
from delaykit.engine import save_engine


def make_checkpoint(directory):
    torch.manual_seed(0)
    codec = CodecModel(tiny_codec_config()).eval()
    with torch.no_grad():  # give the codebooks distinct centroids, as a trained model has
        for name, buffer in codec.named_buffers():
            if name.endswith("embedding_sum"):
                buffer.normal_()
    save_engine(directory, codec, None)
    return codec


def test_roundtrip_streams_like_offline(tmp_path):
    codec = make_checkpoint(tmp_path / "ckpt")
    rate = 22050  # not the codec's rate: the command resamples
    t = np.arange(int(0.5 * rate)) / rate
    soundfile.write(tmp_path / "in.wav", 0.3 * np.sin(2 * np.pi * 440 * t), rate)
    result = CliRunner().invoke(main, ["codec", "roundtrip", str(tmp_path / "in.wav"), "-o",
                                       str(tmp_path / "out.wav"), "--model", str(tmp_path / "ckpt")])
    assert result.exit_code == 0, result.output
    assert "frames x 8 codebooks" in result.output
    decoded, out_rate = soundfile.read(tmp_path / "out.wav", dtype="float32")
    assert out_rate == 24000 and decoded.shape == (12000,)

    from delaykit.audio import load_audio

    audio = torch.from_numpy(load_audio(tmp_path / "in.wav", 24000))
    with torch.no_grad():
        offline = codec.decode(codec.encode(audio.view(1, 1, -1)))[0, 0, :12000].clamp(-1, 1)
    assert np.abs(decoded - offline.numpy()).max() < 2 / 32768  # equal up to 16-bit rounding


def test_roundtrip_refuses_to_overwrite_and_names_missing_checkpoints(tmp_path):
    make_checkpoint(tmp_path / "ckpt")
    soundfile.write(tmp_path / "in.wav", np.zeros(2400), 24000)
    (tmp_path / "out.wav").write_bytes(b"keep me")
    runner = CliRunner()
    args = ["codec", "roundtrip", str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.wav")]
    result = runner.invoke(main, [*args, "--model", str(tmp_path / "ckpt")])
    assert result.exit_code == 1 and "already exists" in result.output
    assert (tmp_path / "out.wav").read_bytes() == b"keep me"
    result = runner.invoke(main, [*args, "--force", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "missing" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, [*args, "--force", "--model", str(tmp_path / "ckpt")])
    assert result.exit_code == 0
