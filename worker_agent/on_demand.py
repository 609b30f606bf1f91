"""An object made at its first use, by whichever thread asks first: the agent's component and app instance
managers, which a node that runs neither never needs (their modules are a sixth of an agent's start-up CPU)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class OnDemand(Generic[T]):
    """Holds the one ``make()`` of an object once some caller has asked for it (``get``)."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._value: T | None = None
        self._prepare: Callable[[T], object] | None = None

    @property
    def made(self) -> T | None:
        """The object, or None while nobody asked for it."""
        return self._value

    def get(self) -> T:
        """The object, made now (and prepared, see ``prepare_with``) if this is its first use."""
        value = self._value
        if value is not None:
            return value
        with self._lock:
            if self._value is None:
                made = self._make()
                if self._prepare is not None:
                    self._prepare(made)
                self._value = made
            return self._value

    def prepare_with(self, prepare: Callable[[T], object]) -> None:
        """Run ``prepare`` on the object: now if it is made, else as it is made (never twice, whatever the
        threads do meanwhile)."""
        with self._lock:
            self._prepare = prepare
            if self._value is not None:
                prepare(self._value)
