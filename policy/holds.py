"""When each subject's next held action is due: the index a releaser keeps.

Held actions live in the customer's state (policy.state.Holds); whoever
releases them (the worker's timer in streams/holds.py, an offline replay)
needs to know whom to wake when, without reading every customer. Each
processed message reports its subject's next due time (Result.next_due);
this keeps the latest report per subject in a heap.
"""

from __future__ import annotations

import heapq


class DueHolds:
    """Subject -> next due time, earliest first. Entries superseded by a later
    report stay in the heap until they surface, and are skipped then."""

    def __init__(self) -> None:
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._due)

    def note(self, subject: str, due: float | None) -> None:
        """The subject's next hold is due at `due`; None: nothing is held."""
        if due is None:
            self._due.pop(subject, None)
            return
        if self._due.get(subject) == due:
            return
        self._due[subject] = due
        heapq.heappush(self._heap, (due, subject))
        if len(self._heap) > 2 * len(self._due) + 1024:  # too many superseded entries
            self._heap = [(d, s) for s, d in self._due.items()]
            heapq.heapify(self._heap)

    def next(self) -> float | None:
        """When the earliest hold is due; None when nothing is held."""
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # superseded
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[tuple[str, float]]:
        """(subject, due) of every subject due by `now`, earliest first; they
        leave the index until a new report names them again."""
        due: list[tuple[str, float]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, subject = heapq.heappop(heap)
            if self._due.get(subject) == at:
                del self._due[subject]
                due.append((subject, at))
        return due
