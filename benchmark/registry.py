"""The plugin manager and the registries of adapters, tasks and analyses that its hooks fill.

Plugins are found through the ``projbench`` entry-point group (set ``PROJBENCH_DISABLE_PLUGIN_AUTOLOAD=1``
to skip them all, ``PROJBENCH_DISABLE_PLUGINS=a,b`` to skip single ones). Built-ins are registered through the
very same hooks. Each plugin is loaded and called on its own, so one broken plugin is reported and skipped
instead of breaking every command; a plugin met for the first time is tried in a time-limited child process
first (``benchmark.plugin_probe``), so one whose import ends the process or hangs is skipped too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache

import pluggy

from . import hookspecs
from .errors import BenchmarkError, UnknownNameError
from .names import folder_name_problem
from .plugin_probe import trial

AUTOLOAD_ENV = "PROJBENCH_DISABLE_PLUGIN_AUTOLOAD"
DISABLE_ENV = "PROJBENCH_DISABLE_PLUGINS"  # comma-separated entry-point or distribution names
HOOKS = ("register_adapters", "register_tasks", "register_analyses")


class Registry:
    """Name -> object, with the plugin each came from; duplicate names are rejected."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict = {}

    def add(self, item, origin: str):
        if not getattr(item, "name", None):
            raise BenchmarkError(f"Plugin {origin!r} registered a {self.kind} without a name: {item!r}")
        problem = folder_name_problem(item.name)  # the name becomes a results folder
        if problem:
            raise BenchmarkError(f"Plugin {origin!r} registered the {self.kind} {item.name!r}, which cannot name a "
                                 f"results folder: {problem}. Rename it in the plugin.")
        if item.name in self._items:
            raise BenchmarkError(
                f"{self.kind.capitalize()} {item.name!r} is registered twice: by {self._items[item.name].origin!r} "
                f"and by {origin!r}. Rename one of them."
            )
        self._items[item.name] = replace(item, origin=origin)

    def get(self, name: str):
        if name not in self._items:
            raise UnknownNameError(self.kind, name, list(self._items))
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __iter__(self):
        return iter(self._items[n] for n in self.names())

    def __contains__(self, name):
        return name in self._items


@dataclass(frozen=True)
class PluginProblem:
    """One plugin that was skipped: which distribution and entry point, and why."""

    distribution: str   # "name version", or "" where unknown
    entry_point: str    # "name = module"
    error: str

    def __str__(self):
        where = f"{self.distribution} (entry point {self.entry_point})" if self.distribution else self.entry_point
        return f"plugin {where} skipped: {self.error}"


@dataclass(frozen=True, eq=False)
class Listed:
    """A plugin's registry entry as its trial recorded it (``benchmark.plugin_probe.describe``): the fields ``list``
    shows, read as attributes, and nothing to run."""

    name: str
    fields: dict = field(default_factory=dict)
    origin: str = ""

    def __getattr__(self, key):
        fields = self.__dict__.get("fields") or {}
        if key in fields:
            return fields[key]
        raise AttributeError(key)


def _error_text(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:400]  # one line, whatever the message


class Plugins:
    """The built-ins, then every entry point of the ``projbench`` group, each loaded and called on its own.

    A plugin that fails to import, has a hook with a bad signature or an unknown hook, raises in a hook, or
    registers a name already taken is skipped and recorded in ``problems`` (listed by ``list plugins`` and
    printed on stderr); everything else keeps working. A built-in name is never replaced. Single plugins are
    turned off with ``PROJBENCH_DISABLE_PLUGINS=name,name`` (entry-point or distribution names).
    """

    def __init__(self, autoload: bool | None = None, listing: bool = False):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        from . import builtins

        self.pm.register(builtins, name="builtin")
        self.problems: list[PluginProblem] = []
        self.disabled: list[tuple[str, str]] = []   # (distribution, entry point)
        self._dist: dict[int, tuple[str, str]] = {}  # id(plugin) -> (distribution, entry point)
        self.listing = listing  # entries for `list` only: tried plugins are not imported (their trial recorded them)
        self._listed: list[tuple[str, str, str, dict]] = []  # (distribution, entry point, origin, recorded entries)
        if autoload is None:
            autoload = os.environ.get(AUTOLOAD_ENV, "").lower() not in ("1", "true", "yes")
        if autoload:
            self._load_entry_points()
        self.adapters = Registry("model")
        self.tasks = Registry("task")
        self.analyses = Registry("analysis")
        self._collect()

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        off = {x.strip().lower() for x in os.environ.get(DISABLE_ENV, "").split(",") if x.strip()}
        seen = set()
        for ep in sorted(entry_points(group=hookspecs.PROJECT_NAME), key=lambda e: (e.name, e.value)):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else ""
            label = f"{ep.name} = {ep.value}"
            if (ep.name, ep.value) in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            dist_name = ep.dist.name.lower() if ep.dist is not None else ""
            if ep.name.lower() in off or dist_name in off:
                self.disabled.append((dist, label))
                continue
            verdict = trial(dist, ep.name, ep.value)  # exits and hangs, once per installed version
            problem = verdict["problem"]
            if problem:
                fix = (f"fix the plugin, or uninstall it (pip uninstall {ep.dist.name})" if ep.dist is not None
                       else "fix or remove the plugin") + f", or turn it off with {DISABLE_ENV}={ep.name}"
                self.problems.append(PluginProblem(dist, label, f"{problem}; {fix}"))
                continue
            if self.listing and verdict.get("listing") is not None:  # `list`: what the trial recorded, no import
                self._listed.append((dist, label, f"{dist} ({ep.name})" if dist else ep.name, verdict["listing"]))
                continue
            try:
                plugin = ep.load()
            except BaseException as exc:  # noqa: BLE001  (SystemExit too: an import must not end the program)
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self.problems.append(PluginProblem(dist, label, f"failed to import: {_error_text(exc)}"))
                continue
            if self.pm.is_registered(plugin):
                continue
            try:
                self.pm.register(plugin, name=ep.name if self.pm.get_plugin(ep.name) is None else label)
            except Exception as exc:  # pluggy's PluginValidationError: a hook's arguments are not the spec's
                self.problems.append(PluginProblem(dist, label, f"bad hook: {_error_text(exc)}"))
                continue
            unknown = [c.name for c in (self.pm.get_hookcallers(plugin) or []) if c.spec is None]
            if unknown:
                self.pm.unregister(plugin)
                self.problems.append(PluginProblem(
                    dist, label, f"unknown hook(s) {unknown}; projbench hooks are {sorted(HOOKS)}"))
                continue
            self._dist[id(plugin)] = (dist, label)

    def plugin_origin(self, plugin) -> str:
        name = self.pm.get_name(plugin) or repr(plugin)
        if id(plugin) in self._dist:
            dist, _ = self._dist[id(plugin)]
            return f"{dist} ({name})" if dist else name
        return name

    def _collect(self):
        builtin = self.pm.get_plugin("builtin")
        for kind, registry in (("register_adapters", self.adapters), ("register_tasks", self.tasks),
                               ("register_analyses", self.analyses)):
            impls = getattr(self.pm.hook, kind).get_hookimpls()
            impls.sort(key=lambda i: i.plugin is not builtin)  # built-ins first: a plugin never replaces one
            for impl in impls:
                origin = self.plugin_origin(impl.plugin)
                items = []
                try:
                    impl.function(register=items.append)
                except Exception as exc:
                    if impl.plugin is builtin:
                        raise
                    self._problem(impl.plugin, f"{kind} raised {_error_text(exc)}")
                    continue
                for item in items:
                    try:
                        registry.add(item, origin)
                    except (BenchmarkError, TypeError) as exc:  # duplicate, nameless, or not a spec
                        if impl.plugin is builtin:
                            raise
                        self._problem(impl.plugin, f"{kind}: {exc}")
            self._collect_listed(kind, registry)

    def _collect_listed(self, kind: str, registry: Registry) -> None:
        """The entries tried plugins registered in their trial, as :class:`Listed` (``listing`` mode)."""
        for dist, label, origin, recorded in self._listed:
            for fields in recorded.get(kind) or []:
                try:
                    registry.add(Listed(name=fields.get("name"), fields=fields), origin)
                except (BenchmarkError, TypeError, AttributeError) as exc:
                    self.problems.append(PluginProblem(dist, label, f"{kind}: {exc}"))

    def _problem(self, plugin, error: str) -> None:
        dist, label = self._dist.get(id(plugin), ("", self.pm.get_name(plugin) or repr(plugin)))
        self.problems.append(PluginProblem(dist, label, error))

    def list_plugins(self) -> list[tuple[str, str, str]]:
        """(plugin, module, status) for every plugin: loaded ones, then skipped and disabled ones."""
        out = []
        for plugin in self.pm.get_plugins():
            out.append((self.plugin_origin(plugin), getattr(plugin, "__name__", repr(plugin)), "ok"))
        out.sort()
        out += [(p.distribution or "?", p.entry_point, f"skipped: {p.error}") for p in self.problems]
        out += [(dist or "?", label, f"disabled by {DISABLE_ENV}") for dist, label in self.disabled]
        return out


@lru_cache(maxsize=2)
def plugins(listing: bool = False) -> Plugins:
    """The process's plugins; problems with third-party plugins are reported on stderr once. ``listing``: for
    ``list`` only, with tried plugins' entries as their trial recorded them (:class:`Listed`), nothing imported."""
    import sys

    reg = Plugins(listing=listing)
    for problem in reg.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return reg
