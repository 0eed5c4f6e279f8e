"""projbench: does a multimodal LLM's cross-modal projection learn a domain's visual attributes, or its LLM?

Public API for plugins: ``hookimpl`` to mark hook implementations, ``AdapterSpec`` / ``ModelAdapter`` for
models and ``TaskSpec`` for tasks.
"""

from .hookspecs import hookimpl

__version__ = "0.1.0"
RESULT_SCHEMA_VERSION = 2  # 2: run identity hash, revisions, CIs, global batch, checksums (see README)

__all__ = ["hookimpl", "__version__", "RESULT_SCHEMA_VERSION"]
