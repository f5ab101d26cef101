"""Benchmarks as commands: accuracy suites (`kdforge bench accuracy`), smoke grids for GPU suites, the
published numbers, and the generated results page."""

from kdforge.bench.suites import SUITES, Suite, Variant

__all__ = ["SUITES", "Suite", "Variant"]
