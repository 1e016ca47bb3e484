"""Offline evaluation suite for compsearch encoders, run through the real ``mteb`` package.

Entry point: ``python -m benchmarks.mteb_suite build|run|standard|list``. See
``benchmarks/README.md``.
"""
