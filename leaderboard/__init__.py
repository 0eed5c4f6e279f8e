"""Leaderboard: a pure function of the results directory, rendered as Markdown, CSV/JSON, a static site and a plot.

``collect`` reads and validates result files, ``table`` aggregates them into rows (with the estimators of
``stats``), ``columns`` declares every column once for all formats, ``markdown`` and ``render`` (CSV, JSON, the
format switch) write text, ``html`` writes the static site, ``scatter`` is the richness-vs-gain plot as data with
``plot`` (PNG) and ``html.plot`` (SVG) drawing it, ``reference`` holds the paper's numbers and ``cli`` is
``python -m benchmark leaderboard``. Nothing here imports torch or loads a model.
"""
