"""One log line per interval for an error the Kafka clients repeat in a loop.

While a broker is down, aiokafka retries in a tight loop and logs every attempt:
a 40 s outage wrote about 60,000 ERROR lines (`Unable connect to node ...`, 1,145
a second), which buries everything else and can fill a disk. The first line of a
(logger, message template) pair in an interval is enough to see the outage; the
rest are counted, and the count goes out with the next line of that template
("... (repeated 1,144 times in the last 10 s)"), or with `flush()` once the
errors have stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Seconds between two lines of the same repeated record.
REPEAT_INTERVAL_S = 10.0
#: Logger hierarchies whose repeats are limited: the Kafka clients, aiohttp's
#: server, whose (sanitised) line per malformed request a scanner could repeat,
#: and API forwarding, which warns on every request while an owner is down.
LIMITED_LOGGERS = ("aiokafka", "kafka", "aiohttp", "nudge.routing")


@dataclass
class _Window:
    started: float
    suppressed: int = 0
    last: logging.LogRecord | None = None  # the latest suppressed record


class RepeatLimiter(logging.Filter):
    """A handler filter: passes the first record of each (logger, template) per
    interval, counts and drops the others. Thread-safe: kafka-python logs from
    its own threads."""

    def __init__(
        self,
        interval: float = REPEAT_INTERVAL_S,
        loggers: tuple[str, ...] = LIMITED_LOGGERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.loggers = loggers
        self.clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._limited(record):
            return True
        _one_line_network_error(record)
        key = (record.name, str(record.msg))
        now = self.clock()
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.started < self.interval:
                window.suppressed += 1
                window.last = record
                return False
            self._windows[key] = _Window(now)
        if window is not None and window.suppressed:
            _add_count(record, window.suppressed, now - window.started)
        return True

    def flush(self) -> list[logging.LogRecord]:
        """Forget the windows whose interval is over; for those with repeats
        not yet reported (the errors stopped), return their latest record
        with the count, for the caller to log."""
        now = self.clock()
        summaries = []
        with self._lock:
            for key, window in list(self._windows.items()):
                if now - window.started < self.interval:
                    continue
                del self._windows[key]
                if window.suppressed and window.last is not None:
                    record = logging.makeLogRecord(window.last.__dict__)
                    record.created = time.time()  # logged now: keep the log in time order
                    record.msecs = record.created % 1 * 1000
                    _add_count(record, window.suppressed, now - window.started)
                    summaries.append(record)
        return summaries

    def emit_flushed(self) -> None:
        """Log what `flush()` returns, through the records' own loggers."""
        for record in self.flush():
            logging.getLogger(record.name).handle(record)

    def _limited(self, record: logging.LogRecord) -> bool:
        if getattr(record, "repeat_count", None) is not None:
            return False  # a summary: it passes, and opens no window
        name = record.name
        return any(name == root or name.startswith(root + ".") for root in self.loggers)


def _one_line_network_error(record: logging.LogRecord) -> None:
    """A client's network error (a connection reset while a broker restarts)
    in one line: its traceback is the library's, not a fault to chase."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, OSError):
        summary = f"{type(error).__name__}: {error}".replace("%", "%%")
        record.msg = f"{record.msg} ({summary})"
        record.exc_info = None
        record.exc_text = None


def _add_count(record: logging.LogRecord, count: int, seconds: float) -> None:
    """Append the count to the rendered message (mutated in place: Python 3.11
    filters cannot return a new record)."""
    times = "time" if count == 1 else "times"
    record.msg = f"{record.getMessage()} (repeated {count:,} {times} in the last {seconds:.0f} s)"
    record.args = ()  # not None: mode's formatter would make it (None,)
    record.repeat_count = count
