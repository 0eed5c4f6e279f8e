"""The evaluation and probe stages of one run folder, and the pairing of a fine-tuned run with its zero-shot one.

Evaluation scores the task on the test split from the cached features (log-likelihood of each class, or
generation); the probes train a linear classifier on pooled features, before the projector (zero-shot only) and
after it, each with several probe seeds and its control task. Their predictions (per probe seed) are kept beside the
run, so that later runs of the same seed can be paired with them.
"""

from __future__ import annotations

import json

from ..evaluate.generation import evaluate_generate
from ..evaluate.intervals import record_change
from ..evaluate.loglik import EvalSet, evaluate_loglik
from ..evaluate.probe import probe_seeds, probe_with_control
from ..schema import PREDICTIONS, PROBE_PREDICTIONS, Regime
from ..storage.features import pooled
from ..storage.integrity import CorruptFileError, read_finished
from .resolved import ResolvedRun


def evaluation_stage(run: ResolvedRun, adapter) -> dict:
    """The task scored on the test split: ``{"metrics": ..., "predictions": [...], "pred_indices": [...]}``."""
    cfg, data = run.cfg, run.data
    eval_set = EvalSet(run.stores["test"], data.splits["test"], data.classes, data.spec.domain, run.seed)
    if cfg.eval_mode == "generate":
        return evaluate_generate(adapter, eval_set, batch_size=cfg.eval_batch_size, progress=cfg.progress)
    return evaluate_loglik(adapter, eval_set, batch_size=cfg.eval_batch_size, progress=cfg.progress,
                           max_rows=cfg.score_rows, score_norm=cfg.score_norm)


def probe_stage(run: ResolvedRun, adapter, pre=None) -> tuple[dict, dict]:
    """The record's ``probe`` part and the probes' test predictions: ``{"uids": [...], "probe_seeds": [...],
    name: [[...] per probe seed]}``.

    ``pre``: the pooled pre-projection features (train, test), probed in the zero-shot run only.
    """
    cfg, train, test = run.cfg, run.data.splits["train"], run.data.splits["test"]
    ytr = [s.label for s in train]
    post = (pooled(run.stores["train"], adapter), pooled(run.stores["test"], adapter))
    args = {"uids_train": [s.uid for s in train], "y_test": [s.label for s in test],
            "num_classes": len(run.data.classes), "seed": run.seed, "cfg": cfg.probe, "progress": cfg.progress}
    jobs = {"post_projection": lambda: probe_with_control(post[0], ytr, x_test=post[1], **args,
                                                          desc=f"probe (post-projection, {run.regime})")}
    if run.regime == Regime.ZERO_SHOT:
        jobs["pre_projection"] = lambda: probe_with_control(pre[0], ytr, x_test=pre[1], **args,
                                                            desc="probe (pre-projection)")
    # Probes are independent: with several processes each trains its share, and all get every result.
    order = sorted(jobs, key=lambda k: k != "pre_projection")  # pre-projection first, as before
    probes = {}
    predictions = {"uids": [s.uid for s in test], "probe_seeds": probe_seeds(run.seed, cfg.probe.seeds)}
    for name, (summary, preds) in zip(order, run.dist.run_split([jobs[k] for k in order]), strict=True):
        probes[name], predictions[name] = summary, preds
    return probes, predictions


def pre_projection_features(stores) -> tuple:
    """The pooled features before the projector (train, test): the same for every regime and seed."""
    return pooled(stores["train"]), pooled(stores["test"])


def paired_stage(run: ResolvedRun, task_pred: list, probe_pred: list) -> dict | None:
    """Gain and richness change against the zero-shot run of the same seed, on the same test images, with
    stratified BCa intervals (:mod:`..evaluate.intervals`); None (with the reason logged) if that run's
    predictions are not there.

    Probe predictions are one list per feature set, or a list per probe seed (probe seed x test row): the
    richness interval then resamples the probe seeds of both runs too.
    """
    zs = run.folder_of(Regime.ZERO_SHOT)
    seed, test, classes = run.seed, run.data.splits["test"], run.data.classes
    try:
        read_finished(zs)  # its predictions' checksums
        zs_probe = json.loads((zs / PROBE_PREDICTIONS).read_text())
        zs_rows = [json.loads(line) for line in (zs / PREDICTIONS).read_text().splitlines() if line.strip()]
    except (OSError, ValueError, CorruptFileError):
        run.log(f"note: no paired intervals for seed {seed}: the zero-shot predictions in {zs} are missing "
                "or damaged")
        return None
    uids = [s.uid for s in test]
    if zs_probe.get("uids") != uids or [r["uid"] for r in zs_rows] != uids:
        run.log(f"note: no paired intervals for seed {seed}: the zero-shot run saw other test images")
        return None
    y_test = [s.label for s in test]
    index = {c: i for i, c in enumerate(classes)}
    zs_task = [index.get(r["prediction"], -1) for r in zs_rows]  # unmatched (generate) -> -1, wrong for all
    return {"gain": record_change(y_test, task_pred, zs_task, len(classes)),
            "richness": record_change(y_test, probe_pred, zs_probe["post_projection"], len(classes))}
