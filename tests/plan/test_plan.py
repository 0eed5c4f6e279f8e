"""`plan` against independent counts: LLaVA-1.5-7B's published parameter split and training FLOPs, the paper's
hardware answer (full FT-E2E needs two 80 GB GPUs, sharded), and every built-in config's published size."""

from __future__ import annotations

import pytest
import torch

from benchmark.cli import main
from benchmark.errors import BenchmarkError
from benchmark.plan import plan
from benchmark.registry import Plugins

# Published totals (model cards / config-derived counts) of the built-in checkpoints.
PUBLISHED_TOTAL = {"llava15": 7.063e9, "llava15-13b": 13.35e9, "paligemma": 2.92e9, "limber-gemma2": 2.92e9,
                   "blip2": 3.745e9, "instructblip": 7.91e9, "smolvlm": 0.256e9, "idefics3": 8.46e9,
                   "qwen2vl": 2.21e9}


@pytest.fixture(scope="module")
def llava():
    return plan("llava15", "derm", gpus="2xA100-80GB", train_tokens=726).to_json()


def test_llava_parameters_match_the_published_split(llava):
    p = llava["parameters"]
    for key, want in (("vision", 303.5e6), ("projector", 21.0e6), ("llm", 6.738e9), ("total", 7.063e9)):
        assert p[key] == pytest.approx(want, rel=0.05), key
    # The projector exactly: Linear(1024, 4096) + Linear(4096, 4096), with biases.
    assert p["projector"] == 1024 * 4096 + 4096 + 4096 * 4096 + 4096


def test_a_726_token_training_sample_costs_about_30_tflop(llava):
    assert llava["tokens"]["train"] == 726
    e2e = llava["flops"]["train_per_sample"]["ft-e2e"]
    assert e2e == pytest.approx(30.0e12, rel=0.05)
    # Independently: 6 FLOPs per LLM parameter and token (forward 2, backward 4), plus a little attention.
    assert 6 * 6.738e9 * 726 < e2e < 1.1 * 6 * 6.738e9 * 726
    # FT-Proj needs no weight gradients of the LLM: about 4 instead of 6 FLOPs per LLM parameter and token.
    assert llava["flops"]["train_per_sample"]["ft-proj"] == pytest.approx(4 / 6 * e2e, rel=0.1)


def test_full_ft_e2e_needs_two_80gb_gpus_sharded(llava):
    e2e = llava["regimes"]["ft-e2e"]["engines"]
    assert not e2e["single"]["fits"] and not e2e["ddp"]["fits"]
    assert e2e["fsdp"]["fits"] and e2e["fsdp"]["recommended"]["global_batch"] == 32
    # Bytes per parameter written out: bf16 frozen (vision), fp32 trained weights, fp32 grads, 2 fp32 Adam moments.
    p = llava["parameters"]
    trained = p["projector"] + p["llm"]
    mem = e2e["fsdp"]["memory_gb"]
    assert mem["weights"] == pytest.approx(((p["total"] - trained) * 2 + trained * 4) / 2 / 1e9)
    assert mem["optimizer"] == pytest.approx(trained * 8 / 2 / 1e9)
    single = e2e["single"]["memory_gb"]
    assert single["weights"] + single["gradients"] + single["optimizer"] > 100  # ~16 bytes x 6.76 B
    assert llava["regimes"]["ft-e2e-lora"]["engines"]["single"]["fits"]
    assert llava["regimes"]["ft-proj"]["engines"]["single"]["fits"]
    # KV cache of class scoring: 2 (K, V) x 32 layers x 32 heads x 128 x 2 bytes = 0.5 MB per token and row.
    kv = llava["regimes"]["zero-shot"]["engines"]["single"]["memory_gb"]["kv_cache_scoring"]
    assert kv == pytest.approx(32 * 726 * 2 * 32 * 32 * 128 * 2 / 1e9)


@pytest.mark.parametrize("name", sorted(PUBLISHED_TOTAL))
def test_every_built_in_config_has_its_published_size(name):
    spec = Plugins(autoload=False).adapters.get(name)
    arch = spec.architecture()
    with torch.device("meta"):
        model = arch.build()
    parts = arch.parts(model)
    total = sum(p.numel() for p in model.parameters())
    assert total == pytest.approx(PUBLISHED_TOTAL[name], rel=0.05)
    # The three parts cover the model (up to buffers-only modules and shared embeddings).
    assert sum(sum(p.numel() for p in m.parameters()) for m in parts.values()) == pytest.approx(total, rel=0.01)


def test_plan_without_a_config_names_the_fix(capsys):
    with pytest.raises(BenchmarkError, match="no configuration ships for model 'llava15-tiny'.*--model-path"):
        plan("llava15-tiny", "derm", gpus="1xA100-80GB")
    assert main(["plan", "--model", "llava15", "--task", "derm", "--gpus", "3xTPU"]) == 2
    assert "unknown GPU" in capsys.readouterr().err


def test_hours_are_the_flops_at_the_stated_mfu_on_each_engines_gpus(llava):
    a, r = llava["assumptions"], llava["regimes"]["ft-e2e"]
    # A100: 312 TFLOP/s in bf16 (datasheet); one epoch over the train split, one pass over the test split.
    flops = a["n_train"] * r["flops_per_train_sample"] + a["n_test"] * r["flops_per_eval_sample"]
    one_gpu_hours = flops / (312e12 * a["mfu"]) / 3600
    engines = r["engines"]
    assert engines["single"]["hours"] == pytest.approx(one_gpu_hours)
    assert engines["ddp"]["hours"] == pytest.approx(one_gpu_hours / 2)
    assert engines["fsdp"]["hours"] == pytest.approx(one_gpu_hours / 2)


def test_a_sharded_row_adds_the_root_unit_and_one_decoder_layer_gathered_whole(llava):
    """FSDP2 as projbench wraps it: the decoder layers are units, everything else (CLIP, projector, embeddings, LM
    head, final norm) is the root unit, whole for the forward and backward, beside one gathered layer."""
    p = llava["parameters"]
    layer = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    embed = 32064 * 4096
    # FT-E2E: CLIP frozen in bf16; projector, embeddings, LM head, final norm and the layer trained (fp32).
    trained_root = p["projector"] + 2 * embed + 4096
    mem = llava["regimes"]["ft-e2e"]["engines"]["fsdp"]["memory_gb"]
    assert mem["gathered_weights"] == pytest.approx((p["vision"] * 2 + (trained_root + layer) * 4) / 1e9)
    assert mem["gathered_gradients"] == pytest.approx((trained_root + layer) * 4 / 1e9)
    # FT-Proj: the projector has no layer list, so the whole model is the root unit: all of it gathered.
    proj = llava["regimes"]["ft-proj"]["engines"]["fsdp"]["memory_gb"]
    assert proj["gathered_weights"] == pytest.approx(((p["total"] - p["projector"]) * 2 + p["projector"] * 4) / 1e9)
    for engine in ("single", "ddp"):
        assert llava["regimes"]["ft-e2e"]["engines"][engine]["memory_gb"]["gathered_weights"] == 0


def test_zero3_rows_have_the_fsdp_memory_model(llava):
    """ZeRO-3 partitions parameters, gradients and optimizer state like FSDP full-shard: the same numbers."""
    for regime, r in llava["regimes"].items():
        assert list(r["engines"]) == ["single", "ddp", "fsdp", "zero3"], regime
        assert r["engines"]["zero3"] == r["engines"]["fsdp"], regime
    e2e = llava["regimes"]["ft-e2e"]["engines"]
    assert e2e["zero3"]["fits"] and not e2e["single"]["fits"]
    # Sharded over 2 GPUs: half of the single-GPU weights, gradients and Adam state.
    for key in ("weights", "gradients", "optimizer"):
        assert e2e["zero3"]["memory_gb"][key] == pytest.approx(e2e["single"]["memory_gb"][key] / 2), key


def test_task_sizes_are_the_task_definitions_counts(llava):
    # tasks/paper.py: DermNet's hub copies hold 15,297 train and 3,937 test images.
    assert (llava["assumptions"]["n_train"], llava["assumptions"]["n_test"]) == (15297, 3937)
    assert llava["assumptions"]["task_size"] == "published split sizes of derm"
    reg = Plugins(autoload=False)
    for name, counts in (("eurosat", "16,200 train / 5,400 test"), ("textures", "train1: 1,880 / test1: 1,880")):
        assert counts in reg.tasks.get(name).description, name


def test_qwen2vl_vision_flops_are_counted_without_the_merger():
    """Independent count for a ViT on N patches: 2 FLOPs per weight and patch (every linear layer and the patch
    embedding, a convolution whose kernel covers one patch) plus attention, 2 x N^2 x width for Q.K^T and again
    for A.V per block. FlopCounterMode also skips bias adds and norms (~0.1% of the weights here), so 0.5%
    tolerance; counting the merger (the projector) too would add ~1.2%, leaving out attention ~12%."""
    from torch.utils.flop_counter import FlopCounterMode

    arch = Plugins(autoload=False).adapters.get("qwen2vl").architecture()
    with torch.device("meta"):
        model = arch.build()
    vision = arch.parts(model)["vision"]
    vc = model.config.vision_config
    n = (arch.image_size // vc.patch_size) ** 2  # 448 px / 14 = 32 x 32 patches
    px = torch.empty((1, 3, arch.image_size, arch.image_size), device="meta")
    with FlopCounterMode(display=False) as counter:
        out = arch.vision(model, px)
    assert tuple(out.last_hidden_state.shape) == (n, vc.embed_dim) == arch.feature_shape  # what enters the merger
    weights = sum(p.numel() for p in vision.parameters())
    want = 2 * weights * n + 4 * vc.depth * n * n * vc.embed_dim
    assert counter.get_total_flops() == pytest.approx(want, rel=0.005)
    assert isinstance(model.model.visual.merger, torch.nn.Module) and model.model.visual.merger.__class__.__name__ != "Identity"


def test_the_json_has_the_documented_keys(llava):
    """docs/plan.md's table, key by key: what `plan --json` prints, in its order."""
    assert list(llava) == ["model", "task", "config_source", "gpus", "assumptions", "parameters", "tokens", "flops",
                           "hours_feature_extraction", "regimes"]
    assert list(llava["gpus"]) == ["count", "name", "memory_gb", "peak_tflops_bf16"]
    assert list(llava["assumptions"]) == ["mfu", "dtype_bytes", "usable_memory_fraction", "trained_weight_bytes",
                                          "gradient_bytes", "adam_bytes", "lora_rank", "score_rows", "task_size",
                                          "n_train", "n_test"]
    assert list(llava["parameters"]) == ["vision", "projector", "llm", "total", "lora"]
    assert list(llava["tokens"]) == ["train", "prompt", "image", "longest_answer", "answers_total", "text_counted_by"]
    assert list(llava["flops"]) == ["vision_per_image", "projector_per_image", "train_per_sample", "eval_per_sample"]
    assert list(llava["regimes"]) == ["zero-shot", "ft-proj", "ft-e2e", "ft-e2e-lora"]
    ft = llava["regimes"]["ft-e2e"]
    assert list(ft) == ["trainable_parameters", "flops_per_train_sample", "flops_per_eval_sample", "hours_train",
                        "hours_eval", "engines"]
    assert list(ft["engines"]["fsdp"]) == ["memory_gb", "peak_gb", "fits", "gpu_gb", "recommended", "hours",
                                          "instead"]
    assert set(ft["engines"]["fsdp"]["recommended"]) == {"micro_batch", "accumulation_steps", "gradient_checkpointing",
                                                         "global_batch", "activations_at_micro_batch"}
    assert ft["engines"]["single"]["recommended"] is None
    assert ft["engines"]["single"]["instead"].startswith("would fit: fsdp/zero3 here")
    assert ft["engines"]["fsdp"]["instead"] is None
    zero = llava["regimes"]["zero-shot"]
    assert zero["flops_per_train_sample"] is None and zero["hours_train"] is None


def test_a_group_s_measured_row_counts_every_process_s_samples_and_peak():
    """`plan --measure` of a launched group: 2 processes x micro-batch 4 per step; its FLOP/s are the group's and
    its MFU is over both GPUs' peak, its memory against the FSDP row's per-GPU figure."""
    from benchmark.plan.measure_report import train_record

    p = plan("llava15", "derm", gpus="2xA100-80GB", train_tokens=726)
    raw = {"micro_batch": 4, "gradient_checkpointing": True, "step_seconds": [2.0, 4.0, 3.0], "tokens_per_sample": 700,
           "peak_gb": {"allocated": 50.0, "reserved": 60.0, "rss_delta": None}}
    r = train_record(p, "ft-e2e", raw, peak_tflops=312.0, mfu=0.4, engine="fsdp", processes=2)
    flops = p.flops.train_per_sample["ft-e2e"]
    assert r["samples_per_second"] == pytest.approx(8 / 3.0)
    assert r["achieved_tflops"] == pytest.approx(flops * 8 / 3.0 / 1e12)
    assert r["mfu"] == pytest.approx(flops * 8 / 3.0 / 1e12 / (2 * 312.0))
    m = p.to_json()["regimes"]["ft-e2e"]["engines"]["fsdp"]["memory_gb"]
    want = sum(m[k] for k in ("weights", "gradients", "optimizer", "gathered_weights", "gathered_gradients"))
    assert r["predicted_peak_gb"] == pytest.approx(want + 4 * m["activations_per_sample_checkpointed"])
    assert r["memory_ratio"] == pytest.approx(50.0 / r["predicted_peak_gb"])
    # Each GPU does 4 samples per step: the predicted step time is one GPU's share at the planned MFU.
    assert r["predicted_step_seconds"] == pytest.approx(flops * 4 / (312e12 * 0.4))
