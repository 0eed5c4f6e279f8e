"""The mark of a checkpoint folder whose weights are random: ``plan --measure`` writes one into every *skeleton*
checkpoint it builds (the published architecture, no trained weights), so that anything run from that folder
(``run --model-path``, the GPU check) records ``random_init`` and the leaderboard refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

RANDOM_INIT_MARKER = "projbench-random-init.json"


def mark_random_init(folder: Path, why: str) -> None:
    """Write the mark into ``folder``."""
    (Path(folder) / RANDOM_INIT_MARKER).write_text(json.dumps({"random_init": True, "why": why}, indent=2) + "\n")


def is_random_init(folder) -> bool:
    """Whether ``folder`` (a checkpoint directory, or anything else) carries the mark."""
    try:
        return (Path(str(folder)).expanduser() / RANDOM_INIT_MARKER).is_file()
    except OSError:
        return False
