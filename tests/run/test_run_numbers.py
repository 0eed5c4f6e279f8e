"""One protocol run on llava15-tiny, every number in its metrics.json checked against an independent computation.

The run is watched (never altered) at its boundaries: what fine-tuning receives and projects, what each probe is
trained and scored on. The expected values come from a separately loaded copy of the checkpoint, from images
decoded here, and from plain counting over ``predictions.jsonl``:

* fine-tuning sees exactly the training images (their features, once per epoch), never a test image;
* FT-E2E starts from the original checkpoint (projector and LLM), not from FT-Proj's projector;
* each probe is trained on the mean-pooled features of the training images (pre-projection, or through the
  regime's own projector, as saved in projector.safetensors) with their labels, and scored on the test images;
* task macro-F1, accuracy, per-class scores and the confusion matrix follow from the recorded predictions.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file
from test_metrics import reference_macro_f1, reference_scores

from benchmark import protocol
from benchmark.config import ProbeConfig, RunConfig
from benchmark.evaluate import probe
from benchmark.evaluate.control import control_task
from benchmark.registry import Plugins
from benchmark.run import train as train_stage
from benchmark.tasks import load_task
from benchmark.tasks.base import decode_image

LIMIT = 3
# A global batch of 4: three optimizer steps on the 9 training images, so training moves the weights after the
# warm-up step at lr 0.
CFG = dict(model="llava15-tiny", task="textile", max_per_class=LIMIT, progress=False, global_batch=4,
           probe=ProbeConfig(hidden=(16,), max_epochs=2))


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory, hermetic_cache):
    """Run the protocol once, recording what fine-tuning and the probes receive."""
    out = tmp_path_factory.mktemp("watched")
    seen = {"finetune": [], "probe": []}
    real_finetune, real_probe = train_stage.finetune, probe.fit_label_sets

    def finetune(adapter, regime, **kwargs):
        store, samples = kwargs["store"], kwargs["samples"]
        entry = {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}
        projected = []
        real_project = adapter.project

        def project(features):
            projected.append(features.detach().float().cpu().clone())
            return real_project(features)

        adapter.project = project  # watch what is projected during training, nothing else changes
        try:
            result = real_finetune(adapter, regime, **kwargs)
        finally:
            del adapter.project
        seen["finetune"].append({"regime": regime, "store_uids": list(store.uids),
                                 "sample_uids": [s.uid for s in samples], "entry_state": entry,
                                 "projected": projected})
        return result

    def fit_label_sets(x_train, labels, **kwargs):
        facts, preds, info = real_probe(x_train, labels, **kwargs)
        seen["probe"].append({"x_train": x_train.clone(), "labels": labels.tolist(),
                              "uids": list(kwargs["uids_train"]), "x_test": kwargs["x_test"].clone(),
                              "facts": facts, "preds": preds.tolist(), "info": info})
        return facts, preds, info

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_stage, "finetune", finetune)
        mp.setattr(probe, "fit_label_sets", fit_label_sets)
        results = protocol.Runner(RunConfig(**CFG, results_dir=str(out)), log=lambda *a: None).run()
    return {"dir": out, "results": {m["regime"]: m for m in results}, **seen}


@pytest.fixture(scope="module")
def data():
    return load_task(Plugins(autoload=False).tasks.get("textile"), None, LIMIT, progress=False)


@pytest.fixture(scope="module")
def original(hermetic_cache):
    """A separately loaded copy of the checkpoint the run started from."""
    return Plugins(autoload=False).adapters.get("llava15-tiny").factory(cache_dir=hermetic_cache)


@pytest.fixture(scope="module")
def vision(original, data):
    """Vision features of each split, computed here from the decoded images (no feature cache)."""
    with torch.no_grad():
        return {split: original.vision_features(original.preprocess(
            [decode_image(s.load_bytes()) for s in data.splits[split]])).float()
            for split in ("train", "test")}


def run_folder(run, regime):
    return run["dir"] / "llava15-tiny" / f"textile@max{LIMIT}" / regime / "seed0"


def test_fine_tuning_sees_exactly_the_training_images(watched_run, data, vision):
    train_uids = [s.uid for s in data.splits["train"]]
    assert [c["regime"] for c in watched_run["finetune"]] == ["ft-proj", "ft-e2e"]
    for call in watched_run["finetune"]:
        assert call["sample_uids"] == train_uids and call["store_uids"] == train_uids
        # Every projected row is a training image's feature map; together, each training image once per epoch.
        rows = torch.cat(call["projected"])
        assert len(rows) == len(train_uids) * RunConfig(**CFG).epochs
        which = [next((i for i, f in enumerate(vision["train"]) if torch.allclose(r, f, atol=1e-5)), None)
                 for r in rows]
        assert None not in which, "fine-tuning projected features of an image outside the training split"
        assert Counter(which) == Counter({i: RunConfig(**CFG).epochs for i in range(len(train_uids))})


def test_training_counts(watched_run, data, original):
    cfg = RunConfig(**CFG)
    answers = {c: len(original.encode("", c).answer_ids) for c in data.classes}
    for regime in ("ft-proj", "ft-e2e"):
        t = watched_run["results"][regime]["training"]
        global_batch = cfg.global_batch_for(regime)
        assert t["global_batch"] == global_batch
        assert t["optimizer_steps"] == math.ceil(len(data.splits["train"]) / global_batch) * cfg.epochs
        assert t["supervised_answer_tokens"] == cfg.epochs * sum(answers[data.classes[s.label]]
                                                                 for s in data.splits["train"])


def test_ft_e2e_starts_from_the_original_checkpoint(watched_run, original):
    want = original.model.state_dict()
    ft_proj = load_file(str(run_folder(watched_run, "ft-proj") / "projector.safetensors"))
    proj_prefix = next(k for k, m in original.model.named_modules() if m is original.projector_module()) + "."
    for call in watched_run["finetune"]:
        got = call["entry_state"]
        assert got.keys() == want.keys()
        changed = [k for k in want if not torch.equal(got[k], want[k])]
        assert not changed, f"{call['regime']} started from modified weights: {changed[:5]}"
    # ... and FT-Proj really trained its projector, so the check above could tell the two apart.
    assert any(not torch.equal(v, want[proj_prefix + k]) for k, v in ft_proj.items())


def pooled_mean(x: torch.Tensor) -> torch.Tensor:
    return x.sum(dim=1) / x.shape[1]


def test_each_probe_trains_on_the_training_split_of_its_own_features(watched_run, data, original, vision):
    def through(projector_file=None):
        state = {k: v.clone() for k, v in original.projector_module().state_dict().items()}
        try:
            if projector_file is not None:
                original.projector_module().load_state_dict(load_file(str(projector_file)))
            with torch.no_grad():
                return {s: pooled_mean(original.project(vision[s].to(original.dtype)).float()) for s in vision}
        finally:
            original.projector_module().load_state_dict(state)

    expected = {
        ("zero-shot", "pre_projection"): {s: pooled_mean(vision[s]) for s in vision},
        ("zero-shot", "post_projection"): through(),
        ("ft-proj", "post_projection"): through(run_folder(watched_run, "ft-proj") / "projector.safetensors"),
        ("ft-e2e", "post_projection"): through(run_folder(watched_run, "ft-e2e") / "projector.safetensors"),
    }
    y_train = [s.label for s in data.splits["train"]]
    y_test = [s.label for s in data.splits["test"]]
    uids = [s.uid for s in data.splits["train"]]
    for (regime, name), feats in expected.items():
        match = [c for c in watched_run["probe"] if c["x_train"].shape == feats["train"].shape
                 and torch.allclose(c["x_train"], feats["train"], rtol=1e-4, atol=1e-5)]
        assert match, f"no probe was trained on the {name} features of {regime}"
        call = match[0]
        recorded = watched_run["results"][regime]["probe"][name]
        seeds = len(recorded["probe_seeds"])
        assert call["uids"] == uids and call["labels"][:seeds] == [y_train] * seeds
        assert torch.allclose(call["x_test"], feats["test"], rtol=1e-4, atol=1e-5)
        # The recorded scores follow from the predictions of this training: each seed's against the test labels.
        f1 = [reference_macro_f1(y_test, p) for p in call["preds"][:seeds]]
        assert [s["macro_f1"] for s in recorded["per_seed"]] == pytest.approx(f1, abs=1e-12)
        assert recorded["macro_f1"] == pytest.approx(sum(f1) / seeds, abs=1e-12)
        assert [s["epochs_run"] for s in recorded["per_seed"]] == call["facts"]["epochs_run"][:seeds]
        if "control" in recorded:  # the same features, with the control task's labels, scored on its test labels
            ctl = control_task(call["x_train"], call["x_test"], num_classes=len(data.classes), seed=0)
            assert call["labels"][seeds:] == [ctl.train] * seeds
            f1 = [reference_macro_f1(ctl.test, p) for p in call["preds"][seeds:]]
            assert recorded["control"]["macro_f1"] == pytest.approx(sum(f1) / seeds, abs=1e-12)
            assert recorded["selectivity"] == pytest.approx(recorded["macro_f1"] - recorded["control"]["macro_f1"])


def test_task_metrics_follow_from_the_predictions(watched_run, data):
    for regime, m in watched_run["results"].items():
        lines = (run_folder(watched_run, regime) / "predictions.jsonl").read_text().splitlines()
        preds = [json.loads(line) for line in lines]
        assert [p["uid"] for p in preds] == [s.uid for s in data.splits["test"]]
        index = {c: i for i, c in enumerate(data.classes)}
        y_true = [index[p["label"]] for p in preds]
        assert y_true == [s.label for s in data.splits["test"]]
        y_pred = [index[p["prediction"]] for p in preds]
        assert all(max(p["scores"]) == p["scores"][index[p["prediction"]]] for p in preds)  # argmax of scores
        got = m["metrics"]
        assert got["n"] == len(preds) == m["data"]["n_test"] == LIMIT * len(data.classes)
        assert got["macro_f1"] == pytest.approx(reference_macro_f1(y_true, y_pred), abs=1e-12)
        assert got["accuracy"] == pytest.approx(sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(preds))
        ref = reference_scores(y_true, y_pred, range(len(data.classes)))
        for i, c in enumerate(data.classes):
            pc = got["per_class"][c]
            assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx(ref[i], abs=1e-12)
        cm = [[sum(t == i and p == j for t, p in zip(y_true, y_pred, strict=True)) for j in range(len(data.classes))]
              for i in range(len(data.classes))]
        assert got["confusion_matrix"] == cm
        assert m["data"]["n_train"] == len(data.splits["train"]) and m["task_fingerprint"] == data.fingerprint


def test_intervals_pairs_and_length_bias_follow_from_the_predictions(watched_run, data, original):
    from benchmark.evaluate.intervals import change_interval, score_interval

    index = {c: i for i, c in enumerate(data.classes)}
    zs = watched_run["results"]["zero-shot"]
    for regime, m in watched_run["results"].items():
        preds = [json.loads(line) for line in
                 (run_folder(watched_run, regime) / "predictions.jsonl").read_text().splitlines()]
        y_true = [index[p["label"]] for p in preds]
        y_pred = [index[p["prediction"]] for p in preds]
        if "ci95" in m["metrics"]:
            want = score_interval(y_true, y_pred, len(data.classes))
            assert m["metrics"]["ci95"] == pytest.approx(want["ci95"], abs=1e-12), regime
            assert m["metrics"]["interval"]["min_class_n"] == want["min_class_n"], regime
        if m.get("paired"):  # each fine-tuned run against the zero-shot run of its own seed
            assert m["paired"]["gain"]["delta"] == pytest.approx(
                m["metrics"]["macro_f1"] - zs["metrics"]["macro_f1"], abs=1e-12)
            zs_pred = [index[json.loads(line)["prediction"]] for line in
                       (run_folder(watched_run, "zero-shot") / "predictions.jsonl").read_text().splitlines()]
            want = change_interval(y_true, y_pred, zs_pred, len(data.classes))
            assert [*m["paired"]["gain"]["ci95"], m["paired"]["gain"]["p_value"]] == pytest.approx(
                [*want["ci95"], want["p_value"]], abs=1e-12)
            assert m["paired"]["richness"]["delta"] == pytest.approx(
                m["probe"]["post_projection"]["macro_f1"] - zs["probe"]["post_projection"]["macro_f1"], abs=1e-12)
        bias = m["metrics"].get("length_bias")
        if bias is not None and "prediction_mean" in preds[0]:
            by_sum = [index[p["prediction_sum"]] for p in preds]
            by_mean = [index[p["prediction_mean"]] for p in preds]
            assert bias["disagreement_rate"] == pytest.approx(
                sum(a != b for a, b in zip(by_sum, by_mean, strict=True)) / len(preds))
            assert bias["answer_tokens"] == {c: len(original.encode("", c).answer_ids) for c in data.classes}
            assert bias["other_norm_macro_f1"] == pytest.approx(reference_macro_f1(y_true, by_mean), abs=1e-12)
            # per-token scores are the summed scores over the answer length
            for p in preds:
                assert p["scores_mean"] == pytest.approx(
                    [s / bias["answer_tokens"][c] for s, c in zip(p["scores"], data.classes, strict=True)],
                    abs=2e-5)
    assert any(m.get("paired") for m in watched_run["results"].values())
