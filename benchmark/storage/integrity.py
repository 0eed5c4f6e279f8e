"""Integrity of every file the benchmark writes and later reads back: SHA-256 on write, verified on read.

Result folders and caches are synced between machines, so a file read back may be truncated, bit-flipped or
planted. Nothing read back is ever unpickled: tensors are safetensors, everything else JSON. Each artifact's
SHA-256 is recorded where it is indexed (``index.json`` for feature parts, ``training.json`` for the
checkpoint, ``train_state.json`` for the training state, ``metrics.json`` for projector weights and
predictions), and JSON index files carry a checksum of their own content (``_sha256``), so a flipped digit in
``metrics.json`` is caught too. Files from before checksums existed have none: they are read as before.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from benchmark.errors import BenchmarkError  # noqa: F401  (re-exported: the base of every error a reader of results sees)
from benchmark.schema import METRICS, result_problem

SEAL = "_sha256"  # key of a JSON file's checksum of its own content


class CorruptFileError(BenchmarkError):
    """A file fails its integrity check, is truncated, or does not parse."""

    def __init__(self, path: Path, reason: str, fix: str = ""):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path} is corrupt ({reason})." + (f" {fix}" if fix else ""))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, sha256: str | None) -> None:
    """Raise :class:`CorruptFileError` unless ``path`` exists and has the recorded checksum (if one is recorded)."""
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(path, "missing")
    if sha256 is not None and sha256_file(path) != sha256:
        raise CorruptFileError(path, "SHA-256 does not match the one recorded when it was written")


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def seal(obj: dict) -> dict:
    """``obj`` as it will read back from JSON, plus the checksum of that content under ``_sha256``."""
    plain = json.loads(json.dumps({k: v for k, v in obj.items() if k != SEAL}, default=str))
    return {**plain, SEAL: hashlib.sha256(_canonical(plain)).hexdigest()}


def parse_json(path: Path, max_bytes: int | None = None):
    """Parse a JSON file; truncated, empty, binary or oversized content raises :class:`CorruptFileError`."""
    path = Path(path)
    try:
        if max_bytes is not None and path.stat().st_size > max_bytes:
            raise CorruptFileError(path, f"larger than {max_bytes} bytes")
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise CorruptFileError(path, "missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(path, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise CorruptFileError(path, "JSON nested too deeply") from None


def seal_matches(obj: dict, claimed: str) -> bool:
    """Whether ``obj`` (parsed, its ``_sha256`` removed) is the content that checksum was computed on."""
    return hashlib.sha256(_canonical(obj)).hexdigest() == claimed


SEALED_FROM = 2  # every metrics.json projbench writes from schema 2 on carries its seal


def record_seal_problem(obj: dict, claimed) -> str | None:
    """Why a parsed ``metrics.json`` (``obj``, its seal ``claimed`` taken out) cannot be read; None if it can.

    From schema 2 on projbench seals every record, so one without its seal was edited (deleting the seal would
    otherwise make an edited file read as an older, unsealed one): it is refused, never read as schema 1.
    """
    if claimed is None:
        version = obj.get("schema_version")
        if isinstance(version, int) and not isinstance(version, bool) and version >= SEALED_FROM:
            return (f"schema {version} without its seal ({SEAL!r}): projbench seals every record from schema "
                    f"{SEALED_FROM} on, so this one was edited; not read as an older file")
        return None
    if not isinstance(claimed, str) or not seal_matches(obj, claimed):
        return "its content does not match its recorded SHA-256"
    return None


def read_sealed_json(path: Path) -> dict:
    """Parse a JSON object and check its own checksum if it has one (files written before checksums have none)."""
    obj = parse_json(path)
    if not isinstance(obj, dict):
        raise CorruptFileError(path, f"expected a JSON object, found {type(obj).__name__}")
    claimed = obj.pop(SEAL, None)
    if claimed is not None and not seal_matches(obj, claimed):
        raise CorruptFileError(path, "content does not match its recorded SHA-256")
    return obj


def load_safetensors(path: Path, sha256: str | None) -> dict:
    """Tensors of a safetensors file after checking its SHA-256; a damaged file raises :class:`CorruptFileError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    verify_file(path, sha256)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptFileError(path, f"not a readable safetensors file: {exc}") from None


def read_finished(d: Path) -> dict:
    """``metrics.json`` of a finished run after checking it and the artifacts it records (projector weights,
    predictions). A run that fails is corrupt: :class:`CorruptFileError` names the file and the fix."""
    d = Path(d)
    fix = f"Delete the folder {d} and run the same command again to recompute this run."
    try:
        m = parse_json(d / METRICS)
        if not isinstance(m, dict):
            raise CorruptFileError(d / METRICS, f"expected a JSON object, found {type(m).__name__}")
        sealed = record_seal_problem(m, m.pop(SEAL, None))
        if sealed:
            raise CorruptFileError(d / METRICS, sealed)
        problem = result_problem(m)
        if problem:
            raise CorruptFileError(d / METRICS, f"not a valid result: {problem}")
        artifacts = m.get("artifacts") or {}
        if not isinstance(artifacts, dict):
            raise CorruptFileError(d / METRICS, "field 'artifacts' is not an object")
        for name, sha in sorted(artifacts.items()):
            if not isinstance(sha, str) or Path(name).name != name or name.startswith("."):
                raise CorruptFileError(d / METRICS, f"bad artifact entry {name!r}")
            verify_file(d / name, sha)
    except CorruptFileError as exc:
        raise CorruptFileError(exc.path, exc.reason, fix) from None
    return m
