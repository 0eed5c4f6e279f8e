"""Runs the adapter conformance suite (the benchmark/conformance package) over every built-in tiny twin."""

from benchmark.conformance import *  # noqa: F403  (pytest collects the imported tests and fixtures)
