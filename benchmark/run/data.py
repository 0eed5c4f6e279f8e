"""The task data a run uses: loaded once for all its run folders, reported, and checked before any work."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import DataError
from ..evaluate.probe import validation_split
from ..schema import digest_text
from ..tasks.base import TaskData, load_task


def load_run_data(cfg, task_spec, *, model_problem, log) -> TaskData:
    """The task's images as the run uses them (``--drop-duplicates`` applied), reported in the log.

    ``model_problem()``: why the model's weights cannot be had, if so, reported together with missing data.
    """
    try:
        data = load_task(task_spec, Path(cfg.data_dir) if cfg.data_dir else None, cfg.max_per_class,
                         progress=cfg.progress)
    except DataError as exc:
        also = model_problem()  # report both missing pieces at once, not one per attempt
        raise DataError(f"{exc}\n\nAlso: {also}" if also else str(exc)) from None
    if cfg.drop_duplicates:
        data = drop_duplicates(data)
    report_data(data, log)
    # Fail before any run starts if the probe cannot carve its validation split.
    validation_split([s.uid for s in data.splits["train"]], [s.label for s in data.splits["train"]],
                     cfg.probe.val_fraction)
    return data


def drop_duplicates(data: TaskData) -> TaskData:
    """``data`` without the test images byte-identical to a training image (``--drop-duplicates``).

    The fingerprint changes with the dropped images, so the feature cache never serves the full test split.
    """
    dropped = sorted({test_uid for _, test_uid in data.duplicates})
    if not dropped:
        return data
    gone = set(dropped)
    test = [s for s in data.splits["test"] if s.uid not in gone]
    fingerprint = digest_text("\0".join([data.fingerprint, "drop-duplicates", *dropped]))
    return replace(data, splits={**data.splits, "test": test}, fingerprint=fingerprint, dropped_duplicates=dropped)


def report_data(data: TaskData, log) -> None:
    n_skip = sum(len(v) for v in data.skipped.values())
    log(f"task {data.spec.name} v{data.spec.version}: {len(data.classes)} classes, "
        f"{len(data.splits['train'])} train / {len(data.splits['test'])} test images"
        + (f", {n_skip} unreadable image(s) skipped" if n_skip else "")
        + (f", limited to {data.limit['max_per_class']} per class" if data.limit else ""))
    if data.missing_classes:
        log(f"warning: {len(data.missing_classes)} declared class(es) have no images and are left out "
            f"of the label space: {data.missing_classes}")
    if data.excluded:
        log(f"excluded by the task definition: {data.excluded}")
    if data.dropped_duplicates:
        log(f"dropped {len(data.dropped_duplicates)} test image(s) byte-identical to training images "
            "(--drop-duplicates; listed in metrics.json under data.dropped_duplicates)")
    elif data.duplicates:
        log(f"warning: {len(data.duplicates)} test image(s) are byte-identical to training images, e.g. "
            f"{data.duplicates[:3]}; they are kept (listed in metrics.json under data.duplicates; "
            "--drop-duplicates removes them)")


def model_problem(cfg, adapter_spec) -> str | None:
    """A cheap check, without loading anything, that the model's weights can be had; the problem if not."""
    if cfg.model_path:
        ok = Path(cfg.model_path).expanduser().exists()
        return None if ok else f"--model-path {cfg.model_path!r} does not exist."
    if adapter_spec.tiny or "/" not in adapter_spec.checkpoint:
        return None
    from huggingface_hub import try_to_load_from_cache

    from ..storage.hub import hub_reachable

    cached = try_to_load_from_cache(adapter_spec.checkpoint, "config.json")
    if isinstance(cached, str) or hub_reachable():
        return None
    return (f"the model {adapter_spec.checkpoint!r} is not in the local Hugging Face cache and the hub "
            "is not reachable: pass --model-path DIR with a local copy.")
