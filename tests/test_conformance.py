"""Runs the adapter conformance suite (benchmark/conformance.py) over every built-in tiny twin."""

from benchmark.conformance import *  # noqa: F403  (pytest collects the imported tests and fixtures)
