"""Benchmark report: ``python -m fastconv bench`` prints one table per op family.

Each section module (``conv``, ``pool``, ``conv_transpose``) exposes ``SECTION`` (a title) and
``run(quick) -> list[dict]``, rows with the same keys, measured with :mod:`.common`'s method.
Peers (torch, onnxruntime) are optional: a section reports them only when they import.
"""
