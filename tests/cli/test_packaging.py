"""The explicit package list of pyproject.toml names every package folder, as Python imports it.

The project maps its top-level folders into the ``benchmark`` namespace with setuptools' ``package-dir``, so
packages are listed by hand. An editable install finds an unlisted subpackage anyway; a wheel silently leaves it
out, and the installed product then fails on its first import of it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    found = set()
    for name, folder in conf["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    # a folder mapped explicitly is found once under its own name; nested mapped folders are not re-found
    missing = sorted(found - listed)
    assert not missing, f"package folders missing from pyproject.toml's packages: {missing}"
    assert not sorted(listed - found), "pyproject.toml lists packages that do not exist"
