"""Result bundles: a results tree (or part of it) as one ``.tar.gz`` with a manifest of checksums, and its safe reading.

A bundle holds ``projbench-bundle.json`` first (format, and the SHA-256 and size of every file, sealed like a
record) and then the run folders' files under their paths relative to the results folder
(``<model>/<task>[@max<k>]/<regime>/seed<k>/...``), in sorted order, with fixed owners, modes and times: the same
tree gives the same bytes.

An archive from someone else is read as hostile (the dangers Python's ``tarfile`` documentation lists under
"Extraction filters", and CERT FIO15-C's links): every member must be a regular file or folder, named by a
relative path with no ``..``, absolute part or backslash, listed in the manifest with its size and checksum, and
within the size and count limits below; any link, device or unlisted member refuses the whole archive, nothing
of it is used. It is extracted into a fresh private temporary folder, each file created new (``O_EXCL``,
``O_NOFOLLOW``) and checked against the manifest while it is written; the folder is removed afterwards.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from benchmark.errors import BenchmarkError
from benchmark.storage.integrity import SEAL, seal, seal_matches, sha256_file

MANIFEST = "projbench-bundle.json"
FORMAT = "projbench-bundle"
FORMAT_VERSION = 1
MAX_MEMBERS = 500_000
MAX_FILE_BYTES = 4 * 1024 ** 3
MAX_TOTAL_BYTES = 16 * 1024 ** 3
MAX_MANIFEST_BYTES = 256 * 1024 ** 2
SUFFIXES = (".tar.gz", ".tgz", ".tar")


class BundleError(BenchmarkError):
    """An archive that is not a projbench bundle, or one that is unsafe to read."""


def is_bundle(path: Path) -> bool:
    """Whether ``path`` names an archive (a file with a bundle suffix), not a results folder."""
    return Path(path).is_file() and str(path).lower().endswith(SUFFIXES)


# -- writing ---------------------------------------------------------------------------------------------------
def bundle_files(root: Path, folders: list[Path]) -> list[str]:
    """The files to bundle, as sorted paths relative to ``root``: every regular file under ``folders``, less
    locks and temporaries (dot-files); a symbolic link anywhere there is refused, never followed."""
    root, found = Path(root), set()
    for top in folders:
        top = Path(top)
        try:
            rel = top.relative_to(root)
        except ValueError:
            raise BundleError(f"{top} is not inside the results folder {root}; give --results the folder that "
                              "holds it.") from None
        if ".." in rel.parts or not top.is_dir():
            raise BundleError(f"{top} is not a folder of the results folder {root}.")
        for here, dirs, files in os.walk(top):
            for name in sorted(dirs + files):
                if (Path(here) / name).is_symlink():
                    raise BundleError(f"{Path(here) / name} is a symbolic link: a bundle holds only real files. "
                                      "Replace the link with the folder or file it points to, or leave it out.")
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if not name.startswith(".") and (Path(here) / name).is_file():
                    found.add((Path(here) / name).relative_to(root).as_posix())
    return sorted(found)


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = size, 0o644, 0, 0, 0, "", ""
    return info


def write_bundle(root: Path, names: list[str], out: Path) -> dict:
    """Write the files ``names`` (relative to ``root``) and their manifest as a gzip tar at ``out``; the manifest."""
    from benchmark.storage.results import atomic_write_with

    root = Path(root)
    manifest = seal({"format": FORMAT, "format_version": FORMAT_VERSION,
                     "files": {n: {"sha256": sha256_file(root / n), "size": (root / n).stat().st_size} for n in names}})
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_info(MANIFEST, len(body)), io.BytesIO(body))
            for n in names:
                with open(root / n, "rb") as f:
                    tar.addfile(_info(n, manifest["files"][n]["size"]), f)

    atomic_write_with(Path(out), write)
    return manifest


# -- reading ---------------------------------------------------------------------------------------------------
def _member_problem(m: tarfile.TarInfo) -> str | None:
    name = m.name
    if not (m.isfile() or m.isdir()):
        kind = "a symbolic link" if m.issym() else "a hard link" if m.islnk() else "not a regular file"
        return f"member {name!r} is {kind}"
    parts = PurePosixPath(name).parts
    drive = bool(parts) and len(parts[0]) == 2 and parts[0][1] == ":"
    if not name or name.startswith("/") or "\\" in name or ".." in parts or drive or "\x00" in name:
        return f"member {name!r} has an unsafe path (absolute, '..', or a drive)"
    if m.isfile() and m.size > MAX_FILE_BYTES:
        return f"member {name!r} is larger than {MAX_FILE_BYTES} bytes"
    return None


def _read_manifest(tar: tarfile.TarFile, first: tarfile.TarInfo | None, where: Path) -> dict:
    if first is None or first.name != MANIFEST or not first.isfile() or first.size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{where} is not a projbench bundle (its first member is not {MANIFEST}); make one "
                          "with `python -m benchmark export`.")
    try:
        doc = json.loads(tar.extractfile(first).read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"{where}: its manifest is not valid JSON ({exc.__class__.__name__}).") from None
    claimed = doc.pop(SEAL, None) if isinstance(doc, dict) else None
    if (not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("files"), dict)
            or not isinstance(claimed, str) or not seal_matches(doc, claimed)):
        raise BundleError(f"{where}: its manifest is damaged or not a {FORMAT} manifest (format, files, seal).")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format version {doc.get('format_version')!r} is not one this "
                          f"projbench reads ({FORMAT_VERSION}); upgrade projbench.")
    return doc["files"]


def _extract_file(tar: tarfile.TarFile, m: tarfile.TarInfo, dest: Path, want: dict) -> None:
    target = dest.joinpath(*PurePosixPath(m.name).parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    h, size = hashlib.sha256(), 0
    with os.fdopen(fd, "wb") as f, tar.extractfile(m) as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            h.update(block)
            size += len(block)
            f.write(block)
    if size != want.get("size") or h.hexdigest() != want.get("sha256"):
        raise BundleError(f"member {m.name!r} does not match the SHA-256 and size its manifest records")


def extract(archive: Path, dest: Path) -> list[str]:
    """Check and extract a bundle into the empty folder ``dest``; the files' paths. :class:`BundleError` (and
    nothing used) if any member is unsafe, unlisted, over a limit, or fails its checksum."""
    archive = Path(archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = iter(tar)
            files = _read_manifest(tar, next(members, None), archive)
            seen, total, count = set(), 0, 0
            for m in members:
                count += 1
                problem = _member_problem(m) or (None if m.isdir() or m.name in files else
                                                 f"member {m.name!r} is not in the manifest")
                total += m.size if m.isfile() else 0
                if problem is None and (count > MAX_MEMBERS or total > MAX_TOTAL_BYTES):
                    problem = f"more than {MAX_MEMBERS} members or {MAX_TOTAL_BYTES} bytes"
                if problem is None and m.isfile() and m.name in seen:
                    problem = f"member {m.name!r} appears twice"
                if problem:
                    raise BundleError(f"{archive} is refused: {problem}. Nothing of it was used.")
                if m.isfile():
                    _extract_file(tar, m, dest, files[m.name])
                    seen.add(m.name)
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise BundleError(f"{archive} cannot be read as a bundle ({exc.__class__.__name__}: {exc}).") from None
    missing = sorted(set(files) - seen)
    if missing:
        raise BundleError(f"{archive} is refused: {len(missing)} file(s) of its manifest are missing, e.g. "
                          f"{missing[0]!r}. Nothing of it was used.")
    return sorted(seen)


@contextlib.contextmanager
def opened(path: Path) -> Iterator[Path]:
    """A results folder as given, or a bundle's checked contents in a temporary folder removed afterwards."""
    path = Path(path)
    if not is_bundle(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="projbench-bundle-") as tmp:
        extract(path, Path(tmp))
        yield Path(tmp)
