"""The paper's tasks on the small real image subsets in ../shared/data/<task>/ (skipped where a folder is absent,
failed instead under ``CI=true``).

Checks the label spaces (every class folder maps to a class of the task definition; where the subset covers
the whole label space, the two are equal) and runs the full protocol on ``llava15-tiny``. The subsets are
described in shared/data/README.md; ``PROJBENCH_SHARED_DATA`` points elsewhere.
"""

from __future__ import annotations

import pytest

from benchmark.config import ProbeConfig, RunConfig
from benchmark.protocol import Runner
from benchmark.registry import Plugins
from benchmark.tasks import load_task
from conftest import shared_data

TASKS = ("derm", "eurosat", "textures")
COMPLETE = {"derm", "eurosat"}  # textures holds 10 of DTD's 47 classes


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("task", TASKS)
def test_label_space(task):
    root = shared_data(task)
    spec = Plugins(autoload=False).tasks.get(task)
    folders = {p.name for split in ("train", "test") for p in (root / split).iterdir() if p.is_dir()}
    mapped = {f: spec.class_for_key(f) for f in folders}
    assert None not in mapped.values(), f"folders matching no class: {[f for f, c in mapped.items() if c is None]}"
    assert len(set(mapped.values())) == len(folders)  # no two folders share a class
    if task in COMPLETE:
        assert set(mapped.values()) == set(spec.classes)
    data = load_task(spec, root, progress=False)
    assert set(data.classes) == set(mapped.values())
    assert data.skipped == {"train": [], "test": []}
    assert data.duplicates == []  # the subsets were drawn without repeats


@pytest.mark.parametrize("task", TASKS)
def test_full_protocol(task, tmp_path):
    root = shared_data(task)
    cfg = RunConfig(model="llava15-tiny", task=task, data_dir=str(root), max_per_class=2, eval_batch_size=16,
                    results_dir=str(tmp_path / "results"), probe=ProbeConfig(max_epochs=1), progress=False)
    results = Runner(cfg, log=lambda *a: None).run()
    spec = Plugins(autoload=False).tasks.get(task)
    assert [m["regime"] for m in results] == ["zero-shot", "ft-proj", "ft-e2e"]
    for m in results:
        classes = m["data"]["classes"]
        assert set(classes) <= set(spec.classes) and (task not in COMPLETE or len(classes) == len(spec.classes))
        assert m["data"]["n_train"] == m["data"]["n_test"] == 2 * len(classes)  # balanced by --max-per-class
        assert m["task_version"] == spec.version and m["limit"] == {"max_per_class": 2}
        assert m["data"]["duplicates"] == [] and m["data"]["skipped_unreadable"] == {"train": 0, "test": 0}
        assert 0.0 <= m["metrics"]["macro_f1"] <= 1.0 and m["metrics"]["n"] == 2 * len(classes)
        assert len(m["metrics"]["confusion_matrix"]) == len(classes)
        # Zero-shot probes the pre-projection features and the original projector; fine-tuned regimes their own.
        want = {"pre_projection", "post_projection"} if m["regime"] == "zero-shot" else {"post_projection"}
        assert want <= set(m["probe"]), (m["regime"], sorted(m["probe"]))
        if m["regime"] != "zero-shot":
            assert "pre_projection" not in m["probe"]  # the pre-projection features do not change with training
        for name in want:
            assert m["probe"][name]["n_train"] + m["probe"][name]["n_val"] == m["data"]["n_train"]
    assert len({m["task_fingerprint"] for m in results}) == 1
