"""Who hears what the vote path decided: metrics and the ops timeline subscribe here.

The vote route calls ``note`` once per request with the outcome (``accepted`` or the
problem ``code`` of the refusal); observers must be cheap and synchronous (count in
memory, ship in the background), since they run on the hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

log = logging.getLogger(__name__)

ACCEPTED = "accepted"


class Outcome(NamedTuple):
    """One per vote request; a named tuple, immutable and built at a quarter of a frozen
    dataclass's cost (its ``__init__`` sets each field through ``object.__setattr__``)."""

    campaign_id: str
    outcome: str
    """``accepted`` or the problem ``code`` (``already_voted``, ``rate_limited``, …)."""
    mode: str
    """Identity of the voter: ``anonymous``, ``sms``, ``partner``, or ``""`` when unknown."""
    channel: str
    seconds: float
    """Time the vote route took, from the first byte read to the answer."""


Observer = Callable[[Outcome], None]


class Outcomes:
    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def subscribe(self, observer: Observer) -> None:
        self._observers.append(observer)

    def note(self, outcome: Outcome) -> None:
        for observer in self._observers:
            try:
                observer(outcome)
            except Exception:  # a broken observer must never fail a vote
                log.exception("vote outcome observer %r failed", observer)
