"""What the hardware is: a count of GPUs of one kind, with its memory and dense bf16 peak."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BenchmarkError

# Dense bf16 tensor-core peak (TFLOP/s) and memory (GB) of common GPUs, from the vendors' datasheets.
GPUS = {
    "A100-40GB": (312.0, 40), "A100-80GB": (312.0, 80), "H100-80GB": (989.0, 80), "H200-141GB": (989.0, 141),
    "L40S-48GB": (362.0, 48), "L4-24GB": (121.0, 24), "A10-24GB": (125.0, 24), "A6000-48GB": (155.0, 48),
}
# Other spellings of the same GPUs: the bare model names resolve to the memory size most clusters have (the
# plan's header prints the one chosen); SXM/PCIe variants share the table's peak.
ALIASES = {"a100": "A100-80GB", "a10040": "A100-40GB", "a10080": "A100-80GB", "h100": "H100-80GB",
           "h10080": "H100-80GB", "h200": "H200-141GB", "h200141": "H200-141GB", "l40s": "L40S-48GB", "l4": "L4-24GB", "a10": "A10-24GB", "a6000": "A6000-48GB", "rtxa6000": "A6000-48GB"}
USABLE = 0.9  # of a GPU's memory: the rest goes to the CUDA context, allocator fragmentation, buffers
GB = 1e9


@dataclass(frozen=True)
class Gpus:
    """``count`` GPUs named ``name``, each with ``memory_gb`` of memory and ``peak_tflops`` dense bf16."""

    count: int
    name: str
    memory_gb: float
    peak_tflops: float

    @classmethod
    def parse(cls, text: str, peak_tflops: float | None = None) -> Gpus:
        """``[COUNTx]NAME``: a known NAME in any common spelling (``H100``, ``1xH100``, ``a100_40gb``, ``NVIDIA
        H200``), or a NAME ending in its memory (``MI300-192GB``) with a peak given."""
        m = re.fullmatch(r"\s*(?:(\d+)\s*[x*]\s*)?(.+?)\s*", text, re.I)
        if m is None or int(m.group(1) or 1) < 1:
            raise BenchmarkError(f"--gpus {text!r}: expected [COUNTx]NAME with COUNT >= 1, e.g. 2xA100-80GB.")
        count, name = int(m.group(1) or 1), m.group(2)
        known = canonical_gpu(name)
        if known:
            peak, mem = GPUS[known]
            return cls(count, known, mem, peak_tflops or peak)
        mm = re.fullmatch(r".*?(\d+)GB", name, re.I)
        if mm and peak_tflops:
            return cls(count, name, float(mm.group(1)), peak_tflops)
        raise BenchmarkError(unknown_gpu_message(text, name))

    @property
    def usable_bytes(self) -> float:
        """Bytes of one GPU that a run may fill."""
        return self.memory_gb * GB * USABLE

    def to_json(self) -> dict:
        return {"count": self.count, "name": self.name, "memory_gb": self.memory_gb,
                "peak_tflops_bf16": self.peak_tflops}


def _key(name: str) -> str:
    """``NVIDIA A100-SXM4-80GB`` -> ``a10080``: lower case, no vendor, form factor, separators or ``GB``."""
    key = re.sub(r"^(nvidia|tesla)\s*", "", name.strip().lower())
    key = re.sub(r"(sxm\d?|pcie|nvl)", "", key)
    return re.sub(r"[\s_\-]|gb?$", "", key)


def canonical_gpu(name: str) -> str | None:
    """The table's name of ``name`` in any spelling :data:`ALIASES` or the table knows; None if unknown."""
    keys = {_key(k): k for k in GPUS} | ALIASES
    return keys.get(_key(name))


def unknown_gpu_message(text: str, name: str) -> str:
    """The refusal of an unknown GPU: the closest known name, then all of them, then how to give another."""
    import difflib

    close = difflib.get_close_matches(name.upper(), [*GPUS, *(k.upper() for k in ALIASES)], n=1, cutoff=0.5)
    hint = f"did you mean {canonical_gpu(close[0]) or close[0]}? " if close else ""
    return (f"--gpus {text!r}: unknown GPU; {hint}known: {', '.join(GPUS)} (also H100, A100, H200, ... and "
            "COUNTx in front); another GPU as e.g. 2xMYGPU-80GB with --peak-tflops.")
