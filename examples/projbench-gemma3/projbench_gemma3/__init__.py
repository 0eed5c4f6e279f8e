"""Gemma 3 for projbench: an out-of-tree adapter package built from transformers' own Gemma 3 classes."""
