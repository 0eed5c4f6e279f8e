"""BakLLaVA for projbench: an out-of-tree adapter package (see docs/adding-an-adapter.md)."""
