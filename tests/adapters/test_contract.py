"""The adapter contract as small protocols, and registries that hold specs as data (listing imports no torch)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmark.adapters import catalog, contract
from benchmark.adapters.spec import AdapterSpec, Ref, TinyFactory
from benchmark.analyses import AnalysisSpec, AnalysisUnsupported
from benchmark.errors import BenchmarkError
from benchmark.registry import Plugins

LIST_PROBE = """
import json, sys, time
from benchmark.cli import main
main(["list", sys.argv[1]])
print(json.dumps({"heavy": sorted(m for m in ("torch", "sklearn", "transformers", "scipy") if m in sys.modules),
                  "cpu_s": time.process_time()}))
"""


@pytest.mark.parametrize("what", ["models", "tasks", "plugins", "analyses"])
def test_list_imports_no_torch_and_takes_under_a_second_of_cpu(what):
    out = subprocess.run([sys.executable, "-c", LIST_PROBE, what], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe["heavy"] == [], f"`list {what}` imported {probe['heavy']}"
    assert probe["cpu_s"] < 1.0, f"`list {what}` took {probe['cpu_s']:.2f} s of CPU"


def test_list_analyses_shows_what_each_requires(capsys):
    from benchmark.cli import main

    main(["list", "analyses"])
    out = capsys.readouterr().out
    assert "requires" in out and "layer-access" in out


def test_family_modules_keep_their_catalog_entries():
    from benchmark.adapters import llava, qwen2vl

    assert llava.ADAPTERS is catalog.LLAVA
    assert [s.name for s in llava.ADAPTERS] == ["llava15", "llava15-13b", "llava15-tiny"]
    twin = {s.name: s for s in qwen2vl.ADAPTERS}["qwen2vl-tiny"]
    assert twin.tiny and twin.factory.options == {"image_size": qwen2vl.TINY_IMAGE_SIZE}


def test_every_reference_in_the_catalog_resolves():
    for spec in catalog.ADAPTERS:
        factory = spec.factory
        assert isinstance(factory.adapter, Ref) and isinstance(factory.adapter.resolve(), type), spec.name
        if isinstance(factory, TinyFactory):
            assert callable(factory.build.resolve()), spec.name
        if spec.architecture is not None:
            assert callable(spec.architecture.resolve()), spec.name


def test_a_string_factory_is_a_lazy_reference():
    spec = AdapterSpec(name="x", factory="benchmark.adapters.llava:load_llava_tiny", checkpoint="-",
                       projector_family="mlp", projector_modules="-")
    assert isinstance(spec.factory, Ref) and str(spec.factory) == "benchmark.adapters.llava:load_llava_tiny"
    with pytest.raises(ValueError, match="module:attribute"):
        Ref("no_colon")


def _bare(cls):
    return object.__new__(cls)  # the class's methods, no model loaded


def test_built_in_adapters_provide_the_contract():
    from benchmark.adapters.compose import ComposeAdapter
    from benchmark.adapters.llava import LlavaAdapter

    for cls in (LlavaAdapter, ComposeAdapter):
        assert contract.missing(_bare(cls), contract.REQUIRED) == {}, cls
        assert contract.lacks(_bare(cls), "layer-access") == []
    assert contract.lacks(_bare(LlavaAdapter), "native-reference") == []
    # A model composed from parts has no native processor or forward: declared, not discovered at run time.
    assert contract.lacks(_bare(ComposeAdapter), "native-reference") == ["native_inputs"]


def test_a_base_class_stub_does_not_count_as_provided():
    from benchmark.adapters.base import ModelAdapter

    class NoLayers(ModelAdapter):
        def project(self, features):
            return features

    gaps = contract.missing(_bare(NoLayers), ("projection", "layer-access"))
    assert gaps["layer-access"] == ["language_decoder"]
    assert "project" not in gaps["projection"] and "vision_features" in gaps["projection"]


def test_an_analysis_is_refused_before_it_runs_when_a_protocol_is_missing():
    from benchmark.adapters.base import ModelAdapter

    ran = []
    spec = AnalysisSpec(name="needs-layers", run=ran.append, citation="-", description="-",
                        requires=("layer-access",))

    class Ctx:
        adapter = _bare(ModelAdapter)

    with pytest.raises(AnalysisUnsupported, match=r"layer-access \(language_decoder\)"):
        spec.execute(Ctx())
    assert ran == []


def test_an_unknown_protocol_name_is_rejected_at_registration():
    with pytest.raises(BenchmarkError, match="unknown protocol"):
        AnalysisSpec(name="typo", run=print, citation="-", description="-", requires=("layer-acess",))


def test_built_in_analyses_declare_known_protocols():
    for spec in Plugins(autoload=False).analyses:
        assert spec.requires and not contract.unknown_protocols(spec.requires), spec.name
        assert isinstance(spec.run, Ref)


def test_the_documented_plugin_path_registers_without_torch():
    """The BakLLaVA example registers through `from benchmark import ...` and names its adapter as a string."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "projbench-bakllava"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from projbench_bakllava import plugin; "
            "names = []; plugin.register_adapters(register=lambda s: names.append(s.name)); "
            "print(names, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(example)], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert out.strip() == "['bakllava', 'bakllava-tiny'] False"


def test_the_plugin_api_is_exported_from_benchmark():
    import benchmark

    for name in ("hookimpl", "AdapterSpec", "HFAdapter", "ModelAdapter", "model_family", "Checkpoint", "TinyTwin",
                 "hub_factory", "tiny_factory", "TaskSpec", "AnalysisSpec", "build_tokenizer",
                 "rerandomise_zero_matrices", "contract"):
        assert getattr(benchmark, name) is not None, name
    assert set(benchmark.__all__) >= {"HFAdapter", "model_family"}


def test_the_conformance_suite_fails_an_adapter_missing_a_required_protocol():
    from benchmark import conformance as C
    from benchmark.adapters.llava import LlavaAdapter

    class NoProjection(LlavaAdapter):
        vision_features = C.contract.not_provided(lambda self, pixel_values: None)

    with pytest.raises(C.ConformanceFailure, match=r"'projection' protocol[\s\S]*vision_features"):
        C.test_provides_the_contract(_bare(NoProjection))
    C.test_provides_the_contract(_bare(LlavaAdapter))


def test_an_unknown_projector_family_is_refused_with_a_suggestion():
    from benchmark.adapters.spec import PROJECTOR_FAMILIES, AdapterSpec, register_projector_family
    from benchmark.errors import BenchmarkError

    with pytest.raises(BenchmarkError, match=r"x: unknown projector_family 'pixel_shufle'; did you mean 'pixel-shuffle'\?"):
        AdapterSpec(name="x", factory="a:b", checkpoint="-", projector_family="pixel_shufle", projector_modules="-")
    register_projector_family("hyper-net", "a projector whose weights another network writes")
    try:
        assert AdapterSpec(name="y", factory="a:b", checkpoint="-", projector_family="hyper-net",
                           projector_modules="-").projector_family == "hyper-net"
    finally:
        del PROJECTOR_FAMILIES["hyper-net"]
    assert {s.projector_family for s in Plugins(autoload=False).adapters} <= set(PROJECTOR_FAMILIES)


def test_the_guide_documents_every_spec_field_and_projector_family():
    import dataclasses
    from pathlib import Path

    from benchmark.adapters.spec import PROJECTOR_FAMILIES

    guide = (Path(__file__).resolve().parents[2] / "docs" / "adding-an-adapter.md").read_text()
    rows = {line.split("|")[1].strip() for line in guide.splitlines() if line.startswith("| `")}
    assert {f"`{f.name}`" for f in dataclasses.fields(AdapterSpec)} <= rows
    assert {f"`{name}`" for name in PROJECTOR_FAMILIES} <= rows
    assert {"`expects_bos`", "`stacked_image_embeds`"} <= rows
