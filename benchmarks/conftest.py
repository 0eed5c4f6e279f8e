"""Benchmarks reuse the test helpers (real images, in-memory feature stores)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
