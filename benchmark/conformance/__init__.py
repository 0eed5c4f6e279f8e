"""Adapter conformance suite: the same checks for every adapter's tiny twin (timm style).

A registered adapter gets these checks with no test code of its own: the project's test suite runs them over
every built-in tiny twin, and ``python -m benchmark check-adapter NAME`` runs them over any registered adapter,
including one from a third-party package's entry point (``--list`` prints them). Every check runs the
adapter's real transformers classes on real photos (from the ``conformal-clip-data`` package, in the ``test``
extra).

The checks compare the adapter with the model itself, not only with itself: prompt ids with what the model's
own processor and chat template produce (``native_inputs``), the cached-feature path with the model's native
forward on the processor's outputs, the answer's end token with the one the template ends an assistant turn
with. A twin whose projector outputs zeros fails outright, since every comparison would then hold vacuously.
A failure names the adapter method at fault and gives expected vs actual.

The rooms, one job each:

* :mod:`.parts` – loading, the contract's required protocols, disjoint parts, what each regime trains;
* :mod:`.projection` – feature and image-token shapes, an informative projector;
* :mod:`.native` – the comparisons with the model's own processor, template and forward (``native-reference``);
* :mod:`.language_model` – the cached path against ``full_forward``, supervision, batching, a reloaded projector;
* :mod:`.full_run` – the whole protocol and its records;
* :mod:`.report` – how a check fails; :mod:`.photos` – the real photos; :mod:`.models` – which adapters run;
* :mod:`.test_adapter` – the pytest entry points (``test_*``, thin calls of the ``check_*`` functions, which
  tests also call directly on deliberately broken adapters) and their fixtures.
"""

from __future__ import annotations

from benchmark.adapters import contract

from .full_run import check_full_protocol
from .language_model import (
    check_cached_features_equal_full_forward,
    check_only_answer_tokens_are_supervised,
    check_saved_projector_reloads,
    check_scores_do_not_depend_on_batch_size,
)
from .models import MODELS_ENV, adapters_under_test, load, registry
from .native import (
    ANSWER,
    QUESTION,
    check_answer_end,
    check_answer_ids,
    check_bos,
    check_cached_path_equals_native,
    check_prompt_ids,
    native_end_id,
    native_or_skip,
)
from .parts import (
    changed,
    check_freezing,
    check_loads_from_saved_directory,
    check_parts_cover_model,
    check_projector_gradients,
    check_provides_the_contract,
    snapshot,
)
from .photos import CLASSES, DOMAIN, MemoryStore, encode_photos, real_photos, samples_for
from .projection import check_projector_is_informative, check_shapes
from .report import (
    ConformanceFailure,
    blame,
    blames_adapter,
    blaming,
    close,
    fail,
    first_difference,
    ids_text,
    position_text,
)
from .test_adapter import (
    adapter,
    encoded,
    list_checks,
    loaded_adapter,
    loaded_encoded,
    photos,
    shared_adapter,
    shared_encoded,
    test_answer_ends_with_the_models_end_token,
    test_answer_ids_match_the_processor,
    test_cached_features_equal_full_forward,
    test_cached_path_equals_native_forward,
    test_freezing,
    test_full_protocol_completes,
    test_loads_from_saved_directory,
    test_only_answer_tokens_are_supervised,
    test_parts_are_disjoint_and_cover_the_model,
    test_projector_gets_gradients_under_ft_proj,
    test_projector_output_is_informative,
    test_prompt_ids_match_the_processor,
    test_provides_the_contract,
    test_saved_projector_reloads_to_identical_scores,
    test_scores_do_not_depend_on_batch_size,
    test_shapes,
)

__all__ = [
    "ANSWER", "CLASSES", "DOMAIN", "MODELS_ENV", "QUESTION", "ConformanceFailure", "MemoryStore", "adapter",
    "adapters_under_test", "changed", "blame", "blames_adapter", "blaming", "check_answer_end", "check_answer_ids", "check_bos", "check_cached_features_equal_full_forward",
    "check_cached_path_equals_native", "check_freezing", "check_full_protocol", "check_loads_from_saved_directory",
    "check_only_answer_tokens_are_supervised", "check_parts_cover_model", "check_projector_gradients",
    "check_projector_is_informative", "check_prompt_ids", "check_provides_the_contract", "check_saved_projector_reloads",
    "check_scores_do_not_depend_on_batch_size", "check_shapes", "close", "contract", "encode_photos", "encoded", "fail",
    "first_difference", "ids_text", "list_checks", "load", "loaded_adapter", "loaded_encoded", "native_end_id", "native_or_skip", "photos", "position_text", "real_photos",
    "registry", "samples_for", "shared_adapter", "shared_encoded", "snapshot",
    # the pytest entry points, in the order they run (a star import hands them to pytest with the fixtures above)
    "test_loads_from_saved_directory", "test_provides_the_contract", "test_parts_are_disjoint_and_cover_the_model",
    "test_shapes", "test_projector_output_is_informative", "test_prompt_ids_match_the_processor",
    "test_answer_ids_match_the_processor", "test_answer_ends_with_the_models_end_token",
    "test_cached_path_equals_native_forward", "test_cached_features_equal_full_forward",
    "test_projector_gets_gradients_under_ft_proj", "test_only_answer_tokens_are_supervised", "test_freezing",
    "test_scores_do_not_depend_on_batch_size", "test_saved_projector_reloads_to_identical_scores",
    "test_full_protocol_completes",
]
