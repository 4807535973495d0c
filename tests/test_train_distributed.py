"""Two CPU processes (gloo) train one model with DDP or FSDP: they stay in sync, a resumed run continues both,
and FSDP's sharded run computes DDP's update."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_train_lm import (
    tiny_config,
    tokenizer,  # noqa: F401  (a fixture)
    toy_corpus,
)
from torch.distributed.tensor import DTensor

from delaykit.engine import load_engine
from delaykit.train.distributed import finish_distributed
from delaykit.train.lm import LMTrainer, export_lm

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Job:
    """One training run of the two processes: to ``steps`` in ``run_dir``, its weights saved to ``out``.RANK."""

    run_dir: str
    steps: int
    out: str
    resume: bool = False
    parallel: str = "ddp"
    mode: str = "asr"


def worker(rank: int, port: int, tokenizer_path: str, jobs: list[Job]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        for job in jobs:  # one process group for all of them (LMTrainer joins it once)
            trainer = LMTrainer(tiny_config(job.mode, max_steps=job.steps, device="cpu", parallel=job.parallel),
                                toy_corpus(), tokenizer_path, job.run_dir, resume=job.resume)
            trainer.fit()
            # each rank's own copy of the weights: under FSDP, only its shard of every parameter
            local = {k: (v.to_local() if isinstance(v, DTensor) else v).clone() for k, v in trainer.lm.state_dict().items()}
            torch.save({"local": local, "whole": trainer.weights_state()["model"]}, f"{job.out}.{rank}")
    except BaseException:
        dist.destroy_process_group()  # spawn stops the other rank
        raise
    finish_distributed()  # no rank exits while the other still saves


def run_jobs(tokenizer_path: str, jobs: list[Job]) -> list[list[dict]]:
    """Each job's saved weights, per rank."""
    mp.spawn(worker, args=(free_port(), tokenizer_path, jobs), nprocs=WORLD)
    return [[torch.load(f"{job.out}.{rank}", weights_only=True) for rank in range(WORLD)] for job in jobs]


def run(tmp_path, tokenizer_path: str, steps: int, resume: bool = False) -> list[dict]:
    job = Job(str(tmp_path / "run"), steps, str(tmp_path / "weights"), resume)
    return [saved["local"] for saved in run_jobs(tokenizer_path, [job])[0]]


@pytest.mark.slow
def test_two_processes_stay_in_sync_and_resume(tokenizer, tmp_path):  # noqa: F811
    first, second = run(tmp_path, tokenizer, steps=4)
    initial = LMTrainer(tiny_config("asr", max_steps=0), toy_corpus(), tokenizer, tmp_path / "single").lm
    for key, value in first.items():
        assert torch.equal(value, second[key]), key  # every rank holds the same weights
    assert any(not torch.equal(v, initial.state_dict()[k]) for k, v in first.items())  # and they trained
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and len(state["ranks"]) == WORLD
    assert state["ranks"][0]["batcher"] != state["ranks"][1]["batcher"]  # each rank has its own data stream
    assert state["seen"] == 4 * WORLD * 4 * 48  # steps x ranks x batch x window
    resumed = run(tmp_path, tokenizer, steps=6, resume=True)
    for key, value in resumed[0].items():
        assert torch.equal(value, resumed[1][key]), key
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["asr", "tts"])
def test_fsdp_shards_the_model_and_computes_ddps_update(mode, tokenizer, tmp_path):  # noqa: F811
    """Three FSDP steps, a resume to five, against five DDP steps: the same weights (so the sharded forward,
    gradient averaging, optimizer and its saved moments all match), while each rank held half of them."""
    fsdp_dir, ddp_dir = str(tmp_path / "fsdp"), str(tmp_path / "ddp")
    first, resumed, ddp = run_jobs(tokenizer, [
        Job(fsdp_dir, 3, str(tmp_path / "fsdp-3"), parallel="fsdp", mode=mode),
        Job(fsdp_dir, 5, str(tmp_path / "fsdp-5"), resume=True, parallel="fsdp", mode=mode),
        Job(ddp_dir, 5, str(tmp_path / "ddp-5"), mode=mode),
    ])
    whole_size = sum(v.numel() for v in ddp[0]["local"].values())
    shard_sizes = [sum(v.numel() for v in saved["local"].values()) for saved in resumed]
    assert all(size < 0.6 * whole_size for size in shard_sizes), (shard_sizes, whole_size)
    assert sum(shard_sizes) >= whole_size  # the shards cover the model (FSDP pads uneven ones)
    # FSDP's reduce-scatter and DDP's all-reduce sum gradients in another order, and Adam divides near-zero
    # gradients by their own small moments, so rounding can move a weight by a few 1e-5 (3.6e-5 on one machine
    # here, 2026-12-07); an Adam step at this lr moves a weight by up to 3e-3, 30 times the tolerance, so a lost
    # or doubled step or wrongly restored moments still fail.
    atol = 1e-4
    for key, value in ddp[0]["whole"].items():
        assert resumed[0]["whole"][key].shape == value.shape, key
        torch.testing.assert_close(resumed[0]["whole"][key], value, rtol=1e-4, atol=atol, msg=key)
        torch.testing.assert_close(resumed[1]["whole"][key], value, rtol=1e-4, atol=atol, msg=key)
    assert any(not torch.equal(first[0]["whole"][k], v) for k, v in ddp[0]["whole"].items())  # steps 4-5 ran
    state = torch.load(tmp_path / "fsdp" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 5 and state["sharded"]
    assert state["model"].keys() == ddp[0]["whole"].keys()  # whole weights, exported like any run's
    export_lm(fsdp_dir, tmp_path / "export")
    exported = load_engine(str(tmp_path / "export"), device="cpu").lm
    torch.testing.assert_close(exported.state_dict()["text_linear.weight"], ddp[0]["whole"]["text_linear.weight"],
                               rtol=1e-4, atol=1e-5)
