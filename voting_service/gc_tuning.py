"""Garbage-collector settings for the long-running processes (web workers, flusher).

Reference counting frees almost everything a request allocates; the cyclic collector only
has to find cycles. With CPython's defaults it ran a young collection every 700 container
allocations (a vote makes dozens) and, every few seconds, a full collection that walked
every object the process holds: the modules, the routes, the caches of verified tokens.
On a vote worker those full collections were the whole of the vote path's p99
(``docs/capacity.md``, "The figures behind the code").

``settle()`` runs once a process has built its long-lived state: it collects, moves what
survives to the permanent generation (``gc.freeze``, never scanned again), and makes young
collections rarer. Caches that grow later keep their entries free of tracked containers
(tuples of strings and numbers), so full collections stay short.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
"""Container allocations (net) between young collections; CPython's default is 700."""
OLDER_THRESHOLDS = (20, 20)


def settle() -> None:
    """Freeze what exists now and space collections out; call when start-up is done."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
