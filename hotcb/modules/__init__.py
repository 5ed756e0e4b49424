"""Kernel modules: tune (online adaptation), opt and loss (manual live commands)."""
