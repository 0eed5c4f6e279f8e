"""Composed MLLMs (adapters/compose.py): projectors by name, specs, trained projectors, and bad input.

The two tiny compositions also run the whole conformance suite (tests/conformance/test_conformance.py covers every tiny twin).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from benchmark.adapters.compose import build_projector
from benchmark.errors import ModelLoadError
from benchmark.registry import Plugins
from benchmark.train.loop import projector_state

TINY = "compose-dinosiglip-mlp-tiny"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The tiny composition's folder (spec + weights), as a user would hand it to --model-path."""
    adapter = Plugins(autoload=False).adapters.get(TINY).factory(device="cpu")
    out = tmp_path_factory.mktemp("compose") / "model"
    shutil.copytree(adapter.checkpoint, out)
    return out


def compose(path):
    return Plugins(autoload=False).adapters.get("compose").factory(source=path and str(path), device="cpu")


def test_mlp2x_gelu_is_llavas_projector():
    torch.manual_seed(0)
    proj, tokens = build_projector("mlp2x_gelu", 6, 5)
    x = torch.randn(2, 7, 6)
    w1, b1, w2, b2 = proj[0].weight, proj[0].bias, proj[2].weight, proj[2].bias
    gelu = 0.5 * (x @ w1.T + b1) * (1 + torch.erf((x @ w1.T + b1) / 2 ** 0.5))  # exact GELU
    torch.testing.assert_close(proj(x), gelu @ w2.T + b2)
    assert tokens is None  # one output token per patch


@pytest.mark.parametrize("kind", ["qformer", "perceiver"])
def test_query_projectors_emit_a_fixed_number_of_tokens_and_ignore_token_order(kind):
    torch.manual_seed(0)
    proj, tokens = build_projector({"type": kind, "num_queries": 3, "depth": 1, "heads": 2, "width": 8}, 6, 5)
    x = torch.randn(2, 7, 6)
    out = proj(x)
    assert tokens == 3 and out.shape == (2, 3, 5)
    assert proj(torch.randn(2, 11, 6)).shape == (2, 3, 5)  # any number of image tokens in, 3 out
    # Attention without positions: reading the patches in another order gives the same tokens.
    torch.testing.assert_close(proj(x[:, torch.randperm(7)]), out, atol=1e-5, rtol=1e-5)


def test_a_folder_spec_loads_with_compose_and_a_trained_projector_is_used(tiny_dir, tmp_path):
    twin = Plugins(autoload=False).adapters.get(TINY).factory(device="cpu")
    mine = compose(tiny_dir)
    feats = torch.randn(2, twin.num_image_tokens, 64)
    torch.testing.assert_close(mine.project(feats), twin.project(feats))
    # Bring a trained projector: a run's projector.safetensors (projector_state) next to the spec.
    with torch.no_grad():
        for p in mine.projector_module().parameters():
            p.add_(0.5)
    trained = tmp_path / "trained"
    shutil.copytree(tiny_dir, trained)
    save_file(projector_state(mine), str(trained / "projector.safetensors"))
    torch.testing.assert_close(compose(trained).project(feats), mine.project(feats))
    assert not torch.allclose(compose(trained).project(feats), twin.project(feats))


def edited(tiny_dir, tmp_path, **changes):
    out = tmp_path / "edited"
    shutil.copytree(tiny_dir, out)
    spec = json.loads((out / "config.json").read_text())
    spec.update(changes)
    (out / "config.json").write_text(json.dumps(spec))
    return out


def test_bad_specs_name_the_problem(tiny_dir, tmp_path):
    spec = json.loads((tiny_dir / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="needs --model-path SPEC"):
        compose(None)
    with pytest.raises(ModelLoadError, match="timm has no model 'vit_small_patch14_dinov'. Did you mean "
                                             "'vit_small_patch14_dinov2'"):
        compose(edited(tiny_dir, tmp_path, vision={**spec["vision"][0], "name": "vit_small_patch14_dinov"}))
    shutil.rmtree(tmp_path / "edited")
    with pytest.raises(ModelLoadError, match="Unknown CLIP model 'ViT-SO400M-14-SigLP'.*Did you mean "
                                             "'ViT-SO400M-14-SigLIP'"):
        compose(edited(tiny_dir, tmp_path, vision={"library": "open_clip", "name": "ViT-SO400M-14-SigLP",
                                                   "pretrained": "webli"}))
    shutil.rmtree(tmp_path / "edited")
    with pytest.raises(ModelLoadError, match="Unknown projector 'mlp2x_gleu'. Did you mean 'mlp2x_gelu'"):
        compose(edited(tiny_dir, tmp_path, projector="mlp2x_gleu"))
    shutil.rmtree(tmp_path / "edited")
    with pytest.raises(ModelLoadError, match=r"timm weights of 'vit_small_patch14_dinov2' .*`hf "
                                             r"download timm/vit_small_patch14_dinov2\.lvd142m model\.safetensors"):
        compose(edited(tiny_dir, tmp_path, vision={"library": "timm", "name": "vit_small_patch14_dinov2",
                                                   "pretrained": True}))


def test_missing_weight_files_are_named(tiny_dir, tmp_path):
    spec = json.loads((tiny_dir / "config.json").read_text())
    cases = [({"vision": [{**spec["vision"][0], "weights": "vision/missing.safetensors"}, spec["vision"][1]]},
              "vision weights 'vision/missing.safetensors' not found"),
             ({"projector_weights": "trained/projector.safetensors"},
              "projector weights 'trained/projector.safetensors' not found"),
             ({"llm": "./no-such-llm"}, "LLM folder .*no-such-llm not found")]
    for change, message in cases:
        with pytest.raises(ModelLoadError, match=message):
            compose(edited(tiny_dir, tmp_path, **change))
        shutil.rmtree(tmp_path / "edited")


def test_projector_width_must_match_the_llm(tiny_dir, tmp_path):
    out = edited(tiny_dir, tmp_path)
    proj, _ = build_projector("mlp2x_gelu", 64, 128)  # trained for an LLM of hidden size 128; this one has 64
    save_file({k: v.contiguous() for k, v in proj.state_dict().items()}, str(out / "projector.safetensors"))
    with pytest.raises(ModelLoadError, match="maps vision width 64 to the LLM's hidden size 64, but 0.weight has "
                                             r"shape \(128, 64\)"):
        compose(out)


def test_the_baselines_use_the_clip_of_a_composed_models_own_backbone(tmp_path, tiny_dir):
    from benchmark.config import ProbeConfig, RunConfig
    from benchmark.protocol import Runner

    qformer = Plugins(autoload=False).adapters.get("compose-clip-qformer-tiny").factory(device="cpu")
    spec = Plugins(autoload=False).adapters.get("compose")
    assert spec.clip(qformer.checkpoint) == (f"local-dir:{qformer.checkpoint}/vision/0", None)
    assert spec.clip(str(tiny_dir)) is None  # a fusion of timm backbones has no single CLIP
    assert qformer.projector_family == "q-former" and compose(tiny_dir).projector_family == "mlp"
    cfg = RunConfig(model="compose", model_path=qformer.checkpoint, task="textile", max_per_class=3,
                    regimes=("baselines",), results_dir=str(tmp_path), probe=ProbeConfig(max_epochs=1),
                    progress=False)
    [m] = Runner(cfg, log=lambda *_: None).run()
    assert m["clip"]["matches_adapter"] and m["clip"]["model"] == f"local-dir:{qformer.checkpoint}/vision/0"
