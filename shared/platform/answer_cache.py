"""A warm container's cache of finished answers, each kept with the data version it was built
from. An entry is only ever returned for the same version, so it can never be stale: a write to
the data makes a new version, and the next read builds the answer again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class VersionedAnswers:
    """Least recently used first out, at most `size` answers (a stats answer can be ~400 kB)."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._lock = threading.Lock()  # the local API serves a container from several threads
        self._entries: OrderedDict[Hashable, tuple[int, str]] = OrderedDict()

    def get(self, key: Hashable, version: int) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: Hashable, version: int, answer: str) -> None:
        with self._lock:
            current = self._entries.get(key)
            if current is not None and current[0] > version:
                return  # a concurrent request already stored a newer answer
            self._entries[key] = (version, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
