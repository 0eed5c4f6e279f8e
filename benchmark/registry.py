"""The plugin manager and the registries of adapters, tasks and analyses that its hooks fill.

Plugins are found through the ``projbench`` entry-point group (set ``PROJBENCH_DISABLE_PLUGIN_AUTOLOAD=1``
to skip them). Built-ins are registered through the very same hooks.
"""

from __future__ import annotations

import os
from dataclasses import replace
from functools import lru_cache

import pluggy

from . import hookspecs
from .errors import BenchmarkError, UnknownNameError

AUTOLOAD_ENV = "PROJBENCH_DISABLE_PLUGIN_AUTOLOAD"


class Registry:
    """Name -> object, with the plugin each came from; duplicate names are rejected."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict = {}

    def add(self, item, origin: str):
        if not getattr(item, "name", None):
            raise BenchmarkError(f"Plugin {origin!r} registered a {self.kind} without a name: {item!r}")
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


class Plugins:
    def __init__(self, autoload: bool | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        from . import builtins

        self.pm.register(builtins, name="builtin")
        if autoload is None:
            autoload = os.environ.get(AUTOLOAD_ENV, "").lower() not in ("1", "true", "yes")
        if autoload:
            self.pm.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
        self.pm.check_pending()
        self.adapters = Registry("model")
        self.tasks = Registry("task")
        self.analyses = Registry("analysis")
        self._collect()

    def plugin_origin(self, plugin) -> str:
        name = self.pm.get_name(plugin) or repr(plugin)
        for p, dist in self.pm.list_plugin_distinfo():
            if p is plugin:
                return f"{dist.project_name} {dist.version} ({name})"
        return name

    def _collect(self):
        for kind, registry in (("register_adapters", self.adapters), ("register_tasks", self.tasks),
                               ("register_analyses", self.analyses)):
            for impl in getattr(self.pm.hook, kind).get_hookimpls():
                origin = self.plugin_origin(impl.plugin)
                impl.function(register=lambda item, _o=origin, _r=registry: _r.add(item, _o))

    def list_plugins(self) -> list[tuple[str, str]]:
        out = []
        for plugin in self.pm.get_plugins():
            out.append((self.plugin_origin(plugin), getattr(plugin, "__name__", repr(plugin))))
        return sorted(out)


@lru_cache(maxsize=1)
def plugins() -> Plugins:
    return Plugins()
