"""Plugins: the registry's rules, and a third-party adapter + task installed through a real entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError, UnknownNameError
from benchmark.registry import Plugins, Registry
from conftest import add_dist

PLUGIN = '''
"""A third-party projbench plugin, as a researcher would ship it in their own package."""
from benchmark import hookimpl
from benchmark.adapters import AdapterSpec
from benchmark.adapters.llava import load_llava_tiny
from benchmark.tasks import TaskSpec
from benchmark.tasks.sources import PackageFolderSource


def load_my_model(source=None, device="cpu", dtype=None, cache_dir=None, local_files_only=False):
    adapter = load_llava_tiny(source, device, dtype, cache_dir)
    adapter.name = "my-mlp-tiny"
    return adapter


@hookimpl
def register_adapters(register):
    register(AdapterSpec(name="my-mlp-tiny", factory=load_my_model, checkpoint="(tiny)", projector_family="mlp",
                         projector_modules="model.multi_modal_projector", tiny=True))


@hookimpl
def register_tasks(register):
    register(TaskSpec(name="fabric", version="0.1", domain="fabric defects", classes=("nominal", "global", "local"),
                      source=PackageFolderSource("conformal-clip-data", "textile_simulated_root", extra="demo")))
'''


@pytest.fixture
def plugin_path(tmp_path):
    """A package and its dist-info (with an entry point in the projbench group) on a fresh sys.path entry."""
    add_dist(tmp_path, "my_projbench_plugin", PLUGIN, "my-projbench-plugin", "1.2", entry="mine")
    return tmp_path


def cli(plugin_path, *args, autoload=True, **extra_env):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]),
           **extra_env}
    env.pop("PROJBENCH_DISABLE_PLUGIN_AUTOLOAD", None)
    if not autoload:
        env["PROJBENCH_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_entry_point_plugin_is_listed_and_runs(plugin_path, tmp_path):
    out = cli(plugin_path, "list", "plugins")
    assert out.returncode == 0, out.stderr
    assert "my-projbench-plugin 1.2" in out.stdout and "builtin" in out.stdout
    models = cli(plugin_path, "list", "models").stdout
    assert "my-mlp-tiny" in models and "my-projbench-plugin" in models
    res = tmp_path / "res"
    run = cli(plugin_path, "run", "--model", "my-mlp-tiny", "--task", "fabric", "--max-per-class", "4",
              "--regimes", "zero-shot,ft-proj", "--probe-max-epochs", "2", "--results-dir", str(res), "--no-progress")
    assert run.returncode == 0, run.stderr
    assert (res / "my-mlp-tiny/fabric@max4/ft-proj/seed0/metrics.json").exists()


def test_autoload_can_be_turned_off(plugin_path):
    out = cli(plugin_path, "list", "models", autoload=False)
    assert out.returncode == 0 and "my-mlp-tiny" not in out.stdout and "llava15-tiny" in out.stdout


def test_duplicate_names_are_rejected():
    reg = Registry("model")
    spec = Plugins(autoload=False).adapters.get("llava15-tiny")
    reg.add(spec, "builtin")
    with pytest.raises(BenchmarkError, match="registered twice"):
        reg.add(replace(spec), "someone-else")


def test_unknown_names_get_suggestions():
    with pytest.raises(UnknownNameError, match="Did you mean 'llava15'"):
        Plugins(autoload=False).adapters.get("lava15")


def test_builtins_come_through_the_hooks():
    """The registries hold exactly what the built-in modules declare, every entry registered by the hook."""
    import importlib

    from benchmark import builtins

    plugins = Plugins(autoload=False)
    declared_adapters = [s.name for m in builtins.ADAPTER_MODULES for s in importlib.import_module(m).ADAPTERS]
    declared_tasks = [t.name for m in builtins.TASK_MODULES for t in importlib.import_module(m).TASKS]
    assert {"llava15", "llava15-13b", "llava15-tiny"} <= set(declared_adapters)
    assert {"derm", "textile", "digits"} <= set(declared_tasks)
    assert plugins.adapters.names() == sorted(declared_adapters)
    assert plugins.tasks.names() == sorted(declared_tasks)
    assert all(spec.origin == "builtin" for spec in plugins.adapters)
    assert all(spec.origin == "builtin" for spec in plugins.tasks)
    assert plugins.pm.get_plugin("builtin") is builtins  # the hooks a third-party plugin uses, not a side door


def install_example(name: str, tmp_path) -> Path:
    """pip-install ``examples/<name>`` into a fresh target directory, as a contributor would; returns it."""
    import shutil

    example = Path(__file__).resolve().parents[2] / "examples" / name
    src, target = tmp_path / "src", tmp_path / "site"
    shutil.copytree(example, src)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    return target


def test_example_adapter_package_installs_and_passes_conformance(tmp_path):
    """The worked example of docs/adding-an-adapter.md, installed with pip as a contributor would."""
    target = install_example("projbench-bakllava", tmp_path)
    models = cli(target, "list", "models")
    assert "bakllava-tiny" in models.stdout and "projbench-bakllava 0.1.0" in models.stdout, models.stderr
    check = cli(target, "check-adapter", "bakllava-tiny", "-k", "shapes or supervised or prompt_ids")
    assert check.returncode == 0, check.stdout[-3000:]
    assert "3 passed" in check.stdout


def test_gemma3_example_package_passes_the_conformance_suite(tmp_path):
    """The second worked example: Gemma 3 from its own transformers classes (not a LLaVA subclass), installed
    with pip and found through its entry point. The checks that compare it with the model itself run here; the
    training, scoring and protocol checks run the same shared code as for every built-in adapter."""
    target = install_example("projbench-gemma3", tmp_path)
    checks = ["saved_directory", "parts", "shapes", "informative", "prompt_ids", "answer_ids", "end_token", "native_forward",
              "full_forward", "gradients", "supervised"]
    check = cli(target, "check-adapter", "gemma3-tiny", "-k", " or ".join(checks))
    assert check.returncode == 0, check.stdout[-3000:]
    assert f"{len(checks)} passed" in check.stdout and "skipped" not in check.stdout, check.stdout[-2000:]


def test_listing_models_with_the_gemma3_example_installed_imports_no_torch(tmp_path):
    """The example registers its adapter and twin builder as references: listing models (and keying the twin for
    `cache list`) imports neither torch nor transformers."""
    import json

    target = install_example("projbench-gemma3", tmp_path)
    code = ("import json, sys\nfrom benchmark.adapters.tiny import build_hash\nfrom benchmark.cli import main\n"
            "rc = main(['list', 'models'])\nkey = build_hash('projbench_gemma3.adapter:build_tiny')\n"
            "print(json.dumps([rc, key, [m for m in ('torch', 'transformers') if m in sys.modules]]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    env.pop("PROJBENCH_DISABLE_PLUGIN_AUTOLOAD", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    rc, key, heavy = json.loads(out.stdout.splitlines()[-1])
    assert rc == 0 and "gemma3-tiny" in out.stdout and "projbench-gemma3 0.1.0" in out.stdout, out.stderr
    assert heavy == [] and len(key) == 12


def test_check_adapter_lists_its_checks(capsys):
    from benchmark.cli import main
    from benchmark.conformance import list_checks

    assert main(["check-adapter", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("test_loads_from_saved_directory")
    assert any(line.startswith("test_cached_path_equals_native_forward ") and "native forward" in line
               for line in lines)
    assert [line.split()[0] for line in lines] == [name for name, _ in list_checks()]


# -- isolation: one broken plugin is reported and skipped, everything else works --------------------------------

BROKEN = {
    "import_fails": "raise ImportError('needs torchvision 9')\n",
    "hook_raises": ("from benchmark import hookimpl\n\n@hookimpl\ndef register_tasks(register):\n"
                    "    raise RuntimeError('cannot reach my server')\n"),
    "bad_signature": ("from benchmark import hookimpl\n\n@hookimpl\ndef register_adapters(register, device):\n"
                      "    pass\n"),
    "unknown_hook": ("from benchmark import hookimpl\n\n@hookimpl\ndef register_adaptors(register):\n"
                     "    pass\n"),
    "shadows_builtin": ("from dataclasses import replace\nfrom benchmark import hookimpl\n"
                        "from benchmark.registry import Plugins\n\n@hookimpl\ndef register_adapters(register):\n"
                        "    spec = Plugins(autoload=False).adapters.get('llava15-tiny')\n"
                        "    register(replace(spec, checkpoint='evil/weights'))\n"),
}


@pytest.fixture
def broken_plugins(plugin_path):
    """The working plugin of the tests above plus one distribution per kind of breakage."""
    for module, source in BROKEN.items():
        add_dist(plugin_path, module, source, f"pb-{module.replace('_', '-')}")
    return plugin_path


def test_broken_plugins_are_reported_and_skipped(broken_plugins, monkeypatch):
    monkeypatch.syspath_prepend(str(broken_plugins))
    monkeypatch.delenv("PROJBENCH_DISABLE_PLUGINS", raising=False)
    reg = Plugins(autoload=True)
    problems = {p.entry_point.split(" = ")[0]: p for p in reg.problems}
    assert sorted(problems) == sorted(BROKEN)
    assert problems["import_fails"].distribution == "pb-import-fails 0.1"
    assert "failed to import: ImportError: needs torchvision 9" in problems["import_fails"].error
    assert "register_tasks raised RuntimeError: cannot reach my server" in problems["hook_raises"].error
    assert "bad hook" in problems["bad_signature"].error and "device" in problems["bad_signature"].error
    assert "unknown hook(s) ['register_adaptors']" in problems["unknown_hook"].error
    assert "'llava15-tiny' is registered twice" in problems["shadows_builtin"].error
    # The built-in keeps its name and weights; the working plugin works.
    assert reg.adapters.get("llava15-tiny").origin == "builtin"
    assert reg.adapters.get("llava15-tiny").checkpoint != "evil/weights"
    assert reg.adapters.get("my-mlp-tiny").origin.startswith("my-projbench-plugin 1.2")
    status = {row[1].split(" = ")[0]: row[2] for row in reg.list_plugins()}
    assert status["import_fails"].startswith("skipped: failed to import")
    assert status["my_projbench_plugin"] == "ok"


def test_single_plugins_can_be_disabled(broken_plugins, monkeypatch):
    monkeypatch.syspath_prepend(str(broken_plugins))
    monkeypatch.setenv("PROJBENCH_DISABLE_PLUGINS", "import_fails, pb-hook-raises,mine")
    reg = Plugins(autoload=True)
    assert sorted(p.entry_point.split(" = ")[0] for p in reg.problems) == [
        "bad_signature", "shadows_builtin", "unknown_hook"]
    assert "my-mlp-tiny" not in reg.adapters and "fabric" not in reg.tasks
    disabled = [row for row in reg.list_plugins() if row[2].startswith("disabled")]
    assert sorted(r[1].split(" = ")[0] for r in disabled) == ["hook_raises", "import_fails", "mine"]


def test_commands_keep_working_with_broken_plugins(broken_plugins):
    out = cli(broken_plugins, "list", "models")
    assert out.returncode == 0, out.stderr
    assert "llava15-tiny" in out.stdout and "my-mlp-tiny" in out.stdout and "Traceback" not in out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: plugin")]
    assert len(warnings) == len(BROKEN), out.stderr
    assert any("pb-import-fails 0.1 (entry point import_fails = import_fails) skipped: failed to import" in w
               for w in warnings)


# -- plugins that end the process or hang: tried once in a time-limited child, skipped with one line -------------

EXITS = "import os\nos._exit(3)\n"
HANGS = "import time\ntime.sleep(3600)\n"
HOOK_EXITS = ("import os\nfrom benchmark import hookimpl\n\n@hookimpl\ndef register_tasks(register):\n"
              "    os._exit(0)\n")
LIGHT = ("from benchmark import hookimpl\nfrom benchmark.tasks import TaskSpec\n"
         "from benchmark.tasks.sources import PackageFolderSource\n\n@hookimpl\ndef register_tasks(register):\n"
         "    register(TaskSpec(name='weave', version='0.1', domain='weaves', classes=('a', 'b'),\n"
         "                      source=PackageFolderSource('conformal-clip-data', 'textile_simulated_root', extra='demo')))\n")
LOGS = ("import os\nwith open(os.environ['PB_IMPORT_LOG'], 'a') as f:\n"
        "    f.write(('trial' if os.environ.get('PROJBENCH_PLUGIN_PROBE') else 'command') + '\\n')\n")


@pytest.fixture
def own_cache(tmp_path):
    """A fresh cache (the trials' verdicts live there) for one test."""
    path = tmp_path / "cache"
    path.mkdir()
    return str(path)


def test_a_plugin_that_exits_at_import_leaves_the_commands_working(plugin_path, own_cache):
    add_dist(plugin_path, "exits", EXITS, "pb-exits")
    add_dist(plugin_path, "hook_exits", HOOK_EXITS, "pb-hook-exits", "2.0")
    for _ in range(2):  # the second time from the cached verdict
        out = cli(plugin_path, "list", "models", PROJBENCH_CACHE=own_cache)
        assert out.returncode == 0, out.stderr
        assert "llava15-tiny" in out.stdout and "my-mlp-tiny" in out.stdout
        warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: plugin")]
        assert warnings == [
            "warning: plugin pb-exits 0.1 (entry point exits = exits) skipped: its import ended the process (exit "
            "status 3); fix the plugin, or uninstall it (pip uninstall pb-exits), or turn it off with "
            "PROJBENCH_DISABLE_PLUGINS=exits",
            "warning: plugin pb-hook-exits 2.0 (entry point hook_exits = hook_exits) skipped: its hooks ended the "
            "process (exit status 0); fix the plugin, or uninstall it (pip uninstall pb-hook-exits), or turn it off "
            "with PROJBENCH_DISABLE_PLUGINS=hook_exits"], out.stderr
    status = cli(plugin_path, "list", "plugins", PROJBENCH_CACHE=own_cache).stdout
    assert "exits = exits" in status and "skipped: its import ended the process" in status


def test_a_hanging_plugin_is_skipped_within_the_time_limit(own_cache, tmp_path):
    import time

    site = tmp_path / "site"
    site.mkdir()
    add_dist(site, "hangs", HANGS, "pb-hangs")
    add_dist(site, "weaves", LIGHT, "pb-weaves")  # a good plugin beside it (light: well within the limit)
    start = time.monotonic()
    out = cli(site, "list", "tasks", PROJBENCH_CACHE=own_cache, PROJBENCH_PLUGIN_TIMEOUT="5")
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - start < 300  # not the plugin's hour (the limit is 5 s; the rest is a loaded machine)
    assert "textile" in out.stdout and "weave" in out.stdout
    assert out.stderr.splitlines() == [
        "warning: plugin pb-hangs 0.1 (entry point hangs = hangs) skipped: its import did not finish within 5 s "
        "($PROJBENCH_PLUGIN_TIMEOUT); fix the plugin, or uninstall it (pip uninstall pb-hangs), or turn it off "
        "with PROJBENCH_DISABLE_PLUGINS=hangs"]
    records = sorted((tmp_path / "cache" / "plugins").glob("probe-*.json"))
    assert len(records) == 2  # the hanging plugin's verdict and the good one's: neither is tried again


def test_a_good_plugin_is_tried_once_per_installed_version(plugin_path, own_cache, tmp_path):
    log = tmp_path / "imports.log"
    add_dist(plugin_path, "logs", LOGS, "pb-logs")
    for _ in range(2):
        out = cli(plugin_path, "list", "plugins", PROJBENCH_CACHE=own_cache, PB_IMPORT_LOG=str(log))
        assert out.returncode == 0 and "warning" not in out.stderr, out.stderr
    assert log.read_text().split() == ["trial", "command", "command"]  # the second command: no trial
    (plugin_path / "logs.py").write_text(LOGS + "# edited\n")  # an edited (editable) install is tried again
    cli(plugin_path, "list", "plugins", PROJBENCH_CACHE=own_cache, PB_IMPORT_LOG=str(log))
    assert log.read_text().split() == ["trial", "command", "command", "trial", "command"]


def test_list_shows_a_tried_plugin_from_its_record_without_importing_it(plugin_path, own_cache, tmp_path):
    """The plugin above imports torch (through benchmark.adapters.llava) at import time: after its trial, `list`
    shows its model and task from the recorded verdict, importing neither the plugin nor torch."""
    log = tmp_path / "imports.log"
    add_dist(plugin_path, "logs", LOGS, "pb-logs")
    code = ("import sys\nfrom benchmark.cli import main\nmain(['list', sys.argv[1]])\n"
            "print('heavy:', [m for m in ('torch', 'my_projbench_plugin') if m in sys.modules])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]),
           "PROJBENCH_CACHE": own_cache, "PB_IMPORT_LOG": str(log), "COLUMNS": "200"}
    env.pop("PROJBENCH_DISABLE_PLUGIN_AUTOLOAD", None)
    for what, shown in [("models", "my-mlp-tiny"), ("models", "my-mlp-tiny"), ("tasks", "fabric")]:
        out = subprocess.run([sys.executable, "-c", code, what], capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0 and "warning" not in out.stderr, out.stderr
        row = next(line for line in out.stdout.splitlines() if line.startswith(shown + " "))
        assert "my-projbench-plugin 1.2 (mine)" in row
        assert out.stdout.splitlines()[-1] == "heavy: []"
    assert log.read_text().split() == ["trial"]  # tried once, never imported by `list`
    # Everything else imports it as before (and the same name clash is found either way).
    assert "my_projbench_plugin" in cli(plugin_path, "list", "plugins", PROJBENCH_CACHE=own_cache,
                                        PB_IMPORT_LOG=str(log)).stdout
    assert log.read_text().split() == ["trial", "command"]
