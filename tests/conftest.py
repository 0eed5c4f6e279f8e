"""Shared fixtures: a hermetic cache, offline hub settings, and image folders made from real photos."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import pytest

# Tests never reach a hub, and third-party plugins installed on the machine must not change what they see.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PROJBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

# A test that runs the whole protocol (in its body or through a fixture it uses; the conformance suite's full run
# included) is marked `slow`: `make test` leaves them out, `make test-slow` runs only them, CI runs both.
_RUNS_PROTOCOL = re.compile(
    r"\bRunner\(|\bprotocol\.run\(|\bcheck_full_protocol\(|[\"']run[\"'],\s*(?:\*\w+|[\"']--model[\"'])")


def _runs_protocol(item) -> bool:
    funcs = [getattr(item, "function", None)]
    for defs in getattr(item, "_fixtureinfo", None) and item._fixtureinfo.name2fixturedefs.values() or ():
        funcs += [d.func for d in defs]
    for func in funcs:
        try:
            if func is not None and _RUNS_PROTOCOL.search(inspect.getsource(func)):
                return True
        except (OSError, TypeError):
            continue
    return False


def pytest_collection_modifyitems(items):
    for item in items:
        if _runs_protocol(item):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine the thread hand-off costs ~20x.
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def add_dist(root: Path, module: str, source: str, dist: str, version: str = "0.1", entry: str | None = None) -> None:
    """An installed-looking plugin under ``root`` (put it on PYTHONPATH): ``module.py`` holding ``source``, and the
    dist-info of distribution ``dist`` with entry point ``entry`` (default: the module's name) in the projbench group."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[projbench]\n{entry or module} = {module}\n")


SHARED_DATA = Path(os.environ.get("PROJBENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_data(task: str) -> Path:
    """``SHARED_DATA/<task>``, the small real image subset of a task (``train/`` and ``test/`` class folders).

    Absent on a contributor's machine, the test is skipped. Under ``CI=true`` it is a failure instead: CI runs with
    ``shared/`` beside the clone, so a missing folder there means the tests on real data silently stopped running.
    """
    path = SHARED_DATA / task
    if not (path / "train").is_dir() or not (path / "test").is_dir():
        why = (f"no shared data for {task!r} at {path} (set PROJBENCH_SHARED_DATA to the folder holding "
               f"{task}/train and {task}/test)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {why}", pytrace=False)
        pytest.skip(why)
    return path


@pytest.fixture(scope="session", autouse=True)
def hermetic_cache(tmp_path_factory):
    """One cache (tiny twins, features) per test session, never the user's ~/.cache/projbench."""
    path = tmp_path_factory.mktemp("projbench-cache")
    old = os.environ.get("PROJBENCH_CACHE")
    os.environ["PROJBENCH_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PROJBENCH_CACHE", None)
    else:
        os.environ["PROJBENCH_CACHE"] = old


def textile_files() -> list[tuple[str, Path]]:
    """(class folder, path) of real textile photos from the conformal-clip-data package, a few per class."""
    import conformal_clip_data

    root = Path(conformal_clip_data.textile_simulated_root())
    out = []
    for cls in ("nominal", "global", "local"):
        out += [(cls, p) for p in sorted((root / cls).glob("*.jpg"))[:12]]
    return out


def make_image_folder(root: Path, per_class: dict[str, tuple[int, int]]) -> Path:
    """Write ``root/{train,test}/<class>/*.jpg`` from real textile photos: {class: (n_train, n_test)}."""
    files = [p for _, p in textile_files()]
    k = 0
    for cls, (n_train, n_test) in per_class.items():
        for split, n in (("train", n_train), ("test", n_test)):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (d / f"img{i:03d}.jpg").write_bytes(files[k % len(files)].read_bytes())
                k += 1
    return root


@pytest.fixture(scope="session")
def real_images():
    """Twelve real RGB photos (4 per class: nominal, global, local textile defects) with class indices."""
    from benchmark.conformance import real_photos

    return real_photos(per_class=4)


@pytest.fixture(scope="session")
def images(real_images):
    """Four real photos, then two synthetic images of other sizes and aspect ratios (97 x 31 red, 20 x 140 green):
    a processor that tiles, grids or pads by aspect ratio treats them otherwise than the photos."""
    from PIL import Image

    extra = [Image.new("RGB", (97, 31), (200, 30, 30)), Image.new("RGB", (20, 140), (30, 200, 30))]
    return [im for im, _ in real_images[:4]] + extra
