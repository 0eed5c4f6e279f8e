"""Content-addressed cache of vision features (what enters the projector), shared by every regime and probe.

The vision encoder is frozen in every regime, so images are encoded once per (checkpoint, task fingerprint,
split, preprocessing). Features are written in safetensors parts as they are computed: an interrupted
extraction resumes from the last finished part.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from pathlib import Path

import torch
from filelock import FileLock
from safetensors import SafetensorError, safe_open

from benchmark import distributed
from benchmark.errors import BenchmarkError
from benchmark.storage.confined import confined
from benchmark.storage.integrity import CorruptFileError, read_sealed_json, seal, sha256_file, verify_file
from benchmark.storage.random_init import is_random_init
from benchmark.storage.results import (
    atomic_save_tensors,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
)
from benchmark.tasks.base import Sample, decode_image

PART_SIZE = 256


# Weight files up to this size are hashed whole; larger ones by header + samples (see ``file_digest``).
FULL_HASH_BYTES = 64 << 20
SAMPLES = 64               # evenly spaced windows, first and last included
SAMPLE_BYTES = 64 << 10


def file_digest(path: Path) -> str:
    """A content digest of one file, fast enough for multi-GB weights.

    Files up to ``FULL_HASH_BYTES`` (configs, tokenisers, tiny twins) are hashed whole. Larger ones are hashed by
    their size, their safetensors header (8-byte length + JSON: every tensor's name, dtype, shape and offsets)
    and ``SAMPLES`` windows of ``SAMPLE_BYTES`` at evenly spaced offsets (the first and the last included):
    ~4 MB read per file. A change confined to bytes between the windows of a large file is not seen; a
    re-save, another dtype or shape, a truncated copy or a different fine-tune is.
    """
    size = path.stat().st_size
    h = hashlib.sha256(f"{size}:".encode())
    with path.open("rb") as f:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            return h.hexdigest()
        if path.suffix == ".safetensors":
            n = int.from_bytes(f.read(8), "little")
            h.update(f.read(min(n, size - 8)))
        for i in range(SAMPLES):
            f.seek((size - SAMPLE_BYTES) * i // (SAMPLES - 1))
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def local_revision(src: Path) -> dict:
    """Content hash of a local checkpoint (a file, or a folder walked recursively; hidden entries such as
    ``.cache/`` download metadata are left out because they change without the weights changing)."""
    files = [src] if src.is_file() else sorted(
        p for p in src.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts))
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(src) if p != src else p.name).encode() + b"\0" + file_digest(p).encode())
    rev = {"kind": "local", "content_hash": h.hexdigest()[:16], "files": len(files)}
    if is_random_init(src):  # a skeleton of `plan --measure`: its weights are drawn at load, never a result
        rev["random_init"] = True
    return rev


def hub_revision(repo_id: str) -> dict:
    """The snapshot commit of a hub checkpoint, read from the local Hugging Face cache (works offline): the
    cache's ``refs/main`` names the commit whose snapshot ``from_pretrained`` loaded."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    commit = Path(found).parent.name if isinstance(found, str) else None
    return {"kind": "hub", "repo": repo_id, "commit": commit}


def model_revision(checkpoint) -> dict:
    """What pins the weights: a local checkpoint's content hash, or a hub checkpoint's snapshot commit."""
    src = Path(str(checkpoint)).expanduser()
    return local_revision(src) if src.exists() else hub_revision(str(checkpoint))


def checkpoint_identity(adapter) -> dict:
    """What identifies the weights: the adapter, the checkpoint and its revision (see :func:`model_revision`),
    so that replaced weights, even of the same size and modification time, invalidate the cache."""
    return {"adapter": adapter.name, "checkpoint": str(adapter.checkpoint),
            "revision": model_revision(adapter.checkpoint)}


def cache_key(adapter, task_fingerprint: str, split: str) -> str:
    payload = json.dumps(
        {"ckpt": checkpoint_identity(adapter), "task": task_fingerprint, "split": split,
         "pre": adapter.preprocessing_signature(), "dtype": str(adapter.dtype)},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class FeatureStore:
    """Read-only view of one split's cached features; rows in the order of the split's samples.

    Opening checks ``index.json`` and the SHA-256 of every part (recorded when written): a damaged cache
    raises :class:`CorruptFileError` instead of giving wrong numbers.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        meta = read_sealed_json(directory / "index.json")
        shas = meta.get("part_sha256")
        if not isinstance(shas, dict) or not isinstance(meta.get("parts"), list) or not meta["parts"]:
            raise CorruptFileError(directory / "index.json", "written without checksums, or incomplete")
        for name in meta["parts"]:
            if Path(name).name != name or name not in shas:
                raise CorruptFileError(directory / "index.json", f"bad part entry {name!r}")
            verify_file(directory / name, shas[name])
        self.uids: list[str] = meta["uids"]
        self.shape = tuple(meta["shape"])
        try:
            self._handles = [safe_open(str(directory / f), framework="pt") for f in meta["parts"]]
        except SafetensorError as exc:
            raise CorruptFileError(directory, f"a part is not readable: {exc}") from None
        rows = sum(h.get_slice("features").get_shape()[0] for h in self._handles)
        if rows != len(self.uids) or self.shape[0] != rows:
            raise CorruptFileError(directory / "index.json", f"{rows} feature rows for {len(self.uids)} images")
        for name, handle in zip(meta["parts"], self._handles, strict=True):
            problem = feature_problem(handle.get_tensor("features"), self.shape[1:])
            if problem:
                raise CorruptFileError(directory / name, problem)

    def __len__(self):
        return len(self.uids)

    def get(self, indices) -> torch.Tensor:
        rows = []
        for i in (indices.tolist() if torch.is_tensor(indices) else indices):
            part, row = divmod(int(i), PART_SIZE)
            rows.append(self._handles[part].get_slice("features")[row: row + 1])
        return torch.cat(rows)


def feature_problem(tensor: torch.Tensor, row_shape: tuple) -> str | None:
    """Why ``tensor`` cannot be a part's features (rows of ``row_shape``, every value finite), or None.

    A NaN or Inf row would reach the probes and the projector as a number and silently lower every score
    computed from it, so such a part is treated like a damaged file.
    """
    if not tensor.is_floating_point() or tuple(tensor.shape[1:]) != tuple(row_shape):
        return f"features of shape {tuple(tensor.shape)} ({tensor.dtype}), expected rows of {tuple(row_shape)}"
    bad = (~torch.isfinite(tensor)).flatten(1).any(dim=1).nonzero().flatten().tolist()
    if bad:
        return f"{len(bad)} feature row(s) hold NaN or Inf (rows {bad[:5]}{' ...' if len(bad) > 5 else ''})"
    return None


def _reusable_part(path: Path, row_shape: tuple | None) -> str | None:
    """The SHA-256 of a part finished before an interruption, if it matches the one written after it and its
    rows are finite and of the shape of the first part's."""
    try:
        sha = path.with_name(path.name + ".sha256").read_text().strip()
        verify_file(path, sha)
        with safe_open(str(path), framework="pt") as f:
            tensor = f.get_tensor("features")
        return None if feature_problem(tensor, row_shape or tuple(tensor.shape[1:])) else sha
    except (OSError, CorruptFileError, SafetensorError):
        return None


def extract(adapter, samples: list[Sample], *, cache_dir: Path, task_fingerprint: str, split: str,
            batch_size: int = 16, progress: bool = True, log=print) -> tuple[FeatureStore, float]:
    """Cached features for ``samples`` (computing what is missing). Returns the store and seconds spent.

    One process at a time works on a cache entry (a file lock next to it): a second one waits, then reuses it.
    A damaged entry is discarded and recomputed, with a line in the log. In a multi-process run rank 0 holds the
    lock and decides for the group; every rank encodes its share of the images.
    """
    ctx = distributed.current()
    directory = confined(Path(cache_dir) / "features" / cache_key(adapter, task_fingerprint, split), Path(cache_dir),
                         "feature-cache entry")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory) + ".lock") if ctx.is_main else contextlib.nullcontext():
        ctx.barrier()
        ready = False
        if ctx.is_main and (directory / "index.json").exists():
            try:
                FeatureStore(directory)
                ready = True
            except CorruptFileError as exc:
                log(f"[discard] cached {split} features: {exc} Recomputing them.")
                shutil.rmtree(directory)
        if ctx.broadcast(ready):
            return FeatureStore(directory), 0.0
        return _extract_locked(adapter, samples, directory=directory, task_fingerprint=task_fingerprint,
                               split=split, batch_size=batch_size, progress=progress, log=log)


def _extract_locked(adapter, samples, *, directory: Path, task_fingerprint, split, batch_size, progress, log):
    from tqdm.auto import tqdm

    ctx = distributed.current()
    if ctx.is_main:
        directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(directory)
        atomic_write_json(directory / "key.json", {"adapter": adapter.name, "checkpoint": str(adapter.checkpoint),
                                                   "task_fingerprint": task_fingerprint, "split": split})
    start = time.perf_counter()
    parts, shas, row_shape = [], {}, None  # row_shape: of the first part's rows; every part must match it
    bar = tqdm(total=len(samples), desc=f"vision features ({split})", unit="img",
               disable=not progress or not ctx.is_main)
    for p0 in range(0, len(samples), PART_SIZE):
        name = f"part-{p0 // PART_SIZE:05d}.safetensors"
        chunk = samples[p0: p0 + PART_SIZE]
        path = directory / name
        sha = None
        if ctx.is_main and path.exists():
            sha = _reusable_part(path, row_shape)
            if not sha:
                log(f"[discard] {path} fails its checksum, or holds non-finite or misshapen rows; recomputing it.")
                path.unlink()
        if ctx.broadcast(sha):  # finished before an interruption
            bar.update(len(chunk))
        else:
            sha = _encode_part(adapter, chunk, path, row_shape=row_shape, batch_size=batch_size, bar=bar)
        if ctx.is_main:
            shas[name] = sha
            with safe_open(str(path), framework="pt") as f:
                row_shape = row_shape or tuple(f.get_slice("features").get_shape()[1:])
        parts.append(name)
    bar.close()
    if ctx.is_main:
        with safe_open(str(directory / parts[0]), framework="pt") as f:
            shape = [len(samples), *f.get_slice("features").get_shape()[1:]]
        atomic_write_json(directory / "index.json", seal({"uids": [s.uid for s in samples], "parts": parts,
                                                          "shape": shape, "part_sha256": shas}))
    ctx.barrier()
    return FeatureStore(directory), time.perf_counter() - start


def _encode_part(adapter, chunk, path: Path, *, row_shape, batch_size: int, bar) -> str | None:
    """Encode one part's images; rank 0 checks the gathered rows, writes the part and returns its SHA-256.

    Each process encodes its block of the part; the others wait for rank 0's write.
    """
    ctx = distributed.current()
    mine = ctx.share(len(chunk))
    feats = []
    for b0 in range(mine.start, mine.stop, batch_size):
        images = [decode_image(s.load_bytes()) for s in chunk[b0: min(b0 + batch_size, mine.stop)]]
        feats.append(adapter.vision_features(adapter.preprocess(images)).to("cpu").contiguous())
        bar.update(len(images) * ctx.world_size)
    feats = ctx.gather(feats)
    sha = None
    if ctx.is_main:
        tensor = torch.cat(feats)
        problem = feature_problem(tensor, row_shape or tuple(tensor.shape[1:]))
        if problem or len(tensor) != len(chunk):
            raise BenchmarkError(
                f"{adapter.name} gave unusable vision features for images {chunk[0].uid} .. {chunk[-1].uid}: "
                f"{problem or f'{len(tensor)} rows for {len(chunk)} images'}. Nothing was cached. Check the "
                "checkpoint (--model-path); NaN or Inf often means a dtype that overflows: try --dtype float32.")
        atomic_save_tensors(path, {"features": tensor})
        sha = sha256_file(path)
        atomic_write_text(path.with_name(path.name + ".sha256"), sha + "\n")
    ctx.barrier()
    return sha


@torch.no_grad()
def pooled(store: FeatureStore, adapter=None, batch_size: int = 64) -> torch.Tensor:
    """Mean over tokens of the pre-projection features, or of ``adapter.project(features)`` if given: the probes'
    inputs, refused (:class:`BenchmarkError`) where any is NaN or Inf."""
    out = []
    for b0 in range(0, len(store), batch_size):
        x = store.get(range(b0, min(b0 + batch_size, len(store)))).to(adapter.device if adapter else "cpu")
        if adapter is not None:
            x = adapter.project(x)
        out.append(x.float().mean(dim=1).cpu())
    pooled_rows = torch.cat(out)
    bad = (~torch.isfinite(pooled_rows)).any(dim=1).nonzero().flatten().tolist()
    if bad:  # a probe input: it would be trained on, or scored on, a number that is not one
        where = f"the projector of {adapter.name}" if adapter is not None else f"the cached features in {store.directory}"
        raise BenchmarkError(
            f"{where} gave NaN or Inf for {len(bad)} image(s) (uids {[store.uids[i] for i in bad[:3]]}"
            f"{' ...' if len(bad) > 3 else ''}); the probes cannot use them. Check the checkpoint (--model-path) "
            "or the trained projector; NaN or Inf often means a dtype that overflows: try --dtype float32.")
    return pooled_rows
