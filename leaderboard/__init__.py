"""Leaderboard: a pure function of the results directory, rendered as Markdown, CSV/JSON and a plot."""
