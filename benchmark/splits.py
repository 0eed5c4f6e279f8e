"""Deterministic, content-independent splits by uid hash, shared by the tasks (a test split carved from one
pool) and the probe (its validation split carved from the training split)."""

from __future__ import annotations

import hashlib


def uid_order(uid: str) -> str:
    """A content-independent, stable order for picking "the first k" of a class."""
    return hashlib.sha256(uid.encode()).hexdigest()


def stratified_holdout(uids_labels: list[tuple[str, str]], fraction: float) -> set[str]:
    """Deterministic stratified hold-out by uid hash: the ``fraction`` of each class whose hashes sort first."""
    by_class: dict[str, list[str]] = {}
    for uid, label in uids_labels:
        by_class.setdefault(label, []).append(uid)
    held = set()
    for uids in by_class.values():
        uids = sorted(uids, key=uid_order)
        held.update(uids[: max(1, round(len(uids) * fraction))])
    return held
