"""A time-limited trial of a plugin in a child process, before its first import into a projbench command.

A plugin's import and hooks run inside every command (``list`` included), so a plugin that ends the process
(``os._exit``, a crashing extension) or never returns would take every command down with it, where an exception
is caught and reported (``benchmark.registry``). The first time projbench meets an entry point it therefore
imports it and calls its hooks in a child process (``python -m benchmark.plugin_probe MODULE[:ATTR]``) limited to
``$PROJBENCH_PLUGIN_TIMEOUT`` seconds (default 60); only a plugin whose trial came back is imported in-process.
The verdict is kept in ``<cache>/plugins/<key>.json``, keyed by the distribution's name and version, the entry
point, the entry module's file (size and modification time: an edited editable install is tried again), this
projbench version and this environment, so the cost is paid once per installed version. The verdict also keeps
what a cleanly behaving plugin registered, as ``list`` shows it, so that ``list`` never imports a plugin it has
tried (a plugin that imports torch at import time would otherwise cost every ``list`` seconds).

This guards against accidents, not against malice: a plugin is code you installed, and it runs with your rights
in the trial as in every command (docs/plugins.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

TIMEOUT_ENV = "PROJBENCH_PLUGIN_TIMEOUT"
PROBE_ENV = "PROJBENCH_PLUGIN_PROBE"  # set in the child: a plugin may look at it, the child loads no plugins
IMPORTED, DONE = "projbench-probe: imported", "projbench-probe: hooks returned"
LISTING = "projbench-probe: listing "  # + JSON of what the hooks registered
RECORD_PREFIX = "probe-"  # <cache>/plugins/probe-<sha256>.json


def timeout_s() -> float:
    try:
        value = float(os.environ.get(TIMEOUT_ENV, "60"))
    except ValueError:
        value = 60.0
    return value if value > 0 else 60.0


def module_file(module: str) -> Path | None:
    """The file of ``module`` (dotted), found without importing anything (None where a custom finder owns it)."""
    from importlib.machinery import PathFinder

    spec, path = None, None
    for i, _part in enumerate(module.split(".")):
        spec = PathFinder.find_spec(".".join(module.split(".")[:i + 1]), path)
        if spec is None:
            return None
        path = spec.submodule_search_locations
    return Path(spec.origin) if spec is not None and spec.origin and spec.has_location else None


def probe_key(dist: str, entry: str, value: str) -> str:
    """The cache key of one entry point as installed here."""
    from . import __version__

    file = module_file(value.partition(":")[0].strip())
    try:
        stamp = [str(file), file.stat().st_mtime_ns, file.stat().st_size] if file else None
    except OSError:
        stamp = None
    blob = json.dumps([dist, entry, value, stamp, __version__, sys.prefix, sys.version_info[:2]])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _record_path(key: str) -> Path:
    from .storage.paths import cache_root

    return cache_root() / "plugins" / f"{RECORD_PREFIX}{key}.json"


def _read_record(key: str) -> dict | None:
    path = _record_path(key)
    try:
        if path.is_symlink():
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(record, dict) and isinstance(record.get("problem"), (str, type(None)))
          and isinstance(record.get("listing"), (dict, type(None))))
    return record if ok else None


def _write_record(key: str, record: dict) -> None:
    """Atomically, never through a link; a cache that cannot be written only means the trial runs again."""
    from .storage.confined import OutsideRootError, confined
    from .storage.paths import cache_root
    from .storage.results import DiskFullError, atomic_write_text

    path = _record_path(key)
    try:
        confined(path.parent, cache_root(), "plugin trial records")
        atomic_write_text(path, json.dumps(record))
    except (OSError, OutsideRootError, DiskFullError):
        pass


def _run_child(value: str, limit: float) -> tuple[int | None, str, str]:
    """(exit status or None on timeout, stdout, stderr) of the trial; the child's whole process group is ended."""
    env = {**os.environ, PROBE_ENV: "1", "PROJBENCH_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # what this process sees, in-process edits too
    child = subprocess.Popen([sys.executable, "-m", "benchmark.plugin_probe", value], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                             env=env, start_new_session=True)
    try:
        out, err = child.communicate(timeout=limit)
        return child.returncode, out, err
    except subprocess.TimeoutExpired:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except OSError:
            child.kill()
        out, err = child.communicate()
        return None, out, err


def trial(dist: str, entry: str, value: str) -> dict:
    """The verdict on the entry point ``entry = value`` of ``dist``: ``problem`` (why it must not be imported here,
    or None) and ``listing`` (what its hooks registered, as ``list`` shows it; None unless every hook ran cleanly)."""
    key = probe_key(dist, entry, value)
    record = _read_record(key)
    if record is not None:
        return record
    limit = timeout_s()
    code, out, err = _run_child(value, limit)
    stage = "its hooks" if IMPORTED in out else "its import"
    last = " ".join((err.strip().splitlines() or [""])[-1].split())[:160]
    tail = f" (last line on stderr: {last})" if last else ""
    if code is None:
        problem = f"{stage} did not finish within {limit:g} s (${TIMEOUT_ENV}){tail}"
    elif DONE not in out:
        problem = f"{stage} ended the process (exit status {code}){tail}"
    else:
        problem = None
    listing = None
    for line in out.splitlines():
        if line.startswith(LISTING) and problem is None:
            try:
                listing = json.loads(line[len(LISTING):])
            except ValueError:
                listing = None
    record = {"distribution": dist, "entry_point": f"{entry} = {value}", "problem": problem,
              "listing": listing if isinstance(listing, dict) else None}
    _write_record(key, record)
    return record


def describe(hook: str, item) -> dict:
    """The fields ``list`` shows of a registered item (``benchmark.listing``), as plain data."""
    names = {"register_adapters": ("projector_family", "projector_modules", "checkpoint", "description", "tiny"),
             "register_tasks": ("version", "domain", "citation", "license"),
             "register_analyses": ("description", "citation")}[hook]
    fields = {n: getattr(item, n) for n in names}
    if hook == "register_tasks":
        fields.update(classes=[str(c) for c in item.classes], source=item.source.describe())
    if hook == "register_analyses":
        fields["requires"] = [str(r) for r in item.requires]
    if not isinstance(item.name, str) or not all(isinstance(v, (str, bool, list)) for v in fields.values()):
        raise TypeError(f"{item!r} has fields list cannot show")
    return {"name": item.name, **fields}


def _hooks_listing(pm, plugin) -> dict | None:
    """Call each hook of ``plugin``; what they registered (by hook), or None if any raised or is unknown."""
    listing = {hook: [] for hook in ("register_adapters", "register_tasks", "register_analyses")}
    clean = True
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.spec is None:
            clean = False
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            items = []
            try:
                impl.function(register=items.append)
                listing[caller.name] += [describe(caller.name, item) for item in items]
            except BaseException:  # noqa: BLE001  (reported in-process, where the plugin is then imported)
                clean = False
    return listing if clean else None


def _child(value: str) -> int:
    """Import the plugin and call its hooks as the registry would; exceptions are the registry's to report."""
    import importlib

    import pluggy

    from . import hookspecs

    module, _, attr = value.partition(":")
    try:
        plugin = importlib.import_module(module.strip())
        for name in filter(None, attr.strip().split(".")):
            plugin = getattr(plugin, name)
    except BaseException:  # noqa: BLE001  (caught in-process too; only exits and hangs matter here)
        print(DONE, flush=True)
        return 0
    print(IMPORTED, flush=True)
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    try:
        pm.register(plugin)
        listing = _hooks_listing(pm, plugin)
    except BaseException:  # noqa: BLE001
        listing = None
    if listing is not None:
        print(LISTING + json.dumps(listing), flush=True)
    print(DONE, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
