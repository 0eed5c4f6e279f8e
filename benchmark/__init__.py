"""projbench: does a multimodal LLM's cross-modal projection learn a domain's visual attributes, or its LLM?

Public API for plugins: ``hookimpl`` to mark hook implementations, ``AdapterSpec`` / ``ModelAdapter`` for
models and ``TaskSpec`` for tasks.
"""

from .hookspecs import hookimpl
from .schema import RESULT_SCHEMA_VERSION

__version__ = "0.1.0"

__all__ = ["hookimpl", "__version__", "RESULT_SCHEMA_VERSION"]
