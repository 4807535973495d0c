"""What every delaykit training run shares: config files with overrides, the LR schedule, the step loop with
its metrics log and progress line, and atomic, exactly resumable checkpoints.

A trainer subclasses :class:`TrainingRun` and provides ``train_step`` (one optimizer step, returning scalar
metrics), ``model_state``/``load_model_state`` (what a checkpoint holds beyond the loop's own counters) and
``progress`` (the one-line summary printed every ``log_every`` steps). A run directory holds ``config.json``,
``checkpoint.pt`` (written every ``checkpoint_minutes`` and at the end) and ``metrics.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
import typing as tp
from pathlib import Path

import torch

from .distributed import DistributedContext

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"

C = tp.TypeVar("C")


def merge(base: dict, update: dict) -> None:
    """Update ``base`` in place, descending into nested dicts."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value


def load_config(defaults: dict, from_dict: tp.Callable[[dict], C], path: str | os.PathLike | None = None,
                overrides: tp.Iterable[str] = ()) -> C:
    """``defaults`` updated from a JSON/TOML file, then from ``KEY=VALUE`` overrides (dotted keys nest;
    values parse as JSON when they can, e.g. ``batch_size=16``, ``model.num_layers=4``)."""
    data = json.loads(json.dumps(defaults))
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
        if str(path).endswith(".toml"):
            import tomllib

            merge(data, tomllib.loads(text))
        else:
            merge(data, json.loads(text))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return from_dict(data)


def cosine_lr(step: int, lr: float, warmup_steps: int, decay_steps: int, min_lr_ratio: float,
              progress: float | None = None) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio`` at ``decay_steps``, then flat. ``progress``
    (0 to 1) replaces ``step / decay_steps`` where the decay follows something else, such as the clock."""
    warm = min(1.0, (step + 1) / max(warmup_steps, 1))
    progress = min(1.0, step / max(decay_steps, 1) if progress is None else progress)
    return lr * warm * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on matrices and kernels only."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class TrainingRun:
    """The step loop, metrics and checkpoints of one run; subclasses own the model and data."""

    # The loop reads these from the subclass's config: max_steps, minutes, checkpoint_minutes, log_every.
    config: tp.Any
    run_dir: Path
    log: tp.TextIO
    step: int = 0
    seen: float = 0.0  # data seen over the whole run, in the unit of ``seen_unit``
    seen_unit: str = "s"
    train_seconds: float = 0.0  # wall-clock training time over the whole run
    dist: DistributedContext = DistributedContext()  # this process's rank (see delaykit.train.distributed)

    def setup_run(self, run_dir: str | os.PathLike, log: tp.TextIO | None, config_dict: dict) -> None:
        self.run_dir = Path(run_dir)
        self.log = log if log is not None else sys.stderr
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / CONFIG_NAME).write_text(json.dumps(config_dict, indent=2) + "\n")
        self.dist.barrier()

    # ---- to implement ----

    def train_step(self) -> dict[str, float]:
        raise NotImplementedError

    def model_state(self) -> dict:
        raise NotImplementedError

    def load_model_state(self, state: dict) -> None:
        raise NotImplementedError

    def rank_state(self) -> dict:
        """What differs between the processes of a distributed run (data position); saved for each rank."""
        return {}

    def load_rank_state(self, state: dict) -> None:
        pass

    def progress(self, row: dict) -> str:
        return f"loss {row['loss']:.4f}"

    # ---- loop ----

    def fit(self) -> None:
        """Train until ``max_steps`` or the ``minutes`` budget, logging and checkpointing on the way."""
        cfg = self.config
        if cfg.max_steps is None and cfg.minutes is None:
            raise ValueError("set max_steps or minutes, or training never stops")
        start = time.monotonic()
        deadline = start + cfg.minutes * 60 if cfg.minutes is not None else math.inf
        last_save = start
        window: list[dict[str, float]] = []
        window_start, window_seen = start, self.seen
        metrics_path = self.run_dir / METRICS_NAME if self.dist.is_main else os.devnull
        with open(metrics_path, "a", encoding="utf-8") as metrics, _stop_between_steps(self) as interrupt:
            # Clock decisions are taken by all ranks together (dist.any), so none is left in a collective.
            while (cfg.max_steps is None or self.step < cfg.max_steps) and not self.dist.any(
                    time.monotonic() >= deadline) and not interrupt.requested:
                step_start = time.monotonic()
                window.append(self.train_step())
                self.train_seconds += time.monotonic() - step_start
                if self.step % cfg.log_every == 0:
                    now = time.monotonic()
                    # each key's mean over the steps that report it (validation rows come every so many steps)
                    keys = dict.fromkeys(key for m in window for key in m)
                    row = {key: sum(values) / len(values)
                           for key in keys for values in [[m[key] for m in window if key in m]]}
                    speed = (self.seen - window_seen) / max(now - window_start, 1e-9)
                    row.update(step=self.step, seen=self.seen, train_hours=self.train_seconds / 3600,
                               seen_per_second=speed, time=time.time())
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                    eta = self._eta(now, deadline, (now - window_start) / len(window))
                    if self.dist.is_main:
                        print(f"step {self.step} {self.progress(row)} | {speed:.1f} {self.seen_unit}/s, ETA {eta}",
                              file=self.log, flush=True)
                    window, window_start, window_seen = [], now, self.seen
                if self.dist.any(time.monotonic() - last_save > cfg.checkpoint_minutes * 60):
                    self.save_checkpoint()
                    last_save = time.monotonic()
        self.save_checkpoint()
        if interrupt.requested:
            print(f"interrupted: step {self.step} saved; --resume continues from it", file=self.log, flush=True)
            raise KeyboardInterrupt
        if self.dist.is_main:
            print(f"done: step {self.step}, {self.seen:.0f} {self.seen_unit} seen", file=self.log, flush=True)

    def _eta(self, now: float, deadline: float, step_seconds: float) -> str:
        remaining = deadline - now
        if self.config.max_steps is not None:
            remaining = min(remaining, (self.config.max_steps - self.step) * step_seconds)
        return "?" if math.isinf(remaining) else time.strftime("%H:%M:%S", time.gmtime(max(remaining, 0)))

    # ---- checkpoints ----

    def state(self) -> dict:
        """The whole checkpoint; a collective call in a distributed run (each rank's own state is gathered)."""
        own = {"torch_rng": torch.get_rng_state(), "python_rng": random.getstate(), **self.rank_state()}
        return {"step": self.step, "seen": self.seen, "train_seconds": self.train_seconds,
                "ranks": self.dist.gather(own), **self.model_state()}

    def save_checkpoint(self) -> Path:
        path = self.run_dir / CHECKPOINT_NAME
        state = self.state()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, path)
        self.dist.barrier()
        return path

    def load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no checkpoint to resume from")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "ranks" not in state:  # written before distributed training: one process, its state at the top
            state["ranks"] = [{key: state.pop(key) for key in ("torch_rng", "python_rng", "batcher")
                               if key in state}]
        self.load_model_state(state)
        if len(state["ranks"]) != self.dist.world_size:
            raise ValueError(f"{path} was written by {len(state['ranks'])} processes; resume it with as many")
        own = state["ranks"][self.dist.rank]
        torch.set_rng_state(own["torch_rng"])
        random.setstate(own["python_rng"])
        self.load_rank_state(own)
        self.step = state["step"]
        self.seen = state["seen"]
        self.train_seconds = state["train_seconds"]
        if self.dist.is_main:
            print(f"resumed {path} at step {self.step}", file=self.log, flush=True)


class _Interrupt:
    """Whether Ctrl-C or SIGTERM asked the run to stop (see :func:`_stop_between_steps`)."""

    requested = False


@contextlib.contextmanager
def _stop_between_steps(run: TrainingRun) -> tp.Iterator[_Interrupt]:
    """While ``fit`` runs, Ctrl-C or SIGTERM (what ``kill`` and job schedulers send) only asks it to stop: the
    current step finishes, ``fit`` saves its checkpoint and raises KeyboardInterrupt, so a stopped run resumes
    where it stopped rather than where it last saved. A second Ctrl-C interrupts at once. Single-process runs
    in the main thread only (in a multi-process run a rank cannot stop alone)."""
    interrupt = _Interrupt()
    if run.dist.enabled or threading.current_thread() is not threading.main_thread():
        yield interrupt
        return

    def ask_to_stop(signum: int, frame: tp.Any) -> None:
        if interrupt.requested:
            raise KeyboardInterrupt
        interrupt.requested = True
        print("stopping after this step (again to stop at once)", file=run.log, flush=True)

    previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupt
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
