"""Test set-up: make the tests folder importable for the shared reference-model helpers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
