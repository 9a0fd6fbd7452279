"""The garbage collector's settings for long-running processes (the API, the relay, workers).

CPython collects its young generation every 700 net allocations of tracked objects. A server
holding work in flight (fixes queued for Redis, events in a batch) keeps such objects alive
across young collections, so they are promoted and walked again by the older, dearer ones.
While a process serves, the young generation is collected every 50,000 net allocations, and
what start-up built is frozen out of the full collections; both are given back afterwards
(see Fleet in README for the measurements).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

THRESHOLDS = (50_000, 20, 10)  # CPython's defaults: 700, 10, 10


@contextmanager
def serving() -> Iterator[None]:
    """Freeze what exists now and raise the young threshold until the block ends."""
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
