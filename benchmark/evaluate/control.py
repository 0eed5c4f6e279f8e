"""The control task of the richness probe: Hewitt & Liang (2019), adapted from word types to images.

Hewitt & Liang ("Designing and Interpreting Probes with Control Tasks", EMNLP 2019, §2) give every word *type* a
fixed random control label; every occurrence of the type carries it, in training and at test time, so that the
control task can be learned only by memorising a type -> label map. A probe is *selective* when it does well on
the real task and poorly on the control: selectivity = task accuracy - control accuracy, both on the test set.

Images have no word types. The closest thing that training and test images share is a region of the probed
feature space, so the control's "types" here are clusters of the feature set being probed:

- the features are z-scored with the training split's statistics (as the probe's inputs are) and clustered by
  k-means (k-means++ seeding, Lloyd iterations, a few seeded restarts; written here, deterministic) on the
  training rows only; a test row belongs to the cluster of its nearest training row (single linkage): a fixed
  function of the input, so a test image's control label is that of the training images around it, as a word's
  is that of its type. Not the nearest *centre*: in high dimension a centre averaged over m rows lies closer to
  every new row than its own members do (norm² shrinks as 1/m on noise), so the largest cluster would claim
  almost every test row and the test labels would pile onto one label;
- every cluster gets a random label in ``range(num_classes)``, balanced: the labels ``0..K-1`` repeated over the
  ``k`` clusters, then permuted with a seeded generator, so every control class exists and (``k`` a multiple of
  ``K``) owns as many clusters as the others.

The number of clusters ``k = max(K, min(CLUSTERS_PER_CLASS * K, n_train // MIN_ROWS_PER_CLUSTER))``: more
clusters than classes, so that a control class is a union of several k-means cells. One cell is the convex set
that a linear K-way classifier draws anyway; a union of scattered cells must be memorised, which is what a
control task measures (H&L's word types far outnumber their tags). It stays bounded by the training rows so that
each cluster has several training images on average: like a word type that recurs, a cluster must be seen in
training for its label to be learnable at all. What differs from H&L: the types are found in the feature set
itself, so each feature set (each layer, each projector) has its own control task, fixed by the run seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CONTROL_SEED = 104729          # the control task's stream: fixed, and distinct from every run seed's stream
CLUSTERS_PER_CLASS = 4         # k = 4 K: each control class is a union of ~4 cells (see the module docstring)
MIN_ROWS_PER_CLUSTER = 4       # ... but at most one cluster per 4 training rows
KMEANS_RESTARTS = 3            # seeded k-means++ starts; the one with the lowest inertia is kept
KMEANS_ITERATIONS = 100        # Lloyd iterations at most (they stop when no assignment changes)
METHOD = "cluster control task (Hewitt & Liang 2019)"


@dataclass(frozen=True)
class ControlTask:
    """Control labels of the training and test rows of one feature set, and how they were made."""

    train: list[int]
    test: list[int]
    clusters: int
    seed: int

    def describe(self) -> dict:
        return {"method": METHOD, "clusters": self.clusters, "seed": self.seed,
                "clustering": f"k-means on z-scored training features ({KMEANS_RESTARTS} k-means++ restarts); "
                              "a test row takes the cluster of its nearest training row",
                "labels": "a balanced random label in range(num_classes) per cluster"}


def cluster_count(num_classes: int, n_train: int) -> int:
    """The number of clusters of a control task with ``num_classes`` labels over ``n_train`` training rows."""
    return max(num_classes, min(CLUSTERS_PER_CLASS * num_classes, n_train // MIN_ROWS_PER_CLUSTER))


def nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest of ``centres`` (squared Euclidean distance; ties to the lower index) for each row."""
    sq = (centres * centres).sum(1)[None]
    return np.concatenate([(sq - 2 * part @ centres.T).argmin(1)
                           for part in np.array_split(x, max(1, len(x) // 1024))])


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, d) centres: the best of ``KMEANS_RESTARTS`` k-means++-seeded Lloyd runs by inertia."""
    best, best_inertia = None, np.inf
    for _ in range(KMEANS_RESTARTS):
        centres = _kmeans_pp(x, k, rng)
        assign = nearest(x, centres)
        for _ in range(KMEANS_ITERATIONS):
            for c in range(k):
                members = x[assign == c]
                if len(members):  # an empty cluster keeps its centre
                    centres[c] = members.mean(0)
            new = nearest(x, centres)
            if np.array_equal(new, assign):
                break
            assign = new
        inertia = float(((x - centres[assign]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = centres, inertia
    return best


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each next centre drawn with probability ∝ D(x)²."""
    centres = [x[rng.integers(len(x))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        # Fewer distinct rows than clusters: every row is a centre already; draw uniformly (a duplicate centre).
        i = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
        centres.append(x[i])
        d2 = np.minimum(d2, ((x - x[i]) ** 2).sum(1))
    return np.array(centres, dtype=np.float64)


def control_task(x_train: torch.Tensor, x_test: torch.Tensor, *, num_classes: int, seed: int) -> ControlTask:
    """The control labels of the training and test rows of one feature set (see the module docstring)."""
    xtr = np.asarray(x_train, dtype=np.float64)
    xte = np.asarray(x_test, dtype=np.float64)
    mean, std = xtr.mean(0), np.maximum(xtr.std(0, ddof=1) if len(xtr) > 1 else np.ones(xtr.shape[1]), 1e-6)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    k = cluster_count(num_classes, len(xtr))
    rng = np.random.default_rng([CONTROL_SEED, seed])
    cluster = nearest(xtr, kmeans(xtr, k, rng))
    labels = rng.permutation(np.arange(k) % num_classes)[cluster]
    return ControlTask(train=labels.tolist(), test=labels[nearest(xte, xtr)].tolist(), clusters=k, seed=seed)
