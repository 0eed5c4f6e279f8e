"""The device side of ``plan --measure``: which device, its synchronisation, and peak memory.

On CUDA, peak memory is the caching allocator's: ``max_memory_allocated`` (tensors) and ``max_memory_reserved``
(what the allocator holds from the driver), both reset before the measured steps. On CPU there is no allocator
to ask: the peak is the process's resident-set high-water mark (``VmHWM`` of ``/proc/self/status``, reset by
writing ``5`` to ``/proc/self/clear_refs``, Linux's documented way) minus the resident set before the model was
built. It counts every page the process touched (allocator caches, libraries loaded on the way), so it is an
upper bound of the tensors' peak; the JSON names the method.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

GB = 1e9
STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    if not STATUS.exists():
        return None
    m = re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(), re.M)
    return int(m.group(1)) if m else None


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``), so that the resident set counts
    live memory: without it, memory freed earlier in the process (a previous model, another measurement) stays
    resident, and new tensors reuse it without the resident set growing, so the peak reads low."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:  # not glibc: nothing to trim with
        pass


class DeviceMeter:
    """Synchronise and read peak memory on ``device`` (CUDA: allocator peaks; CPU: resident-set high-water)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        if not self.cuda:
            _trim_heap()
        self.baseline = 0 if self.cuda else (_status_kb("VmRSS") or 0) * 1024

    @property
    def method(self) -> str:
        if self.cuda:
            return "torch.cuda.max_memory_allocated / max_memory_reserved, reset before the measured work"
        return ("CPU: resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs) minus the resident "
                "set before the model was built; an upper bound of the tensors' peak")

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset(self) -> None:
        """Start a new peak from what is held now."""
        self.sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        _trim_heap()
        if CLEAR_REFS.exists():
            try:
                CLEAR_REFS.write_text("5")
            except OSError:  # not permitted here: the peak then runs from the process's start
                pass

    def peak(self) -> dict[str, float | None]:
        """Peak GB since the last :meth:`reset`: ``allocated`` and ``reserved`` on CUDA, ``rss_delta`` on CPU."""
        self.sync()
        if self.cuda:
            return {"allocated": torch.cuda.max_memory_allocated(self.device) / GB,
                    "reserved": torch.cuda.max_memory_reserved(self.device) / GB, "rss_delta": None}
        hwm = _status_kb("VmHWM")
        return {"allocated": None, "reserved": None,
                "rss_delta": None if hwm is None else (hwm * 1024 - self.baseline) / GB}

    def release(self) -> None:
        """Give cached blocks back between measurements, so that one regime's cache is not the next one's peak."""
        import gc

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


def available_memory_gb() -> float:
    """Memory a CPU measurement may fill: MemAvailable of /proc/meminfo (16 GB where it cannot be read)."""
    info = Path("/proc/meminfo")
    if info.exists():
        m = re.search(r"^MemAvailable:\s+(\d+) kB", info.read_text(), re.M)
        if m:
            return int(m.group(1)) * 1024 / GB
    return 16.0
