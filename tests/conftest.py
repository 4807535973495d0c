"""Test set-up: the tests folder is importable (shared reference-model helpers), torch uses one thread, and the
process ends without interpreter finalisation once pytest is done.

The tests run tiny models, where a second thread only adds synchronisation, and a busy machine makes
multi-threaded runs of small ops very slow; one thread keeps them quick and their timing steady.

A full run (`bash .ci/run`, 2026-12-06) passed every test and then aborted while the interpreter finalised
("terminate called without an active exception": a native library's thread object destroyed while still
joinable), turning a green run into exit status 134; a run of the same tests with `-p no:warnings` did not.
Which of the native libraries the tests load does it is not yet known, so once pytest has printed its summary
the process exits with pytest's status directly (`os._exit`), never running that finalisation. Other projects
meet the same abort after green runs and end their tests the same way (NVIDIA-NeMo/Megatron-Bridge PR #2818
blames the order of PyTorch's C++ static destructors at interpreter teardown; not confirmed here).
"""

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    status = config.stash.get(_EXIT_STATUS, None)
    if status is not None and os.environ.get("DELAYKIT_TEST_FINALIZE") != "1":  # 1: exit normally, to debug it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


_EXIT_STATUS = pytest.StashKey[int]()
