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
        """``COUNTxNAME`` with a known NAME, or a NAME ending in its memory (``MI300-192GB``) with a peak given."""
        m = re.fullmatch(r"(?:(\d+)x)?(.+)", text.strip())
        count, name = int(m.group(1) or 1), m.group(2)
        known = {k.lower(): k for k in GPUS}
        if name.lower() in known:
            peak, mem = GPUS[known[name.lower()]]
            return cls(count, known[name.lower()], mem, peak_tflops or peak)
        mm = re.fullmatch(r".*?(\d+)GB", name, re.I)
        if mm and peak_tflops:
            return cls(count, name, float(mm.group(1)), peak_tflops)
        raise BenchmarkError(f"--gpus {text!r}: unknown GPU. Use COUNTxNAME with NAME one of {', '.join(GPUS)}, "
                             "or e.g. 2xMYGPU-80GB together with --peak-tflops.")

    @property
    def usable_bytes(self) -> float:
        """Bytes of one GPU that a run may fill."""
        return self.memory_gb * GB * USABLE

    def to_json(self) -> dict:
        return {"count": self.count, "name": self.name, "memory_gb": self.memory_gb,
                "peak_tflops_bf16": self.peak_tflops}
