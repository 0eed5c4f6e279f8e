"""Paths confined to their root: nothing is written or deleted through a symbolic link out of the results tree,
the cache or a site folder.

A run folder, cache entry or site file is always built from its root (``--results-dir``, ``$PROJBENCH_CACHE``,
``--output``); the root itself is the user's choice and may be a link. Below it, a component that is a symbolic
link could point anywhere (another user's folder, the home directory), and cleaning up an unfinished run there
would delete files projbench never wrote. The checks follow the "don't follow links in shared trees" advice of
the CERT C rule FIO15-C and of Python's own ``shutil.rmtree`` (which refuses symlinked roots since 3.3).
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.errors import BenchmarkError


class OutsideRootError(BenchmarkError):
    """A path below a root is a symbolic link, or leads out of that root."""


def confined(path: Path, root: Path, what: str) -> Path:
    """``path`` itself if no component of it below ``root`` is a symbolic link and it stays inside ``root``.

    Raises :class:`OutsideRootError` (naming the link and the fix) otherwise; nothing is created or touched.
    """
    path, root = Path(path), Path(root)
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise OutsideRootError(f"The {what} {path} is not inside {root}; nothing was written or deleted.") from None
    if ".." in rel.parts:
        raise OutsideRootError(f"The {what} {path} leads out of {root} ('..'); nothing was written or deleted.")
    here = root
    for part in rel.parts:
        here = here / part
        if here.is_symlink():
            raise OutsideRootError(
                f"The {what} {path} goes through the symbolic link {here} -> {os.readlink(here)}: projbench never "
                f"writes or deletes through a link out of {root}. Nothing was written or deleted. Replace the "
                "link with a real folder (or remove it), or give another root.")
        if not here.exists():  # what does not exist yet cannot be a link below it
            break
    return path
