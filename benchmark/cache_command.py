"""``python -m benchmark cache list|clean``: what the cache holds, and removing what no registered model uses.

Every edit of a tiny twin's declaration or builder changes its build hash (``adapters.tiny.build_hash``) and so
builds a new folder ``<cache>/tiny/<name>-<hash>``; the old one stays. ``clean`` removes the twin folders whose
``<name>-<hash>`` is not the current key of any registered twin (and build folders left by an interrupted build
more than an hour ago); ``clean --all`` removes every entry projbench made: twins, vision-feature folders and
plugin trial verdicts.

Only entries with projbench's exact names are touched: a twin folder ``<name>-<12 hex>`` holding a
``projbench-twin.json`` that names the same twin and hash, a build folder ``.<name>-<8 characters>``, a feature
folder ``<24 hex>`` holding ``key.json`` and its lock file ``<24 hex>.lock`` (kept while a process holds it), a verdict file ``probe-<32 hex>.json``. Anything else, and every symbolic
link, is left alone and reported; nothing is followed out of the cache (``benchmark.storage.confined``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

TWIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)-(?P<hash>[0-9a-f]{12})")
BUILD = re.compile(r"\.(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)-[a-z0-9_]{8}")  # tempfile.mkdtemp(prefix=".<name>-")
FEATURES = re.compile(r"[0-9a-f]{24}")
VERDICT = re.compile(r"probe-[0-9a-f]{32}\.json")
BUILD_AGE_S = 3600  # a build folder younger than this may belong to a build in progress
TWIN_MANIFEST = "projbench-twin.json"  # as adapters.tiny writes it


@dataclass(frozen=True)
class Entry:
    """One thing in the cache: what it is, whether ``clean`` (or ``clean --all``) removes it, its size."""

    path: Path
    kind: str        # "tiny twin", "twin build", "features", "feature lock", "plugin verdict", "not projbench's"
    status: str      # "current", "stale", "in progress", "kept: ...", "left alone: ..."
    size: int

    @property
    def ours(self) -> bool:
        return not self.status.startswith("left alone")


def tree_size(path: Path) -> int:
    """Bytes in ``path`` (a file or a folder), links counted as links and never followed."""
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    total = path.lstat().st_size
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total


def current_twins(reg) -> tuple[set[str], set[str]]:
    """(``<name>-<hash>`` of every registered twin, names of registered twins whose hash could not be computed).

    A builder declared as a ``"module:function"`` reference to a plain function is keyed from its module's file,
    without importing it (adapters.tiny.build_hash): listing the cache imports neither torch nor transformers.
    """
    from .adapters.spec import TinyFactory
    from .adapters.tiny import twin_dir

    keys, unknown = set(), set()
    for spec in reg.adapters:
        factory = spec.factory
        if not isinstance(factory, TinyFactory):
            continue
        try:
            keys.add(twin_dir(Path("."), factory.name, factory.build).name)
        except Exception:  # noqa: BLE001  (a plugin's builder that does not import: keep its folders)
            unknown.add(factory.name)
    return keys, unknown


def _manifest_matches(folder: Path, name: str, digest: str) -> bool:
    manifest = folder / TWIN_MANIFEST
    try:
        if manifest.is_symlink():
            return False
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("name") == name and data.get("build_hash") == digest


def _twin_entry(path: Path, keys: set[str], unknown: set[str]) -> Entry:
    twin, build = TWIN.fullmatch(path.name), BUILD.fullmatch(path.name)
    if path.is_dir() and twin and _manifest_matches(path, twin["name"], twin["hash"]):
        status = ("current" if path.name in keys else
                  f"kept: the builder of {twin['name']} does not import" if twin["name"] in unknown else "stale")
        return Entry(path, "tiny twin", status, tree_size(path))
    if path.is_dir() and build:
        young = time.time() - path.lstat().st_mtime < BUILD_AGE_S
        return Entry(path, "twin build", "in progress" if young else "stale", tree_size(path))
    return Entry(path, "not projbench's", "left alone: not a name projbench gives", tree_size(path))


def _lock_held(path: Path) -> bool:
    """Whether a process holds the file lock ``path`` now (a lock file stays after its holder lets it go)."""
    from filelock import FileLock, Timeout

    try:
        with FileLock(str(path), timeout=0):
            return False
    except Timeout:
        return True


def _other_entry(path: Path, sub: str) -> Entry:
    if sub == "features" and path.is_dir() and FEATURES.fullmatch(path.name) and (path / "key.json").is_file():
        return Entry(path, "features", "current", tree_size(path))
    if sub == "features" and path.is_file() and path.suffix == ".lock" and FEATURES.fullmatch(path.stem):
        status = "in progress" if _lock_held(path) else "current"  # held: features being written now
        return Entry(path, "feature lock", status, tree_size(path))
    if sub == "plugins" and path.is_file() and VERDICT.fullmatch(path.name):
        return Entry(path, "plugin verdict", "current", tree_size(path))
    return Entry(path, "not projbench's", "left alone: not a name projbench gives", tree_size(path))


def scan(root: Path, reg) -> list[Entry]:
    """Every entry below ``root``'s tiny/, features/ and plugins/ folders, classified (nothing is changed)."""
    keys, unknown = current_twins(reg)
    entries = []
    for sub in ("tiny", "features", "plugins"):
        folder = root / sub
        if folder.is_symlink():
            entries.append(Entry(folder, "not projbench's", "left alone: a symbolic link", folder.lstat().st_size))
            continue
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_symlink():
                entries.append(Entry(path, "not projbench's", "left alone: a symbolic link", path.lstat().st_size))
            elif sub == "tiny":
                entries.append(_twin_entry(path, keys, unknown))
            else:
                entries.append(_other_entry(path, sub))
    return entries


def removable(entries: list[Entry], everything: bool) -> list[Entry]:
    if everything:
        return [e for e in entries if e.ours and e.status != "in progress"]
    return [e for e in entries if e.status == "stale"]


def remove(entry: Entry, root: Path) -> None:
    """Delete one entry of projbench's, never through a link (checked again just before)."""
    from .storage.confined import confined

    path = confined(entry.path, root, f"cache entry ({entry.kind})")
    if path.is_symlink():
        return
    if path.is_dir():
        shutil.rmtree(path)  # removes links inside as links; refuses a linked top
    else:
        path.unlink()


def human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def cache_command(action: str, *, cache_dir: str | None = None, everything: bool = False,
                  dry_run: bool = False) -> int:
    """``cache list`` / ``cache clean [--all] [--dry-run]``; prints what it found or removed, returns the exit code."""
    from .listing import render
    from .registry import plugins
    from .storage.paths import cache_root

    root = Path(cache_dir).expanduser() if cache_dir else cache_root()
    if not root.is_dir():
        print(f"{root}: no cache there yet (nothing to {action}).")
        return 0
    entries = scan(root, plugins())
    if action == "list":
        rows = [[str(e.path.relative_to(root)), e.kind, e.status, human(e.size)] for e in entries]
        print(render(rows, ["entry", "kind", "status", "size"], [True, False, True, False]) if rows else
              f"{root}: empty.")
        print(f"\n{root}: {human(sum(e.size for e in entries if e.ours))} in {sum(e.ours for e in entries)} "
              "projbench entries; `cache clean` removes the stale ones, `cache clean --all` every one.")
        return 0
    gone = removable(entries, everything)
    verb = "would remove" if dry_run else "removed"
    for entry in gone:
        if not dry_run:
            remove(entry, root)
        print(f"{verb} {entry.path.relative_to(root)} ({entry.kind}, {entry.status}, {human(entry.size)})")
    for entry in entries:
        if not entry.ours:
            print(f"left alone: {entry.path.relative_to(root)} ({entry.status.removeprefix('left alone: ')})")
    kept = sum(e.ours for e in entries) - len(gone)
    print(f"{root}: {verb} {len(gone)} entr{'y' if len(gone) == 1 else 'ies'}, "
          f"{'would free' if dry_run else 'freed'} {human(sum(e.size for e in gone))} ({sum(e.size for e in gone)} "
          f"bytes); kept {kept} (current or in progress).")
    return 0
