"""`--accelerate-config F` read within limits: YAML alias bombs, deep nesting and oversize files are refused before
they cost memory or time, and a value of the wrong type is one line naming the file, the key and what it accepts.

The bombs are built here (the "billion laughs" shape: each level repeats the one below nine times).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest

from benchmark import launch
from benchmark.cli import main
from benchmark.launch_yaml import MAX_BYTES

RUN = ["run", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "2"]


def alias_bomb(levels: int, *, key: str = "") -> str:
    """A billion-laughs YAML: ``levels`` anchored lists, each holding nine aliases of the previous one; with ``key``,
    that setting is given the last level."""
    lines = ['l0: &l0 "lol"']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    text = "\n".join(lines) + "\n"
    return text + (f"{key}: *l{levels - 1}\n" if key else "")


def refused(capsys, tmp_path, config) -> str:
    """The CLI with ``--accelerate-config config``: exit 2, one short stderr line, nothing written."""
    results, cache = tmp_path / "results", tmp_path / "cache"
    code = main([*RUN, "--results-dir", str(results), "--cache-dir", str(cache), "--accelerate-config", str(config)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --accelerate-config {config}: "), err[:2000]
    assert len(lines[0]) < 600, lines[0][:2000]
    assert not results.exists() and not cache.exists()
    return lines[0]


def cpu_seconds_to_refuse(path) -> float:
    """CPU seconds ``read_config`` takes to refuse ``path`` (after the CLI call above imported what it needs)."""
    start = time.process_time()
    with pytest.raises(launch.LaunchConfigError):
        launch.read_config(str(path))
    return time.process_time() - start


def write(tmp_path, text: str) -> os.PathLike:
    path = tmp_path / "acc.yaml"
    path.write_text(text)
    return path


def test_the_bombs_are_small_and_would_expand():
    """The test inputs are what they claim: a few hundred bytes, 9**8 strings once expanded."""
    assert len(alias_bomb(9).encode()) <= 511
    assert len(alias_bomb(8, key="distributed_type").encode()) <= 511
    assert alias_bomb(9).count("*l7") == 9  # the last level repeats the 9**7-string level nine times


@pytest.mark.parametrize("text", [alias_bomb(9), alias_bomb(8, key="distributed_type"),
                                  "distributed_type: MULTI_GPU\nnum_processes: &n 2\nnum_machines: *n\n"],
                         ids=["billion-laughs", "bomb-as-a-value", "one-alias"])
def test_aliases_are_refused_at_the_first_one(capsys, tmp_path, text):
    path = write(tmp_path, text)
    line = refused(capsys, tmp_path, path)
    assert cpu_seconds_to_refuse(path) < 1.0  # the expansion never starts
    first = next(i for i, row in enumerate(text.splitlines()) if "*" in row) + 1
    assert f": line {first}, column " in line and "a YAML alias (*name): aliases are not accepted here" in line
    assert "write the values out" in line


def test_a_bomb_cannot_exhaust_memory_or_flood_the_terminal(tmp_path):
    """Through the real command, under a 1 GiB address-space cap: refused, exit 2, one line of stderr."""
    path = write(tmp_path, alias_bomb(9, key="num_processes"))

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # torch's import alone maps ~3 GiB

    out = subprocess.run([sys.executable, "-m", "benchmark", *RUN, "--accelerate-config", str(path),
                          "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")],
                         capture_output=True, text=True, timeout=300, preexec_fn=cap)
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(out.stderr) < 600 and out.stderr.count("\n") == 1 and "aliases are not accepted" in out.stderr


def test_deep_nesting_is_refused(capsys, tmp_path):
    line = refused(capsys, tmp_path, write(tmp_path, "distributed_type: " + "[" * 20000 + "]" * 20000 + "\n"))
    assert "nesting deeper than 20 levels: not an accelerate config" in line


def test_an_oversize_file_is_refused_unread(capsys, tmp_path):
    text = "distributed_type: MULTI_GPU\nnum_processes: 2\n" + "# padding\n" * 200_000  # 2 MB of valid YAML
    path = write(tmp_path, text)
    assert path.stat().st_size > 2_000_000
    line = refused(capsys, tmp_path, path)
    assert cpu_seconds_to_refuse(path) < 1.0
    assert f"larger than {MAX_BYTES // 1024} KiB, not an accelerate config" in line
    # Just under the limit is read (and then checked as usual).
    edge = "distributed_type: MULTI_GPU\nnum_processes: 2\n"
    path.write_text(edge + "#" * (MAX_BYTES - len(edge) - 1) + "\n")
    assert path.stat().st_size == MAX_BYTES and launch.read_config(str(path)).num_processes == 2


@pytest.mark.parametrize("setting, says", [
    ("distributed_type: 5", "distributed_type 5 is not one accelerate knows; projbench drives NO, MULTI_GPU, FSDP, "
                            "DEEPSPEED"),
    ("distributed_type: [MULTI_GPU]", "distributed_type ['MULTI_GPU'] is not one accelerate knows"),
    ("num_processes: two", "num_processes is 'two' (str); accelerate accepts a whole number there"),
    ("num_processes: 2.5", "num_processes is 2.5 (float); accelerate accepts a whole number there"),
    ("num_processes: true", "num_processes is True (bool) (YAML reads an unquoted yes/no/on/off as true/false: quote "
                            "it); accelerate accepts a whole number there"),
    ("use_cpu: maybe", "use_cpu is 'maybe' (str); accelerate accepts true or false there"),
    ("mixed_precision: no", "mixed_precision is False (bool) (YAML reads an unquoted yes/no/on/off as true/false: "
                            "quote it); accelerate accepts a quoted string there"),
    ("gpu_ids: 0", "gpu_ids is 0 (int); accelerate accepts a quoted string there"),
    ("fsdp_config: 3", "fsdp_config is 3 (int); accelerate accepts a mapping (indented key: value lines) there"),
    ("commands: [1, 2]", "commands is [1, 2] (list); accelerate accepts a list of strings there"),
    ("main_process_port: '29500'", "main_process_port is '29500' (str); accelerate accepts a whole number there"),
    ("compute_environment: 7", "compute_environment 7: projbench launches on your own machines only"),
    ("1: 2", "the key 1 is not a name; keys are accelerate setting names"),
    ("num_processes: " + "9" * 5000, "not valid YAML (ValueError)"),  # past Python's int-digits limit
    ("num_processes: " + "9" * 400, "num_processes is 9999999"),  # cut short (the line stays under 600 characters)
    ("mixed_precision: " + "x" * 5000, "mixed_precision 'xxxx"),
])
def test_values_of_the_wrong_type_are_one_line(capsys, tmp_path, setting, says):
    key = setting.split(":")[0]
    base = {"distributed_type": "distributed_type: MULTI_GPU", "num_processes": "num_processes: 2"}
    lines = [setting] + [v for k, v in base.items() if k != key]
    line = refused(capsys, tmp_path, write(tmp_path, "\n".join(lines) + "\n"))
    assert says in line
