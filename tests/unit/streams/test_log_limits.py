"""The repeat limiter on a fake clock: one line per interval per (logger,
template), the count of what it dropped on the next line or from flush(), and
every other logger untouched."""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Iterator

import pytest
from mode.utils.logging import ExtensionFormatter

from nudge.streams.log_limits import REPEAT_INTERVAL_S, RepeatLimiter

CONNECT = "Unable connect to node with id %s: %s"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> RepeatLimiter:
    return RepeatLimiter(interval=10.0, clock=clock)


@pytest.fixture
def output(limiter: RepeatLimiter) -> Iterator[io.StringIO]:
    """What a handler with the limiter writes, for every logger used here."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    # The worker's formatter: it rewrites record.args before rendering.
    handler.setFormatter(
        ExtensionFormatter(stream, fmt="%(levelname)s %(name)s %(message)s", no_color=True)
    )
    handler.addFilter(limiter)
    loggers = [logging.getLogger(n) for n in ("aiokafka.client", "kafka.conn", "nudge.x")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    yield stream
    for logger in loggers:
        logger.removeHandler(handler)
        logger.propagate = True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_an_outage_logs_one_line_per_interval_with_the_count(
    clock: Clock, output: io.StringIO
) -> None:
    log = logging.getLogger("aiokafka.client")
    start = clock.now
    for n in range(11_450):  # 10 s at the 1,145 lines a second the issue measured
        clock.now = start + n / 1145
        log.error(CONNECT, 1, "[Errno 111] Connection refused")
    clock.now = start + 10.0
    log.error(CONNECT, 1, "[Errno 111] Connection refused")
    assert lines(output) == [
        "ERROR aiokafka.client Unable connect to node with id 1: [Errno 111] Connection refused",
        "ERROR aiokafka.client Unable connect to node with id 1: [Errno 111] Connection refused"
        " (repeated 11,449 times in the last 10 s)",
    ]


def test_templates_and_loggers_are_limited_separately(clock: Clock, output: io.StringIO) -> None:
    client, conn = logging.getLogger("aiokafka.client"), logging.getLogger("kafka.conn")
    for n in range(5):
        client.error(CONNECT, n, "refused")  # other arguments: still the same template
        client.error("Unable to update metadata from [%s]", n)
        conn.warning(CONNECT, n, "refused")  # same template, another logger
        clock.now += 1
    assert lines(output) == [
        "ERROR aiokafka.client Unable connect to node with id 0: refused",
        "ERROR aiokafka.client Unable to update metadata from [0]",
        "WARNING kafka.conn Unable connect to node with id 0: refused",
    ]


def test_other_loggers_are_never_limited(clock: Clock, output: io.StringIO) -> None:
    for _ in range(50):
        logging.getLogger("nudge.x").error("decision failed")
    assert len(lines(output)) == 50


def test_flush_reports_the_repeats_of_an_error_that_stopped(
    clock: Clock, limiter: RepeatLimiter, output: io.StringIO
) -> None:
    log = logging.getLogger("aiokafka.client")
    for n in range(31):
        log.error(CONNECT, 1, f"attempt {n}")
        clock.now += 0.1  # the broker comes back after 3 s: no 32nd line
    assert limiter.flush() == [], "the interval is not over yet"
    clock.now += REPEAT_INTERVAL_S
    limiter.emit_flushed()
    assert lines(output) == [
        "ERROR aiokafka.client Unable connect to node with id 1: attempt 0",
        "ERROR aiokafka.client Unable connect to node with id 1: attempt 30"
        " (repeated 30 times in the last 13 s)",
    ]
    assert limiter.flush() == [], "reported once, then forgotten"
    log.error(CONNECT, 1, "the next outage")  # a new window, without a stale count
    assert (
        lines(output)[-1]
        == "ERROR aiokafka.client Unable connect to node with id 1: the next outage"
    )


def test_flush_forgets_windows_without_repeats(clock: Clock, limiter: RepeatLimiter) -> None:
    record = logging.makeLogRecord({"name": "kafka.conn", "msg": "once", "levelno": 40})
    assert limiter.filter(record)
    clock.now += REPEAT_INTERVAL_S
    assert limiter.flush() == []
    assert limiter._windows == {}, "no window outlives its interval once flushed"


def test_a_message_with_percent_signs_keeps_its_text(clock: Clock, output: io.StringIO) -> None:
    log = logging.getLogger("kafka.conn")
    for _ in range(3):
        log.error("progress %s", "100%")
    clock.now += 10
    log.error("progress %s", "100%")
    assert lines(output)[-1] == "ERROR kafka.conn progress 100% (repeated 2 times in the last 10 s)"


def test_a_flushed_summary_is_stamped_when_it_is_logged(
    clock: Clock, limiter: RepeatLimiter
) -> None:
    """Not with the time of the last repeat: the log stays in time order."""
    first = logging.makeLogRecord({"name": "kafka.conn", "msg": "refused", "levelno": 40})
    last = logging.makeLogRecord({**first.__dict__, "created": first.created - 60})
    assert limiter.filter(first) and not limiter.filter(last)
    clock.now += REPEAT_INTERVAL_S
    before = time.time()
    [summary] = limiter.flush()
    assert summary.created >= before
    assert summary.getMessage() == "refused (repeated 1 time in the last 10 s)"


def test_a_client_network_error_is_one_line_without_its_traceback() -> None:
    limiter = RepeatLimiter()
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        record = logging.LogRecord(
            "kafka.net.transport", logging.ERROR, __file__, 1,
            "Error receiving network data closing socket", (), sys.exc_info(),
        )  # fmt: skip
    assert limiter.filter(record)
    line = logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)
    assert "Traceback" not in line
    assert line.endswith(
        "closing socket (ConnectionResetError: [Errno 104] Connection reset by peer)"
    )
    bug = logging.LogRecord(
        "kafka.x", logging.ERROR, __file__, 1, "bug", (), (None, KeyError("k"), None)
    )
    assert limiter.filter(bug) and bug.exc_info is not None  # not a network error: kept
