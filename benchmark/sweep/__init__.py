"""``sweep``: a grid of models x tasks x seeds, each (model, task) cell one ``run`` command line, run here or
submitted as SLURM jobs through submitit, with ``sweep.json`` recording every cell (docs/sweeps.md).

The room, one job per file:

- ``grid``: the cells, checked as ``run`` checks its flags, and whether a cell is finished in the results tree;
- ``manifest``: ``sweep.json`` (atomic, locked);
- ``resources``: GPUs, memory and time of a cell's job, from ``plan`` or stated defaults;
- ``executors``: local processes, or SLURM jobs (``job``: the checkpointable command submitit runs);
- ``status``: each cell's state from the results tree and the scheduler;
- ``command``: the ``sweep`` command itself.
"""
