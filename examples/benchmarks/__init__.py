"""Benchmarks: does one hottune run get what a sweep would, and what does it cost per step?

``python -m examples.benchmarks [--quick]`` (or ``nox -s bench``) trains four small CPU tasks
under each method, measures decision quality and overhead, and writes docs/benchmarks.md with
PNG plots under docs/benchmarks/. Figures are reported, never asserted.
"""
