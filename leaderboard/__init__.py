"""Leaderboard: a pure function of the results directory, rendered as Markdown, CSV/JSON and a plot.

``collect`` reads and validates result files, ``table`` aggregates them into rows, ``render`` formats them,
``plot`` draws the richness-vs-gain scatter, ``reference`` holds the paper's numbers and ``cli`` is
``python -m benchmark leaderboard``. Nothing here imports torch or loads a model.
"""
