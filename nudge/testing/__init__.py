"""Testing sources and sinks as first-class API.

- `Driver` (nudge.testing.driver): a worker in memory. Events in, outputs and
  state out, with a clock the test moves; no Kafka, no Faust. For unit tests
  of a catalog, a policy or a scorer.
- `WorkerProcess`, `EventPublisher`, `OutputReader`, ... (nudge.testing.process):
  a real `nudge worker` process against a real broker, for integration tests,
  the demo and the benchmarks. Imported on first use, so importing the driver
  does not import a Kafka client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nudge.policy.inmemory import event_key
from nudge.testing.driver import START, Driver, Output, Outputs, Record

if TYPE_CHECKING:
    from nudge.testing.process import (
        EventPublisher,
        OutputReader,
        Received,
        WorkerProcess,
        interruptible,
    )

__all__ = [
    "START",
    "Driver",
    "EventPublisher",
    "Output",
    "OutputReader",
    "Outputs",
    "Received",
    "Record",
    "WorkerProcess",
    "event_key",
    "interruptible",
]


def __getattr__(name: str) -> Any:
    """The real-process harness's names (the rest of __all__), imported when
    first asked for."""
    if name in __all__:
        return getattr(importlib.import_module("nudge.testing.process"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
