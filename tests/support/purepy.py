"""The pure-Python code paths in this process: the C core swapped out."""

from __future__ import annotations

from contextlib import contextmanager

from boltfix import ccore


@contextmanager
def pure_python():
    """Inside the block, boltfix runs without its C core (``ccore.speedups``
    is None), as with ``BOLTFIX_PURE_PYTHON=1``."""
    saved = ccore.speedups
    ccore.speedups = None
    try:
        yield
    finally:
        ccore.speedups = saved
