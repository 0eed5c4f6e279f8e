"""Training: the fine-tuning loop (written once against the engines of :mod:`benchmark.distributed`)
and its resumable on-disk state."""
