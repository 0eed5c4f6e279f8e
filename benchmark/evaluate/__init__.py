"""Evaluation: class scoring by log-likelihood, greedy generation, the richness probe, the prompt,
padded batches and the metrics with their intervals."""
