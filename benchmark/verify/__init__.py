"""Verification of stored results: every reported number recomputed from the predictions it came from.

:mod:`.points` checks the numbers the leaderboard shows (numpy only, cheap enough for every build);
:mod:`.recompute` checks every number of a record (per-class scores, confusion matrix, intervals, gains) with
the functions the run itself used; :mod:`.runner` is ``python -m benchmark verify``. What this proves and what it
cannot: docs/trust.md.
"""
