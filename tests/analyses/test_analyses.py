"""Layer-wise analyses: known answers on tiny twins, checked against independent computations, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.analyses import (
    AnalysisContext,
    AnalysisOptions,
    AnalysisUnsupported,
    knockout,
    mir,
    modality_gap,
    weight_change,
)
from benchmark.analyses.hidden import HiddenRequest, HiddenStore, extract_hidden, hidden_batch
from benchmark.analyses.logit_lens import ranks_of
from benchmark.cli import main
from benchmark.conformance import MemoryStore, samples_for
from benchmark.evaluate.batching import IGNORE, collate
from benchmark.evaluate.probe import train_probe
from benchmark.evaluate.prompt import build_question
from benchmark.registry import Plugins
from conftest import add_dist

CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"


@pytest.fixture(scope="module")
def llava():
    return Plugins(autoload=False).adapters.get("llava15-tiny").factory()


@pytest.fixture(scope="module")
def photos(llava, real_images):
    feats = llava.vision_features(llava.preprocess([im for im, _ in real_images]))
    return samples_for(real_images), MemoryStore(feats)


def questions_for(samples, idx, seed=0):
    return [build_question(DOMAIN, CLASSES, seed, samples[i].uid) for i in idx]


# --- registry and command line ---------------------------------------------------------------------------------

def test_list_analyses_shows_all_six_with_citations(capsys):
    assert main(["list", "analyses"]) == 0
    out = capsys.readouterr().out
    for name in ("layer-probe", "logit-lens", "modality-gap", "mir", "knockout", "weight-change"):
        assert name in out
    for author in ("Verma", "Liang", "Huang", "Zhang"):
        assert author in out


def test_unknown_analysis_gets_a_suggestion(tmp_path, capsys):
    code = main(["analyze", "--model", "llava15-tiny", "--task", "textile", "--analysis", "knockuot",
                 "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Unknown analysis 'knockuot'. Did you mean 'knockout'?" in err
    assert "list analyses" in err


def test_analyze_without_a_run_names_the_run_command(tmp_path, capsys):
    code = main(["analyze", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "4",
                 "--results-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "No finished run of llava15-tiny on textile@max4" in err
    assert "python -m benchmark run --model llava15-tiny --task textile" in err and "--max-per-class 4" in err


@pytest.mark.parametrize("flag, value", [("--tokens-per-image", "0"), ("--probe-max-epochs", "0"),
                                         ("--batch-size", "0")])
def test_bad_option_values_are_refused_with_their_name(tmp_path, capsys, flag, value):
    code = main(["analyze", "--model", "llava15-tiny", "--task", "textile", flag, value,
                 "--results-dir", str(tmp_path)])
    assert code == 2
    assert flag in capsys.readouterr().err


def test_unknown_regime_is_refused(tmp_path, capsys):
    code = main(["analyze", "--model", "llava15-tiny", "--task", "textile", "--regimes", "ft-all",
                 "--results-dir", str(tmp_path)])
    assert code == 2
    assert "Unknown regime 'ft-all'" in capsys.readouterr().err


# --- MIR -------------------------------------------------------------------------------------------------------

def samples_with_covariance(mean, variances, n=64, seed=0):
    """Rows whose sample mean is ``mean`` and sample covariance exactly diag(variances)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, len(variances)))
    q, _ = np.linalg.qr(z - z.mean(0))       # orthonormal columns orthogonal to the ones vector: mean 0
    return torch.tensor(q * math.sqrt(n - 1) * np.sqrt(variances) + mean)


def test_frechet_distance_of_identical_populations_is_zero():
    x = torch.randn(200, 12, generator=torch.Generator().manual_seed(1)) * 3 + 1
    assert abs(mir.frechet_distance(x, x.clone())) < 1e-9
    assert abs(mir.layer_mir(x, x.clone())) < 1e-9


def test_exact_and_compat_frechet_match_closed_forms_and_differ():
    # Diagonal covariances: Tr((S_V S_T)^1/2) = sum sqrt(a_i b_i); the reference's fast mode uses sum a_i b_i.
    a, b = np.array([1.0, 2, 3, 4, 5]), np.array([5.0, 4, 3, 2, 1])
    mu_v, mu_t = np.array([1.0, 0, 0, 0, 0]), np.zeros(5)
    x, y = samples_with_covariance(mu_v, a, seed=2), samples_with_covariance(mu_t, b, seed=3)
    exact = float(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + 1.0)
    compat = float(np.sum(a + b - 2 * a * b) + 1.0)
    assert mir.frechet_distance(x, y) == pytest.approx(exact, abs=1e-9)            # 4.744...
    assert mir.frechet_distance(x, y, compat=True) == pytest.approx(compat, abs=1e-9)  # -39
    # Tr(S_V S_T) = 35 against Tr((S_V S_T)^1/2) = 13.13: the defect the compat mode reproduces.
    assert float(np.sum(a * b)) == 35 and abs(float(np.sum(np.sqrt(a * b))) - 13.128) < 1e-3


def test_trace_of_the_matrix_root_equals_scipy_sqrtm_on_random_covariances():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(4)
    for d in (3, 8, 20):
        a, b = rng.standard_normal((d, d + 5)), rng.standard_normal((d, d + 2))
        s1, s2 = a @ a.T / d, b @ b.T / d
        ref = float(np.trace(sqrtm(s1 @ s2)).real)
        assert mir.trace_sqrt_product(torch.tensor(s1), torch.tensor(s2)) == pytest.approx(ref, rel=1e-8)


def test_mir_scaling_and_outlier_replacement_follow_the_paper():
    text = torch.tensor([[3.0, 4.0], [0.0, 10.0]])            # norms 5 and 10: mean 7.5
    image = torch.tensor([[7.5, 0.0]])
    img, txt = mir.text_centric_scale(image, text)
    assert torch.allclose(img, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(txt, text.double() / 7.5)
    x = torch.ones(50, 3, dtype=torch.float64)
    x[:25] *= 1.1
    x[7] = torch.tensor([100.0, 0, 0])                       # one token with a massive activation
    cleaned = mir.replace_outliers(x)
    assert torch.equal(cleaned[7], x.median(dim=0).values)
    assert torch.equal(cleaned[torch.arange(50) != 7], x[torch.arange(50) != 7])


# --- modality gap ----------------------------------------------------------------------------------------------

def test_modality_gap_is_zero_for_identical_populations_and_the_shift_otherwise():
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert modality_gap.mean_gap(x, x.clone()) == 0.0
    assert modality_gap.centred_gap(x, x.clone()) < 1e-12
    shift = torch.tensor([3.0, -4.0, 0, 0, 0, 12.0], dtype=torch.float64)  # norm 13
    assert modality_gap.mean_gap(x, x + shift) == pytest.approx(13.0, abs=1e-9)
    # Centred and unit-normalised: two opposite clusters far from their joint mean sit at +-u, a gap of 2.
    far = torch.tensor([1000.0, 0, 0, 0, 0, 0], dtype=torch.float64)
    assert modality_gap.centred_gap(x + far, x - far) == pytest.approx(2.0, abs=1e-3)
    perm = modality_gap.permutation_gaps(x, x + shift, 50, seed=0)
    assert perm.shape == (50,) and float(perm.max()) < 13.0    # no regrouping separates them better


# --- hidden states, layer probe, logit lens ----------------------------------------------------------------------

def test_hidden_states_match_the_models_own_hidden_states(llava, photos):
    samples, store = photos
    idx = [0, 5, 9]
    qs = questions_for(samples, idx)
    out = hidden_batch(llava, store.get(idx), qs, k=4)
    n_layers = len(llava.llm_layers()) + 1
    assert out["image_mean"].shape == (3, n_layers, 64) and out["image_tokens"].shape == (3, n_layers, 4, 64)
    batch = collate([llava.encode(q) for q in qs], llava.pad_token_id, with_answer=False)
    # Independent path: the full forward from pixels with the model's own output_hidden_states.
    from benchmark.tasks.base import decode_image

    px = llava.preprocess([decode_image(samples[i].load_bytes()) for i in idx])
    with torch.no_grad():
        ref = llava.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          position_ids=batch["position_ids"], pixel_values=px, output_hidden_states=True,
                          return_dict=True)
    image = batch["input_ids"] == llava.image_token_id
    # Text states: the prompt after the last image token, without the tokenizer's special tokens (never the
    # start token or the system prompt before the image), written out position by position.
    specials = set(llava.tokenizer.all_special_ids)
    text = torch.zeros_like(image)
    for row, ids in enumerate(batch["input_ids"].tolist()):
        last = max(j for j, t in enumerate(ids) if t == llava.image_token_id)
        for j in range(last + 1, len(ids)):
            text[row, j] = bool(batch["attention_mask"][row, j]) and ids[j] not in specials
        first_real = int(batch["attention_mask"][row].nonzero()[0])
        assert ids[first_real] == llava.tokenizer.bos_token_id and not text[row, : last + 1].any()
    assert text.sum(1).min() > 10
    for layer in range(n_layers - 1):  # the model's last entry has the final norm applied; ours does not
        h = ref.hidden_states[layer]
        for row in range(3):
            assert torch.allclose(out["image_mean"][row, layer], h[row][image[row]].mean(0), atol=1e-4)
            assert torch.allclose(out["text_mean"][row, layer], h[row][text[row]].mean(0), atol=1e-4)
    # The last hidden state through the final norm and LM head gives the model's logits.
    with torch.no_grad():
        last = llava.unembed(out["image_tokens"][:, -1].float(), final_norm=True)
    pos = torch.nonzero(image[0]).flatten()[torch.linspace(0, int(image[0].sum()) - 1, 4).round().long()]
    assert torch.allclose(last[0], ref.logits[0, pos], atol=2e-2)


def test_layer_probe_at_the_embedding_layer_equals_the_post_projection_probe(llava, photos, tmp_path):
    from benchmark.config import ProbeConfig

    samples, store = photos
    request = HiddenRequest("fp", "train", {"regime": "zero-shot"}, 0, DOMAIN, CLASSES, tokens_per_image=2)
    hs, _ = extract_hidden(llava, request, samples=samples, features=store, cache_dir=tmp_path, batch_size=4,
                           progress=False)
    with torch.no_grad():
        post = llava.project(store.get(list(range(len(samples))))).float().mean(1)
    assert torch.allclose(hs.image_mean(0), post, atol=1e-5)
    cfg = ProbeConfig(max_epochs=3, val_fraction=0.25)
    labels, uids = [s.label for s in samples], [s.uid for s in samples]
    a = train_probe(hs.image_mean(0), labels, uids_train=uids, x_test=hs.image_mean(0), y_test=labels,
                    num_classes=3, seed=0, cfg=cfg)
    b = train_probe(post, labels, uids_train=uids, x_test=post, y_test=labels, num_classes=3, seed=0, cfg=cfg)
    assert a["macro_f1"] == b["macro_f1"]
    assert [s["macro_f1"] for s in a["per_seed"]] == [s["macro_f1"] for s in b["per_seed"]]
    # A second call is served from the cache on disk.
    again, secs = extract_hidden(llava, request, samples=samples, features=store, cache_dir=tmp_path, batch_size=4,
                                 progress=False)
    assert secs == 0.0 and torch.equal(again.image_tokens(1), hs.image_tokens(1))
    assert isinstance(again, HiddenStore) and again.num_layers == len(llava.llm_layers()) + 1


def test_rank_counts_strictly_higher_logits():
    logits = torch.tensor([[0.1, 0.9, 0.5, 0.9], [3.0, 2.0, 1.0, 0.0]])
    target = torch.tensor([2, 0])
    # Independent: position of the target in a descending sort with ties counted once above it.
    expected = [sum(v > row[t] for v in row.tolist()) for row, t in zip(logits, target.tolist(), strict=True)]
    assert ranks_of(logits, target).tolist() == expected == [2, 0]


# --- knockout ----------------------------------------------------------------------------------------------------

def answer_loglik_without_image(adapter, question, answer, image_embeds):
    """Reference: the same tokens without the image tokens, at their original positions, no image at all."""
    parts = adapter.encode(question, answer)
    ids = torch.tensor([parts.prompt_ids + parts.answer_ids])
    keep = ids[0] != adapter.image_token_id
    pos = torch.arange(ids.shape[1])[keep][None]
    ids = ids[:, keep]
    with torch.no_grad():
        out = adapter.lm_forward(ids, torch.ones_like(ids), pos, None)
    logp = torch.log_softmax(out.logits[0, :-1].float(), -1)
    n = len(parts.answer_ids)
    target = ids[0, 1:]
    return float(logp[-n:].gather(1, target[-n:, None]).sum())


def test_knockout_of_every_layer_equals_the_image_free_model(llava, photos):
    samples, store = photos
    idx = [1, 6]
    qs = questions_for(samples, idx)
    answers = [CLASSES[samples[i].label] for i in idx]
    every = tuple(range(len(llava.llm_layers())))
    rows = knockout.knockout_batch(llava, store.get(idx), questions=qs, answers=answers, windows=[every],
                                   source="text")
    for j in range(len(idx)):
        ref = answer_loglik_without_image(llava, qs[j], answers[j], None)
        assert rows[1, j].item() == pytest.approx(ref, abs=1e-4)
        # Without knockout the image matters (by more than twice the tolerance above): the test can fail. The
        # margin is small on the random-init twin behind LLaVA's long vicuna_v1 system prompt (~5e-4).
        assert abs(rows[0, j].item() - ref) > 2e-4
    # The unblocked row equals the model's own teacher-forced score of the class.
    batch = collate([llava.encode(q, a) for q, a in zip(qs, answers, strict=True)], llava.pad_token_id, True)
    with torch.no_grad():
        out = llava.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                               llava.project(store.get(idx)))
    logp = torch.log_softmax(out.logits[:, :-1].float(), -1)
    lab = batch["labels"][:, 1:]
    ref = (logp.gather(2, lab.clamp_min(0)[..., None]).squeeze(-1) * (lab != IGNORE)).sum(-1)
    assert torch.allclose(rows[0], ref, atol=1e-4)


def test_knockout_is_refused_where_the_contract_has_no_layers():
    from benchmark.adapters import ModelAdapter

    class NoLayers(ModelAdapter):
        name = "no-layers"

    ctx = AnalysisContext(adapter=NoLayers(), regime="zero-shot", seed=0, data=None, stores={},
                          hidden=lambda s: None, options=AnalysisOptions())
    with pytest.raises(AnalysisUnsupported, match="language_decoder"):
        knockout.run(ctx)


def test_knockout_windows_are_validated():
    assert knockout.windows_for(4, 2) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match="between 1 and the number of blocks"):
        knockout.windows_for(2, 3)


# --- weight change -------------------------------------------------------------------------------------------------

def test_weight_change_is_zero_for_the_original_and_the_perturbation_otherwise(llava):
    params = dict(llava.model.named_parameters())
    group, _, _ = weight_change.tally_changes(llava, {k: v.detach().clone() for k, v in params.items()})
    assert all(group.relative(g) == 0.0 for g in group.base)
    block = llava.llm_layers()[1]
    name = next(n for n, p in params.items() if p is block.mlp.down_proj.weight)
    delta = torch.full_like(params[name], 0.01)
    trained = {k: v.detach().clone() for k, v in params.items()}
    trained[name] = trained[name] + delta
    group, module, _ = weight_change.tally_changes(llava, trained)
    layer_norm = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in block.parameters()))
    # (float32 weights: W + delta is rounded, hence 1e-6)
    assert group.relative("layer 1") == pytest.approx(float(delta.double().norm()) / layer_norm, rel=1e-6)
    w = params[name].detach().double()
    assert module.relative("layer 1/mlp.down_proj") == pytest.approx(float(delta.double().norm() / w.norm()), rel=1e-6)
    assert group.relative("layer 0") == 0.0


# --- every built-in adapter through the contract -------------------------------------------------------------------

TINY = [s.name for s in Plugins(autoload=False).adapters if s.tiny]


@pytest.mark.parametrize("name", TINY)
def test_every_tiny_adapter_gives_layers_lens_and_knockout(name, real_images):
    adapter = Plugins(autoload=False).adapters.get(name).factory()
    images = real_images[::4]
    feats = adapter.vision_features(adapter.preprocess([im for im, _ in images]))
    qs = [build_question(DOMAIN, CLASSES, 0, f"img{i}") for i in range(len(images))]
    out = hidden_batch(adapter, feats, qs, k=3)
    n_blocks = len(adapter.llm_layers())
    assert out["text_tokens"].shape[:3] == (len(images), n_blocks + 1, 3)
    # The last sampled text token is the last prompt position: through the final norm and LM head it gives the
    # model's own next-token distribution there (same top token; Gemma-2's soft-capping keeps the order).
    parts = [adapter.encode(q) for q in qs]
    batch = collate(parts, adapter.pad_token_id, with_answer=False)
    with torch.no_grad():
        ref = adapter.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                 adapter.project(feats)).logits[:, -1].float()
        lens = adapter.unembed(out["text_tokens"][:, -1, -1].float(), final_norm=True).float()
    assert torch.equal(lens.argmax(-1), ref.argmax(-1))
    assert torch.corrcoef(torch.stack([lens.flatten(), ref.flatten()]))[0, 1] > 0.99
    answers = [CLASSES[label] for _, label in images]
    rows = knockout.knockout_batch(adapter, feats, questions=qs, answers=answers,
                                   windows=[tuple(range(n_blocks)), (0,)], source="text")
    assert rows.shape == (3, len(images)) and bool(torch.isfinite(rows).all())
    if name != "qwen2vl-tiny":  # Qwen2-VL's M-RoPE positions of the text depend on the image grid
        for j in range(len(images)):
            ref_ll = answer_loglik_without_image(adapter, qs[j], answers[j], None)
            assert rows[1, j].item() == pytest.approx(ref_ll, abs=2e-3)


# --- the analyze command end to end ----------------------------------------------------------------------------------

SIX = ("layer-probe", "logit-lens", "modality-gap", "mir", "knockout", "weight-change")
QUICK = ["--probe-max-epochs", "2", "--permutations", "10", "--knockout-max-images", "3", "--tokens-per-image", "2",
         "--no-progress"]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze")
    assert main(["run", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "4", "--regimes",
                 "zero-shot,ft-e2e", "--global-batch", "4",  # 3 steps: more than the warm-up step at lr 0
                 "--probe-max-epochs", "2", "--results-dir", str(out), "--no-progress"]) == 0
    code = main(["analyze", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "4",
                 "--regimes", "zero-shot,ft-e2e", "--results-dir", str(out), *QUICK])
    return out, code


def test_analyze_writes_every_analysis_for_every_state_with_provenance(analysed):
    import json

    out, code = analysed
    assert code == 0
    base = out / "llava15-tiny" / "textile@max4" / "analyses"
    for name in SIX:
        assert (base / f"{name}.png").stat().st_size > 1000
        for regime in ("zero-shot", "ft-e2e"):
            rec = json.loads((base / name / regime / "seed0" / "analysis.json").read_text())
            assert rec["analysis"] == name and rec["regime"] == regime and rec["limit"] == {"max_per_class": 4}
            assert rec["provenance"]["versions"]["torch"] and rec["identity_hash"]
            assert len(rec["result"]["x"]) == len(rec["result"]["curves"][rec["result"]["primary"]])
    wc = json.loads((base / "weight-change" / "zero-shot" / "seed0" / "analysis.json").read_text())["result"]
    assert wc["summary"]["max_relative_change"] == 0.0
    e2e = json.loads((base / "weight-change" / "ft-e2e" / "seed0" / "analysis.json").read_text())["result"]
    assert e2e["summary"]["max_relative_change"] > 0.0 and e2e["compared_tensors"] > 10


def test_finished_analyses_are_skipped_and_tables_reach_the_leaderboard(analysed, capsys):
    import json

    out, _ = analysed
    capsys.readouterr()
    assert main(["analyze", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "4",
                 "--regimes", "zero-shot,ft-e2e", "--results-dir", str(out), *QUICK]) == 0
    printed = capsys.readouterr().out
    assert printed.count("[skip]") == 12 and "[analyze]" not in printed
    assert main(["leaderboard", "--results", str(out)]) == 0
    md = capsys.readouterr().out
    assert "## Layer-wise analyses" in md and "### mir" in md and "textile (limited: 4/class)" in md
    assert main(["leaderboard", "--results", str(out), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["analyses"]["rows"]
    assert {r["analysis"] for r in rows} == set(SIX) and all(r["limit"] == 4 for r in rows)


def test_missing_states_name_the_run_that_produces_them(analysed, capsys):
    out, _ = analysed
    capsys.readouterr()
    code = main(["analyze", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "4",
                 "--analysis", "mir", "--results-dir", str(out), *QUICK])
    err = capsys.readouterr().err
    assert code == 1  # the other states were analysed (here: skipped as finished), the missing one reported
    assert "FT-Proj state (seed 0) missing" in err
    assert "python -m benchmark run --model llava15-tiny --task textile --regimes ft-proj --seeds 0" in err


def test_a_damaged_analysis_result_is_named_never_reused(analysed, tmp_path, capsys):
    import shutil

    out, _ = analysed
    copy = tmp_path / "res"
    shutil.copytree(out, copy)
    path = copy / "llava15-tiny" / "textile@max4" / "analyses" / "mir" / "ft-e2e" / "seed0" / "analysis.json"
    path.write_text(path.read_text().replace('"regime": "ft-e2e"', '"regime": "ft-e3e"'))
    capsys.readouterr()
    code = main(["analyze", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "4", "--analysis",
                 "mir", "--regimes", "ft-e2e", "--results-dir", str(copy), *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err and "Delete the folder" in err
    assert main(["leaderboard", "--results", str(copy)]) == 0
    assert "mir/ft-e2e/seed0/analysis.json`: unreadable" in capsys.readouterr().out


PLUGIN = '''
from benchmark import hookimpl
from benchmark.analyses import AnalysisSpec


def run(ctx):
    test = ctx.hidden("test")
    norms = [float(test.image_mean(l).norm(dim=1).mean()) for l in range(test.num_layers)]
    return {"x": list(range(test.num_layers)), "primary": "norm", "curves": {"norm": norms}, "summary": {}}


@hookimpl
def register_analyses(register):
    register(AnalysisSpec(name="image-norm", run=run, citation="(a plugin)", description="mean image-token norm"))
'''


def test_an_analysis_plugin_registers_through_the_same_hook(tmp_path):
    import os
    import subprocess
    import sys

    add_dist(tmp_path, "my_analysis_plugin", PLUGIN, "my-analysis-plugin", "0.1", entry="mine")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    env.pop("PROJBENCH_DISABLE_PLUGIN_AUTOLOAD", None)
    out = subprocess.run([sys.executable, "-m", "benchmark", "list", "analyses"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "image-norm" in out.stdout and "my-analysis-plugin 0.1" in out.stdout and "layer-probe" in out.stdout


def test_a_deleted_fe2e_state_names_the_keep_checkpoints_rerun(analysed, tmp_path, capsys):
    import shutil

    out, _ = analysed
    copy = tmp_path / "res"
    shutil.copytree(out, copy)
    run = copy / "llava15-tiny" / "textile@max4" / "ft-e2e" / "seed0"
    (run / "checkpoint.safetensors").unlink()
    shutil.rmtree(copy / "llava15-tiny" / "textile@max4" / "analyses" / "mir" / "ft-e2e")
    capsys.readouterr()
    code = main(["analyze", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "4", "--analysis",
                 "mir", "--regimes", "zero-shot,ft-e2e", "--results-dir", str(copy), *QUICK])
    captured = capsys.readouterr()
    assert code == 1
    assert "FT-E2E state (seed 0) missing" in captured.err and f"Delete {run}" in captured.err
    assert "--regimes ft-e2e --seeds 0 --max-per-class 4" in captured.err and "--keep-checkpoints" in captured.err
    assert not (copy / "llava15-tiny" / "textile@max4" / "analyses" / "mir" / "ft-e2e").exists()
