"""The pytest entry points of the conformance suite, one per check, and the fixtures they share.

The order of the ``test_*`` functions here is the order of ``check-adapter --list``; each one's docstring is its
line there. The logic lives in the ``check_*`` functions of the protocol modules beside this one. The file's
name starts with ``test_`` so that ``pytest --pyargs benchmark.conformance`` (what ``check-adapter`` runs) collects it.
"""

from __future__ import annotations

import pytest

from .full_run import check_full_protocol
from .language_model import (
    check_cached_features_equal_full_forward,
    check_only_answer_tokens_are_supervised,
    check_saved_projector_reloads,
    check_scores_do_not_depend_on_batch_size,
)
from .models import Broken, adapters_under_test, attempt, attempt_load, load_once
from .native import check_answer_end, check_answer_ids, check_cached_path_equals_native, check_prompt_ids
from .parts import (
    check_freezing,
    check_loads_from_saved_directory,
    check_parts_cover_model,
    check_projector_gradients,
    check_provides_the_contract,
)
from .photos import encode_photos, real_photos
from .projection import check_projector_is_informative, check_shapes
from .report import blaming


def list_checks() -> list[tuple[str, str]]:
    """(test name, one-line description) of every check, in the order they run."""
    import inspect

    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_") and inspect.isfunction(fn)]
    tests.sort(key=lambda item: item[1].__code__.co_firstlineno)
    return [(name, " ".join((fn.__doc__ or "").split())) for name, fn in tests]


# --- fixtures ------------------------------------------------------------------------------------------------

@pytest.fixture(params=adapters_under_test())
def adapter(request):
    """A fresh adapter, for checks that train it."""
    return load_once(request.param, request.node.nodeid)


@pytest.fixture(scope="module", params=adapters_under_test())
def loaded_adapter(request):
    """One adapter per model for the checks that leave it as it was (they are most checks: loading is not free),
    or the :class:`Broken` failure to build it. Not raised here: pytest would repeat a module fixture's error in
    every check of the module."""
    return attempt_load(request.param)


@pytest.fixture
def shared_adapter(loaded_adapter, request):
    if isinstance(loaded_adapter, Broken):
        loaded_adapter.raise_or_skip(request.node.nodeid)  # the first check shows the error; the others skip
    return loaded_adapter


@pytest.fixture(scope="session")
def photos():
    return real_photos()


@pytest.fixture
def encoded(adapter, photos):
    """Real images through the adapter's own processor and frozen vision encoder, kept in memory."""
    with blaming(adapter):
        return encode_photos(adapter, photos)


@pytest.fixture(scope="module")
def loaded_encoded(loaded_adapter, photos):
    """The shared adapter's photos encoded once, or the :class:`Broken` failure to encode them."""
    if isinstance(loaded_adapter, Broken):
        return loaded_adapter
    return attempt(f"encoding the photos with {loaded_adapter.name!r}", _encode_blaming, loaded_adapter, photos)


def _encode_blaming(adapter, photos):
    with blaming(adapter):
        return encode_photos(adapter, photos)


@pytest.fixture
def shared_encoded(shared_adapter, loaded_encoded, request):
    if isinstance(loaded_encoded, Broken):
        loaded_encoded.raise_or_skip(request.node.nodeid)
    return loaded_encoded


# --- pytest entry points: the order here is the order of `check-adapter --list` -----------------------------

def test_loads_from_saved_directory(shared_adapter):
    """Loads through from_pretrained from a saved directory; each of the three parts has parameters."""
    check_loads_from_saved_directory(shared_adapter)


def test_provides_the_contract(shared_adapter):
    """Provides every required protocol of the adapter contract (parts, projection, prompting, language model)."""
    check_provides_the_contract(shared_adapter)


def test_parts_are_disjoint_and_cover_the_model(shared_adapter):
    """vision, projector and LLM share no parameter and together (with other_modules()) cover the model."""
    check_parts_cover_model(shared_adapter)


def test_shapes(shared_adapter, shared_encoded, photos):
    """vision_features is (B, N, D); project gives (B, num_image_tokens, LLM width), num_image_tokens being the
    count the model's own processor writes for one image."""
    check_shapes(shared_adapter, shared_encoded[1], photos[0][0])


def test_projector_output_is_informative(shared_adapter, shared_encoded):
    """project() output is not all zeros and varies across images (a vacuous twin fails here)."""
    _, store, _ = shared_encoded
    check_projector_is_informative(shared_adapter, store.get([0, 4, 8]))  # one photo of each class


def test_prompt_ids_match_the_processor(shared_adapter, photos):
    """encode() prompt ids equal the model's own processor + chat template for the same question and image."""
    check_prompt_ids(shared_adapter, photos[0][0])


def test_answer_ids_match_the_processor(shared_adapter, photos):
    """encode() answer ids (with answer_prefix) equal the processor's rendering of the assistant turn."""
    check_answer_ids(shared_adapter, photos[0][0])


def test_answer_ends_with_the_models_end_token(shared_adapter, photos):
    """answer_end_id is the token the model's chat template ends an assistant turn with (else its EOS)."""
    check_answer_end(shared_adapter, photos[0][0])


def test_cached_path_equals_native_forward(shared_adapter, photos):
    """preprocess -> vision_features -> project -> lm_forward equals the model's native forward on its processor's
    outputs; vision_features equals what the native forward feeds the projector."""
    check_cached_path_equals_native(shared_adapter, photos[1][0])


def test_cached_features_equal_full_forward(shared_adapter, shared_encoded):
    """lm_forward(project(cached features)) equals the adapter's full_forward from pixels, on a padded batch."""
    check_cached_features_equal_full_forward(shared_adapter, shared_encoded)


def test_projector_gets_gradients_under_ft_proj(shared_adapter, shared_encoded):
    """Under FT-Proj every projector parameter gets a non-zero gradient and nothing else gets one."""
    _, store, samples = shared_encoded
    check_projector_gradients(shared_adapter, samples, store)


def test_only_answer_tokens_are_supervised(shared_adapter, shared_encoded):
    """Only the answer tokens and the end-of-answer token are supervised."""
    check_only_answer_tokens_are_supervised(shared_adapter, shared_encoded[2])


@pytest.mark.parametrize("regime", ["ft-proj", "ft-e2e"])
def test_freezing(adapter, encoded, regime):
    """One training step changes only the regime's trainable modules (FT-Proj: projector; FT-E2E: + LLM)."""
    check_freezing(adapter, encoded, regime)


def test_scores_do_not_depend_on_batch_size(shared_adapter, shared_encoded):
    """Class scores are the same at batch size 1 and 8 (left padding) and with the classes scored in chunks."""
    _, store, samples = shared_encoded
    check_scores_do_not_depend_on_batch_size(shared_adapter, store, samples)


def test_saved_projector_reloads_to_identical_scores(adapter, encoded, tmp_path):
    """A saved, reloaded fine-tuned projector gives identical scores."""
    check_saved_projector_reloads(adapter, encoded, tmp_path)


def test_full_protocol_completes(adapter, tmp_path):
    """`run` on the textile task, every regime, at a reduced size; its records name the adapter and its projector
    family, in the folders the schema gives them (what the leaderboard reads)."""
    check_full_protocol(adapter, tmp_path)
