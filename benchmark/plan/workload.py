"""How many images a run trains on and evaluates: the task's published split sizes, the user's counts, or
1000 / 1000 (the time estimates are then per 1000 images)."""

from __future__ import annotations

from dataclasses import dataclass

# Split sizes (train, test) of the images a task's source holds. Only exact published counts, each from the
# task's definition:
TASK_SIZES = {
    "derm": (15297, 3937),     # tasks/paper.py: the hub copies of DermNet's Kaggle train / test folders it loads
    "textures": (1880, 1880),  # tasks/paper.py: DTD split 1, train1 / test1 (40 images per class of 47 each)
    "eurosat": (16200, 5400),  # tasks/paper.py: EuroSAT RGB, train / test of Neumann et al.'s split (timm copy)
}
DEFAULT_IMAGES = 1000


@dataclass(frozen=True)
class Workload:
    n_train: int
    n_test: int
    source: str  # where the counts come from, in words

    @classmethod
    def of(cls, task_name: str, *, n_train: int | None = None, n_test: int | None = None) -> Workload:
        sizes = TASK_SIZES.get(task_name)
        if n_train or n_test:
            source = "--n-train/--n-test"
        elif sizes:
            source = f"published split sizes of {task_name}"
        else:
            source = f"per {DEFAULT_IMAGES} train and {DEFAULT_IMAGES} test images"
        return cls(n_train=n_train or (sizes[0] if sizes else DEFAULT_IMAGES),
                   n_test=n_test or (sizes[1] if sizes else DEFAULT_IMAGES), source=source)
