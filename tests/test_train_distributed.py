"""Two CPU processes (gloo) train one model with DDP: they stay in sync, and a resumed run continues both."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_train_lm import (
    tiny_config,
    tokenizer,  # noqa: F401  (a fixture)
    toy_corpus,
)

from delaykit.train.lm import LMTrainer

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, tokenizer_path: str, run_dir: str, steps: int, resume: bool, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        trainer = LMTrainer(tiny_config("asr", max_steps=steps, device="cpu"), toy_corpus(), tokenizer_path,
                            run_dir, resume=resume)
        trainer.fit()
        torch.save({k: v.clone() for k, v in trainer.lm.state_dict().items()}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def run(tmp_path, tokenizer_path: str, steps: int, resume: bool = False) -> list[dict]:
    out = str(tmp_path / "weights")
    mp.spawn(worker, args=(free_port(), tokenizer_path, str(tmp_path / "run"), steps, resume, out), nprocs=WORLD)
    return [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(WORLD)]


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
