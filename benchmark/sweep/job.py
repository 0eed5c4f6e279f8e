"""A cell's SLURM job: its ``run`` command line as submitit's command-function helper, made checkpointable.

submitit (https://github.com/facebookincubator/submitit, ``helpers.CommandFunction`` and ``helpers.Checkpointable``)
runs the command in the job and, when the scheduler pre-empts it or its time limit nears (the USR2 signal it asks
sbatch for), calls ``checkpoint``: Checkpointable's resubmits the same callable, so the job is requeued with the
same command line and the run resumes from its own saved state.
"""

from __future__ import annotations

from submitit.helpers import Checkpointable, CommandFunction


class RunCommand(Checkpointable, CommandFunction):
    """``python -m benchmark run …`` of one cell; requeued unchanged on pre-emption or time limit."""
