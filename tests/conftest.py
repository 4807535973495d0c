"""Test set-up: the tests folder is importable (shared reference-model helpers), and torch uses one thread.

The tests run tiny models, where a second thread only adds synchronisation, and a busy machine makes
multi-threaded runs of small ops very slow; one thread keeps them quick and their timing steady.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)
